package broker

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skybridge-mq/skybridge/impl/acl"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/event"
	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/session"
	"github.com/skybridge-mq/skybridge/impl/store"
	tenantpkg "github.com/skybridge-mq/skybridge/impl/tenant"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// ConnInfo describes where a connection comes from.
type ConnInfo struct {
	Listener      string // listener name, for logs and authentication
	DefaultTenant string // the listener's tenant (empty: DefaultTenant)
	Remote        string // remote address
	CertSubject   string // verified TLS client certificate subject, if any
	// Redirect, when set, sends every client elsewhere: a 5.0 CONNACK with
	// UseAnotherServer (or ServerMoved when Moved) and this Server
	// Reference; a 3.1.1 client is refused as server unavailable.
	Redirect string
	Moved    bool
	// IdleEndsBatch promises that the runtime calls Idle after every batch
	// of packets it hands to Handle (when it has no more bytes to decode)
	// and before Closed. The PUBLISHes of a batch then share one commit of
	// the durable store, made at Idle, instead of one each.
	IdleEndsBatch bool
}

// Conn is one network connection as the broker sees it. The runtime calls
// Handle from the connection's reader, Output from its writer when wake has
// been called, and Closed once when the transport is gone.
//
// An idle connection is mostly this struct, so what most connections never
// use is made on first use: the routing scratch (a publisher's), the
// authentication state (enhanced authentication, expiring credentials), the
// queue of held acknowledgements; and what is the same for every
// connection of a listener is shared (listenerInfo).
type Conn struct {
	b      *Broker
	lis    *listenerInfo
	wake   func()
	remote string // ConnInfo.Remote (its CertSubject is in auth)

	// Owned by the reader.
	dec connDecoder
	t   *tenant
	rs  *routeScratch // made by the first PUBLISH (scratch)
	// auth is made by enhanced authentication or expiring credentials; the
	// reader sets it, under mu.
	auth *connAuth

	// who is the authenticated identity, for authorization and events;
	// set when the CONNECT is accepted, replaced by a re-authentication.
	who acl.Client

	// Per-connection rates (limits.go), made when a limit first needs
	// them: most connections run without per-connection limits.
	rates atomic.Pointer[connRates]

	// Acknowledgements that wait (backpressure.go): for the store, for
	// deliveries parked on slow subscribers, or behind an earlier one.
	// nacks is their number (counted down once written); nparked, those
	// with a parked delivery.
	ackMu   sync.Mutex
	acks    *ackQueue // made by the first held acknowledgement (under ackMu)
	nacks   atomic.Int32
	nparked atomic.Int32

	// Scratch for the acknowledgements a subscriber's writer releases when
	// room appears for parked deliveries (its reader's is rs.rel); made
	// once some were.
	relWrite *[]*heldAck

	// wakePending is set when wake has been called and Output has not run
	// since: further wakes are redundant (many publishers deliver into one
	// subscriber; each would otherwise signal its writer).
	wakePending atomic.Bool

	mu      sync.Mutex
	closing bool // close the transport once everything is written
	closed  bool // Closed was called
	// Why the connection ends, for the disconnected event: the first cause
	// noted wins (a client's DISCONNECT, a protocol error, a kick, the
	// transport's failure). (The small fields sit next to mu, in its
	// padding: Conn is 240 B, a size class below 256.)
	endCode  packet.ReasonCode
	endNoted bool
	endCause string
	e        *entry // the session, once CONNECT is accepted
	pending  []byte // bytes outside the session: a refusal CONNACK, a final DISCONNECT
}

// Causes of a connection's end, as the disconnected event's detail says them.
const (
	CauseClientDisconnect = "client_disconnect"
	CauseProtocolError    = "protocol_error"
	CauseMalformed        = "malformed_packet"
	CauseKeepAlive        = "keep_alive_timeout"
	CauseConnectionLost   = "connection_lost"
	CauseWriteFailed      = "write_failed"
	CauseTakenOver        = "session_taken_over"
	CauseShutdown         = "server_shutting_down"
	CauseNotAuthorized    = "not_authorized"
	CauseRateLimited      = "rate_limited"
	CauseQuota            = "quota_exceeded"
	CauseAdministrative   = "administrative_action"
	CauseRedirected       = "redirected"
	CauseKicked           = "kicked"
)

// DisconnectCauses lists the causes, for documentation and tests.
var DisconnectCauses = []string{CauseClientDisconnect, CauseProtocolError, CauseMalformed, CauseKeepAlive,
	CauseConnectionLost, CauseWriteFailed, CauseTakenOver, CauseShutdown, CauseNotAuthorized, CauseRateLimited,
	CauseQuota, CauseAdministrative, CauseKicked}

// noteEnd records why the connection ends, unless a cause is already known.
func (c *Conn) noteEnd(code packet.ReasonCode, cause string) {
	c.mu.Lock()
	if !c.endNoted {
		c.endCode, c.endCause, c.endNoted = code, cause, true
	}
	c.mu.Unlock()
}

// WriteFailed tells the broker that writing to the transport failed (err:
// the write timeout of a client that stopped reading, a reset), before the
// runtime calls Closed. Like Lost, it only names the cause.
func (c *Conn) WriteFailed(err error) {
	c.noteEnd(packet.UnspecifiedError, CauseWriteFailed+": "+err.Error())
}

// kickCause names the cause of an end the broker decided with code.
func kickCause(code packet.ReasonCode) string {
	switch code {
	case packet.SessionTakenOver:
		return CauseTakenOver
	case packet.ServerShuttingDown:
		return CauseShutdown
	case packet.NotAuthorized:
		return CauseNotAuthorized
	case packet.MessageRateTooHigh:
		return CauseRateLimited
	case packet.QuotaExceeded:
		return CauseQuota
	case packet.AdministrativeAction:
		return CauseAdministrative
	case packet.UseAnotherServer:
		return CauseRedirected
	}
	return CauseKicked
}

