package session

import (
	"sync"
	"time"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// Delivery is how one message reaches this session: the QoS to use (already
// the minimum of the message's and the subscription's), the RETAIN flag to
// send and the Subscription Identifiers of the matching subscriptions.
type Delivery struct {
	QoS    packet.QoS
	Retain bool
	SubIDs []uint32 // copied if kept
}

// Outcome says what Deliver did with a message.
type Outcome uint8

// Outcomes of Deliver.
const (
	Sent          Outcome = iota // written to the output (or queued behind earlier messages)
	Queued                       // held until the window, the buffer or a connection allows
	DropQueueFull                // refused: the session's queue is at its bound
	DropOutput                   // QoS 0 not written: the output buffer is full
	DropOffline                  // QoS 0 for a session without a connection
	DropTooLarge                 // larger than the client's Maximum Packet Size
	DropExpired                  // already expired
)

// Deliver hands the session a message for its client. For QoS 1 and 2 the
// message must be owned; a session that keeps it takes a reference of its
// own (message.Message.Ref) and releases it once done with it. A QoS 0
// message may be borrowed: it is written at once or dropped, never kept.
// now is read only for the message's expiry,
// so for a message without one the zero Time will do (the broker then
// reads no clock).
func (s *Session) Deliver(m *message.Message, d Delivery, now time.Time) Outcome {
	if m.Expired(now) {
		s.more().stats.DroppedExpired++
		return DropExpired
	}
	if d.QoS == packet.QoS0 {
		if s.conn == nil || s.conn.closed {
			s.more().stats.DroppedOffline++
			return DropOffline
		}
		if len(s.out) >= s.cfg.MaxOutput {
			s.more().stats.DroppedOutputFull++
			return DropOutput
		}
		tmp := delivery{msg: m, retain: d.Retain, subIDs: d.SubIDs}
		if !s.writePublish(&tmp, false, now) {
			return DropTooLarge
		}
		return Sent
	}
	size := m.Size()
	if !s.Room(size) {
		s.more().stats.DroppedQueueFull++
		return DropQueueFull
	}
	s.held += size
	dl := newDelivery()
	dl.msg, dl.size, dl.qos, dl.retain, dl.seq = m.Ref(), size, d.QoS, d.Retain, s.nextSeq
	s.nextSeq++
	if len(d.SubIDs) > 0 {
		dl.subIDs = append(dl.subIDs[:0], d.SubIDs...)
	}
	// The packet id is fixed now, so that a restart re-sends the message
	// with the id the client may already have seen [MQTT-4.4.0-1].
	dl.pid = s.allocPID()
	s.byPID.set(dl.pid, dl)
	s.journalDelivery(dl, true)
	if s.conn != nil && !s.conn.closed && s.queue.Len() == 0 && s.window() > 0 && len(s.out) < s.cfg.MaxOutput {
		// Nothing waits ahead of it: send now.
		if !s.send(dl, now) {
			return DropTooLarge
		}
		return Sent
	}
	s.queue.Push(dl)
	return Queued
}

// maxPIDs bounds the QoS 1/2 deliveries a session holds: each needs its own
// packet id.
const maxPIDs = 65535

// Room reports whether Deliver would accept a QoS 1/2 message of size
// bytes (message.Message.Size) rather than refuse it with DropQueueFull:
// the queue is below MaxQueued, a packet id is free and the held bytes
// stay within MaxQueuedBytes. It changes nothing, so the broker can ask
// before deciding to hold a message back instead of dropping it.
func (s *Session) Room(size int) bool {
	return s.queue.Len() < s.cfg.MaxQueued && s.byPID.len() < maxPIDs &&
		(s.cfg.MaxQueuedBytes <= 0 || s.held+size <= s.cfg.MaxQueuedBytes)
}

// QueueLow reports whether the queue is at or below half of MaxQueued: a
// subscriber that got there is draining again.
func (s *Session) QueueLow() bool { return s.queue.Len() <= s.cfg.MaxQueued/2 }

// window returns how many more QoS 1/2 messages may be in flight now.
func (s *Session) window() int {
	limit := int(s.cfg.MaxInflight)
	if s.conn != nil && int(s.conn.receiveMax) < limit {
		limit = int(s.conn.receiveMax) // [MQTT-3.3.4-9]
	}
	return limit - s.nInflight
}

// pump sends queued messages while the window and the output buffer allow.
func (s *Session) pump(now time.Time) {
	if s.conn == nil || s.conn.closed {
		return
	}
	for s.queue.Len() > 0 && s.window() > 0 && len(s.out) < s.cfg.MaxOutput {
		d := s.queue.Pop()
		if d.msg.Expired(now) {
			// Onward delivery had not started: the copy is deleted [MQTT-3.3.2-5].
			s.more().stats.DroppedExpired++
			s.forget(d)
			continue
		}
		s.send(d, now)
	}
}

// send writes a queued delivery and puts it in flight. A delivery too large
// for the client is dropped as if delivered [MQTT-3.1.2-25].
func (s *Session) send(d *delivery, now time.Time) bool {
	if !s.writePublish(d, d.dup, now) {
		s.forget(d)
		return false
	}
	d.state = stateSent
	s.link(d)
	return true
}

// forget ends a delivery that is not in flight. d is not used afterwards:
// it goes back to the pool.
func (s *Session) forget(d *delivery) {
	s.byPID.del(d.pid)
	s.dropMsg(d)
	s.journalDone(d)
	freeDelivery(d)
}

// dropMsg lets go of a delivery's message (released, or done).
func (s *Session) dropMsg(d *delivery) {
	if d.msg != nil {
		// The size kept, not recomputed: the message is cold by now (written
		// on the publisher's core), and reading it costs cache misses.
		s.held -= d.size
		d.msg.Release()
		d.msg = nil
	}
}

// deliveries recycles the deliveries of acknowledged messages, so that a
// steady stream of QoS 1/2 messages allocates none.
var deliveries = sync.Pool{New: func() any { return new(delivery) }}

func newDelivery() *delivery { return deliveries.Get().(*delivery) }

// freeDelivery returns a finished delivery to the pool. Its Subscription
// Identifiers are kept for reuse unless a journal record shares them (a
// batch may still be encoding it).
func freeDelivery(d *delivery) {
	ids := d.subIDs[:0]
	if d.journaled {
		ids = nil
	}
	*d = delivery{subIDs: ids}
	deliveries.Put(d)
}

// finish ends an in-flight delivery (acknowledged, or refused by the client).
func (s *Session) finish(d *delivery) {
	s.unlink(d)
	s.forget(d)
}

func (s *Session) allocPID() uint16 {
	for {
		s.nextPID++
		if s.nextPID == 0 {
			s.nextPID = 1
		}
		if s.byPID.get(s.nextPID) == nil {
			return s.nextPID // [MQTT-2.2.1-4]
		}
	}
}

func (s *Session) link(d *delivery) {
	s.nInflight++
	d.prev, d.next = s.tail, nil
	if s.tail != nil {
		s.tail.next = d
	} else {
		s.head = d
	}
	s.tail = d
}

func (s *Session) unlink(d *delivery) {
	s.nInflight--
	if d.prev != nil {
		d.prev.next = d.next
	} else {
		s.head = d.next
	}
	if d.next != nil {
		d.next.prev = d.prev
	} else {
		s.tail = d.prev
	}
	d.prev, d.next = nil, nil
}

// writePublish encodes d as a PUBLISH for the current connection. It
// returns false, writing nothing, when the packet exceeds the client's
// Maximum Packet Size [MQTT-3.1.2-24].
func (s *Session) writePublish(d *delivery, dup bool, now time.Time) bool {
	cs := s.conn
	m := d.msg
	x := s.more()
	p := x.scratch
	if p == nil {
		p = new(packet.Publish)
		x.scratch = p
	}
	user := p.Properties.User
	*p = packet.Publish{Dup: dup, QoS: d.qos, Retain: d.retain, Topic: m.Topic, PacketID: d.pid, Payload: m.Payload}
	v := s.version
	var alias uint16
	var newAlias bool
	if v == packet.V5 {
		p.Properties = m.Properties
		p.Properties.User = append(user[:0], m.Properties.User...)
		p.Properties.SubscriptionIDs = d.subIDs
		if rem, ok := m.RemainingExpiry(now); ok {
			p.Properties.MessageExpiry = rem // reduced by the time spent here [MQTT-3.3.2-6]
			p.Properties.Set(packet.PropMessageExpiry)
		}
		if cs.aliasMax > 0 {
			alias, newAlias = s.topicAlias(m.Topic)
			if alias != 0 {
				p.Properties.TopicAlias = alias
				p.Properties.Set(packet.PropTopicAlias)
				if !newAlias {
					p.Topic = nil
				}
			}
		}
	} else {
		p.Properties.User = user[:0]
	}
	if max := cs.maxPacketSize; max > 0 && p.Size(v) > int(max) {
		s.more().stats.DroppedTooLarge++
		return false
	}
	if newAlias {
		if cs.aliasOut == nil {
			cs.aliasOut = map[string]uint16{}
		}
		cs.aliasOut[string(m.Topic)] = alias
	}
	s.out, _ = p.Append(s.out, v)
	s.more().stats.Sent++
	return true
}

// topicAlias returns the alias for topic on this connection: an existing
// one, or a new one while aliases remain (never above the client's Topic
// Alias Maximum [MQTT-3.1.2-26]), or 0.
func (s *Session) topicAlias(topic []byte) (alias uint16, isNew bool) {
	cs := s.conn
	if a, ok := cs.aliasOut[string(topic)]; ok {
		return a, false
	}
	if n := len(cs.aliasOut); n < int(cs.aliasMax) {
		return uint16(n + 1), true
	}
	return 0, false
}

// writeAck writes a PUBACK, PUBREC, PUBREL or PUBCOMP.
func (s *Session) writeAck(t packet.Type, pid uint16, code packet.ReasonCode) {
	if s.conn == nil || s.conn.closed {
		return
	}
	x := s.more()
	a := x.ack
	if a == nil {
		a = new(packet.Ack)
		x.ack = a
	}
	*a = packet.Ack{PacketType: t, PacketID: pid, ReasonCode: code, Properties: a.Properties}
	a.Properties.Reset()
	s.out, _ = a.Append(s.out, s.version)
}

// SendPacket writes a packet the broker makes on the session's behalf (an
// AUTH during re-authentication), after what is already written.
func (s *Session) SendPacket(p packet.Packet) {
	if s.conn == nil || s.conn.closed {
		return
	}
	s.out, _ = p.Append(s.out, s.version)
}
