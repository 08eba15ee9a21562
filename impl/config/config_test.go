package config

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/cluster"
	"github.com/skybridge-mq/skybridge/impl/raftkv"
)

func TestParseDefaultsAndOverrides(t *testing.T) {
	t.Parallel()
	f, err := Parse(strings.NewReader(`
listeners:
  - type: ws
    addr: 127.0.0.1:0
limits:
  connect_timeout: 3s
mqtt:
  max_qos: 1
  shared_subscriptions: false
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Listener{{Name: "ws", Type: "ws", Addr: "127.0.0.1:0", DefaultTenant: "default"}}
	if d := cmp.Diff(want, f.Listeners); d != "" {
		t.Errorf("listeners (-want +got):\n%s", d)
	}
	if f.Limits.ConnectTimeout != 3*time.Second || f.Limits.MaxQueued != 10000 {
		t.Errorf("limits = %+v", f.Limits)
	}
	sc := f.Server(nil)
	if sc.Broker.Session.MaxQoS != 1 || sc.Broker.Session.SharedSubscriptions || !sc.Broker.Session.RetainAvailable {
		t.Errorf("session config = %+v", sc.Broker.Session)
	}
}

func TestEmptyFileIsTheDefault(t *testing.T) {
	t.Parallel()
	f, err := Parse(strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(Default().Listeners, f.Listeners); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestValidationNamesTheField(t *testing.T) {
	t.Parallel()
	cases := []struct{ yaml, want string }{
		{"mqtt:\n  max_qos: 3\n", "mqtt.max_qos"},
		{"listeners:\n  - type: udp\n    addr: x:1\n", "listeners[0].type"},
		{"listeners:\n  - type: tls\n    addr: x:1\n", "listeners[0]: type tls needs cert_file"},
		{"listeners: []\n", "listeners: at least one"},
		{"limits:\n  max_inflight: 0\n", "limits.max_inflight"},
		{"limits:\n  max_packet_size: 10\n", "limits.max_packet_size"},
		{"limits:\n  recieve_maximum: 5\n", "limits.recieve_maximum: unknown field"},
		{"log:\n  level: loud\n", "log.level"},
		{"auth:\n  limits:\n    max_delay: 1ms\n", "auth.limits.max_delay: must be at least auth.limits.delay"},
		{"auth:\n  limits:\n    queue: -1\n", "auth.limits.queue: cannot be negative"},
		{"auth:\n  limits:\n    forget_after: 1m\n", "auth.limits.forget_after"},
		{"auth:\n  limits:\n    max_tracked: 0\n", "auth.limits.max_tracked"},
		{"mqtt:\n  shared_policy: fair\n", "mqtt.shared_policy"},
		{"storage:\n  type: floppy\n", "storage.type"},
		{"auth:\n  http: {url: \"ftp://x\"}\n", "auth.http.url"},
		{"auth:\n  http: {headers: {Authorization: x}}\n", "auth.http.url: required with headers"},
		{"acl:\n  http: {url: \"http://x\", headers: {\"a b\": x}}\n", "acl.http.headers: \"a b\" is not a header name"},
		{"events:\n  webhook: {url: \"http://x\", timeout: -1s}\n", "events.webhook.timeout"},
		{"auth:\n  http: {url: \"http://x\", cache: {size: -2}}\n", "auth.http.cache.size"},
		{"bridges:\n  - name: b\n    remote: {address: \"tcp://x:1\"}\n    local: {address: \"tcp://127.0.0.1:1883\"}\n", "bridges[0]"},
		{"bridges:\n  - name: b\n    remote: {address: \"tcp://x:1\"}\n    local: {address: \"tcp://127.0.0.1:1883\"}\n    out: [{filter: a/#}]\n    queue: {dir: data/b}\n",
			"bridges[0].queue.dir: \"data/b\" is inside storage.dir"},
		{"cluster:\n  node_id: n1\n  bind: 127.0.0.1:7946\n", "cluster.name: required"},
		{"cluster:\n  name: c\n  bind: 127.0.0.1:7946\n", "cluster.node_id: required"},
		{"cluster:\n  name: c\n  node_id: n1\n", "cluster.bind: required"},
		{"cluster:\n  name: c\n  node_id: n1\n  bind: localhost:7946\n", "cluster: gossip: bind"},
		{"cluster:\n  name: c\n  node_id: n1\n  bind: 127.0.0.1:7946\n  roles: [frontend, cook]\n", "unknown role \"cook\""},
		{"cluster:\n  name: c\n  node_id: n1\n  bind: 127.0.0.1:7946\n  seeds: [nohost]\n", "cluster: gossip: seed \"nohost\""},
		{"cluster:\n  name: c\n  node_id: n1\n  bind: 127.0.0.1:7946\n  secret_key: short\n", "secret_key"},
		{"cluster:\n  name: c\n  node_id: n1\n  bind: 127.0.0.1:7946\n  reconnect_interval: -1s\n", "reconnect_interval"},
		{"cluster:\n  name: c\n  node_id: n1\n  bind: 127.0.0.1:7946\n  gossip_port: 1\n", "cluster.gossip_port: unknown field"},
	}
	for _, c := range cases {
		_, err := Parse(strings.NewReader(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", c.yaml, err, c.want)
		}
	}
}

func TestExpandHeader(t *testing.T) {
	t.Parallel()
	env := map[string]string{"TOKEN": "t0k", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, c := range []struct{ in, out, missing string }{
		{"Bearer ${TOKEN}", "Bearer t0k", ""},
		{"${TOKEN}${TOKEN}", "t0kt0k", ""},
		{"a${EMPTY}b", "ab", ""},
		{"$TOKEN and $ and ${", "$TOKEN and $ and ${", ""},
		{"${not a name} ${TOKEN}", "${not a name} t0k", ""},
		{"x ${NOPE} ${ALSO}", "x  ", "NOPE"},
	} {
		out, missing := ExpandHeader(c.in, lookup)
		if out != c.out || missing != c.missing {
			t.Errorf("ExpandHeader(%q) = %q, %q; want %q, %q", c.in, out, missing, c.out, c.missing)
		}
	}
}

func TestBridgesGetTheirDefaults(t *testing.T) {
	t.Parallel()
	f, err := Parse(strings.NewReader("bridges:\n  - name: cloud\n    remote: {address: \"tcp://x:1\"}\n    local: {address: \"tcp://127.0.0.1:1883\"}\n    out: [{filter: a/#}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if b := f.Bridges[0]; b.Queue.Dir == "" || b.MaxInflight == 0 || b.Remote.ClientID == "" {
		t.Fatalf("bridge defaults not filled in: %+v", b)
	}
}

func TestAdminSectionReachesTheServer(t *testing.T) {
	t.Parallel()
	f, err := Parse(strings.NewReader("admin:\n  addr: 127.0.0.1:0\n  token: a\n  metrics_token: m\n  hosts: [broker.lan]\n"))
	if err != nil {
		t.Fatal(err)
	}
	sc := f.Server(nil)
	if sc.AdminToken != "a" || sc.MetricsToken != "m" || !cmp.Equal(sc.AdminHosts, []string{"broker.lan"}) {
		t.Errorf("server config: token %q, metrics token %q, hosts %q", sc.AdminToken, sc.MetricsToken, sc.AdminHosts)
	}
}

func TestClusterSection(t *testing.T) {
	t.Parallel()
	f, err := Parse(strings.NewReader("cluster:\n  name: prod\n  node_id: b1\n  bind: 0.0.0.0:7946\n  advertise: 10.0.0.1:7946\n  seeds: [b2.internal:7946]\n  secret_key: 000102030405060708090a0b0c0d0e0f\n  reconnect_interval: 2s\n  reconnect_timeout: 1h\n"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := f.Cluster.Gossip("10.0.0.1:1883")
	if err != nil {
		t.Fatal(err)
	}
	if g.Cluster != "prod" || g.NodeID != "b1" || g.Bind != "0.0.0.0:7946" || g.Advertise != "10.0.0.1:7946" ||
		len(g.Seeds) != 1 || g.MQTT != "10.0.0.1:1883" || g.Roles != cluster.AllRoles || g.SecretKey == "" ||
		g.ReconnectInterval != 2*time.Second || g.ReconnectTimeout != time.Hour {
		t.Fatalf("gossip config %+v", g)
	}
	f, err = Parse(strings.NewReader("cluster:\n  name: prod\n  node_id: b1\n  bind: 0.0.0.0:7946\n  roles: [frontend, kv]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if g, err := f.Cluster.Gossip(""); err != nil || g.Roles.String() != "frontend,kv" {
		t.Fatalf("roles: %v %v", g.Roles, err)
	}
	if f, err := Parse(strings.NewReader("")); err != nil || f.Cluster != nil {
		t.Fatalf("no cluster section: %+v %v", f.Cluster, err)
	}
}

// The configurations `make cluster` starts are valid, and name one
// raftkv cluster of three nodes.
func TestClusterExamples(t *testing.T) {
	t.Parallel()
	for i := 1; i <= 3; i++ {
		path := fmt.Sprintf("../../examples/cluster/n%d.yaml", i)
		r, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		f, err := Parse(r)
		r.Close()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if err := f.Validate(); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		addrs, ids, err := f.Cluster.KVPeers()
		if err != nil || len(ids) != 3 || f.Cluster.KV.NodeID != uint64(i) || addrs[raftkv.NodeID(i)] != f.Cluster.KV.Bind || f.Cluster.Forward == "" {
			t.Errorf("%s: cluster %+v, peers %v %v", path, f.Cluster, addrs, err)
		}
	}
}
