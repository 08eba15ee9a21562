// Package tenant holds per-tenant settings, limits and throttles, and the
// provider that serves them with hot reload.
//
// # Contract
//
// Settings are plain values. A Provider holds the settings in force — the
// defaults and the overrides of named tenants — and replaces them
// atomically (Replace); readers get an immutable snapshot (Get) and never
// see a half-applied change. Version changes on every Replace, so that a
// reader may cache what it derived from a snapshot.
//
// Settings that shape a session (maximum QoS, features, aliases, receive
// maximum, packet size, inbox size) apply to connections made after a
// change; rates and quotas apply at once.
//
// Bucket is a token bucket on an injected clock reading: no goroutine, no
// clock of its own.
package tenant

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.yaml.in/yaml/v3"
)

// Settings are one tenant's limits. Zero in a limit means "no limit"
// unless the field says otherwise.
type Settings struct {
	// Protocol versions this tenant may use.
	MQTT31  bool `yaml:"mqtt31" json:"mqtt31"`
	MQTT311 bool `yaml:"mqtt311" json:"mqtt311"`
	MQTT5   bool `yaml:"mqtt5" json:"mqtt5"`

	MaxQoS                  int  `yaml:"max_qos" json:"max_qos"`
	RetainEnabled           bool `yaml:"retain_enabled" json:"retain_enabled"`
	WildcardSubscriptions   bool `yaml:"wildcard_subscriptions" json:"wildcard_subscriptions"`
	SharedSubscriptions     bool `yaml:"shared_subscriptions" json:"shared_subscriptions"`
	SubscriptionIdentifiers bool `yaml:"subscription_identifiers" json:"subscription_identifiers"`

	MaxTopicLength  int `yaml:"max_topic_length" json:"max_topic_length"`   // bytes of a topic name or filter
	MaxTopicLevels  int `yaml:"max_topic_levels" json:"max_topic_levels"`   // levels of a topic name or filter
	MaxTopicAliases int `yaml:"max_topic_aliases" json:"max_topic_aliases"` // Topic Alias Maximum announced (0: none)
	ReceiveMaximum  int `yaml:"receive_maximum" json:"receive_maximum"`     // unacknowledged QoS 1/2 a client may send (1..65535)
	MaxPacketSize   int `yaml:"max_packet_size" json:"max_packet_size"`     // announced to 5.0 clients
	MaxPayloadSize  int `yaml:"max_payload_size" json:"max_payload_size"`   // bytes of a PUBLISH payload
	MaxWillSize     int `yaml:"max_will_size" json:"max_will_size"`         // bytes of a will's payload

	MinSessionExpiry uint32 `yaml:"min_session_expiry" json:"min_session_expiry"` // seconds: a persistent session lives at least this long
	MaxSessionExpiry uint32 `yaml:"max_session_expiry" json:"max_session_expiry"` // seconds
	MinKeepAlive     int    `yaml:"min_keepalive" json:"min_keepalive"`           // seconds: lower (or 0) keep alives are raised to it

	InboxSize           int `yaml:"inbox_size" json:"inbox_size"`                       // messages a session holds (queue + in flight)
	InboxBytes          int `yaml:"inbox_bytes" json:"inbox_bytes"`                     // bytes a session holds
	MaxSubscriptions    int `yaml:"max_subscriptions" json:"max_subscriptions"`         // per session
	MaxSharedGroupSize  int `yaml:"max_shared_group_size" json:"max_shared_group_size"` // members of one shared group
	MaxRetainedMatches  int `yaml:"max_retained_matches" json:"max_retained_matches"`   // retained messages sent per new subscription
	PublishRate         int `yaml:"publish_rate" json:"publish_rate"`                   // PUBLISH per second per connection
	InboundBandwidth    int `yaml:"inbound_bandwidth" json:"inbound_bandwidth"`         // bytes per second per connection
	OutboundBandwidth   int `yaml:"outbound_bandwidth" json:"outbound_bandwidth"`       // bytes per second per connection
	MaxConnections      int `yaml:"max_connections" json:"max_connections"`             // connected clients of the tenant
	ConnectRate         int `yaml:"connect_rate" json:"connect_rate"`                   // CONNECTs per second, tenant-wide
	InboundBytesRate    int `yaml:"inbound_bytes_rate" json:"inbound_bytes_rate"`       // bytes per second, tenant-wide
	MaxPersistent       int `yaml:"max_persistent_sessions" json:"max_persistent_sessions"`
	MaxTenantSubs       int `yaml:"max_tenant_subscriptions" json:"max_tenant_subscriptions"` // subscriptions, tenant-wide
	MaxRetained         int `yaml:"max_retained" json:"max_retained"`                         // retained messages, tenant-wide
	MaxRetainedBytes    int `yaml:"max_retained_bytes" json:"max_retained_bytes"`
	PersistentFanoutBPS int `yaml:"persistent_fanout_bytes_rate" json:"persistent_fanout_bytes_rate"` // bytes/s queued for persistent sessions

	// SlowSubscriberWaitMs bounds back-pressure from a slow subscriber
	// (milliseconds): a QoS 1/2 message that finds a connected
	// subscriber's queue full waits this long for room, holding back the
	// publisher's PUBACK/PUBREC, before it is dropped for that subscriber
	// (counted as queue_full). 0: no waiting, drop at once.
	SlowSubscriberWaitMs int `yaml:"slow_subscriber_wait_ms" json:"slow_subscriber_wait_ms"`

	// SessionTakeover says who may connect with a client identifier whose
	// session exists: "same_user" (default) only the user the session
	// belongs to — anyone else is refused with 0x87 Not authorized, so
	// that nobody takes over another user's session or reads its queued
	// messages; "any" every client of the tenant (the MQTT default, for
	// tenants whose devices share credentials).
	SessionTakeover string `yaml:"session_takeover" json:"session_takeover"`

	// Per-message caps on what user properties may cost (MQTT 5.0): their
	// number and their bytes (keys and values), in a PUBLISH or a will. A
	// message over either is refused: PUBACK/PUBREC 0x97 Quota exceeded
	// (a QoS 0 one is dropped and counted), a will's CONNECT with CONNACK
	// 0x97. 0: no cap.
	MaxUserProperties    int `yaml:"max_user_properties" json:"max_user_properties"`
	MaxUserPropertyBytes int `yaml:"max_user_property_bytes" json:"max_user_property_bytes"`
}

