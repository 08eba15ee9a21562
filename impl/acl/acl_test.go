package acl

import (
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustSet(t testing.TB, cfg Config) *Set {
	t.Helper()
	s, err := NewSet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func r(perm, action string, topics ...string) RuleConfig {
	return RuleConfig{Permission: perm, Action: action, Topics: topics}
}

func TestPublish(t *testing.T) {
	t.Parallel()
	s := mustSet(t, Config{
		DefaultDeny: true,
		Tenants: map[string][]RuleConfig{
			"acme": {
				r("deny", "retain", "#"),
				r("allow", "publish", "devices/%c/up", "users/%u/#", "sensors/+/temp"),
				{Permission: "allow", Action: "publish", Topics: []string{"admin/#"}, Users: []string{"root"}},
				r("allow", "retain", "status/%c"),
			},
			"other": {r("allow", "all", "#")},
		},
		Global: []RuleConfig{r("allow", "publish", "public/%t/#", "$SYS/ping")},
	})
	alice := &Client{Tenant: "acme", User: "alice", ClientID: "d1"}
	root := &Client{Tenant: "acme", User: "root", ClientID: "r1"}
	slashy := &Client{Tenant: "acme", User: "alice/x", ClientID: "d/1"}
	wild := &Client{Tenant: "acme", User: "#", ClientID: "+"}
	anon := &Client{Tenant: "acme", ClientID: "a1"}
	oth := &Client{Tenant: "other", User: "bob", ClientID: "b"}
	tests := []struct {
		name   string
		c      *Client
		topic  string
		retain bool
		want   bool
	}{
		{"own device topic", alice, "devices/d1/up", false, true},
		{"another device's topic", alice, "devices/d2/up", false, false},
		{"own user tree", alice, "users/alice/a/b", false, true},
		{"own user tree parent", alice, "users/alice", false, true},
		{"another user's tree", alice, "users/bob/a", false, false},
		{"plus matches one level", alice, "sensors/k1/temp", false, true},
		{"plus matches an empty level", alice, "sensors//temp", false, true},
		{"plus does not match two levels", alice, "sensors/a/b/temp", false, false},
		{"retained denied by the first rule", alice, "devices/d1/up", true, false},
		{"user-restricted rule, other user", alice, "admin/x", false, false},
		{"user-restricted rule, listed user", root, "admin/x", false, true},
		{"global rule with tenant substitution", alice, "public/acme/news", false, true},
		{"global rule, another tenant's tree", alice, "public/other/news", false, false},
		{"explicit $ topic", alice, "$SYS/ping", false, true},
		{"'/' in a user name grants nothing", slashy, "users/alice/x/y", false, false},
		{"'/' in a client id grants nothing", slashy, "devices/d/1/up", false, false},
		{"wildcard user name is not a wildcard", wild, "users/x/y", false, false},
		{"wildcard user name, literal topic", wild, "users/#/y", false, false},
		{"wildcard client id", wild, "devices/+/up", false, false},
		{"anonymous gets no %u tree", anon, "users//x", false, false},
		{"other tenant allow all", oth, "anything/at/all", false, true},
		{"'#' does not match $ topics", oth, "$SYS/x", false, false},
		{"default deny", alice, "nowhere", false, false},
	}
	for _, tc := range tests {
		if got := s.CanPublish(tc.c, []byte(tc.topic), tc.retain); got != tc.want {
			t.Errorf("%s: CanPublish(%+v, %q, retain=%v) = %v, want %v", tc.name, *tc.c, tc.topic, tc.retain, got, tc.want)
		}
	}
}

func TestRetain(t *testing.T) {
	t.Parallel()
	s := mustSet(t, Config{DefaultDeny: true, Global: []RuleConfig{
		r("allow", "retain", "r/#"),
		r("allow", "publish", "p/#"),
	}})
	c := &Client{Tenant: "t", User: "u", ClientID: "c"}
	for _, tc := range []struct {
		topic  string
		retain bool
		want   bool
	}{
		{"r/x", true, true},   // a retain rule grants retained publishes
		{"r/x", false, false}, // ... but not plain ones
		{"p/x", false, true},  // a publish rule grants both
		{"p/x", true, true},
	} {
		if got := s.CanPublish(c, []byte(tc.topic), tc.retain); got != tc.want {
			t.Errorf("%q retain=%v: %v, want %v", tc.topic, tc.retain, got, tc.want)
		}
	}
}

func TestSubscribe(t *testing.T) {
	t.Parallel()
	s := mustSet(t, Config{
		DefaultDeny: true,
		Global: []RuleConfig{
			r("deny", "subscribe", "secret/#"),
			r("deny", "subscribe", "users/%u/private"),
			r("allow", "subscribe", "devices/%c/down/#", "news/+", "users/#", "+/#"),
		},
	})
	s2 := mustSet(t, Config{Global: []RuleConfig{r("allow", "subscribe", "a/#"), r("deny", "subscribe", "#")}})
	alice := &Client{Tenant: "t", User: "alice", ClientID: "d1"}
	slashy := &Client{Tenant: "t", User: "a/b", ClientID: "d1"}
	tests := []struct {
		s      *Set
		c      *Client
		filter string
		want   bool
	}{
		{s, alice, "devices/d1/down/#", true},
		{s, alice, "devices/d1/down/x", true},
		{s, alice, "news/today", true},
		{s, alice, "secret/x", false},
		{s, alice, "secret", false},           // "secret/#" matches its parent
		{s, alice, "#", false},                // meets secret/#
		{s, alice, "+/x", false},              // meets secret/x
		{s, alice, "+/+/private", false},      // meets users/alice/private
		{s, alice, "users/bob/private", true}, // the deny is alice's only
		{s, alice, "$share/g/secret/a", false},
		{s, alice, "$share/g/news/a", true},
		{s, alice, "$SYS/#", false},   // "+/#" does not cover '$' topics
		{s, slashy, "users/x", false}, // a deny rule with an unsafe value fails closed on users/#
		{s, slashy, "news/x", true},   // ... and only there
		{s2, alice, "a/b/c", true},
		{s2, alice, "a/#", true},
		{s2, alice, "a", true},
		{s2, alice, "+/b", false}, // not covered by a/#, meets #
		{s2, alice, "b", false},
	}
	for _, tc := range tests {
		if got := tc.s.CanSubscribe(tc.c, []byte(tc.filter)); got != tc.want {
			t.Errorf("CanSubscribe(%+v, %q) = %v, want %v", *tc.c, tc.filter, got, tc.want)
		}
	}
}

func TestExtraAndClaim(t *testing.T) {
	t.Parallel()
	s := mustSet(t, Config{Tenants: map[string][]RuleConfig{
		"t": {r("deny", "publish", "locked/#"), r("allow", "all", "#")},
	}})
	claim := Claim{Publish: []string{"locked/%c"}, Subscribe: []string{"in/%c/#"}}
	open, err := claim.Compile(false)
	if err != nil {
		t.Fatal(err)
	}
	excl, err := claim.Compile(true)
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{Tenant: "t", User: "u", ClientID: "c1", Extra: open}
	x := &Client{Tenant: "t", User: "u", ClientID: "c1", Extra: excl}
	got := []bool{
		s.CanPublish(c, []byte("locked/c1"), false), // the claim comes first
		s.CanPublish(c, []byte("locked/c2"), false), // falls to the tenant's deny
		s.CanPublish(c, []byte("free"), false),      // falls to the tenant's allow
		s.CanPublish(x, []byte("locked/c1"), false),
		s.CanPublish(x, []byte("free"), false), // exclusive: denied
		s.CanSubscribe(x, []byte("in/c1/#")),
		s.CanSubscribe(x, []byte("in/#")),
		s.CanPublish(x, []byte("$SYS/x"), false),
	}
	want := []bool{true, false, true, true, false, true, false, false}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	var zero Set
	c := &Client{Tenant: "t"}
	if !zero.CanPublish(c, []byte("a"), true) || !zero.CanSubscribe(c, []byte("#")) {
		t.Error("the zero Set must allow everything")
	}
	deny := mustSet(t, Config{DefaultDeny: true})
	if deny.CanPublish(c, []byte("a"), false) || deny.CanSubscribe(c, []byte("#")) {
		t.Error("DefaultDeny must deny what no rule decides")
	}
	if deny.CanPublish(nil, []byte("a"), false) || zero.CanSubscribe(nil, []byte("a")) {
		t.Error("a nil client must be denied")
	}
	var rs *Rules
	if rs.Publish(nil, []byte("a"), false) != NoMatch || rs.Len() != 0 {
		t.Error("nil Rules decide nothing")
	}
}

func TestReplace(t *testing.T) {
	t.Parallel()
	s := mustSet(t, Config{DefaultDeny: true, Global: []RuleConfig{r("allow", "publish", "a")}})
	c := &Client{Tenant: "t", User: "u", ClientID: "c"}
	if !s.CanPublish(c, []byte("a"), false) {
		t.Fatal("a must be allowed")
	}
	if err := s.Replace(Config{Global: []RuleConfig{r("maybe", "publish", "a")}}); err == nil {
		t.Fatal("a bad config must be refused")
	}
	if !s.CanPublish(c, []byte("a"), false) {
		t.Fatal("a refused Replace must keep the old rules")
	}
	if err := s.Replace(Config{DefaultDeny: true}); err != nil {
		t.Fatal(err)
	}
	if s.CanPublish(c, []byte("a"), false) {
		t.Fatal("Replace must take effect")
	}
	// Concurrent checks and replacements (meaningful under -race).
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				if i == 0 && j%10 == 0 {
					_ = s.Replace(Config{DefaultDeny: j%20 == 0})
				}
				s.CanPublish(c, []byte("a/b"), false)
				s.CanSubscribe(c, []byte("a/#"))
			}
		}()
	}
	wg.Wait()
}

