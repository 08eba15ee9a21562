package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/skybridge-mq/skybridge/impl/topic"
)

// Config is the bridges section of the configuration file. It is meant to
// sit at the top level of the YAML file (`bridges:`), so that validation
// errors name fields as the file spells them: bridges[0].remote.address.
type Config struct {
	Bridges []BridgeConfig `yaml:"bridges"`
}

// BridgeConfig is one bridge: a local connection, a remote connection,
// rules for each direction and a durable queue per direction.
type BridgeConfig struct {
	// Name identifies the bridge in logs, statistics and the loop marker
	// (User Property "skybridge-bridge"). Required; letters, digits, '-',
	// '_' and '.'; unique among the bridges of a process and, for loop
	// prevention to work, among the bridges a message can cross.
	Name string `yaml:"name"`
	// Remote is the other broker (another Skybridge, mosquitto, a cloud
	// broker). Its client id defaults to "skybridge-bridge-<name>".
	Remote Endpoint `yaml:"remote"`
	// Local is this Skybridge: the bridge joins it as an ordinary MQTT 5.0
	// client. The tenant is the one the local broker's authenticator
	// assigns to these credentials (today: a "tenant/user" user name, else
	// the listener's default tenant).
	Local Endpoint `yaml:"local"`
	// Out rules forward local messages to the remote; In rules forward
	// remote messages to the local broker. At least one rule in all.
	Out []Rule `yaml:"out"`
	In  []Rule `yaml:"in"`
	// Queue bounds the durable queue of each direction.
	Queue Queue `yaml:"queue"`
	// MaxInflight is how many forwarded QoS 1 messages may wait for their
	// PUBACK at once, per direction (further capped by the receiving
	// broker's Receive Maximum). It is also the Receive Maximum the bridge
	// announces to both brokers. Default 256.
	MaxInflight int `yaml:"max_inflight"`
	// MaxHops drops a message that has already crossed this many bridges
	// (User Property "skybridge-hops"): the last resort against loops that
	// names cannot catch. Default 8.
	MaxHops int `yaml:"max_hops"`
}