// Lost tells the broker why the transport failed before the runtime calls
// Closed: err is the read or write error (a timeout of the keep-alive read
// deadline, a reset, EOF without DISCONNECT). It only names the cause of
// the disconnected event; the session is detached by Closed.
func (c *Conn) Lost(err error) {
	var te interface{ Timeout() bool }
	switch {
	case errors.As(err, &te) && te.Timeout():
		c.noteEnd(packet.KeepAliveTimeout, CauseKeepAlive)
	case err == nil:
		c.noteEnd(packet.UnspecifiedError, CauseConnectionLost)
	default:
		c.noteEnd(packet.UnspecifiedError, CauseConnectionLost+": "+err.Error())
	}
}

// listenerInfo is the part of ConnInfo that every connection of a listener
// shares: NewConn keeps one per distinct value (interned).
type listenerInfo struct {
	Listener, DefaultTenant, Redirect string
	Moved, IdleEndsBatch              bool
}

// maxListenerInfos bounds the interned listenerInfos; past it (a broker
// whose runtime makes up listener names), each connection has its own.
const maxListenerInfos = 256

// listenerInfo returns the shared listenerInfo of info.
func (b *Broker) listenerInfo(info *ConnInfo) *listenerInfo {
	k := listenerInfo{Listener: info.Listener, DefaultTenant: info.DefaultTenant, Redirect: info.Redirect,
		Moved: info.Moved, IdleEndsBatch: info.IdleEndsBatch}
	b.lisMu.Lock()
	defer b.lisMu.Unlock()
	if li := b.listeners[k]; li != nil {
		return li
	}
	li := new(listenerInfo)
	*li = k
	if len(b.listeners) < maxListenerInfos {
		if b.listeners == nil {
			b.listeners = map[listenerInfo]*listenerInfo{}
		}
		b.listeners[k] = li
	}
	return li
}

// connAuth is a connection's authentication state beyond its identity.
type connAuth struct {
	// Enhanced authentication: the conversation in progress, its method,
	// and the CONNECT (an owned copy) waiting for it to finish.
	ex      Exchange
	method  []byte
	connect *packet.Connect
	req     *AuthRequest
	// credTimer fires when the credentials expire; credGen tells an old
	// timer's call apart. Both under Conn.mu.
	credTimer env.Timer
	credGen   uint64
	// certSubject is ConnInfo.CertSubject.
	certSubject string
}

// certSubject returns the subject of the client's verified certificate.
func (c *Conn) certSubject() string {
	if c.auth == nil {
		return ""
	}
	return c.auth.certSubject
}

// authState returns the connection's authentication state, made on first
// use. Only the reader calls it; the caller must not hold c.mu.
func (c *Conn) authState() *connAuth {
	if c.auth == nil {
		c.mu.Lock()
		c.auth = &connAuth{}
		c.mu.Unlock()
	}
	return c.auth
}

// enhancedMethod returns the method of the connection's enhanced
// authentication (nil: none).
func (c *Conn) enhancedMethod() []byte {
	if c.auth == nil {
		return nil
	}
	return c.auth.method
}

// scratch returns the connection's routing scratch, made on first use (by
// its reader).
func (c *Conn) scratch() *routeScratch {
	if c.rs == nil {
		c.rs = &routeScratch{}
	}
	return c.rs
}

// ackQueue holds a connection's acknowledgements that wait (backpressure.go),
// in order; under Conn.ackMu.
type ackQueue struct {
	acks []*heldAck
	head int
	dead bool // a failed commit closes the connection: the rest is discarded
}

// connRates are a connection's token buckets.
type connRates struct {
	pubRate  tenantpkg.Bucket
	inBytes  tenantpkg.Bucket
	outBytes tenantpkg.Bucket
}

// rate returns the connection's buckets, made on first use (by its reader
// or its writer).
func (c *Conn) rate() *connRates {
	if r := c.rates.Load(); r != nil {
		return r
	}
	c.rates.CompareAndSwap(nil, new(connRates))
	return c.rates.Load()
}

// routeScratch is reused by a connection's reader for every message it routes.
type routeScratch struct {
	matches topic.Matches
	ids     []uint32
	// job collects what routing made durable work for and the sessions
	// whose held output waits for it (durable.go).
	job *commitJob
	// ack is the publisher's acknowledgement once a delivery of the
	// message was parked (backpressure.go); limits, the tenant's limits,
	// looked up when first needed.
	ack    *heldAck
	limits *limits
	// rel is scratch for the acknowledgements the reader releases when room
	// appears for parked deliveries.
	rel []*heldAck
}

// decoders lends packet decoders (4 KiB each) to busy connections: a
// connection borrows one for the packets of a batch and gives it back when
// the runtime says it is idle (Idle), so that an idle connection holds none.
// With the decoder comes the session.Result its packets are handled into
// (session.HandleInto), so that an idle connection holds neither.
var decoders = sync.Pool{New: func() any { return new(batchState) }}

// batchState is what a connection borrows for a batch of packets.
type batchState struct {
	packet.Decoder
	res session.Result
}

// maxPooledEntries bounds the slices (user properties, filters) a pooled
// decoder keeps: an unusual packet does not make every decoder large.
const maxPooledEntries = 64

// connDecoder is a connection's packet decoder: the protocol version in
// force, and a decoder borrowed from decoders while the connection is busy.
// Only the reader uses it; other goroutines may read Version, which changes
// only with a CONNECT.
type connDecoder struct {
	Version packet.Version
	d       *batchState
}

