package conformance

// Maximum Packet Size in both directions: the broker never sends a client
// a packet larger than the client announced, drops messages that would be,
// leaves out optional properties of acknowledgements that would be, and
// enforces the maximum it announces itself.

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// wireWithMaxPacketSize returns o announcing a Maximum Packet Size of max.
func wireWithMaxPacketSize(o ConnectOpts, max uint32) ConnectOpts {
	o.Properties.MaximumPacketSize = max
	o.Properties.Set(packet.PropMaximumPacketSize)
	return o
}

// wireNextWithin returns the next packet from the broker, failing the test if
// it is larger than max bytes [v5 MQTT-3.1.2-24]. ok is false when none
// comes within quietPeriod (or waitFor when must is set, which fails).
func wireNextWithin(t *testing.T, r *Raw, max uint32, must bool) (packet.Packet, bool) {
	t.Helper()
	d := quietPeriod
	if must {
		d = waitFor
	}
	p, raw, ok := wireNext(t, r, d)
	if !ok {
		if must {
			t.Fatalf("no packet from the broker within %v", waitFor)
		}
		return nil, false
	}
	if len(raw) > int(max) {
		t.Fatalf("broker sent a %d-byte %s to a client whose Maximum Packet Size is %d", len(raw), Describe(p), max)
	}
	return p, true
}

// wirePublishSize is the size of p as sent by the broker at qos with no
// properties but those in p.
func wirePublishSize(p *packet.Publish, qos packet.QoS) int {
	c := *p
	c.QoS, c.PacketID = qos, 1
	return c.Size(packet.V5)
}

// TestMaximumPacketSizeToClient publishes messages around a subscriber's
// Maximum Packet Size. Every packet it gets must fit [v5 MQTT-3.1.2-24]; a
// message that would not is dropped, whole, and the broker goes on as if it
// had been delivered [v5 MQTT-3.1.2-25]: the dropped message is not sent
// later when the subscriber reconnects to its session, and with a Receive
// Maximum of 1 it holds no place in the quota, so the next message comes.
func TestMaximumPacketSizeToClient(t *testing.T) {
	t.Parallel()
	const limit = 200
	cases := []struct {
		name       string
		qos        packet.QoS
		receiveMax uint16 // 0: not announced
		// big makes the message that must be dropped for topic.
		big func(topic string, qos packet.QoS) *packet.Publish
	}{
		{"one byte too large, QoS 0", packet.QoS0, 0, wireSized(0, limit+1)},
		{"one byte too large, QoS 1", packet.QoS1, 0, wireSized(0, limit+1)},
		{"one byte too large, QoS 2", packet.QoS2, 0, wireSized(0, limit+1)},
		{"far too large, QoS 0", packet.QoS0, 0, wireSized(0, 10*limit)},
		{"far too large, QoS 1", packet.QoS1, 0, wireSized(0, 10*limit)},
		{"far too large, QoS 2", packet.QoS2, 0, wireSized(0, 10*limit)},
		{"too large only by its user properties, QoS 1", packet.QoS1, 0, wireSized(60, limit+40)},
		{"far too large, QoS 1, receive maximum 1", packet.QoS1, 1, wireSized(0, 10*limit)},
		{"far too large, QoS 2, receive maximum 1", packet.QoS2, 1, wireSized(0, 10*limit)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			Require(t, features.MaximumQoS >= c.qos, fmt.Sprintf("QoS %d", c.qos))
			topic := Topic(t)
			id := uniqueID(t)
			CleanSession(t, id)
			o := wireWithMaxPacketSize(ConnectOpts{ClientID: id, Persistent: true}, limit)
			o.Properties.SessionExpiry = 60
			o.Properties.Set(packet.PropSessionExpiry)
			if c.receiveMax > 0 {
				o.Properties.ReceiveMaximum = c.receiveMax
				o.Properties.Set(packet.PropReceiveMaximum)
			}
			sub := DialRaw(t, packet.V5)
			sub.Connect(o)
			sub.Subscribe(packet.Subscription{Filter: []byte(topic), QoS: c.qos})

			big := c.big(topic, c.qos)
			if n := wirePublishSize(big, c.qos); n <= limit {
				t.Fatalf("test bug: the large message is %d bytes", n)
			}
			// The largest message that fits is delivered.
			fits := wireSized(0, limit)(topic, c.qos)
			fits.Payload[0] = 'F'
			pub := wireConnect(t, packet.V5, ConnectOpts{})
			for _, p := range []*packet.Publish{big, fits, {QoS: c.qos, Topic: []byte(topic), Payload: []byte("small")}} {
				if rc := pub.Publish(p); rc.IsError() {
					t.Fatalf("publish refused: %v", rc)
				}
			}
			var got []string
			for len(got) < 2 {
				p, _ := wireNextWithin(t, sub, limit, true)
				m, ok := p.(*packet.Publish)
				if !ok {
					t.Fatalf("got %s, want a PUBLISH", Describe(p))
				}
				got = append(got, string(m.Payload[:1]))
				sub.Ack(m)
			}
			// F: the message of exactly the limit, s: the small one.
			if diff := cmp.Diff([]string{"F", "s"}, got); diff != "" {
				t.Fatalf("deliveries (-want +got):\n%s", diff)
			}
			if p, ok := wireNextWithin(t, sub, limit, false); ok {
				t.Fatalf("after the small message: %s", Describe(p))
			}
			if c.qos == packet.QoS0 {
				return
			}
			// The dropped message counts as delivered: the session does
			// not hold it for later.
			sub.Disconnect()
			sub = DialRaw(t, packet.V5)
			if ack := sub.Connect(o); !ack.SessionPresent {
				t.Fatalf("session lost: %s", Describe(ack))
			}
			if p, ok := wireNextWithin(t, sub, limit, false); ok {
				t.Fatalf("after reconnecting: %s", Describe(p))
			}
		})
	}
}