// Endpoint is one side's connection.
type Endpoint struct {
	// Address is tcp://host:port, ssl://host:port, ws://host:port/path or
	// wss://host:port/path (mqtt://, tls://, mqtts:// are aliases). Default
	// ports: 1883, 8883, 80, 443. Required.
	Address string `yaml:"address"`
	// ClientID defaults to "skybridge-bridge-<name>".
	ClientID string `yaml:"client_id"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// Version is the MQTT version: "5" (default) or "3.1.1" (remote only).
	// Over 3.1.1 there are no User Properties and no No Local, so the loop
	// marker cannot cross that link; see doc.go.
	Version string `yaml:"version"`
	// KeepAlive is the MQTT keep alive. Default 60s; 0s disables it.
	KeepAlive *time.Duration `yaml:"keep_alive"`
	// SessionExpiry is how long the broker keeps the bridge's session (its
	// subscriptions and the messages queued for it) while the bridge is
	// disconnected. Default 24h; 0 ends the session with each connection,
	// so messages published on that side while the bridge is away are lost.
	// Over 3.1.1, anything above 0 means a persistent session (clean
	// session 0).
	SessionExpiry *time.Duration `yaml:"session_expiry"`
	// CleanStart discards the session the broker kept from a previous run
	// of the bridge on its first connection (later reconnections resume).
	// Default false.
	CleanStart bool `yaml:"clean_start"`
	// ConnectTimeout bounds one connection attempt (dial, TLS, CONNECT,
	// CONNACK). Default 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// ReconnectMin and ReconnectMax bound the randomised exponential
	// backoff between connection attempts. Defaults 1s and 60s.
	ReconnectMin time.Duration `yaml:"reconnect_min"`
	ReconnectMax time.Duration `yaml:"reconnect_max"`
	// TLS applies to ssl:// and wss:// addresses.
	TLS TLS `yaml:"tls"`
}

// TLS configures the client side of a TLS connection.
type TLS struct {
	// CAFile is a PEM bundle of the CAs that may sign the server's
	// certificate (default: the system's roots).
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate and its key (PEM), for
	// brokers that authenticate clients by certificate.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the server's certificate
	// (default: the address's host).
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any server certificate. For tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Rule selects messages on the source side and says what topic they get
// on the other side: the topic loses Strip from its start, then gains
// Prefix. "sensors/#" with prefix "site-7/" forwards sensors/a/t as
// site-7/sensors/a/t; "site-7/cmd/#" with strip "site-7/" forwards
// site-7/cmd/reboot as cmd/reboot.
type Rule struct {
	// Filter is the topic filter the bridge subscribes to on the source
	// side. Filters of one direction must not overlap (a topic matching
	// two rules would be ambiguous, and brokers differ in how many copies
	// they send); shared subscriptions ($share/...) are not accepted.
	Filter string `yaml:"filter"`
	// Strip must be a literal beginning of Filter (no wildcard).
	Strip string `yaml:"strip"`
	// Prefix is prepended after stripping; no wildcards.
	Prefix string `yaml:"prefix"`
	// QoS caps the QoS of the subscription and so of forwarded messages:
	// 0 or 1 (default 1). QoS 2 messages are forwarded at QoS 1: the
	// bridge promises at least once, never exactly once.
	QoS *int `yaml:"qos"`
}

// Queue bounds the durable queue of each direction.
type Queue struct {
	// Dir is the Pebble directory of this bridge's queues (both
	// directions). Default "bridges/<name>" (relative to the working
	// directory). Never share it between bridges or with the broker's
	// storage.dir.
	Dir string `yaml:"dir"`
	// MaxMessages bounds the messages queued per direction (in flight
	// included). Default 100000.
	MaxMessages int `yaml:"max_messages"`
	// MaxBytes bounds the bytes queued per direction (topic, payload and
	// properties as stored). Default 64 MiB.
	MaxBytes int64 `yaml:"max_bytes"`
	// DropPolicy says what happens to a message arriving at a full queue:
	// "drop_oldest" (default) deletes the oldest queued messages to make
	// room, "refuse_new" discards the new one. Either way the discarded
	// message is acknowledged to its source (holding it unacknowledged
	// would stall the whole source connection) and counted as dropped
	// with reason queue_full.
	DropPolicy string `yaml:"drop_policy"`
}

// Drop policies.
const (
	DropOldest = "drop_oldest"
	RefuseNew  = "refuse_new"
)

// Defaults.
const (
	DefaultMaxInflight    = 256
	DefaultMaxHops        = 8
	DefaultKeepAlive      = 60 * time.Second
	DefaultSessionExpiry  = 24 * time.Hour
	DefaultConnectTimeout = 10 * time.Second
	DefaultReconnectMin   = time.Second
	DefaultReconnectMax   = time.Minute
	DefaultMaxMessages    = 100000
	DefaultMaxBytes       = 64 << 20
)

// Validate fills in the defaults and checks every field, reporting all
// problems; each error names its field (bridges[0].out[1].filter: ...).
func (c *Config) Validate() error {
	var errs []error
	names := map[string]int{}
	dirs := map[string]int{}
	// Two connections to one broker with one client id would take each
	// other over forever.
	clients := map[[2]string]string{}
	for i := range c.Bridges {
		b := &c.Bridges[i]
		field := fmt.Sprintf("bridges[%d]", i)
		errs = append(errs, b.validate(field)...)
		for _, e := range []struct {
			side string
			ep   *Endpoint
		}{{"local", &b.Local}, {"remote", &b.Remote}} {
			a, err := parseAddress(e.ep.Address)
			if err != nil || e.ep.ClientID == "" {
				continue
			}
			k := [2]string{a.host, e.ep.ClientID}
			f := field + "." + e.side + ".client_id"
			if other, ok := clients[k]; ok {
				errs = append(errs, fmt.Errorf("%s: %q on %s is also %s: the two connections would take each other over", f, e.ep.ClientID, a.host, other))
			}
			clients[k] = f
		}
		if j, ok := names[b.Name]; ok && b.Name != "" {
			errs = append(errs, fmt.Errorf("%s.name: %q is already the name of bridges[%d]", field, b.Name, j))
		}
		names[b.Name] = i
		if j, ok := dirs[b.Queue.Dir]; ok && b.Queue.Dir != "" {
			errs = append(errs, fmt.Errorf("%s.queue.dir: %q is already the queue directory of bridges[%d]", field, b.Queue.Dir, j))
		}
		dirs[b.Queue.Dir] = i
	}
	return errors.Join(errs...)
}

func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

func (b *BridgeConfig) validate(field string) []error {
	var errs []error
	bad := func(f, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", field, f, fmt.Sprintf(format, args...)))
	}
	if !validName(b.Name) {
		bad("name", "required: 1 to 128 letters, digits, '-', '_' or '.' (got %q)", b.Name)
	}
	if b.MaxInflight == 0 {
		b.MaxInflight = DefaultMaxInflight
	}
	if b.MaxInflight < 1 || b.MaxInflight > 65535 {
		bad("max_inflight", "must be between 1 and 65535")
	}
	if b.MaxHops == 0 {
		b.MaxHops = DefaultMaxHops
	}
	if b.MaxHops < 1 || b.MaxHops > 255 {
		bad("max_hops", "must be between 1 and 255")
	}
	errs = append(errs, b.Remote.validate(field+".remote", b.Name, true)...)
	errs = append(errs, b.Local.validate(field+".local", b.Name, false)...)
	if len(b.Out)+len(b.In) == 0 {
		bad("out", "a bridge needs at least one out or in rule")
	}
	for i := range b.Out {
		errs = append(errs, b.Out[i].validate(fmt.Sprintf("%s.out[%d]", field, i))...)
	}
	for i := range b.In {
		errs = append(errs, b.In[i].validate(fmt.Sprintf("%s.in[%d]", field, i))...)
	}
	errs = append(errs, overlaps(field, "out", b.Out)...)
	errs = append(errs, overlaps(field, "in", b.In)...)
	if b.Remote.Version == "3.1.1" {
		// Without No Local and User Properties, whatever the bridge
		// publishes on the remote and also subscribes to there comes
		// straight back, and nothing marks it as ours.
		for i, in := range b.In {
			for j, out := range b.Out {
				if in.Filter == "" || out.Filter == "" {
					continue
				}
				if filtersOverlap(in.Filter, out.remoteSpace()) {
					bad(fmt.Sprintf("in[%d].filter", i), "%q overlaps the topics out[%d] publishes on the remote (%q); over MQTT 3.1.1 (no No Local, no User Properties) every such message would come straight back: use version 5 or disjoint topics",
						in.Filter, j, out.remoteSpace())
				}
			}
		}
	}
	q := &b.Queue
	if q.Dir == "" && validName(b.Name) {
		q.Dir = "bridges/" + b.Name
	}
	if q.MaxMessages == 0 {
		q.MaxMessages = DefaultMaxMessages
	}
	if q.MaxMessages < 1 {
		bad("queue.max_messages", "must be at least 1")
	}
	if q.MaxBytes == 0 {
		q.MaxBytes = DefaultMaxBytes
	}
	if q.MaxBytes < 1024 {
		bad("queue.max_bytes", "must be at least 1024")
	}
	switch q.DropPolicy {
	case "":
		q.DropPolicy = DropOldest
	case DropOldest, RefuseNew:
	default:
		bad("queue.drop_policy", "must be %s or %s, not %q", DropOldest, RefuseNew, q.DropPolicy)
	}
	return errs
}

// remoteSpace is the filter of the topics an out rule publishes on the
// remote: its filter with Strip replaced by Prefix.
func (r *Rule) remoteSpace() string {
	return r.Prefix + strings.TrimPrefix(r.Filter, r.Strip)
}

func overlaps(field, dir string, rules []Rule) []error {
	var errs []error
	for i := range rules {
		for j := 0; j < i; j++ {
			if rules[i].Filter != "" && rules[j].Filter != "" && filtersOverlap(rules[i].Filter, rules[j].Filter) {
				errs = append(errs, fmt.Errorf("%s.%s[%d].filter: %q overlaps %s[%d] (%q): a topic may match only one rule per direction",
					field, dir, i, rules[i].Filter, dir, j, rules[j].Filter))
			}
		}
	}
	return errs
}

func (e *Endpoint) validate(field, name string, remote bool) []error {
	var errs []error
	bad := func(f, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", field, f, fmt.Sprintf(format, args...)))
	}
	if e.Address == "" {
		bad("address", "required (tcp://host:port, ssl://host:port, ws://host:port/path or wss://host:port/path)")
	} else if _, err := parseAddress(e.Address); err != nil {
		bad("address", "%v", err)
	}
	if e.ClientID == "" && validName(name) {
		e.ClientID = "skybridge-bridge-" + name
	}
	if len(e.ClientID) > 65535 {
		bad("client_id", "longer than 65535 bytes")
	}
	switch e.Version {
	case "":
		e.Version = "5"
	case "5", "5.0":
		e.Version = "5"
	case "3.1.1", "4":
		e.Version = "3.1.1"
		if !remote {
			bad("version", "the local side is Skybridge: only 5 (the loop marker needs User Properties)")
		}
	default:
		bad("version", "must be 5 or 3.1.1, not %q", e.Version)
	}
	if e.KeepAlive == nil {
		d := DefaultKeepAlive
		e.KeepAlive = &d
	}
	if *e.KeepAlive < 0 || *e.KeepAlive > 65535*time.Second || *e.KeepAlive%time.Second != 0 {
		bad("keep_alive", "must be whole seconds between 0s and 65535s")
	}
	if e.SessionExpiry == nil {
		d := DefaultSessionExpiry
		e.SessionExpiry = &d
	}
	if *e.SessionExpiry < 0 || *e.SessionExpiry > 4294967295*time.Second {
		bad("session_expiry", "must be between 0s and 4294967295s")
	}
	if e.ConnectTimeout == 0 {
		e.ConnectTimeout = DefaultConnectTimeout
	}
	if e.ConnectTimeout < 0 {
		bad("connect_timeout", "must be positive")
	}
	if e.ReconnectMin == 0 {
		e.ReconnectMin = DefaultReconnectMin
	}
	if e.ReconnectMax == 0 {
		e.ReconnectMax = DefaultReconnectMax
		if e.ReconnectMax <= e.ReconnectMin {
			e.ReconnectMax = 2 * e.ReconnectMin
		}
	}
	if e.ReconnectMin < time.Millisecond {
		bad("reconnect_min", "must be at least 1ms")
	}
	if e.ReconnectMax <= e.ReconnectMin {
		bad("reconnect_max", "must be above reconnect_min (%v)", e.ReconnectMin)
	}
	if (e.TLS.CertFile == "") != (e.TLS.KeyFile == "") {
		bad("tls", "cert_file and key_file go together")
	}
	return errs
}

func (r *Rule) validate(field string) []error {
	var errs []error
	bad := func(f, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", field, f, fmt.Sprintf(format, args...)))
	}
	if err := topic.ValidFilter([]byte(r.Filter)); err != nil {
		bad("filter", "%q: %v", r.Filter, err)
	} else if strings.HasPrefix(r.Filter, "$share/") {
		bad("filter", "%q: shared subscriptions are not supported", r.Filter)
	}
	if r.Strip != "" {
		if strings.ContainsAny(r.Strip, "+#") {
			bad("strip", "%q: no wildcards", r.Strip)
		} else if !strings.HasPrefix(r.Filter, r.Strip) {
			bad("strip", "%q must be the beginning of filter %q", r.Strip, r.Filter)
		}
	}
	if strings.ContainsAny(r.Prefix, "+#\x00") {
		bad("prefix", "%q: no wildcards", r.Prefix)
	}
	if r.QoS == nil {
		q := 1
		r.QoS = &q
	}
	if *r.QoS < 0 || *r.QoS > 1 {
		bad("qos", "must be 0 or 1 (the bridge forwards at least once, never exactly once)")
	}
	return errs
}

// address is a parsed endpoint address.
type address struct {
	scheme string // tcp, ssl, ws, wss
	host   string // host:port
	url    *url.URL
}

func parseAddress(s string) (address, error) {
	u, err := url.Parse(s)
	if err != nil {
		return address{}, fmt.Errorf("%q: %v", s, err)
	}
	var a address
	port := ""
	switch strings.ToLower(u.Scheme) {
	case "tcp", "mqtt":
		a.scheme, port = "tcp", "1883"
	case "ssl", "tls", "mqtts":
		a.scheme, port = "ssl", "8883"
	case "ws":
		a.scheme, port = "ws", "80"
	case "wss":
		a.scheme, port = "wss", "443"
	default:
		return address{}, fmt.Errorf("%q: scheme must be tcp, ssl, ws or wss", s)
	}
	if u.Hostname() == "" {
		return address{}, fmt.Errorf("%q: no host", s)
	}
	a.host = u.Host
	if u.Port() == "" {
		a.host = net.JoinHostPort(u.Hostname(), port)
	}
	if (a.scheme == "tcp" || a.scheme == "ssl") && u.Path != "" && u.Path != "/" {
		return address{}, fmt.Errorf("%q: a path only makes sense for ws and wss", s)
	}
	u.Host = a.host
	a.url = u
	return a, nil
}
