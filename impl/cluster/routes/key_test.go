package routes

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestKeyRoundTrip(t *testing.T) {
	t.Parallel()
	for _, r := range []Route{
		{Tenant: "acme", Filter: "a/b/c", Node: "n1"},
		{Tenant: "", Filter: "#", Node: "n2"},
		{Tenant: "t", Filter: "+/x/#", Node: "node-3"},
		{Tenant: "t", Filter: "a", Group: "g", Node: "n"},
		{Tenant: "t", Filter: "/leading/empty", Node: "n"},
		{Tenant: "t", Filter: "$SYS/broker/#", Node: "n"},
		{Tenant: "tenant with spaces and ü", Filter: "a//b/", Node: "n"},
	} {
		k, err := Key(r)
		if err != nil {
			t.Fatalf("Key(%+v): %v", r, err)
		}
		got, err := ParseKey(k)
		if err != nil {
			t.Fatalf("ParseKey(Key(%+v)): %v", r, err)
		}
		if d := cmp.Diff(r, got); d != "" {
			t.Errorf("round trip (-want +got):\n%s", d)
		}
		p, ok := PrefixOf(k)
		if !ok || !bytes.HasPrefix(k, p) {
			t.Errorf("PrefixOf(%q) = %q, %v", k, p, ok)
		}
	}
	// $share/group/filter is taken apart.
	k, err := Key(Route{Tenant: "t", Filter: "$share/g/a/b", Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := ParseKey(k); got != (Route{Tenant: "t", Filter: "a/b", Group: "g", Node: "n"}) {
		t.Errorf("shared: %+v", got)
	}
}

func TestKeyRefusals(t *testing.T) {
	t.Parallel()
	for _, r := range []Route{
		{Tenant: "t", Filter: "", Node: "n"},
		{Tenant: "t", Filter: "a", Node: ""},
		{Tenant: "t\x00", Filter: "a", Node: "n"},
		{Tenant: "t", Filter: "a\x00b", Node: "n"},
		{Tenant: "t", Filter: "a", Node: "n\x00"},
		{Tenant: "t", Filter: "a", Group: "g\x00", Node: "n"},
		{Tenant: "t", Filter: "$share/g/a", Group: "h", Node: "n"},
	} {
		if k, err := Key(r); err == nil {
			t.Errorf("Key(%+v) = %q, want an error", r, k)
		}
	}
	for _, k := range [][]byte{nil, []byte("x"), []byte("r"), []byte("r\x05ab"), []byte("r\x01ta\x00\x00\x00"),
		[]byte("r\x01ta/b\x00\x00\x00n"), []byte("r\x01ta\x00b\x00\x00n"), []byte("r\x01ta\x00\x00n")} {
		if r, err := ParseKey(k); err == nil {
			t.Errorf("ParseKey(%q) = %+v, want an error", k, r)
		}
	}
}

// A topic's prefixes are those of the filters that can match it, and no
// other filter's key starts with one of them.
func TestPrefixes(t *testing.T) {
	t.Parallel()
	key := func(tenant, filter string) []byte {
		k, err := Key(Route{Tenant: tenant, Filter: filter, Node: "n"})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	covered := func(ps [][]byte, k []byte) bool {
		for _, p := range ps {
			if bytes.HasPrefix(k, p) {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		topic    string
		in, out  []string
		nPrefix  int
		tenant   string
		otherTen string
	}{
		{"a/b", []string{"a/b", "a/#", "+/b", "#", "a", "a/+/c"}, []string{"ab/b", "b/#", "$SYS/#"}, 3, "t", "u"},
		{"$SYS/x", []string{"$SYS/x", "$SYS/#"}, []string{"#", "+/x"}, 1, "t", "u"},
		{"a", []string{"a", "#", "+"}, []string{"ab"}, 3, "", "t"},
	} {
		ps := Prefixes(nil, c.tenant, []byte(c.topic))
		if len(ps) != c.nPrefix {
			t.Errorf("%q: %d prefixes, want %d", c.topic, len(ps), c.nPrefix)
		}
		for _, f := range c.in {
			if !covered(ps, key(c.tenant, f)) {
				t.Errorf("%q: filter %q not under its prefixes", c.topic, f)
			}
			if covered(ps, key(c.otherTen, f)) {
				t.Errorf("%q: tenant %q's filter %q under tenant %q's prefixes", c.topic, c.otherTen, f, c.tenant)
			}
		}
		for _, f := range c.out {
			if covered(ps, key(c.tenant, f)) {
				t.Errorf("%q: filter %q under its prefixes", c.topic, f)
			}
		}
	}
}

func FuzzParseKey(f *testing.F) {
	for _, r := range []Route{{Tenant: "t", Filter: "a/b", Node: "n"}, {Tenant: "x", Filter: "#", Group: "g", Node: "n"}} {
		k, _ := Key(r)
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, k []byte) {
		r, err := ParseKey(k)
		if err != nil {
			return
		}
		// What decodes encodes back to the same key.
		k2, err := Key(r)
		if err != nil {
			t.Fatalf("ParseKey(%q) = %+v, which Key refuses: %v", k, r, err)
		}
		if !bytes.Equal(k, k2) {
			t.Fatalf("ParseKey(%q) = %+v, encoded again as %q", k, r, k2)
		}
	})
}
