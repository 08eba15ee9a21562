package conformance

// PUBLISH and its acknowledgements as the broker receives them: the
// response each QoS calls for, packet identifiers, the fixed-header flags,
// what a client may not put in a PUBLISH.

import (
	"fmt"
	"testing"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// TestPublishResponse checks the broker's answer to a client PUBLISH at
// each QoS: nothing, PUBACK, or PUBREC then PUBCOMP, each echoing the
// packet identifier and carrying a reason code its packet type allows.
func TestPublishResponse(t *testing.T) {
	t.Parallel()
	for _, v := range append([]packet.Version{packet.V31}, pubsubVersions...) {
		t.Run(psV(v), func(t *testing.T) {
			t.Parallel()
			r := psConn(t, v, ConnectOpts{})
			topic := Topic(t)
			// QoS 0 first: had the broker answered it, that answer would come
			// before the PUBACK the next step expects.
			r.Send(&packet.Publish{Topic: []byte(topic), Payload: []byte("qos0")})
			for _, q := range []packet.QoS{packet.QoS1, packet.QoS2} {
				if q > features.MaximumQoS {
					continue
				}
				// An identifier the broker cannot guess from a counter.
				id := 0xA5C3 + uint16(q)
				r.Send(&packet.Publish{QoS: q, PacketID: id, Topic: []byte(topic), Payload: []byte("m")})
				switch q {
				case packet.QoS1:
					// [v5 MQTT-3.3.4-1] [v3.1.1 MQTT-3.3.4-1] nothing for QoS 0, PUBACK for QoS 1,
					ack := r.ExpectNext(packet.PUBACK).(*packet.Ack)
					// [v5 MQTT-2.2.1-5] [v5 MQTT-4.3.2-4] [v3.1.1 MQTT-2.3.1-6] [v3.1.1 MQTT-4.3.2-2] with the PUBLISH's identifier.
					if ack.PacketID != id {
						t.Fatalf("%s for PUBLISH id %d", Describe(ack), id)
					}
					// [v5 MQTT-3.4.2-1] a PUBACK reason code (the decoder refuses others); not a refusal.
					if v == packet.V5 && (!ack.ReasonCode.ValidFor(packet.PUBACK) || ack.ReasonCode.IsError()) {
						t.Fatalf("broker refused a plain QoS 1 PUBLISH: %s", Describe(ack))
					}
				case packet.QoS2:
					// [v5 MQTT-3.3.4-1] [v3.1.1 MQTT-3.3.4-1] PUBREC for QoS 2,
					rec := r.ExpectNext(packet.PUBREC).(*packet.Ack)
					// [v5 MQTT-4.3.3-8] [v3.1.1 MQTT-4.3.3-2] [v3.1.1 MQTT-2.3.1-6] with the PUBLISH's identifier.
					if rec.PacketID != id {
						t.Fatalf("%s for PUBLISH id %d", Describe(rec), id)
					}
					// [v5 MQTT-3.5.2-1] a PUBREC reason code.
					if v == packet.V5 && (!rec.ReasonCode.ValidFor(packet.PUBREC) || rec.ReasonCode.IsError()) {
						t.Fatalf("broker refused a plain QoS 2 PUBLISH: %s", Describe(rec))
					}
					r.Send(&packet.Ack{PacketType: packet.PUBREL, PacketID: id})
					comp := r.ExpectNext(packet.PUBCOMP).(*packet.Ack)
					// [v5 MQTT-4.3.3-11] [v5 MQTT-2.2.1-5] [v3.1.1 MQTT-4.3.3-2] PUBCOMP carries the PUBREL's identifier.
					if comp.PacketID != id {
						t.Fatalf("%s for PUBREL id %d", Describe(comp), id)
					}
					// [v5 MQTT-3.7.2-1] a PUBCOMP reason code: Success, the identifier being known.
					if v == packet.V5 && comp.ReasonCode != packet.Success {
						t.Fatalf("%s, want Success for a known identifier", Describe(comp))
					}
				}
			}
			// Nothing else, and nothing at all for QoS 0 [v5 MQTT-3.3.4-1] [v3.1.1 MQTT-3.3.4-1].
			r.ExpectNothing()
		})
	}
}

// TestPublishQoS3 sends a PUBLISH with both QoS bits set: a malformed
// packet that the broker must answer by closing the connection.
func TestPublishQoS3(t *testing.T) {
	t.Parallel()
	for _, v := range pubsubVersions {
		t.Run(psV(v), func(t *testing.T) {
			t.Parallel()
			topic := Topic(t)
			sub := psSub(t, v, topic, packet.QoS2)
			r := psConn(t, v, ConnectOpts{})
			var props []byte
			if v == packet.V5 {
				props = psNoProps
			}
			r.SendBytes(psFrame(0x36, psStr(topic), psU16(1), props, []byte("qos3")))
			// [v5 MQTT-3.3.1-4] [v3.1.1 MQTT-3.3.1-4] QoS 3 is malformed: the broker closes.
			psExpectClose(t, r, packet.MalformedPacket, packet.ProtocolError)
			// ... and does not deliver the message.
			sub.ExpectNothing()
		})
	}
}

// TestPublishPacketIDZero sends SUBSCRIBE, UNSUBSCRIBE and QoS 1/2 PUBLISH
// packets with packet identifier 0, which the broker must treat as a
// protocol violation.
func TestPublishPacketIDZero(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// pkt builds the packet; props is the 5.0 property block (nil for 3.1.1).
		pkt func(topic string, props []byte) []byte
	}{
		{"publish-qos1", func(f string, p []byte) []byte { return psFrame(0x32, psStr(f), psU16(0), p, []byte("x")) }},
		{"publish-qos2", func(f string, p []byte) []byte { return psFrame(0x34, psStr(f), psU16(0), p, []byte("x")) }},
		{"subscribe", func(f string, p []byte) []byte { return psFrame(0x82, psU16(0), p, psStr(f), []byte{0}) }},
		{"unsubscribe", func(f string, p []byte) []byte { return psFrame(0xA2, psU16(0), p, psStr(f)) }},
	}
	for _, v := range pubsubVersions {
		for _, c := range cases {
			t.Run(psV(v)+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				var props []byte
				if v == packet.V5 {
					props = psNoProps
				}
				r := psConn(t, v, ConnectOpts{})
				r.SendBytes(c.pkt(Topic(t), props))
				// [v3.1.1 MQTT-2.3.1-1] a zero packet identifier is a protocol violation: the broker
				// closes the connection (5.0: a Protocol Error, with no statement of its own for the server).
				codes := []packet.ReasonCode{packet.ProtocolError, packet.MalformedPacket}
				if c.name == "publish-qos2" && features.MaximumQoS < packet.QoS2 {
					// Also above the broker's Maximum QoS: 0x9B is as right [v5 MQTT-3.2.2-11].
					codes = append(codes, packet.QoSNotSupported)
				}
				psExpectClose(t, r, codes...)
			})
		}
	}
}

