package sim

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// Invariant names a property the oracle checks.
type Invariant int

// The invariants.
const (
	InvTenant         Invariant = iota // no message crosses tenants
	InvSubscribed                      // every delivery matches a subscription that may have been active
	InvExactlyOnce                     // a QoS 2 message reaches a session's application once
	InvOrder                           // per publisher, topic and QoS, in the order published
	InvAtLeastOnce                     // acknowledged QoS 1/2 messages reach persistent sessions (across crashes of a durable broker)
	InvSessionPresent                  // Session Present matches the session model (expiry, clean start, crash)
	InvWillTiming                      // a will goes no earlier than its delay, no later than delay + bound
	InvWillForbidden                   // no will after DISCONNECT, a resumed session or a crash
	InvRetained                        // retained store history is linearizable (Porcupine)
	InvSubscriptions                   // subscription table history is linearizable (Porcupine)
	InvQueueBound                      // a session holds at most MaxQueued waiting (+ MaxInflight in flight); offline, it receives at most MaxQueued
	InvOutputBound                     // a connection's output batch stays bounded
	InvSharedOnce                      // a QoS 2 message reaches at most one member per shared group
	InvProtocol                        // the broker speaks MQTT correctly to a good client
	InvDurable                         // after a power loss the disk holds what was promised, and the broker recovers exactly it
	InvNoPanic                         // the broker core never panics
	InvGrantedQoS                      // no delivery exceeds the QoS granted to the subscription it came through (retained or live)
	InvAuthorization                   // what the ACL denies is refused and never delivered; what it allows is not refused
	InvTenantSettings                  // the tenant's settings hold: maximum QoS, topic limits, session expiry bound, as announced
	InvFlowControl                     // the broker keeps within the client's Receive Maximum and never reuses a packet id in flight
	numInvariants
)

var invNames = [numInvariants]string{"tenant-isolation", "delivery-subscribed", "qos2-exactly-once",
	"order", "at-least-once", "session-present", "will-timing", "will-forbidden",
	"retained-linearizable", "subscriptions-linearizable", "queue-bound", "output-bound",
	"shared-once", "protocol", "durable-state", "no-panic", "granted-qos", "authorization", "tenant-settings",
	"flow-control"}

func (i Invariant) String() string { return invNames[i] }

// Excused counts the requirements waived, by reason (see Oracle.Excused).
type Excused struct{ Crash, Queue, Held, Stale uint64 }

// Failure is the first invariant a run broke.
type Failure struct {
	Invariant Invariant
	Detail    string
	At        time.Duration // virtual time since Epoch
	// HTML is Porcupine's visualisation of a non-linearizable history.
	HTML []byte
}

// Msg is one application message as the oracle knows it: what was
// published, when, and what the publisher learned.
type Msg struct {
	ID            uint64
	Tenant, Topic string
	QoS           byte
	Retain, Empty bool
	Will, Resent  bool
	DupOK         bool // may be routed twice: resent into a new broker session
	// lenient: published into (or resent into) a session a crash brought
	// back without the client knowing it: no delivery is required.
	lenient   bool
	suspended bool // a will cut off by a crash, armed again if the disk holds it
	// rerouted: an unacknowledged QoS 2 message whose packet id was not on
	// disk at a crash: its retransmission may be routed again (to another
	// member of a shared group than a session the crash destroyed).
	rerouted  bool
	willMaybe bool // a will whose session was resumed at its very instant
	// refuse says why the broker must refuse it (the tenant's ACL or topic
	// limits; "" when it must route it), refuseCode with what (5.0).
	refuse             string
	refuseCode         packet.ReasonCode
	Pub                *Client
	Seq                uint64 // per publisher and topic, in publishing order
	SendAt             time.Time
	ProcAt             time.Time // the broker had processed it by then (zero: unknown)
	Acked, Refused     bool
	Abandoned          bool // the publisher discarded it unacknowledged
	willState          uint8
	willDelay          uint32
	WillConn           uint64
	FireAt             time.Time
	willCancelledWhy   string
	deliveredToMonitor bool
	lastConn           uint64 // the connection it was last transmitted on
	// attempts are its transmissions (the first, then each resend).
	attempts []attempt
	o        *Oracle
}

const (
	willNone      = iota // registered in a CONNECT the broker has not accepted
	willAttached         // its connection is open
	willArmed            // will be (or was) published at FireAt
	willCancelled        // must never be published
)

// attempt is one transmission of a message: when, on which connection,
// and when a response proved the broker had processed it (zero: never).
type attempt struct {
	at, proc time.Time
	conn     uint64
}

// transmitted records a transmission of m on conn.
func (m *Msg) transmitted(conn uint64, at time.Time) {
	m.lastConn = conn
	m.attempts = append(m.attempts, attempt{at: at, conn: conn})
}

// proven records that the latest transmission was processed.
func (m *Msg) proven(at time.Time) {
	if n := len(m.attempts); n > 0 && m.attempts[n-1].proc.IsZero() {
		m.attempts[n-1].proc = at
	}
}

// procOrInf is the latest instant the broker can have processed m: its
// acknowledgement (or a later packet's), else the broker's close of the
// last connection it was sent on (nothing of a closed connection is
// processed), else never.
func (m *Msg) procOrInf() time.Time {
	if !m.ProcAt.IsZero() {
		return m.ProcAt
	}
	if m.o != nil {
		return m.o.closeOf(m.lastConn)
	}
	return farFuture
}

