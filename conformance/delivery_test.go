package conformance

// Delivery: the QoS 0/1/2 flows in both directions, packet identifiers,
// exactly-once for QoS 2, redelivery when a persistent session reconnects,
// message receipt by every matching session, ordering.

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// psSession returns the options of a persistent session for version v
// (Clean Session 0; in 5.0 Clean Start 0 with a 300 s expiry) that is
// discarded when the test ends.
func psSession(t testing.TB, v packet.Version) ConnectOpts {
	o := ConnectOpts{ClientID: uniqueID(t), Persistent: true}
	if v == packet.V5 {
		o.Properties.SessionExpiry = 300
		o.Properties.Set(packet.PropSessionExpiry)
	}
	CleanSession(t, o.ClientID)
	return o
}

// psReconnect connects again with o, requiring the session to be present.
func psReconnect(t testing.TB, v packet.Version, o ConnectOpts) *Raw {
	t.Helper()
	r := DialRaw(t, v)
	if ack := r.Connect(o); !ack.SessionPresent {
		t.Fatalf("reconnecting with a persistent session: %s, want session present", Describe(ack))
	}
	return r
}

// TestQoSFlowsToSubscriber follows the broker as the sender of QoS 0, 1 and
// 2 messages to a subscriber that acknowledges late.
func TestQoSFlowsToSubscriber(t *testing.T) {
	t.Parallel()
	for _, v := range append([]packet.Version{packet.V31}, pubsubVersions...) {
		t.Run(psV(v), func(t *testing.T) {
			t.Parallel()
			Require(t, features.MaximumQoS == packet.QoS2, "QoS 2")
			topic := Topic(t)
			subs := make([]*Raw, 3)
			for q := range subs {
				subs[q] = psSub(t, v, fmt.Sprintf("%s/%d", topic, q), packet.QoS(q))
			}
			pub := psConn(t, v, ConnectOpts{})
			msgs := make([]*packet.Publish, 3)
			for q := range subs {
				psPub(t, pub, fmt.Sprintf("%s/%d", topic, q), packet.QoS(q), false, "m")
				m := subs[q].ExpectPublish()
				msgs[q] = m
				// [v5 MQTT-4.3.1-1] [v3.1.1 MQTT-4.3.1-1] QoS 0 with DUP 0; [v5 MQTT-4.3.2-2] [v3.1.1 MQTT-4.3.2-1]
				// QoS 1 and [v5 MQTT-4.3.3-2] [v3.1.1 MQTT-4.3.3-1] QoS 2 with DUP 0 and
				// [v5 MQTT-4.3.2-1] [v5 MQTT-4.3.3-1] [v5 MQTT-2.2.1-4] [v3.1.1 MQTT-2.3.1-4] a packet identifier.
				if m.QoS != packet.QoS(q) || m.Dup || (q > 0) != (m.PacketID != 0) {
					t.Fatalf("QoS %d delivery: got %s", q, Describe(m))
				}
			}
			if v == packet.V5 {
				// [v5 MQTT-4.4.0-1] no retransmission on the same connection, acknowledged or not.
				psQuiet(t, subs...)
			}
			subs[1].Send(&packet.Ack{PacketType: packet.PUBACK, PacketID: msgs[1].PacketID})
			subs[2].Send(&packet.Ack{PacketType: packet.PUBREC, PacketID: msgs[2].PacketID})
			rel := subs[2].ExpectNext(packet.PUBREL).(*packet.Ack)
			// [v5 MQTT-4.3.3-4] [v5 MQTT-2.2.1-5] [v3.1.1 MQTT-4.3.3-1] [v3.1.1 MQTT-2.3.1-6] PUBREL with the
			// PUBLISH's identifier, [v5 MQTT-3.6.2-1] and a PUBREL reason code (Success: the id is known).
			if rel.PacketID != msgs[2].PacketID || rel.ReasonCode != packet.Success {
				t.Fatalf("after PUBREC id %d: got %s", msgs[2].PacketID, Describe(rel))
			}
			// [v5 MQTT-4.3.3-6] [v3.1.1 MQTT-4.3.3-1] no PUBLISH again once PUBREL is sent; [v5 MQTT-4.4.0-1] nor
			// a PUBREL again on this connection.
			psQuiet(t, subs...)
			subs[2].Send(&packet.Ack{PacketType: packet.PUBCOMP, PacketID: msgs[2].PacketID})
			psQuiet(t, subs...)
		})
	}
}

