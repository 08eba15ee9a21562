package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSelector(t *testing.T) {
	t.Parallel()
	labels := map[string]string{"site": "plant-1", "arch": "arm64", "gpu": ""}
	tests := []struct {
		sel   string
		match bool
		canon string
		bad   bool
	}{
		{sel: "", match: true, canon: ""},
		{sel: "site=plant-1", match: true, canon: "site=plant-1"},
		{sel: "site == plant-1", match: true, canon: "site=plant-1"},
		{sel: "site=plant-2", match: false, canon: "site=plant-2"},
		{sel: "site!=plant-2", match: true, canon: "site!=plant-2"},
		{sel: "zone!=a", match: true, canon: "zone!=a"},
		{sel: "arch in (arm64, amd64)", match: true, canon: "arch in (amd64,arm64)"},
		{sel: "arch notin (arm64)", match: false, canon: "arch notin (arm64)"},
		{sel: "zone notin (a)", match: true, canon: "zone notin (a)"},
		{sel: "gpu", match: true, canon: "gpu"},
		{sel: "!gpu", match: false, canon: "!gpu"},
		{sel: "!zone,site=plant-1", match: true, canon: "!zone,site=plant-1"},
		{sel: "site=plant-1,arch=amd64", match: false, canon: "site=plant-1,arch=amd64"},
		{sel: "example.com/role=edge", match: false, canon: "example.com/role=edge"},
		{sel: "site=", match: false, canon: "site="},
		{sel: "=x", bad: true},
		{sel: "site in (a", bad: true},
		{sel: "site in a", bad: true},
		{sel: "site=a b", bad: true},
		{sel: "site=a,", bad: true},
		{sel: "site=a/b", bad: true},
		{sel: "a<b", bad: true},
	}
	for _, tc := range tests {
		sel, err := ParseSelector(tc.sel)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: parsed, want an error", tc.sel)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.sel, err)
			continue
		}
		if got := sel.Matches(labels); got != tc.match {
			t.Errorf("%q matches %v, want %v", tc.sel, got, tc.match)
		}
		if got := sel.String(); got != tc.canon {
			t.Errorf("%q canonical %q, want %q", tc.sel, got, tc.canon)
		}
	}
}

func FuzzSelector(f *testing.F) {
	for _, s := range []string{"", "a=b", "a in (x,y),!b", "k notin (z)", "x!=y,z", "a.b/c==d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseSelector(s)
		if err != nil {
			return
		}
		// The canonical form parses to the same selector.
		again, err := ParseSelector(sel.String())
		if err != nil {
			t.Fatalf("canonical %q of %q does not parse: %v", sel.String(), s, err)
		}
		if again.String() != sel.String() {
			t.Fatalf("canonical form not stable: %q then %q", sel.String(), again.String())
		}
		_ = sel.Matches(map[string]string{"a": "b"})
	})
}

func TestValidName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "node-1", "n.1_x", "0"} {
		if err := ValidName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "a-", "A", "a/b", "a+b", "a#", "$cloud", string(make([]byte, 64))} {
		if ValidName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestTopics(t *testing.T) {
	t.Parallel()
	if n, ok := NodeOfUpTopic(NodeUpTopic("edge-7")); !ok || n != "edge-7" {
		t.Errorf("NodeOfUpTopic = %q %v", n, ok)
	}
	for _, bad := range []string{"skybridge/nodes/a/b/up", "skybridge/nodes//up", "x/edge/up", NodeDownTopic("a")} {
		if _, ok := NodeOfUpTopic(bad); ok {
			t.Errorf("%q accepted as an up topic", bad)
		}
	}
}

func TestShadowDelta(t *testing.T) {
	t.Parallel()
	s := Shadow{
		Desired:  map[string]json.RawMessage{"setpoint": json.RawMessage(`21.5`), "mode": json.RawMessage(`"eco"`), "on": json.RawMessage(`true`)},
		Reported: map[string]json.RawMessage{"setpoint": json.RawMessage(`21.50`), "mode": json.RawMessage(`"comfort"`)},
	}
	s.ComputeDelta()
	want := map[string]json.RawMessage{"mode": json.RawMessage(`"eco"`), "on": json.RawMessage(`true`)}
	if d := cmp.Diff(want, s.Delta); d != "" {
		t.Errorf("delta (-want +got):\n%s", d)
	}
}

func TestAppValidate(t *testing.T) {
	t.Parallel()
	good := App{Name: "web", Selector: "site=a", Artifact: Artifact{SHA256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		Mounts: []Mount{{Config: "c", Dir: "conf"}, {Secret: "s", Dir: "sec/x"}}}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid app refused: %v", err)
	}
	bad := good
	bad.Mounts = []Mount{{Config: "c", Secret: "s", Dir: "../x"}}
	bad.Restart.Policy = "sometimes"
	bad.Health = &Health{Exec: []string{"true"}, TCP: ":1"}
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad app accepted")
	}
	for _, want := range []string{"mounts[0]: exactly one", "mounts[0].dir", "restart.policy", "health: exactly one"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

func TestJoinRoundTrip(t *testing.T) {
	t.Parallel()
	j := JoinToken{API: "https://cloud:8443", CAHash: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Token: "id.secret"}
	got, err := DecodeJoin(EncodeJoin(j))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(j, got); d != "" {
		t.Error(d)
	}
	if _, err := DecodeJoin("!!"); err == nil {
		t.Error("garbage accepted")
	}
}

func TestPropertyCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		typ PropertyType
		v   string
		ok  bool
	}{
		{PropInt, "3", true}, {PropInt, "3.5", false}, {PropFloat, "3.5", true}, {PropBool, "true", true},
		{PropBool, "1", false}, {PropString, `"x"`, true}, {PropString, "x", false},
		// int64's range, exactly (found by the gateway's FuzzDecode).
		{PropInt, "9223372036854775600", true}, {PropInt, "9223372036854775807", true}, {PropInt, "-9223372036854775808", true},
		{PropInt, "9223372036854775808", false}, {PropInt, "1e3", true}, {PropInt, "1e19", false}, {PropInt, `"3"`, false},
	}
	for _, tc := range tests {
		p := Property{Name: "p", Type: tc.typ}
		if err := p.CheckValue(json.RawMessage(tc.v)); (err == nil) != tc.ok {
			t.Errorf("%s %s: err %v, want ok=%v", tc.typ, tc.v, err, tc.ok)
		}
	}
}
