package conformance

// UNSUBSCRIBE and UNSUBACK: acknowledgement and reason codes, literal
// matching of filters, delivery after unsubscribing, malformed UNSUBSCRIBE
// packets.

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// psUnsubscribe sends an UNSUBSCRIBE with id and returns the UNSUBACK,
// failing the test unless it carries id.
func psUnsubscribe(t testing.TB, r *Raw, id uint16, filters ...string) *packet.Unsuback {
	t.Helper()
	u := &packet.Unsubscribe{PacketID: id}
	for _, f := range filters {
		u.Filters = append(u.Filters, []byte(f))
	}
	r.Send(u)
	// [v5 MQTT-3.10.4-4] [v3.1.1 MQTT-3.10.4-4] every UNSUBSCRIBE is answered by an UNSUBACK
	ack := r.Expect(packet.UNSUBACK).(*packet.Unsuback)
	// [v5 MQTT-3.10.4-5] [v5 MQTT-2.2.1-6] [v3.1.1 MQTT-2.3.1-7] carrying its packet identifier.
	if ack.PacketID != id {
		t.Fatalf("%s for UNSUBSCRIBE id %d", Describe(ack), id)
	}
	return ack
}

// TestUnsubscribe unsubscribes from two filters and one the client never
// subscribed to, in one packet: one UNSUBACK, one reason code per filter in
// order, and no more messages for the removed subscriptions.
func TestUnsubscribe(t *testing.T) {
	t.Parallel()
	for _, v := range pubsubVersions {
		t.Run(psV(v), func(t *testing.T) {
			t.Parallel()
			base := Topic(t)
			r := psConn(t, v, ConnectOpts{})
			psGrant(t, r,
				packet.Subscription{Filter: []byte(base + "/a"), QoS: packet.QoS1},
				packet.Subscription{Filter: []byte(base + "/b"), QoS: packet.QoS1},
				packet.Subscription{Filter: []byte(base + "/c"), QoS: packet.QoS1})
			ack := psUnsubscribe(t, r, 0xBEEF, base+"/a", base+"/none", base+"/b")
			if v == packet.V5 {
				// [v5 MQTT-3.11.3-1] [v5 MQTT-3.11.3-2] one Unsubscribe Reason Code per filter, in order:
				// No subscription existed for the filter never subscribed to.
				want := []packet.ReasonCode{packet.Success, packet.NoSubscriptionExisted, packet.Success}
				if diff := cmp.Diff(want, ack.ReasonCodes); diff != "" {
					t.Fatalf("UNSUBACK codes (-want +got):\n%s", diff)
				}
			}
			// A single UNSUBACK for the packet [v5 MQTT-3.10.4-6] [v3.1.1 MQTT-3.10.4-6].
			r.ExpectNothing()

			pub := psConn(t, v, ConnectOpts{})
			for _, sfx := range []string{"/a", "/b", "/c"} {
				psPub(t, pub, base+sfx, packet.QoS1, false, sfx)
			}
			got := psGather(t, r)
			// [v5 MQTT-3.10.4-6] [v3.1.1 MQTT-3.10.4-6] both filters were removed, as by two UNSUBSCRIBEs;
			// [v5 MQTT-3.10.4-2] [v3.1.1 MQTT-3.10.4-2] no new message is sent for them.
			if diff := cmp.Diff([]string{"/c"}, psPayloads(got)); diff != "" {
				t.Fatalf("messages after unsubscribing from /a and /b (-want +got):\n%s", diff)
			}
		})
	}
}

// TestUnsubscribeNothing unsubscribes a client that has no subscription:
// the broker still answers.
func TestUnsubscribeNothing(t *testing.T) {
	t.Parallel()
	for _, v := range pubsubVersions {
		t.Run(psV(v), func(t *testing.T) {
			t.Parallel()
			r := psConn(t, v, ConnectOpts{})
			// [v5 MQTT-3.10.4-5] [v3.1.1 MQTT-3.10.4-5] UNSUBACK even though nothing was removed.
			ack := psUnsubscribe(t, r, 0x0101, Topic(t))
			// [v5 MQTT-3.11.3-2] with a reason code saying so.
			if v == packet.V5 && !cmp.Equal(ack.ReasonCodes, []packet.ReasonCode{packet.NoSubscriptionExisted}) {
				t.Fatalf("got %s, want No subscription existed", Describe(ack))
			}
		})
	}
}