// closeOf returns when the broker closed a connection (farFuture: open, or
// unknown).
func (o *Oracle) closeOf(conn uint64) time.Time {
	if cr := o.conns[conn]; cr != nil && !cr.closedAt.IsZero() {
		return cr.closedAt
	}
	return farFuture
}

// ackOrClose is the latest instant the broker can have processed op.
func (op *SubOp) ackOrClose(o *Oracle) time.Time {
	if op.Acked {
		return op.AckAt
	}
	return o.closeOf(op.conn)
}

var farFuture = time.Unix(1<<40, 0)

// Incarnation is one life of a client's session as the client sees it: it
// starts at a CONNACK with Session Present 0 and ends when the client
// learns (or decides) that the session is gone.
type Incarnation struct {
	ID      int
	C       *Client
	Start   time.Time
	End     time.Time
	Ended   bool
	filters []*filterRec
	byRaw   map[string]*filterRec
	got     map[uint64]*Got
	order   map[orderKey]uint64
	// masks caches, per topic, the filters matching it (bit i: filters[i]),
	// for maskN filters.
	masks map[string]uint64
	maskN int
	// lenient: a crash brought this session back although the client's
	// state belongs to another (oracle_durable.go): nothing is required.
	lenient bool
	// forgotAt: the client discarded its state (a clean start the broker
	// never read) and then resumed this session: QoS 2 messages it had
	// received before may come again (it forgot their packet ids).
	forgotAt time.Time
}

// mask returns the filters of inc (the first 64) whose topic filter
// matches topic.
func (inc *Incarnation) mask(topic string) uint64 {
	if inc.maskN != len(inc.filters) || inc.masks == nil {
		inc.masks, inc.maskN = map[string]uint64{}, len(inc.filters)
	}
	if m, ok := inc.masks[topic]; ok {
		return m
	}
	var m uint64
	for i, fr := range inc.filters {
		if i < 64 && topicMatch(fr.inner, topic) {
			m |= 1 << i
		}
	}
	inc.masks[topic] = m
	return m
}

// Got is the first delivery of a message to an incarnation.
type Got struct {
	At     time.Time
	QoS    byte
	Retain bool
	Live   bool // delivered by routing (RETAIN 0), not from the retained store
	Live2  bool // a live delivery at QoS 2 happened
	ConnN  int
	Count  int
}

type orderKey struct {
	pub   int
	topic string
	qos   byte
}

type filterRec struct {
	raw, inner string
	shared     bool
	idx        int
	ops        []*SubOp
}

// SubOp is one SUBSCRIBE or UNSUBSCRIBE of one filter.
type SubOp struct {
	Inc           *Incarnation
	Raw           string
	Unsub         bool
	QoS           byte // asked for, then (once acknowledged) granted
	Asked         byte
	SendAt, AckAt time.Time
	Acked         bool
	Granted       bool
	seq           uint64
	conn          uint64
	// synthetic: the state the disk held at a crash (durable broker).
	synthetic bool
}

func (op *SubOp) effective() bool { return op.Unsub || op.Granted }

type sessModel struct {
	exists      bool
	attached    uint64
	expiry      time.Duration // session.Forever-like: -1 never
	detachedAt  time.Time
	pendingWill *Msg
}

const never = time.Duration(math.MaxInt64)

type connRec struct {
	client       *Client
	key          string
	seen         bool // the broker accepted its CONNECT
	handledAt    time.Time
	closedAt     time.Time
	expect, amb  bool
	will         *Msg
	disconnected bool // the broker read a DISCONNECT without will
	detached     bool
	bs           *bsess // the broker session it attached to
}

type probe struct {
	c          *Client
	start, end time.Time
	acked      bool
	got        map[string]uint64
}

// Oracle records what every client did and saw, what the broker's runtime
// observed, and checks the invariants during and at the end of a run.
type Oracle struct {
	w        *World
	msgs     []*Msg
	pubs     map[string][]*Msg // tenant → its published messages (no wills), in SendAt order
	incs     []*Incarnation
	sess     map[string]*sessModel
	conns    map[uint64]*connRec
	crashes  []time.Time
	probes   []*probe
	pubSeq   map[orderKey]uint64
	retTopic map[string][]string // tenant → retained topics, in first-use order
	retSeen  map[string]bool
	// bsCur is the broker session each session key holds (durable broker).
	bsCur map[string]*bsess
	// sessAtCrash is the session model at the last crash, recoveryWills
	// the wills Recover published at once, crashRet the retained values on
	// disk at each crash (tenant 00 topic).
	sessAtCrash   map[string]*sessModel
	recoveryWills int
	crashRet      []map[string]uint64
	// Queue-full drops: each session's counter when last read, and the
	// messages the broker dropped for a client (oracle_durable.go).
	qfBase      map[string]uint64
	qfDropped   map[dropKey]bool
	clientByKey map[string]*Client
	held        map[dropKey]bool // messages on disk for a client's session at the end
	// staleDropped: messages a client dropped as duplicates of a packet id
	// it kept from another session.
	staleDropped map[dropKey]bool
	routed       []routed // PUBLISHes the broker routed, in order
	lateDrops    []lateDrop

	Failure    *Failure
	Checked    [numInvariants]uint64
	Deliveries uint64
	// Excused counts the requirements waived: Queue, messages the broker
	// counted as dropped for a full queue; Held, messages the broker still
	// holds for the session at the end (on its disk, not yet acknowledged
	// by a client still draining its queue); Crash, sessions a crash
	// brought back that the client did not hold (lenient incarnations);
	// Stale, messages a client took for duplicates because it still held
	// their packet id from another session (its CONNACK with Session
	// Present 0 was lost, and the next one said 1: see staleDuplicate).
	Excused Excused
	// Inconclusive counts Porcupine checks that timed out.
	Inconclusive uint64
	// WillBound is how late a will may reach a monitor after its instant.
	WillBound time.Duration
}