// TestPublishDupNotPropagated publishes with DUP set (as a client
// retransmitting would) and checks that the copy the broker forwards is a
// first transmission, DUP 0, whatever the publisher set.
func TestPublishDupNotPropagated(t *testing.T) {
	t.Parallel()
	for _, v := range pubsubVersions {
		for _, q := range []packet.QoS{packet.QoS1, packet.QoS2} {
			t.Run(fmt.Sprintf("%s/qos%d", psV(v), q), func(t *testing.T) {
				t.Parallel()
				if q > features.MaximumQoS {
					t.Skipf("broker's Maximum QoS is %d", features.MaximumQoS)
				}
				topic := Topic(t)
				sub := psSub(t, v, topic, packet.QoS2)
				pub := psConn(t, v, ConnectOpts{})
				if rc := pub.Publish(&packet.Publish{Dup: true, QoS: q, Topic: []byte(topic), Payload: []byte("dup")}); rc.IsError() {
					t.Fatalf("publish refused: %v", rc)
				}
				m := sub.ExpectPublish()
				// [v5 MQTT-3.3.1-3] [v3.1.1 MQTT-3.3.1-3] the outgoing DUP depends only on the broker's own
				// retransmission; [v5 MQTT-4.3.2-2] [v5 MQTT-4.3.3-2] [v3.1.1 MQTT-4.3.2-1] [v3.1.1 MQTT-4.3.3-1]
				// a new message goes out with DUP 0 and the QoS of its flow.
				if m.Dup || m.QoS != q || m.PacketID == 0 {
					t.Fatalf("forwarded %s, want dup=false qos=%d and a packet id", Describe(m), q)
				}
				sub.Ack(m)
				sub.ExpectNothing()
			})
		}
	}
}

