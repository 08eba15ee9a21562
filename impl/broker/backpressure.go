package broker

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/session"
	"github.com/skybridge-mq/skybridge/impl/store"
)

// Back-pressure from slow subscribers.
//
// The promise is that nothing the broker acknowledged is lost, yet a slow
// subscriber must never block a publisher indefinitely, and no publisher
// writes to a subscriber's socket or waits on it. Before, a QoS 1/2
// message that found a connected subscriber's queue full (MaxQueued) was
// dropped for it while the publisher was acknowledged at once: with many
// publishers and one subscriber most acknowledged messages were lost.
//
// The decision: a QoS 1/2 delivery that finds a connected subscriber's
// queue full is parked on that subscriber (a FIFO next to its session, in
// arrival order, at most one owned copy of the message shared with every
// other delivery) and the publisher's acknowledgement (PUBACK, PUBREC) is
// held until every parked delivery of the message has entered its
// subscriber's queue. The publisher's own flow control does the rest: a
// client sends at most its window of unacknowledged QoS 1/2 messages (a 5.0
// client at most the broker's Receive Maximum, or it is disconnected with
// 0x93), so held acknowledgements slow it to the pace of the slowest
// subscriber it reaches, with no goroutine blocked and nothing read from
// the socket that is not accounted for. Room appears when the subscriber
// acknowledges (its reader), when its writer drains the output buffer, and
// when it reconnects; in each case the session's lock is already held, so
// parked deliveries move into the queue in the same critical section, in
// order, and later deliveries never overtake them.
//
// The wait is bounded (tenant setting slow_subscriber_wait_ms, 5 s by
// default; 0 keeps the old behaviour): when the oldest parked delivery of
// a subscriber has waited that long, the subscriber is stalled (dead, or
// far too slow for its load). Every parked delivery of it is dropped and
// counted (queue_full, as before), the held acknowledgements go, and until
// its queue has drained to half its bound the subscriber gets no more
// back-pressure: messages that find its queue full are dropped at once, as
// before. A stuck subscriber thus costs its publishers one wait, not one
// wait per message. The bound is per delivery age, not per progress, so a
// publisher's acknowledgement is never later than the bound however slowly
// the subscriber moves.
//
// Alternatives not taken: pausing the publisher's reads (Conn.InboundPause)
// stops its acknowledgements and pings too and needs the runtime to poll;
// it remains only as a guard against a 3.1.1 publisher that ignores flow
// control (more held acknowledgements than the Receive Maximum: its reading
// pauses, and beyond that bound its messages are no longer held but
// dropped as before). Letting the queue grow beyond its bound would turn a
// quota into a hint, and blocking the publisher's reader inside the core
// would break the rule that the core never waits.
//
// The trade-off: a subscriber that is slow but alive slows every publisher
// whose messages it takes, and so every other subscriber of those topics,
// fast or not, to its own pace, for as long as its queue stays full (that
// is what "nothing acknowledged is lost" costs). Publishers of other topics
// are not affected, and nobody waits longer than the bound; a tenant that
// prefers its fast subscribers to its slow ones sets the wait to 0.
//
// Offline persistent sessions are not parked on: their queue bound is a
// quota, and a message beyond it is dropped and counted at once. Deliveries
// parked while a persistent subscriber was connected stay parked through a
// disconnection until room appears after it reconnects or the wait ends;
// they are let go (uncounted, like its queue) when its session ends. The
// broker's own messages (wills, $SYS) have no publisher to hold back and
// are never parked. QoS 0 is never parked: beyond MaxOutput it is dropped.

// heldAck is the acknowledgement of one QoS 1/2 PUBLISH that waits: for
// the store to commit what the message produced, for deliveries parked on
// slow subscribers, or for an earlier acknowledgement of the same
// connection (acknowledgements keep the order of the PUBLISHes
// [MQTT-4.6.0-2] [MQTT-4.6.0-3]). The publishing connection's reader fills
// it; whoever releases the last wait sends it (Conn.flushAcks).
type heldAck struct {
	c    *Conn
	e    *entry // the publisher's session
	pid  uint16
	qos  packet.QoS
	code packet.ReasonCode
	v5   bool
	// parked: some delivery of the message was parked (set under the
	// subscriber's lock by the publisher's reader, read after waits is 0).
	parked bool
	// waits counts what the acknowledgement still waits for: 1 for the
	// PUBLISH being routed, 1 for a commit, 1 per parked delivery.
	waits atomic.Int32
	// failed is set by a commit that failed: the 5.0 reason code to send
	// instead of code, or kickCode for a 3.1.1 publisher, which cannot be
	// refused but by closing.
	failed atomic.Uint32
}