func newOracle(w *World) *Oracle {
	return &Oracle{w: w, sess: map[string]*sessModel{}, conns: map[uint64]*connRec{}, pubs: map[string][]*Msg{},
		pubSeq: map[orderKey]uint64{}, retTopic: map[string][]string{}, retSeen: map[string]bool{}, bsCur: map[string]*bsess{},
		qfBase: map[string]uint64{}, qfDropped: map[dropKey]bool{}, clientByKey: map[string]*Client{},
		staleDropped: map[dropKey]bool{},
		WillBound:    50 * time.Millisecond}
}

func (o *Oracle) now() time.Time { return o.w.Sim.now }

func (o *Oracle) fail(inv Invariant, detail string) {
	if o.Failure != nil {
		return
	}
	o.Failure = &Failure{Invariant: inv, Detail: detail, At: o.w.Sim.Elapsed()}
	o.w.Sim.Note(KindFault, 0, 0, "invariant broken: "+inv.String())
	o.w.Sim.Stop()
}

func (o *Oracle) msg(id uint64) *Msg {
	if id == 0 || id > uint64(len(o.msgs)) {
		return nil
	}
	return o.msgs[id-1]
}

func (o *Oracle) at(t time.Time) string {
	if t.IsZero() || !t.Before(farFuture) {
		return "never"
	}
	return fmtDur(t.Sub(Epoch))
}

// Messages returns the number of messages published (wills included).
func (o *Oracle) Messages() int { return len(o.msgs) }

// --- What clients tell the oracle. ---

func (o *Oracle) newMsg(c *Client, topic string, qos packet.QoS, retain, empty bool) *Msg {
	k := orderKey{pub: c.Index, topic: topic}
	o.pubSeq[k]++
	m := &Msg{ID: uint64(len(o.msgs) + 1), Tenant: c.Spec.Tenant, Topic: topic, QoS: byte(qos),
		Retain: retain, Empty: empty, Pub: c, Seq: o.pubSeq[k], SendAt: o.now(), o: o}
	m.lenient = c.inc != nil && c.inc.lenient
	m.refuse, m.refuseCode = o.w.limits(c.Spec.Tenant).pubRefused(topic)
	o.msgs = append(o.msgs, m)
	o.pubs[m.Tenant] = append(o.pubs[m.Tenant], m)
	o.w.debugf("publish msg=%d (#%d %s qos=%d) by %s conn=%d", m.ID, m.Seq, topic, qos, c.Spec.ClientID, c.connID)
	if retain && !o.retSeen[c.Spec.Tenant+"\x00"+topic] {
		o.retSeen[c.Spec.Tenant+"\x00"+topic] = true
		o.retTopic[c.Spec.Tenant] = append(o.retTopic[c.Spec.Tenant], topic)
	}
	return m
}

func (o *Oracle) newWill(c *Client, ws *WillSpec) *Msg {
	m := &Msg{ID: uint64(len(o.msgs) + 1), Tenant: c.Spec.Tenant, Topic: ws.Topic, QoS: byte(ws.QoS),
		Will: true, Pub: c, SendAt: farFuture, WillConn: c.connID}
	if c.Spec.Version == packet.V5 {
		m.willDelay = ws.Delay
	}
	o.msgs = append(o.msgs, m)
	return m
}

func (o *Oracle) willCancelled(m *Msg) {
	// The client sent DISCONNECT; whether the broker read it is known from
	// the runtime (serverDisconnect).
}

func (o *Oracle) clientConnectSent(c *Client, clean bool) {
	cr := &connRec{client: c}
	o.conns[c.connID] = cr
	for len(c.connLog) < c.connN-1 {
		c.connLog = append(c.connLog, nil)
	}
	c.connLog = append(c.connLog, cr)
}

func (o *Oracle) clientConnack(c *Client, present bool) {
	cr := o.conns[c.connID]
	if cr == nil || !cr.seen {
		o.fail(InvProtocol, c.Spec.ClientID+": CONNACK for a CONNECT the runtime did not see accepted")
		return
	}
	c.upSince = o.now()
	o.Checked[InvSessionPresent]++
	if !cr.amb && present != cr.expect {
		s := o.sess[cr.key]
		o.fail(InvSessionPresent, fmt.Sprintf("%s (conn %d, CONNECT handled at %s): Session Present %v, want %v "+
			"(session detached at %s, expiry %v)", c.Spec.ClientID, c.connID, o.at(cr.handledAt), present, cr.expect,
			o.at(s.detachedAt), s.expiry))
	}
}

func (o *Oracle) clientDown(c *Client, wasUp bool) { c.upSince = time.Time{} }

func (o *Oracle) newIncarnation(c *Client) *Incarnation {
	inc := &Incarnation{ID: len(o.incs) + 1, C: c, Start: o.now(), byRaw: map[string]*filterRec{},
		got: map[uint64]*Got{}, order: map[orderKey]uint64{}}
	o.incs = append(o.incs, inc)
	return inc
}

