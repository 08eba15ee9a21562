package conformance

// Session state (5.0 sections 3.1.2.4, 3.1.2.11.2, 3.2.2.1.1, 4.1; 3.1.1
// sections 3.1.2.4, 3.2.2.2, 4.1): Clean Start / Clean Session, Session
// Present, Session Expiry, queued messages, session takeover.

import (
	"fmt"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// storeSession creates a stored session for id with a QoS 1 subscription to
// filter, and closes its connection normally.
func (lifeKit) storeSession(t testing.TB, v packet.Version, id, filter string) {
	t.Helper()
	r, _ := life.dial(t, v, life.persistent(t, v, id, 60))
	life.subscribe(t, r, filter, packet.QoS1)
	life.hangUp(t, r, nil)
}

// TestSessionPresent checks Session Present in the CONNACK of an accepted
// connection against the session the broker must (or must not) hold.
func TestSessionPresent(t *testing.T) {
	t.Parallel()
	for _, v := range life.versions() {
		t.Run(v.String()+"/clean start, no session", func(t *testing.T) {
			t.Parallel()
			// [v5 MQTT-3.2.2-2] [v3.1.1 MQTT-3.2.2-1]
			if _, ack := life.dial(t, v, ConnectOpts{}); ack.SessionPresent {
				t.Fatalf("clean start: %s, want Session Present 0", Describe(ack))
			}
		})
		t.Run(v.String()+"/resume, no session", func(t *testing.T) {
			t.Parallel()
			id := uniqueID(t)
			r, ack := life.dial(t, v, life.persistent(t, v, id, 60))
			// [v5 MQTT-3.2.2-3] [v3.1.1 MQTT-3.2.2-3] nothing stored: 0.
			if ack.SessionPresent {
				t.Fatalf("first connection of %q: %s, want Session Present 0", id, Describe(ack))
			}
			life.hangUp(t, r, nil)
			// [v5 MQTT-3.1.2-6] [v3.1.1 MQTT-3.1.2-4] that CONNECT created a
			// session, which is there the next time.
			if _, ack = life.dial(t, v, life.persistent(t, v, id, 60)); !ack.SessionPresent {
				t.Fatalf("second connection of %q: %s, want Session Present 1", id, Describe(ack))
			}
		})
		t.Run(v.String()+"/resume, stored session", func(t *testing.T) {
			t.Parallel()
			id := uniqueID(t)
			topic := Topic(t)
			life.storeSession(t, v, id, topic)
			// [v5 MQTT-3.2.2-3] [v5 MQTT-3.1.2-23] [v3.1.1 MQTT-3.2.2-2]
			// [v3.1.1 MQTT-3.1.2-4] the session outlived its connection.
			r, ack := life.dial(t, v, life.persistent(t, v, id, 60))
			if !ack.SessionPresent {
				t.Fatalf("reconnecting %q: %s, want Session Present 1", id, Describe(ack))
			}
			// [v5 MQTT-3.1.2-5] [v3.1.1 MQTT-3.1.2-4] and it is resumed: the
			// subscription still delivers.
			pub, _ := life.dial(t, packet.V5, ConnectOpts{})
			pub.Publish(&packet.Publish{QoS: packet.QoS1, Topic: []byte(topic), Payload: []byte("resumed")})
			if p := life.expectPublish(t, r, waitFor); string(p.Payload) != "resumed" {
				t.Fatalf("resumed session received %s", Describe(p))
			}
		})
		t.Run(v.String()+"/other client identifier", func(t *testing.T) {
			t.Parallel()
			id := uniqueID(t)
			life.storeSession(t, v, id, Topic(t))
			// [v5 MQTT-3.1.3-2] [v3.1.1 MQTT-3.1.3-2] sessions are keyed on
			// the client identifier: another one finds nothing.
			if _, ack := life.dial(t, v, life.persistent(t, v, id+"b", 60)); ack.SessionPresent {
				t.Fatalf("%q found the session of %q: %s", id+"b", id, Describe(ack))
			}
		})
	}
	t.Run("3.1.1/clean session is never reused", func(t *testing.T) {
		t.Parallel()
		id := uniqueID(t)
		CleanSession(t, id)
		r, _ := life.dial(t, packet.V311, ConnectOpts{ClientID: id})
		life.subscribe(t, r, Topic(t), packet.QoS1)
		life.hangUp(t, r, nil)
		// [v3.1.1 MQTT-3.1.2-6] a clean session ends with its connection.
		if _, ack := life.dial(t, packet.V311, ConnectOpts{ClientID: id, Persistent: true}); ack.SessionPresent {
			t.Fatalf("session of a Clean Session 1 connection reused: %s", Describe(ack))
		}
	})
	t.Run("5.0/no session expiry", func(t *testing.T) {
		t.Parallel()
		id := uniqueID(t)
		CleanSession(t, id)
		r, _ := life.dial(t, packet.V5, ConnectOpts{ClientID: id, Persistent: true})
		life.subscribe(t, r, Topic(t), packet.QoS1)
		life.hangUp(t, r, nil)
		// [v5 MQTT-4.1.0-2] Session Expiry Interval absent (0): the session
		// ends when the connection closes.
		if _, ack := life.dial(t, packet.V5, ConnectOpts{ClientID: id, Persistent: true}); ack.SessionPresent {
			t.Fatalf("session without Session Expiry Interval outlived its connection: %s", Describe(ack))
		}
	})
}

// TestSessionQueued checks that a stored session collects the QoS 1 and 2
// messages that match its subscriptions while its client is away, and that
// the CONNACK comes before them when the client returns.
func TestSessionQueued(t *testing.T) {
	t.Parallel()
	for _, v := range life.versions() {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			id := uniqueID(t)
			topic := Topic(t)
			r, _ := life.dial(t, v, life.persistent(t, v, id, 60))
			life.subscribe(t, r, topic+"/#", packet.QoS2)
			life.hangUp(t, r, nil)

			pub, _ := life.dial(t, packet.V5, ConnectOpts{})
			for q := packet.QoS0; q <= features.MaximumQoS; q++ {
				pub.Publish(&packet.Publish{QoS: q, Topic: []byte(fmt.Sprintf("%s/%d", topic, q)), Payload: []byte(fmt.Sprintf("away-%d", q))})
			}

			r = DialRaw(t, v)
			r.Send(r.ConnectPacket(life.persistent(t, v, id, 60)))
			// [v5 MQTT-3.2.0-1] [v3.1.1 MQTT-3.2.0-1] the CONNACK comes first,
			// before the queued messages.
			if ack := life.expectAccepted(t, r); !ack.SessionPresent {
				t.Fatalf("reconnecting %q: %s, want Session Present 1", id, Describe(ack))
			}
			// [v5 MQTT-3.1.2-5] [v3.1.1 MQTT-3.1.2-5] [v3.1.1 MQTT-3.1.2-4]
			// QoS 1 and 2 messages were kept (QoS 0 may be).
			seen := map[string]bool{}
			for !seen["away-1"] || (features.MaximumQoS == packet.QoS2 && !seen["away-2"]) {
				p := life.expectPublish(t, r, waitFor)
				if seen[string(p.Payload)] {
					t.Fatalf("%s delivered twice", Describe(p))
				}
				seen[string(p.Payload)] = true
			}
		})
	}
}