// TestServerPacketIDs has the broker send many QoS 1 and 2 messages to a
// subscriber that does not acknowledge them: each needs an identifier of its
// own.
func TestServerPacketIDs(t *testing.T) {
	t.Parallel()
	for _, v := range pubsubVersions {
		t.Run(psV(v), func(t *testing.T) {
			t.Parallel()
			topic := Topic(t)
			sub := psSub(t, v, topic, packet.QoS2)
			pub := psConn(t, v, ConnectOpts{})
			const n = 16 // below every common in-flight limit
			for i := range n {
				psPub(t, pub, topic, psGranted(packet.QoS(1+i%2)), false, fmt.Sprint(i))
			}
			seen := map[uint16]string{}
			var got []*packet.Publish
			for range n {
				m := sub.ExpectPublish()
				got = append(got, m)
				// [v5 MQTT-2.2.1-4] [v5 MQTT-4.3.2-1] [v5 MQTT-4.3.3-1] [v3.1.1 MQTT-2.3.1-4] [v3.1.1 MQTT-4.3.2-1]
				// [v3.1.1 MQTT-4.3.3-1] a non-zero identifier not in use by another unacknowledged message.
				if m.PacketID == 0 || seen[m.PacketID] != "" {
					t.Fatalf("got %s while %q is in flight with that identifier", Describe(m), seen[m.PacketID])
				}
				seen[m.PacketID] = string(m.Payload)
			}
			for _, m := range got {
				sub.Ack(m)
			}
		})
	}
}

// TestPacketIDReuse reuses a packet identifier once its flow is complete,
// and repeats a QoS 2 PUBLISH before releasing it.
func TestPacketIDReuse(t *testing.T) {
	t.Parallel()
	for _, v := range pubsubVersions {
		t.Run(psV(v)+"/qos1", func(t *testing.T) {
			t.Parallel()
			topic := Topic(t)
			sub := psSub(t, v, topic, packet.QoS1)
			pub := psConn(t, v, ConnectOpts{})
			for i, dup := range []bool{false, true} {
				// The same identifier again, even flagged as a duplicate, after its PUBACK.
				pub.Send(&packet.Publish{Dup: dup, QoS: packet.QoS1, PacketID: 42, Topic: []byte(topic), Payload: []byte(fmt.Sprint(i))})
				if ack := pub.ExpectNext(packet.PUBACK).(*packet.Ack); ack.PacketID != 42 {
					t.Fatalf("%s for PUBLISH id 42", Describe(ack))
				}
			}
			got := psGather(t, sub)
			// [v5 MQTT-4.3.2-5] [v3.1.1 MQTT-4.3.2-2] after PUBACK the identifier starts a new message.
			if diff := cmp.Diff([]string{"0", "1"}, psPayloads(got)); diff != "" {
				t.Fatalf("messages (-want +got):\n%s", diff)
			}
		})
		t.Run(psV(v)+"/qos2", func(t *testing.T) {
			t.Parallel()
			Require(t, features.MaximumQoS == packet.QoS2, "QoS 2")
			topic := Topic(t)
			sub := psSub(t, v, topic, packet.QoS2)
			pub := psConn(t, v, ConnectOpts{})
			p := &packet.Publish{QoS: packet.QoS2, PacketID: 42, Topic: []byte(topic), Payload: []byte("0")}
			pub.Send(p)
			pub.ExpectNext(packet.PUBREC)
			// The client repeats the PUBLISH before PUBREL, as after a lost PUBREC.
			p.Dup = true
			pub.Send(p)
			rec := pub.ExpectNext(packet.PUBREC).(*packet.Ack)
			// [v5 MQTT-4.3.3-10] [v3.1.1 MQTT-4.3.3-2] the repeat is acknowledged again with PUBREC ...
			if rec.PacketID != 42 || rec.ReasonCode.IsError() {
				t.Fatalf("repeated PUBLISH id 42 answered with %s", Describe(rec))
			}
			pub.Send(&packet.Ack{PacketType: packet.PUBREL, PacketID: 42})
			pub.ExpectNext(packet.PUBCOMP)
			// After PUBCOMP, id 42 starts a new message.
			psPublishQoS2(t, pub, &packet.Publish{QoS: packet.QoS2, PacketID: 42, Topic: []byte(topic), Payload: []byte("1")})
			got := psGather(t, sub)
			// [v5 MQTT-4.3.3-10] [v3.1.1 MQTT-4.3.3-2] ... without a duplicate onwards, and
			// [v5 MQTT-4.3.3-12] [v3.1.1 MQTT-4.3.3-2] a new message after PUBCOMP.
			if diff := cmp.Diff([]string{"0", "1"}, psPayloads(got)); diff != "" {
				t.Fatalf("messages (-want +got):\n%s", diff)
			}
		})
	}
}