// Decode decodes one packet with the borrowed decoder (borrowing one when
// none is held). The packet is valid until the next Decode or release.
func (cd *connDecoder) Decode(h packet.FixedHeader, body []byte) (packet.Packet, error) {
	d := cd.d
	if d == nil {
		d = decoders.Get().(*batchState)
		cd.d = d
	}
	d.Version = cd.Version
	p, err := d.Decode(h, body)
	if d.Version != cd.Version {
		cd.Version = d.Version // a CONNECT set it
	}
	return p, err
}

// release gives the decoder back.
func (cd *connDecoder) release() {
	if cd.d != nil {
		cd.d.Shrink(maxPooledEntries)
		r := &cd.d.res
		if cap(r.Subscribe) > maxPooledEntries || cap(r.Unsubscribe) > maxPooledEntries {
			*r = session.Result{}
		} else {
			// Keep no message or packet bytes alive from the pool.
			clear(r.Subscribe[:cap(r.Subscribe)])
			clear(r.Unsubscribe[:cap(r.Unsubscribe)])
			*r = session.Result{Subscribe: r.Subscribe[:0], Unsubscribe: r.Unsubscribe[:0]}
		}
		decoders.Put(cd.d)
		cd.d = nil
	}
}

// Idle tells the connection that its reader has handled every packet read
// and waits for more: the connection gives back what it holds only while
// busy (its packet decoder), so that an idle connection costs little, and
// (with ConnInfo.IdleEndsBatch) commits what the batch's PUBLISHes
// journaled. Only the reader calls it, between calls to Handle; a runtime
// that never calls it keeps the decoder for the connection's life.
func (c *Conn) Idle() {
	c.dec.release()
	if c.lis.IdleEndsBatch && c.rs != nil {
		c.b.commitRoute(c.rs) // what the batch's PUBLISHes journaled
	}
}

// NewConn registers a new transport. wake is called, from any goroutine,
// when the connection has output to write or must be closed; it must not
// block (a buffered channel of one with a non-blocking send is the usual
// implementation).
func (b *Broker) NewConn(info ConnInfo, wake func()) *Conn {
	if info.DefaultTenant == "" {
		info.DefaultTenant = DefaultTenant
	}
	c := &Conn{b: b, lis: b.listenerInfo(&info), remote: info.Remote, wake: wake}
	if info.CertSubject != "" {
		c.auth = &connAuth{certSubject: info.CertSubject}
	}
	return c
}

// Remote returns the remote address the connection was registered with
// (ConnInfo.Remote).
func (c *Conn) Remote() string { return c.remote }

// DefaultTenant is the tenant of clients whose listener names none.
const DefaultTenant = "default"

// wakeUp calls the runtime's wake function unless a wake is already
// pending (called, and Output not yet run since).
func (c *Conn) wakeUp() {
	if c.wakePending.Load() || c.wakePending.Swap(true) {
		return
	}
	c.wake()
}

// entry returns the connection's session entry, or nil before CONNECT.
func (c *Conn) entry() *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.e
}

// Closing reports whether the connection is to be closed.
func (c *Conn) Closing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// KeepAlive returns how long the runtime waits for the next packet before
// closing the connection: one and a half times the keep alive in force
// [MQTT-3.1.2-24] [v5 MQTT-3.1.2-22], or 0 for no limit.
func (c *Conn) KeepAlive() time.Duration {
	e := c.entry()
	if e == nil {
		return 0
	}
	e.mu.Lock()
	ka := c.keepAliveLocked(e)
	e.mu.Unlock()
	return ka
}

// keepAliveLocked is KeepAlive for the session e. The caller holds e.mu.
func (c *Conn) keepAliveLocked(e *entry) time.Duration {
	if e.conn != c {
		return 0
	}
	return time.Duration(e.s.KeepAlive()) * time.Second * 3 / 2
}

// Ping stands for Handle of a PINGREQ that the runtime answers itself: it
// writes the PINGRESP to the transport without Output, so that the
// keep-alive of an idle connection needs no reader (a parked connection's,
// impl/server). It reports whether the runtime may: the connection is
// established and not closing, and Handle would do nothing for this PINGREQ
// but queue its PINGRESP (a PINGREQ changes no state and no counter). When
// Handle would do more it reports false, and the runtime hands the PINGREQ
// to Handle as usual: deliveries parked on the session or a stall to look
// at (the room Handle looks for after every packet), bandwidth limits to
// spend the packet's bytes on (InboundPause, OutboundPause), held
// acknowledgements that pace the connection's reading. keepAlive is what
// KeepAlive returns, from which the runtime renews the connection's
// deadline as after any packet. Ping reads the state of the reader (the
// tenant): the caller stands in for the reader.
func (c *Conn) Ping() (keepAlive time.Duration, ok bool) {
	c.mu.Lock()
	e, closing := c.e, c.closing
	c.mu.Unlock()
	if e == nil || closing || c.t == nil || c.nparked.Load() > 0 {
		return 0, false
	}
	if s := c.b.tenantLimits(c.t).s; s.InboundBandwidth > 0 || s.InboundBytesRate > 0 || s.OutboundBandwidth > 0 {
		return 0, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn != c || e.s.Closing() || e.nparked() > 0 || e.stalled {
		return 0, false
	}
	return c.keepAliveLocked(e), true
}

func (c *Conn) markClosing() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
}

// refuse answers a CONNECT with a refusal (or nothing, when code is 0 or
// the version is unknown) and closes the connection.
func (c *Conn) refuse(v packet.Version, code packet.ReasonCode) {
	c.refuseWith(v, code, packet.Properties{})
}