// wireSized returns a builder of a message to topic whose PUBLISH, as the
// broker sends it at qos, is size bytes, padded with user properties
// worth at least userBytes and then with payload.
func wireSized(userBytes, size int) func(topic string, qos packet.QoS) *packet.Publish {
	return func(topic string, qos packet.QoS) *packet.Publish {
		p := &packet.Publish{QoS: qos, Topic: []byte(topic)}
		for n := 0; n < userBytes; n += 5 + 2 + 2 {
			p.Properties.User = append(p.Properties.User, packet.UserProperty{Key: []byte("k"), Value: []byte("v")})
		}
		// The remaining length grows a byte at 128 and 16384: settle the
		// payload length by trying.
		for pad := max(0, size-wirePublishSize(p, qos)); pad >= 0; pad-- {
			p.Payload = []byte(strings.Repeat("x", pad))
			if wirePublishSize(p, qos) <= size {
				break
			}
		}
		return p
	}
}

// TestMaximumPacketSizeAcknowledgements announces a Maximum Packet Size
// just large enough for the broker's CONNACK and provokes every packet the
// broker sends in reply to a client. Each must arrive within the limit: a
// Reason String or User Property that would not fit must be left out, not
// the packet.
func TestMaximumPacketSizeAcknowledgements(t *testing.T) {
	t.Parallel()
	connack := uint32(features.CONNACK.Size(packet.V5))
	limit := max(connack, 6) // a SUBACK or UNSUBACK for one filter is 6 bytes
	cases := []struct {
		name string
		cite string
		// provoke sends a packet and returns the type of the reply that
		// must come; 0 when the reply is optional.
		provoke func(t *testing.T, r *Raw, topic string) packet.Type
	}{
		{"PUBACK", "[v5 MQTT-3.4.2-2] [v5 MQTT-3.4.2-3]", func(t *testing.T, r *Raw, topic string) packet.Type {
			r.Send(&packet.Publish{QoS: packet.QoS1, PacketID: 1, Topic: []byte(topic), Payload: []byte("x")})
			return packet.PUBACK
		}},
		{"PUBREC", "[v5 MQTT-3.5.2-2] [v5 MQTT-3.5.2-3]", func(t *testing.T, r *Raw, topic string) packet.Type {
			Require(t, features.MaximumQoS >= packet.QoS2, "QoS 2")
			r.Send(&packet.Publish{QoS: packet.QoS2, PacketID: 1, Topic: []byte(topic), Payload: []byte("x")})
			return packet.PUBREC
		}},
		{"PUBCOMP", "[v5 MQTT-3.7.2-2] [v5 MQTT-3.7.2-3]", func(t *testing.T, r *Raw, topic string) packet.Type {
			// Packet Identifier not found.
			r.Send(&packet.Ack{PacketType: packet.PUBREL, PacketID: 7})
			return packet.PUBCOMP
		}},
		{"PUBREL", "[v5 MQTT-3.6.2-2] [v5 MQTT-3.6.2-3]", func(t *testing.T, r *Raw, topic string) packet.Type {
			// A PUBREC for an unknown identifier may be answered by
			// PUBREL with Packet Identifier not found.
			r.Send(&packet.Ack{PacketType: packet.PUBREC, PacketID: 7})
			return 0
		}},
		{"SUBACK", "[v5 MQTT-3.9.2-1] [v5 MQTT-3.9.2-2]", func(t *testing.T, r *Raw, topic string) packet.Type {
			r.Send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte(topic)}}})
			return packet.SUBACK
		}},
		{"UNSUBACK", "[v5 MQTT-3.11.2-1] [v5 MQTT-3.11.2-2]", func(t *testing.T, r *Raw, topic string) packet.Type {
			// No subscription existed.
			r.Send(&packet.Unsubscribe{PacketID: 1, Filters: [][]byte{[]byte(topic)}})
			return packet.UNSUBACK
		}},
		{"DISCONNECT", "[v5 MQTT-3.14.2-3] [v5 MQTT-3.14.2-4]", func(t *testing.T, r *Raw, topic string) packet.Type {
			// Topic Alias 0 is an error; the broker may say so.
			p := &packet.Publish{QoS: packet.QoS1, PacketID: 1, Topic: []byte(topic)}
			p.Properties.TopicAlias = 0
			p.Properties.Set(packet.PropTopicAlias)
			r.Send(p)
			return 0
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := DialRaw(t, packet.V5)
			r.Send(r.ConnectPacket(wireWithMaxPacketSize(ConnectOpts{}, limit)))
			// The CONNACK itself fits [v5 MQTT-3.2.2-19] [v5 MQTT-3.2.2-20].
			if p, _ := wireNextWithin(t, r, limit, true); p.Type() != packet.CONNACK || p.(*packet.Connack).ReasonCode != packet.Success {
				t.Fatalf("got %s, want a successful CONNACK", Describe(p))
			}
			want := c.provoke(t, r, Topic(t))
			p, ok := wireNextWithin(t, r, limit, want != 0)
			if ok && want != 0 && p.Type() != want {
				t.Fatalf("got %s, want %s", Describe(p), want)
			}
			if ok {
				t.Logf("%s fits: %s", c.cite, Describe(p))
			}
		})
	}
}

