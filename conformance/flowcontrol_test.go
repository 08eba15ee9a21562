package conformance

// Flow control (section 4.9): Receive Maximum in both directions.

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// wireFlowSubscriber connects a 5.0 client announcing receiveMax and
// subscribes it to topic at qos.
func wireFlowSubscriber(t *testing.T, topic string, qos packet.QoS, receiveMax uint16) *Raw {
	t.Helper()
	var o ConnectOpts
	o.Properties.ReceiveMaximum = receiveMax
	o.Properties.Set(packet.PropReceiveMaximum)
	r := wireConnect(t, packet.V5, o)
	if ack := r.Subscribe(packet.Subscription{Filter: []byte(topic), QoS: qos}); ack.ReasonCodes[0] != packet.ReasonCode(qos) {
		t.Fatalf("subscription at QoS %d answered %s", qos, Describe(ack))
	}
	return r
}

// wirePublishN publishes n messages to topic at qos from a client of its own,
// with payloads "0", "1", ...
func wirePublishN(t *testing.T, topic string, qos packet.QoS, n int) {
	t.Helper()
	pub := wireConnect(t, packet.V5, ConnectOpts{})
	for i := range n {
		if rc := pub.Publish(&packet.Publish{QoS: qos, Topic: []byte(topic), Payload: []byte(fmt.Sprint(i))}); rc.IsError() {
			t.Fatalf("publish %d refused: %v", i, rc)
		}
	}
}

// TestReceiveMaximumToClient lets messages queue for a subscriber whose
// Receive Maximum is smaller than their number. The broker may have at most
// that many QoS 1/2 PUBLISHes unacknowledged [v5 MQTT-3.3.4-9]: its send
// quota starts above zero and no higher than the Receive Maximum
// [v5 MQTT-4.9.0-1] and it sends no QoS 1/2 PUBLISH while the quota is
// used up [v5 MQTT-4.9.0-2]. A PUBACK or PUBCOMP gives one back; a
// successful PUBREC does not.
func TestReceiveMaximumToClient(t *testing.T) {
	t.Parallel()
	cases := []struct {
		qos        packet.QoS
		receiveMax uint16
	}{
		{packet.QoS1, 1},
		{packet.QoS1, 3},
		{packet.QoS2, 1},
		{packet.QoS2, 2},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("QoS %d receive maximum %d", c.qos, c.receiveMax), func(t *testing.T) {
			t.Parallel()
			Require(t, features.MaximumQoS >= c.qos, fmt.Sprintf("QoS %d", c.qos))
			topic := Topic(t)
			sub := wireFlowSubscriber(t, topic, c.qos, c.receiveMax)
			total := int(c.receiveMax) + 3
			wirePublishN(t, topic, c.qos, total)

			var got []string
			var unacked []*packet.Publish
			take := func(n int) {
				t.Helper()
				for range n {
					p := sub.ExpectNext(packet.PUBLISH).(*packet.Publish)
					got = append(got, string(p.Payload))
					unacked = append(unacked, p)
				}
			}
			// Exactly Receive Maximum arrive, then nothing while none is
			// acknowledged.
			take(int(c.receiveMax))
			sub.ExpectNothing()

			// Completing one delivery lets exactly one more through.
			release := func() {
				t.Helper()
				p := unacked[0]
				unacked = unacked[1:]
				if p.QoS == packet.QoS1 {
					sub.Send(&packet.Ack{PacketType: packet.PUBACK, PacketID: p.PacketID})
					return
				}
				sub.Send(&packet.Ack{PacketType: packet.PUBREC, PacketID: p.PacketID})
				sub.ExpectNext(packet.PUBREL)
				// A PUBREC alone does not restore the quota.
				sub.ExpectNothing()
				sub.Send(&packet.Ack{PacketType: packet.PUBCOMP, PacketID: p.PacketID})
			}
			release()
			take(1)
			sub.ExpectNothing()

			for len(got) < total {
				release()
				take(1)
			}
			for len(unacked) > 0 {
				release()
			}
			sub.ExpectNothing()
			var want []string
			for i := range total {
				want = append(want, fmt.Sprint(i))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("deliveries (-published +received):\n%s", diff)
			}
		})
	}
}

// TestReceiveMaximumPubrecError refuses a QoS 2 delivery with a PUBREC
// error code. That ends the exchange, so the broker's quota is not held by
// it: further messages arrive while the subscriber never exceeds its
// Receive Maximum of 1 [v5 MQTT-3.3.4-9].
func TestReceiveMaximumPubrecError(t *testing.T) {
	t.Parallel()
	Require(t, features.MaximumQoS >= packet.QoS2, "QoS 2")
	topic := Topic(t)
	sub := wireFlowSubscriber(t, topic, packet.QoS2, 1)
	wirePublishN(t, topic, packet.QoS2, 3)
	for i := range 3 {
		p := sub.ExpectNext(packet.PUBLISH).(*packet.Publish)
		if string(p.Payload) != fmt.Sprint(i) {
			t.Fatalf("got %s, want message %d", Describe(p), i)
		}
		// Nothing else may come while this one is unanswered.
		sub.ExpectNothing()
		sub.Send(&packet.Ack{PacketType: packet.PUBREC, PacketID: p.PacketID, ReasonCode: packet.UnspecifiedError})
	}
	sub.ExpectNothing()
}

