package auth

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// hashes caches test hashes at the minimum cost (the tests are about the
// file, not about bcrypt's speed).
var (
	hashMu sync.Mutex
	hashes = map[string]string{}
)

func testHash(t testing.TB, pw string) string {
	t.Helper()
	hashMu.Lock()
	defer hashMu.Unlock()
	if h, ok := hashes[pw]; ok {
		return h
	}
	h, err := HashPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	hashes[pw] = string(h)
	return string(h)
}

func testSCRAM(t testing.TB, pw string) string {
	t.Helper()
	c, err := NewCredentials(env.NewRand(7), []byte(pw), 4096)
	if err != nil {
		t.Fatal(err)
	}
	return c.String()
}

func req(user, pw string) *broker.AuthRequest {
	return &broker.AuthRequest{ClientID: "c", Username: user, HasUser: user != "", Password: []byte(pw),
		Listener: "tcp", DefaultTenant: "dflt"}
}

func TestPasswordFile(t *testing.T) {
	t.Parallel()
	file := strings.Join([]string{
		"# a comment",
		"",
		"   # an indented comment",
		"acme/alice:" + testHash(t, "wonderland") + "\r",
		"  acme/bob:" + testHash(t, "builder") + "  ",
		"dflt/carol:" + testHash(t, "c4rol"),
		"acme/dave:" + testSCRAM(t, "scram-only"),
		"acme/a/b:" + testHash(t, "slash"),
	}, "\n")
	p, err := NewPasswordFile([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() != 5 {
		t.Errorf("Len %d, want 5", p.Len())
	}
	type res struct {
		Code         packet.ReasonCode
		Tenant, User string
		Recognised   bool
	}
	tests := []struct {
		name string
		r    *broker.AuthRequest
		want res
	}{
		{"right password", req("acme/alice", "wonderland"), res{0, "acme", "alice", true}},
		{"trimmed line", req("acme/bob", "builder"), res{0, "acme", "bob", true}},
		{"wrong password", req("acme/alice", "rabbit"), res{0x86, "", "", true}},
		{"empty password", req("acme/alice", ""), res{0x86, "", "", true}},
		{"unknown user", req("acme/zed", "wonderland"), res{0x86, "", "", false}},
		{"unknown tenant", req("other/alice", "wonderland"), res{0x86, "", "", false}},
		{"default tenant", req("carol", "c4rol"), res{0, "dflt", "carol", true}},
		{"no user name", req("", "wonderland"), res{0x86, "", "", false}},
		{"SCRAM-only user has no CONNECT password", req("acme/dave", "scram-only"), res{0x86, "", "", false}},
		{"user with a slash", req("acme/a/b", "slash"), res{0, "acme", "a/b", true}},
	}
	for _, tc := range tests {
		id, ok := p.Decide(tc.r)
		ar := p.Authenticate(tc.r)
		got := res{ar.Code, ar.Tenant, ar.User, ok}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
		if ok && id.AuthResult != ar {
			t.Errorf("%s: Decide %+v, Authenticate %+v", tc.name, id.AuthResult, ar)
		}
	}
}

func TestPasswordFileUnknownUsersCostABcrypt(t *testing.T) {
	t.Parallel()
	h := testHash(t, "x")
	p, err := NewPasswordFile([]byte("t/u:" + h + "\nt/v:" + testHash(t, "y")))
	if err != nil {
		t.Fatal(err)
	}
	// An unknown user is compared against the file's first hash: the same
	// cost as a known user's wrong password.
	if got := string(p.table().dummy); got != h {
		t.Errorf("dummy hash %q, want the first entry's %q", got, h)
	}
	empty, err := NewPasswordFile(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(empty.table().dummy); got != dummyHash {
		t.Errorf("dummy of an empty file %q", got)
	}
	if c, err := bcrypt.Cost([]byte(dummyHash)); err != nil || c != DefaultCost {
		t.Errorf("dummyHash: cost %d, %v", c, err)
	}
	var zero PasswordFile
	if zero.Authenticate(req("t/u", "x")).Code != packet.BadUserNameOrPassword || zero.Len() != 0 {
		t.Error("the zero PasswordFile must refuse everyone")
	}
}

func TestPasswordFileErrors(t *testing.T) {
	t.Parallel()
	h := testHash(t, "x")
	file := strings.Join([]string{
		"t/u:" + h,
		"no colon here",
		"nouser:" + h,
		"/u:" + h,
		"t/:" + h,
		"t/u:" + h, // second bcrypt entry
		"t/w:plaintext-secret",
		"t/x:$2a$10$short",
		"t/y:SCRAM-SHA-256$0:AAAA$AAAA:AAAA",
		"t/u:" + testSCRAM(t, "p"),
		"t/u:" + testSCRAM(t, "q"), // second SCRAM entry
	}, "\n")
	_, err := NewPasswordFile([]byte(file))
	if err == nil {
		t.Fatal("no error")
	}
	var lines []string
	for _, l := range strings.Split(err.Error(), "\n") {
		f, _, _ := strings.Cut(l, ": ")
		lines = append(lines, f)
	}
	want := []string{"password file line 2", "password file line 3", "password file line 4", "password file line 5",
		"password file line 6", "password file line 7", "password file line 8", "password file line 9", "password file line 11"}
	if d := cmp.Diff(want, lines); d != "" {
		t.Errorf("error lines (-want +got):\n%s\n%v", d, err)
	}
	if strings.Contains(err.Error(), "plaintext-secret") {
		t.Error("an error quotes a secret")
	}
}

func TestPasswordFileReplace(t *testing.T) {
	t.Parallel()
	p, err := NewPasswordFile([]byte("t/u:" + testHash(t, "one")))
	if err != nil {
		t.Fatal(err)
	}
	if p.Authenticate(req("t/u", "one")).Code != 0 {
		t.Fatal("old password refused")
	}
	if err := p.Replace([]byte("broken")); err == nil {
		t.Fatal("broken file accepted")
	}
	if p.Authenticate(req("t/u", "one")).Code != 0 {
		t.Fatal("a failed Replace must keep the table")
	}
	if err := p.Replace([]byte("t/u:" + testHash(t, "two"))); err != nil {
		t.Fatal(err)
	}
	if p.Authenticate(req("t/u", "one")).Code == 0 || p.Authenticate(req("t/u", "two")).Code != 0 {
		t.Fatal("Replace did not take effect")
	}
	// Concurrent reloads and checks (meaningful under -race).
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if i == 0 {
					_ = p.Replace([]byte("t/u:" + testHash(t, "two")))
				}
				p.Authenticate(req("t/u", "two"))
			}
		}()
	}
	wg.Wait()
}