// refuseWith is refuse with CONNACK properties (5.0).
func (c *Conn) refuseWith(v packet.Version, code packet.ReasonCode, props packet.Properties) {
	c.b.stats.Refused.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closing = true
	if code == 0 {
		return
	}
	ack := packet.Connack{ReasonCode: code, Properties: props}
	if v != packet.V5 {
		ack.ReasonCode = packet.ConnackCode311(code)
		v = packet.V311
	}
	c.pending, _ = ack.Append(c.pending, v)
}

// Handle processes one packet from the client: h and body as read by
// packet.Reader. body may be reused once Handle returns.
func (c *Conn) Handle(h packet.FixedHeader, body []byte) {
	if c.Closing() {
		return
	}
	at := instant{clock: c.b.env.Clock}
	e := c.entry()
	if e == nil {
		if c.auth != nil && c.auth.connect != nil {
			c.continueAuth(h, body, at.now())
			return
		}
		c.handleConnect(h, body, at.now())
		return
	}
	p, err := c.dec.Decode(h, body)
	if err != nil {
		c.Fail(err)
		return
	}
	if a, ok := p.(*packet.Auth); ok && c.enhancedMethod() != nil {
		c.reauthenticate(e, a)
		return
	}
	e.mu.Lock()
	if e.conn != c {
		e.mu.Unlock()
		c.markClosing()
		return
	}
	var now time.Time
	if pub, ok := p.(*packet.Publish); !ok || pub.Properties.Has(packet.PropMessageExpiry) {
		// A PUBLISH reads the clock only for its Message Expiry Interval
		// (session.Handle); routing reads it when something needs it.
		now = at.now()
	}
	r := e.s.HandleInto(&c.dec.d.res, p, now) // Decode borrowed c.dec.d
	switch {
	case r.Route != nil:
		m, pid := r.Route, r.RoutePID
		e.mu.Unlock()
		c.publish(e, m, pid, &at)
		return
	case len(r.Subscribe) > 0:
		reqs, pid := r.Subscribe, r.SubscribePID
		e.mu.Unlock()
		c.subscribe(e, reqs)
		c.b.awaitRoutes(c.t, reqs)
		e.mu.Lock()
		ok := e.conn == c
		var ops []store.Op
		var span session.Span
		if ok {
			e.s.SubscribeDone(pid, reqs)
			ops, span = e.s.TakeOps()
		}
		e.mu.Unlock()
		if !ok {
			c.undoSubscribe(e, reqs)
			return
		}
		c.b.commitSession(e, ops, span)
		c.sendRetained(e, reqs, at.now())
		return
	case len(r.Unsubscribe) > 0:
		filters, pid := r.Unsubscribe, r.UnsubscribePID
		e.mu.Unlock()
		c.t.routesMu.Lock()
		for _, f := range filters {
			if c.t.routes.Unsubscribe(f, e.id) {
				c.b.routeRemoved(c.t, string(f))
			}
		}
		c.t.routesMu.Unlock()
		e.mu.Lock()
		if e.conn == c {
			e.s.UnsubscribeDone(pid, filters)
		}
	}
	closing := r.Close
	if closing && r.Reason.IsError() {
		c.b.stats.ProtocolError.Add(1)
	}
	if closing {
		if _, ok := p.(*packet.Disconnect); ok {
			c.noteEnd(r.Reason, CauseClientDisconnect)
		} else {
			c.noteEnd(r.Reason, CauseProtocolError)
		}
	}
	// An acknowledgement from the client may have made room for
	// deliveries parked on this session (backpressure.go).
	var scratch []*heldAck
	if c.rs != nil {
		scratch = c.rs.rel
	}
	rel, _ := c.b.unparkLocked(e, &at, scratch)
	if len(rel) == 0 && !e.s.MustCommitNow() {
		// What the packet journaled (an acknowledged delivery's removal, a
		// QoS 2 step) stays in the session's journal: Output, which the
		// runtime calls after every batch of packets, commits it with the
		// rest of the batch — one commit for a stream of acknowledgements
		// instead of one each. Output the change holds waits for that
		// commit as it would for this one. A delivery routed to the
		// session meanwhile may take these ops into a batch committed
		// after the session's next ones; that is harmless for them, not
		// for a subscription change or the session record (UNSUBSCRIBE,
		// DISCONNECT), which are committed now (Session.MustCommitNow).
		e.mu.Unlock()
		if closing {
			c.markClosing()
		}
		return
	}
	ops, span := e.s.TakeOps()
	e.mu.Unlock()
	c.b.settle(e, ops, span, rel)
	if cap(rel) > 0 {
		c.scratch().rel = clearAcks(rel)
	}
	if closing {
		c.markClosing()
	}
}

// Fail ends the connection because of a read or decode error: a 5.0 client
// gets a DISCONNECT with the error's reason code [MQTT-4.13.1-1], a 3.1.1
// client a closed connection [MQTT-4.8.0-1].
func (c *Conn) Fail(err error) {
	c.b.stats.ProtocolError.Add(1)
	code := packet.CodeOf(err)
	c.noteEnd(code, CauseMalformed)
	e := c.entry()
	if e == nil {
		// Before CONNECT: a 5.0 CONNECT that failed to decode may be
		// answered with a CONNACK; anything else closes silently.
		var pe *packet.Error
		if errors.As(err, &pe) && pe.Packet == packet.CONNECT && pe.Version == packet.V5 {
			c.refuse(packet.V5, code)
			return
		}
		c.refuse(0, 0)
		return
	}
	e.mu.Lock()
	if e.conn == c {
		e.s.Kick(code)
	}
	e.mu.Unlock()
	c.markClosing()
}