const kickCode = 0x100

// heldAcks recycles acknowledgement records: with back-pressure, nearly
// every PUBLISH of a fan-in waits, and would otherwise allocate one.
var heldAcks = sync.Pool{New: func() any { return new(heldAck) }}

func newHeldAck(c *Conn) *heldAck {
	a := heldAcks.Get().(*heldAck)
	a.c = c
	a.waits.Store(1)
	return a
}

// recycle returns a sent acknowledgement to the pool. Nothing refers to it
// any more: whoever released its last wait read what it needed first.
func (a *heldAck) recycle() {
	a.c, a.e, a.pid, a.qos, a.code, a.v5, a.parked = nil, nil, 0, 0, 0, false, false
	a.failed.Store(0)
	heldAcks.Put(a)
}

// fail records a failed commit of what the message produced.
func (a *heldAck) fail(err error) {
	code := uint32(packet.ImplementationSpecificError)
	switch {
	case !a.v5:
		// 3.1.1 cannot refuse a PUBLISH, and acknowledging one that is not
		// durable would break the promise: close, the client sends it
		// again [MQTT-3.3.5-2].
		code = kickCode
	case errors.Is(err, store.ErrDiskFull):
		code = uint32(packet.QuotaExceeded)
	}
	a.failed.CompareAndSwap(0, code)
}

// release drops one wait; the last one sends what is ready. a must not be
// touched after the decrement: a flush may recycle it at once.
func (a *heldAck) release() {
	c := a.c
	if a.waits.Add(-1) == 0 {
		c.flushAcks()
	}
}

func releaseAcks(acks []*heldAck) {
	for _, a := range acks {
		a.release()
	}
}

// clearAcks empties a scratch slice for reuse (its pointers let go).
func clearAcks(acks []*heldAck) []*heldAck {
	clear(acks)
	return acks[:0]
}

// parkedDelivery is a QoS 1/2 delivery waiting for room in a connected
// subscriber's queue.
type parkedDelivery struct {
	msg      *message.Message // owned, one reference held
	d        session.Delivery // its SubIDs are owned
	ack      *heldAck
	deadline time.Time
}

// slowWait returns how long a delivery may wait for room in t's
// subscribers' queues (0: not at all).
func (b *Broker) slowWait(l *limits) time.Duration {
	return time.Duration(l.s.SlowSubscriberWaitMs) * time.Millisecond
}

// mayPark decides whether a delivery of m that finds e's queue full (or
// other deliveries parked ahead of it) waits rather than being dropped.
// The caller holds e.mu; self is the publishing connection.
//
// A QoS 2 message on a durable broker is never parked. Its packet id must
// become durable in the same batch as its deliveries: journaled later (when
// the parked delivery enters its queue), a power loss in between forgets
// it while other subscribers already completed theirs, and the publisher's
// resend is delivered to them a second time; journaled at once, the same
// power loss loses the parked delivery (it lives in memory) while the
// resend is deduplicated, so that subscriber never gets a message the
// publisher was told is safe. The simulator found the first. Such a
// delivery is dropped for a full queue, as without back-pressure.
func (b *Broker) mayPark(e *entry, m *message.Message, self *Conn, rs *routeScratch) bool {
	if self == nil || e.conn == nil || e.stalled || b.persist && m.QoS == packet.QoS2 {
		return false
	}
	if rs.limits == nil {
		rs.limits = b.tenantLimits(e.t)
	}
	if rs.limits.s.SlowSubscriberWaitMs <= 0 {
		return false
	}
	if rs.ack != nil && rs.ack.parked {
		return true // this message already waits on another subscriber
	}
	// A publisher with more acknowledgements held than its Receive
	// Maximum ignores flow control (a 5.0 one would have been disconnected
	// already): its reading pauses (InboundPause), and its messages are no
	// longer held but dropped as before.
	return int(self.nparked.Load()) < int(rs.limits.sess.ReceiveMaximum)
}

