package conformance

// Shared subscriptions (5.0): the $share/{ShareName}/{filter} syntax,
// distribution within a group, granted QoS, what happens to a message whose
// receiver goes away or refuses it, No Local.

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// psShareSession connects a raw 5.0 client with a persistent session
// (expiry 300 s) discarded at the end of the test.
func psShareSession(t testing.TB) (*Raw, ConnectOpts) {
	t.Helper()
	o := ConnectOpts{ClientID: uniqueID(t), Persistent: true}
	o.Properties.SessionExpiry = 300
	o.Properties.Set(packet.PropSessionExpiry)
	CleanSession(t, o.ClientID)
	return psConn(t, packet.V5, o), o
}

// TestSharedDistribution publishes to a topic with two clients in one share
// group and one in another: each message goes to exactly one member of the
// first group, and to the other group's single member.
func TestSharedDistribution(t *testing.T) {
	t.Parallel()
	Require(t, features.SharedSubs, "shared subscriptions")
	topic := Topic(t)
	// [v5 MQTT-4.8.2-1] [v5 MQTT-4.8.2-2] well-formed shared subscriptions are accepted.
	a := psSub(t, packet.V5, "$share/g1/"+topic, packet.QoS1)
	b := psSub(t, packet.V5, "$share/g1/"+topic, packet.QoS1)
	c := psSub(t, packet.V5, "$share/g2/"+topic, packet.QoS1)
	pub := psConn(t, packet.V5, ConnectOpts{})
	var want []string
	for i := range 20 {
		want = append(want, fmt.Sprint(i))
		psPub(t, pub, topic, packet.QoS1, false, fmt.Sprint(i))
	}
	other := psCollect(t, c, len(want))
	left := psLeftovers(t, a, b, c)
	if len(left[2]) > 0 {
		t.Fatalf("group g2 got more than every message once: %s", psDescribeAll(left[2]))
	}
	if diff := cmp.Diff(want, psPayloads(other)); diff != "" {
		t.Fatalf("group g2, single member (-want +got):\n%s", diff)
	}
	seen := map[string]int{}
	for _, m := range append(left[0], left[1]...) {
		seen[string(m.Payload)]++
		if string(m.Topic) != topic {
			t.Fatalf("shared subscriber got %s, want topic %q", Describe(m), topic)
		}
	}
	for _, w := range want {
		if seen[w] != 1 {
			t.Fatalf("group g1 received message %s %d times, want once (a: %d, b: %d messages)", w, seen[w], len(left[0]), len(left[1]))
		}
	}
}

// TestSharedFilterInvalid subscribes to shared subscription filters that
// break the $share syntax: the broker refuses them.
func TestSharedFilterInvalid(t *testing.T) {
	t.Parallel()
	Require(t, features.SharedSubs, "shared subscriptions")
	const (
		name = "[v5 MQTT-4.8.2-1]"
		rest = "[v5 MQTT-4.8.2-2]"
	)
	cases := []struct{ name, filter, cite string }{
		{"empty-share-name", "$share//{P}", name},
		{"no-filter", "$share/g", rest},
		{"empty-filter", "$share/g/", rest},
		{"plus-in-share-name", "$share/g+/{P}", rest},
		{"hash-in-share-name", "$share/g#/{P}", rest},
		{"wildcard-share-name", "$share/+/{P}", rest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			psOnFail(t, c.cite)
			r := psConn(t, packet.V5, ConnectOpts{})
			got := psExpectSubRefused(t, r, packet.Subscription{Filter: []byte(psExpand(c.filter, Topic(t))), QoS: packet.QoS1})
			t.Logf("broker %v", got)
		})
	}
}

// TestSharedGrantedQoS publishes at QoS 2 to shared subscriptions granted
// lower QoS: the message is delivered at the member's granted QoS.
func TestSharedGrantedQoS(t *testing.T) {
	t.Parallel()
	Require(t, features.SharedSubs, "shared subscriptions")
	for _, q := range []packet.QoS{packet.QoS0, packet.QoS1, packet.QoS2} {
		t.Run(fmt.Sprintf("qos%d", q), func(t *testing.T) {
			t.Parallel()
			topic := Topic(t)
			r := psConn(t, packet.V5, ConnectOpts{})
			ack := psGrant(t, r, packet.Subscription{Filter: []byte("$share/g/" + topic), QoS: q})
			pub := psConn(t, packet.V5, ConnectOpts{})
			psPub(t, pub, topic, psGranted(packet.QoS2), false, "m")
			m := r.ExpectPublish()
			r.Ack(m)
			// [v5 MQTT-4.8.2-3] the granted QoS of the member's subscription caps the delivery.
			if want := min(psGranted(packet.QoS2), packet.QoS(ack.ReasonCodes[0])); m.QoS != want {
				t.Fatalf("shared subscription granted %v got %s, want QoS %d", ack.ReasonCodes[0], Describe(m), want)
			}
		})
	}
}