// psPublishQoS2 runs a whole QoS 2 flow for p, checking the identifiers.
func psPublishQoS2(t testing.TB, r *Raw, p *packet.Publish) {
	t.Helper()
	r.Send(p)
	rec := r.ExpectNext(packet.PUBREC).(*packet.Ack)
	if rec.PacketID != p.PacketID || rec.ReasonCode.IsError() {
		t.Fatalf("PUBLISH id %d answered with %s", p.PacketID, Describe(rec))
	}
	r.Send(&packet.Ack{PacketType: packet.PUBREL, PacketID: p.PacketID})
	if comp := r.ExpectNext(packet.PUBCOMP).(*packet.Ack); comp.PacketID != p.PacketID {
		t.Fatalf("PUBREL id %d answered with %s", p.PacketID, Describe(comp))
	}
}

// TestQoS2InboundAcrossReconnect receives PUBREC for a QoS 2 PUBLISH, drops
// the connection, and finishes the flow on a new connection of the same
// session, repeating the PUBLISH first as a client that lost the PUBREC
// would.
func TestQoS2InboundAcrossReconnect(t *testing.T) {
	t.Parallel()
	Require(t, features.MaximumQoS == packet.QoS2, "QoS 2")
	for _, v := range pubsubVersions {
		t.Run(psV(v), func(t *testing.T) {
			t.Parallel()
			topic := Topic(t)
			sub := psSub(t, v, topic, packet.QoS2)
			o := psSession(t, v)
			pub := psConn(t, v, o)
			p := &packet.Publish{QoS: packet.QoS2, PacketID: 7, Topic: []byte(topic), Payload: []byte("once")}
			pub.Send(p)
			pub.ExpectNext(packet.PUBREC)
			pub.Close()

			again := psReconnect(t, v, o)
			p.Dup = true
			again.Send(p)
			// [v5 MQTT-4.3.3-10] [v3.1.1 MQTT-4.3.3-2] the session still knows id 7: PUBREC again,
			if rec := again.ExpectNext(packet.PUBREC).(*packet.Ack); rec.PacketID != 7 || rec.ReasonCode.IsError() {
				t.Fatalf("repeated PUBLISH id 7 answered with %s", Describe(rec))
			}
			again.Send(&packet.Ack{PacketType: packet.PUBREL, PacketID: 7})
			// [v5 MQTT-4.3.3-11] [v3.1.1 MQTT-4.3.3-2] PUBCOMP with the PUBREL's identifier,
			if comp := again.ExpectNext(packet.PUBCOMP).(*packet.Ack); comp.PacketID != 7 || comp.ReasonCode != packet.Success {
				t.Fatalf("PUBREL id 7 answered with %s", Describe(comp))
			}
			// and the message is delivered once.
			if got := psGather(t, sub); len(got) != 1 {
				t.Fatalf("subscriber got %s, want the message once", psDescribeAll(got))
			}
		})
	}
}

