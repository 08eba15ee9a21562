package broker

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// Session expiry and will delay on a manual clock, at their boundaries: a
// session is there up to the last instant of its Session Expiry Interval
// and gone at its end; a will goes exactly at its delay, or at the end of
// the session when that comes first [v5 MQTT-3.1.3-9] [v5 MQTT-3.1.2-23].

// watcher subscribes to will/# on h and returns the connection.
func watcher(h *harness) *client {
	h.t.Helper()
	w := h.dial("watch", packet.V5, "t")
	w.connect("watch", true, packet.Properties{})
	w.expect(connack5)
	w.send(sub(1, "will/#", 1))
	w.expect("SUBACK id=1 codes=[0x01]")
	return w
}

// leave connects a 5.0 client with the given Session Expiry and a will
// delayed by delay (0: none), subscribes it and drops its connection
// (no DISCONNECT: the will goes).
func leave(h *harness, id string, expirySecs, delay uint32) {
	h.t.Helper()
	c := h.dial(id, packet.V5, "t")
	c.connectWithWill(id, "will/"+id, delay, expiry(expirySecs))
	c.expect(connack5)
	c.send(sub(1, "q/"+id, 1))
	c.expect("SUBACK id=1 codes=[0x01]")
	c.c.Closed()
}

func hasSession(h *harness, id string) bool {
	_, err := h.b.Session("t", id)
	return err == nil
}

func TestSessionExpiryBoundary(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	leave(h, "e", 10, 0)
	h.clock.Advance(10*time.Second - time.Nanosecond)
	if !hasSession(h, "e") {
		t.Fatal("the session is gone before its expiry interval ran out")
	}
	h.clock.Advance(time.Nanosecond)
	if hasSession(h, "e") {
		t.Fatal("the session is still there at the end of its expiry interval")
	}

	// Seen by the client: resumed one instant before the end, a fresh
	// session at the end [v5 MQTT-3.2.2-2] [v5 MQTT-3.2.2-3].
	for _, tt := range []struct {
		after   time.Duration
		present bool
	}{{10*time.Second - time.Millisecond, true}, {10 * time.Second, false}} {
		id := "r" + tt.after.String()
		leave(h, id, 10, 0)
		h.clock.Advance(tt.after)
		c := h.dial(id, packet.V5, "t")
		c.connect(id, false, expiry(10))
		want := connack5
		if tt.present {
			want = "CONNACK present code=0x00 receive-max=1024 alias-max=64 max-packet=1048576"
		}
		c.expect(want)
	}
}

func TestWillDelayBoundary(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		expiry, delay uint32
		// at is when the will goes; gone says whether the session ends
		// with it.
		at   time.Duration
		gone bool
	}{
		{"delay within the session", 100, 5, 5 * time.Second, false},
		{"delay beyond the session: the will goes at its end", 10, 30, 10 * time.Second, true},
		{"no session beyond the connection: at once", 0, 30, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			w := watcher(h)
			leave(h, "w", tt.expiry, tt.delay)
			if tt.at > 0 {
				h.clock.Advance(tt.at - time.Nanosecond)
				w.expect() // not early
				if !hasSession(h, "w") {
					t.Fatal("the session ended before the will's instant")
				}
				h.clock.Advance(time.Nanosecond)
			}
			w.expect(`PUBLISH topic="will/w" qos=0 payload="gone"`) // not late
			if hasSession(h, "w") == tt.gone {
				t.Fatalf("session present %v at the will's instant, want %v", !tt.gone, !tt.gone)
			}
			h.clock.Advance(time.Hour)
			w.expect() // once
		})
	}
}

// After a restart, the timers of a recovered session count from when it
// went offline, the time the broker was down included.
func TestTimersCountFromOfflineAcrossRestart(t *testing.T) {
	t.Parallel()
	clock := env.NewManualClock(time.Unix(1_700_000_000, 0))
	d := newDurable(t, vfs.NewCrashableMem(), clock)
	c := d.dial("c", packet.V5, "t")
	c.connectWithWill("w", "will/w", 5, expiry(10))
	d.settle()
	c.expect(connack5)
	c.c.Closed()
	d.settle()
	clock.Advance(3 * time.Second)
	d = d.crash(t) // down for no time: the restart is 3 s after the close
	w := watcher(d.harness)
	d.clock.Advance(2*time.Second - time.Nanosecond)
	d.settle()
	w.expect()
	d.clock.Advance(time.Nanosecond)
	d.settle()
	w.expect(`PUBLISH topic="will/w" qos=0 payload="gone"`)
	d.clock.Advance(5*time.Second - time.Nanosecond)
	if _, err := d.b.Session("t", "w"); err != nil {
		t.Fatalf("the session is gone before its expiry: %v", err)
	}
	d.clock.Advance(time.Nanosecond)
	d.settle()
	if _, err := d.b.Session("t", "w"); err == nil {
		t.Fatal("the session outlived its expiry interval counted from the close")
	}
}