// TestSessionCleanStartDiscards checks that Clean Start (Clean Session) 1
// throws a stored session away: no queued messages, no subscriptions.
func TestSessionCleanStartDiscards(t *testing.T) {
	t.Parallel()
	for _, v := range life.versions() {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			id := uniqueID(t)
			topic := Topic(t)
			life.storeSession(t, v, id, topic)
			pub, _ := life.dial(t, packet.V5, ConnectOpts{})
			pub.Publish(&packet.Publish{QoS: packet.QoS1, Topic: []byte(topic), Payload: []byte("queued")})

			// Clean start, but a session that would outlive the connection.
			o := ConnectOpts{ClientID: id}
			if v == packet.V5 {
				o.Properties = life.sessionExpiry(60)
			}
			r, ack := life.dial(t, v, o)
			// [v5 MQTT-3.2.2-2] [v3.1.1 MQTT-3.2.2-1]
			if ack.SessionPresent {
				t.Fatalf("clean start over a stored session: %s, want Session Present 0", Describe(ack))
			}
			// [v5 MQTT-3.1.2-4] [v5 MQTT-3.1.4-4] [v3.1.1 MQTT-3.1.2-6]
			// [v3.1.1 MQTT-3.1.4-3] the queued message and the subscription
			// went with the old session.
			pub.Publish(&packet.Publish{QoS: packet.QoS1, Topic: []byte(topic), Payload: []byte("live")})
			r.Send(&packet.Pingreq{})
			r.ExpectNext(packet.PINGRESP)
			r.ExpectNothing()
		})
	}
}

