package conformance

// Keep alive, PINGREQ and PINGRESP (5.0 sections 3.1.2.10, 3.2.2.3.14,
// 3.12, 3.13, 4.2; 3.1.1 sections 3.1.2.10, 3.12, 3.13).

import (
	"fmt"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// lifeKeepAliveSlack is how late after one and a half keep-alive periods a
// broker may close a silent connection: timers tick, and a broker may
// count whole seconds.
const lifeKeepAliveSlack = time.Second

// expectKeepAliveClose checks that r, silent since sent (just before its
// CONNECT), is closed between 1.5 times keepAlive after sent and
// lifeKeepAliveSlack later than that after acked (when its CONNACK arrived).
// A 5.0 DISCONNECT before the close must say Keep Alive timeout.
func (lifeKit) expectKeepAliveClose(t testing.TB, r *Raw, keepAlive time.Duration, sent, acked time.Time) {
	t.Helper()
	limit := keepAlive * 3 / 2
	res := life.collectClose(r, limit+lifeKeepAliveSlack+time.Second)
	if !res.closed {
		t.Fatalf("connection silent for %v with keep alive %v still open (received %v)", time.Since(acked), keepAlive, res)
	}
	if early := res.at.Sub(sent); early < limit {
		t.Fatalf("keep alive %v: connection closed after %v of silence, before one and a half periods (%v)", keepAlive, early, limit)
	}
	if late := res.at.Sub(acked); late > limit+lifeKeepAliveSlack {
		t.Fatalf("keep alive %v: connection closed after %v of silence, want about %v", keepAlive, late, limit)
	}
	for i, p := range res.packets {
		d, ok := p.(*packet.Disconnect)
		if !ok || r.V != packet.V5 || i != len(res.packets)-1 || d.ReasonCode != packet.KeepAliveTimeout ||
			d.Properties.Has(packet.PropSessionExpiry) {
			t.Fatalf("before closing for keep alive the broker sent %v; only a DISCONNECT 0x8D may come", res)
		}
	}
}

// TestKeepAliveTimeout checks that a connection silent for one and a half
// times its keep alive of 1 s is closed, no sooner and not much later
// [v5 MQTT-3.1.2-22] [v5 MQTT-3.2.2-22] [v3.1.1 MQTT-3.1.2-24], as if the
// network had failed: the will is published [v5 MQTT-3.1.2-8]
// [v3.1.1 MQTT-3.1.2-8].
func TestKeepAliveTimeout(t *testing.T) {
	t.Parallel()
	for _, v := range life.versions() {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			topic := Topic(t)
			sub := life.subscriber(t, topic, packet.QoS1)
			r := DialRaw(t, v)
			sent := time.Now()
			r.Send(r.ConnectPacket(ConnectOpts{KeepAlive: 1, Will: life.will(topic, packet.QoS1, false, "timed out")}))
			ack := life.expectAccepted(t, r)
			acked := time.Now()
			keepAlive := time.Second
			if ack.Properties.Has(packet.PropServerKeepAlive) {
				// The broker imposes its own keep alive [v5 MQTT-3.1.2-22].
				keepAlive = time.Duration(ack.Properties.ServerKeepAlive) * time.Second
				if keepAlive > 2*time.Second {
					t.Skipf("broker set Server Keep Alive %v: too long to wait for", keepAlive)
				}
			}
			// The deliberate wait of this test: the keep-alive timeout.
			life.expectKeepAliveClose(t, r, keepAlive, sent, acked)
			if p := life.expectPublish(t, sub, waitFor); string(p.Payload) != "timed out" {
				t.Fatalf("got %s, want the will", Describe(p))
			}
		})
	}
}

// TestServerKeepAlive checks a Server Keep Alive the broker announces: it
// applies that value, not the client's [v5 MQTT-3.1.2-22]. The broker is
// asked with a keep alive of 0 (off) and 65535 seconds.
func TestServerKeepAlive(t *testing.T) {
	t.Parallel()
	for _, ka := range []uint16{0, 65535} {
		t.Run(fmt.Sprint(ka), func(t *testing.T) {
			t.Parallel()
			r := DialRaw(t, packet.V5)
			sent := time.Now()
			c := r.ConnectPacket(ConnectOpts{})
			c.KeepAlive = ka
			r.Send(c)
			ack := life.expectAccepted(t, r)
			acked := time.Now()
			if !ack.Properties.Has(packet.PropServerKeepAlive) {
				t.Skipf("broker announced no Server Keep Alive for a keep alive of %d", ka)
			}
			s := ack.Properties.ServerKeepAlive
			if s == 0 {
				return // keep alive switched off: nothing to time
			}
			if s > 2 {
				t.Skipf("broker announced Server Keep Alive %d s: too long to wait for", s)
			}
			life.expectKeepAliveClose(t, r, time.Duration(s)*time.Second, sent, acked)
		})
	}
}

// TestKeepAliveActivity checks that a client with a keep alive of 1 s that
// sends a packet every 0.5 s stays connected past one and a half periods,
// whether it sends PINGREQs, each answered with a PINGRESP
// [v5 MQTT-3.12.4-1] [v3.1.1 MQTT-3.12.4-1], or other packets.
func TestKeepAliveActivity(t *testing.T) {
	t.Parallel()
	topic := Topic(t)
	type conn struct {
		name string
		r    *Raw
		ping bool
	}
	var conns []conn
	for _, v := range life.versions() {
		for _, ping := range []bool{true, false} {
			r, _ := life.dial(t, v, ConnectOpts{KeepAlive: 1})
			conns = append(conns, conn{fmt.Sprintf("%v ping=%v", v, ping), r, ping})
		}
	}
	// The client's own pacing: every 500 ms for 2.5 s in all, well past
	// the 1.5 s after which silence would end the connection, with 1 s of
	// margin for a loaded machine (the race detector on two cores).
	const rounds = 5
	for i := 0; i < rounds; i++ {
		time.Sleep(500 * time.Millisecond)
		for _, c := range conns {
			if c.ping {
				c.r.Send(&packet.Pingreq{})
			} else {
				c.r.Send(&packet.Publish{Topic: []byte(topic), Payload: []byte("alive")})
			}
		}
	}
	for _, c := range conns {
		if c.ping {
			for i := 0; i < rounds; i++ {
				c.r.ExpectNext(packet.PINGRESP)
			}
		}
		c.r.Send(&packet.Pingreq{})
		c.r.ExpectNext(packet.PINGRESP)
	}
}

// TestPingStream checks that the broker reads MQTT as a byte stream
// [v5 MQTT-4.2-1]: a CONNECT written one byte at a time and a burst of
// PINGREQs in one write are all understood, each PINGREQ answered in turn
// [v5 MQTT-3.12.4-1] [v3.1.1 MQTT-3.12.4-1].
func TestPingStream(t *testing.T) {
	t.Parallel()
	for _, v := range life.versions() {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			r := DialRaw(t, v)
			for _, b := range life.encodeConnect(t, r, ConnectOpts{}, nil) {
				r.SendBytes([]byte{b})
			}
			life.expectAccepted(t, r)
			const n = 20
			var burst []byte
			for i := 0; i < n; i++ {
				burst = append(burst, life.pingreq()...)
			}
			r.SendBytes(burst)
			for i := 0; i < n; i++ {
				r.ExpectNext(packet.PINGRESP)
			}
		})
	}
}
