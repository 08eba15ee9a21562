package broker

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// dialBatching is dial for a runtime that calls Idle after each batch of
// packets (ConnInfo.IdleEndsBatch, as impl/server and the simulator do):
// the PUBLISHes of a batch share one commit, made at Idle.
func (h *harness) dialBatching(name string, v packet.Version, tenant string) *client {
	cl := &client{h: h, v: v, name: name}
	cl.c = h.b.NewConn(ConnInfo{Listener: "test", DefaultTenant: tenant, Remote: name, IdleEndsBatch: true}, func() {})
	return cl
}

// publisher311 connects a clean 3.1.1 client of tenant t whose runtime
// ends its batches with Idle (dialBatching).
func (h *harness) publisher311(id string) *client {
	h.t.Helper()
	c := h.dialBatching(id, packet.V311, "t")
	c.connect(id, true, packet.Properties{})
	c.expect("CONNACK code=0x00")
	return c
}

// A session's changes reach the store in the order the client made them,
// although a publisher's batch that delivers into the session commits
// later (at its Idle) than the session's next change. Found by the
// simulator (skybridge-sim run --seed 124 --duration 1m): an UNSUBSCRIBE
// left its removal in the session's journal, a publisher's route took it
// into its batch, the SUBSCRIBE of the same filter that followed was
// committed at once, and the removal landed after it: the SUBACKed
// subscription was missing after a power loss.
func TestSessionChangesKeepTheirOrderOnDisk(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// change runs on the subscriber's connection before the publisher's
		// PUBLISH (whose batch is still open), then follow after it.
		change, follow func(d *durableHarness, s *client)
		// check runs after the power loss and the restart; closedAt is
		// when follow ended.
		check func(t *testing.T, d *durableHarness, closedAt time.Time)
	}{
		{
			name:   "unsubscribe then subscribe again",
			change: func(d *durableHarness, s *client) { s.send(unsub(2, "a")) },
			follow: func(d *durableHarness, s *client) { s.send(sub(3, "a", 2)) },
			check: func(t *testing.T, d *durableHarness, _ time.Time) {
				info, err := d.b.Session("t", "s")
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, s := range info.Subscriptions {
					got = append(got, s.Filter)
				}
				if d := cmp.Diff([]string{"a", "b/#"}, got); d != "" {
					t.Fatalf("subscriptions after the power loss (-want +got):\n%s", d)
				}
			},
		},
		{
			// A DISCONNECT that changes the Session Expiry journals the
			// record (still holding the will, as the session is
			// connected); the detach that follows journals it without the
			// will [v5 MQTT-3.1.2-10]. The first must not land last.
			name: "disconnect then detach",
			change: func(d *durableHarness, s *client) {
				s.send(&packet.Disconnect{Properties: expiry(7200)})
			},
			follow: func(d *durableHarness, s *client) { s.c.Closed() },
			check: func(t *testing.T, d *durableHarness, closedAt time.Time) {
				info, err := d.b.Session("t", "s")
				if err != nil {
					t.Fatal(err)
				}
				if info.Expiry != 7200 || info.OfflineSince == nil || !info.OfflineSince.Equal(closedAt) {
					t.Fatalf("after the power loss: session expiry %d, offline since %v; want 7200, since %v", info.Expiry, info.OfflineSince, closedAt)
				}
				// The client disconnected normally: its (retained) will
				// is never published, not at the restart, not later.
				w := d.dial("w", packet.V5, "t")
				w.connect("watch", true, packet.Properties{})
				w.send(sub(1, "will/#", 0))
				d.settle()
				w.expect(connack5, "SUBACK id=1 codes=[0x00]")
				d.clock.Advance(3 * time.Hour)
				d.settle()
				w.expect()
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := env.NewManualClock(time.Unix(1_700_000_000, 0))
			d := newDurable(t, vfs.NewCrashableMem(), clock)
			s := d.dial("s", packet.V5, "t")
			s.send(&packet.Connect{Version: packet.V5, ClientID: []byte("s"), KeepAlive: 30, Properties: expiry(3600),
				WillFlag: true, WillRetain: true, WillTopic: []byte("will/s"), WillPayload: []byte("gone")})
			s.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{
				{Filter: []byte("a"), QoS: 2}, {Filter: []byte("b/#"), QoS: 1}}})
			d.settle()
			s.expect(connack5, "SUBACK id=1 codes=[0x02 0x01]")

			p := d.publisher311("p")

			tt.change(d, s)
			p.send(pub("b/1", "m", 1, 1)) // routed into s; p's batch stays open
			tt.follow(d, s)
			closedAt := clock.Now()
			p.c.Idle() // p's batch ends: its commit goes to the store now
			d.settle()
			p.expect("PUBACK id=1")

			clock.Advance(10 * time.Second)
			d = d.crash(t)
			tt.check(t, d, closedAt)
		})
	}
}

// A topic's retained messages reach the disk in the order the broker
// applied them, whichever publisher's batch ends first: applied at once
// and committed with their publishers' batches, two retained PUBLISHes of
// one topic from two connections reached the disk in the order the
// batches ended, and a restart brought back the older message.
func TestRetainedChangesKeepTheirOrderOnDisk(t *testing.T) {
	t.Parallel()
	clock := env.NewManualClock(time.Unix(1_700_000_000, 0))
	d := newDurable(t, vfs.NewCrashableMem(), clock)
	a, b := d.publisher311("a"), d.publisher311("b")
	retained := func() string {
		ri := d.b.Retained("t", "x", 1, true)
		if len(ri) != 1 {
			return "none"
		}
		return string(ri[0].Payload)
	}
	a.send(&packet.Publish{Topic: []byte("x"), Payload: []byte("first"), QoS: 1, PacketID: 1, Retain: true})
	b.send(&packet.Publish{Topic: []byte("x"), Payload: []byte("second"), QoS: 1, PacketID: 1, Retain: true})
	b.c.Idle()
	d.settle()
	a.c.Idle()
	d.settle()
	a.expect("PUBACK id=1")
	b.expect("PUBACK id=1")
	if got := retained(); got != "second" {
		t.Fatalf("retained message %q, want the last one published, second", got)
	}
	d = d.crash(t)
	if got := retained(); got != "second" {
		t.Fatalf("after the power loss the retained message is %q, want second", got)
	}
}

func unsub(id uint16, filters ...string) *packet.Unsubscribe {
	u := &packet.Unsubscribe{PacketID: id}
	for _, f := range filters {
		u.Filters = append(u.Filters, []byte(f))
	}
	return u
}