// resumedIncarnation returns the incarnation of a client that holds none
// (it discarded its state) after a CONNACK: a new one, unless the broker
// resumed a session (Session Present 1), whose incarnation goes on.
func (o *Oracle) resumedIncarnation(c *Client, present bool) *Incarnation {
	if cr := o.conns[c.connID]; present && cr != nil && cr.bs != nil && cr.bs.inc != nil && cr.bs.inc.C == c {
		inc := cr.bs.inc
		o.w.debugf("%s resumes incarnation %d after discarding its state", c.Spec.ClientID, inc.ID)
		inc.Ended, inc.End = false, time.Time{}
		inc.forgotAt = o.now()
		return inc
	}
	return o.newIncarnation(c)
}

func (o *Oracle) endIncarnation(inc *Incarnation) {
	inc.End, inc.Ended = o.now(), true
}

func (o *Oracle) abandoned(m *Msg) { m.Abandoned = true }

func (o *Oracle) acked(m *Msg, code packet.ReasonCode) {
	if m.Acked {
		return
	}
	m.Acked = true
	m.Refused = code.IsError()
	o.w.debugf("acked msg=%d code=%d", m.ID, code)
	o.checkPubAck(m, code)
	m.proven(o.now())
	if m.ProcAt.IsZero() {
		m.ProcAt = o.now()
	}
}

func (o *Oracle) processedBy(m *Msg) {
	m.proven(o.now())
	if m.ProcAt.IsZero() {
		m.ProcAt = o.now()
	}
}

func (inc *Incarnation) filter(raw string) *filterRec {
	if fr := inc.byRaw[raw]; fr != nil {
		return fr
	}
	fr := &filterRec{raw: raw, inner: raw, idx: len(inc.filters)}
	if rest, ok := strings.CutPrefix(raw, "$share/"); ok {
		if _, inner, ok := strings.Cut(rest, "/"); ok {
			fr.inner, fr.shared = inner, true
		}
	}
	inc.filters = append(inc.filters, fr)
	inc.byRaw[raw] = fr
	return fr
}

func (o *Oracle) newSubOp(c *Client, raw string, unsub bool, qos byte) *SubOp {
	op := &SubOp{Inc: c.inc, Raw: raw, Unsub: unsub, QoS: qos, Asked: qos, SendAt: o.now()}
	fr := c.inc.filter(raw)
	fr.ops = append(fr.ops, op)
	return op
}

func (o *Oracle) subAcked(c *Client, op *SubOp, granted bool) {
	op.Acked, op.AckAt, op.Granted = true, o.now(), granted
	if o.w.Scenario.Debug != nil {
		what := "subscribe"
		if op.Unsub {
			what = "unsubscribe"
		}
		o.w.debugf("%s (incarnation %d) %s %s acknowledged: granted %v qos %d", c.Spec.ClientID, op.Inc.ID, what, op.Raw, granted, op.QoS)
	}
}

// activity says whether fr may have been, and surely was, subscribed
// during the whole of [a, b] (the window in which the broker routed a
// message), and the lowest QoS it surely had. Packets of one incarnation
// are processed in the order they were sent; an acknowledged operation was
// processed before its acknowledgement arrived.
func (fr *filterRec) activity(a, b time.Time) (possible, definite bool, qos byte) {
	ops := fr.ops
	last := -1
	for i, op := range ops {
		if op.Acked && !op.AckAt.After(a) && op.effective() {
			last = i
		}
	}
	if last >= 0 && !ops[last].Unsub {
		possible, definite, qos = true, true, ops[last].QoS
	}
	for _, op := range ops[last+1:] {
		if op.SendAt.After(b) {
			break
		}
		if op.Unsub {
			definite = false
			continue
		}
		if op.Acked && !op.Granted {
			continue
		}
		possible = true
		qos = min(qos, op.QoS)
	}
	return possible, definite, qos
}

// possiblyMatched reports whether some filter of inc matching topic may
// have been subscribed in [a, b].
func (inc *Incarnation) possiblyMatched(topic string, a, b time.Time) bool {
	mask := inc.mask(topic)
	for i, fr := range inc.filters {
		if i < 64 && mask&(1<<i) != 0 {
			if p, _, _ := fr.activity(a, b); p {
				return true
			}
		}
	}
	return false
}

func isSharedTopic(topic string) bool { return strings.HasPrefix(topic, "s/") }

