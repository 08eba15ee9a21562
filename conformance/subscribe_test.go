package conformance

// SUBSCRIBE and SUBACK: acknowledgement, granted QoS and downgrade,
// several filters in one packet, replacing a subscription, overlapping
// subscriptions, Subscription Identifiers, No Local, malformed SUBSCRIBE
// packets.

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// TestSubackPacketID checks that every SUBSCRIBE is answered by a SUBACK
// that carries its packet identifier.
func TestSubackPacketID(t *testing.T) {
	t.Parallel()
	for _, v := range append([]packet.Version{packet.V31}, pubsubVersions...) {
		t.Run(psV(v), func(t *testing.T) {
			t.Parallel()
			r := psConn(t, v, ConnectOpts{})
			topic := Topic(t)
			for _, id := range []uint16{1, 0x7FFF, 0x8000, 0xFFFF} {
				r.Send(&packet.Subscribe{PacketID: id, Subscriptions: []packet.Subscription{{Filter: []byte(topic), QoS: packet.QoS1}}})
				// [v5 MQTT-3.8.4-1] [v3.1.1 MQTT-3.8.4-1] a SUBACK answers the SUBSCRIBE ...
				ack := r.ExpectNext(packet.SUBACK).(*packet.Suback)
				// [v5 MQTT-3.8.4-2] [v5 MQTT-2.2.1-6] [v3.1.1 MQTT-3.8.4-2] [v3.1.1 MQTT-2.3.1-7] ... with its identifier.
				if ack.PacketID != id {
					t.Fatalf("%s for SUBSCRIBE id %d", Describe(ack), id)
				}
			}
		})
	}
}

// TestSubscribeMultipleFilters sends one SUBSCRIBE with three filters at
// different QoS and checks the SUBACK (one code per filter, in order, each
// the granted QoS) and that each subscription then works on its own.
func TestSubscribeMultipleFilters(t *testing.T) {
	t.Parallel()
	for _, v := range pubsubVersions {
		t.Run(psV(v), func(t *testing.T) {
			t.Parallel()
			base := Topic(t)
			qs := []packet.QoS{packet.QoS2, packet.QoS0, packet.QoS1}
			var subs []packet.Subscription
			var want []packet.ReasonCode
			for i, q := range qs {
				subs = append(subs, packet.Subscription{Filter: []byte(fmt.Sprintf("%s/%d", base, i)), QoS: q})
				want = append(want, packet.ReasonCode(psGranted(q)))
			}
			r := psConn(t, v, ConnectOpts{})
			ack := r.Subscribe(subs...)
			// [v5 MQTT-3.8.4-5] [v3.1.1 MQTT-3.8.4-4] a single SUBACK for the whole packet,
			// [v5 MQTT-3.8.4-6] [v5 MQTT-3.9.3-2] [v3.1.1 MQTT-3.8.4-5] one code per filter,
			// [v5 MQTT-3.9.3-1] [v3.1.1 MQTT-3.9.3-1] in the order of the filters,
			// [v5 MQTT-3.8.4-7] [v3.1.1 MQTT-3.9.3-2] each the granted QoS.
			if diff := cmp.Diff(want, ack.ReasonCodes); diff != "" {
				t.Fatalf("SUBACK codes (-want +got):\n%s", diff)
			}
			r.ExpectNothing()
			// Each filter is a subscription of its own [v5 MQTT-3.8.4-5] [v3.1.1 MQTT-3.8.4-4].
			pub := psConn(t, v, ConnectOpts{})
			for i, q := range qs {
				topic := fmt.Sprintf("%s/%d", base, i)
				psPub(t, pub, topic, psGranted(packet.QoS2), false, topic)
				m := r.ExpectPublish()
				if string(m.Topic) != topic || m.QoS != psGranted(q) {
					t.Fatalf("got %s, want topic %q at QoS %d", Describe(m), topic, psGranted(q))
				}
				r.Ack(m)
			}
			r.ExpectNothing()
		})
	}
}

