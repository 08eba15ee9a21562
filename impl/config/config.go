// Package config reads Skybridge's YAML configuration file, fills in the
// documented defaults, validates every field (errors name the field), and
// turns it into the runtime's configuration.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/skybridge-mq/skybridge/impl/acl"
	"github.com/skybridge-mq/skybridge/impl/bridge"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/cluster"
	"github.com/skybridge-mq/skybridge/impl/cluster/gossip"
	"github.com/skybridge-mq/skybridge/impl/event"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/raftkv"
	"github.com/skybridge-mq/skybridge/impl/server"
	"github.com/skybridge-mq/skybridge/impl/tenant"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// File is the configuration file's structure. Every field has a default
// (see Default); a file only says what differs.
type File struct {
	Listeners []Listener `yaml:"listeners"`
	Admin     Admin      `yaml:"admin"`
	Limits    Limits     `yaml:"limits"`
	MQTT      MQTT       `yaml:"mqtt"`
	Storage   Storage    `yaml:"storage"`
	Log       Log        `yaml:"log"`
	// Tenants holds per-tenant settings: defaults and overrides by name.
	// Reloaded from the file while the broker runs.
	Tenants tenant.Config `yaml:"tenants"`
	Auth    Auth          `yaml:"auth"`
	ACL     ACL           `yaml:"acl"`
	Events  Events        `yaml:"events"`
	// Bridges forward messages to and from other brokers (docs/BRIDGE.md).
	Bridges []bridge.BridgeConfig `yaml:"bridges"`
	// Cluster, when present, makes the node a member of a cluster
	// (docs/CLUSTER.md). Today that is membership only: the nodes see each
	// other, but each still routes only its own clients' messages.
	Cluster *Cluster `yaml:"cluster"`
}

// Cluster is the node's place in a cluster: gossip membership
// (hashicorp/memberlist) under a cluster name, with seeds to join.
type Cluster struct {
	Name      string   `yaml:"name"`       // nodes of another name cannot join
	NodeID    string   `yaml:"node_id"`    // unique in the cluster, the same after a restart
	Bind      string   `yaml:"bind"`       // ip:port, UDP and TCP
	Advertise string   `yaml:"advertise"`  // ip:port the others use (default: memberlist's choice)
	Seeds     []string `yaml:"seeds"`      // host:port of other members, DNS names allowed
	Roles     []string `yaml:"roles"`      // frontend, routing, inbox, retain, kv (default: all)
	SecretKey string   `yaml:"secret_key"` // AES key, 16/24/32 bytes in hex or base64 (default: none)
	// ReconnectInterval is how often the node joins again the members it
	// holds dead (and its seeds while one is), so that the sides of a
	// healed partition find each other (default 5 s); ReconnectTimeout is
	// how long after its death a member is tried (default 24 h).
	ReconnectInterval time.Duration `yaml:"reconnect_interval"`
	ReconnectTimeout  time.Duration `yaml:"reconnect_timeout"`
	// Forward is the ip:port this node takes other nodes' forwarded
	// messages on. Without it the node is a member only: it routes its
	// own clients' messages alone. With it, routes live in raftkv (KV)
	// and messages cross nodes.
	Forward string     `yaml:"forward"`
	KV      ClusterKV  `yaml:"kv"`
	TLS     ClusterTLS `yaml:"tls"`
}

// ClusterTLS secures what nodes say to each other besides gossip (the
// forward links, raftkv's raft traffic and client port) with mutual TLS:
// every node's certificate is signed by the CA and names the node by URI
// SANs (skybridge://node/<node_id>, and raftkv://node/<kv.node_id> when it
// runs a raftkv node).
type ClusterTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
}

// ClusterKV is where a clustered node keeps the routes: raftkv, run in
// this process (NodeID set) or reached at Endpoints.
type ClusterKV struct {
	NodeID     uint64   `yaml:"node_id"`     // this node's raftkv id (> 0: run a raftkv node here)
	Bind       string   `yaml:"bind"`        // ip:port for the other raftkv nodes
	ClientBind string   `yaml:"client_bind"` // ip:port for raftkv clients
	Peers      []string `yaml:"peers"`       // the initial raftkv cluster: id=host:port (raft addresses)
	Endpoints  []string `yaml:"endpoints"`   // raftkv client addresses (default: client_bind)
	Replicas   int      `yaml:"replicas"`    // voters per range (default 3, or 1 with one peer)
	Dir        string   `yaml:"dir"`         // its data (default: storage.dir/raftkv)
}