func (o *Oracle) delivered(c *Client, id uint64, p *packet.Publish) {
	o.Deliveries++
	now := o.now()
	m := o.msg(id)
	if m == nil {
		o.fail(InvProtocol, fmt.Sprintf("%s received a payload no client published (id %d)", c.Spec.ClientID, id))
		return
	}
	o.Checked[InvTenant]++
	if m.Tenant != c.Spec.Tenant {
		o.fail(InvTenant, fmt.Sprintf("message %d of tenant %q (topic %s, from %s) delivered to %s of tenant %q",
			m.ID, m.Tenant, m.Topic, m.Pub.Spec.ClientID, c.Spec.ClientID, c.Spec.Tenant))
		return
	}
	if string(p.Topic) != m.Topic || byte(p.QoS) > m.QoS {
		o.fail(InvProtocol, fmt.Sprintf("message %d delivered to %s as topic %q QoS %d, published as %q QoS %d",
			m.ID, c.Spec.ClientID, p.Topic, p.QoS, m.Topic, m.QoS))
		return
	}
	if l := o.w.limits(c.Spec.Tenant); p.QoS > l.maxQoS {
		o.Checked[InvTenantSettings]++
		o.fail(InvTenantSettings, fmt.Sprintf("message %d delivered to %s (tenant %s, maximum QoS %d) at QoS %d",
			m.ID, c.Spec.ClientID, c.Spec.Tenant, l.maxQoS, p.QoS))
		return
	}
	if m.Will {
		o.Checked[InvWillTiming]++
		switch {
		case m.willState == willCancelled:
			o.fail(InvWillForbidden, fmt.Sprintf("will %d of %s delivered to %s although %s",
				m.ID, m.Pub.Spec.ClientID, c.Spec.ClientID, m.willCancelledWhy))
			return
		case m.willState != willArmed:
			o.fail(InvWillForbidden, fmt.Sprintf("will %d of %s delivered to %s while its connection was open",
				m.ID, m.Pub.Spec.ClientID, c.Spec.ClientID))
			return
		case now.Before(m.FireAt):
			o.fail(InvWillTiming, fmt.Sprintf("will %d of %s delivered at %s, before its instant %s",
				m.ID, m.Pub.Spec.ClientID, o.at(now), o.at(m.FireAt)))
			return
		}
		if c.Monitor {
			m.deliveredToMonitor = true
		}
		o.w.debugf("will %d delivered to %s", m.ID, c.Spec.ClientID)
	}
	inc := c.inc
	if c.deadInc != nil && c.connID == c.deadConn {
		inc = c.deadInc // written by the broker that crashed (see resurrect)
	}
	if pr := c.probe; pr != nil && p.Retain && m.Retain {
		pr.got[m.Topic] = m.ID
	}
	o.Checked[InvSubscribed]++
	if !inc.possiblyMatched(m.Topic, m.SendAt, now) {
		o.fail(InvSubscribed, fmt.Sprintf("message %d (topic %s, sent %s) delivered to %s (incarnation %d) at %s "+
			"with no matching subscription possibly active", m.ID, m.Topic, o.at(m.SendAt), c.Spec.ClientID, inc.ID, o.at(now)))
		return
	}
	if o.checkDeliveryRules(c, inc, m, p, now); o.Failure != nil {
		return
	}
	if o.w.Scenario.Debug != nil {
		o.w.debugf("deliver msg=%d (#%d %s from %s) to %s conn=%d inc=%d qos=%d dup=%v retain=%v", m.ID, m.Seq, m.Topic,
			m.Pub.Spec.ClientID, c.Spec.ClientID, c.connID, inc.ID, p.QoS, p.Dup, p.Retain)
	}
	g := inc.got[id]
	first := g == nil
	if first {
		g = &Got{At: now, QoS: byte(p.QoS), Retain: p.Retain, ConnN: c.connN}
		inc.got[id] = g
	}
	g.Count++
	if !p.Retain {
		if m.QoS == 2 && p.QoS == 2 && !m.DupOK && !inc.lenient {
			o.Checked[InvExactlyOnce]++
			if g.Live2 && !g.At.Before(inc.forgotAt) {
				o.fail(InvExactlyOnce, fmt.Sprintf("QoS 2 message %d (topic %s from %s) delivered twice to %s (incarnation %d)",
					m.ID, m.Topic, m.Pub.Spec.ClientID, c.Spec.ClientID, inc.ID))
				return
			}
			g.Live2 = true
		}
		if !g.Live {
			g.Live = true
			if !m.Will && !m.Resent && !isSharedTopic(m.Topic) {
				o.checkOrder(c, inc, m, byte(p.QoS))
			}
		}
	}
}

// staleDuplicate: the broker sent message id with a packet id the client
// holds for another message, awaiting its PUBREL; the good client takes it
// for a retransmission and drops it. Within one session that is the
// broker reusing a packet id in use [MQTT-2.2.1-3]. When the client's
// entry comes from another session (a CONNECT created a new session whose
// CONNACK was lost, and the next CONNECT found it present, so the client
// kept state the broker never had) it is the protocol's ambiguity: the
// message is excused for this client, and only it.
func (o *Oracle) staleDuplicate(c *Client, in inbound2, id uint64, pid uint16) {
	if in.inc == c.inc && c.inc != nil && !c.inc.lenient && c.inc.forgotAt.IsZero() {
		o.fail(InvProtocol, fmt.Sprintf("%s (incarnation %d) received message %d with packet id %d, which message %d still holds (no PUBREL yet)",
			c.Spec.ClientID, c.inc.ID, id, pid, in.msg))
		return
	}
	o.w.debugf("%s drops message %d: packet id %d is still held for message %d of another session", c.Spec.ClientID, id, pid, in.msg)
	o.staleDropped[dropKey{c.Index, id}] = true
}

func (o *Oracle) checkOrder(c *Client, inc *Incarnation, m *Msg, qos byte) {
	k := orderKey{pub: m.Pub.Index, topic: m.Topic, qos: qos}
	o.Checked[InvOrder]++
	if last := inc.order[k]; m.Seq < last {
		o.fail(InvOrder, fmt.Sprintf("%s (incarnation %d) received message %d (#%d of %s on %s, QoS %d) after #%d",
			c.Spec.ClientID, inc.ID, m.ID, m.Seq, m.Pub.Spec.ClientID, m.Topic, qos, last))
		return
	}
	inc.order[k] = m.Seq
}

// --- What the broker's runtime tells the oracle. ---

func tenantOf(username string) string {
	if t, _, ok := strings.Cut(username, "/"); ok && t != "" {
		return t
	}
	return "default"
}

