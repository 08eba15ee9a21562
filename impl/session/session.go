package session

import (
	"math"
	"time"

	"github.com/tidwall/btree"

	"github.com/skybridge-mq/skybridge/impl/fifo"
	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/store"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// Session is one client's session. See the package documentation for the
// calling contract.
type Session struct {
	cfg      *Config
	ID       topic.SubscriberID
	Tenant   string
	ClientID string
	// Owner is the user name of the identity that created the session
	// (empty for an anonymous client). The broker sets it and OwnerKnown;
	// the session stores them with its record.
	Owner string

	// Session state: survives connections while the session lives.
	// subs is made with the first subscription.
	subs   *btree.Map[string, topic.Options]
	expiry uint32 // Session Expiry Interval in seconds; math.MaxUint32: never
	// willDelay is the Will Delay Interval in seconds.
	willDelay uint32
	nextPID   uint16
	version   packet.Version
	// OwnerKnown (see Owner) is false only for a session restored from a
	// record written before owners were kept.
	OwnerKnown bool
	// Journal (journal.go): changes the broker must make durable, and the
	// output held until they are.
	persist bool // the broker has a durable store
	stored  bool // a record of the session is in the store
	// (The small fields above sit together: a Session is 256 B.)
	nextSeq uint64
	// byPID holds every QoS 1/2 delivery, queued or in flight: a packet id
	// is fixed when a message is queued, so that it survives a restart.
	byPID     pidTable
	head      *delivery // in-flight deliveries in send order
	tail      *delivery
	nInflight int
	held      int // bytes of the messages in byPID, for MaxQueuedBytes
	queue     fifo.Queue[*delivery]
	// qos2In holds the QoS 2 packet ids received and routed, PUBREL not
	// yet; true once the id is journaled (AcceptInbound, JournalInbound).
	// Made with the first one.
	qos2In map[uint16]bool
	will   *message.Message
	// offline is when the last connection ended (zero while connected).
	offline time.Time

	// Connection state: nil when no connection is attached.
	conn *connState
	out  []byte

	// x holds the journal, the scratch and the drop counters (Stats) of a
	// session that used them, made on first use: a session that never
	// journals, sends nor drops is smaller.
	x *sessionMore
}

// sessionMore is the part of a Session made on first use.
type sessionMore struct {
	// Journal (journal.go): changes the broker must make durable, and the
	// output held until they are.
	ops       []store.Op
	ordered   bool         // ops holds a change the broker commits at once (MustCommitNow)
	epoch     *store.Epoch // the incarnation the journal's ops belong to (store.Op.Epoch)
	jseq      uint64       // journal sequence of the last gating change
	taken     uint64       // the last gating change handed out (TakeOps, AppendOps)
	committed uint64       // every gating change up to it is durable
	done      []Span       // durable spans beyond committed (commits finish out of order)
	marks     []mark

	ctl *Result // the Result of Kick and Detach, which other goroutines may call; made when first needed
	// scratch and ack are reused to encode PUBLISH and acknowledgement
	// packets; made when first needed (an idle session needs neither).
	scratch *packet.Publish
	ack     *packet.Ack

	stats Stats // what the session dropped and why, and sent (Session.Stats)
}

// Stats returns what the session dropped and why, and how many PUBLISH
// packets it sent.
func (s *Session) Stats() Stats {
	if s.x == nil {
		return Stats{}
	}
	return s.x.stats
}

// DroppedQueueFull returns Stats().DroppedQueueFull.
func (s *Session) DroppedQueueFull() uint64 {
	if s.x == nil {
		return 0
	}
	return s.x.stats.DroppedQueueFull
}

// CountQueueFull counts n QoS 1/2 messages the broker dropped for the
// session's full queue (messages that waited for room and were given up).
func (s *Session) CountQueueFull(n uint64) { s.more().stats.DroppedQueueFull += n }

// more returns s.x, made on first use.
func (s *Session) more() *sessionMore {
	if s.x == nil {
		s.x = new(sessionMore)
	}
	return s.x
}

// Stats counts dropped messages by cause.
type Stats struct {
	DroppedQueueFull  uint64 // QoS 1/2 message refused: queue at MaxQueued
	DroppedOutputFull uint64 // QoS 0 message not written: output at MaxOutput
	DroppedOffline    uint64 // QoS 0 message for a session with no connection
	DroppedTooLarge   uint64 // larger than the client's Maximum Packet Size
	DroppedExpired    uint64 // Message Expiry Interval passed before sending
	Sent              uint64 // PUBLISH packets written (retransmissions included)
}

// connState is the part of the state that lives as long as one connection.
// (The small fields come first, together: connState is 64 B, not 80.)
type connState struct {
	keepAlive     uint16
	receiveMax    uint16 // the client's Receive Maximum (outbound quota)
	maxPacketSize uint32 // the client's Maximum Packet Size (0: protocol limit)
	aliasMax      uint16 // the client's Topic Alias Maximum
	problemInfo   bool   // the client accepts Reason Strings and User Properties on errors
	sessionExp0   bool   // the CONNECT asked for a Session Expiry of 0
	disconnected  bool   // the client sent DISCONNECT
	closed        bool   // the session decided to close the connection
	aliasOut      map[string]uint16
	aliasIn       map[uint16][]byte
	inPending     int // QoS 1/2 PUBLISHes received and not yet acknowledged (PublishDone)
	inAccepted    int // of those, QoS 2 ones already in qos2In (AcceptInbound): not counted twice
	// result and msg belong to the connection's reader: after a takeover
	// the old reader may still be reading them while a new connection runs.
	// result is Handle's, made on first use (HandleInto takes the caller's);
	// msg is made with the connection's first PUBLISH.
	result *Result
	msg    *message.Message
}

// delivery is one message on its way to this client.
type delivery struct {
	msg    *message.Message // owned, one reference held; nil once released
	size   int              // msg.Size(), counted in Session.held
	qos    packet.QoS
	retain bool
	dup    bool // restored after a restart: it may have been sent before
	// journaled: a journal record shares subIDs (see freeDelivery).
	journaled bool
	subIDs    []uint32
	pid       uint16
	seq       uint64
	state     uint8
	rec       *store.DeliveryRecord // its last journaled entry, if any
	prev      *delivery
	next      *delivery
}

const (
	stateQueued   = iota // waiting to be sent
	stateSent            // PUBLISH sent, waiting for PUBACK / PUBREC
	stateReleased        // PUBREL sent, waiting for PUBCOMP
)

// SubRequest is one filter of a SUBSCRIBE for the broker to act on. The
// broker sets Reason (to refuse it, e.g. not authorized) and Existed (the
// route table's answer) before SubscribeDone.
type SubRequest struct {
	Filter  []byte // aliases the SUBSCRIBE packet
	Options topic.Options
	Shared  bool
	// Reason is the SUBACK code: the granted QoS, or a failure set by the
	// session (invalid filter, feature off) or by the broker.
	Reason  packet.ReasonCode
	Existed bool
}

// Result is what a call asks the broker to do. It is owned by the session
// and valid until the next call.
type Result struct {
	// Route is a message received from the client for the broker to route;
	// it borrows the packet's bytes. RoutePID identifies it for PublishDone.
	Route    *message.Message
	RoutePID uint16

	// Subscribe lists the filters of a SUBSCRIBE; the broker completes it
	// with SubscribeDone(SubscribePID, Subscribe).
	Subscribe    []SubRequest
	SubscribePID uint16
	// Unsubscribe lists the filters of an UNSUBSCRIBE to remove from the
	// routes; the broker completes it with UnsubscribeDone.
	Unsubscribe    [][]byte
	UnsubscribePID uint16

	// Close asks the runtime to close the connection once the output is
	// written. Reason says why (also for 3.1.1, where nothing is sent).
	Close  bool
	Reason packet.ReasonCode

	// Will, after Detach, is the will message to publish WillDelay from now.
	Will      *message.Message
	WillDelay time.Duration
	// Expire, after Detach, is how long the session lives without a
	// connection; Forever when it does not expire.
	Expire time.Duration
}

// Forever is the Expire of a session that never expires.
const Forever = time.Duration(math.MaxInt64)

// New returns an empty session. persist says whether the broker keeps
// sessions in a durable store: a session that outlives its connection then
// journals its changes (see TakeOps).
func New(cfg *Config, id topic.SubscriberID, tenant, clientID string, persist bool) *Session {
	return &Session{cfg: cfg, ID: id, Tenant: tenant, ClientID: clientID, persist: persist}
}

// Connected reports whether a connection is attached.
func (s *Session) Connected() bool { return s.conn != nil }

// Version returns the protocol version of the last connection.
func (s *Session) Version() packet.Version { return s.version }

// KeepAlive returns the keep alive in force on the current connection, in
// seconds (0: none). The runtime closes the connection after 1.5 times it
// without a packet [MQTT-3.1.2-22].
func (s *Session) KeepAlive() uint16 {
	if s.conn == nil {
		return 0
	}
	return s.conn.keepAlive
}

// Expiry returns the Session Expiry Interval in seconds.
func (s *Session) Expiry() uint32 { return s.expiry }

// Subscriptions calls visit for each of the session's subscriptions, in
// filter order.
func (s *Session) Subscriptions(visit func(filter string, o topic.Options) bool) {
	if s.subs != nil {
		s.subs.Scan(visit)
	}
}

// SubscriptionCount returns the number of the session's subscriptions.
func (s *Session) SubscriptionCount() int {
	if s.subs == nil {
		return 0
	}
	return s.subs.Len()
}

// subscriptions returns the session's subscriptions, made when first needed.
func (s *Session) subscriptions() *btree.Map[string, topic.Options] {
	if s.subs == nil {
		s.subs = new(btree.Map[string, topic.Options])
	}
	return s.subs
}

// control returns the Result of Kick and Detach, emptied.
func (s *Session) control() *Result {
	x := s.more()
	if x.ctl == nil {
		x.ctl = new(Result)
	} else {
		*x.ctl = Result{}
	}
	return x.ctl
}

// Queued returns the number of messages not yet sent and of messages sent
// but not acknowledged.
func (s *Session) Queued() (queued, inflight int) { return s.queue.Len(), s.nInflight }

// TakeOutput returns the bytes waiting to be written and gives the session
// spare (emptied) as its next buffer. It first fills the output with queued
// messages the window and buffer allow.
//
// Output that depends on a change not yet durable (see Committed) stays
// behind.
func (s *Session) TakeOutput(spare []byte, now time.Time) []byte {
	s.pump(now)
	n := s.releasable()
	if n == 0 {
		return nil // keep spare with the caller: it may not be installed twice
	}
	out := s.out
	// Holds count from the start of the buffer: the n bytes taken leave
	// it. A hold at the very end (n == len(out): a gating change with no
	// output after it yet) moves to the start of the next buffer.
	if s.x != nil {
		for i := range s.x.marks {
			s.x.marks[i].offset -= n
		}
	}
	if n == len(out) {
		s.out = spare[:0]
		return out
	}
	// Part of the output is held: it moves to the spare buffer.
	s.out = append(spare[:0], out[n:]...)
	return out[:n]
}

// HasOutput reports whether bytes wait to be written now.
func (s *Session) HasOutput() bool { return s.releasable() > 0 }

// reset empties r, keeping its slices' memory.
func reset(r *Result) {
	*r = Result{Subscribe: r.Subscribe[:0], Unsubscribe: r.Unsubscribe[:0]}
}

// Closing reports whether the session has decided to close the current
// connection (after a protocol error, a DISCONNECT or a Kick).
func (s *Session) Closing() bool { return s.conn != nil && s.conn.closed }

// fail ends the connection because of a client error: a 5.0 client is told
// the reason code in a DISCONNECT first [MQTT-4.13.1-1].
func (s *Session) fail(r *Result, code packet.ReasonCode) *Result {
	return s.failTo(r, code, nil)
}

// failTo is fail with a Server Reference in the 5.0 DISCONNECT (none when
// ref is empty).
func (s *Session) failTo(r *Result, code packet.ReasonCode, ref []byte) *Result {
	if s.conn != nil && !s.conn.closed && s.version == packet.V5 {
		d := packet.Disconnect{ReasonCode: code}
		if len(ref) > 0 {
			d.Properties.ServerReference = ref
			d.Properties.Set(packet.PropServerReference)
		}
		s.out, _ = d.Append(s.out, packet.V5)
	}
	if s.conn != nil {
		s.conn.closed = true
	}
	r.Close, r.Reason = true, code
	return r
}

// Kick ends the connection from the broker's side (session taken over,
// server shutting down, administrative action): a 5.0 client gets a
// DISCONNECT with code.
func (s *Session) Kick(code packet.ReasonCode) *Result {
	return s.fail(s.control(), code)
}

// KickTo is Kick with a Server Reference (another server the client should
// use: 0x9C use another server, 0x9D server moved) for a 5.0 client.
func (s *Session) KickTo(code packet.ReasonCode, ref string) *Result {
	return s.failTo(s.control(), code, []byte(ref))
}

// AttachInfo is what the broker decided about an accepted CONNECT.
type AttachInfo struct {
	// Present says whether session state was resumed (Session Present).
	Present bool
	// Assigned is the Client Identifier the broker assigned to a client
	// that sent none (5.0 announces it).
	Assigned string
	// AuthMethod and AuthData close an enhanced authentication exchange in
	// the CONNACK (5.0).
	AuthMethod, AuthData []byte
}

// Attach starts a connection on the session after the broker accepted c.
// It writes the CONNACK, then re-sends unacknowledged messages and sends
// queued ones.
func (s *Session) Attach(c *packet.Connect, info AttachInfo, now time.Time) {
	present, assigned := info.Present, info.Assigned
	s.version = c.Version
	s.offline = time.Time{}
	cs := &connState{keepAlive: c.KeepAlive, receiveMax: 65535, problemInfo: true}
	s.conn = cs
	s.out = s.out[:0]

	// 3.1 has no Session Present flag: the byte is reserved.
	ack := packet.Connack{SessionPresent: present && c.Version != packet.V31}
	p := &ack.Properties
	if c.Version == packet.V5 {
		cp := &c.Properties
		if cp.Has(packet.PropReceiveMaximum) {
			cs.receiveMax = cp.ReceiveMaximum
		}
		if cp.Has(packet.PropMaximumPacketSize) {
			cs.maxPacketSize = cp.MaximumPacketSize
		}
		if s.cfg.OutboundTopicAliases {
			cs.aliasMax = cp.TopicAliasMaximum
		}
		if cp.Has(packet.PropRequestProblemInfo) {
			cs.problemInfo = cp.RequestProblemInfo == 1
		}
		s.expiry = cp.SessionExpiry
		cs.sessionExp0 = s.expiry == 0
		switch {
		case s.expiry > s.cfg.MaxSessionExpiry:
			s.expiry = s.cfg.MaxSessionExpiry
			p.SessionExpiry = s.expiry
			p.Set(packet.PropSessionExpiry)
		case s.expiry > 0 && s.expiry < s.cfg.MinSessionExpiry:
			s.expiry = s.cfg.MinSessionExpiry
			p.SessionExpiry = s.expiry
			p.Set(packet.PropSessionExpiry)
		}
		if assigned != "" {
			p.AssignedClientID = []byte(assigned)
			p.Set(packet.PropAssignedClientID)
		}
		if info.AuthMethod != nil {
			p.AuthMethod = info.AuthMethod
			p.Set(packet.PropAuthMethod)
			if info.AuthData != nil {
				p.AuthData = info.AuthData
				p.Set(packet.PropAuthData)
			}
		}
		if max := s.cfg.MaxKeepAlive; max > 0 && (c.KeepAlive == 0 || c.KeepAlive > max) {
			cs.keepAlive = max
			p.ServerKeepAlive = max
			p.Set(packet.PropServerKeepAlive)
		} else if min := s.cfg.MinKeepAlive; min > 0 && c.KeepAlive < min {
			cs.keepAlive = min
			p.ServerKeepAlive = min
			p.Set(packet.PropServerKeepAlive)
		}
		if s.cfg.ReceiveMaximum != 65535 {
			p.ReceiveMaximum = s.cfg.ReceiveMaximum
			p.Set(packet.PropReceiveMaximum)
		}
		if s.cfg.MaxQoS < packet.QoS2 {
			p.MaximumQoS = byte(s.cfg.MaxQoS)
			p.Set(packet.PropMaximumQoS)
		}
		if !s.cfg.RetainAvailable {
			p.RetainAvailable = 0
			p.Set(packet.PropRetainAvailable)
		}
		if s.cfg.MaxPacketSize > 0 {
			p.MaximumPacketSize = s.cfg.MaxPacketSize
			p.Set(packet.PropMaximumPacketSize)
		}
		if s.cfg.TopicAliasMaximum > 0 {
			p.TopicAliasMaximum = s.cfg.TopicAliasMaximum
			p.Set(packet.PropTopicAliasMaximum)
		}
		if !s.cfg.WildcardSubscriptions {
			p.Set(packet.PropWildcardSubAvailable)
		}
		if !s.cfg.SubscriptionIdentifiers {
			p.Set(packet.PropSubIDAvailable)
		}
		if !s.cfg.SharedSubscriptions {
			p.Set(packet.PropSharedSubAvailable)
		}
	} else if c.CleanStart {
		s.expiry = 0
	} else {
		// The protocol keeps such a session forever; the broker's (and the
		// tenant's) cap bounds it as it bounds a 5.0 one.
		s.expiry = min(s.cfg.PersistentExpiry, s.cfg.MaxSessionExpiry)
	}
	s.will, s.willDelay = nil, 0
	if c.WillFlag {
		var w message.Message
		w.FromPublish(&packet.Publish{QoS: c.WillQoS, Retain: c.WillRetain, Topic: c.WillTopic,
			Payload: c.WillPayload, Properties: c.WillProperties}, now)
		w.Publisher = s.ID
		s.will = w.Own()
		if c.Version == packet.V5 {
			s.willDelay = c.WillProperties.WillDelay
		}
	}

	// The CONNACK goes once the session, its will and its expiry are durable.
	s.journalRecord(time.Time{}, true)
	s.out, _ = ack.Append(s.out, c.Version)

	// Unacknowledged messages go again first, in their original order,
	// with their original packet ids [MQTT-4.4.0-1].
	for d, next := s.head, (*delivery)(nil); d != nil; d = next {
		next = d.next
		switch d.state {
		case stateSent:
			if !s.writePublish(d, true, now) {
				// Too large for the new connection's limit: as if sent.
				s.finish(d)
			}
		case stateReleased:
			s.writeAck(packet.PUBREL, d.pid, packet.Success)
		}
	}
	s.pump(now)
}

// Detach ends the current connection. The Result says what the broker must
// do next: publish a will (now or after WillDelay) and keep the session for
// Expire (0: discard it now).
func (s *Session) Detach(now time.Time) *Result {
	r := s.control()
	if s.conn == nil {
		return r
	}
	s.conn = nil
	s.out = s.out[:0]
	if s.x != nil {
		s.x.marks = s.x.marks[:0]
	}
	s.offline = now
	// QoS 0 messages have no retransmission; they are not kept for an
	// absent client. QoS 1/2 deliveries stay queued or inflight.
	rec := s.Record(now)
	if s.will != nil {
		r.Will = s.will
		delay := s.willDelay
		if delay > s.expiry {
			delay = s.expiry // the will goes at the latest when the session ends
		}
		r.WillDelay = time.Duration(delay) * time.Second
		if delay == 0 {
			rec.Will = nil // published now: a restart must not publish it again
		}
		s.will = nil
	}
	// Expiry and will delay count from now, also across a restart.
	if s.durable() {
		s.stored = true
		s.journal(store.Op{Kind: store.PutSession, Session: rec}, false)
	}
	switch s.expiry {
	case math.MaxUint32:
		r.Expire = Forever
	default:
		r.Expire = time.Duration(s.expiry) * time.Second
	}
	return r
}