// Gossip is the membership runtime's configuration for c (roles parsed,
// defaults applied); mqtt is the address the node's clients connect to.
func (c *Cluster) Gossip(mqtt string) (gossip.Config, error) {
	roles := c.Roles
	if len(roles) == 0 {
		roles = cluster.AllRoles.Names()
	}
	r, err := cluster.ParseRoles(roles)
	if err != nil {
		return gossip.Config{}, err
	}
	g := gossip.Config{Cluster: c.Name, NodeID: c.NodeID, Bind: c.Bind, Advertise: c.Advertise,
		Seeds: c.Seeds, SecretKey: c.SecretKey, Roles: r, MQTT: mqtt,
		ReconnectInterval: c.ReconnectInterval, ReconnectTimeout: c.ReconnectTimeout}
	return g, g.Validate()
}

// KVPeers parses kv.peers: the raft address of each node of the initial
// raftkv cluster, and their ids in the order given.
func (c *Cluster) KVPeers() (map[raftkv.NodeID]string, []raftkv.NodeID, error) {
	addrs, ids, err := raftkv.ParsePeers(c.KV.Peers)
	if err != nil {
		return nil, nil, err
	}
	if _, ok := addrs[raftkv.NodeID(c.KV.NodeID)]; c.KV.NodeID != 0 && !ok {
		return nil, nil, fmt.Errorf("node_id %d is not among the peers", c.KV.NodeID)
	}
	return addrs, ids, nil
}

// Auth configures authentication (docs/AUTH.md). With nothing configured,
// only listeners that allow anonymous clients accept anyone.
type Auth struct {
	// PasswordFile holds "tenant/user:bcrypt" lines and SCRAM credentials
	// (skybridge passwd writes them); reloaded when it changes.
	PasswordFile string `yaml:"password_file"`
	// SCRAM offers SCRAM-SHA-256 enhanced authentication (5.0) for the
	// password file's SCRAM lines.
	SCRAM bool       `yaml:"scram"`
	JWT   JWT        `yaml:"jwt"`
	HTTP  AuthHTTP   `yaml:"http"`
	Certs CertConfig `yaml:"certificates"`
	// Limits bound the work authentication costs: failure throttling and
	// the verification pool (docs/AUTH.md, "Limits").
	Limits AuthLimits `yaml:"limits"`
}

// AuthLimits configure the guard in front of authentication (auth.Guard).
type AuthLimits struct {
	// Workers bounds the bcrypt/SCRAM verifications running at once
	// (0: GOMAXPROCS).
	Workers int `yaml:"workers"`
	// PerSource bounds those of one source address (0: half the workers,
	// at least one).
	PerSource int `yaml:"per_source"`
	// Queue bounds the verifications waiting for a worker; beyond, CONNACK
	// 0x89 Server busy.
	Queue int `yaml:"queue"`
	// FreeFailures are the failures per source and per user before
	// throttling (0x9F) starts.
	FreeFailures int `yaml:"free_failures"`
	// Delay is the first throttle window, doubled by each further failure
	// up to MaxDelay.
	Delay    time.Duration `yaml:"delay"`
	MaxDelay time.Duration `yaml:"max_delay"`
	// BanAfter failures and refused attempts from one source ban it (0x8A)
	// for BanFor; 0 never bans.
	BanAfter int           `yaml:"ban_after"`
	BanFor   time.Duration `yaml:"ban_for"`
	// ForgetAfter drops what is known of a source or user with no failure
	// for that long.
	ForgetAfter time.Duration `yaml:"forget_after"`
	// MaxTracked bounds the sources, and the users, remembered.
	MaxTracked int `yaml:"max_tracked"`
	// RefusalDelay holds the refusal of a throttled or banned source this
	// long before answering (0: at once).
	RefusalDelay time.Duration `yaml:"refusal_delay"`
}