// TestPublishSubscriptionIDFromClient sends a PUBLISH carrying a
// Subscription Identifier, which only a server may put in a PUBLISH.
func TestPublishSubscriptionIDFromClient(t *testing.T) {
	t.Parallel()
	bad := func(topic string) *packet.Publish {
		p := &packet.Publish{QoS: packet.QoS1, PacketID: 1, Topic: []byte(topic), Payload: []byte("forged")}
		p.Properties.SubscriptionIDs = []uint32{4242}
		return p
	}
	t.Run("not-forwarded", func(t *testing.T) {
		t.Parallel()
		topic := Topic(t)
		sub := psSub(t, packet.V5, topic, packet.QoS1)
		pub := psConn(t, packet.V5, ConnectOpts{})
		pub.Send(bad(topic))
		// Whether or not the broker refuses the packet, the identifier it
		// carries is not one the subscriber chose [v5 MQTT-3.3.4-6].
		for _, m := range psGather(t, sub) {
			if len(m.Properties.SubscriptionIDs) > 0 {
				t.Fatalf("broker forwarded the publisher's Subscription Identifier: %s", Describe(m))
			}
		}
	})
	t.Run("protocol-error", func(t *testing.T) {
		t.Parallel()
		pub := psConn(t, packet.V5, ConnectOpts{})
		pub.Send(bad(Topic(t)))
		// [v5 MQTT-3.3.4-6] a client PUBLISH with a Subscription Identifier breaks the protocol:
		// the broker closes the connection (with Protocol Error).
		psExpectClose(t, pub, packet.ProtocolError, packet.MalformedPacket)
	})
}

// TestPubrelFlags sends a PUBREL whose reserved fixed-header flags are not
// 0010: the broker must treat it as malformed and close the connection.
func TestPubrelFlags(t *testing.T) {
	t.Parallel()
	Require(t, features.MaximumQoS == packet.QoS2, "QoS 2")
	for _, v := range pubsubVersions {
		for _, flags := range []byte{0x0, 0x3, 0xA} {
			t.Run(fmt.Sprintf("%s/flags-%04b", psV(v), flags), func(t *testing.T) {
				t.Parallel()
				r := psConn(t, v, ConnectOpts{})
				r.Send(&packet.Publish{QoS: packet.QoS2, PacketID: 7, Topic: []byte(Topic(t))})
				r.ExpectNext(packet.PUBREC)
				r.SendBytes([]byte{0x60 | flags, 2, 0, 7})
				// [v5 MQTT-3.6.1-1] [v3.1.1 MQTT-3.6.1-1] bad PUBREL flags: malformed, connection closed.
				psExpectClose(t, r, packet.MalformedPacket, packet.ProtocolError)
			})
		}
	}
}

// TestPublishNotAuthorized publishes to a topic the broker refuses (it
// answers a 5.0 client with Not authorized, as brokers commonly do for
// $SYS) from a 3.1.1 client, which has no reason codes: the broker must
// acknowledge as usual or close the connection.
func TestPublishNotAuthorized(t *testing.T) {
	t.Parallel()
	topic := "$SYS/" + Topic(t)
	probe := psConn(t, packet.V5, ConnectOpts{})
	probe.Send(&packet.Publish{QoS: packet.QoS1, PacketID: 1, Topic: []byte(topic), Payload: []byte("x")})
	if ack := probe.ExpectNext(packet.PUBACK).(*packet.Ack); !ack.ReasonCode.IsError() {
		t.Skipf("broker accepts client publications to %q (%s): no refused topic to test with", topic, Describe(ack))
	}
	for _, q := range []packet.QoS{packet.QoS1, packet.QoS2} {
		t.Run(fmt.Sprintf("qos%d", q), func(t *testing.T) {
			t.Parallel()
			if q > features.MaximumQoS {
				t.Skipf("broker's Maximum QoS is %d", features.MaximumQoS)
			}
			r := psConn(t, packet.V311, ConnectOpts{})
			r.Send(&packet.Publish{QoS: q, PacketID: 9, Topic: []byte(topic), Payload: []byte("x")})
			want := packet.PUBACK
			if q == packet.QoS2 {
				want = packet.PUBREC
			}
			ev, ok := r.next(waitFor)
			switch {
			case !ok:
				t.Fatalf("neither %s nor close within %v", want, waitFor)
			case ev.p == nil:
				// [v3.1.1 MQTT-3.3.5-2] closing the connection is one of the two allowed answers.
			case ev.p.Type() != want || ev.p.(*packet.Ack).PacketID != 9:
				// [v3.1.1 MQTT-3.3.5-2] otherwise the normal QoS acknowledgement.
				t.Fatalf("unauthorised QoS %d PUBLISH answered with %s, want %s id=9 or a close", q, Describe(ev.p), want)
			}
		})
	}
}
