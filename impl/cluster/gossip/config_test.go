package gossip

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/cluster"
)

func TestParseSecretKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		wantLen int // 0: error; -1: no key
	}{
		{"", -1},
		{"000102030405060708090a0b0c0d0e0f", 16}, // hex, though also valid base64 (24 bytes)
		{strings.Repeat("ab", 24), 24},
		{strings.Repeat("AB", 32), 32},
		{"AAECAwQFBgcICQoLDA0ODw==", 16},
		{"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", 32},
		{"AAECAwQFBgcICQoLDA0O", 0}, // 15 bytes
		{"not a key!", 0},
		{strings.Repeat("z!", 16), 0}, // 32 characters, neither hex nor base64
	} {
		k, err := ParseSecretKey(tc.in)
		switch {
		case tc.wantLen == 0 && err == nil:
			t.Errorf("ParseSecretKey(%q) = %x, want an error", tc.in, k)
		case tc.wantLen == -1 && (err != nil || k != nil):
			t.Errorf("ParseSecretKey(%q) = %x, %v; want no key", tc.in, k, err)
		case tc.wantLen > 0 && (err != nil || len(k) != tc.wantLen):
			t.Errorf("ParseSecretKey(%q) = %d bytes, %v; want %d", tc.in, len(k), err, tc.wantLen)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	good := func() Config {
		return Config{Cluster: "c", NodeID: "n1", Bind: "0.0.0.0:7946", Seeds: []string{"seed.example.com:7946", "10.0.0.2:7946"},
			Roles: cluster.AllRoles, MQTT: "broker-1.example.com:1883"}
	}
	if c := good(); c.Validate() != nil {
		t.Fatalf("good config: %v", c.Validate())
	}
	for name, mod := range map[string]func(*Config){
		"no node id":         func(c *Config) { c.NodeID = "" },
		"no cluster":         func(c *Config) { c.Cluster = "" },
		"bind without port":  func(c *Config) { c.Bind = "0.0.0.0" },
		"bind to a name":     func(c *Config) { c.Bind = "localhost:7946" },
		"advertise a name":   func(c *Config) { c.Advertise = "node1:7946" },
		"seed without port":  func(c *Config) { c.Seeds = []string{"seed"} },
		"bad key":            func(c *Config) { c.SecretKey = "short" },
		"bad mqtt address":   func(c *Config) { c.MQTT = "broker" },
		"negative bound":     func(c *Config) { c.MaxMembers = -1 },
		"cluster name bytes": func(c *Config) { c.Cluster = strings.Repeat("x", cluster.MaxClusterName+1) },
	} {
		c := good()
		mod(&c)
		if c.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// memberlist's log lines keep their level in slog.
func TestSlogWriter(t *testing.T) {
	t.Parallel()
	var got []string
	h := recordHandler{add: func(r slog.Record) { got = append(got, r.Level.String()+" "+r.Message) }}
	w := slogWriter{slog.New(h)}
	for _, l := range []string{"[DEBUG] memberlist: a\n", "[INFO] memberlist: b\n", "[WARN] memberlist: c\n", "[ERR] memberlist: d\n", "no level\n"} {
		if _, err := w.Write([]byte(l)); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"DEBUG memberlist: a", "INFO memberlist: b", "WARN memberlist: c", "ERROR memberlist: d", "INFO memberlist: no level"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

type recordHandler struct{ add func(slog.Record) }

func (h recordHandler) Enabled(context.Context, slog.Level) bool      { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error { h.add(r); return nil }
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h recordHandler) WithGroup(string) slog.Handler                 { return h }

// The queue keeps one report per node, the latest, numbered in arrival
// order, and counts what it replaced or dropped.
func TestQueueCoalesces(t *testing.T) {
	t.Parallel()
	var q queue
	q.init(2)
	m := cluster.Meta{Cluster: "c", Incarnation: 1}
	q.push(cluster.Event{Kind: cluster.Joined, Node: "x", Meta: m})
	q.push(cluster.Event{Kind: cluster.Joined, Node: "y", Meta: m})
	q.push(cluster.Event{Kind: cluster.Dead, Node: "x", Meta: m})
	q.push(cluster.Event{Kind: cluster.Joined, Node: "z", Meta: m}) // a third node: over the bound
	var got []cluster.Event
	for {
		ev, ok := q.pop()
		if !ok {
			break
		}
		got = append(got, ev)
	}
	want := []cluster.Event{{Kind: cluster.Dead, Node: "x", Seq: 3, Meta: m}, {Kind: cluster.Joined, Node: "y", Seq: 2, Meta: m}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if r, c, d := q.counters(); r != 4 || c != 1 || d != 1 {
		t.Errorf("reported %d coalesced %d dropped %d", r, c, d)
	}
}