// JWT configures token authentication (the password is a JWT).
type JWT struct {
	// Secret is the HS256 key ($SKYBRIDGE_JWT_SECRET overrides it).
	Secret string `yaml:"secret"`
	// PublicKeys are PEM files of RS256/ES256 keys.
	PublicKeys  []string `yaml:"public_keys"`
	TenantClaim string   `yaml:"tenant_claim"`
	Issuer      string   `yaml:"issuer"`
	Audience    string   `yaml:"audience"`
	// Method also offers the token as a 5.0 enhanced-authentication method
	// of this name (for re-authentication with a fresh token), e.g. "JWT".
	Method string `yaml:"method"`
	// RequireExp refuses tokens without "exp" (0x86); default true. A
	// token without exp never expires, so false is for tokens that are
	// revoked some other way.
	RequireExp *bool `yaml:"require_exp"`
}

// ExpRequired reports whether tokens must carry "exp" (the default).
func (j *JWT) ExpRequired() bool { return j.RequireExp == nil || *j.RequireExp }

// AuthHTTP is a webhook: authentication, authorization or events.
type AuthHTTP struct {
	URL     string        `yaml:"url"`
	Timeout time.Duration `yaml:"timeout"`
	// Headers go with every request (for example Authorization: a token
	// the endpoint checks). "${NAME}" in a value is replaced at start by
	// that environment variable, so the file need not hold the secret.
	Headers map[string]string `yaml:"headers"`
	// CAFile verifies an https endpoint's certificate with these PEM
	// certificates instead of the system's.
	CAFile string `yaml:"ca_file"`
	// Cache bounds how long answers are reused (authentication and
	// authorization only; docs/AUTH.md).
	Cache WebhookCache `yaml:"cache"`
}

// WebhookCache configures a webhook's decision cache.
type WebhookCache struct {
	// Size bounds the cached decisions (0: 10000; -1: no cache, every
	// CONNECT asks).
	Size int `yaml:"size"`
	// AllowTTL and DenyTTL are how long an allow and a deny are reused
	// (0: 60s and 10s).
	AllowTTL time.Duration `yaml:"allow_ttl"`
	DenyTTL  time.Duration `yaml:"deny_ttl"`
}

// CertConfig maps verified TLS client certificates to users and tenants.
type CertConfig struct {
	Enabled    bool   `yaml:"enabled"`
	UserAttr   string `yaml:"user_attr"`   // default CN
	TenantAttr string `yaml:"tenant_attr"` // e.g. O; empty: the listener's tenant
}

// ACL configures authorization (docs/AUTH.md): rules per tenant and for
// all, first match wins; DefaultDeny refuses what no rule allows.
type ACL struct {
	DefaultDeny bool                        `yaml:"default_deny"`
	Global      []acl.RuleConfig            `yaml:"global"`
	Tenants     map[string][]acl.RuleConfig `yaml:"tenants"`
	HTTP        AuthHTTP                    `yaml:"http"`
}

// Events configures where the broker's events go.
type Events struct {
	// Log writes every event to the log (default on).
	Log     *bool    `yaml:"log"`
	Webhook AuthHTTP `yaml:"webhook"`
}

// Listener is one MQTT listener.
type Listener struct {
	Name              string `yaml:"name"`
	Type              string `yaml:"type"` // tcp, tls, ws, wss
	Addr              string `yaml:"addr"`
	Path              string `yaml:"path"` // WebSocket path, default /mqtt
	CertFile          string `yaml:"cert_file"`
	KeyFile           string `yaml:"key_file"`
	ClientCAFile      string `yaml:"client_ca_file"`
	RequireClientCert bool   `yaml:"require_client_cert"`
	// AllowAnonymous accepts clients with neither user name nor password
	// (and, when no authentication is configured, any client) on this
	// listener. Default: true on a loopback address, false elsewhere.
	AllowAnonymous *bool  `yaml:"allow_anonymous"`
	DefaultTenant  string `yaml:"default_tenant"`
	// Redirect sends every client to another server (maintenance, moves):
	// 5.0 clients get CONNACK 0x9C (0x9D with moved: true) and this
	// Server Reference; 3.1.1 clients are refused as server unavailable.
	Redirect string `yaml:"redirect"`
	Moved    bool   `yaml:"moved"`
}