func TestHashPasswordAndLine(t *testing.T) {
	t.Parallel()
	h, err := HashPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	line, err := Line("acme", "alice", h)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPasswordFile([]byte(line + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Authenticate(req("acme/alice", "secret")).Code != 0 {
		t.Error("a hashed line does not authenticate")
	}
	if _, err := HashPassword(bytes.Repeat([]byte("x"), 73), bcrypt.MinCost); err == nil {
		t.Error("a password over 72 bytes must be refused")
	}
	if _, err := HashPassword([]byte("x"), 99); err == nil {
		t.Error("cost 99 accepted")
	}
	for _, bad := range [][2]string{{"", "u"}, {"t", ""}, {"a/b", "u"}, {"t", "u:v"}, {"t", "u\nt/x"}} {
		if _, err := Line(bad[0], bad[1], h); err == nil {
			t.Errorf("Line(%q, %q) accepted", bad[0], bad[1])
		}
	}
}

func FuzzPasswordFile(f *testing.F) {
	f.Add([]byte("t/u:$2a$04$abcdefghijklmnopqrstuu5Lq2j1vTuQSsBoZ0jq7D0DOkYMPfHq6\n# c\n"), "t/u", "pw")
	f.Add([]byte("t/u:SCRAM-SHA-256$4096:c2FsdA==$"+strings.Repeat("A", 43)+"=:"+strings.Repeat("B", 43)+"=\n"), "u", "")
	f.Add([]byte("a/b/c:x:y\r\n\n  # x"), "a/b/c", "x:y")
	f.Fuzz(func(t *testing.T, data []byte, user, pw string) {
		p, err := NewPasswordFile(data)
		if err != nil {
			return
		}
		if p.Len() < 0 {
			t.Fatal("negative length")
		}
		// Checking must not panic; keep bcrypt cheap by only checking
		// files whose hashes are of the minimum cost.
		for _, e := range p.table().entries {
			if e.bcrypt != nil {
				if c, _ := bcrypt.Cost(e.bcrypt); c > bcrypt.MinCost {
					return
				}
			}
		}
		if c, _ := bcrypt.Cost(p.table().dummy); c > bcrypt.MinCost && len(p.table().entries) > 0 {
			return
		}
		if len(p.table().entries) > 0 {
			p.Decide(req(user, pw))
		}
		tenant, u := broker.TenantOf(user, "dflt")
		p.scramCredentials(tenant, u)
	})
}

func BenchmarkPasswordFile(b *testing.B) {
	h, err := HashPassword([]byte("wonderland"), DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	p, err := NewPasswordFile([]byte("acme/alice:" + string(h)))
	if err != nil {
		b.Fatal(err)
	}
	r := req("acme/alice", "wonderland")
	b.ReportAllocs()
	for b.Loop() {
		if p.Authenticate(r).Code != 0 {
			b.Fatal("refused")
		}
	}
}