// TestQoSDowngrade publishes at each QoS to subscriptions granted each QoS:
// every message is delivered once, at the lower of the two, as a first
// transmission.
func TestQoSDowngrade(t *testing.T) {
	t.Parallel()
	for _, v := range append([]packet.Version{packet.V31}, pubsubVersions...) {
		t.Run(psV(v), func(t *testing.T) {
			t.Parallel()
			topic := Topic(t)
			all := []packet.QoS{packet.QoS0, packet.QoS1, packet.QoS2}
			subs := make([]*Raw, len(all))
			granted := make([]packet.QoS, len(all))
			for i, sq := range all {
				subs[i] = psConn(t, v, ConnectOpts{})
				ack := psGrant(t, subs[i], packet.Subscription{Filter: []byte(topic), QoS: sq})
				granted[i] = packet.QoS(ack.ReasonCodes[0])
				// [v5 MQTT-3.8.4-7] [v3.1.1 MQTT-3.8.4-5] the code is a QoS no higher than the request.
				if granted[i] > sq {
					t.Fatalf("requested QoS %d, %s", sq, Describe(ack))
				}
			}
			pub := psConn(t, v, ConnectOpts{})
			var published []packet.QoS
			for _, pq := range all {
				if pq <= features.MaximumQoS {
					psPub(t, pub, topic, pq, false, fmt.Sprintf("pub%d", pq))
					published = append(published, pq)
				}
			}
			check := func(i int, m *packet.Publish, extra bool) {
				t.Helper()
				var pq packet.QoS
				if _, err := fmt.Sscanf(string(m.Payload), "pub%d", &pq); err != nil || pq > 2 {
					// [v5 MQTT-2.2.1-2] [v3.1.1 MQTT-2.3.1-5] no packet identifier in a QoS 0 PUBLISH (it
					// would show as two extra bytes before the payload), and the payload unchanged.
					t.Fatalf("subscription granted QoS %d got %s", granted[i], Describe(m))
				}
				want := min(pq, granted[i])
				// [v5 MQTT-3.8.4-8] [v3.1.1 MQTT-3.8.4-6] delivered at min(published QoS, granted QoS);
				// 3.1.1 allows extra copies only when QoS 1 is downgraded to 0.
				if m.QoS != want || extra && (v == packet.V5 || pq != packet.QoS1 || want != packet.QoS0) {
					t.Fatalf("published at QoS %d, granted QoS %d: got %s (duplicate: %v), want one copy at QoS %d", pq, granted[i], Describe(m), extra, want)
				}
				if m.Dup {
					// [v5 MQTT-3.3.1-2] [v3.1.1 MQTT-3.3.1-2] [v5 MQTT-4.3.1-1] [v3.1.1 MQTT-4.3.1-1] DUP 0 at QoS 0;
					// [v5 MQTT-4.3.2-2] [v5 MQTT-4.3.3-2] [v3.1.1 MQTT-4.3.2-1] [v3.1.1 MQTT-4.3.3-1] and on a first transmission.
					t.Fatalf("got %s, want DUP 0", Describe(m))
				}
				if m.QoS > 0 && m.PacketID == 0 {
					// [v5 MQTT-2.2.1-4] [v3.1.1 MQTT-2.3.1-4] a non-zero identifier for QoS 1 and 2.
					t.Fatalf("got %s with packet identifier 0", Describe(m))
				}
			}
			for i, sub := range subs {
				seen := map[string]bool{}
				for _, m := range psCollect(t, sub, len(published)) {
					check(i, m, seen[string(m.Payload)])
					seen[string(m.Payload)] = true
				}
			}
			for i, got := range psLeftovers(t, subs...) {
				for _, m := range got {
					check(i, m, true)
				}
			}
		})
	}
}

// TestSubscribeReplaces subscribes twice to the same filter with different
// QoS: the second subscription replaces the first, so a message arrives
// once, at the new QoS.
func TestSubscribeReplaces(t *testing.T) {
	t.Parallel()
	for _, v := range pubsubVersions {
		t.Run(psV(v), func(t *testing.T) {
			t.Parallel()
			topic := Topic(t)
			sub := psConn(t, v, ConnectOpts{})
			pub := psConn(t, v, ConnectOpts{})
			for _, q := range []packet.QoS{packet.QoS0, packet.QoS2, packet.QoS1} {
				psGrant(t, sub, packet.Subscription{Filter: []byte(topic), QoS: q})
				psPub(t, pub, topic, psGranted(packet.QoS2), false, fmt.Sprint(q))
				got := psGather(t, sub)
				// [v5 MQTT-3.8.4-3] [v3.1.1 MQTT-3.8.4-3] the new subscription replaced the old one.
				if len(got) != 1 || got[0].QoS != psGranted(q) {
					t.Fatalf("after subscribing again at QoS %d: got %s, want one message at QoS %d", q, psDescribeAll(got), psGranted(q))
				}
			}
		})
	}
}

