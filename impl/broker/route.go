package broker

import (
	"slices"
	"time"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/session"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// publish routes a message received from this connection's client and
// returns the reason code for its acknowledgement.
func (c *Conn) publish(m *message.Message, now time.Time) packet.ReasonCode {
	b := c.b
	b.stats.MessagesIn.Add(1)
	b.stats.BytesIn.Add(uint64(len(m.Payload)))
	if len(m.Topic) >= 4 && string(m.Topic[:4]) == "$SYS" {
		// $SYS belongs to the broker: clients may read it, not write it. A
		// 3.1.1 client gets a positive acknowledgement [MQTT-3.3.5-2].
		b.stats.Dropped.Add(1)
		return packet.NotAuthorized
	}
	if m.Retain {
		// The retained copy must be owned; routing reuses it so the bytes are
		// copied once [MQTT-3.3.1-5].
		m = m.Own()
		b.retained.Set(c.t.name, m)
	}
	if b.route(c.t, m, &c.rs, now, c) == 0 {
		b.stats.NoSubscribers.Add(1)
		return packet.NoMatchingSubscribers
	}
	return packet.Success
}

// route delivers m to every session of t with a matching subscription and
// returns how many sessions it matched. self is the publishing connection
// (nil for the broker's own messages): its writer is woken by its reader.
func (b *Broker) route(t *tenant, m *message.Message, rs *routeScratch, now time.Time, self *Conn) int {
	rs.matches.Reset()
	t.routesMu.RLock()
	t.routes.Match(m.Topic, &rs.matches)
	for _, g := range rs.matches.Groups {
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
				owned = m.Own()
			}
			msg = owned
		}
		e.mu.Lock()
		out := session.DropOffline
		if !e.dead {
			out = e.s.Deliver(msg, session.Delivery{QoS: packet.QoS(qos), Retain: retain, SubIDs: ids}, now)
		}
		conn := e.conn
		e.mu.Unlock()
		switch out {
		case session.Sent:
			b.stats.MessagesOut.Add(1)
			if conn != nil && conn != self {
				conn.wakeUp()
			}
		case session.Queued:
			b.stats.MessagesOut.Add(1)
		default:
			b.stats.Dropped.Add(1)
		}
	}
	return matched
}

// subscribe adds granted subscriptions to the routes, recording whether
// each existed (for Retain Handling 1).
func (c *Conn) subscribe(e *entry, reqs []session.SubRequest) {
	c.t.routesMu.Lock()
	for i := range reqs {
		r := &reqs[i]
		if r.Reason.IsError() {
			continue
		}
		r.Existed = c.t.routes.Subscribe(r.Filter, topic.Subscription{Subscriber: e.id, Options: r.Options})
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
		c.t.routes.Unsubscribe(f, e.id)
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
		b.retained.Match(c.t.name, r.Filter, now, func(m *message.Message) bool {
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