// serverConnect records a CONNECT the broker accepted; from is the number
// of store batches submitted before it was handled (durable broker).
func (o *Oracle) serverConnect(connID uint64, cp *packet.Connect, from uint64) {
	now := o.now()
	cr := o.conns[connID]
	if cr == nil {
		cr = &connRec{}
		o.conns[connID] = cr
	}
	key := tenantOf(string(cp.Username)) + "\x00" + string(cp.ClientID)
	cr.key, cr.seen, cr.handledAt = key, true, now
	o.w.debugf("server connect conn=%d client=%s clean=%v will=%v", connID, cp.ClientID, cp.CleanStart, cp.WillFlag)
	s := o.sess[key]
	if s == nil {
		s = &sessModel{}
		o.sess[key] = s
	}
	const tol = time.Millisecond
	if !cp.CleanStart && s.exists {
		switch {
		case s.attached != 0:
			cr.expect = s.expiry != 0
		case s.expiry == never:
			cr.expect = true
		default:
			d := now.Sub(s.detachedAt.Add(s.expiry))
			cr.expect = d < 0
			cr.amb = d > -tol && d < tol
		}
	}
	if c := cr.client; c != nil && c.inc != nil && !cr.expect && !cr.amb {
		// The broker starts a new session now. The client may never learn
		// it (the CONNACK can be lost with the connection, and a later
		// CONNECT then finds this new session present): from here on its
		// session is a new incarnation, whatever the client believes.
		o.endIncarnation(c.inc)
		c.inc = o.newIncarnation(c)
		// Its unacknowledged QoS 2 messages may now be routed a second
		// time: the new session has no record of their packet ids.
		for _, om := range c.outq {
			om.m.DupOK = true
		}
	}
	if s.attached != 0 {
		// Takeover: the old connection is detached now.
		if old := o.conns[s.attached]; old != nil {
			old.detached = true
			if w := old.will; w != nil && w.willState == willAttached {
				ended := s.expiry == 0
				if o.willDelay(w, s) == 0 || cp.CleanStart || ended {
					o.armWill(w, now)
				} else {
					w.willState, w.willCancelledWhy = willCancelled, "its session was resumed by a takeover within the will delay"
				}
			}
		}
	}
	if w := s.pendingWill; w != nil && s.exists && w.willState == willArmed && w.FireAt.After(now) {
		if cp.CleanStart {
			o.armWill(w, now)
		} else if w.FireAt.Sub(now) > tol {
			w.willState, w.willCancelledWhy = willCancelled, "its session was resumed within the will delay"
		} else {
			w.willMaybe = true // resumed at its instant: it may go or not
		}
	}
	s.pendingWill = nil
	s.exists, s.attached = true, connID
	cfg := &o.w.Broker.Spec.Config.Session
	switch {
	case cp.Version == packet.V5:
		e := uint32(0)
		if cp.Properties.Has(packet.PropSessionExpiry) {
			e = min(cp.Properties.SessionExpiry, o.w.limits(tenantOf(string(cp.Username))).maxExpiry)
		}
		s.expiry = secs(e)
	case cp.CleanStart:
		s.expiry = 0
	default:
		s.expiry = secs(min(cfg.PersistentExpiry, o.w.limits(tenantOf(string(cp.Username))).maxExpiry))
	}
	if cp.WillFlag {
		if id, ok := payloadID(cp.WillPayload); ok {
			if w := o.msg(id); w != nil && w.Will && w.willState == willNone {
				w.willState = willAttached
				cr.will = w
			}
		}
	}
	o.connectSeen(cr, key, cr.expect || cr.amb, from, s.expiry != 0)
}

func secs(s uint32) time.Duration {
	if s == math.MaxUint32 {
		return never
	}
	return time.Duration(s) * time.Second
}

// willDelay is the delay the broker applies: the Will Delay Interval, but
// never beyond the session's end.
func (o *Oracle) willDelay(w *Msg, s *sessModel) time.Duration {
	d := time.Duration(w.willDelay) * time.Second
	if s.expiry < d {
		d = s.expiry
	}
	return d
}

func (o *Oracle) armWill(w *Msg, at time.Time) {
	o.w.debugf("will %d of %s armed for %s", w.ID, w.Pub.Spec.ClientID, o.at(at))
	w.willState, w.FireAt, w.SendAt = willArmed, at, at
	o.w.Sim.At(at.Add(o.WillBound), func() { o.checkWillArrived(w) })
}

// checkWillArrived runs WillBound after a will's instant: a monitor that was
// connected and surely subscribed to the will topics must have it by then.
func (o *Oracle) checkWillArrived(w *Msg) {
	if w.willState != willArmed || w.willMaybe || w.deliveredToMonitor || o.Failure != nil || o.now().Before(w.FireAt.Add(o.WillBound)) {
		return // delivered, cancelled, or armed again (a restart) for later
	}
	if p := o.w.Broker; p.ds != nil && p.ds.stalledUntil.After(w.FireAt) {
		// The disk stalled at or after the will's instant: its delivery to
		// the (persistent) monitor waits for the commit that ends the stall.
		if at := p.ds.stalledUntil.Add(p.Spec.FsyncMax + o.WillBound); o.now().Before(at) {
			o.w.Sim.At(at, func() { o.checkWillArrived(w) })
			return
		}
	}
	mon := o.w.monitors[w.Tenant]
	if mon == nil || mon.inc == nil || mon.upSince.IsZero() || mon.upSince.After(w.FireAt) {
		return
	}
	fr := mon.inc.byRaw["w/#"]
	if fr == nil {
		return
	}
	if _, def, q := fr.activity(w.FireAt, w.FireAt); !def || q == 0 || w.QoS == 0 {
		return
	}
	o.Checked[InvWillTiming]++
	if b := o.w.Broker.B; b != nil {
		o.w.debugf("monitor %s up since %s; broker wills sent %d", mon.Spec.ClientID, o.at(mon.upSince), b.Stats().WillsSent.Load())
	}
	o.fail(InvWillTiming, fmt.Sprintf("will %d of %s (delay %ds) due at %s not delivered to the monitor by %s",
		w.ID, w.Pub.Spec.ClientID, w.willDelay, o.at(w.FireAt), o.at(o.now())))
}