// Output returns bytes to write, using spare (the buffer the previous call
// returned, once written) for the next batch. When it returns nothing and
// closeNow, the runtime closes the transport.
func (c *Conn) Output(spare []byte) (out []byte, closeNow bool) {
	// Wakes from now on are for output produced after this call.
	c.wakePending.Store(false)
	c.mu.Lock()
	if len(c.pending) > 0 {
		out, c.pending = c.pending, spare[:0]
		c.mu.Unlock()
		return out, false
	}
	e, closing := c.e, c.closing
	c.mu.Unlock()
	if e != nil {
		var rel []*heldAck
		var ops []store.Op
		var span session.Span
		sent := false
		e.mu.Lock()
		if e.conn == c {
			now := c.b.env.Clock.Now()
			out = e.s.TakeOutput(spare, now)
			closing = closing || e.s.Closing()
			// Draining the output may have made room for deliveries
			// parked on this session (backpressure.go). What the batch
			// journaled (see Handle) is committed here.
			var scratch []*heldAck
			if c.relWrite != nil {
				scratch = *c.relWrite
			}
			rel, sent = c.b.unparkLocked(e, &instant{t: now}, scratch)
			ops, span = e.s.TakeOps()
		} else {
			closing = true
		}
		e.mu.Unlock()
		c.b.settle(e, ops, span, rel)
		if cap(rel) > 0 {
			if c.relWrite == nil {
				c.relWrite = new([]*heldAck)
			}
			*c.relWrite = clearAcks(rel)
		}
		if sent {
			c.wakeUp() // what they wrote goes in the next batch
		}
	}
	if len(out) > 0 {
		return out, false
	}
	return out, closing
}

// Closed tells the broker the transport is gone. The session is detached:
// its will is published (or scheduled) and it expires on its schedule.
func (c *Conn) Closed() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed, c.closing = true, true
	e := c.e
	if c.auth != nil && c.auth.credTimer != nil {
		c.auth.credTimer.Stop()
		c.auth.credTimer = nil
	}
	c.mu.Unlock()
	if e == nil {
		return
	}
	now := c.b.env.Clock.Now()
	c.noteEnd(packet.UnspecifiedError, CauseConnectionLost) // the transport closed with no cause given
	c.mu.Lock()
	code, cause := c.endCode, c.endCause
	c.mu.Unlock()
	c.b.emit(event.NewDisconnected(now, c.eventWho(), code, cause))
	e.mu.Lock()
	if e.conn != c {
		e.mu.Unlock()
		return // already detached by a takeover or shutdown
	}
	r := e.s.Detach(now)
	will, delay, expire := r.Will, r.WillDelay, r.Expire
	e.conn = nil
	e.online.Store(false)
	e.ending = expire == 0
	gen := e.gen
	ops, span := e.s.TakeOps()
	e.mu.Unlock()
	c.b.commitSession(e, ops, span)
	c.b.stats.Connections.Add(-1)
	e.t.connected.Add(-1)
	c.b.afterDetach(e, gen, will, delay, expire)
}

// kick detaches the connection from its session because the broker ends it
// (takeover, shutdown). The caller holds e.mu and e.conn == c. The final
// DISCONNECT and any unwritten output move to the connection's own buffer.
func (c *Conn) kick(e *entry, code packet.ReasonCode, ref string) *session.Result {
	c.noteEnd(code, kickCause(code))
	e.s.KickTo(code, ref)
	out := e.s.TakeOutput(nil, c.b.env.Clock.Now())
	r := e.s.Detach(c.b.env.Clock.Now())
	e.conn = nil
	e.online.Store(false)
	e.ending = r.Expire == 0
	c.mu.Lock()
	c.pending = append(c.pending, out...)
	c.closing = true
	c.mu.Unlock()
	c.b.stats.Connections.Add(-1)
	e.t.connected.Add(-1)
	return r
}

// handleConnect processes the first packet of a connection.
func (c *Conn) handleConnect(h packet.FixedHeader, body []byte, now time.Time) {
	b := c.b
	if h.Type != packet.CONNECT {
		b.stats.ProtocolError.Add(1)
		c.refuse(0, 0) // the first packet must be CONNECT [MQTT-3.1.0-1]
		return
	}
	p, err := c.dec.Decode(h, body)
	if err != nil {
		var pe *packet.Error
		switch {
		case errors.As(err, &pe) && pe.Code == packet.UnsupportedProtocolVersion && pe.Version != 0 && pe.Version != packet.V5:
			// An unsupported level is answered in the 3.1.1 format
			// [v3.1.1 MQTT-3.1.2-2].
			c.refuse(packet.V311, packet.UnsupportedProtocolVersion)
		case errors.As(err, &pe) && pe.Version == packet.V5:
			c.refuse(packet.V5, pe.Code)
		default:
			c.refuse(0, 0) // [MQTT-3.1.4-1]
		}
		b.stats.ProtocolError.Add(1)
		return
	}
	conn := p.(*packet.Connect)
	v := conn.Version
	if code := b.checkConnect(conn); code != packet.Success {
		if code == packet.MalformedPacket && v != packet.V5 {
			c.refuse(0, 0)
			return
		}
		c.refuse(v, code)
		return
	}
	if c.lis.Redirect != "" {
		code := packet.UseAnotherServer
		if c.lis.Moved {
			code = packet.ServerMoved
		}
		var p packet.Properties
		p.ServerReference = []byte(c.lis.Redirect)
		p.Set(packet.PropServerReference)
		c.refuseWith(v, code, p)
		return
	}
	// The client identifier is made a string once: the registry keeps it.
	id := string(conn.ClientID)
	req := AuthRequest{ClientID: id, Username: string(conn.Username),
		HasUser: conn.UsernameFlag, Password: conn.Password, Listener: c.lis.Listener,
		DefaultTenant: c.lis.DefaultTenant, Remote: c.remote, CertSubject: c.certSubject()}
	if v == packet.V5 && conn.Properties.Has(packet.PropAuthMethod) {
		c.beginAuth(conn, req, now)
		return
	}
	ar := b.auth.Authenticate(&req)
	if ar.Code != packet.Success {
		b.emit(event.NewAuthFailed(now, event.Who{Tenant: ar.Tenant, ClientID: req.ClientID, User: req.Username},
			ar.Code, c.lis.Listener, c.remote))
		c.refuse(v, ar.Code)
		return
	}
	c.accept(conn, id, ar, session.AttachInfo{}, now)
}