// Admin is the admin HTTP server (metrics, health, admin API).
type Admin struct {
	Addr string `yaml:"addr"` // "" disables it
	// Token guards the admin API and /metrics; $SKYBRIDGE_ADMIN_TOKEN
	// overrides it. Without one the API answers on loopback only.
	Token string `yaml:"token"`
	// MetricsToken is a token for /metrics only (for a Prometheus that
	// should not hold the admin token); $SKYBRIDGE_METRICS_TOKEN overrides it.
	MetricsToken string `yaml:"metrics_token"`
	// Hosts are more names the admin server may be addressed by (the Host
	// header), besides its own address, the machine's host name and, on
	// loopback, localhost: requests for other names are refused (DNS
	// rebinding).
	Hosts []string `yaml:"hosts"`
	// MaxTenantLabels bounds the tenants with their own series in /metrics
	// (skybridge_tenant_* and skybridge_events_total); the others are summed
	// under tenant="_other" (event.OtherTenant).
	MaxTenantLabels int `yaml:"max_tenant_labels"`
	// Console serves the web console at /console/ (docs/ADMIN.md).
	Console bool `yaml:"console"`
	// ConsoleUsersFile holds the console's users, a "user:bcrypt-hash"
	// line each (skybridge passwd --console USER); besides them the admin
	// token logs in.
	ConsoleUsersFile string `yaml:"console_users_file"`
}

// Limits bound what clients may use.
type Limits struct {
	ConnectTimeout    time.Duration `yaml:"connect_timeout"`
	WriteTimeout      time.Duration `yaml:"write_timeout"`
	MaxConnections    int           `yaml:"max_connections"`
	MaxPacketSize     int           `yaml:"max_packet_size"`
	MaxInflight       int           `yaml:"max_inflight"`
	MaxQueued         int           `yaml:"max_queued"`
	MaxQueuedBytes    int           `yaml:"max_queued_bytes"`
	MaxOutputBytes    int           `yaml:"max_output_bytes"`
	ReceiveMaximum    int           `yaml:"receive_maximum"`
	TopicAliasMaximum int           `yaml:"topic_alias_maximum"`
	MaxKeepAlive      int           `yaml:"max_keepalive"`
	MaxSessionExpiry  int64         `yaml:"max_session_expiry"`
}

// MQTT switches protocol features.
type MQTT struct {
	MaxQoS                  int    `yaml:"max_qos"`
	RetainAvailable         *bool  `yaml:"retain_available"`
	WildcardSubscriptions   *bool  `yaml:"wildcard_subscriptions"`
	SharedSubscriptions     *bool  `yaml:"shared_subscriptions"`
	SubscriptionIdentifiers *bool  `yaml:"subscription_identifiers"`
	OutboundTopicAliases    *bool  `yaml:"outbound_topic_aliases"`
	SharedPolicy            string `yaml:"shared_policy"` // round_robin, random, sticky
	// SysInterval is how often $SYS/broker/... statistics are published
	// (0 disables them).
	SysInterval time.Duration `yaml:"sys_interval"`
}