// TestRedeliveryOnReconnect leaves QoS 1 and QoS 2 messages unacknowledged
// at a subscriber with a persistent session and reconnects: the broker
// sends them again, with DUP set and their original identifiers, or the
// PUBRELs when PUBREC had been sent.
func TestRedeliveryOnReconnect(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		qos    packet.QoS
		pubrec bool // the subscriber sent PUBREC before leaving
	}{
		{"qos1", packet.QoS1, false},
		{"qos2-publish", packet.QoS2, false},
		{"qos2-pubrel", packet.QoS2, true},
	}
	for _, v := range pubsubVersions {
		for _, c := range cases {
			t.Run(psV(v)+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				if c.qos > features.MaximumQoS {
					t.Skipf("broker's Maximum QoS is %d", features.MaximumQoS)
				}
				topic := Topic(t)
				o := psSession(t, v)
				sub := psConn(t, v, o)
				psGrant(t, sub, packet.Subscription{Filter: []byte(topic), QoS: c.qos})
				pub := psConn(t, v, ConnectOpts{})
				var ids []uint16
				for i := range 3 {
					psPub(t, pub, topic, c.qos, false, fmt.Sprint(i))
					m := sub.ExpectPublish()
					ids = append(ids, m.PacketID)
					if c.pubrec {
						sub.Send(&packet.Ack{PacketType: packet.PUBREC, PacketID: m.PacketID})
						sub.Expect(packet.PUBREL)
					}
				}
				sub.Close() // no acknowledgement (or no PUBCOMP) for any of them

				again := psReconnect(t, v, o)
				var got []uint16
				if c.pubrec {
					for range ids {
						// [v5 MQTT-4.3.3-6] [v3.1.1 MQTT-4.3.3-1] no PUBLISH again after PUBREL, but
						// [v5 MQTT-4.3.3-5] [v3.1.1 MQTT-4.3.3-1] the PUBREL, still unacknowledged, is resent
						// [v5 MQTT-4.4.0-1] [v3.1.1 MQTT-4.4.0-1] with its original identifier.
						rel := again.ExpectNext(packet.PUBREL).(*packet.Ack)
						got = append(got, rel.PacketID)
						again.Send(&packet.Ack{PacketType: packet.PUBCOMP, PacketID: rel.PacketID})
					}
				} else {
					for i := range ids {
						m := again.ExpectNext(packet.PUBLISH).(*packet.Publish)
						// [v5 MQTT-4.3.2-3] [v5 MQTT-4.3.3-3] [v3.1.1 MQTT-4.3.2-1] [v3.1.1 MQTT-4.3.3-1] unacknowledged,
						// so [v5 MQTT-4.4.0-1] [v3.1.1 MQTT-4.4.0-1] [v3.1.1 MQTT-2.3.1-4] resent with its identifier and
						// [v5 MQTT-3.3.1-1] [v3.1.1 MQTT-3.3.1-1] DUP 1.
						if !m.Dup || m.QoS != c.qos || string(m.Payload) != fmt.Sprint(i) {
							t.Fatalf("resend %d: got %s, want dup=true qos=%d payload %d", i, Describe(m), c.qos, i)
						}
						got = append(got, m.PacketID)
						again.Ack(m)
					}
				}
				// [v5 MQTT-4.6.0-5] [v3.1.1 MQTT-4.6.0-6] in their original order.
				if diff := cmp.Diff(ids, got); diff != "" {
					t.Fatalf("identifiers resent (-original +resent):\n%s", diff)
				}
				again.ExpectNothing()
			})
		}
	}
}

// TestNoRedeliveryAfterErrorAck answers messages with an error reason code
// and reconnects: they count as acknowledged and are not sent again.
func TestNoRedeliveryAfterErrorAck(t *testing.T) {
	t.Parallel()
	for _, q := range []packet.QoS{packet.QoS1, packet.QoS2} {
		t.Run(fmt.Sprintf("qos%d", q), func(t *testing.T) {
			t.Parallel()
			if q > features.MaximumQoS {
				t.Skipf("broker's Maximum QoS is %d", features.MaximumQoS)
			}
			topic := Topic(t)
			o := psSession(t, packet.V5)
			sub := psConn(t, packet.V5, o)
			psGrant(t, sub, packet.Subscription{Filter: []byte(topic), QoS: q})
			pub := psConn(t, packet.V5, ConnectOpts{})
			psPub(t, pub, topic, q, false, "refused")
			m := sub.ExpectPublish()
			typ := packet.PUBACK
			if q == packet.QoS2 {
				typ = packet.PUBREC
			}
			sub.Send(&packet.Ack{PacketType: typ, PacketID: m.PacketID, ReasonCode: packet.ImplementationSpecificError})
			sub.ExpectNothing() // no PUBREL after a failed PUBREC either
			sub.Close()
			again := psReconnect(t, packet.V5, o)
			// [v5 MQTT-4.4.0-2] a PUBLISH answered with 0x80 or above is acknowledged: no resend.
			again.ExpectNothing()
		})
	}
}