func (o *Oracle) serverDisconnect(connID uint64, withWill bool) {
	if cr := o.conns[connID]; cr != nil && !withWill {
		cr.disconnected = true
	}
}

func (o *Oracle) serverClosed(connID uint64) {
	now := o.now()
	cr := o.conns[connID]
	if cr == nil {
		return
	}
	cr.closedAt = now
	o.w.debugf("server closed conn=%d detached=%v disconnected=%v", connID, cr.detached, cr.disconnected)
	if cr.detached {
		return
	}
	cr.detached = true
	s := o.sess[cr.key]
	if s == nil || s.attached != connID {
		return
	}
	s.attached, s.detachedAt = 0, now
	if w := cr.will; w != nil && w.willState == willAttached {
		if cr.disconnected {
			w.willState, w.willCancelledWhy = willCancelled, "the client disconnected normally"
		} else {
			d := o.willDelay(w, s)
			o.armWill(w, now.Add(d))
			if d > 0 {
				s.pendingWill = w
			}
		}
	}
	if s.expiry == 0 {
		s.exists = false
	}
}

func (o *Oracle) serverBatch(n int) {
	cfg := o.w.Broker.Spec.Config
	limit := cfg.Session.MaxOutput + 2*cfg.MaxPacketSize + 64<<10
	o.Checked[InvOutputBound]++
	if n > limit {
		o.fail(InvOutputBound, fmt.Sprintf("one output batch of %d bytes (bound %d)", n, limit))
	}
}

// brokerCrash: the process is gone with its memory. An in-memory broker
// loses everything; a durable one keeps what its disk synced, which the
// restart reconciles (brokerRecovering): until then the wills the crash cut
// off are suspended (cancelled, unless the disk holds them).
func (o *Oracle) brokerCrash() {
	now := o.now()
	durable := o.w.Broker.Spec.Durable
	o.w.debugf("broker crash")
	o.crashes = append(o.crashes, now)
	for _, m := range o.msgs {
		if !m.Will {
			continue
		}
		switch {
		case m.willState == willAttached || m.willState == willNone:
			m.willState, m.willCancelledWhy = willCancelled, "the broker crashed while its connection was open"
			m.suspended = durable
		case m.willState == willArmed && m.FireAt.After(now):
			m.willState, m.willCancelledWhy = willCancelled, "the broker crashed before its instant"
			m.suspended = durable
		}
	}
	o.sessAtCrash = o.sess
	o.sess = map[string]*sessModel{}
	for _, cr := range o.conns {
		// Order irrelevant: one record at a time, no output.
		cr.detached = true
		if cr.closedAt.IsZero() {
			cr.closedAt = now
		}
	}
}

// --- Probes of the retained store (monitor clients). ---

func (o *Oracle) probeStart(c *Client) *probe {
	pr := &probe{c: c, start: o.now(), got: map[string]uint64{}}
	c.probe = pr
	return pr
}

func (o *Oracle) probeEnd(c *Client, ok bool) {
	pr := c.probe
	c.probe = nil
	if pr == nil || !ok {
		return
	}
	pr.end = o.now()
	o.probes = append(o.probes, pr)
}

// --- End of run. ---

// finish runs the checks that need the whole history.
func (o *Oracle) finish() {
	o.beforeRoute() // drops since the last PUBLISH
	o.resolveExcuses()
	if o.Failure == nil {
		o.checkAtLeastOnce()
	}
	if o.Failure == nil {
		o.checkQueueBound()
	}
	if o.Failure == nil {
		o.checkSharedOnce()
	}
	if o.Failure == nil && o.w.Scenario.Checks.Porcupine {
		o.checkRetainedLinearizable()
	}
	if o.Failure == nil && o.w.Scenario.Checks.Porcupine {
		o.checkSubscriptionsLinearizable()
	}
}

// required reports whether an acknowledged message must have reached inc:
// a non-shared filter of inc matching its topic was surely subscribed with
// QoS 1 or 2 during the whole window in which the broker routed it.
func (o *Oracle) required(inc *Incarnation, m *Msg) bool {
	if m.Tenant != inc.C.Spec.Tenant || m.QoS == 0 || !m.Acked || m.Refused || m.refuse != "" || m.Empty || m.Will ||
		m.lenient || inc.lenient || m.SendAt.Before(inc.Start) {
		return false
	}
	mask := inc.mask(m.Topic)
	for i, fr := range inc.filters {
		if fr.shared || i >= 64 || mask&(1<<i) == 0 {
			continue
		}
		if _, def, q := fr.activity(m.SendAt, m.ProcAt); def && q >= 1 {
			return true
		}
	}
	return false
}

// attached reports whether the client is connected at both ends: up on
// its side, and its connection open and holding the session at the broker.
func (o *Oracle) attached(c *Client) bool {
	if !c.Up() || c.inc == nil || c.silent {
		return false
	}
	cr := o.conns[c.connID]
	if cr == nil || !cr.seen || !cr.closedAt.IsZero() || cr.detached {
		return false
	}
	s := o.sess[cr.key]
	return s != nil && s.attached == c.connID
}

