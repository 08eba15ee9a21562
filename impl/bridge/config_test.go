package bridge

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.yaml.in/yaml/v3"
)

func TestConfigDefaults(t *testing.T) {
	src := `
bridges:
  - name: cloud
    remote:
      address: ssl://broker.example.com
      username: site-7
      password: secret
    local:
      address: tcp://127.0.0.1:1883
      username: acme/bridge
    out:
      - filter: sensors/#
        prefix: site-7/
    in:
      - filter: site-7/cmd/#
        strip: site-7/
        qos: 0
`
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ka, se := DefaultKeepAlive, DefaultSessionExpiry
	q1, q0 := 1, 0
	endpoint := func(addr, user, pass string) Endpoint {
		return Endpoint{Address: addr, ClientID: "skybridge-bridge-cloud", Username: user, Password: pass, Version: "5",
			KeepAlive: &ka, SessionExpiry: &se, ConnectTimeout: DefaultConnectTimeout,
			ReconnectMin: DefaultReconnectMin, ReconnectMax: DefaultReconnectMax}
	}
	want := Config{Bridges: []BridgeConfig{{
		Name:   "cloud",
		Remote: endpoint("ssl://broker.example.com", "site-7", "secret"),
		Local:  endpoint("tcp://127.0.0.1:1883", "acme/bridge", ""),
		Out:    []Rule{{Filter: "sensors/#", Prefix: "site-7/", QoS: &q1}},
		In:     []Rule{{Filter: "site-7/cmd/#", Strip: "site-7/", QoS: &q0}},
		Queue: Queue{Dir: "bridges/cloud", MaxMessages: DefaultMaxMessages, MaxBytes: DefaultMaxBytes,
			DropPolicy: DropOldest},
		MaxInflight: DefaultMaxInflight,
		MaxHops:     DefaultMaxHops,
	}}}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Fatalf("defaults (-want +got):\n%s", diff)
	}
	a, err := parseAddress(c.Bridges[0].Remote.Address)
	if err != nil || a.scheme != "ssl" || a.host != "broker.example.com:8883" {
		t.Fatalf("parseAddress: %+v %v", a, err)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	ok := func() BridgeConfig {
		return BridgeConfig{
			Name:   "b",
			Remote: Endpoint{Address: "tcp://r:1883"},
			Local:  Endpoint{Address: "tcp://l:1883"},
			Out:    []Rule{{Filter: "a/#"}},
		}
	}
	neg := -time.Second
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		want []string // substrings of the error, each naming a field
	}{
		{"valid", func(*Config) {}, nil},
		{"no name", func(c *Config) { c.Bridges[0].Name = "" }, []string{"bridges[0].name: required"}},
		{"bad name", func(c *Config) { c.Bridges[0].Name = "a b" }, []string{"bridges[0].name:"}},
		{"duplicate name", func(c *Config) {
			b := ok()
			b.Queue.Dir = "other"
			c.Bridges = append(c.Bridges, b)
		}, []string{"bridges[1].name: \"b\" is already the name of bridges[0]"}},
		{"shared queue dir", func(c *Config) {
			b := ok()
			b.Name = "c"
			b.Queue.Dir = "bridges/b"
			c.Bridges = append(c.Bridges, b)
		}, []string{"bridges[1].queue.dir:"}},
		{"no address", func(c *Config) { c.Bridges[0].Remote.Address = "" }, []string{"bridges[0].remote.address: required"}},
		{"bad scheme", func(c *Config) { c.Bridges[0].Local.Address = "http://x" }, []string{"bridges[0].local.address:", "scheme"}},
		{"path on tcp", func(c *Config) { c.Bridges[0].Remote.Address = "tcp://x:1/mqtt" }, []string{"bridges[0].remote.address:"}},
		{"version", func(c *Config) { c.Bridges[0].Remote.Version = "3.1" }, []string{"bridges[0].remote.version: must be 5 or 3.1.1"}},
		{"local 3.1.1", func(c *Config) { c.Bridges[0].Local.Version = "3.1.1" }, []string{"bridges[0].local.version:"}},
		{"keep alive", func(c *Config) { c.Bridges[0].Remote.KeepAlive = &neg }, []string{"bridges[0].remote.keep_alive:"}},
		{"session expiry", func(c *Config) { c.Bridges[0].Local.SessionExpiry = &neg }, []string{"bridges[0].local.session_expiry:"}},
		{"reconnect", func(c *Config) {
			c.Bridges[0].Remote.ReconnectMin, c.Bridges[0].Remote.ReconnectMax = 2*time.Second, time.Second
		}, []string{"bridges[0].remote.reconnect_max:"}},
		{"tls pair", func(c *Config) { c.Bridges[0].Remote.TLS.CertFile = "c.pem" }, []string{"bridges[0].remote.tls: cert_file and key_file"}},
		{"no rules", func(c *Config) { c.Bridges[0].Out = nil }, []string{"bridges[0].out: a bridge needs at least one"}},
		{"bad filter", func(c *Config) { c.Bridges[0].Out[0].Filter = "a/#/b" }, []string{"bridges[0].out[0].filter:"}},
		{"shared filter", func(c *Config) { c.Bridges[0].In = []Rule{{Filter: "$share/g/x"}} }, []string{"bridges[0].in[0].filter:", "shared"}},
		{"strip not a prefix", func(c *Config) { c.Bridges[0].Out[0].Strip = "b/" }, []string{"bridges[0].out[0].strip:"}},
		{"strip wildcard", func(c *Config) { c.Bridges[0].Out[0] = Rule{Filter: "+/x", Strip: "+/"} }, []string{"bridges[0].out[0].strip: \"+/\": no wildcards"}},
		{"prefix wildcard", func(c *Config) { c.Bridges[0].Out[0].Prefix = "#/" }, []string{"bridges[0].out[0].prefix:"}},
		{"qos 2", func(c *Config) { c.Bridges[0].Out[0].QoS = qos(2) }, []string{"bridges[0].out[0].qos: must be 0 or 1"}},
		{"overlap", func(c *Config) { c.Bridges[0].Out = append(c.Bridges[0].Out, Rule{Filter: "+/b"}) }, []string{"bridges[0].out[1].filter: \"+/b\" overlaps out[0]"}},
		{"311 echo", func(c *Config) {
			c.Bridges[0].Remote.Version = "3.1.1"
			c.Bridges[0].Out[0].Prefix = "s/"
			c.Bridges[0].In = []Rule{{Filter: "s/a/x"}}
		}, []string{"bridges[0].in[0].filter: \"s/a/x\" overlaps the topics out[0] publishes"}},
		{"311 disjoint", func(c *Config) {
			c.Bridges[0].Remote.Version = "3.1.1"
			c.Bridges[0].Out[0].Prefix = "s/"
			c.Bridges[0].In = []Rule{{Filter: "cmd/#"}}
		}, nil},
		{"client id twice", func(c *Config) {
			b := ok()
			b.Name, b.Queue.Dir = "c", "qc"
			b.Remote.ClientID = "skybridge-bridge-b"
			c.Bridges = append(c.Bridges, b)
		}, []string{"bridges[1].remote.client_id: \"skybridge-bridge-b\" on r:1883 is also bridges[0].remote.client_id"}},
		{"same broker both sides", func(c *Config) { c.Bridges[0].Local.Address = "tcp://r:1883" }, []string{"bridges[0].remote.client_id:"}},
		{"inflight", func(c *Config) { c.Bridges[0].MaxInflight = 70000 }, []string{"bridges[0].max_inflight:"}},
		{"hops", func(c *Config) { c.Bridges[0].MaxHops = -1 }, []string{"bridges[0].max_hops:"}},
		{"queue", func(c *Config) {
			c.Bridges[0].Queue = Queue{MaxMessages: -1, MaxBytes: 10, DropPolicy: "drop_newest"}
		}, []string{"bridges[0].queue.max_messages:", "bridges[0].queue.max_bytes:", "bridges[0].queue.drop_policy: must be drop_oldest or refuse_new"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Bridges: []BridgeConfig{ok()}}
			tc.edit(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// New refuses what Validate refuses, and unreadable TLS files, naming the
// field; it does not modify the caller's configuration.
func TestNewErrors(t *testing.T) {
	cfg := Config{Bridges: []BridgeConfig{{
		Name: "b", Remote: Endpoint{Address: "ssl://r", TLS: TLS{CAFile: "/nonexistent/ca.pem"}},
		Local: Endpoint{Address: "tcp://l"}, Out: []Rule{{Filter: "x"}},
	}}}
	_, err := New(cfg, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "remote.tls.ca_file") {
		t.Fatalf("err = %v, want one naming remote.tls.ca_file", err)
	}
	if cfg.Bridges[0].Out[0].QoS != nil || cfg.Bridges[0].Queue.Dir != "" {
		t.Fatalf("New modified the caller's configuration: %+v", cfg.Bridges[0])
	}
	cfg.Bridges[0].Name = ""
	if _, err := New(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), "bridges[0].name") {
		t.Fatalf("err = %v", err)
	}
}

// The configuration round-trips through YAML with the documented names.
func TestConfigYAMLNames(t *testing.T) {
	ka := 30 * time.Second
	c := Config{Bridges: []BridgeConfig{{Name: "x", Remote: Endpoint{Address: "tcp://r", KeepAlive: &ka, TLS: TLS{CAFile: "ca"}},
		Out: []Rule{{Filter: "a", Prefix: "p/", QoS: qos(0)}}, Queue: Queue{DropPolicy: RefuseNew}, MaxInflight: 5}}}
	var buf bytes.Buffer
	if err := yaml.NewEncoder(&buf).Encode(c); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bridges:", "remote:", "address: tcp://r", "keep_alive: 30s", "ca_file: ca", "out:", "filter: a",
		"prefix: p/", "qos: 0", "queue:", "drop_policy: refuse_new", "max_inflight: 5", "client_id:", "session_expiry:",
		"reconnect_min:", "max_messages:", "max_bytes:", "max_hops:", "clean_start:", "connect_timeout:", "insecure_skip_verify:"} {
		if !strings.Contains(buf.String(), name) {
			t.Errorf("YAML lacks %q:\n%s", name, buf.String())
		}
	}
	var back Config
	if err := yaml.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, back, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("YAML round trip (-want +got):\n%s", diff)
	}
	// keep_alive: 0s is "off", not "default".
	var off Config
	if err := yaml.Unmarshal([]byte("bridges: [{name: x, remote: {address: tcp://r, keep_alive: 0s, session_expiry: 0s}, local: {address: tcp://l}, out: [{filter: a}]}]"), &off); err != nil {
		t.Fatal(err)
	}
	if err := off.Validate(); err != nil {
		t.Fatal(err)
	}
	if r := off.Bridges[0].Remote; *r.KeepAlive != 0 || *r.SessionExpiry != 0 {
		t.Fatalf("keep_alive %v, session_expiry %v; want 0s, 0s", *r.KeepAlive, *r.SessionExpiry)
	}
}
