package conformance

import (
	"testing"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// TestHarness checks the harness itself against the broker: a raw client
// connects, subscribes, publishes to itself and gets its message back.
func TestHarness(t *testing.T) {
	t.Parallel()
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		r := DialRaw(t, v)
		r.Connect(ConnectOpts{})
		topic := Topic(t)
		r.Subscribe(packet.Subscription{Filter: []byte(topic), QoS: packet.QoS1})
		r.Publish(&packet.Publish{QoS: packet.QoS1, Topic: []byte(topic), Payload: []byte("x")})
		p := r.ExpectPublish()
		if string(p.Payload) != "x" {
			t.Fatalf("payload %q", p.Payload)
		}
		r.Ack(p)
		r.ExpectNothing()
		r.Disconnect()
	}
}

// TestHarnessLibraries checks the paho helpers: a 5.0 subscriber receives
// what a 3.1.1 publisher sends.
func TestHarnessLibraries(t *testing.T) {
	t.Parallel()
	topic := Topic(t)
	sub, _ := NewV5(t, nil)
	sub.Sub(t, topic, 1)
	pub := NewV311(t, nil)
	pub.Pub(t, topic, 1, false, []byte("hello"))
	if m := sub.Receive(t); string(m.Payload) != "hello" {
		t.Fatalf("payload %q", m.Payload)
	}
	sub.ExpectNoMessage(t)
}