// TestUnsubscribeLiteral checks that UNSUBSCRIBE filters are compared
// character by character with the subscriptions' filters, wildcards
// included, and do not match topics the way a subscription does.
func TestUnsubscribeLiteral(t *testing.T) {
	t.Parallel()
	Require(t, features.WildcardSubs, "wildcard subscriptions")
	for _, v := range pubsubVersions {
		t.Run(psV(v), func(t *testing.T) {
			t.Parallel()
			base := Topic(t)
			r := psConn(t, v, ConnectOpts{})
			psGrant(t, r, packet.Subscription{Filter: []byte(base + "/+"), QoS: packet.QoS1})
			pub := psConn(t, v, ConnectOpts{})
			// Filters that match base/+ as topics would, or cover it, but are not identical.
			for i, f := range []string{base + "/a", base + "/#", base + "/+/", base + "/+/#"} {
				ack := psUnsubscribe(t, r, r.NextID(), f)
				// [v5 MQTT-3.10.4-1] [v3.1.1 MQTT-3.10.4-1] only an identical filter deletes a subscription.
				if v == packet.V5 && !cmp.Equal(ack.ReasonCodes, []packet.ReasonCode{packet.NoSubscriptionExisted}) {
					t.Fatalf("UNSUBSCRIBE %q: %s, want No subscription existed", f, Describe(ack))
				}
				psPub(t, pub, base+"/a", packet.QoS1, false, fmt.Sprint(i))
				if m := r.ExpectPublish(); string(m.Payload) != fmt.Sprint(i) {
					t.Fatalf("got %s", Describe(m))
				} else {
					r.Ack(m)
				}
			}
			ack := psUnsubscribe(t, r, r.NextID(), base+"/+")
			if v == packet.V5 && !cmp.Equal(ack.ReasonCodes, []packet.ReasonCode{packet.Success}) {
				t.Fatalf("UNSUBSCRIBE %q: %s, want Success", base+"/+", Describe(ack))
			}
			psPub(t, pub, base+"/a", packet.QoS1, false, "after")
			// [v5 MQTT-3.10.4-1] [v3.1.1 MQTT-3.10.4-1] the identical filter deleted it.
			r.ExpectNothing()
		})
	}
}