// TestSessionExpiry checks the 5.0 Session Expiry Interval: a session of 1
// second is gone 2 seconds after its connection closed
// [v5 MQTT-4.1.0-2], but a connection that stays open longer than that
// keeps its session [v5 MQTT-4.1.0-1] (and a 3.1.1 clean session lasts as
// long as its connection [v3.1.1 MQTT-4.1.0-1] [v3.1.1 MQTT-4.1.0-2]).
func TestSessionExpiry(t *testing.T) {
	t.Parallel()
	topic := Topic(t)
	pub, _ := life.dial(t, packet.V5, ConnectOpts{})

	// Closed: a session of 1 s with a queued message.
	closedID := uniqueID(t)
	r, _ := life.dial(t, packet.V5, life.persistent(t, packet.V5, closedID, 1))
	life.subscribe(t, r, topic+"/closed", packet.QoS1)
	life.hangUp(t, r, nil)
	pub.Publish(&packet.Publish{QoS: packet.QoS1, Topic: []byte(topic + "/closed"), Payload: []byte("queued")})

	// Open: a 5.0 session of 1 s and a 3.1.1 clean session, both connected.
	openID := uniqueID(t)
	open5, _ := life.dial(t, packet.V5, life.persistent(t, packet.V5, openID, 1))
	life.subscribe(t, open5, topic+"/open", packet.QoS1)
	open311, _ := life.dial(t, packet.V311, ConnectOpts{})
	life.subscribe(t, open311, topic+"/open", packet.QoS1)

	// The deliberate wait: twice the expiry interval, the broker's clock
	// may count whole seconds. PINGREQs keep the open connections alive.
	for i := 0; i < 4; i++ {
		time.Sleep(500 * time.Millisecond)
		for _, c := range []*Raw{open5, open311} {
			c.Send(&packet.Pingreq{})
		}
	}
	for _, c := range []*Raw{open5, open311} {
		for i := 0; i < 4; i++ {
			c.Expect(packet.PINGRESP)
		}
	}

	pub.Publish(&packet.Publish{QoS: packet.QoS1, Topic: []byte(topic + "/open"), Payload: []byte("still here")})
	for _, c := range []*Raw{open5, open311} {
		if p := life.expectPublish(t, c, waitFor); string(p.Payload) != "still here" {
			t.Fatalf("open session received %s", Describe(p))
		}
	}
	life.hangUp(t, open5, nil)
	if _, ack := life.dial(t, packet.V5, life.persistent(t, packet.V5, openID, 1)); !ack.SessionPresent {
		t.Fatalf("session expiring 1 s after its connection, connected for 2 s: %s, want Session Present 1", Describe(ack))
	}

	r, ack := life.dial(t, packet.V5, life.persistent(t, packet.V5, closedID, 1))
	if ack.SessionPresent {
		t.Fatalf("reconnecting 2 s after a session expiring in 1 s: %s, want Session Present 0", Describe(ack))
	}
	r.ExpectNothing()
}