// TestResubscribeRetainedNoLoss subscribes again to a filter while messages
// are being published: the retained message is sent again and none of the
// live messages is lost or duplicated.
func TestResubscribeRetainedNoLoss(t *testing.T) {
	t.Parallel()
	Require(t, features.RetainAvailable, "retained messages")
	for _, v := range pubsubVersions {
		t.Run(psV(v), func(t *testing.T) {
			t.Parallel()
			topic := Topic(t)
			CleanRetained(t, topic+"/r")
			pub := psConn(t, v, ConnectOpts{})
			psPub(t, pub, topic+"/r", packet.QoS1, true, "retained")
			filter := packet.Subscription{Filter: []byte(topic + "/#"), QoS: packet.QoS1}
			sub := psConn(t, v, ConnectOpts{})
			psGrant(t, sub, filter)
			if got := psGather(t, sub); len(got) != 1 || !got[0].Retain {
				t.Fatalf("first subscription: got %s, want the retained message", psDescribeAll(got))
			}
			// Subscribe again without waiting for the SUBACK, and publish at once.
			sub.Send(&packet.Subscribe{PacketID: sub.NextID(), Subscriptions: []packet.Subscription{filter}})
			var want []string
			for i := range 10 {
				want = append(want, fmt.Sprint(i))
				psPub(t, pub, topic+"/live", packet.QoS1, false, fmt.Sprint(i))
			}
			sub.Expect(packet.SUBACK)
			var live []string
			retained := 0
			for _, m := range psGather(t, sub) {
				if string(m.Topic) == topic+"/r" {
					retained++
					continue
				}
				live = append(live, string(m.Payload))
			}
			// [v5 MQTT-3.8.4-4] [v3.1.1 MQTT-3.8.4-3] the retained message is sent again ...
			if retained != 1 {
				t.Fatalf("retained message sent %d times after subscribing again, want 1", retained)
			}
			// ... and replacing the subscription loses no message (nor duplicates one).
			if diff := cmp.Diff(want, live); diff != "" {
				t.Fatalf("live messages around the new SUBSCRIBE (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOverlappingSubscriptions publishes on a topic that several of a
// client's subscriptions match, with different QoS: the message is
// delivered respecting the highest QoS among them.
func TestOverlappingSubscriptions(t *testing.T) {
	t.Parallel()
	Require(t, features.WildcardSubs, "wildcard subscriptions")
	for _, v := range pubsubVersions {
		for _, pq := range []packet.QoS{packet.QoS1, packet.QoS2} {
			t.Run(fmt.Sprintf("%s/pub%d", psV(v), pq), func(t *testing.T) {
				t.Parallel()
				pq := min(pq, features.MaximumQoS)
				base := Topic(t)
				sub := psConn(t, v, ConnectOpts{})
				psGrant(t, sub,
					packet.Subscription{Filter: []byte(base + "/+"), QoS: packet.QoS0},
					packet.Subscription{Filter: []byte(base + "/a"), QoS: packet.QoS2},
					packet.Subscription{Filter: []byte(base + "/#"), QoS: packet.QoS1})
				pub := psConn(t, v, ConnectOpts{})
				psPub(t, pub, base+"/a", pq, false, "m")
				got := psGather(t, sub)
				if len(got) == 0 || len(got) > 3 {
					t.Fatalf("got %s, want one copy, or one per matching subscription", psDescribeAll(got))
				}
				top := packet.QoS0
				for _, m := range got {
					top = max(top, m.QoS)
				}
				// [v5 MQTT-3.3.4-2] [v3.1.1 MQTT-3.3.5-1] the maximum QoS of the matching subscriptions is honoured.
				if want := min(pq, psGranted(packet.QoS2)); top != want {
					t.Fatalf("got %s, want a copy at QoS %d", psDescribeAll(got), want)
				}
			})
		}
	}
}

// TestSubscriptionIdentifiers gives overlapping subscriptions Subscription
// Identifiers and checks which identifiers the delivered copies carry.
func TestSubscriptionIdentifiers(t *testing.T) {
	t.Parallel()
	Require(t, features.SubscriptionIDs, "subscription identifiers")
	Require(t, features.WildcardSubs, "wildcard subscriptions")
	base := Topic(t)
	sub := psConn(t, packet.V5, ConnectOpts{})
	subscribe := func(filter string, id uint32) {
		s := &packet.Subscribe{PacketID: sub.NextID(), Subscriptions: []packet.Subscription{{Filter: []byte(filter), QoS: packet.QoS1}}}
		if id != 0 {
			s.Properties.SubscriptionIDs = []uint32{id}
		}
		sub.Send(s)
		if ack := sub.Expect(packet.SUBACK).(*packet.Suback); ack.ReasonCodes[0].IsError() {
			t.Fatalf("subscription %q with identifier %d refused: %s", filter, id, Describe(ack))
		}
	}
	subscribe(base+"/a", 7)
	subscribe(base+"/+", 268_435_455) // the largest identifier
	subscribe(base+"/#", 0)           // no identifier
	pub := psConn(t, packet.V5, ConnectOpts{})

	check := func(topic string, want []uint32) {
		t.Helper()
		psPub(t, pub, topic, packet.QoS1, false, "m")
		got := psGather(t, sub)
		var ids []uint32
		for _, m := range got {
			if len(got) > 1 && len(m.Properties.SubscriptionIDs) > 1 {
				// [v5 MQTT-3.3.4-5] one copy per subscription carries that subscription's identifier only.
				t.Fatalf("copy %s of several carries more than one Subscription Identifier", Describe(m))
			}
			ids = append(ids, m.Properties.SubscriptionIDs...)
		}
		slices.Sort(ids)
		// [v5 MQTT-3.3.4-3] the identifiers of the matching subscriptions are sent, [v5 MQTT-3.3.4-4]
		// all of them in a single copy, [v5 MQTT-3.3.4-5] or each in its own copy.
		if diff := cmp.Diff(want, ids); diff != "" {
			t.Fatalf("Subscription Identifiers for %q (-want +got):\n%s\n%s", topic, diff, psDescribeAll(got))
		}
	}
	check(base+"/a", []uint32{7, 268_435_455})
	check(base+"/b", []uint32{268_435_455})
	check(base+"/a/b", nil)

	// A replacing subscription brings its own identifier [v5 MQTT-3.8.4-3].
	subscribe(base+"/a", 8)
	check(base+"/a", []uint32{8, 268_435_455})
}

// TestNoLocal subscribes with No Local: the client's own messages are not
// sent back to it, other clients' messages are.
func TestNoLocal(t *testing.T) {
	t.Parallel()
	topic := Topic(t)
	r := psConn(t, packet.V5, ConnectOpts{})
	psGrant(t, r, packet.Subscription{Filter: []byte(topic), QoS: packet.QoS1, NoLocal: true})
	psPub(t, r, topic, packet.QoS1, false, "own")
	// [v5 MQTT-3.8.3-3] not forwarded to the connection that published it.
	r.ExpectNothing()
	other := psConn(t, packet.V5, ConnectOpts{})
	psPub(t, other, topic, packet.QoS1, false, "other")
	if m := r.ExpectPublish(); string(m.Payload) != "other" {
		t.Fatalf("got %s, want the other client's message", Describe(m))
	}
}

// TestSubscribeMalformed sends SUBSCRIBE packets that break the packet's
// rules: the broker must close the connection.
func TestSubscribeMalformed(t *testing.T) {
	t.Parallel()
	mal := []packet.ReasonCode{packet.MalformedPacket, packet.ProtocolError}
	cases := []struct {
		name string
		v    packet.Version
		// pkt builds the packet for a unique topic.
		pkt  func(topic string) []byte
		cite string
	}{
		{"v5/flags-0000", packet.V5, func(f string) []byte { return psFrame(0x80, psU16(1), psNoProps, psStr(f), []byte{1}) }, "[v5 MQTT-3.8.1-1]"},
		{"v5/flags-0011", packet.V5, func(f string) []byte { return psFrame(0x83, psU16(1), psNoProps, psStr(f), []byte{1}) }, "[v5 MQTT-3.8.1-1]"},
		{"v3.1.1/flags-0000", packet.V311, func(f string) []byte { return psFrame(0x80, psU16(1), psStr(f), []byte{1}) }, "[v3.1.1 MQTT-3.8.1-1]"},
		{"v3.1.1/flags-1010", packet.V311, func(f string) []byte { return psFrame(0x8A, psU16(1), psStr(f), []byte{1}) }, "[v3.1.1 MQTT-3.8.1-1]"},
		{"v5/no-filter", packet.V5, func(string) []byte { return psFrame(0x82, psU16(1), psNoProps) }, "[v5 MQTT-3.8.3-2]"},
		{"v3.1.1/no-filter", packet.V311, func(string) []byte { return psFrame(0x82, psU16(1)) }, "[v3.1.1 MQTT-3.8.3-3] [v3.1.1 MQTT-4.8.0-1]"},
		{"v5/reserved-bit-6", packet.V5, func(f string) []byte { return psFrame(0x82, psU16(1), psNoProps, psStr(f), []byte{0x41}) }, "[v5 MQTT-3.8.3-5]"},
		{"v5/reserved-bit-7", packet.V5, func(f string) []byte { return psFrame(0x82, psU16(1), psNoProps, psStr(f), []byte{0x81}) }, "[v5 MQTT-3.8.3-5]"},
		{"v3.1.1/reserved-bit-2", packet.V311, func(f string) []byte { return psFrame(0x82, psU16(1), psStr(f), []byte{0x05}) }, "[v3.1.1 MQTT-3.8.3-4]"},
		{"v3.1.1/reserved-bit-7", packet.V311, func(f string) []byte { return psFrame(0x82, psU16(1), psStr(f), []byte{0x80}) }, "[v3.1.1 MQTT-3.8.3-4]"},
		{"v3.1.1/qos-3", packet.V311, func(f string) []byte { return psFrame(0x82, psU16(1), psStr(f), []byte{3}) }, "[v3.1.1 MQTT-3.8.3-4]"},
		// 5.0 makes QoS 3 and Retain Handling 3 Protocol Errors (no numbered statement).
		{"v5/qos-3", packet.V5, func(f string) []byte { return psFrame(0x82, psU16(1), psNoProps, psStr(f), []byte{3}) }, ""},
		{"v5/retain-handling-3", packet.V5, func(f string) []byte { return psFrame(0x82, psU16(1), psNoProps, psStr(f), []byte{0x31}) }, ""},
		{"v5/filter-not-utf8", packet.V5, func(f string) []byte { return psFrame(0x82, psU16(1), psNoProps, psStr(f+"/\xff"), []byte{1}) }, "[v5 MQTT-3.8.3-1]"},
		{"v3.1.1/filter-not-utf8", packet.V311, func(f string) []byte { return psFrame(0x82, psU16(1), psStr(f+"/\xc0\x80"), []byte{1}) }, "[v3.1.1 MQTT-3.8.3-1]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			psOnFail(t, c.cite)
			r := psConn(t, c.v, ConnectOpts{})
			r.SendBytes(c.pkt(Topic(t)))
			// The broker closes the connection (after a DISCONNECT with an error code, in 5.0).
			psExpectClose(t, r, mal...)
		})
	}
}

// TestWildcardsUnsupported checks, for a broker that announces it does not
// support wildcard subscriptions, that it refuses them.
func TestWildcardsUnsupported(t *testing.T) {
	t.Parallel()
	if features.WildcardSubs {
		t.Skip("broker supports wildcard subscriptions (from its CONNACK)")
	}
	for _, v := range pubsubVersions {
		for _, f := range []string{"/#", "/+", "/+/x"} {
			t.Run(psV(v)+f, func(t *testing.T) {
				t.Parallel()
				r := psConn(t, v, ConnectOpts{})
				// [v3.1.1 MQTT-3.8.3-2] a broker without wildcard support refuses the subscription
				// (5.0: with Wildcard Subscriptions not supported).
				psExpectSubRefused(t, r, packet.Subscription{Filter: []byte(Topic(t) + f)}, packet.WildcardSubscriptionsNotSupported)
			})
		}
	}
}