// Storage selects where state lives.
type Storage struct {
	// Type is pebble (sessions, queues and retained messages on disk,
	// surviving restarts and crashes) or memory (nothing survives).
	Type string `yaml:"type"`
	// Dir is the data directory of the pebble store.
	Dir string `yaml:"dir"`
	// MaxBytes bounds the store on disk; beyond it new QoS 1/2 messages are
	// refused (0x97). 0: no limit.
	MaxBytes uint64 `yaml:"max_bytes"`
	// MinFreeBytes is the free disk space kept in reserve: below it the
	// store refuses writes (publishers get 0x97) rather than fill the disk.
	MinFreeBytes uint64 `yaml:"min_free_bytes"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text, json
}

func boolp(b bool) *bool { return &b }

// Default returns the configuration used when a file says nothing: one TCP
// listener on 127.0.0.1:1883 and the limits documented on each field.
func Default() File {
	return File{
		Listeners: []Listener{{Name: "tcp", Type: "tcp", Addr: "127.0.0.1:1883", DefaultTenant: "default"}},
		Limits: Limits{
			ConnectTimeout:    10 * time.Second,
			WriteTimeout:      30 * time.Second,
			MaxPacketSize:     1 << 20,
			MaxInflight:       1024,
			MaxQueued:         10000,
			MaxQueuedBytes:    64 << 20,
			MaxOutputBytes:    1 << 20,
			ReceiveMaximum:    1024,
			TopicAliasMaximum: 64,
			MaxSessionExpiry:  math.MaxUint32,
		},
		MQTT: MQTT{MaxQoS: 2, RetainAvailable: boolp(true), WildcardSubscriptions: boolp(true),
			SharedSubscriptions: boolp(true), SubscriptionIdentifiers: boolp(true),
			OutboundTopicAliases: boolp(true), SharedPolicy: "round_robin", SysInterval: 10 * time.Second},
		Storage: Storage{Type: "pebble", Dir: "./data", MinFreeBytes: 64 << 20},
		Log:     Log{Level: "info", Format: "text"},
		Admin:   Admin{MaxTenantLabels: event.DefaultMaxTenants, Console: true},
		Tenants: tenant.Config{Defaults: tenant.Default()},
		Auth: Auth{Limits: AuthLimits{Queue: 256, FreeFailures: 5, Delay: time.Second, MaxDelay: 5 * time.Minute,
			BanAfter: 100, BanFor: 10 * time.Minute, ForgetAfter: 15 * time.Minute, MaxTracked: 65536, RefusalDelay: time.Second}},
	}
}

// Parse reads a YAML configuration over the defaults. Unknown fields are
// errors, so that a typo does not silently fall back to a default. Every
// error names the line and the YAML path of what is wrong (errors.go).
func Parse(r io.Reader) (File, error) {
	f := Default()
	data, err := io.ReadAll(r)
	if err != nil {
		return f, err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return f, f.Validate()
	}
	ix := indexDocument(data)
	// A file that lists listeners replaces the default list: the decoder
	// builds a new slice for a sequence.
	if err := decodeStrict(data, &f); err != nil {
		return f, fmt.Errorf("config: %w", ix.decodeError(err))
	}
	unknown := ix.checkOverrides(&f.Tenants)
	if err := f.Validate(); err != nil || len(unknown) > 0 {
		if err == nil {
			err = errors.New("")
		}
		return f, fmt.Errorf("config: %w", ix.validationError(err, unknown))
	}
	return f, nil
}

// Validate checks every field and reports all problems, each naming its field.
func (f *File) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if len(f.Listeners) == 0 {
		bad("listeners", "at least one listener is required")
	}
	if len(f.Bridges) > 0 {
		// Validate fills in each bridge's defaults in place.
		bc := bridge.Config{Bridges: f.Bridges}
		if err := bc.Validate(); err != nil {
			errs = append(errs, err)
		}
		for i, b := range f.Bridges {
			if f.Storage.Type == "pebble" && within(b.Queue.Dir, f.Storage.Dir) {
				bad(fmt.Sprintf("bridges[%d].queue.dir", i), "%q is inside storage.dir %q: give the bridge a directory of its own", b.Queue.Dir, f.Storage.Dir)
			}
		}
	}
	names := map[string]bool{}
	for i := range f.Listeners {
		l := &f.Listeners[i]
		field := fmt.Sprintf("listeners[%d]", i)
		if l.Type == "" {
			l.Type = "tcp"
		}
		if l.Name == "" {
			l.Name = l.Type
		}
		if names[l.Name] {
			bad(field+".name", "duplicate listener name %q", l.Name)
		}
		names[l.Name] = true
		switch l.Type {
		case "tcp", "ws":
		case "tls", "wss":
			if l.CertFile == "" || l.KeyFile == "" {
				bad(field, "type %s needs cert_file and key_file", l.Type)
			}
		default:
			bad(field+".type", "must be tcp, tls, ws or wss, not %q", l.Type)
		}
		if l.Addr == "" {
			bad(field+".addr", "required (host:port)")
		}
		if l.RequireClientCert && l.ClientCAFile == "" {
			bad(field+".require_client_cert", "needs client_ca_file")
		}
		if l.DefaultTenant == "" {
			l.DefaultTenant = "default"
		}
		if l.Path != "" && !strings.HasPrefix(l.Path, "/") {
			bad(field+".path", "must start with /")
		}
	}
	lim := &f.Limits
	positive := func(field string, v int) {
		if v <= 0 {
			bad(field, "must be positive, not %d", v)
		}
	}
	if lim.ConnectTimeout <= 0 {
		bad("limits.connect_timeout", "must be positive")
	}
	if lim.WriteTimeout <= 0 {
		bad("limits.write_timeout", "must be positive")
	}
	if lim.MaxConnections < 0 {
		bad("limits.max_connections", "must be 0 (no limit) or positive")
	}
	if lim.MaxPacketSize < 64 || lim.MaxPacketSize > packet.MaxPacketSize {
		bad("limits.max_packet_size", "must be between 64 and %d", packet.MaxPacketSize)
	}
	positive("limits.max_queued", lim.MaxQueued)
	if lim.MaxQueuedBytes < 0 {
		bad("limits.max_queued_bytes", "must be 0 (no byte bound) or positive")
	}
	positive("limits.max_output_bytes", lim.MaxOutputBytes)
	if lim.MaxInflight < 1 || lim.MaxInflight > 65535 {
		bad("limits.max_inflight", "must be between 1 and 65535")
	}
	if lim.ReceiveMaximum < 1 || lim.ReceiveMaximum > 65535 {
		bad("limits.receive_maximum", "must be between 1 and 65535")
	}
	if lim.TopicAliasMaximum < 0 || lim.TopicAliasMaximum > 65535 {
		bad("limits.topic_alias_maximum", "must be between 0 and 65535")
	}
	if lim.MaxKeepAlive < 0 || lim.MaxKeepAlive > 65535 {
		bad("limits.max_keepalive", "must be between 0 (no cap) and 65535 seconds")
	}
	if lim.MaxSessionExpiry < 0 || lim.MaxSessionExpiry > math.MaxUint32 {
		bad("limits.max_session_expiry", "must be between 0 and %d seconds", uint32(math.MaxUint32))
	}
	if f.Admin.MaxTenantLabels < 1 {
		bad("admin.max_tenant_labels", "must be at least 1")
	}
	if f.MQTT.MaxQoS < 0 || f.MQTT.MaxQoS > 2 {
		bad("mqtt.max_qos", "must be 0, 1 or 2")
	}
	if f.MQTT.SysInterval < 0 {
		bad("mqtt.sys_interval", "must be 0 (off) or positive")
	}
	if _, err := policy(f.MQTT.SharedPolicy); err != nil {
		bad("mqtt.shared_policy", "%v", err)
	}
	switch f.Storage.Type {
	case "memory":
	case "pebble":
		if f.Storage.Dir == "" {
			bad("storage.dir", "required for the pebble store")
		}
	default:
		bad("storage.type", "must be pebble or memory, not %q", f.Storage.Type)
	}
	for _, w := range []struct {
		field string
		h     *AuthHTTP
	}{{"auth.http", &f.Auth.HTTP}, {"acl.http", &f.ACL.HTTP}, {"events.webhook", &f.Events.Webhook}} {
		for _, p := range w.h.check() {
			bad(w.field+"."+p[0], "%s", p[1])
		}
	}
	if int64(f.Limits.MaxQueued)+int64(f.Limits.MaxInflight) >= 65535 {
		bad("limits.max_queued", "max_queued + max_inflight must stay below 65535 (each message a session holds needs its own packet identifier)")
	}
	al := &f.Auth.Limits
	for _, c := range []struct {
		field string
		v     int
	}{{"workers", al.Workers}, {"per_source", al.PerSource}, {"queue", al.Queue}, {"free_failures", al.FreeFailures}, {"ban_after", al.BanAfter}} {
		if c.v < 0 {
			bad("auth.limits."+c.field, "cannot be negative")
		}
	}
	if al.Delay <= 0 {
		bad("auth.limits.delay", "must be positive")
	}
	if al.MaxDelay < al.Delay {
		bad("auth.limits.max_delay", "must be at least auth.limits.delay (%v)", al.Delay)
	}
	if al.BanAfter > 0 && al.BanFor <= 0 {
		bad("auth.limits.ban_for", "must be positive (or ban_after 0: no bans)")
	}
	if al.ForgetAfter < al.MaxDelay {
		bad("auth.limits.forget_after", "must be at least auth.limits.max_delay (%v)", al.MaxDelay)
	}
	if al.MaxTracked < 1 {
		bad("auth.limits.max_tracked", "must be at least 1")
	}
	if al.RefusalDelay < 0 {
		bad("auth.limits.refusal_delay", "cannot be negative")
	}
	if _, err := f.Tenants.Resolve(); err != nil {
		errs = append(errs, err)
	}
	acfg := acl.Config{DefaultDeny: f.ACL.DefaultDeny, Global: f.ACL.Global, Tenants: f.ACL.Tenants}
	if err := acfg.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("acl: %w", err))
	}
	if _, err := level(f.Log.Level); err != nil {
		bad("log.level", "%v", err)
	}
	if c := f.Cluster; c != nil {
		switch {
		case c.Name == "" || len(c.Name) > cluster.MaxClusterName:
			bad("cluster.name", "required, at most %d bytes", cluster.MaxClusterName)
		case c.NodeID == "":
			bad("cluster.node_id", "required (unique in the cluster, the same after a restart)")
		case c.Bind == "":
			bad("cluster.bind", "required (ip:port)")
		default:
			if _, err := c.Gossip(""); err != nil {
				bad("cluster", "%v", err)
			}
		}
		if tl := c.TLS; (tl.CertFile != "" || tl.KeyFile != "" || tl.CAFile != "") && (tl.CertFile == "" || tl.KeyFile == "" || tl.CAFile == "") {
			bad("cluster.tls", "needs cert_file, key_file and ca_file together")
		}
		if c.Forward != "" {
			if _, _, err := net.SplitHostPort(c.Forward); err != nil {
				bad("cluster.forward", "%v", err)
			}
			kv := &c.KV
			if kv.NodeID == 0 && len(kv.Endpoints) == 0 {
				bad("cluster.kv", "with cluster.forward, run raftkv here (node_id, bind, client_bind, peers) or name its endpoints")
			}
			if kv.NodeID != 0 {
				if kv.Bind == "" || kv.ClientBind == "" || len(kv.Peers) == 0 {
					bad("cluster.kv", "node_id needs bind, client_bind and peers")
				} else if _, _, err := c.KVPeers(); err != nil {
					bad("cluster.kv.peers", "%v", err)
				}
				if f.Storage.Type != "pebble" && kv.Dir == "" {
					bad("cluster.kv.dir", "required when storage.type is not pebble")
				}
			}
		}
	}
	if f.Log.Format != "text" && f.Log.Format != "json" {
		bad("log.format", "must be text or json, not %q", f.Log.Format)
	}
	return errors.Join(errs...)
}

// Anonymous reports whether listener l accepts anonymous clients.
func (l *Listener) Anonymous() bool {
	if l.AllowAnonymous != nil {
		return *l.AllowAnonymous
	}
	host, _, err := net.SplitHostPort(l.Addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func policy(s string) (topic.Policy, error) {
	switch s {
	case "round_robin", "":
		return topic.RoundRobin, nil
	case "random":
		return topic.Random, nil
	case "sticky":
		return topic.Sticky, nil
	}
	return 0, fmt.Errorf("must be round_robin, random or sticky, not %q", s)
}

func level(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("must be debug, info, warn or error, not %q", s)
	}
	return l, nil
}

// LogLevel returns the configured log level.
func (f *File) LogLevel() slog.Level {
	l, _ := level(f.Log.Level)
	return l
}

// Server turns a validated File into the runtime's configuration.
func (f *File) Server(log *slog.Logger) server.Config {
	sc := server.DefaultConfig()
	sc.Listeners = nil
	for _, l := range f.Listeners {
		sc.Listeners = append(sc.Listeners, server.ListenerConfig{Name: l.Name, Type: l.Type, Addr: l.Addr,
			Path: l.Path, CertFile: l.CertFile, KeyFile: l.KeyFile, ClientCAFile: l.ClientCAFile,
			RequireClientCert: l.RequireClientCert, DefaultTenant: l.DefaultTenant, Redirect: l.Redirect, Moved: l.Moved})
	}
	sc.AdminAddr = f.Admin.Addr
	sc.AdminToken = f.Admin.Token
	sc.MetricsToken = f.Admin.MetricsToken
	sc.AdminHosts = f.Admin.Hosts
	sc.MaxTenantLabels = f.Admin.MaxTenantLabels
	sc.Console = f.Admin.Console
	sc.ConnectTimeout = f.Limits.ConnectTimeout
	sc.WriteTimeout = f.Limits.WriteTimeout
	sc.MaxConnections = f.Limits.MaxConnections
	sc.Logger = log
	b := broker.DefaultConfig()
	b.Logger = log
	b.MaxPacketSize = f.Limits.MaxPacketSize
	b.MaxStoreBytes = f.Storage.MaxBytes
	b.SharedPolicy, _ = policy(f.MQTT.SharedPolicy)
	s := &b.Session
	s.MaxQoS = packet.QoS(f.MQTT.MaxQoS)
	s.RetainAvailable = *f.MQTT.RetainAvailable
	s.WildcardSubscriptions = *f.MQTT.WildcardSubscriptions
	s.SharedSubscriptions = *f.MQTT.SharedSubscriptions
	s.SubscriptionIdentifiers = *f.MQTT.SubscriptionIdentifiers
	s.OutboundTopicAliases = *f.MQTT.OutboundTopicAliases
	s.MaxInflight = uint16(f.Limits.MaxInflight)
	s.MaxQueued = f.Limits.MaxQueued
	s.MaxQueuedBytes = f.Limits.MaxQueuedBytes
	s.MaxOutput = f.Limits.MaxOutputBytes
	s.ReceiveMaximum = uint16(f.Limits.ReceiveMaximum)
	s.TopicAliasMaximum = uint16(f.Limits.TopicAliasMaximum)
	s.MaxKeepAlive = uint16(f.Limits.MaxKeepAlive)
	s.MaxSessionExpiry = uint32(f.Limits.MaxSessionExpiry)
	s.MaxPacketSize = uint32(f.Limits.MaxPacketSize)
	b.Settings = tenant.NewProvider()
	_ = b.Settings.Replace(f.Tenants) // validated above
	sc.Broker = b
	return sc
}

// within reports whether path is dir or below it (lexically).
func within(path, dir string) bool {
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// check reports a webhook's problems as (field, problem) pairs, in a
// fixed order. An unset webhook (no URL) has none unless it has settings.
func (h *AuthHTTP) check() [][2]string {
	var out [][2]string
	if h.URL == "" {
		if len(h.Headers) > 0 || h.CAFile != "" {
			out = append(out, [2]string{"url", "required with headers or ca_file"})
		}
		return out
	}
	if u, err := url.Parse(h.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		out = append(out, [2]string{"url", fmt.Sprintf("%q is not an http(s) URL", h.URL)})
	}
	if h.Timeout < 0 {
		out = append(out, [2]string{"timeout", "must not be negative"})
	}
	for _, k := range slices.Sorted(maps.Keys(h.Headers)) {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			out = append(out, [2]string{"headers", fmt.Sprintf("%q is not a header name", k)})
		}
	}
	if h.Cache.Size < -1 {
		out = append(out, [2]string{"cache.size", "must be -1 (no cache), 0 (default) or positive"})
	}
	if h.Cache.AllowTTL < 0 || h.Cache.DenyTTL < 0 {
		out = append(out, [2]string{"cache", "TTLs must not be negative"})
	}
	return out
}

// ExpandHeader replaces each "${NAME}" in a header value with lookup's
// value for NAME ("Bearer ${HOOK_TOKEN}"); any other "$" stays as it is.
// It reports the first name lookup does not know. The runtime calls it
// with os.LookupEnv at start and refuses to start on a missing name.
func ExpandHeader(v string, lookup func(string) (string, bool)) (out, missing string) {
	var b strings.Builder
	for {
		i := strings.Index(v, "${")
		if i < 0 {
			b.WriteString(v)
			return b.String(), missing
		}
		j := strings.IndexByte(v[i+2:], '}')
		if j < 0 || !envName(v[i+2:i+2+j]) {
			b.WriteString(v[:i+2])
			v = v[i+2:]
			continue
		}
		name := v[i+2 : i+2+j]
		val, ok := lookup(name)
		if !ok && missing == "" {
			missing = name
		}
		b.WriteString(v[:i])
		b.WriteString(val)
		v = v[i+3+j:]
	}
}

func envName(s string) bool {
	return s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	}) < 0
}