// TestReceiveMaximumOtherPackets exhausts a subscriber's Receive Maximum
// and checks that the broker still answers every other packet at once
// [v5 MQTT-3.3.4-10] [v5 MQTT-4.9.0-3]: PINGREQ, SUBSCRIBE, UNSUBSCRIBE, and
// the subscriber's own QoS 1 and QoS 2 PUBLISHes.
func TestReceiveMaximumOtherPackets(t *testing.T) {
	t.Parallel()
	topic := Topic(t)
	sub := wireFlowSubscriber(t, topic, packet.QoS1, 1)
	wirePublishN(t, topic, packet.QoS1, 3)
	held := sub.ExpectNext(packet.PUBLISH).(*packet.Publish)

	sub.Send(&packet.Pingreq{})
	sub.ExpectNext(packet.PINGRESP)

	other := Topic(t) + "/other"
	sub.Send(&packet.Subscribe{PacketID: 101, Subscriptions: []packet.Subscription{{Filter: []byte(other), QoS: packet.QoS1}}})
	if ack := sub.ExpectNext(packet.SUBACK).(*packet.Suback); ack.PacketID != 101 {
		t.Fatalf("got %s, want the SUBACK for packet id 101", Describe(ack))
	}
	sub.Send(&packet.Unsubscribe{PacketID: 102, Filters: [][]byte{[]byte(other)}})
	if ack := sub.ExpectNext(packet.UNSUBACK).(*packet.Unsuback); ack.PacketID != 102 {
		t.Fatalf("got %s, want the UNSUBACK for packet id 102", Describe(ack))
	}
	sub.Send(&packet.Publish{QoS: packet.QoS1, PacketID: 103, Topic: []byte(other), Payload: []byte("q1")})
	if ack := sub.ExpectNext(packet.PUBACK).(*packet.Ack); ack.PacketID != 103 {
		t.Fatalf("got %s, want the PUBACK for packet id 103", Describe(ack))
	}
	if features.MaximumQoS >= packet.QoS2 {
		sub.Send(&packet.Publish{QoS: packet.QoS2, PacketID: 104, Topic: []byte(other), Payload: []byte("q2")})
		if ack := sub.ExpectNext(packet.PUBREC).(*packet.Ack); ack.PacketID != 104 {
			t.Fatalf("got %s, want the PUBREC for packet id 104", Describe(ack))
		}
		sub.Send(&packet.Ack{PacketType: packet.PUBREL, PacketID: 104})
		if ack := sub.ExpectNext(packet.PUBCOMP).(*packet.Ack); ack.PacketID != 104 {
			t.Fatalf("got %s, want the PUBCOMP for packet id 104", Describe(ack))
		}
	}
	// The quota is still used up: the queued messages wait.
	sub.ExpectNothing()
	sub.Send(&packet.Ack{PacketType: packet.PUBACK, PacketID: held.PacketID})
	for i := 1; i < 3; i++ {
		p := sub.ExpectNext(packet.PUBLISH).(*packet.Publish)
		if string(p.Payload) != fmt.Sprint(i) {
			t.Fatalf("got %s, want message %d", Describe(p), i)
		}
		sub.Ack(p)
	}
}

// TestReceiveMaximumFromClient sends the broker as many QoS 2 PUBLISHes as
// its Receive Maximum without completing any (no PUBREL, so the broker
// cannot send PUBCOMP): the broker accepts them all. One more exceeds the
// Receive Maximum: the broker must close the connection, with Receive
// Maximum exceeded if it sends a DISCONNECT [v5 MQTT-3.3.4-7].
func TestReceiveMaximumFromClient(t *testing.T) {
	t.Parallel()
	Require(t, features.MaximumQoS >= packet.QoS2, "QoS 2")
	topic := Topic(t)
	r := DialRaw(t, packet.V5)
	receiveMax := 65535
	if ack := r.Connect(ConnectOpts{}); ack.Properties.Has(packet.PropReceiveMaximum) {
		receiveMax = int(ack.Properties.ReceiveMaximum)
	}
	if receiveMax >= 65535 {
		t.Skip("Receive Maximum 65535: exceeding it would need a packet identifier already in use")
	}
	publishes := func(from, to int) []byte {
		var b []byte
		for i := from; i < to; i++ {
			p := &packet.Publish{QoS: packet.QoS2, PacketID: uint16(i + 1), Topic: []byte(topic), Payload: []byte("x")}
			b, _ = p.Append(b, packet.V5)
		}
		return b
	}
	// Write from a goroutine: with a large Receive Maximum the broker's
	// PUBRECs must be read while the PUBLISHes are still going out.
	send := func(b []byte) {
		done := make(chan struct{})
		go func() { r.SendBytes(b); close(done) }()
		t.Cleanup(func() { <-done })
	}
	send(publishes(0, receiveMax))
	for i := range receiveMax {
		rec, ok := r.Expect(packet.PUBREC).(*packet.Ack)
		if !ok || rec.ReasonCode.IsError() {
			t.Fatalf("QoS 2 PUBLISH %d of %d (within Receive Maximum) answered %s", i+1, receiveMax, Describe(rec))
		}
	}
	r.ExpectNothing()

	send(publishes(receiveMax, receiveMax+1))
	deadline := time.Now().Add(waitFor)
	for {
		ev, ok := r.next(time.Until(deadline))
		if !ok {
			t.Fatalf("broker did not close the connection within %v of PUBLISH %d, one above its Receive Maximum", waitFor, receiveMax+1)
		}
		if ev.p == nil && ev.raw == nil {
			break
		}
		if ev.p == nil {
			t.Fatalf("before close: %v", ev.err)
		}
		if d, isDisc := ev.p.(*packet.Disconnect); !isDisc || d.ReasonCode != packet.ReceiveMaximumExceeded {
			t.Fatalf("after PUBLISH %d, one above the Receive Maximum, got %s; want the connection closed, after a DISCONNECT with Receive Maximum exceeded if any", receiveMax+1, Describe(ev.p))
		}
	}
}