// Session takeover policies (Settings.SessionTakeover).
const (
	TakeoverSameUser = "same_user"
	TakeoverAny      = "any"
)

// Default returns the settings of a tenant nobody configured: every
// protocol and feature on, generous limits, no rates.
func Default() Settings {
	return Settings{
		MQTT31: true, MQTT311: true, MQTT5: true,
		MaxQoS: 2, RetainEnabled: true, WildcardSubscriptions: true, SharedSubscriptions: true,
		SubscriptionIdentifiers: true,
		MaxTopicLength:          65535, MaxTopicLevels: 128, MaxTopicAliases: 64,
		ReceiveMaximum: 1024, MaxPacketSize: 1 << 20, MaxPayloadSize: 1 << 20, MaxWillSize: 64 << 10,
		MaxSessionExpiry: math.MaxUint32,
		InboxSize:        10000, InboxBytes: 64 << 20, MaxSubscriptions: 1000,
		SlowSubscriberWaitMs: 5000,
		SessionTakeover:      TakeoverSameUser,
		MaxUserProperties:    64, MaxUserPropertyBytes: 16 << 10,
	}
}

// Validate checks the settings; errors name the field, under prefix.
func (s *Settings) Validate(prefix string) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", prefix, field, fmt.Sprintf(format, args...)))
	}
	if !s.MQTT31 && !s.MQTT311 && !s.MQTT5 {
		bad("mqtt5", "at least one protocol version must be enabled")
	}
	if s.MaxQoS < 0 || s.MaxQoS > 2 {
		bad("max_qos", "must be 0, 1 or 2")
	}
	if s.MaxTopicLength < 1 || s.MaxTopicLength > 65535 {
		bad("max_topic_length", "must be between 1 and 65535")
	}
	if s.MaxTopicLevels < 1 {
		bad("max_topic_levels", "must be positive")
	}
	if s.MaxTopicAliases < 0 || s.MaxTopicAliases > 65535 {
		bad("max_topic_aliases", "must be between 0 and 65535")
	}
	if s.ReceiveMaximum < 1 || s.ReceiveMaximum > 65535 {
		bad("receive_maximum", "must be between 1 and 65535")
	}
	if s.MaxPacketSize < 64 {
		bad("max_packet_size", "must be at least 64")
	}
	if s.MaxPayloadSize < 0 || s.MaxWillSize < 0 {
		bad("max_payload_size", "must not be negative")
	}
	if s.MinSessionExpiry > s.MaxSessionExpiry {
		bad("min_session_expiry", "exceeds max_session_expiry")
	}
	if s.MinKeepAlive < 0 || s.MinKeepAlive > 65535 {
		bad("min_keepalive", "must be between 0 and 65535")
	}
	if s.SessionTakeover != TakeoverSameUser && s.SessionTakeover != TakeoverAny {
		bad("session_takeover", "must be %q or %q, got %q", TakeoverSameUser, TakeoverAny, s.SessionTakeover)
	}
	if s.InboxSize < 1 || s.InboxSize > 60000 {
		bad("inbox_size", "must be between 1 and 60000 (each message held needs a packet identifier)")
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"inbox_bytes", s.InboxBytes}, {"max_subscriptions", s.MaxSubscriptions},
		{"max_shared_group_size", s.MaxSharedGroupSize}, {"max_retained_matches", s.MaxRetainedMatches},
		{"publish_rate", s.PublishRate}, {"inbound_bandwidth", s.InboundBandwidth},
		{"outbound_bandwidth", s.OutboundBandwidth}, {"max_connections", s.MaxConnections},
		{"connect_rate", s.ConnectRate}, {"inbound_bytes_rate", s.InboundBytesRate},
		{"max_persistent_sessions", s.MaxPersistent}, {"max_tenant_subscriptions", s.MaxTenantSubs},
		{"max_retained", s.MaxRetained}, {"max_retained_bytes", s.MaxRetainedBytes},
		{"persistent_fanout_bytes_rate", s.PersistentFanoutBPS}, {"slow_subscriber_wait_ms", s.SlowSubscriberWaitMs},
		{"max_user_properties", s.MaxUserProperties}, {"max_user_property_bytes", s.MaxUserPropertyBytes}} {
		if f.v < 0 {
			bad(f.name, "must not be negative (0 means no limit)")
		}
	}
	return errors.Join(errs...)
}