// pubsDuring returns the messages published in tenant in [from, to].
func (o *Oracle) pubsDuring(tenant string, from, to time.Time) []*Msg {
	pubs := o.pubs[tenant]
	i := sort.Search(len(pubs), func(i int) bool { return !pubs[i].SendAt.Before(from) })
	j := sort.Search(len(pubs), func(j int) bool { return pubs[j].SendAt.After(to) })
	if j < i {
		j = i
	}
	return pubs[i:j]
}

func (o *Oracle) checkAtLeastOnce() {
	for _, c := range o.w.Clients {
		if !o.attached(c) {
			continue
		}
		inc := c.inc
		for _, m := range o.pubsDuring(c.Spec.Tenant, inc.Start, farFuture) {
			if !o.required(inc, m) {
				continue
			}
			o.Checked[InvAtLeastOnce]++
			if g := inc.got[m.ID]; g != nil && g.Live {
				continue
			}
			if o.droppedFor(c, m) {
				o.Excused.Queue++
				continue
			}
			if o.stillHeld(c, m) {
				o.Excused.Held++
				continue
			}
			if o.staleDropped[dropKey{c.Index, m.ID}] {
				o.Excused.Stale++
				continue
			}
			if b := o.w.Broker.B; b != nil && o.w.Scenario.Debug != nil {
				info, err := b.Session(c.Spec.Tenant, c.Spec.ClientID)
				o.w.debugf("%s at the end: %+v %v", c.Spec.ClientID, info, err)
			}
			o.fail(InvAtLeastOnce, fmt.Sprintf("QoS %d message %d (topic %s from %s, sent %s, acknowledged %s) never reached "+
				"%s (incarnation %d since %s, connected at the end, subscribed throughout)",
				m.QoS, m.ID, m.Topic, m.Pub.Spec.ClientID, o.at(m.SendAt), o.at(m.ProcAt), c.Spec.ClientID, inc.ID, o.at(inc.Start))+
				fmt.Sprintf("; client conn %d up since %s, last sent %s, last received %s, pings %d, endpoint closed %v",
					c.connID, o.at(c.upSince), o.at(c.lastSent), o.at(c.lastRecv), len(c.pings), c.ep.IsClosed()))
			return
		}
	}
}

// checkQueueBound: messages surely routed while a session had no
// connection (after the broker detached it, before the next CONNECT) wait
// in its queue, which holds at most MaxQueued.
func (o *Oracle) checkQueueBound() {
	type gap struct{ from, to time.Time }
	for _, inc := range o.incs {
		c := inc.C
		limit := o.w.limits(c.Spec.Tenant).maxQueued
		gaps := map[int]gap{}
		for n := 2; n <= len(c.connLog); n++ {
			prev, cur := c.connLog[n-2], c.connLog[n-1]
			if prev == nil || cur == nil || prev.closedAt.IsZero() || cur.handledAt.IsZero() {
				continue
			}
			if prev.handledAt.Before(inc.Start) || cur.handledAt.After(inc.End) && inc.Ended {
				continue
			}
			gaps[n] = gap{prev.closedAt, cur.handledAt}
		}
		if len(gaps) == 0 {
			continue
		}
		count := map[int]int{}
		for id, g := range inc.got { // counts only: the order does not matter
			m := o.msg(id)
			if m == nil || !g.Live || g.QoS == 0 || m.ProcAt.IsZero() {
				continue
			}
			if gp, ok := gaps[g.ConnN]; ok && m.SendAt.After(gp.from) && m.ProcAt.Before(gp.to) {
				count[g.ConnN]++
			}
		}
		for n := 2; n <= len(c.connLog); n++ {
			if k := count[n]; k > 0 {
				o.Checked[InvQueueBound]++
				if k > limit {
					o.fail(InvQueueBound, fmt.Sprintf("%s received %d messages routed while it was offline (MaxQueued %d)",
						c.Spec.ClientID, k, limit))
					return
				}
			}
		}
	}
}

// checkSharedOnce: a QoS 2 message is routed once, so it reaches at most
// one member of each shared group that matches it.
func (o *Oracle) checkSharedOnce() {
	for _, m := range o.msgs {
		if m.QoS != 2 || !isSharedTopic(m.Topic) || m.Will || m.DupOK || m.rerouted {
			continue
		}
		receivers := 0
		groups := map[string]bool{}
		for _, inc := range o.incs {
			if inc.C.Spec.Tenant != m.Tenant {
				continue
			}
			plain := false // a non-shared filter may have brought it
			for _, fr := range inc.filters {
				if !topicMatch(fr.inner, m.Topic) {
					continue
				}
				if p, _, _ := fr.activity(m.SendAt, m.procOrInf()); p {
					if fr.shared {
						groups[fr.raw] = true
					} else {
						plain = true
					}
				}
			}
			if g := inc.got[m.ID]; g != nil && g.Live && !plain {
				receivers++
			}
		}
		if receivers == 0 {
			continue
		}
		o.Checked[InvSharedOnce]++
		if receivers > len(groups) {
			o.fail(InvSharedOnce, fmt.Sprintf("QoS 2 message %d on %s reached %d sessions but only %d shared groups match",
				m.ID, m.Topic, receivers, len(groups)))
			return
		}
	}
}

// topicMatch is the oracle's own MQTT matcher (independent of impl/topic):
// '+' one level, '#' the parent level and everything below.
func topicMatch(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore || !tmore {
			if fmore && !tmore {
				return frest == "#"
			}
			return fmore == tmore
		}
		filter, topic = frest, trest
	}
}
