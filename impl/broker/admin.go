package broker

import (
	"errors"
	"sort"
	"time"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// What the admin API shows and does. Everything here takes the same locks
// as the protocol paths, briefly, and copies what it returns.

// TenantInfo is a tenant's current figures.
type TenantInfo struct {
	Name          string            `json:"name"`
	Connected     int64             `json:"connected"`
	Sessions      int               `json:"sessions"`
	Persistent    int64             `json:"persistent_sessions"`
	Subscriptions int               `json:"subscriptions"`
	Retained      int               `json:"retained"`
	RetainedBytes int               `json:"retained_bytes"`
	MessagesIn    uint64            `json:"messages_in"`
	MessagesOut   uint64            `json:"messages_out"`
	BytesIn       uint64            `json:"bytes_in"`
	Dropped       uint64            `json:"dropped"`
	Throttled     map[string]uint64 `json:"throttled,omitempty"`
}

// TenantInfos returns every tenant's figures, by name.
func (b *Broker) TenantInfos() []TenantInfo {
	var out []TenantInfo
	for _, name := range b.Tenants() {
		if ti, ok := b.TenantInfo(name); ok {
			out = append(out, ti)
		}
	}
	return out
}

// TenantInfo returns one tenant's figures.
func (b *Broker) TenantInfo(name string) (TenantInfo, bool) {
	b.mu.Lock()
	t := b.tenants[name]
	b.mu.Unlock()
	if t == nil {
		return TenantInfo{}, false
	}
	ti := TenantInfo{Name: name, Connected: t.connected.Load(), Persistent: t.persistent.Load(),
		MessagesIn: t.stats.messagesIn.Load(), MessagesOut: t.stats.messagesOut.Load(),
		BytesIn: t.stats.bytesIn.Load(), Dropped: t.stats.dropped.Load()}
	t.regMu.Lock()
	ti.Sessions = len(t.sessions)
	t.regMu.Unlock()
	t.routesMu.RLock()
	ti.Subscriptions = t.routes.Len()
	t.routesMu.RUnlock()
	ti.Retained, ti.RetainedBytes = b.retained.Count(name)
	for i, r := range ThrottleReasons {
		if n := t.stats.throttled[i].Load(); n > 0 {
			if ti.Throttled == nil {
				ti.Throttled = map[string]uint64{}
			}
			ti.Throttled[r] = n
		}
	}
	return ti, true
}

// SessionInfo describes one session.
type SessionInfo struct {
	ClientID      string         `json:"client_id"`
	User          string         `json:"user,omitempty"` // the user the session belongs to
	Connected     bool           `json:"connected"`
	Remote        string         `json:"remote,omitempty"`
	Version       string         `json:"protocol"`
	Expiry        uint32         `json:"session_expiry"`
	OfflineSince  *time.Time     `json:"offline_since,omitempty"`
	Queued        int            `json:"queued"`
	Inflight      int            `json:"inflight"`
	Parked        int            `json:"parked,omitempty"`  // deliveries waiting for room, their acknowledgements held (backpressure.go)
	Stalled       bool           `json:"stalled,omitempty"` // one waited its whole bound: no waiting until the queue drains
	Subscriptions []Subscription `json:"subscriptions,omitempty"`
	Dropped       DropStats      `json:"dropped"`
}

// DropStats are a session's drop counters.
type DropStats struct {
	QueueFull  uint64 `json:"queue_full"`
	OutputFull uint64 `json:"output_full"`
	Offline    uint64 `json:"offline"`
	TooLarge   uint64 `json:"too_large"`
	Expired    uint64 `json:"expired"`
}

// Subscription is one of a session's subscriptions.
type Subscription struct {
	Filter            string `json:"filter"`
	QoS               byte   `json:"qos"`
	NoLocal           bool   `json:"no_local,omitempty"`
	RetainAsPublished bool   `json:"retain_as_published,omitempty"`
	RetainHandling    byte   `json:"retain_handling,omitempty"`
	ID                uint32 `json:"subscription_id,omitempty"`
}

func (e *entry) info(withSubs bool) SessionInfo {
	s := e.s
	si := SessionInfo{ClientID: s.ClientID, User: s.Owner, Connected: e.conn != nil, Version: s.Version().String(), Expiry: s.Expiry()}
	if e.conn != nil {
		si.Remote = e.conn.remote
	} else if off := s.Offline(); !off.IsZero() {
		si.OfflineSince = &off
	}
	si.Queued, si.Inflight = s.Queued()
	si.Parked, si.Stalled = e.nparked(), e.stalled
	st := s.Stats()
	si.Dropped = DropStats{st.DroppedQueueFull, st.DroppedOutputFull, st.DroppedOffline, st.DroppedTooLarge, st.DroppedExpired}
	if withSubs {
		s.Subscriptions(func(f string, o topic.Options) bool {
			si.Subscriptions = append(si.Subscriptions, Subscription{Filter: f, QoS: o.QoS, NoLocal: o.NoLocal,
				RetainAsPublished: o.RetainAsPublished, RetainHandling: o.RetainHandling, ID: o.ID})
			return true
		})
	}
	return si
}

// Sessions lists a tenant's sessions by client id, from offset, at most
// limit of them, and returns the total.
func (b *Broker) Sessions(tenantName string, offset, limit int) ([]SessionInfo, int) {
	b.mu.Lock()
	t := b.tenants[tenantName]
	b.mu.Unlock()
	if t == nil {
		return nil, 0
	}
	t.regMu.Lock()
	ids := make([]string, 0, len(t.sessions))
	for id := range t.sessions {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	total := len(ids)
	if offset > len(ids) {
		offset = len(ids)
	}
	ids = ids[offset:]
	if limit > 0 && len(ids) > limit {
		ids = ids[:limit]
	}
	entries := make([]*entry, len(ids))
	for i, id := range ids {
		entries[i] = t.sessions[id]
	}
	t.regMu.Unlock()
	out := make([]SessionInfo, 0, len(entries))
	for _, e := range entries {
		e.mu.Lock()
		out = append(out, e.info(false))
		e.mu.Unlock()
	}
	return out, total
}

// ErrNoSession is returned for a session that does not exist.
var ErrNoSession = errors.New("no such session")

func (b *Broker) findEntry(tenantName, clientID string) *entry {
	b.mu.Lock()
	t := b.tenants[tenantName]
	b.mu.Unlock()
	if t == nil {
		return nil
	}
	t.regMu.Lock()
	defer t.regMu.Unlock()
	return t.sessions[clientID]
}

// Session describes one session with its subscriptions.
func (b *Broker) Session(tenantName, clientID string) (SessionInfo, error) {
	e := b.findEntry(tenantName, clientID)
	if e == nil {
		return SessionInfo{}, ErrNoSession
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.info(true), nil
}

// KickSession disconnects a session's client (5.0 clients are told 0x98,
// administrative action) and, with discard, ends the session too.
func (b *Broker) KickSession(tenantName, clientID string, discard bool) error {
	return b.kickSession(tenantName, clientID, packet.AdministrativeAction, discard)
}

// EndTakenOver ends a session another node of the cluster takes for user:
// its client is told 0x8E (session taken over), its will goes as on a
// takeover, and the session is discarded (its state does not move with
// it). It refuses (false, nothing ended) when the session is another
// user's and the tenant does not allow that user to take it over, as a
// takeover on this node would.
func (b *Broker) EndTakenOver(tenantName, clientID, user string) bool {
	if e := b.findEntry(tenantName, clientID); e != nil {
		l := b.tenantLimits(e.t)
		e.mu.Lock()
		ok := mayTakeOver(l, e.s, user)
		e.mu.Unlock()
		if !ok {
			return false
		}
	}
	_ = b.kickSession(tenantName, clientID, packet.SessionTakenOver, true)
	return true
}

func (b *Broker) kickSession(tenantName, clientID string, code packet.ReasonCode, discard bool) error {
	e := b.findEntry(tenantName, clientID)
	if e == nil {
		return ErrNoSession
	}
	e.mu.Lock()
	c := e.conn
	e.mu.Unlock()
	if c != nil {
		c.Kick(code)
		c.wakeUp()
	}
	if discard {
		e.mu.Lock()
		gen := e.gen
		e.mu.Unlock()
		b.endSession(e, gen, nil)
	}
	return nil
}

// RetainedInfo describes a retained message.
type RetainedInfo struct {
	Topic   string `json:"topic"`
	QoS     byte   `json:"qos"`
	Size    int    `json:"payload_bytes"`
	Payload []byte `json:"payload,omitempty"`
}

// Retained lists a tenant's retained messages matching filter, at most limit.
func (b *Broker) Retained(tenantName, filter string, limit int, withPayload bool) []RetainedInfo {
	var out []RetainedInfo
	b.retained.Match(tenantName, []byte(filter), b.env.Clock.Now(), func(m *message.Message) bool {
		ri := RetainedInfo{Topic: string(m.Topic), QoS: byte(m.QoS), Size: len(m.Payload)}
		if withPayload {
			ri.Payload = m.Payload
		}
		out = append(out, ri)
		return limit <= 0 || len(out) < limit
	})
	return out
}

// DeleteRetained removes a tenant's retained message on topic, durably.
func (b *Broker) DeleteRetained(tenantName, name string) {
	t := b.acquireTenant(tenantName)
	defer b.releaseTenant(t)
	m := &message.Message{Topic: []byte(name), Retain: true, Owned: true}
	var rs routeScratch
	b.setRetained(t, m, &rs)
	b.commitRoute(&rs) // nobody waits: a failure is counted and logged
}
