package broker

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/event"
	"github.com/skybridge-mq/skybridge/impl/packet"
	tenantpkg "github.com/skybridge-mq/skybridge/impl/tenant"
)

// TestInboxOverflowEvent: a session whose queue overflows is reported with
// an InboxOverflow event when its count of messages dropped for a full
// queue reaches 1, 2, 4, 8…, naming the session, never one per drop. Both
// a connected session (no back-pressure: slow_subscriber_wait_ms 0) and an
// offline persistent one (its queue is a quota) are counted.
func TestInboxOverflowEvent(t *testing.T) {
	t.Parallel()
	p := tenantpkg.NewProvider()
	s := tenantpkg.Default()
	s.SlowSubscriberWaitMs = 0
	if err := p.Set("t", s); err != nil {
		t.Fatal(err)
	}
	clock := env.NewManualClock(time.Unix(1_700_000_000, 0))
	ring := event.NewRing(100)
	cfg := DefaultConfig()
	cfg.Session.MaxQueued, cfg.Session.MaxInflight = 1, 1
	cfg.Settings, cfg.Events = p, ring
	h := &harness{t: t, b: New(cfg, env.Env{Clock: clock, Rand: env.NewRand(1)}, nil), clock: clock}

	subscribeQoS1(h, "online", "x") // one in flight, one queued, then full
	off := h.dial("offline", packet.V311, "t")
	off.connect("offline", false, packet.Properties{})
	off.send(sub(1, "x", 1))
	off.packets()
	off.c.Closed() // the network connection ended: the session stays, offline

	pub := newWindowed(h, "pub", "x", 20)
	pub.step(10)
	pub.step(0)
	if len(pub.acked) != 10 {
		t.Fatalf("%d of 10 acknowledged", len(pub.acked))
	}

	type overflow struct {
		Client string
		Count  uint64
	}
	var got []overflow
	for _, e := range ring.Events() {
		if e.Type == event.InboxOverflow {
			if e.Tenant != "t" {
				t.Errorf("event of tenant %q", e.Tenant)
			}
			got = append(got, overflow{e.ClientID, e.Count})
		}
	}
	// offline: message 1 queued, 2 to 10 dropped (its 1st to 9th drop);
	// online: 1 sent, 2 queued, 3 to 10 dropped (its 1st to 8th).
	want := []overflow{
		{"offline", 1},                // message 2
		{"online", 1}, {"offline", 2}, // message 3
		{"online", 2},  // message 4
		{"offline", 4}, // message 5
		{"online", 4},  // message 6
		{"offline", 8}, // message 9
		{"online", 8},  // message 10
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("InboxOverflow events (-want +got):\n%s", d)
	}
	if n := h.b.Stats().DroppedBy[DropQueueFull].Load(); n != 17 {
		t.Fatalf("%d dropped for a full queue, want 17", n)
	}
}