// Config is the settings section of the configuration: defaults for every
// tenant and overrides for named ones. An override lists only the fields
// that differ from the defaults.
type Config struct {
	Defaults  Settings             `yaml:"defaults"`
	Overrides map[string]yaml.Node `yaml:"tenants"`
}

// Resolve returns the settings of every named tenant, validated.
func (c *Config) Resolve() (map[string]*Settings, error) {
	out := map[string]*Settings{}
	var errs []error
	if err := c.Defaults.Validate("tenants.defaults."); err != nil {
		errs = append(errs, err)
	}
	for name, node := range c.Overrides {
		if err := ValidName(name); err != nil {
			errs = append(errs, fmt.Errorf("tenants.tenants.%s: %w", name, err))
			continue
		}
		s := c.Defaults
		if err := node.Decode(&s); err != nil {
			errs = append(errs, fmt.Errorf("tenants.tenants.%s: %w", name, err))
			continue
		}
		if err := s.Validate("tenants.tenants." + name + "."); err != nil {
			errs = append(errs, err)
		}
		out[name] = &s
	}
	return out, errors.Join(errs...)
}

// Provider serves the settings in force.
type Provider struct {
	cur     atomic.Pointer[snapshot]
	version atomic.Uint64
}

type snapshot struct {
	defaults *Settings
	tenants  map[string]*Settings
}

// NewProvider returns a provider with the default settings for everyone.
func NewProvider() *Provider {
	p := &Provider{}
	d := Default()
	p.cur.Store(&snapshot{defaults: &d, tenants: map[string]*Settings{}})
	p.version.Store(1)
	return p
}

// Replace installs new settings atomically. On error nothing changes.
func (p *Provider) Replace(c Config) error {
	tenants, err := c.Resolve()
	if err != nil {
		return err
	}
	d := c.Defaults
	p.cur.Store(&snapshot{defaults: &d, tenants: tenants})
	p.version.Add(1)
	return nil
}

// Set replaces one tenant's settings (the admin API's route).
func (p *Provider) Set(tenant string, s Settings) error {
	if err := ValidName(tenant); err != nil {
		return err
	}
	if err := s.Validate("tenants.tenants." + tenant + "."); err != nil {
		return err
	}
	old := p.cur.Load()
	tenants := make(map[string]*Settings, len(old.tenants)+1)
	for k, v := range old.tenants {
		tenants[k] = v
	}
	tenants[tenant] = &s
	p.cur.Store(&snapshot{defaults: old.defaults, tenants: tenants})
	p.version.Add(1)
	return nil
}

// Get returns the settings of tenant (the defaults when it has none of its
// own). The result must not be modified.
func (p *Provider) Get(tenant string) *Settings {
	s := p.cur.Load()
	if t, ok := s.tenants[tenant]; ok {
		return t
	}
	return s.defaults
}

// Version changes whenever the settings do.
func (p *Provider) Version() uint64 { return p.version.Load() }

// Bucket is a token bucket: rate tokens per second, at most burst. It is
// safe for concurrent use; callers pass the current time.
type Bucket struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// Take removes n tokens if the bucket (refilled at rate per second up to
// burst since the last call) holds them, and reports whether it did. A
// rate of 0 means no limit.
func (b *Bucket) Take(now time.Time, rate, burst, n float64) bool {
	if rate <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now, rate, burst)
	if b.tokens < n {
		return false
	}
	b.tokens -= n
	return true
}

// Spend removes n tokens, going into debt if needed, and returns how long
// until the bucket is back to zero: the pause that keeps a flow at rate.
func (b *Bucket) Spend(now time.Time, rate, burst, n float64) time.Duration {
	if rate <= 0 {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now, rate, burst)
	b.tokens -= n
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / rate * float64(time.Second))
}

// Positive reports whether the bucket holds tokens (it is not in debt
// from Spend). A rate of 0 means no limit.
func (b *Bucket) Positive(now time.Time, rate, burst float64) bool {
	if rate <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now, rate, burst)
	return b.tokens > 0
}

func (b *Bucket) refill(now time.Time, rate, burst float64) {
	if b.last.IsZero() {
		b.tokens, b.last = burst, now
		return
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(burst, b.tokens+d.Seconds()*rate)
		b.last = now
	}
}