// park holds a delivery on e until its queue has room, and makes the
// publisher's acknowledgement wait for it. The caller holds e.mu.
func (b *Broker) park(e *entry, m *message.Message, d session.Delivery, rs *routeScratch, self *Conn, at *instant) {
	now := at.now()
	a := rs.ack
	if a == nil {
		a = newHeldAck(self)
		rs.ack = a
	}
	if !a.parked {
		a.parked = true
		self.nparked.Add(1)
	}
	a.waits.Add(1)
	if len(d.SubIDs) > 0 {
		d.SubIDs = slices.Clone(d.SubIDs) // rs.ids is scratch
	}
	deadline := now.Add(b.slowWait(rs.limits))
	x := e.more()
	if last := x.parked.Last(); last != nil && deadline.Before(last.deadline) {
		deadline = last.deadline // deadlines follow the queue order
	}
	x.parked.Push(parkedDelivery{msg: m.Ref(), d: d, ack: a, deadline: deadline})
	if x.parkTimer == nil {
		x.parkTimer = b.env.Clock.AfterFunc(deadline.Sub(now), func() { b.parkTimeout(e) })
	}
}

// admitParked moves parked deliveries into e's queue while it has room, in
// order, and returns the acknowledgements they held (appended to rel) and
// whether something was written to the output. It also ends a stall once
// the queue has drained. The caller holds e.mu, and then commits the
// session's ops before releasing rel (settle).
func (b *Broker) admitParked(e *entry, now time.Time, rel []*heldAck) ([]*heldAck, bool) {
	sent := false
	if x := e.x; x != nil {
		for x.parked.Len() > 0 {
			p := x.parked.Peek()
			if !e.s.Room(p.msg.Size()) {
				break
			}
			q := x.parked.Pop()
			if b.countOutcome(e.t, e.s.Deliver(q.msg, q.d, now), &instant{t: now}) {
				sent = true
			}
			q.msg.Release()
			rel = append(rel, q.ack)
		}
		if x.parked.Len() == 0 && x.parkTimer != nil {
			x.parkTimer.Stop()
			x.parkTimer = nil
		}
		e.tidy()
	}
	if e.stalled && e.conn != nil && e.s.QueueLow() {
		e.stalled = false
	}
	return rel, sent
}

// unparkLocked is admitParked for the places where room may have appeared
// (the subscriber acknowledged, its writer drained the output, it
// reconnected). The caller holds e.mu, takes the session's ops and
// settles them with rel. scratch is the caller's, reused (rel is built in
// it).
func (b *Broker) unparkLocked(e *entry, at *instant, scratch []*heldAck) (rel []*heldAck, sent bool) {
	if e.nparked() == 0 && !e.stalled {
		return scratch[:0], false
	}
	return b.admitParked(e, at.now(), scratch[:0])
}

// settle commits a session's ops, if any, then releases the
// acknowledgements that waited for them. The caller holds no lock.
func (b *Broker) settle(e *entry, ops []store.Op, span session.Span, rel []*heldAck) {
	if len(rel) == 0 {
		b.commitSession(e, ops, span)
		return
	}
	if len(ops) == 0 {
		releaseAcks(rel)
		return
	}
	rel = slices.Clone(rel) // the caller's scratch; the commit completes later
	batch := &store.Batch{Ops: ops}
	b.st.Commit(batch, func(err error) {
		b.release([]waiter{{e, span}}, err)
		batch.ReleaseMessages()
		if err != nil {
			for _, a := range rel {
				a.fail(err)
			}
		}
		releaseAcks(rel)
	})
}

// parkTimeout runs when the oldest parked delivery of e may have waited
// its bound: what fits goes into the queue; if the oldest has still no
// room, the subscriber is stalled and everything parked on it is dropped.
func (b *Broker) parkTimeout(e *entry) {
	now := b.env.Clock.Now()
	e.mu.Lock()
	x := e.more()
	x.parkTimer = nil
	if e.dead {
		e.mu.Unlock()
		return
	}
	rel, sent := b.admitParked(e, now, nil)
	dropped := 0
	var full0 uint64
	x = e.more() // admitParked may have let it go
	if p := x.parked.Peek(); p != nil {
		if now.Before(p.deadline) {
			x.parkTimer = b.env.Clock.AfterFunc(p.deadline.Sub(now), func() { b.parkTimeout(e) })
		} else {
			for x.parked.Len() > 0 {
				q := x.parked.Pop()
				q.msg.Release()
				rel = append(rel, q.ack)
				dropped++
			}
			full0 = e.s.DroppedQueueFull()
			e.s.CountQueueFull(uint64(dropped))
			e.stalled = true
		}
	}
	e.tidy()
	var ops []store.Op
	var span session.Span
	if len(rel) > dropped {
		ops, span = e.s.TakeOps()
	}
	conn := e.conn
	e.mu.Unlock()
	if dropped > 0 {
		b.noteDrops(e.t, DropQueueFull, uint64(dropped), now)
		b.noteOverflow(e, full0, full0+uint64(dropped), now)
		b.stats.Stalls.Add(1)
		if at := b.stallLogAt.Load(); now.UnixNano()-at >= int64(10*time.Second) && b.stallLogAt.CompareAndSwap(at, now.UnixNano()) {
			b.log.Warn("slow subscriber: messages waiting for room in its queue dropped",
				"tenant", e.t.name, "client", e.s.ClientID, "dropped", dropped, "stalls", b.stats.Stalls.Load())
		}
	}
	if sent && conn != nil {
		conn.wakeUp()
	}
	b.settle(e, ops, span, rel)
}