// TestSharedNoLocal sets No Local on a shared subscription, a Protocol
// Error.
func TestSharedNoLocal(t *testing.T) {
	t.Parallel()
	Require(t, features.SharedSubs, "shared subscriptions")
	r := psConn(t, packet.V5, ConnectOpts{})
	r.Send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("$share/g/" + Topic(t)), QoS: packet.QoS1, NoLocal: true}}})
	// [v5 MQTT-3.8.3-4] No Local on a shared subscription is a Protocol Error: DISCONNECT 0x82 and close.
	psExpectClose(t, r, packet.ProtocolError)
}

// psShareInFlight makes a QoS 1 message in flight to member a of a share
// group: a (persistent session) receives it without acknowledging it, and
// only then does a second member b join the group. It returns the message.
func psShareInFlight(t *testing.T, topic string, q packet.QoS) (a *Raw, ao ConnectOpts, b *Raw, m *packet.Publish) {
	t.Helper()
	filter := "$share/g/" + topic
	a, ao = psShareSession(t)
	psGrant(t, a, packet.Subscription{Filter: []byte(filter), QoS: q})
	pub := psConn(t, packet.V5, ConnectOpts{})
	psPub(t, pub, topic, q, false, "in flight")
	m = a.ExpectPublish()
	b = psSub(t, packet.V5, filter, q)
	return a, ao, b, m
}

// TestSharedInFlightReconnect drops the connection of a member that has a
// message in flight: the message is delivered to that member when it
// reconnects.
func TestSharedInFlightReconnect(t *testing.T) {
	t.Parallel()
	Require(t, features.SharedSubs, "shared subscriptions")
	a, ao, b, m := psShareInFlight(t, Topic(t), packet.QoS1)
	a.Close()
	again := DialRaw(t, packet.V5)
	if ack := again.Connect(ao); !ack.SessionPresent {
		t.Fatalf("reconnecting: %s, want a session", Describe(ack))
	}
	// [v5 MQTT-4.8.2-4] the delivery to the reconnected member is completed.
	re := again.ExpectPublish()
	if re.PacketID != m.PacketID || string(re.Payload) != string(m.Payload) || !re.Dup {
		t.Fatalf("after reconnecting got %s, want the resend of %s", Describe(re), Describe(m))
	}
	again.Ack(re)
	// It went to a, and so not to b as well.
	b.ExpectNothing()
}

// TestSharedInFlightSessionEnds ends the session of a member that has a
// message in flight: the message is not sent to another member.
func TestSharedInFlightSessionEnds(t *testing.T) {
	t.Parallel()
	Require(t, features.SharedSubs, "shared subscriptions")
	a, _, b, _ := psShareInFlight(t, Topic(t), packet.QoS1)
	// Session Expiry 0 on DISCONNECT: the session ends as the connection does.
	d := &packet.Disconnect{}
	d.Properties.SessionExpiry = 0
	d.Properties.Set(packet.PropSessionExpiry)
	a.Send(d)
	a.ExpectClosed()
	// [v5 MQTT-4.8.2-5] the message is not handed to the other member.
	b.ExpectNothing()
}

// TestSharedRefusedNotRerouted answers a shared-subscription message with an
// error reason code: the broker discards it instead of sending it to
// another member.
func TestSharedRefusedNotRerouted(t *testing.T) {
	t.Parallel()
	Require(t, features.SharedSubs, "shared subscriptions")
	for _, q := range []packet.QoS{packet.QoS1, packet.QoS2} {
		t.Run(fmt.Sprintf("qos%d", q), func(t *testing.T) {
			t.Parallel()
			if q > features.MaximumQoS {
				t.Skipf("broker's Maximum QoS is %d", features.MaximumQoS)
			}
			a, _, b, m := psShareInFlight(t, Topic(t), q)
			typ := packet.PUBACK
			if q == packet.QoS2 {
				typ = packet.PUBREC
			}
			a.Send(&packet.Ack{PacketType: typ, PacketID: m.PacketID, ReasonCode: packet.UnspecifiedError})
			// [v5 MQTT-4.8.2-6] the refused message is dropped: not sent to another member (client 0),
			// nor again to the member that refused it (client 1; no PUBREL after a failed PUBREC either).
			psQuiet(t, b, a)
		})
	}
}