// TestPubrecErrorThenNewMessage reuses the identifier of a QoS 2 PUBLISH
// the broker refused with PUBREC: the next PUBLISH with it is a new
// message. The refusal comes from publishing where the broker does not
// allow clients to (a $SYS topic); the test skips if the broker accepts.
func TestPubrecErrorThenNewMessage(t *testing.T) {
	t.Parallel()
	Require(t, features.MaximumQoS == packet.QoS2, "QoS 2")
	topic := Topic(t)
	sub := psSub(t, packet.V5, topic, packet.QoS2)
	pub := psConn(t, packet.V5, ConnectOpts{})
	pub.Send(&packet.Publish{QoS: packet.QoS2, PacketID: 5, Topic: []byte("$SYS/" + topic), Payload: []byte("refused")})
	if rec := pub.ExpectNext(packet.PUBREC).(*packet.Ack); !rec.ReasonCode.IsError() {
		t.Skipf("broker accepted a client PUBLISH to $SYS (%s): no refusal to test with", Describe(rec))
	}
	// [v5 MQTT-4.3.3-9] id 5 is free again: a new message, not a repeat of the refused one.
	psPublishQoS2(t, pub, &packet.Publish{QoS: packet.QoS2, PacketID: 5, Topic: []byte(topic), Payload: []byte("new")})
	if got := psGather(t, sub); len(got) != 1 || string(got[0].Payload) != "new" {
		t.Fatalf("subscriber got %s, want the new message", psDescribeAll(got))
	}
}

// TestQoS2NoExpiryOnceSent lets the Message Expiry Interval of QoS 2
// messages run out in the middle of their flows, in both directions: the
// flows go on.
func TestQoS2NoExpiryOnceSent(t *testing.T) {
	t.Parallel()
	Require(t, features.MaximumQoS == packet.QoS2, "QoS 2")
	topic := Topic(t)
	withExpiry := func(payload string, id uint16) *packet.Publish {
		p := &packet.Publish{QoS: packet.QoS2, PacketID: id, Topic: []byte(topic), Payload: []byte(payload)}
		p.Properties.MessageExpiry = 1
		p.Properties.Set(packet.PropMessageExpiry)
		return p
	}
	// Outgoing: the broker has sent the PUBLISH; the subscriber leaves without PUBREC.
	o := psSession(t, packet.V5)
	sub := psConn(t, packet.V5, o)
	psGrant(t, sub, packet.Subscription{Filter: []byte(topic), QoS: packet.QoS2})
	pub := psConn(t, packet.V5, ConnectOpts{})
	if rc := pub.Publish(withExpiry("out", 0)); rc.IsError() {
		t.Fatalf("publish refused: %v", rc)
	}
	m := sub.ExpectPublish()
	sub.Close()
	// Incoming: the broker has sent PUBREC; PUBREL comes after the expiry.
	in := psConn(t, packet.V5, ConnectOpts{})
	in.Send(withExpiry("in", 9))
	in.ExpectNext(packet.PUBREC)

	// The delay is the test: let the one-second expiry interval pass, by
	// more than a second so that a broker counting whole seconds sees it.
	time.Sleep(2100 * time.Millisecond)

	t.Run("incoming", func(t *testing.T) {
		in.Send(&packet.Ack{PacketType: packet.PUBREL, PacketID: 9})
		// [v5 MQTT-4.3.3-13] the receiver completes the flow although the message has expired.
		if comp := in.ExpectNext(packet.PUBCOMP).(*packet.Ack); comp.PacketID != 9 || comp.ReasonCode != packet.Success {
			t.Fatalf("PUBREL id 9 after the expiry answered with %s", Describe(comp))
		}
	})
	t.Run("outgoing", func(t *testing.T) {
		again := psReconnect(t, packet.V5, o)
		// [v5 MQTT-4.3.3-7] the sender does not expire a message whose PUBLISH has gone out: it is resent.
		var re *packet.Publish
		for re == nil || string(re.Payload) != "out" {
			// Skip the copy of "in" if the broker forwarded it before it expired.
			re = again.ExpectPublish()
			if string(re.Payload) != "out" {
				again.Ack(re)
			}
		}
		if re.PacketID != m.PacketID || !re.Dup {
			t.Fatalf("after the expiry got %s, want the resend of %s", Describe(re), Describe(m))
		}
		again.Ack(re)
	})
}