// TestUnsubscribeCompletesInflight unsubscribes while a QoS 1 or QoS 2
// message is on its way to the client: the broker still completes its
// delivery.
func TestUnsubscribeCompletesInflight(t *testing.T) {
	t.Parallel()
	for _, v := range pubsubVersions {
		t.Run(psV(v)+"/qos2", func(t *testing.T) {
			t.Parallel()
			Require(t, features.MaximumQoS == packet.QoS2, "QoS 2")
			topic := Topic(t)
			sub := psSub(t, v, topic, packet.QoS2)
			pub := psConn(t, v, ConnectOpts{})
			psPub(t, pub, topic, packet.QoS2, false, "m")
			m := sub.ExpectPublish()
			psUnsubscribe(t, sub, sub.NextID(), topic)
			sub.Send(&packet.Ack{PacketType: packet.PUBREC, PacketID: m.PacketID})
			// [v5 MQTT-3.10.4-3] [v3.1.1 MQTT-3.10.4-3] the QoS 2 flow started before goes on: PUBREL follows.
			rel := sub.Expect(packet.PUBREL).(*packet.Ack)
			if rel.PacketID != m.PacketID {
				t.Fatalf("%s for PUBLISH id %d", Describe(rel), m.PacketID)
			}
			sub.Send(&packet.Ack{PacketType: packet.PUBCOMP, PacketID: m.PacketID})
			psPub(t, pub, topic, packet.QoS2, false, "after")
			sub.ExpectNothing()
		})
		t.Run(psV(v)+"/qos1-reconnect", func(t *testing.T) {
			t.Parallel()
			topic := Topic(t)
			id := uniqueID(t)
			CleanSession(t, id)
			o := ConnectOpts{ClientID: id, Persistent: true}
			if v == packet.V5 {
				o.Properties.SessionExpiry = 300
				o.Properties.Set(packet.PropSessionExpiry)
			}
			sub := psConn(t, v, o)
			psGrant(t, sub, packet.Subscription{Filter: []byte(topic), QoS: packet.QoS1})
			pub := psConn(t, v, ConnectOpts{})
			psPub(t, pub, topic, packet.QoS1, false, "m")
			m := sub.ExpectPublish()
			psUnsubscribe(t, sub, sub.NextID(), topic)
			sub.Close() // without acknowledging m

			again := DialRaw(t, v)
			again.Connect(o)
			// [v5 MQTT-3.10.4-3] [v3.1.1 MQTT-3.10.4-3] the unacknowledged message is still delivered
			// (resent on reconnection) although its subscription is gone.
			re := again.ExpectPublish()
			if re.PacketID != m.PacketID || string(re.Payload) != "m" {
				t.Fatalf("after reconnecting got %s, want the resend of %s", Describe(re), Describe(m))
			}
			again.Ack(re)
			again.ExpectNothing()
		})
	}
}

// TestUnsubscribeMalformed sends UNSUBSCRIBE packets that break the
// packet's rules: the broker must close the connection.
func TestUnsubscribeMalformed(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		v    packet.Version
		pkt  func(topic string) []byte
		cite string
	}{
		{"v5/flags-0000", packet.V5, func(f string) []byte { return psFrame(0xA0, psU16(1), psNoProps, psStr(f)) }, "[v5 MQTT-3.10.1-1]"},
		{"v5/flags-0110", packet.V5, func(f string) []byte { return psFrame(0xA6, psU16(1), psNoProps, psStr(f)) }, "[v5 MQTT-3.10.1-1]"},
		{"v3.1.1/flags-0000", packet.V311, func(f string) []byte { return psFrame(0xA0, psU16(1), psStr(f)) }, "[v3.1.1 MQTT-3.10.1-1]"},
		{"v3.1.1/flags-0001", packet.V311, func(f string) []byte { return psFrame(0xA1, psU16(1), psStr(f)) }, "[v3.1.1 MQTT-3.10.1-1]"},
		{"v5/no-filter", packet.V5, func(string) []byte { return psFrame(0xA2, psU16(1), psNoProps) }, "[v5 MQTT-3.10.3-2]"},
		{"v3.1.1/no-filter", packet.V311, func(string) []byte { return psFrame(0xA2, psU16(1)) }, "[v3.1.1 MQTT-3.10.3-2] [v3.1.1 MQTT-4.8.0-1]"},
		{"v5/filter-not-utf8", packet.V5, func(f string) []byte { return psFrame(0xA2, psU16(1), psNoProps, psStr(f+"/\xff")) }, "[v5 MQTT-3.10.3-1]"},
		{"v3.1.1/filter-not-utf8", packet.V311, func(f string) []byte { return psFrame(0xA2, psU16(1), psStr(f+"/\xed\xa0\x80")) }, "[v3.1.1 MQTT-3.10.3-1]"},
		{"v3.1.1/truncated-filter", packet.V311, func(f string) []byte { return psFrame(0xA2, psU16(1), psStr(f), []byte{0}) }, "[v3.1.1 MQTT-3.10.3-1]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			psOnFail(t, c.cite)
			r := psConn(t, c.v, ConnectOpts{})
			r.SendBytes(c.pkt(Topic(t)))
			// The broker closes the connection (after a DISCONNECT with an error code, in 5.0).
			psExpectClose(t, r, packet.MalformedPacket, packet.ProtocolError)
		})
	}
}
