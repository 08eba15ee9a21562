package session

import (
	"time"
	"unicode/utf8"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/store"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// Handle processes one packet from the client. p and the bytes it holds
// must stay valid until the Result is consumed. For a PUBLISH, now is read
// only for its Message Expiry Interval (the zero Time will do without one).
//
// The Result is the connection's own, valid until the next Handle; see
// HandleInto for one the caller provides.
func (s *Session) Handle(p packet.Packet, now time.Time) *Result {
	if s.conn == nil {
		return &Result{Close: true}
	}
	if s.conn.result == nil {
		s.conn.result = new(Result)
	}
	return s.HandleInto(s.conn.result, p, now)
}

// HandleInto is Handle with a Result of the caller's, which it empties
// (keeping the memory of its slices) and returns: a runtime that lends one
// to a connection only while it has packets to handle spares the memory
// of a Result for every idle connection. r must not be shared with another
// connection's reader.
func (s *Session) HandleInto(r *Result, p packet.Packet, now time.Time) *Result {
	if s.conn == nil {
		return &Result{Close: true}
	}
	reset(r)
	if s.conn.closed {
		// The connection is being closed: nothing more from it counts
		// [MQTT-3.1.4-5] [MQTT-4.13.2-1].
		r.Close = true
		return r
	}
	switch p := p.(type) {
	case *packet.Publish:
		return s.handlePublish(r, p, now)
	case *packet.Ack:
		return s.handleAck(r, p, now)
	case *packet.Subscribe:
		return s.handleSubscribe(r, p)
	case *packet.Unsubscribe:
		r.Unsubscribe = append(r.Unsubscribe, p.Filters...)
		r.UnsubscribePID = p.PacketID
		return r
	case *packet.Pingreq:
		s.out = append(s.out, byte(packet.PINGRESP)<<4, 0)
		return r
	case *packet.Disconnect:
		return s.handleDisconnect(r, p)
	case *packet.Connect:
		// A second CONNECT is a protocol violation [MQTT-3.1.0-2].
		return s.fail(r, packet.ProtocolError)
	case *packet.Auth:
		// No authentication method was negotiated on this connection, so an
		// AUTH packet is a protocol error (enhanced authentication hooks in
		// through the broker when configured).
		return s.fail(r, packet.ProtocolError)
	default:
		// CONNACK, SUBACK, UNSUBACK, PINGRESP: only a server sends these.
		return s.fail(r, packet.ProtocolError)
	}
}

func (s *Session) handlePublish(r *Result, p *packet.Publish, now time.Time) *Result {
	cs := s.conn
	v5 := s.version == packet.V5
	if p.QoS > s.cfg.MaxQoS {
		return s.fail(r, packet.QoSNotSupported)
	}
	if p.Retain && !s.cfg.RetainAvailable {
		return s.fail(r, packet.RetainNotSupported)
	}
	tp := p.Topic
	if v5 {
		pr := &p.Properties
		if len(pr.SubscriptionIDs) > 0 {
			return s.fail(r, packet.ProtocolError) // [MQTT-3.3.4-6]
		}
		if pr.Has(packet.PropTopicAlias) {
			a := pr.TopicAlias
			if a == 0 || a > s.cfg.TopicAliasMaximum {
				return s.fail(r, packet.TopicAliasInvalid)
			}
			if len(tp) > 0 {
				if err := topic.ValidName(tp); err != nil {
					return s.fail(r, packet.TopicNameInvalid)
				}
				if cs.aliasIn == nil {
					cs.aliasIn = map[uint16][]byte{}
				}
				if string(cs.aliasIn[a]) != string(tp) {
					cs.aliasIn[a] = append([]byte(nil), tp...) // never mutated: earlier messages may hold it
				}
			} else {
				t, ok := cs.aliasIn[a]
				if !ok {
					return s.fail(r, packet.ProtocolError) // alias never mapped [MQTT-3.3.2-7]
				}
				tp = t
			}
		}
		if pr.Has(packet.PropResponseTopic) && topic.ValidName(pr.ResponseTopic) != nil {
			return s.fail(r, packet.ProtocolError) // [MQTT-3.3.2-14]
		}
	}
	if err := topic.ValidName(tp); err != nil {
		return s.fail(r, packet.TopicNameInvalid)
	}
	if p.QoS > 0 {
		if _, dup := s.qos2In[p.PacketID]; dup && p.QoS == packet.QoS2 {
			// A re-sent QoS 2 PUBLISH before PUBREL: acknowledge again, do
			// not deliver twice [MQTT-4.3.3-9].
			s.writeAck(packet.PUBREC, p.PacketID, packet.Success)
			return r
		}
		if v5 && cs.inPending+len(s.qos2In)-cs.inAccepted >= int(s.cfg.ReceiveMaximum) {
			return s.fail(r, packet.ReceiveMaximumExceeded) // [MQTT-3.3.4-7]
		}
		cs.inPending++
	}
	if v5 && p.Properties.Has(packet.PropPayloadFormat) && p.Properties.PayloadFormat == 1 && !utf8.Valid(p.Payload) {
		if p.QoS == 0 {
			return s.fail(r, packet.PayloadFormatInvalid)
		}
		s.PublishDone(p.PacketID, p.QoS, packet.PayloadFormatInvalid)
		return r
	}
	m := cs.msg
	if m == nil {
		m = new(message.Message)
		cs.msg = m
	}
	m.FromPublish(p, now)
	m.Topic = tp
	m.Publisher = s.ID
	m.PublisherKey = hashString(s.ClientID)
	r.Route, r.RoutePID = m, p.PacketID
	return r
}

// AcceptInbound records, in memory, the packet id of a QoS 2 PUBLISH that
// the broker is about to route: from now on a re-sent copy (after a
// reconnection) is acknowledged again, not routed again [MQTT-4.3.3-9].
// Recording it only when the PUBREC was sent (PublishDone) left a gap: a
// connection that ended while the PUBREC waited for the store never
// recorded it, and the publisher's resend was delivered a second time
// (found by the simulator). The id becomes durable with JournalInbound,
// which the broker calls once the message is wholly placed — in the batch
// of its deliveries, or when a delivery parked on a slow subscriber has
// entered its queue (PublishDone) — so that after a restart a message that
// was not wholly placed is routed again rather than deduplicated and lost
// for the subscriber still waiting. A refusal (PublishDone with an error
// code) forgets the id.
func (s *Session) AcceptInbound(pid uint16) {
	if _, ok := s.qos2In[pid]; ok {
		return
	}
	if s.qos2In == nil {
		s.qos2In = map[uint16]bool{}
	}
	s.qos2In[pid] = false
	if s.conn != nil {
		s.conn.inAccepted++
	}
}

// JournalInbound makes an accepted QoS 2 packet id durable (a persistent
// session on a durable broker); output written from now on waits for it.
func (s *Session) JournalInbound(pid uint16) {
	if journaled, ok := s.qos2In[pid]; !ok || journaled || !s.durable() {
		return
	}
	s.qos2In[pid] = true
	s.journal(store.Op{Kind: store.PutInbound, PID: pid}, true)
}

// PublishDone completes a PUBLISH the broker has routed (and, for a
// persistent destination, stored): it acknowledges a QoS 1/2 message with
// code (Success, NoMatchingSubscribers, or a refusal such as NotAuthorized
// or QuotaExceeded).
func (s *Session) PublishDone(pid uint16, qos packet.QoS, code packet.ReasonCode) {
	if qos == 0 {
		return
	}
	journaled, accepted := s.qos2In[pid]
	accepted = accepted && qos == packet.QoS2
	if s.conn != nil && s.conn.inPending > 0 {
		s.conn.inPending--
		if accepted && s.conn.inAccepted > 0 {
			s.conn.inAccepted--
		}
	}
	if accepted && code.IsError() {
		// Refused after all (the store failed): the message was not
		// taken, so a re-sent copy must be routed.
		delete(s.qos2In, pid)
		if journaled {
			s.journal(store.Op{Kind: store.DeleteInbound, PID: pid}, false)
		}
		accepted = false
	}
	if s.conn == nil || s.conn.closed {
		return
	}
	if s.version != packet.V5 {
		// 3.1.1 acknowledgements carry no reason: a refused message is
		// acknowledged positively or the connection closed [MQTT-3.3.5-2];
		// the broker chooses closing by calling Kick.
		code = packet.Success
	}
	if qos == packet.QoS1 {
		s.writeAck(packet.PUBACK, pid, code)
		return
	}
	if !code.IsError() {
		if !accepted {
			if s.qos2In == nil {
				s.qos2In = map[uint16]bool{}
			}
			s.qos2In[pid] = false // not recorded before routing
		}
		// The PUBREC waits until the id is durable.
		s.JournalInbound(pid)
	}
	s.writeAck(packet.PUBREC, pid, code)
}

func (s *Session) handleAck(r *Result, a *packet.Ack, now time.Time) *Result {
	switch a.PacketType {
	case packet.PUBREL:
		code := packet.Success
		if _, ok := s.qos2In[a.PacketID]; ok {
			delete(s.qos2In, a.PacketID)
			if s.durable() {
				// Gating: were the PUBCOMP to go before this is durable, a
				// restart would take the client's next message with this id
				// for a duplicate.
				s.journal(store.Op{Kind: store.DeleteInbound, PID: a.PacketID}, true)
			}
		} else if s.version == packet.V5 {
			code = packet.PacketIdentifierNotFound
		}
		s.writeAck(packet.PUBCOMP, a.PacketID, code)
		return r
	case packet.PUBACK:
		if d := s.byPID.get(a.PacketID); d != nil && d.qos == packet.QoS1 && d.state == stateSent {
			s.finish(d)
		}
	case packet.PUBREC:
		d := s.byPID.get(a.PacketID)
		switch {
		case d != nil && d.qos == packet.QoS2 && d.state == stateSent:
			if a.ReasonCode.IsError() {
				// The client refuses the message: it is discarded, not
				// redirected to anyone else [MQTT-4.8.2-6].
				s.finish(d)
			} else {
				d.state = stateReleased
				s.dropMsg(d) // the message itself is no longer needed
				s.journalDelivery(d, false)
				s.writeAck(packet.PUBREL, a.PacketID, packet.Success)
			}
		case d != nil && d.state == stateReleased:
			s.writeAck(packet.PUBREL, a.PacketID, packet.Success)
		default:
			code := packet.Success
			if s.version == packet.V5 {
				code = packet.PacketIdentifierNotFound
			}
			s.writeAck(packet.PUBREL, a.PacketID, code)
		}
	case packet.PUBCOMP:
		if d := s.byPID.get(a.PacketID); d != nil && d.state == stateReleased {
			s.finish(d)
		}
	}
	s.pump(now)
	return r
}

func (s *Session) handleSubscribe(r *Result, p *packet.Subscribe) *Result {
	v5 := s.version == packet.V5
	var subID uint32
	if len(p.Properties.SubscriptionIDs) > 0 {
		if !s.cfg.SubscriptionIdentifiers {
			return s.fail(r, packet.SubscriptionIdentifiersNotSupported)
		}
		subID = p.Properties.SubscriptionIDs[0]
	}
	refuse := func(code5 packet.ReasonCode) packet.ReasonCode {
		if v5 {
			return code5
		}
		return packet.SubackFailure
	}
	for i := range p.Subscriptions {
		sub := &p.Subscriptions[i]
		req := SubRequest{Filter: sub.Filter, Options: topic.Options{
			QoS: byte(min(sub.QoS, s.cfg.MaxQoS)), NoLocal: sub.NoLocal,
			RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling, ID: subID}}
		req.Reason = packet.ReasonCode(req.Options.QoS)
		_, _, req.Shared = topic.ParseShared(sub.Filter)
		switch {
		case topic.ValidFilter(sub.Filter) != nil:
			req.Reason = refuse(packet.TopicFilterInvalid)
		case req.Shared && !s.cfg.SharedSubscriptions:
			req.Reason = refuse(packet.SharedSubscriptionsNotSupported)
		case req.Shared && sub.NoLocal:
			return s.fail(r, packet.ProtocolError) // [MQTT-3.8.3-4]
		case !s.cfg.WildcardSubscriptions && topic.IsWildcard(sub.Filter):
			req.Reason = refuse(packet.WildcardSubscriptionsNotSupported)
		}
		r.Subscribe = append(r.Subscribe, req)
	}
	r.SubscribePID = p.PacketID
	return r
}

// SubscribeDone records the subscriptions the broker added to the routes
// and sends the SUBACK, one code per filter in order [MQTT-3.8.4-6].
func (s *Session) SubscribeDone(pid uint16, reqs []SubRequest) {
	ack := packet.Suback{PacketID: pid}
	for i := range reqs {
		q := &reqs[i]
		if !q.Reason.IsError() {
			f := string(q.Filter)
			s.subscriptions().Set(f, q.Options)
			if s.durable() {
				s.journal(store.Op{Kind: store.PutSub, Filter: f, Options: q.Options}, true)
			}
		}
		ack.ReasonCodes = append(ack.ReasonCodes, q.Reason)
	}
	if s.conn != nil && !s.conn.closed {
		s.out, _ = ack.Append(s.out, s.version)
	}
}

// HasSubscription reports whether the session holds filter.
func (s *Session) HasSubscription(filter []byte) bool {
	if s.subs == nil {
		return false
	}
	_, ok := s.subs.Get(string(filter))
	return ok
}

// UnsubscribeDone forgets the filters the broker removed from the routes and
// sends the UNSUBACK.
func (s *Session) UnsubscribeDone(pid uint16, filters [][]byte) {
	ack := packet.Unsuback{PacketID: pid}
	for _, f := range filters {
		code := packet.Success
		if s.subs == nil {
			code = packet.NoSubscriptionExisted
		} else if _, ok := s.subs.Delete(string(f)); !ok {
			code = packet.NoSubscriptionExisted
		} else if s.durable() {
			s.journal(store.Op{Kind: store.DeleteSub, Filter: string(f)}, true)
		}
		ack.ReasonCodes = append(ack.ReasonCodes, code)
	}
	if s.conn != nil && !s.conn.closed {
		s.out, _ = ack.Append(s.out, s.version)
	}
}

func (s *Session) handleDisconnect(r *Result, p *packet.Disconnect) *Result {
	cs := s.conn
	if s.version == packet.V5 && p.Properties.Has(packet.PropSessionExpiry) {
		if cs.sessionExp0 && p.Properties.SessionExpiry != 0 {
			// A session that was to end with the connection cannot be
			// revived by DISCONNECT [MQTT-3.14.2-2].
			return s.fail(r, packet.ProtocolError)
		}
		s.expiry = min(p.Properties.SessionExpiry, s.cfg.MaxSessionExpiry)
		s.journalRecord(time.Time{}, false)
	}
	if p.ReasonCode != packet.DisconnectWithWill {
		s.will = nil // [MQTT-3.14.4-3] [v3.1.1 MQTT-3.1.2-10]
	}
	cs.disconnected, cs.closed = true, true
	r.Close, r.Reason = true, p.ReasonCode
	return r
}

// hashString is FNV-1a: a stable key for sticky shared-subscription choice.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