// TestSessionTakeover checks a CONNECT with the client identifier of a
// connected client: the broker closes the older connection
// [v5 MQTT-3.1.4-3] [v3.1.1 MQTT-3.1.4-2] and the session goes on with the
// new one.
func TestSessionTakeover(t *testing.T) {
	t.Parallel()
	for _, v := range life.versions() {
		t.Run(v.String()+"/old connection closed", func(t *testing.T) {
			t.Parallel()
			id := uniqueID(t)
			topic := Topic(t)
			old, _ := life.dial(t, v, life.persistent(t, v, id, 60))
			life.subscribe(t, old, topic, packet.QoS1)
			r, ack := life.dial(t, v, life.persistent(t, v, id, 60))
			// A 5.0 DISCONNECT, if sent, says Session taken over
			// [v5 MQTT-3.14.2-1] [v5 MQTT-3.14.2-2] [v5 MQTT-3.14.4-1]
			// [v5 MQTT-3.14.4-2].
			life.expectServerDisconnect(t, old, packet.SessionTakenOver)
			// [v5 MQTT-3.1.2-5] [v3.1.1 MQTT-3.1.2-4] the session, with its
			// subscription, carries over to the new connection.
			if !ack.SessionPresent {
				t.Fatalf("taking over %q: %s, want Session Present 1", id, Describe(ack))
			}
			pub, _ := life.dial(t, packet.V5, ConnectOpts{})
			pub.Publish(&packet.Publish{QoS: packet.QoS1, Topic: []byte(topic), Payload: []byte("moved")})
			if p := life.expectPublish(t, r, waitFor); string(p.Payload) != "moved" {
				t.Fatalf("new connection received %s", Describe(p))
			}
		})
	}
	t.Run("5.0 reason code", func(t *testing.T) {
		t.Parallel()
		id := uniqueID(t)
		old, _ := life.dial(t, packet.V5, ConnectOpts{ClientID: id})
		life.dial(t, packet.V5, ConnectOpts{ClientID: id})
		// [v5 MQTT-3.1.4-3] the old client is told why.
		if _, sent := life.expectServerDisconnect(t, old, packet.SessionTakenOver); !sent {
			t.Fatalf("old connection closed without DISCONNECT 0x8E (Session taken over)")
		}
	})
}

// TestSessionRetainedSurvives checks that retained messages are not part
// of a session: they outlive the session of their publisher
// [v3.1.1 MQTT-3.1.2-7].
func TestSessionRetainedSurvives(t *testing.T) {
	t.Parallel()
	if !features.RetainAvailable {
		t.Skip("broker does not offer retained messages (Retain Available 0)")
	}
	topic := Topic(t)
	CleanRetained(t, topic)
	r, _ := life.dial(t, packet.V311, ConnectOpts{})
	r.Publish(&packet.Publish{QoS: packet.QoS1, Retain: true, Topic: []byte(topic), Payload: []byte("kept")})
	r.Disconnect() // Clean Session 1: the publisher's session ends here.
	sub, _ := life.dial(t, packet.V311, ConnectOpts{})
	life.subscribe(t, sub, topic, packet.QoS1)
	if p := life.expectPublish(t, sub, waitFor); string(p.Payload) != "kept" || !p.Retain {
		t.Fatalf("after the publisher's session ended: %s, want the retained message", Describe(p))
	}
}

// TestSessionV31 checks a persistent MQTT 3.1 session: it is resumed with
// its queued message, and the CONNACK's first byte, reserved in 3.1 (it
// has no Session Present), stays 0.
func TestSessionV31(t *testing.T) {
	t.Parallel()
	id := uniqueID(t)
	topic := Topic(t)
	life.storeSession(t, packet.V31, id, topic)
	pub, _ := life.dial(t, packet.V5, ConnectOpts{})
	pub.Publish(&packet.Publish{QoS: packet.QoS1, Topic: []byte(topic), Payload: []byte("queued")})
	r := DialRaw(t, packet.V31)
	r.Send(r.ConnectPacket(life.persistent(t, packet.V31, id, 0)))
	ev, ok := r.next(waitFor)
	if !ok || ev.raw == nil {
		t.Fatalf("no CONNACK")
	}
	if string(ev.raw) != "\x20\x02\x00\x00" {
		t.Fatalf("3.1 CONNACK [% x], want [20 02 00 00]", ev.raw)
	}
	if p := life.expectPublish(t, r, waitFor); string(p.Payload) != "queued" {
		t.Fatalf("resumed 3.1 session received %s", Describe(p))
	}
}
