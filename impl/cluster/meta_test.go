package cluster

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMetaRoundTrip(t *testing.T) {
	t.Parallel()
	for _, m := range []Meta{
		{Cluster: "c", Incarnation: 0},
		{Cluster: "prod-eu", Incarnation: 1733450000123, Roles: AllRoles, MQTT: "10.0.0.1:1883", Forward: "10.0.0.1:7950", KV: "10.0.0.1:7960"},
		{Cluster: "x", Incarnation: ^uint64(0), Roles: Roles(RoleFrontend), Leaving: true, MQTT: "[::1]:1883"},
		{Cluster: strings.Repeat("n", MaxClusterName), MQTT: "broker-1.example.com:8883"},
	} {
		b, err := m.Encode()
		if err != nil {
			t.Fatalf("Encode(%+v): %v", m, err)
		}
		got, err := DecodeMeta(b)
		if err != nil {
			t.Fatalf("DecodeMeta(%x): %v", b, err)
		}
		if diff := cmp.Diff(m, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

func TestMetaEncodeRefuses(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", MaxAddress-5) + ":1883"
	for name, m := range map[string]Meta{
		"no cluster":    {},
		"long cluster":  {Cluster: strings.Repeat("c", MaxClusterName+1)},
		"unknown role":  {Cluster: "c", Roles: 1 << 7},
		"no port":       {Cluster: "c", MQTT: "host"},
		"port zero":     {Cluster: "c", KV: "host:0"},
		"port too big":  {Cluster: "c", KV: "host:65536"},
		"no host":       {Cluster: "c", Forward: ":7950"},
		"long address":  {Cluster: "c", MQTT: "a" + long},
		"invalid utf-8": {Cluster: "\xff"},
	} {
		if _, err := m.Encode(); err == nil {
			t.Errorf("%s: Encode(%+v) succeeded", name, m)
		}
	}
	// The largest valid metadata fits in memberlist's 512 bytes.
	m := Meta{Cluster: strings.Repeat("c", MaxClusterName), Incarnation: ^uint64(0), Roles: AllRoles, Leaving: true,
		MQTT: long, Forward: long, KV: long}
	if b, err := m.Encode(); err != nil || len(b) > MaxMetaSize {
		t.Errorf("largest metadata: %d bytes, %v", len(b), err)
	}
}

func TestDecodeMetaRefuses(t *testing.T) {
	t.Parallel()
	valid, err := Meta{Cluster: "c", Incarnation: 300, Roles: AllRoles, MQTT: "h:1"}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	with := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(valid)) }
	for name, b := range map[string][]byte{
		"empty":             nil,
		"short":             {1, 0},
		"version 0":         with(func(b []byte) []byte { b[0] = 0; return b }),
		"v1 unknown flag":   with(func(b []byte) []byte { b[1] = 2; return b }),
		"v1 unknown role":   with(func(b []byte) []byte { b[2] = 0x80; return b }),
		"v1 trailing bytes": append(bytes.Clone(valid), 0),
		"truncated string":  valid[:len(valid)-1],
		"bad incarnation":   {1, 0, 0, 0x80, 0x80},
		"too large":         make([]byte, MaxMetaSize+1),
		"string past end":   {1, 0, 0, 0, 0x7f, 'c'},
		"empty cluster":     {1, 0, 0, 0, 0, 0, 0, 0},
	} {
		if m, err := DecodeMeta(b); err == nil {
			t.Errorf("%s: DecodeMeta(%x) = %+v", name, b, m)
		}
	}
}

// A later version may append fields and set bits v1 does not know; v1
// reads what it knows.
func TestDecodeMetaNewerVersion(t *testing.T) {
	t.Parallel()
	b, err := Meta{Cluster: "c", Incarnation: 7, Roles: Roles(RoleKV), KV: "h:2"}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	b[0], b[1], b[2] = 2, b[1]|0x80, b[2]|0x40
	b = append(b, "future field"...)
	got, err := DecodeMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Meta{Cluster: "c", Incarnation: 7, Roles: Roles(RoleKV), KV: "h:2"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseRoles(t *testing.T) {
	t.Parallel()
	r, err := ParseRoles([]string{"kv", "frontend", "kv"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"frontend", "kv"}, r.Names()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if AllRoles.String() != "frontend,routing,inbox,retain,kv" {
		t.Errorf("AllRoles = %s", AllRoles)
	}
	if _, err := ParseRoles([]string{"router"}); err == nil {
		t.Error("unknown role accepted")
	}
}

func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []Meta{
		{Cluster: "c"},
		{Cluster: "prod", Incarnation: 1733450000123, Roles: AllRoles, Leaving: true, MQTT: "10.0.0.1:1883", Forward: "[::1]:7950", KV: "kv-1:7960"},
	} {
		b, err := m.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		newer := append(bytes.Clone(b), 9, 9)
		newer[0] = 2
		f.Add(newer)
	}
	f.Add([]byte{1, 0, 0, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMeta(b)
		if err != nil {
			return
		}
		// Whatever decodes is valid, encodes, and decodes to itself.
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("decoded %+v from %x, but Encode: %v", m, b, err)
		}
		again, err := DecodeMeta(enc)
		if err != nil {
			t.Fatalf("DecodeMeta(Encode(%+v)): %v", m, err)
		}
		if diff := cmp.Diff(m, again); diff != "" {
			t.Fatalf("re-decode (-first +again):\n%s", diff)
		}
	})
}