func TestValidate(t *testing.T) {
	t.Parallel()
	cfg := Config{
		Tenants: map[string][]RuleConfig{
			"t1": {
				r("allow", "publish", "ok/#"),
				r("permit", "publish", "a"),
				r("allow", "read", "a"),
				r("allow", "publish"),
				r("deny", "subscribe", "a/#/b", "a+", "%x", "$share/g/a", "", "x%", "ok/%%/%u"),
			},
			"": {r("allow", "publish", "a")},
		},
		Global: []RuleConfig{r("allow", "all|retain", "x/%u/%c/%t")},
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	var fields []string
	for _, l := range strings.Split(err.Error(), "\n") {
		f, _, _ := strings.Cut(l, ": ")
		fields = append(fields, f)
	}
	want := []string{
		`tenants[""]`,
		`tenants["t1"][1].permission`,
		`tenants["t1"][2].action`,
		`tenants["t1"][3].topics`,
		`tenants["t1"][4].topics[0]`,
		`tenants["t1"][4].topics[1]`,
		`tenants["t1"][4].topics[2]`,
		`tenants["t1"][4].topics[3]`,
		`tenants["t1"][4].topics[4]`,
		`tenants["t1"][4].topics[5]`,
	}
	if d := cmp.Diff(want, fields); d != "" {
		t.Errorf("error fields (-want +got):\n%s\nerror: %v", d, err)
	}
	if _, err := NewSet(cfg); err == nil {
		t.Error("NewSet must refuse what Validate refuses")
	}
	good := Config{Global: []RuleConfig{r("allow", "all|retain", "x/%u/%c/%t", "p%%/+/#")}}
	if err := good.Validate(); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}

func TestPercentLiteral(t *testing.T) {
	t.Parallel()
	s := mustSet(t, Config{DefaultDeny: true, Global: []RuleConfig{r("allow", "publish", "p%%/%u-x/%c%t")}})
	c := &Client{Tenant: "T", User: "u", ClientID: "c"}
	for topic, want := range map[string]bool{"p%/u-x/cT": true, "p%/u-x/c": false, "p%%/u-x/cT": false, "p%/u-/cT": false} {
		if got := s.CanPublish(c, []byte(topic), false); got != want {
			t.Errorf("%q: %v, want %v", topic, got, want)
		}
	}
}

// --- reference model: brute force over a small universe of topics ---

// refMatch is a straightforward MQTT filter match on level slices.
func refMatch(filter, topic []string) bool {
	if len(topic) > 0 && strings.HasPrefix(topic[0], "$") && len(filter) > 0 && (filter[0] == "+" || filter[0] == "#") {
		return false
	}
	var rec func(f, t []string) bool
	rec = func(f, t []string) bool {
		if len(f) == 0 {
			return len(t) == 0
		}
		switch f[0] {
		case "#":
			return true
		case "+":
			return len(t) > 0 && rec(f[1:], t[1:])
		}
		return len(t) > 0 && t[0] == f[0] && rec(f[1:], t[1:])
	}
	return rec(filter, topic)
}

func universe(alpha []string, maxDepth int) [][]string {
	var out [][]string
	var gen func(prefix []string)
	gen = func(prefix []string) {
		if len(prefix) > 0 {
			out = append(out, append([]string(nil), prefix...))
		}
		if len(prefix) == maxDepth {
			return
		}
		for _, a := range alpha {
			gen(append(prefix, a))
		}
	}
	gen(nil)
	return out
}

func validFilterLevels(f []string) bool {
	for i, l := range f {
		if l == "#" && i != len(f)-1 {
			return false
		}
	}
	return !(len(f) == 1 && f[0] == "")
}

// TestAgainstReference checks matchTopic, contains and overlaps against
// the definitions (set inclusion and intersection over every topic of a
// universe large enough to hold a witness for patterns of three levels).
//
// The model counts the empty topic "" as a topic (what "#" after a single
// empty level, "/#", matches as its parent). No client can publish it, so
// the only effect is that in such corner cases an allow rule may cover a
// little less and a deny rule a little more than it could: the safe side.
func TestAgainstReference(t *testing.T) {
	t.Parallel()
	filters := universe([]string{"a", "$s", "+", "#", ""}, 3)
	patterns := universe([]string{"a", "%u", "$%c", "$s", "+", "#", ""}, 3)
	topics := universe([]string{"a", "b", "$s", ""}, 4)
	// The pattern levels "%u" and "$%c" resolve to "a" and "$s".
	c := &Client{User: "a", ClientID: "s"}
	for _, pp := range patterns {
		if !validFilterLevels(pp) {
			continue
		}
		p, err := compilePattern(strings.Join(pp, "/"))
		if err != nil {
			t.Fatalf("%q: %v", pp, err)
		}
		pf := make([]string, len(pp))
		for i, l := range pp {
			pf[i] = strings.NewReplacer("%u", "a", "%c", "s").Replace(l)
		}
		for _, tp := range topics {
			if len(tp) == 1 && tp[0] == "" {
				continue
			}
			if got, want := p.matchTopic([]byte(strings.Join(tp, "/")), c), refMatch(pf, tp); got != want {
				t.Fatalf("match(%q, %q) = %v, want %v", pf, tp, got, want)
			}
		}
		for _, ff := range filters {
			if !validFilterLevels(ff) {
				continue
			}
			inside, meet := true, false
			for _, tp := range topics {
				mf, mp := refMatch(ff, tp), refMatch(pf, tp)
				if mf && !mp {
					inside = false
				}
				if mf && mp {
					meet = true
				}
			}
			f := []byte(strings.Join(ff, "/"))
			if got := p.contains(f, c); got != inside {
				t.Errorf("contains(pattern %q, filter %q) = %v, want %v", pf, ff, got, inside)
			}
			if got := p.overlaps(f, c); got != meet {
				t.Errorf("overlaps(pattern %q, filter %q) = %v, want %v", pf, ff, got, meet)
			}
		}
	}
}

// TestUnsafeDenyFailsClosed: a deny rule whose substituted value is unsafe
// covers the whole tree below its literal levels, and no more.
func TestUnsafeDenyFailsClosed(t *testing.T) {
	t.Parallel()
	s := mustSet(t, Config{Global: []RuleConfig{
		r("deny", "all", "cmd/+/%c/x"),
		r("deny", "publish", "%u/private"),
	}})
	ok := &Client{Tenant: "t", User: "u", ClientID: "c"}
	bad := &Client{Tenant: "t", User: "u/v", ClientID: "c/d"}
	tests := []struct {
		c     *Client
		topic string
		want  bool
	}{
		{ok, "cmd/a/c/x", false},
		{ok, "cmd/a/d/x", true},
		{ok, "u/private", false},
		{ok, "v/private", true},
		{bad, "cmd/a/c/d/x", false},
		{bad, "cmd/a/zzz", false},
		{bad, "other", false}, // "%u/private" with user "u/v" denies everything
	}
	for _, tc := range tests {
		if got := s.CanPublish(tc.c, []byte(tc.topic), false); got != tc.want {
			t.Errorf("%+v %q: %v, want %v", *tc.c, tc.topic, got, tc.want)
		}
	}
	// The subscription side, without the first-level rule.
	s = mustSet(t, Config{Global: []RuleConfig{r("deny", "subscribe", "cmd/+/%c/x")}})
	for filter, want := range map[string]bool{"cmd/#": false, "+/+/q": false, "other/#": true, "cmd": true} {
		if got := s.CanSubscribe(bad, []byte(filter)); got != want {
			t.Errorf("subscribe %q: %v, want %v", filter, got, want)
		}
	}
}
