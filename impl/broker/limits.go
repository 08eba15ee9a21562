package broker

import (
	"sync/atomic"
	"time"

	"github.com/skybridge-mq/skybridge/impl/event"
	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/session"
	tenantpkg "github.com/skybridge-mq/skybridge/impl/tenant"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// Throttle reasons, for tenant and broker counters and metrics.
const (
	ThrottleConnections = iota
	ThrottleConnectRate
	ThrottlePersistent
	ThrottlePublishRate
	ThrottlePayload
	ThrottleTopic
	ThrottleSubscriptions
	ThrottleSharedGroup
	ThrottleRetained
	ThrottleFanout
	ThrottleBandwidth
	ThrottleProtocol
	ThrottleWill
	ThrottleSlowSubscriber
	ThrottleUserProperties
	numThrottles
)

// ThrottleReasons names the throttles, as metrics label them.
var ThrottleReasons = [numThrottles]string{"connections", "connect_rate", "persistent_sessions",
	"publish_rate", "payload_size", "topic_limits", "subscriptions", "shared_group_size",
	"retained_quota", "persistent_fanout_rate", "bandwidth", "protocol_disabled", "will_size",
	"slow_subscriber", "user_properties"}

// limits is what a tenant's settings mean for the broker, derived once per
// settings version.
type limits struct {
	version uint64
	s       *tenantpkg.Settings
	sess    session.Config // the session configuration of new connections
}

// tenantLimits returns the tenant's current limits, rebuilding them when
// the settings changed. Lock-free on the hot path.
func (b *Broker) tenantLimits(t *tenant) *limits {
	v := b.settings.Version()
	if l := t.limits.Load(); l != nil && l.version == v {
		return l
	}
	s := b.settings.Get(t.name)
	l := &limits{version: v, s: s, sess: b.cfg.Session}
	c := &l.sess
	// The broker's configuration is the ceiling; a tenant's settings may
	// only narrow it.
	c.MaxQoS = min(c.MaxQoS, packet.QoS(s.MaxQoS))
	c.RetainAvailable = c.RetainAvailable && s.RetainEnabled
	c.WildcardSubscriptions = c.WildcardSubscriptions && s.WildcardSubscriptions
	c.SharedSubscriptions = c.SharedSubscriptions && s.SharedSubscriptions
	c.SubscriptionIdentifiers = c.SubscriptionIdentifiers && s.SubscriptionIdentifiers
	c.TopicAliasMaximum = min(c.TopicAliasMaximum, uint16(s.MaxTopicAliases))
	c.ReceiveMaximum = min(c.ReceiveMaximum, uint16(s.ReceiveMaximum))
	if c.MaxPacketSize == 0 || uint32(s.MaxPacketSize) < c.MaxPacketSize {
		c.MaxPacketSize = uint32(s.MaxPacketSize)
	}
	c.MaxQueued = min(c.MaxQueued, s.InboxSize)
	if s.InboxBytes > 0 && (c.MaxQueuedBytes == 0 || s.InboxBytes < c.MaxQueuedBytes) {
		c.MaxQueuedBytes = s.InboxBytes
	}
	c.MaxSessionExpiry = min(c.MaxSessionExpiry, s.MaxSessionExpiry)
	c.MinSessionExpiry = s.MinSessionExpiry
	c.MinKeepAlive = uint16(s.MinKeepAlive)
	t.limits.Store(l)
	return l
}

// throttle counts a throttle reaction in the tenant's and the broker's
// counters.
func (b *Broker) throttle(t *tenant, reason int) {
	b.stats.Throttled[reason].Add(1)
	if n := t.stats.throttled[reason].Add(1); n&(n-1) == 0 {
		// Events at the 1st, 2nd, 4th, 8th... throttle of a kind per
		// tenant: visible, but a flood of refusals is not a flood of events.
		b.emit(event.NewThrottled(b.env.Clock.Now(), event.Who{Tenant: t.name}, ThrottleReasons[reason]))
	}
}

// admitConnect applies the tenant's connection limits to an authenticated
// CONNECT; a non-zero code refuses it. An admitted CONNECT holds a place
// among the tenant's connections (t.admitting), so that CONNECTs accepted
// at once cannot all take the last place: the caller gives it back
// (t.admitting.Add(-1)) once the connection is counted in t.connected, or
// refused after all.
//
// id is the client id the CONNECT asks for: one whose session is connected
// on this node now is a takeover, which ends that connection as this one
// comes, so it takes no new place (a client that reconnects before its
// old connection timed out is not refused at the limit).
func (b *Broker) admitConnect(t *tenant, l *limits, c *packet.Connect, id string, now time.Time) packet.ReasonCode {
	s := l.s
	switch {
	case c.Version == packet.V31 && !s.MQTT31, c.Version == packet.V311 && !s.MQTT311, c.Version == packet.V5 && !s.MQTT5:
		b.throttle(t, ThrottleProtocol)
		return packet.UnsupportedProtocolVersion
	case s.MaxWillSize > 0 && c.WillFlag && message.SizeOf(c.WillTopic, c.WillPayload, &c.WillProperties) > s.MaxWillSize:
		// The whole will counts (topic, payload, properties), as it is kept.
		b.throttle(t, ThrottleWill)
		return packet.PacketTooLarge
	case c.WillFlag && !userPropertiesWithin(s, &c.WillProperties):
		b.throttle(t, ThrottleUserProperties)
		return packet.QuotaExceeded
	case c.WillFlag && c.Version == packet.V5 && c.WillQoS > l.sess.MaxQoS:
		return packet.QoSNotSupported // [v5 MQTT-3.2.2-12]
	case c.WillFlag && c.Version == packet.V5 && c.WillRetain && !l.sess.RetainAvailable:
		return packet.RetainNotSupported // [v5 MQTT-3.2.2-13]
	}
	// The place is taken before connected is read; a connection is counted
	// in connected before it gives its place back: never missed.
	places := t.admitting.Add(1)
	if s.MaxConnections > 0 && b.overConnections(t, places+t.connected.Load()-b.connectedHere(t, id), int64(s.MaxConnections)) {
		t.admitting.Add(-1)
		b.throttle(t, ThrottleConnections)
		return packet.QuotaExceeded
	}
	if !t.connectRate.Take(now, float64(s.ConnectRate), float64(max(s.ConnectRate, 1)), 1) {
		t.admitting.Add(-1)
		b.throttle(t, ThrottleConnectRate)
		return packet.ConnectionRateExceeded
	}
	if c.WillFlag {
		// Older clients cannot be told what the tenant does not offer: their
		// will is kept within it, as a subscription's QoS would be.
		c.WillQoS = min(c.WillQoS, l.sess.MaxQoS)
		c.WillRetain = c.WillRetain && l.sess.RetainAvailable
	}
	return packet.Success
}

// connectedHere returns 1 when tenant t has a session of client id with a
// connection on this node (a CONNECT with that id takes it over), else 0.
func (b *Broker) connectedHere(t *tenant, id string) int64 {
	if id == "" {
		return 0 // the broker assigns one: a new session
	}
	t.regMu.Lock()
	defer t.regMu.Unlock()
	e := t.sessions[id]
	if e == nil {
		return 0
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		return 0
	}
	return 1
}

// overConnections reports whether local connections of tenant (this one
// included) are more than limit, counting, in a cluster, the other nodes'
// connections as last heard of (docs/CLUSTER.md, "Tenant connection
// limits").
func (b *Broker) overConnections(t *tenant, local, limit int64) bool {
	if local > limit {
		return true
	}
	if cl := b.cfg.Cluster; cl != nil && local+cl.ConnectionsElsewhere(t.name) > limit {
		b.stats.ClusterConnectionsRefused.Add(1)
		return true
	}
	return false
}

// userPropertiesWithin applies the tenant's caps on a message's user
// properties: their number and their bytes.
func userPropertiesWithin(s *tenantpkg.Settings, p *packet.Properties) bool {
	return (s.MaxUserProperties <= 0 || len(p.User) <= s.MaxUserProperties) &&
		(s.MaxUserPropertyBytes <= 0 || message.UserPropertyBytes(p) <= s.MaxUserPropertyBytes)
}

// persistent reports whether a CONNECT asks for a session that outlives
// its connection.
func persistent(c *packet.Connect) bool {
	if c.Version == packet.V5 {
		return c.Properties.SessionExpiry > 0
	}
	return !c.CleanStart
}

// checkTopic applies the tenant's topic length and level limits.
func checkTopic(l *limits, name []byte) bool {
	s := l.s
	return len(name) <= s.MaxTopicLength && topic.Levels(name) <= s.MaxTopicLevels
}

// admitPublish applies the tenant's publish limits before routing; a
// non-zero code refuses the message (kick: the connection must go).
func (c *Conn) admitPublish(l *limits, m *message.Message, at *instant) (code packet.ReasonCode, kick bool) {
	b, t, s := c.b, c.t, l.s
	if s.PublishRate > 0 && !c.rate().pubRate.Take(at.now(), float64(s.PublishRate), float64(max(s.PublishRate, 1)), 1) {
		b.throttle(t, ThrottlePublishRate)
		return packet.MessageRateTooHigh, true
	}
	if s.MaxPayloadSize > 0 && len(m.Payload) > s.MaxPayloadSize {
		b.throttle(t, ThrottlePayload)
		return packet.QuotaExceeded, false
	}
	if !userPropertiesWithin(s, &m.Properties) {
		b.throttle(t, ThrottleUserProperties)
		return packet.QuotaExceeded, false
	}
	if !checkTopic(l, m.Topic) {
		b.throttle(t, ThrottleTopic)
		return packet.TopicNameInvalid, false
	}
	if m.Retain && len(m.Payload) > 0 && (s.MaxRetained > 0 || s.MaxRetainedBytes > 0) {
		n, bytes := b.retained.Count(t.name)
		if s.MaxRetained > 0 && n >= s.MaxRetained || s.MaxRetainedBytes > 0 && bytes+m.Size() > s.MaxRetainedBytes {
			b.throttle(t, ThrottleRetained)
			return packet.QuotaExceeded, false
		}
	}
	if s.PersistentFanoutBPS > 0 && !t.fanout.Positive(at.now(), float64(s.PersistentFanoutBPS), float64(s.PersistentFanoutBPS)) {
		b.throttle(t, ThrottleFanout)
		return packet.MessageRateTooHigh, false
	}
	return packet.Success, false
}

// admitSubscription applies the tenant's subscription limits to one
// granted filter; a non-zero code refuses it (in the SUBACK).
func (c *Conn) admitSubscription(l *limits, e *entry, req *session.SubRequest, sessionSubs int) packet.ReasonCode {
	b, t, s := c.b, c.t, l.s
	inner := req.Filter
	if _, f, ok := topic.ParseShared(req.Filter); ok {
		inner = f
	}
	switch {
	case !checkTopic(l, inner):
		b.throttle(t, ThrottleTopic)
		return packet.TopicFilterInvalid
	case s.MaxSubscriptions > 0 && sessionSubs >= s.MaxSubscriptions:
		b.throttle(t, ThrottleSubscriptions)
		return packet.QuotaExceeded
	case s.MaxTenantSubs > 0 && t.routes.Len() >= s.MaxTenantSubs:
		b.throttle(t, ThrottleSubscriptions)
		return packet.QuotaExceeded
	case req.Shared && s.MaxSharedGroupSize > 0 && t.localSubs[string(req.Filter)] >= s.MaxSharedGroupSize:
		b.throttle(t, ThrottleSharedGroup)
		return packet.QuotaExceeded
	}
	return packet.Success
}

// InboundPause returns how long the runtime should wait before reading
// again, having just read n bytes: the connection's and the tenant's
// inbound bandwidth limits, as back-pressure rather than disconnection.
//
// It also pauses a publisher that ignores flow control: one with more
// acknowledgements held back by slow subscribers than its Receive Maximum
// (backpressure.go; a 5.0 client would have been disconnected) is read
// again only after parkPoll.
func (c *Conn) InboundPause(n int) time.Duration {
	t := c.t
	if t == nil {
		return 0
	}
	l := c.b.tenantLimits(t)
	s := l.s
	var p time.Duration
	if s.InboundBandwidth > 0 || s.InboundBytesRate > 0 {
		now := c.b.env.Clock.Now()
		p = c.rate().inBytes.Spend(now, float64(s.InboundBandwidth), float64(s.InboundBandwidth), float64(n))
		if q := t.inBytes.Spend(now, float64(s.InboundBytesRate), float64(s.InboundBytesRate), float64(n)); q > p {
			p = q
		}
		if p > 0 {
			c.b.throttle(t, ThrottleBandwidth)
		}
	}
	if int(c.nparked.Load()) >= int(l.sess.ReceiveMaximum) && p < parkPoll {
		p = parkPoll
	}
	return p
}

// parkPoll is how long the reading of a publisher over its quota of held
// acknowledgements pauses before the runtime asks again.
const parkPoll = 2 * time.Millisecond

// OutboundPause returns how long the runtime should wait after writing n
// bytes to keep the connection within its outbound bandwidth.
func (c *Conn) OutboundPause(n int) time.Duration {
	t := c.t
	if t == nil {
		return 0
	}
	s := c.b.tenantLimits(t).s
	if s.OutboundBandwidth <= 0 {
		return 0 // no limit: no clock read
	}
	return c.rate().outBytes.Spend(c.b.env.Clock.Now(), float64(s.OutboundBandwidth), float64(s.OutboundBandwidth), float64(n))
}

// Settings returns the broker's settings provider (hot reload, admin API).
func (b *Broker) Settings() *tenantpkg.Provider { return b.settings }

// counterArray is a fixed set of counters.
type counterArray [numThrottles]atomic.Uint64
