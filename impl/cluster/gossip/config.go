package gossip

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/skybridge-mq/skybridge/impl/cluster"
)

// Config is one node's membership configuration; docs/CLUSTER.md lists the
// fields as the future `cluster:` section of the configuration file.
type Config struct {
	Cluster string // the cluster's name; nodes of another cluster cannot join
	NodeID  string // unique in the cluster; the same after a restart

	// Bind is the gossip address (UDP and TCP, the same port) as ip:port;
	// port 0 picks a free one. Advertise is the address other nodes use
	// (ip:port); empty means memberlist's choice from Bind.
	Bind      string
	Advertise string

	// Seeds are gossip addresses of other nodes (host:port, DNS names
	// allowed). Joining retries every JoinRetry until one answers.
	Seeds     []string
	JoinRetry time.Duration // default 5 s

	// ReconnectInterval is how often (with ±25% jitter) the node tries to
	// join again the members it holds dead (not those that left), at the
	// last gossip address it knew for each, and its seeds while any is
	// dead: memberlist itself probes and syncs with live members only, so
	// without this the two sides of a healed partition would never hear
	// from each other again (serf's reconnect loop). Default 5 s.
	// ReconnectTimeout is how long after its death a member is tried:
	// default 24 h (serf's).
	ReconnectInterval time.Duration
	ReconnectTimeout  time.Duration

	// SecretKey, when set, encrypts and authenticates gossip (AES-GCM):
	// 16, 24 or 32 bytes, in hex (32, 48 or 64 hex digits: tried first) or
	// base64. Every node of the cluster needs the same key.
	SecretKey string

	Roles cluster.Roles
	// Addresses advertised in the node's metadata (host:port, or empty).
	MQTT, Forward, KV string

	// Incarnation must be higher on every restart of NodeID; 0 takes the
	// wall clock in milliseconds at start, which is, unless the clock was
	// set back between the two starts.
	Incarnation uint64

	// MaxMembers bounds the core's members and the queue of reports
	// waiting for it (default 1024).
	MaxMembers int

	// OnChange is called with every change that altered the view, in
	// order, from one goroutine. A slow OnChange delays later changes but
	// loses none: reports waiting meanwhile are coalesced per node.
	OnChange func(cluster.Change)

	Logger *slog.Logger // memberlist's log lines go here too; default slog.Default()
	Timing Timing

	// wrapTransport, in this package's tests, wraps memberlist's network
	// transport (to cut the network between nodes on one host).
	wrapTransport func(*memberlist.NetTransport) memberlist.Transport
	// tune, in this package's tests, changes memberlist's configuration
	// last.
	tune func(*memberlist.Config)
}

// Timing overrides memberlist's LAN defaults (probe every 1 s, 500 ms
// timeout, gossip every 200 ms, suspicion multiplier 4, push/pull every
// 30 s) where non-zero. Tests shorten them.
type Timing struct {
	ProbeInterval, ProbeTimeout, GossipInterval, PushPullInterval time.Duration
	SuspicionMult                                                 int
}

const (
	defaultJoinRetry         = 5 * time.Second
	defaultReconnectInterval = 5 * time.Second
	defaultReconnectTimeout  = 24 * time.Hour
)

// Validate checks the configuration without starting anything.
func (c *Config) Validate() error {
	if c.NodeID == "" || len(c.NodeID) > cluster.MaxNodeID {
		return fmt.Errorf("gossip: node_id must be 1 to %d bytes", cluster.MaxNodeID)
	}
	if _, _, err := splitIPPort(c.Bind); err != nil {
		return fmt.Errorf("gossip: bind %q: %w", c.Bind, err)
	}
	if c.Advertise != "" {
		if _, _, err := splitIPPort(c.Advertise); err != nil {
			return fmt.Errorf("gossip: advertise %q: %w", c.Advertise, err)
		}
	}
	for _, s := range c.Seeds {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return fmt.Errorf("gossip: seed %q: %w", s, err)
		}
	}
	if _, err := ParseSecretKey(c.SecretKey); err != nil {
		return err
	}
	if _, err := c.meta(1).Encode(); err != nil {
		return err
	}
	if c.MaxMembers < 0 || c.JoinRetry < 0 {
		return errors.New("gossip: negative max_members or join_retry")
	}
	if c.ReconnectInterval < 0 || c.ReconnectTimeout < 0 {
		return errors.New("gossip: negative reconnect_interval or reconnect_timeout")
	}
	return nil
}

func (c *Config) meta(incarnation uint64) cluster.Meta {
	return cluster.Meta{Cluster: c.Cluster, Incarnation: incarnation, Roles: c.Roles, MQTT: c.MQTT, Forward: c.Forward, KV: c.KV}
}

// splitIPPort parses ip:port: memberlist binds and advertises IPs, not names.
func splitIPPort(a string) (string, int, error) {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0, err
	}
	if net.ParseIP(host) == nil {
		return "", 0, errors.New("host must be an IP address")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", 0, errors.New("port must be 0 to 65535")
	}
	return host, int(p), nil
}

// ParseSecretKey decodes a gossip key: hex when the string is 32, 48 or 64
// hex digits (a 16-byte key in hex is also valid base64, for a 24-byte
// key, so hex must win), else standard base64. Empty means no encryption.
func ParseSecretKey(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	if n := len(s); n == 32 || n == 48 || n == 64 {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("gossip: secret_key is neither hex nor base64")
	}
	if n := len(k); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("gossip: secret_key is %d bytes; AES needs 16, 24 or 32", n)
	}
	return k, nil
}