// accept attaches an authenticated CONNECT to its session (new, resumed or
// taken over) and answers it. id is conn.ClientID as a string.
func (c *Conn) accept(conn *packet.Connect, id string, ar AuthResult, info session.AttachInfo, now time.Time) {
	b := c.b
	v := conn.Version
	b.mu.Lock()
	stopped := b.stopped
	b.mu.Unlock()
	if stopped {
		c.refuse(v, packet.ServerUnavailable)
		return
	}
	if ref := b.draining.Load(); ref != nil {
		// Draining: a 5.0 client is told where to go instead.
		var props packet.Properties
		if r := (*ref)(); r != "" {
			props.ServerReference = []byte(r)
			props.Set(packet.PropServerReference)
		}
		c.refuseWith(v, packet.UseAnotherServer, props)
		return
	}
	// Whatever authenticated the client, its identity must be one the
	// broker can keep apart from every other (store keys, metrics, logs).
	if err := validIdentity(&ar); err != nil {
		ev := event.NewAuthFailed(now, event.Who{ClientID: id}, packet.NotAuthorized, c.lis.Listener, c.remote)
		ev.Detail = err.Error()
		b.emit(ev)
		c.refuse(v, packet.NotAuthorized)
		return
	}
	t := b.acquireTenant(ar.Tenant)
	defer b.releaseTenant(t) // the session made here holds it from then on
	l := b.tenantLimits(t)
	// who escapes through the Authorizer: each use takes its own copy in
	// the branch that needs it, so that the common CONNECT (no will, a new
	// session) allocates none.
	who := acl.Client{Tenant: ar.Tenant, User: ar.User, ClientID: id, Extra: ar.ACL}
	if code := b.admitConnect(t, l, conn, now); code != packet.Success {
		b.emit(event.NewThrottled(now, event.Who{Tenant: ar.Tenant, ClientID: who.ClientID, User: ar.User}, code.String()))
		c.refuse(v, code)
		return
	}
	if !ar.Expires.IsZero() && !now.Before(ar.Expires) {
		c.refuse(v, packet.BadUserNameOrPassword) // expired credentials
		return
	}
	if az := b.cfg.Authorizer; conn.WillFlag && az != nil {
		if w := who; !az.CanPublish(&w, conn.WillTopic, conn.WillRetain) {
			b.emit(event.NewPublishRefused(now, event.Who{Tenant: ar.Tenant, ClientID: who.ClientID, User: ar.User},
				string(conn.WillTopic), packet.NotAuthorized))
			c.refuse(v, packet.NotAuthorized) // a will the client could not publish itself
			return
		}
	}
	if cl := b.cfg.Cluster; cl != nil && id != "" {
		// Exactly one node owns a session: another node that holds it
		// ends it before this one goes on (docs/CLUSTER.md).
		if code := cl.ClaimSession(ar.Tenant, id, ar.User); code != packet.Success {
			if code == packet.NotAuthorized {
				ev := event.NewAuthFailed(now, event.Who{Tenant: ar.Tenant, ClientID: id, User: ar.User},
					packet.NotAuthorized, c.lis.Listener, c.remote)
				ev.Detail = "client id in use by another user's session on another node"
				b.emit(ev)
			}
			c.refuse(v, code)
			return
		}
	}
	c.t = t
	c.dec.Version = v

	var wills []*message.Message
	var dropFilters []string
	var dropOps []store.Op
	var dropped *entry
	var droppedAcks []*heldAck
	t.regMu.Lock()
	clientID, assigned := id, ""
	if clientID == "" {
		clientID = b.assignClientID(t)
		if v == packet.V5 {
			assigned = clientID
		}
	}
	var e *entry
	present := false
	if max := l.s.MaxPersistent; max > 0 && persistent(conn) && t.persistent.Load() >= int64(max) {
		if old := t.sessions[clientID]; old == nil || !old.counted || conn.CleanStart {
			t.regMu.Unlock()
			b.throttle(t, ThrottlePersistent)
			c.refuse(v, packet.QuotaExceeded)
			return
		}
	}
	if old := t.sessions[clientID]; old != nil {
		old.mu.Lock()
		// A session whose connection just ended with expiry 0 is about to
		// be discarded: a client that reconnects at once must not find it.
		ended := old.conn == nil && old.ending
		if !ended && !mayTakeOver(l, old.s, ar.User) {
			// Another user's session: no takeover, no resumption, no
			// discarding it with a clean start.
			old.mu.Unlock()
			t.regMu.Unlock()
			ev := event.NewAuthFailed(now, event.Who{Tenant: ar.Tenant, ClientID: clientID, User: ar.User},
				packet.NotAuthorized, c.lis.Listener, c.remote)
			ev.Detail = "client id in use by another user's session"
			b.emit(ev)
			c.refuse(v, packet.NotAuthorized)
			return
		}
		if oc := old.conn; oc != nil {
			// Session takeover [MQTT-3.1.4-2] [v5 MQTT-3.1.4-3].
			r := oc.kick(old, packet.SessionTakenOver, "")
			// A session that was to end with its connection (expiry 0, or
			// a DISCONNECT not yet followed by the close) ends here.
			ended = r.Expire == 0
			if r.Will != nil && (r.WillDelay == 0 || conn.CleanStart || ended) {
				wills = append(wills, r.Will)
			}
			defer oc.wakeUp()
		}
		if old.hasWillTimer() && (conn.CleanStart || ended) {
			// The old session ends now, before its will delay ran out.
			wills = append(wills, old.x.pendingWill)
		}
		old.stopTimers()
		if conn.CleanStart || ended {
			// Discard the old session [MQTT-3.1.2-4] [v3.1.1 MQTT-3.1.2-6].
			dropFilters = old.filters()
			droppedAcks = old.takeParked()
			old.dead = true
			old.s.Forget()
			dropOps, _ = old.s.TakeOps()
			delete(t.sessions, clientID)
			dropped = old
		} else {
			e, present = old, true
		}
		old.mu.Unlock()
	}
	if e == nil {
		e = b.newEntry(t, clientID)
		t.sessions[clientID] = e
		if persistent(conn) {
			e.counted = true
			t.persistent.Add(1)
		}
	}
	e.mu.Lock()
	// The session belongs to whoever created it; one restored from a record
	// that kept no owner goes to the first user that resumes it.
	if !present || !e.s.OwnerKnown {
		e.s.Owner, e.s.OwnerKnown = ar.User, true
	}
	var revoked []string
	if present && b.cfg.Authorizer != nil {
		w := who
		w.ClientID = clientID
		revoked = b.recheckLocked(e, &w, now)
	}
	e.gen++
	e.stopTimers()
	e.ending = false
	e.conn = c
	e.online.Store(true)
	info.Present, info.Assigned = present, assigned
	e.s.Attach(conn, info, now)
	// A new connection gets a new chance: room for what was parked while
	// the session was offline, and back-pressure again if it was stalled.
	e.stalled = false
	rel, _ := b.unparkLocked(e, &instant{t: now}, nil)
	ops, span := e.s.TakeOps()
	e.mu.Unlock()
	t.regMu.Unlock()
	if len(dropOps) > 0 {
		// The discarded session's removal goes first: it deletes the
		// client's whole key range, which the new session's record shares
		// (committed after it, the removal erased the new record and a
		// power loss lost the session).
		b.commitOps(dropOps)
	}
	b.settle(e, ops, span, rel)
	releaseAcks(droppedAcks)
	if len(revoked) > 0 {
		b.removeRoutes(t, e.id, revoked)
		for _, f := range revoked {
			b.emit(event.NewSubscriptionRefused(now, event.Who{Tenant: t.name, ClientID: clientID, User: ar.User}, f, packet.NotAuthorized))
		}
	}

	who.ClientID = clientID
	c.mu.Lock()
	c.who = who
	c.mu.Unlock()
	c.armCredentials(ar.Expires, now)
	c.mu.Lock()
	c.e = e
	c.mu.Unlock()
	t.connected.Add(1)
	b.stats.Connections.Add(1)
	b.emit(event.NewConnected(now, c.eventWho(), c.lis.Listener, c.remote, v.String()))
	b.stats.ConnectsTotal.Add(1)
	if dropped != nil {
		if dropped.counted {
			t.persistent.Add(-1)
		}
		b.removeRoutes(t, dropped.id, dropFilters)
		b.freeSlot(dropped)
	}
	for _, w := range wills {
		b.publishWill(t, w)
	}
}