// takeParked lets go of everything parked on a session that ends: its
// queue goes with it, uncounted, and so do they. The caller holds e.mu and
// releases the returned acknowledgements after unlocking.
func (e *entry) takeParked() []*heldAck {
	e.stalled = false
	x := e.x
	if x == nil {
		return nil
	}
	if x.parkTimer != nil {
		x.parkTimer.Stop()
		x.parkTimer = nil
	}
	var rel []*heldAck
	for x.parked.Len() > 0 {
		q := x.parked.Pop()
		q.msg.Release()
		rel = append(rel, q.ack)
	}
	e.tidy()
	return rel
}

// enqueueAck puts an acknowledgement at the end of the connection's queue.
// Only the connection's reader calls it.
func (c *Conn) enqueueAck(a *heldAck) {
	c.ackMu.Lock()
	if c.acks == nil {
		c.acks = &ackQueue{}
	}
	c.acks.acks = append(c.acks.acks, a)
	c.nacks.Add(1)
	c.ackMu.Unlock()
}

// finish acknowledges a PUBLISH with code, after the acknowledgements
// still waiting ahead of it.
func (c *Conn) finish(e *entry, pid uint16, qos packet.QoS, code packet.ReasonCode) {
	if qos == 0 {
		return
	}
	if c.nacks.Load() == 0 {
		c.complete(e, pid, qos, code)
		return
	}
	a := newHeldAck(c)
	a.e, a.pid, a.qos, a.code, a.v5 = e, pid, qos, code, c.dec.Version == packet.V5
	c.enqueueAck(a)
	a.release()
}

// flushAcks sends, in order, the acknowledgements at the head of the
// connection's queue that wait for nothing more. Any goroutine may call
// it; ackMu keeps the order (lock order: ackMu, then the publisher's
// session; it is never taken with a session lock held).
func (c *Conn) flushAcks() {
	var ops []store.Op
	var span session.Span
	var e *entry
	done, kick := 0, false
	c.ackMu.Lock()
	q := c.acks
	if q == nil {
		c.ackMu.Unlock()
		return
	}
	for q.head < len(q.acks) {
		a := q.acks[q.head]
		if a.waits.Load() != 0 {
			break
		}
		q.acks[q.head] = nil
		q.head++
		if a.parked {
			c.nparked.Add(-1)
		}
		if !q.dead {
			code := a.code
			if f := a.failed.Load(); f == kickCode {
				q.dead, kick = true, true
			} else if f != 0 {
				code = packet.ReasonCode(f)
			}
			if !kick {
				e = a.e
				e.mu.Lock()
				if e.conn == c {
					e.s.PublishDone(a.pid, a.qos, code)
				}
				e.mu.Unlock()
				done++
			}
		}
		// Counted down only once its acknowledgement is written: a
		// PUBLISH that finds the queue empty may be acknowledged at once.
		c.nacks.Add(-1)
		a.recycle()
	}
	if e != nil {
		// What the acknowledgements journaled (QoS 2 packet ids), taken
		// at once: one span of the session's journal.
		e.mu.Lock()
		if e.conn == c {
			ops, span = e.s.TakeOps()
		}
		e.mu.Unlock()
	}
	if q.head == len(q.acks) {
		clear(q.acks)
		q.acks, q.head = q.acks[:0], 0
	} else if q.head > 64 && q.head > len(q.acks)/2 {
		n := copy(q.acks, q.acks[q.head:])
		clear(q.acks[n:])
		q.acks, q.head = q.acks[:n], 0
	}
	c.ackMu.Unlock()
	if e != nil {
		c.b.commitSession(e, ops, span)
	}
	if kick {
		c.Kick(packet.UnspecifiedError)
	}
	if done > 0 || kick {
		c.wakeUp()
	}
}
