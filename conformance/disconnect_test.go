package conformance

// DISCONNECT (5.0 section 3.14, 3.1.1 section 3.14), both directions.

import (
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// TestDisconnectReservedFlags checks a DISCONNECT whose reserved fixed
// header bits are not 0: the broker closes the connection
// [v5 MQTT-3.14.1-1] [v3.1.1 MQTT-3.14.1-1], and as this is no valid
// normal disconnection the will is published [v5 MQTT-3.1.2-8]
// [v3.1.1 MQTT-3.1.2-8].
func TestDisconnectReservedFlags(t *testing.T) {
	t.Parallel()
	for _, v := range life.versions() {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			topic := Topic(t)
			sub := life.subscriber(t, topic, packet.QoS1)
			r, _ := life.dial(t, v, ConnectOpts{Will: life.will(topic, packet.QoS1, false, "malformed goodbye")})
			r.SendBytes(life.disconnectBadFlags())
			// A 5.0 DISCONNECT says Malformed Packet [v5 MQTT-3.14.2-1]
			// [v5 MQTT-3.14.2-2] [v5 MQTT-3.14.4-1] [v5 MQTT-3.14.4-2].
			life.expectServerDisconnect(t, r, packet.MalformedPacket)
			if p := life.expectPublish(t, sub, waitFor); string(p.Payload) != "malformed goodbye" {
				t.Fatalf("got %s, want the will", Describe(p))
			}
		})
	}
	t.Run("5.0 reason code", func(t *testing.T) {
		t.Parallel()
		r, _ := life.dial(t, packet.V5, ConnectOpts{})
		r.SendBytes(life.disconnectBadFlags())
		// [v5 MQTT-3.14.1-1] the broker answers with DISCONNECT 0x81.
		if _, sent := life.expectServerDisconnect(t, r, packet.MalformedPacket); !sent {
			t.Fatalf("connection closed without DISCONNECT 0x81 (Malformed Packet)")
		}
	})
}

// TestDisconnectSessionExpiry checks the Session Expiry Interval a 5.0
// client sets in its DISCONNECT.
func TestDisconnectSessionExpiry(t *testing.T) {
	t.Parallel()
	t.Run("lowered to 0", func(t *testing.T) {
		t.Parallel()
		id := uniqueID(t)
		r, _ := life.dial(t, packet.V5, life.persistent(t, packet.V5, id, 60))
		life.hangUp(t, r, &packet.Disconnect{Properties: life.sessionExpiry(0)})
		// [v5 MQTT-4.1.0-2] the interval is now 0: the session ended with
		// the connection.
		if _, ack := life.dial(t, packet.V5, life.persistent(t, packet.V5, id, 60)); ack.SessionPresent {
			t.Fatalf("session expiry lowered to 0 on DISCONNECT, yet %s", Describe(ack))
		}
	})
	t.Run("raised", func(t *testing.T) {
		t.Parallel()
		id := uniqueID(t)
		r, _ := life.dial(t, packet.V5, life.persistent(t, packet.V5, id, 1))
		life.hangUp(t, r, &packet.Disconnect{Properties: life.sessionExpiry(60)})
		// The deliberate wait: twice the interval of the CONNECT.
		time.Sleep(2 * time.Second)
		// [v5 MQTT-3.1.2-23] the session is kept for the new interval.
		if _, ack := life.dial(t, packet.V5, life.persistent(t, packet.V5, id, 60)); !ack.SessionPresent {
			t.Fatalf("session expiry raised from 1 s to 60 s on DISCONNECT, yet 2 s later %s", Describe(ack))
		}
	})
	t.Run("from 0 is a protocol error", func(t *testing.T) {
		t.Parallel()
		id := uniqueID(t)
		CleanSession(t, id)
		topic := Topic(t)
		sub := life.subscriber(t, topic, packet.QoS1)
		r, _ := life.dial(t, packet.V5, ConnectOpts{ClientID: id, Persistent: true, Will: life.will(topic, packet.QoS1, false, "not a valid DISCONNECT")})
		r.Send(&packet.Disconnect{Properties: life.sessionExpiry(60)})
		// A DISCONNECT from the broker says Protocol Error
		// [v5 MQTT-3.14.2-1] [v5 MQTT-3.14.2-2] [v5 MQTT-3.14.4-1]
		// [v5 MQTT-3.14.4-2].
		life.expectServerDisconnect(t, r, packet.ProtocolError)
		// [v5 MQTT-3.1.2-8] not a valid DISCONNECT: the will goes out.
		if p := life.expectPublish(t, sub, waitFor); string(p.Payload) != "not a valid DISCONNECT" {
			t.Fatalf("got %s, want the will", Describe(p))
		}
		// [v5 MQTT-4.1.0-2] and the session, of interval 0, is gone.
		if _, ack := life.dial(t, packet.V5, ConnectOpts{ClientID: id, Persistent: true}); ack.SessionPresent {
			t.Fatalf("session expiry raised from 0 on DISCONNECT took effect: %s", Describe(ack))
		}
	})
}