// TestMaximumPacketSizeConnackRefusal refuses a CONNECT (an authentication
// method the broker does not know) from a client whose Maximum Packet Size
// only fits a CONNACK without properties: any CONNACK the broker sends must
// leave its Reason String and User Properties out [v5 MQTT-3.2.2-19]
// [v5 MQTT-3.2.2-20], and the connection closes.
func TestMaximumPacketSizeConnackRefusal(t *testing.T) {
	t.Parallel()
	const limit = 5 // fixed header, flags, reason code, property length 0
	r := DialRaw(t, packet.V5)
	o := wireWithMaxPacketSize(ConnectOpts{}, limit)
	o.Properties.AuthMethod = []byte("skybridge-conformance-unknown-method")
	o.Properties.Set(packet.PropAuthMethod)
	r.Send(r.ConnectPacket(o))
	for {
		p, raw, ok := wireNextOrEnd(t, r)
		if !ok {
			return
		}
		if len(raw) > limit {
			t.Fatalf("broker sent a %d-byte %s to a client whose Maximum Packet Size is %d", len(raw), Describe(p), limit)
		}
		if ack, isAck := p.(*packet.Connack); !isAck || ack.ReasonCode == packet.Success {
			t.Fatalf("got %s, want a refusal or the connection closed", Describe(p))
		}
	}
}

// TestMaximumPacketSizeFromClient sends the broker a packet of exactly the
// Maximum Packet Size it announced, which it accepts, and then a larger
// one: a Protocol Error it must answer by closing the connection, with
// Packet too large if it sends a DISCONNECT [v5 MQTT-4.13.1-1].
func TestMaximumPacketSizeFromClient(t *testing.T) {
	t.Parallel()
	limit := features.MaximumPacketSize
	Require(t, limit > 0, "a Maximum Packet Size")
	if limit > 64<<20 {
		t.Skipf("Maximum Packet Size %d: too large to exceed in a quick test", limit)
	}
	for _, over := range []int{1, 100} {
		name := fmt.Sprintf("%d bytes over", over)
		if over == 1 {
			name = "one byte over"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := wireConnect(t, packet.V5, ConnectOpts{})
			topic := Topic(t)
			if rc := r.Publish(wireSized(0, int(limit))(topic, packet.QoS1)); rc.IsError() {
				t.Fatalf("PUBLISH of exactly the Maximum Packet Size (%d bytes) refused: %v", limit, rc)
			}
			tooBig := wireSized(0, int(limit)+over)(topic, packet.QoS1)
			tooBig.PacketID = r.NextID()
			r.Send(tooBig)
			wireExpectDropped(t, r, false, packet.PacketTooLarge)
		})
	}
}