// checkConnect applies the rules on a CONNECT that need the broker's
// configuration. It returns the 5.0 CONNACK reason to refuse with.
func (b *Broker) checkConnect(c *packet.Connect) packet.ReasonCode {
	switch {
	case c.Version == packet.V31 && (len(c.ClientID) == 0 || len(c.ClientID) > 23):
		return packet.ClientIdentifierNotValid // 3.1 requires 1 to 23 characters
	case len(c.ClientID) == 0 && c.Version == packet.V311 && !c.CleanStart:
		return packet.ClientIdentifierNotValid // [v3.1.1 MQTT-3.1.3-8]
	}
	if c.WillFlag {
		if topic.ValidName(c.WillTopic) != nil {
			if c.Version == packet.V5 {
				return packet.TopicNameInvalid
			}
			return packet.MalformedPacket
		}
	}
	return packet.Success
}

func (e *entry) stopTimers() {
	x := e.x
	if x == nil {
		return
	}
	if x.willTimer != nil {
		x.willTimer.Stop()
		x.willTimer = nil
		x.pendingWill = nil
	}
	if x.expiryTimer != nil {
		x.expiryTimer.Stop()
		x.expiryTimer = nil
	}
	e.tidy()
}

// filters returns the session's subscription filters. The caller holds e.mu.
func (e *entry) filters() []string {
	var fs []string
	e.s.Subscriptions(func(f string, _ topic.Options) bool {
		fs = append(fs, f)
		return true
	})
	return fs
}

func (b *Broker) removeRoutes(t *tenant, id topic.SubscriberID, filters []string) {
	if len(filters) == 0 {
		return
	}
	t.routesMu.Lock()
	for _, f := range filters {
		if t.routes.Unsubscribe([]byte(f), id) {
			b.routeRemoved(t, f)
		}
	}
	t.routesMu.Unlock()
}