// TestEveryMatchingSession publishes a message that several clients'
// subscriptions match, one of them disconnected with a persistent session.
func TestEveryMatchingSession(t *testing.T) {
	t.Parallel()
	Require(t, features.WildcardSubs, "wildcard subscriptions")
	for _, v := range pubsubVersions {
		t.Run(psV(v), func(t *testing.T) {
			t.Parallel()
			base := Topic(t)
			a := psSub(t, v, base+"/#", packet.QoS1)
			b := psSub(t, v, base+"/a", packet.QoS1)
			miss := psSub(t, v, base+"/b", packet.QoS1)
			o := psSession(t, v)
			off := psConn(t, v, o)
			psGrant(t, off, packet.Subscription{Filter: []byte(base + "/+"), QoS: packet.QoS1})
			off.Disconnect()

			pub := psConn(t, v, ConnectOpts{})
			psPub(t, pub, base+"/a", packet.QoS1, false, "to all")
			// [v5 MQTT-4.5.0-1] [v3.1.1 MQTT-4.5.0-1] every session with a matching subscription gets it:
			psCollect(t, a, 1)
			psCollect(t, b, 1)
			// the disconnected one too, when it comes back.
			again := psReconnect(t, v, o)
			if m := again.ExpectPublish(); string(m.Payload) != "to all" {
				t.Fatalf("session that was offline got %s", Describe(m))
			} else {
				again.Ack(m)
			}
			psQuiet(t, a, b, miss, again)
		})
	}
}

// TestOrdering has two clients publish interleaved runs of messages on one
// topic at one QoS: the subscriber receives each client's messages in the
// order that client sent them.
func TestOrdering(t *testing.T) {
	t.Parallel()
	const n = 15 // per publisher, below the broker's Receive Maximum
	for _, v := range pubsubVersions {
		for _, q := range []packet.QoS{packet.QoS0, packet.QoS1, packet.QoS2} {
			t.Run(fmt.Sprintf("%s/qos%d", psV(v), q), func(t *testing.T) {
				t.Parallel()
				if q > features.MaximumQoS {
					t.Skipf("broker's Maximum QoS is %d", features.MaximumQoS)
				}
				if q > 0 && int(features.ReceiveMaximum) < n {
					t.Skipf("broker's Receive Maximum %d is below %d", features.ReceiveMaximum, n)
				}
				topic := Topic(t)
				sub := psSub(t, v, topic, packet.QoS2)
				pubs := []*Raw{psConn(t, v, ConnectOpts{}), psConn(t, v, ConnectOpts{})}
				want := make([][]string, 2)
				for i := range n {
					for k, p := range pubs {
						payload := fmt.Sprintf("%c%02d", 'a'+k, i)
						want[k] = append(want[k], payload)
						m := &packet.Publish{QoS: q, Topic: []byte(topic), Payload: []byte(payload)}
						if q > 0 {
							m.PacketID = p.NextID()
						}
						p.Send(m)
					}
				}
				for _, p := range pubs {
					psCompleteFlows(t, p, q, n)
				}
				got := make([][]string, 2)
				for _, m := range psCollect(t, sub, 2*n) {
					if m.QoS != q {
						t.Fatalf("got %s, want QoS %d", Describe(m), q)
					}
					k := int(m.Payload[0] - 'a')
					got[k] = append(got[k], string(m.Payload))
				}
				// [v5 MQTT-4.6.0-5] [v5 MQTT-4.6.0-6] [v3.1.1 MQTT-4.6.0-5] [v3.1.1 MQTT-4.6.0-6] each
				// publisher's messages (same topic, same QoS) arrive in the order they were sent.
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("messages per publisher (-sent +received):\n%s", diff)
				}
			})
		}
	}
}

// psCompleteFlows completes the flows of n QoS q PUBLISH packets r has sent
// without waiting.
func psCompleteFlows(t testing.TB, r *Raw, q packet.QoS, n int) {
	t.Helper()
	for pending := n; q > 0 && pending > 0; {
		p := r.Next()
		a, ok := p.(*packet.Ack)
		if !ok {
			t.Fatalf("publisher got %s", Describe(p))
		}
		if a.ReasonCode.IsError() {
			t.Fatalf("publish refused: %s", Describe(a))
		}
		switch a.PacketType {
		case packet.PUBACK, packet.PUBCOMP:
			pending--
		case packet.PUBREC:
			r.Send(&packet.Ack{PacketType: packet.PUBREL, PacketID: a.PacketID})
		}
	}
}
