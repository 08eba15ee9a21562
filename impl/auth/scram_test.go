package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// scramClient is an independent client side of SCRAM-SHA-256 (RFC 5802
// section 3), written from the RFC rather than from the server.
type scramClient struct {
	user, password string
	nonce          string
	gs2            string

	bare      string
	serverSig []byte
}

func escapeSASL(s string) string {
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s)
}

func (c *scramClient) first() string {
	if c.gs2 == "" {
		c.gs2 = "n,,"
	}
	c.bare = "n=" + escapeSASL(c.user) + ",r=" + c.nonce
	return c.gs2 + c.bare
}

func (c *scramClient) final(serverFirst string) (string, error) {
	var nonce, salt string
	iter := 0
	for _, a := range strings.Split(serverFirst, ",") {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "r":
			nonce = v
		case "s":
			salt = v
		case "i":
			iter, _ = strconv.Atoi(v)
		}
	}
	if !strings.HasPrefix(nonce, c.nonce) || len(nonce) == len(c.nonce) {
		return "", errors.New("server nonce does not extend the client's")
	}
	s, err := base64.StdEncoding.DecodeString(salt)
	if err != nil || iter < 1 {
		return "", errors.New("bad salt or iteration count")
	}
	salted, err := pbkdf2.Key(sha256.New, c.password, s, iter, 32)
	if err != nil {
		return "", err
	}
	mac := func(k []byte, m string) []byte { h := hmac.New(sha256.New, k); h.Write([]byte(m)); return h.Sum(nil) }
	clientKey := mac(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	withoutProof := "c=" + base64.StdEncoding.EncodeToString([]byte(c.gs2)) + ",r=" + nonce
	authMessage := c.bare + "," + serverFirst + "," + withoutProof
	sig := mac(stored[:], authMessage)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ sig[i]
	}
	c.serverSig = mac(mac(salted, "Server Key"), authMessage)
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof), nil
}

func (c *scramClient) verify(serverFinal string) error {
	if serverFinal != "v="+base64.StdEncoding.EncodeToString(c.serverSig) {
		return fmt.Errorf("server signature %q is wrong", serverFinal)
	}
	return nil
}