// afterDetach publishes or schedules the will of a session whose connection
// ended, and ends or schedules the end of the session.
func (b *Broker) afterDetach(e *entry, gen uint64, will *message.Message, delay, expire time.Duration) {
	t := e.t
	if will != nil && delay == 0 {
		b.publishWill(t, will)
		will = nil
	}
	if expire == 0 {
		b.endSession(e, gen, will)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gen != gen || e.conn != nil || e.dead {
		return
	}
	if will != nil {
		x := e.more()
		x.pendingWill = will
		x.willTimer = b.env.Clock.AfterFunc(delay, func() { b.fireWill(e, gen, will) })
	}
	if expire != session.Forever {
		e.more().expiryTimer = b.env.Clock.AfterFunc(expire, func() { b.endSession(e, gen, nil) })
	}
}

// fireWill publishes a delayed will unless the session was resumed
// [v5 MQTT-3.1.3-9].
func (b *Broker) fireWill(e *entry, gen uint64, will *message.Message) {
	e.mu.Lock()
	if e.gen != gen || e.conn != nil || e.dead || !e.hasWillTimer() {
		e.mu.Unlock()
		return
	}
	e.x.willTimer, e.x.pendingWill = nil, nil
	e.tidy()
	e.s.WillPublished()
	ops, span := e.s.TakeOps()
	e.mu.Unlock()
	b.commitSession(e, ops, span)
	b.publishWill(e.t, will)
}

// endSession discards a session that has expired (or ended with its
// connection). A will still waiting for its delay goes now: the session
// ended first [v5 MQTT-3.1.2-8].
func (b *Broker) endSession(e *entry, gen uint64, will *message.Message) {
	t := e.t
	t.regMu.Lock()
	e.mu.Lock()
	if e.gen != gen || e.conn != nil || e.dead {
		e.mu.Unlock()
		t.regMu.Unlock()
		return
	}
	if e.hasWillTimer() && will == nil {
		will = e.x.pendingWill
	}
	e.stopTimers()
	e.dead = true
	rel := e.takeParked()
	filters := e.filters()
	e.s.Forget()
	ops, _ := e.s.TakeOps()
	removed := t.sessions[e.s.ClientID] == e
	if removed {
		delete(t.sessions, e.s.ClientID)
	}
	e.mu.Unlock()
	t.regMu.Unlock()
	if cl := b.cfg.Cluster; cl != nil && removed {
		cl.SessionEnded(t.name, e.s.ClientID)
	}
	releaseAcks(rel)
	if len(ops) > 0 {
		b.commitOps(ops)
	}
	if e.counted {
		t.persistent.Add(-1)
	}
	b.removeRoutes(t, e.id, filters)
	b.freeSlot(e)
	b.mayBeEmpty(t)
	b.stats.Expired.Add(1)
	b.emit(event.NewSessionExpired(b.env.Clock.Now(), event.Who{Tenant: t.name, ClientID: e.s.ClientID}))
	if will != nil {
		b.publishWill(t, will)
	}
}

// publishWill routes a will message as if its client had published it.
func (b *Broker) publishWill(t *tenant, will *message.Message) {
	b.stats.WillsSent.Add(1)
	b.emit(event.NewWillPublished(b.env.Clock.Now(), event.Who{Tenant: t.name}, string(will.Topic)))
	var rs routeScratch
	if will.Retain {
		b.setRetained(t, will, &rs)
	}
	_, aud := b.forward(t, will, nil)
	b.routeFor(t, will, &rs, &instant{t: b.env.Clock.Now()}, nil, aud)
	b.commitRoute(&rs)
}

// Kick ends the connection from the broker's side: a connected 5.0 client
// gets a DISCONNECT with code; a connection without a session just closes.
func (c *Conn) Kick(code packet.ReasonCode) { c.KickTo(code, "") }

// KickTo is Kick with a Server Reference for a 5.0 client: the server it
// should use instead (ref empty: none).
func (c *Conn) KickTo(code packet.ReasonCode, ref string) {
	e := c.entry()
	if e != nil {
		e.mu.Lock()
		if e.conn == c {
			r := c.kick(e, code, ref)
			will, delay, expire, gen := r.Will, r.WillDelay, r.Expire, e.gen
			ops, span := e.s.TakeOps()
			e.mu.Unlock()
			c.b.commitSession(e, ops, span)
			c.b.afterDetach(e, gen, will, delay, expire)
			return
		}
		e.mu.Unlock()
	}
	c.markClosing()
}

// eventWho names the connection's client in events.
func (c *Conn) eventWho() event.Who {
	c.mu.Lock()
	defer c.mu.Unlock()
	return event.Who{Tenant: c.who.Tenant, ClientID: c.who.ClientID, User: c.who.User}
}

// armCredentials schedules the end of the connection when its credentials
// expire (a token's exp). A re-authentication re-arms it.
func (c *Conn) armCredentials(expires, now time.Time) {
	if c.auth == nil && expires.IsZero() {
		return // nothing armed, nothing to arm
	}
	a := c.authState()
	c.mu.Lock()
	defer c.mu.Unlock()
	if a.credTimer != nil {
		a.credTimer.Stop()
		a.credTimer = nil
	}
	a.credGen++
	if expires.IsZero() || c.closed {
		return
	}
	gen := a.credGen
	a.credTimer = c.b.env.Clock.AfterFunc(expires.Sub(now), func() {
		c.mu.Lock()
		current := a.credGen == gen && !c.closed
		c.mu.Unlock()
		if !current {
			return
		}
		c.b.emit(event.NewTokenExpired(c.b.env.Clock.Now(), c.eventWho()))
		c.Kick(packet.NotAuthorized) // 5.0: DISCONNECT 0x87
		c.wakeUp()
	})
}
