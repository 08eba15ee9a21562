package broker

import (
	"math/bits"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/event"
	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/session"
	"github.com/skybridge-mq/skybridge/impl/store"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// publish routes a message received from this connection's client and
// completes its QoS flow: at once when nothing needs to become durable,
// else once the store has committed every queue entry (and retained
// message) the message produced. e is the publisher's session.
func (c *Conn) publish(e *entry, m *message.Message, pid uint16, at *instant) {
	b := c.b
	qos := m.QoS
	b.stats.MessagesIn.Add(1)
	b.stats.BytesIn.Add(uint64(len(m.Payload)))
	c.t.stats.messagesIn.Add(1)
	c.t.stats.bytesIn.Add(uint64(len(m.Payload)))
	if len(m.Topic) >= 4 && string(m.Topic[:4]) == "$SYS" {
		// $SYS belongs to the broker: clients may read it, not write it. A
		// 3.1.1 client gets a positive acknowledgement [MQTT-3.3.5-2].
		b.noteDrop(c.t, DropNotAuthorized, at.now())
		c.finish(e, pid, qos, packet.NotAuthorized)
		return
	}
	if az := b.cfg.Authorizer; az != nil && !az.CanPublish(&c.who, m.Topic, m.Retain) {
		// Denied: 0x87 to a 5.0 publisher; a 3.1.1 one cannot be told, and
		// gets the positive acknowledgement the spec allows [MQTT-3.3.5-2].
		b.noteDrop(c.t, DropNotAuthorized, at.now())
		b.emit(event.NewPublishRefused(at.now(), c.eventWho(), string(m.Topic), packet.NotAuthorized))
		c.finish(e, pid, qos, packet.NotAuthorized)
		return
	}
	l := b.tenantLimits(c.t)
	if code, kick := c.admitPublish(l, m, at); code != packet.Success {
		b.noteDrop(c.t, refusalDrop(code), at.now())
		if kick || c.dec.Version != packet.V5 {
			// A 3.1.1 publisher cannot be refused but by closing
			// [MQTT-3.3.5-2]; a 5.0 one over its rate is disconnected 0x96.
			c.Kick(code)
			return
		}
		c.finish(e, pid, qos, code)
		return
	}
	if qos > 0 && b.persist && b.storeFull() {
		// Refuse rather than accept what cannot be kept [v5 MQTT-3.3.4-1].
		b.stats.StoreFull.Add(1)
		if c.dec.Version != packet.V5 {
			// 3.1.1 has no refusal but closing [MQTT-3.3.5-2]: the client
			// keeps the message and tries again later.
			c.Kick(packet.QuotaExceeded)
			return
		}
		c.finish(e, pid, qos, packet.QuotaExceeded)
		return
	}
	rs := c.scratch()
	if !c.lis.IdleEndsBatch {
		rs.dropJob()
	}
	// A runtime that calls Idle after each batch of packets lets the batch's
	// PUBLISHes share one commit: the route's job then holds what earlier
	// ones of the batch journaled, and this message's part starts here.
	before := rs.size()
	if qos == packet.QoS2 {
		// The packet id is held from now on: a resend (after a
		// reconnection) is acknowledged, never routed twice.
		e.mu.Lock()
		if e.conn == c {
			e.s.AcceptInbound(pid)
		}
		e.mu.Unlock()
	}
	if m.Retain {
		// The retained copy must be owned; routing reuses it so the bytes are
		// copied once [MQTT-3.3.1-5].
		m = m.Own()
		b.setRetained(c.t, m, rs)
	}
	var fw Forwarded
	var aud *audience
	if b.cfg.Cluster != nil {
		// Other nodes first: their links copy the message, and a QoS 1/2
		// acknowledgement waits until each took it.
		var done func(error)
		if qos > 0 {
			rs.ack = newHeldAck(c)
			// The cluster may refuse at once (done called before Forward
			// returns): fail must know the version by then, or a 5.0
			// publisher is disconnected instead of answered 0x83.
			rs.ack.v5 = c.dec.Version == packet.V5
			rs.ack.waits.Add(1)
			done = forwardDone(rs.ack)
		}
		fw, aud = b.forward(c.t, m, done)
		if qos > 0 && !fw.Pending {
			rs.ack.recycle()
			rs.ack = nil
		}
	}
	matched := b.routeFor(c.t, m, rs, at, c, aud) + fw.Nodes
	if qos == packet.QoS2 && b.persist && (rs.ack == nil || !rs.ack.parked) {
		// The id becomes durable in the same batch as the deliveries. (A
		// durable broker never parks a QoS 2 delivery, see mayPark, so the
		// message is wholly placed now.)
		e.mu.Lock()
		if e.conn == c {
			e.s.JournalInbound(pid)
			rs.addSession(b, e)
		}
		e.mu.Unlock()
	}
	code := packet.Success
	if matched == 0 {
		b.stats.NoSubscribers.Add(1)
		code = packet.NoMatchingSubscribers
	}
	// Acknowledge at once unless something waits: the store, a delivery
	// parked on a slow subscriber (backpressure.go), or an earlier
	// acknowledgement (they keep their order).
	a := rs.ack
	rs.ack = nil
	if a != nil && a.parked {
		b.throttle(c.t, ThrottleSlowSubscriber)
	}
	added := rs.size() > before
	if !added && a == nil && c.nacks.Load() == 0 {
		// (Nothing of the batch waits either: its acknowledgements would
		// be counted in nacks.)
		rs.dropEmptyJob()
		c.complete(e, pid, qos, code)
		return
	}
	if rate := l.s.PersistentFanoutBPS; rate > 0 && added {
		n := 0
		for i := before; i < rs.size(); i++ {
			if op := &rs.job.batch.Ops[i]; op.Kind == store.PutDelivery && op.Delivery.Msg != nil {
				n += op.Delivery.Msg.Size()
			}
		}
		c.t.fanout.Spend(at.now(), float64(rate), float64(rate), float64(n))
	}
	if qos == 0 {
		// Nothing to acknowledge (QoS 0 is never parked): what routing
		// journaled (a retained message) only holds other output.
		b.commitRoute(rs)
		return
	}
	if a == nil {
		a = newHeldAck(c)
	}
	a.e, a.pid, a.qos, a.code, a.v5 = e, pid, qos, code, c.dec.Version == packet.V5
	c.enqueueAck(a)
	if h := b.cfg.Hooks; h != nil && h.AckBeforeDurable {
		b.commitRoute(rs) // the planted bug: the acknowledgement does not wait for it
	} else if added {
		a.waits.Add(1)
		j := rs.jobFor(b)
		j.acks = append(j.acks, a)
		if !c.lis.IdleEndsBatch || len(j.batch.Ops) >= maxBatchOps || len(j.acks) >= maxBatchAcks || j.retained {
			// (A retained message does not wait for the batch's end: the
			// client's next packets, a SUBSCRIBE, must find it in place.)
			rs.takeJob(b).commit()
		}
	} else {
		rs.dropEmptyJob()
	}
	a.release() // routing is done
}

// Bounds of the commit a batch of PUBLISHes shares (Conn.Idle): beyond
// them it is committed at once, so that a client streaming without pause
// neither waits long for its acknowledgements nor grows the batch.
const (
	maxBatchOps  = 1024
	maxBatchAcks = 256
)

// complete acknowledges a routed PUBLISH with code and commits what the
// acknowledgement itself journals (a QoS 2 packet id).
func (c *Conn) complete(e *entry, pid uint16, qos packet.QoS, code packet.ReasonCode) {
	if qos == 0 {
		return
	}
	e.mu.Lock()
	if e.conn != c {
		e.mu.Unlock()
		return
	}
	e.s.PublishDone(pid, qos, code)
	ops, span := e.s.TakeOps()
	e.mu.Unlock()
	c.b.commitSession(e, ops, span)
}

// setRetained makes m the retained message of its topic (an empty payload
// deletes it). With a durable store the change goes into the batch, and
// takes effect in the retained store when the batch is committed
// (commitJob.commit), so that the store and the disk see a topic's changes
// in one order: applied at once and committed with the batch, two
// publishers' changes reached the disk in the order their batches ended,
// and a restart brought back the older message.
func (b *Broker) setRetained(t *tenant, m *message.Message, rs *routeScratch) {
	if cl := b.cfg.Cluster; cl != nil && !isSys(m.Topic) {
		cl.RetainedSet(t.name, m)
	}
	b.storeRetained(t, m, rs)
}

// storeRetained is setRetained on this node only.
func (b *Broker) storeRetained(t *tenant, m *message.Message, rs *routeScratch) {
	if !b.persist {
		b.retained.Set(t.name, m)
		return
	}
	kind := store.PutRetained
	if len(m.Payload) == 0 {
		kind = store.DeleteRetained
	}
	rs.add(b, store.Op{Kind: kind, Tenant: t.name, Message: m})
	rs.job.retained = true
}

// route delivers m to every session of t with a matching subscription and
// returns how many sessions it matched. self is the publishing connection
// (nil for the broker's own messages): its writer is woken by its reader.
func (b *Broker) route(t *tenant, m *message.Message, rs *routeScratch, at *instant, self *Conn) int {
	return b.routeFor(t, m, rs, at, self, nil)
}

// routeFor is route for the subscriptions of an audience (nil: all).
func (b *Broker) routeFor(t *tenant, m *message.Message, rs *routeScratch, at *instant, self *Conn, aud *audience) int {
	rs.matches.Reset()
	rs.limits = nil
	t.routesMu.RLock()
	t.routes.Match(m.Topic, &rs.matches)
	if aud != nil && aud.noPlain {
		rs.matches.Subs = rs.matches.Subs[:0]
	}
	for _, g := range rs.matches.Groups {
		if aud != nil && !aud.serves(g) {
			continue // another node serves this group
		}
		// One member of each shared group gets the message, a connected one
		// when there is one.
		s, ok := g.Pick(b.cfg.SharedPolicy, m.PublisherKey, lockedIntn{b}, b.onlineFn)
		if !ok {
			s, ok = g.Pick(b.cfg.SharedPolicy, m.PublisherKey, lockedIntn{b}, nil)
		}
		if ok {
			rs.matches.Subs = append(rs.matches.Subs, s)
		}
	}
	t.routesMu.RUnlock()

	subs := rs.matches.Subs
	if len(subs) > 1 {
		slices.SortStableFunc(subs, func(a, b topic.Subscription) int {
			switch {
			case a.Subscriber < b.Subscriber:
				return -1
			case a.Subscriber > b.Subscriber:
				return 1
			}
			return 0
		})
	}
	var owned *message.Message
	matched := 0
	// Deliver reads the clock only for the message's expiry.
	var now time.Time
	if !m.Expiry.IsZero() {
		now = at.now()
	}
	for i := 0; i < len(subs); {
		id := subs[i].Subscriber
		qos := -1
		retain := false
		ids := rs.ids[:0]
		// Overlapping subscriptions of one session make one delivery with the
		// highest QoS and every Subscription Identifier [MQTT-3.3.4-2].
		for ; i < len(subs) && subs[i].Subscriber == id; i++ {
			s := &subs[i]
			if s.NoLocal && id == m.Publisher {
				continue // [v5 MQTT-3.8.3-3]
			}
			if q := int(min(packet.QoS(s.QoS), m.QoS)); q > qos {
				qos = q
			}
			if s.RetainAsPublished && m.Retain {
				retain = true
			}
			if s.ID != 0 {
				ids = append(ids, s.ID)
			}
		}
		rs.ids = ids
		if len(ids) > 1 {
			slices.Sort(ids) // any order is allowed [v5 MQTT-3.3.4-4]; sorted is reproducible
		}
		if qos < 0 {
			continue
		}
		e := b.lookup(id)
		if e == nil {
			continue
		}
		matched++
		msg := m
		if qos > 0 {
			if owned == nil {
				// Counted: it returns to its pool once every subscriber
				// has acknowledged it and every batch that journaled it
				// is committed.
				owned = m.Share()
			}
			msg = owned
		}
		d := session.Delivery{QoS: packet.QoS(qos), Retain: retain, SubIDs: ids}
		lockForDelivery(&e.mu)
		full0 := e.s.DroppedQueueFull()
		out := session.DropOffline
		if !e.dead {
			if qos > 0 && (e.nparked() > 0 || !e.s.Room(msg.Size())) {
				// The subscriber's queue is full (or deliveries wait ahead of
				// this one): hold the publisher's acknowledgement until there
				// is room (backpressure.go), or drop as before.
				if b.mayPark(e, m, self, rs) {
					b.park(e, msg, d, rs, self, at)
					e.mu.Unlock()
					continue
				}
				if e.nparked() > 0 {
					// Never overtake what waits: dropped as if the queue were full.
					e.s.CountQueueFull(1)
					full := e.s.DroppedQueueFull()
					e.mu.Unlock()
					b.noteDrop(t, DropQueueFull, at.now())
					b.noteOverflow(e, full0, full, at.now())
					continue
				}
			}
			out = e.s.Deliver(msg, d, now)
			if b.persist {
				rs.addSession(b, e)
			}
		}
		conn := e.conn
		full := e.s.DroppedQueueFull()
		e.mu.Unlock()
		if b.countOutcome(t, out, at) && conn != nil && conn != self {
			conn.wakeUp()
		}
		if full != full0 {
			b.noteOverflow(e, full0, full, at.now())
		}
	}
	if owned != nil {
		owned.Release() // the sessions that kept it hold their own references
	}
	return matched
}

// noteOverflow emits an InboxOverflow event for a session whose count of
// messages dropped for a full queue went from before to after: when it
// reaches 1, 2, 4, 8… so that an operator hears of every overflowing
// session at once, and of a session that keeps overflowing ever more
// rarely, never in a flood (the tenant-wide drop counters and their
// periodic MessageDropped event say the rest).
func (b *Broker) noteOverflow(e *entry, before, after uint64, now time.Time) {
	if bits.Len64(after) == bits.Len64(before) {
		return
	}
	b.emit(event.NewInboxOverflow(now, event.Who{Tenant: e.t.name, ClientID: e.s.ClientID}, after))
}

// subscribe adds granted subscriptions to the routes, recording whether
// each existed (for Retain Handling 1).
func (c *Conn) subscribe(e *entry, reqs []session.SubRequest) {
	l := c.b.tenantLimits(c.t)
	e.mu.Lock()
	subs := e.s.SubscriptionCount()
	for i := range reqs {
		if r := &reqs[i]; !r.Reason.IsError() && e.s.HasSubscription(r.Filter) {
			subs-- // replacing one does not add one
		}
	}
	e.mu.Unlock()
	c.t.routesMu.Lock()
	for i := range reqs {
		r := &reqs[i]
		if r.Reason.IsError() {
			continue
		}
		if az := c.b.cfg.Authorizer; az != nil && !az.CanSubscribe(&c.who, r.Filter) {
			r.Reason = packet.NotAuthorized
			if c.dec.Version != packet.V5 {
				r.Reason = packet.SubackFailure
			}
			c.b.emit(event.NewSubscriptionRefused(c.b.env.Clock.Now(), c.eventWho(), string(r.Filter), packet.NotAuthorized))
			continue
		}
		if code := c.admitSubscription(l, e, r, subs); code != packet.Success {
			if c.dec.Version != packet.V5 {
				code = packet.SubackFailure
			}
			r.Reason = code
			continue
		}
		subs++
		r.Existed = c.t.routes.Subscribe(r.Filter, topic.Subscription{Subscriber: e.id, Options: r.Options})
		if !r.Existed {
			c.b.routeAdded(c.t, string(r.Filter))
		}
	}
	c.t.routesMu.Unlock()
}

// undoSubscribe removes routes added for a SUBSCRIBE whose session was
// taken over before it could be acknowledged.
func (c *Conn) undoSubscribe(e *entry, reqs []session.SubRequest) {
	e.mu.Lock()
	var drop [][]byte
	for i := range reqs {
		r := &reqs[i]
		if !r.Reason.IsError() && !r.Existed && !e.s.HasSubscription(r.Filter) {
			drop = append(drop, r.Filter)
		}
	}
	e.mu.Unlock()
	c.t.routesMu.Lock()
	for _, f := range drop {
		if c.t.routes.Unsubscribe(f, e.id) {
			c.b.routeRemoved(c.t, string(f))
		}
	}
	c.t.routesMu.Unlock()
}

// sendRetained delivers the retained messages a new subscription asks for
// (Retain Handling 0 always, 1 only for a new subscription, 2 never); shared
// subscriptions get none.
func (c *Conn) sendRetained(e *entry, reqs []session.SubRequest, now time.Time) {
	b := c.b
	for i := range reqs {
		r := &reqs[i]
		if r.Reason.IsError() || r.Shared || r.Options.RetainHandling == 2 ||
			(r.Options.RetainHandling == 1 && r.Existed) {
			continue
		}
		var ids []uint32
		if r.Options.ID != 0 {
			ids = []uint32{r.Options.ID}
		}
		limit := b.tenantLimits(c.t).s.MaxRetainedMatches
		sent := 0
		b.retained.Match(c.t.name, r.Filter, now, func(m *message.Message) bool {
			if limit > 0 && sent >= limit {
				return false // [tenant setting max_retained_matches]
			}
			sent++
			q := min(packet.QoS(r.Options.QoS), m.QoS)
			e.mu.Lock()
			if e.conn == c {
				// A message sent because of a new subscription carries RETAIN 1
				// [v5 MQTT-3.3.1-9] [v3.1.1 MQTT-3.3.1-8].
				if e.s.Deliver(m, session.Delivery{QoS: q, Retain: true, SubIDs: ids}, now) == session.Sent {
					b.stats.MessagesOut.Add(1)
				}
			}
			e.mu.Unlock()
			return true
		})
	}
}

// instant is a clock reading taken when first needed. Routing a message
// without expiry to subscribers that take it needs none, and a reading
// costs more than the rest of a QoS 0 delivery on some machines (52 ns on
// the development VM, a sixth of the fan-in publish path in the profile).
type instant struct {
	clock env.Clock
	t     time.Time
}

func (i *instant) now() time.Time {
	if i.t.IsZero() {
		i.t = i.clock.Now()
	}
	return i.t
}

// lockForDelivery takes a subscriber's session lock for a publisher's
// reader. With many publishers feeding one subscriber, blocking at once
// parks them in the mutex's queue: a convoy in which every handoff waits
// for a goroutine to be scheduled, and in which the subscriber's own
// writer, which must take the lock to drain the output, waits behind all
// of them (measured: the writer blocked on it nearly all the time, the
// subscriber starved). A publisher that finds the lock taken yields the
// processor instead, a few times, so that the holder and the subscriber's
// goroutines run, and only then blocks. Uncontended, this is Lock; in the
// simulator (one goroutine) the lock is never taken.
func lockForDelivery(mu *sync.Mutex) {
	for range deliveryYields {
		if mu.TryLock() {
			return
		}
		runtime.Gosched()
	}
	mu.Lock()
}

// deliveryYields bounds the yields of lockForDelivery.
const deliveryYields = 8

// countOutcome counts what Deliver did with a message and reports whether
// it was written to the subscriber's output (its writer has work).
func (b *Broker) countOutcome(t *tenant, out session.Outcome, at *instant) bool {
	switch out {
	case session.Sent:
		b.stats.MessagesOut.Add(1)
		t.stats.messagesOut.Add(1)
		return true
	case session.Queued:
		b.stats.MessagesOut.Add(1)
		t.stats.messagesOut.Add(1)
	case session.DropQueueFull:
		b.noteDrop(t, DropQueueFull, at.now())
	case session.DropOutput:
		b.noteDrop(t, DropOutputFull, at.now())
	case session.DropOffline:
		b.noteDrop(t, DropOffline, at.now())
	case session.DropTooLarge:
		b.noteDrop(t, DropTooLarge, at.now())
	case session.DropExpired:
		b.noteDrop(t, DropExpired, at.now())
	}
	return false
}

// noteDrop counts a dropped delivery and, at most every ten seconds, logs
// the drop counters and emits a MessageDropped event: drops are never
// silent, and never flood the log. now is the caller's reading of the
// clock (reading it per drop costs more than the drop itself).
func (b *Broker) noteDrop(t *tenant, reason int, now time.Time) {
	b.noteDrops(t, reason, 1, now)
}

// noteDrops counts n drops for one reason.
func (b *Broker) noteDrops(t *tenant, reason int, n uint64, now time.Time) {
	b.stats.Dropped.Add(n)
	b.stats.DroppedBy[reason].Add(n)
	t.stats.dropped.Add(n)
	ns := now.UnixNano()
	if at := b.dropLogAt.Load(); ns-at >= int64(10*time.Second) && b.dropLogAt.CompareAndSwap(at, ns) {
		b.emit(event.NewMessageDropped(now, event.Who{Tenant: t.name}, DropReasons[reason], b.stats.DroppedBy[reason].Load()))
		args := []any{"tenant", t.name, "reason", DropReasons[reason]}
		for i, name := range DropReasons {
			args = append(args, "total_"+name, b.stats.DroppedBy[i].Load())
		}
		b.log.Warn("messages dropped", args...)
	}
}
