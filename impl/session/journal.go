package session

import (
	"math"
	"time"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/store"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// A session that outlives its connection (Session Expiry above 0, or a
// 3.1.1 persistent session) and runs on a broker with a durable store
// journals every change as a store.Op. The broker takes the ops
// (TakeOps), commits them and reports the commit (Committed). Output that
// a client could rely on after a crash — a SUBACK, a PUBREL, a PUBCOMP, a
// PUBLISH of a message whose queue entry is not yet on disk — is held until
// the change before it is durable; removals (a PUBACK'd delivery) are not
// waited for, since losing one only re-sends a message.

// mark holds output from offset on until journal sequence seq is durable.
type mark struct {
	seq    uint64
	offset int
}

// durable reports whether the session journals its changes.
func (s *Session) durable() bool { return s.persist && s.expiry > 0 }

// journal records op. A gating op holds the output written after it.
func (s *Session) journal(op store.Op, gating bool) {
	if s.epoch == nil {
		s.epoch = new(store.Epoch)
	}
	op.Tenant, op.ClientID, op.Epoch = s.Tenant, s.ClientID, s.epoch
	s.ops = append(s.ops, op)
	switch op.Kind {
	case store.PutSub, store.DeleteSub, store.PutSession, store.DeleteSession:
		s.ordered = true
	}
	if op.Kind == store.DeleteSession {
		// What the session journals from now on belongs to a new
		// incarnation, which the removal does not end.
		s.epoch = nil
	}
	if !gating {
		return
	}
	s.jseq++
	if n := len(s.marks); n > 0 && s.marks[n-1].offset == len(s.out) {
		s.marks[n-1].seq = s.jseq
		return
	}
	s.marks = append(s.marks, mark{seq: s.jseq, offset: len(s.out)})
}

// releasable returns how many bytes of output may be written now.
func (s *Session) releasable() int {
	for _, m := range s.marks {
		if m.seq > s.committed {
			return m.offset
		}
	}
	return len(s.out)
}

// MustCommitNow reports whether the journal holds a change that the
// broker must take and commit in the call that journaled it (under the
// same hold of the session's lock), rather than leave for the next
// TakeOps: a subscription change or the session record. A client may
// change either again without waiting for an answer (an UNSUBSCRIBE and a
// SUBSCRIBE of one filter, pipelined; a DISCONNECT and the end of the
// connection), and the store applies batches in the order they come. Ops
// left in the journal may be taken into a batch committed later than the
// session's next change — a publisher's batch that routing adds the
// session's deliveries to (AppendOps) is committed when that publisher's
// read batch ends — and the older change would overwrite the newer one
// on disk (found by the simulator: a SUBACKed subscription missing after
// a power loss). Queue entries and QoS 2 packet ids may wait: the store
// never writes a queue entry's put after its removal (the removal marks
// the record), and every other change of either waits for the client's
// answer to output that waits for the first change.
func (s *Session) MustCommitNow() bool { return s.ordered }

// Span is the part of a session's journal that a set of ops covers: the
// gating changes numbered Lo+1 to Hi (none when Hi == Lo). The broker
// reports it back with Committed once those ops are durable.
type Span struct{ Lo, Hi uint64 }

// take hands out the gating changes journaled since the last take.
func (s *Session) take() Span {
	sp := Span{s.taken, s.jseq}
	s.taken = s.jseq
	return sp
}

// TakeOps returns the changes journaled since the last call and the span
// of the journal they cover, for Committed once they are durable. The ops
// are the caller's.
func (s *Session) TakeOps() ([]store.Op, Span) {
	ops := s.ops
	s.ops, s.ordered = nil, false
	return ops, s.take()
}

// AppendOps is TakeOps for a caller that copies the ops into a batch of its
// own: they are appended to dst, and the session keeps its buffer for the
// next ones (cleared, so that it holds no message), which spares the
// routing of every persistent delivery an allocation. ok reports whether
// there were any.
func (s *Session) AppendOps(dst []store.Op) (out []store.Op, sp Span, ok bool) {
	if len(s.ops) == 0 {
		return dst, Span{s.taken, s.taken}, false
	}
	dst = append(dst, s.ops...)
	clear(s.ops)
	s.ops, s.ordered = s.ops[:0], false
	return dst, s.take(), true
}

// Committed tells the session that the ops covering sp are durable; the
// output held behind the changes up to the first one not yet durable may
// go. Commits may finish in another order than their ops were taken (ops
// taken into a batch that commits later than the next ones' batch): a
// change is durable only once every change before it is.
func (s *Session) Committed(sp Span) {
	if sp.Hi <= sp.Lo {
		return
	}
	s.done = append(s.done, sp)
	for i := 0; i < len(s.done); {
		if d := s.done[i]; d.Lo <= s.committed {
			// It joins the durable prefix: the prefix grows, and spans
			// seen before may join it now.
			s.committed = max(s.committed, d.Hi)
			s.done[i] = s.done[len(s.done)-1]
			s.done = s.done[:len(s.done)-1]
			i = 0
			continue
		}
		i++
	}
	i := 0
	for i < len(s.marks) && s.marks[i].seq <= s.committed {
		i++
	}
	s.marks = s.marks[i:]
}

// WillPublished records that the will the broker was holding for its delay
// has been published, so that a restart does not publish it again.
func (s *Session) WillPublished() {
	if s.durable() {
		rec := s.Record(s.offline)
		rec.Will = nil
		s.journal(store.Op{Kind: store.PutSession, Session: rec}, false)
	}
}

// Offline returns when the session's last connection ended (zero while
// connected or never connected).
func (s *Session) Offline() time.Time { return s.offline }

// Record returns the session's durable record as of now.
func (s *Session) Record(offlineSince time.Time) *store.SessionRecord {
	return &store.SessionRecord{Version: byte(s.version), Expiry: s.expiry, OfflineSince: offlineSince,
		Will: s.will, WillDelay: s.willDelay, Owner: s.Owner, OwnerKnown: s.OwnerKnown}
}

// journalRecord journals the session record, or the removal of a stored
// session that no longer outlives its connection (Session Expiry now 0).
func (s *Session) journalRecord(offlineSince time.Time, gating bool) {
	switch {
	case s.durable():
		s.stored = true
		s.journal(store.Op{Kind: store.PutSession, Session: s.Record(offlineSince)}, gating)
	case s.stored:
		s.stored = false
		s.journal(store.Op{Kind: store.DeleteSession}, gating)
	}
}

// Stored reports whether the session has a record in the durable store,
// which the broker deletes when the session ends.
func (s *Session) Stored() bool { return s.stored }

// Forget journals the removal of the session from the store.
func (s *Session) Forget() {
	if s.stored {
		s.stored = false
		s.journal(store.Op{Kind: store.DeleteSession}, false)
	}
}

// journalDelivery journals a delivery's queue entry. A QoS 2 message, or a
// released one, must be durable before the client sees its PUBLISH or
// PUBREL (exactly once hangs on it); a QoS 1 PUBLISH may go at once: were
// the entry lost, the publisher, not yet acknowledged, sends again. The
// store then need not write an entry acknowledged within its own group
// commit (store.Op.Fresh).
func (s *Session) journalDelivery(d *delivery, fresh bool) {
	if !s.durable() {
		return
	}
	rec := &store.DeliveryRecord{Seq: d.seq, PID: d.pid, QoS: byte(d.qos), Retain: d.retain,
		SubIDs: d.subIDs, Msg: d.msg}
	if d.state == stateReleased {
		rec.State, rec.Msg = store.Released, nil
	}
	if rec.Msg != nil {
		// The record may outlive the delivery (the client acknowledges
		// before the batch is written): it holds a reference of its own,
		// which the committer of its batch gives back
		// (store.Batch.ReleaseMessages).
		rec.Msg.Ref()
	}
	gating := d.qos == packet.QoS2
	d.rec, d.journaled = rec, true
	s.journal(store.Op{Kind: store.PutDelivery, Delivery: rec, Fresh: fresh}, gating)
}

func (s *Session) journalDone(d *delivery) {
	if s.durable() {
		s.journal(store.Op{Kind: store.DeleteDelivery, Seq: d.seq, Delivery: d.rec}, false)
	}
	d.rec = nil
}

// Restore returns a session rebuilt from its stored record, without a
// connection. Its subscriptions, deliveries and inbound QoS 2 ids follow
// with RestoreSub, RestoreDelivery (in sequence order) and RestoreInbound.
func Restore(cfg *Config, id topic.SubscriberID, tenant, clientID string, r *store.SessionRecord) *Session {
	s := New(cfg, id, tenant, clientID, true)
	s.version, s.expiry, s.will, s.willDelay = packet.Version(r.Version), r.Expiry, r.Will, r.WillDelay
	s.offline, s.stored = r.OfflineSince, true
	s.Owner, s.OwnerKnown = r.Owner, r.OwnerKnown
	return s
}

// RestoreSub adds a stored subscription.
func (s *Session) RestoreSub(filter string, o topic.Options) { s.subscriptions().Set(filter, o) }

// RestoreInbound adds a stored QoS 2 packet id awaiting PUBREL.
func (s *Session) RestoreInbound(pid uint16) {
	if s.qos2In == nil {
		s.qos2In = map[uint16]bool{}
	}
	s.qos2In[pid] = true
}

// RestoreDelivery adds a stored delivery. A released one waits for its
// PUBCOMP (PUBREL is re-sent on connect); any other is queued again and
// will be sent with DUP, since it may have been sent before the restart.
func (s *Session) RestoreDelivery(r *store.DeliveryRecord) {
	if s.byPID.get(r.PID) != nil || r.PID == 0 {
		return // a damaged queue keeps its first entry for an id
	}
	d := &delivery{msg: r.Msg, qos: packet.QoS(r.QoS), retain: r.Retain, subIDs: r.SubIDs, pid: r.PID, seq: r.Seq, journaled: true}
	s.byPID.set(d.pid, d)
	if d.msg != nil {
		d.msg.Ref()
		d.size = d.msg.Size()
		s.held += d.size
	}
	if r.Seq >= s.nextSeq {
		s.nextSeq = r.Seq + 1
	}
	s.nextPID = r.PID
	if r.State == store.Released || d.msg == nil {
		d.state = stateReleased
		s.link(d)
		return
	}
	d.dup, d.state = true, stateQueued
	s.queue.Push(d)
}

// Will returns the session's will and its delay (seconds), for a broker
// restoring an offline session.
func (s *Session) Will() (*message.Message, uint32) { return s.will, s.willDelay }

// ExpireAfter returns how long after going offline the session ends.
func (s *Session) ExpireAfter() time.Duration {
	if s.expiry == math.MaxUint32 {
		return Forever
	}
	return time.Duration(s.expiry) * time.Second
}

// DropSubscription removes a subscription without a client's UNSUBSCRIBE
// (the broker revoked it: the session's user may no longer read it) and
// journals the removal. It reports whether there was one.
func (s *Session) DropSubscription(filter string) bool {
	if s.subs == nil {
		return false
	}
	if _, ok := s.subs.Delete(filter); !ok {
		return false
	}
	if s.durable() {
		s.journal(store.Op{Kind: store.DeleteSub, Filter: filter}, false)
	}
	return true
}

// QueuedTopics calls visit with the topic of each delivery waiting in the
// queue (not yet sent), in queue order; visit must not keep the bytes.
func (s *Session) QueuedTopics(visit func(topic []byte)) {
	for i, n := 0, s.queue.Len(); i < n; i++ {
		d := s.queue.Pop()
		if d.msg != nil {
			visit(d.msg.Topic)
		}
		s.queue.Push(d)
	}
}

// DropQueued removes the deliveries waiting in the queue (not yet sent)
// for which drop reports true, keeping the order of the rest, journals
// their removal and returns how many it removed.
func (s *Session) DropQueued(drop func(m *message.Message) bool) int {
	dropped := 0
	for i, n := 0, s.queue.Len(); i < n; i++ {
		d := s.queue.Pop()
		if d.msg != nil && drop(d.msg) {
			s.forget(d)
			dropped++
			continue
		}
		s.queue.Push(d)
	}
	return dropped
}