func scramFile(t testing.TB, lines ...string) *PasswordFile {
	t.Helper()
	p, err := NewPasswordFile([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newSCRAM(t testing.TB, p *PasswordFile) *SCRAM {
	t.Helper()
	s, err := NewSCRAM(p, env.NewLockedRand(42))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSCRAMRFC7677 replays the example of RFC 7677 section 3.
func TestSCRAMRFC7677(t *testing.T) {
	t.Parallel()
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	creds, err := DeriveSCRAM([]byte("pencil"), salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	s := newSCRAM(t, scramFile(t, "dflt/user:"+creds.String()))
	s.nonce = func() (string, error) { return "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", nil }
	ex, ok := s.Begin(SCRAMMethod, &broker.AuthRequest{DefaultTenant: "dflt"})
	if !ok {
		t.Fatal("method not offered")
	}
	type step struct {
		Reply string
		Done  bool
		Code  packet.ReasonCode
	}
	var got []step
	for _, msg := range []string{
		"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
		"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	} {
		r, done, code := ex.Step([]byte(msg))
		got = append(got, step{string(r), done, code})
	}
	want := []step{
		{"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", false, packet.ContinueAuthentication},
		{"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", true, packet.Success},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("RFC 7677 conversation (-want +got):\n%s", d)
	}
	if d := cmp.Diff(broker.AuthResult{Code: 0, Tenant: "dflt", User: "user"}, ex.Result()); d != "" {
		t.Errorf("result (-want +got):\n%s", d)
	}
	if id := IdentityOf(ex); id.User != "user" || !id.Expires.IsZero() || id.ACL != nil {
		t.Errorf("identity %+v", id)
	}
	// Stepping past the end is a protocol error.
	if _, _, code := ex.Step(nil); code != packet.ProtocolError {
		t.Errorf("step after the end: %v", code)
	}
}

// run drives one exchange with the test client.
func run(t *testing.T, s *SCRAM, r *broker.AuthRequest, c *scramClient) (broker.Exchange, packet.ReasonCode) {
	t.Helper()
	ex, ok := s.Begin(SCRAMMethod, r)
	if !ok {
		t.Fatal("method not offered")
	}
	sf, done, code := ex.Step([]byte(c.first()))
	if code.IsError() {
		return ex, code
	}
	if done || code != packet.ContinueAuthentication {
		t.Fatalf("first step: done=%v code=%v", done, code)
	}
	cf, err := c.final(string(sf))
	if err != nil {
		t.Fatal(err)
	}
	fin, done, code := ex.Step([]byte(cf))
	if code.IsError() {
		if done {
			t.Error("a refusal reported done")
		}
		return ex, code
	}
	if !done {
		t.Fatal("not done after client-final")
	}
	if err := c.verify(string(fin)); err != nil {
		t.Fatal(err)
	}
	return ex, code
}

func TestSCRAMClient(t *testing.T) {
	t.Parallel()
	alice, err := NewCredentials(env.NewRand(1), []byte("wonder,land=1"), 4096)
	if err != nil {
		t.Fatal(err)
	}
	odd, err := NewCredentials(env.NewRand(2), []byte("pw"), 5000)
	if err != nil {
		t.Fatal(err)
	}
	p := scramFile(t, "acme/alice:"+alice.String(), "acme/we,ird=name:"+odd.String(),
		"acme/carol:"+testHash(t, "bcrypt-only"))
	s := newSCRAM(t, p)
	tests := []struct {
		name     string
		r        *broker.AuthRequest
		c        scramClient
		code     packet.ReasonCode
		tenant   string
		username string
	}{
		{"right password", &broker.AuthRequest{}, scramClient{user: "acme/alice", password: "wonder,land=1", nonce: "abc"}, 0, "acme", "alice"},
		{"escaped user name", &broker.AuthRequest{}, scramClient{user: "acme/we,ird=name", password: "pw", nonce: "x"}, 0, "acme", "we,ird=name"},
		{"default tenant", &broker.AuthRequest{DefaultTenant: "acme"}, scramClient{user: "alice", password: "wonder,land=1", nonce: "n"}, 0, "acme", "alice"},
		{"CONNECT user name agrees", &broker.AuthRequest{HasUser: true, Username: "acme/alice"}, scramClient{user: "acme/alice", password: "wonder,land=1", nonce: "n"}, 0, "acme", "alice"},
		{"y flag", &broker.AuthRequest{}, scramClient{user: "acme/alice", password: "wonder,land=1", nonce: "n", gs2: "y,,"}, 0, "acme", "alice"},
		{"authzid of the same user", &broker.AuthRequest{}, scramClient{user: "acme/alice", password: "wonder,land=1", nonce: "n", gs2: "n,a=acme/alice,"}, 0, "acme", "alice"},
		{"wrong password", &broker.AuthRequest{}, scramClient{user: "acme/alice", password: "wrong", nonce: "n"}, packet.BadUserNameOrPassword, "", ""},
		{"unknown user", &broker.AuthRequest{}, scramClient{user: "acme/zed", password: "x", nonce: "n"}, packet.BadUserNameOrPassword, "", ""},
		{"bcrypt-only user", &broker.AuthRequest{}, scramClient{user: "acme/carol", password: "bcrypt-only", nonce: "n"}, packet.BadUserNameOrPassword, "", ""},
		{"CONNECT user name differs", &broker.AuthRequest{HasUser: true, Username: "acme/bob"}, scramClient{user: "acme/alice", password: "wonder,land=1", nonce: "n"}, packet.BadUserNameOrPassword, "", ""},
		{"authzid of another user", &broker.AuthRequest{}, scramClient{user: "acme/alice", password: "wonder,land=1", nonce: "n", gs2: "n,a=acme/root,"}, packet.NotAuthorized, "", ""},
		{"channel binding", &broker.AuthRequest{}, scramClient{user: "acme/alice", password: "wonder,land=1", nonce: "n", gs2: "p=tls-unique,,"}, packet.BadAuthenticationMethod, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ex, code := run(t, s, tc.r, &tc.c)
			if code != tc.code {
				t.Fatalf("code %v, want %v", code, tc.code)
			}
			want := broker.AuthResult{Code: tc.code, Tenant: tc.tenant, User: tc.username}
			if d := cmp.Diff(want, ex.Result()); d != "" {
				t.Errorf("result (-want +got):\n%s", d)
			}
		})
	}
}

// TestSCRAMUnknownUserLooksReal: an unknown user gets a salt and an
// iteration count like a real one, the same on every attempt.
func TestSCRAMUnknownUserLooksReal(t *testing.T) {
	t.Parallel()
	real, err := NewCredentials(env.NewRand(3), []byte("pw"), 8192)
	if err != nil {
		t.Fatal(err)
	}
	s := newSCRAM(t, scramFile(t, "t/real:"+real.String()))
	serverFirst := func(user string) (salt, iter string) {
		ex, _ := s.Begin(SCRAMMethod, &broker.AuthRequest{})
		r, _, code := ex.Step([]byte("n,,n=" + user + ",r=abc"))
		if code != packet.ContinueAuthentication {
			t.Fatalf("%s: %v", user, code)
		}
		for _, a := range strings.Split(string(r), ",") {
			k, v, _ := strings.Cut(a, "=")
			switch k {
			case "s":
				salt = v
			case "i":
				iter = v
			}
		}
		return salt, iter
	}
	s1, i1 := serverFirst("t/ghost")
	s2, i2 := serverFirst("t/ghost")
	s3, _ := serverFirst("t/other-ghost")
	sr, ir := serverFirst("t/real")
	if s1 != s2 || s1 == s3 || i1 != i2 || i1 != ir || len(s1) != len(sr) {
		t.Errorf("ghost salt %q/%q/%q iter %s/%s; real %q iter %s", s1, s2, s3, i1, i2, sr, ir)
	}
}

func TestSCRAMMalformed(t *testing.T) {
	t.Parallel()
	creds, _ := DeriveSCRAM([]byte("pw"), []byte("salt"), 4096)
	s := newSCRAM(t, scramFile(t, "t/u:"+creds.String()))
	s.nonce = func() (string, error) { return "SRV", nil }
	firsts := []struct {
		msg  string
		code packet.ReasonCode
	}{
		{"", packet.NotAuthorized},
		{"n,,", packet.NotAuthorized},
		{"x,,n=t/u,r=a", packet.NotAuthorized},
		{"n", packet.NotAuthorized},
		{"n,n=t/u,r=a", packet.NotAuthorized},
		{"n,b=x,n=t/u,r=a", packet.NotAuthorized},
		{"n,,m=ext,n=t/u,r=a", packet.NotAuthorized},
		{"n,,n=t/u", packet.NotAuthorized},
		{"n,,r=a,n=t/u", packet.NotAuthorized},
		{"n,,n=,r=a", packet.NotAuthorized},
		{"n,,n=t/u,r=", packet.NotAuthorized},
		{"n,,n=t/u,r=a b", packet.NotAuthorized},
		{"n,,n=t=2Bu,r=a", packet.NotAuthorized},
		{"n,,n=t/u\x00,r=a", packet.NotAuthorized},
		{"n,,n=t/\xff,r=a", packet.NotAuthorized},
		{"n,,n=t/u,r=a,x", packet.NotAuthorized},
		{"p=tls-server-end-point,,n=t/u,r=a", packet.BadAuthenticationMethod},
		{"n,,n=t/u,r=" + strings.Repeat("a", maxSCRAMData), packet.NotAuthorized},
		{"n,,n=t/u,r=a,e=ext", packet.ContinueAuthentication},
	}
	for _, tc := range firsts {
		ex, _ := s.Begin(SCRAMMethod, &broker.AuthRequest{})
		if _, _, code := ex.Step([]byte(tc.msg)); code != tc.code {
			t.Errorf("client-first %q: %v, want %v", tc.msg, code, tc.code)
		}
	}
	c := &scramClient{user: "t/u", password: "pw", nonce: "a"}
	c.first()
	good, err := c.final("r=aSRV,s=" + base64.StdEncoding.EncodeToString([]byte("salt")) + ",i=4096")
	if err != nil {
		t.Fatal(err)
	}
	proof := good[strings.LastIndex(good, ",p=")+3:]
	finals := []struct {
		msg  string
		code packet.ReasonCode
	}{
		{"", packet.NotAuthorized},
		{"c=biws,r=aSRV", packet.NotAuthorized},
		{"r=aSRV,c=biws,p=" + proof, packet.NotAuthorized},
		{"c=bm9wZQ==,r=aSRV,p=" + proof, packet.NotAuthorized}, // channel binding data differs
		{"c=biws,r=aSRX,p=" + proof, packet.NotAuthorized},     // nonce differs
		{"c=biws,r=aSRV,p=!!", packet.NotAuthorized},
		{"c=biws,r=aSRV,p=AAAA", packet.NotAuthorized},
		{"c=biws,r=aSRV,m=x,p=" + proof, packet.NotAuthorized},
		{"c=biws,r=aSRV,x,p=" + proof, packet.NotAuthorized},
		{"c=biws,r=aSRV,p=" + base64.StdEncoding.EncodeToString(make([]byte, 32)), packet.BadUserNameOrPassword},
		{good, packet.Success},
	}
	for _, tc := range finals {
		ex, _ := s.Begin(SCRAMMethod, &broker.AuthRequest{})
		if _, _, code := ex.Step([]byte("n,,n=t/u,r=a")); code != packet.ContinueAuthentication {
			t.Fatal(code)
		}
		if _, _, code := ex.Step([]byte(tc.msg)); code != tc.code {
			t.Errorf("client-final %q: %v, want %v", tc.msg, code, tc.code)
		}
		if tc.code != 0 && ex.Result().Code == 0 {
			t.Errorf("client-final %q: refused but the result accepts", tc.msg)
		}
	}
	if _, ok := s.Begin("SCRAM-SHA-1", &broker.AuthRequest{}); ok {
		t.Error("SCRAM-SHA-1 offered")
	}
	ex, _ := s.Begin(SCRAMMethod, nil)
	if ex.Result().Code == 0 || IdentityOf(ex).Code == 0 {
		t.Error("an exchange that has not run accepts")
	}
}

func TestCredentials(t *testing.T) {
	t.Parallel()
	c, err := NewCredentials(env.NewRand(9), []byte("pw"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if c.Iterations != DefaultIterations || len(c.Salt) != 16 {
		t.Errorf("defaults: %d iterations, %d-byte salt", c.Iterations, len(c.Salt))
	}
	back, err := ParseCredentials(c.String())
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(c, back); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
	k := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, bad := range []string{
		"SCRAM-SHA-1$4096:c2FsdA==$" + k + ":" + k,
		"SCRAM-SHA-256$4096:c2FsdA==",
		"SCRAM-SHA-256$4096c2FsdA==$" + k + ":" + k,
		"SCRAM-SHA-256$x:c2FsdA==$" + k + ":" + k,
		"SCRAM-SHA-256$0:c2FsdA==$" + k + ":" + k,
		"SCRAM-SHA-256$4096:$" + k + ":" + k,
		"SCRAM-SHA-256$4096:c2FsdA==$" + k,
		"SCRAM-SHA-256$4096:c2FsdA==$" + k + ":AAAA",
	} {
		if _, err := ParseCredentials(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := DeriveSCRAM([]byte("x"), nil, 1); err == nil {
		t.Error("empty salt accepted")
	}
	if _, err := DeriveSCRAM([]byte("x"), []byte("s"), -1); err == nil {
		t.Error("negative iterations accepted")
	}
	if _, err := NewSCRAM(nil, env.NewRand(1)); err == nil {
		t.Error("NewSCRAM without credentials")
	}
}

// FuzzSCRAM feeds arbitrary client messages to both steps of an exchange.
func FuzzSCRAM(f *testing.F) {
	f.Add("n,,n=t/u,r=abc", "c=biws,r=abcSRV,p=AAAA")
	f.Add("n,a=t/u,n=t/u,r=x,e=1", "c=bixhPXQvdSw=,r=xSRV,e=1,p="+base64.StdEncoding.EncodeToString(make([]byte, 32)))
	f.Add("p=x,,n=a,r=b", "")
	f.Add("y,,n==3D=2C,r=!", "c=eSws,r=!SRV,p=")
	creds, _ := DeriveSCRAM([]byte("pw"), []byte("salt"), 1)
	p, _ := NewPasswordFile([]byte("t/u:" + creds.String()))
	s, _ := NewSCRAM(p, env.NewRand(1))
	s.nonce = func() (string, error) { return "SRV", nil }
	f.Fuzz(func(t *testing.T, first, final string) {
		m, err := parseClientFirst(first)
		if err == nil && !strings.HasSuffix(m.gs2, ",") {
			t.Fatalf("GS2 header %q does not end in ','", m.gs2)
		}
		ex, _ := s.Begin(SCRAMMethod, &broker.AuthRequest{})
		_, done, code := ex.Step([]byte(first))
		if done {
			t.Fatal("done after client-first")
		}
		if code.IsError() {
			if ex.Result().Code == 0 {
				t.Fatal("refused exchange accepts")
			}
			return
		}
		_, done, code = ex.Step([]byte(final))
		if done != (code == packet.Success) || (done && ex.Result().Code != 0) {
			t.Fatalf("done=%v code=%v result=%v", done, code, ex.Result())
		}
	})
}

func BenchmarkSCRAMExchange(b *testing.B) {
	creds, _ := DeriveSCRAM([]byte("pw"), []byte("salt"), 4096)
	p, _ := NewPasswordFile([]byte("t/u:" + creds.String()))
	s, _ := NewSCRAM(p, env.NewRand(1))
	c := &scramClient{user: "t/u", password: "pw", nonce: "abc"}
	ex, _ := s.Begin(SCRAMMethod, &broker.AuthRequest{})
	sf, _, _ := ex.Step([]byte(c.first()))
	s.nonce = func() (string, error) { return string(sf[len("r=abc"):strings.IndexByte(string(sf), ',')]), nil }
	final, err := c.final(string(sf))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		ex, _ := s.Begin(SCRAMMethod, &broker.AuthRequest{})
		ex.Step([]byte("n,,n=t/u,r=abc"))
		if _, done, _ := ex.Step([]byte(final)); !done {
			b.Fatal("refused")
		}
	}
}
