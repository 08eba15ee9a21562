package broker

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/store"
	tenantpkg "github.com/skybridge-mq/skybridge/impl/tenant"
)

// Back-pressure from slow subscribers (backpressure.go), on a manual clock:
// every wait below is virtual time, nothing sleeps.

// newBackpressure returns a harness whose sessions hold at most queued
// messages waiting and inflight in flight, with tenant settings adjusted.
func newBackpressure(t *testing.T, queued int, inflight uint16, st store.Store, adjust func(*tenantpkg.Settings)) *harness {
	t.Helper()
	p := tenantpkg.NewProvider()
	if adjust != nil {
		s := tenantpkg.Default()
		adjust(&s)
		if err := p.Set("t", s); err != nil {
			t.Fatal(err)
		}
	}
	clock := env.NewManualClock(time.Unix(1_700_000_000, 0))
	cfg := DefaultConfig()
	cfg.Session.MaxQueued = queued
	cfg.Session.MaxInflight = inflight
	cfg.Settings = p
	return &harness{t: t, b: New(cfg, env.Env{Clock: clock, Rand: env.NewRand(1)}, st), clock: clock}
}

// pkt is a received packet, reduced to what these tests look at.
type pkt struct {
	typ     packet.Type
	id      uint16
	topic   string
	payload string
	code    packet.ReasonCode
}

// packets drains the connection's output.
func (cl *client) packets() []pkt {
	cl.h.t.Helper()
	var got []pkt
	for {
		out, _ := cl.c.Output(cl.spare)
		if len(out) == 0 {
			return got
		}
		d := packet.NewDecoder(bytes.NewReader(out), cl.v)
		for {
			p, err := d.Next()
			if err != nil {
				break
			}
			switch p := p.(type) {
			case *packet.Publish:
				got = append(got, pkt{typ: packet.PUBLISH, id: p.PacketID, topic: string(p.Topic), payload: string(p.Payload)})
			case *packet.Ack:
				got = append(got, pkt{typ: p.PacketType, id: p.PacketID, code: p.ReasonCode})
			default:
				got = append(got, pkt{typ: p.Type()})
			}
		}
		cl.spare = out[:0]
	}
}

func (cl *client) puback(id uint16) {
	cl.c.Handle(packet.FixedHeader{Type: packet.PUBACK, Remaining: 2}, []byte{byte(id >> 8), byte(id)})
}

// windowed is a publisher that keeps at most window QoS 1 messages
// unacknowledged, as clients do.
type windowed struct {
	cl      *client
	topic   string
	window  int
	sent    int
	next    uint16
	pending map[uint16]string // packet id -> payload
	acked   []string
	ackAt   map[string]time.Time
}

func newWindowed(h *harness, name, topic string, window int) *windowed {
	cl := h.dial(name, packet.V311, "t")
	cl.connect(name, true, packet.Properties{})
	cl.packets()
	return &windowed{cl: cl, topic: topic, window: window, pending: map[uint16]string{}, ackAt: map[string]time.Time{}}
}

// step reads the acknowledgements and publishes up to n messages within
// the window; it returns how many it published.
func (w *windowed) step(n int) int {
	for _, p := range w.cl.packets() {
		if p.typ != packet.PUBACK {
			continue
		}
		pl, ok := w.pending[p.id]
		if !ok {
			w.cl.h.t.Fatalf("%s: PUBACK id=%d for nothing pending", w.cl.name, p.id)
		}
		delete(w.pending, p.id)
		w.acked = append(w.acked, pl)
		w.ackAt[pl] = w.cl.h.clock.Now()
	}
	k := 0
	for ; k < n && len(w.pending) < w.window; k++ {
		w.next++
		pl := fmt.Sprintf("%s-%d", w.cl.name, w.sent)
		w.sent++
		w.pending[w.next] = pl
		w.cl.send(pub(w.topic, pl, 1, w.next))
	}
	return k
}

// slowSub is a subscriber that acknowledges at most rate PUBLISHes per step.
type slowSub struct {
	cl      *client
	backlog []uint16
	got     []pkt
}

func (s *slowSub) step(rate int) {
	for _, p := range s.cl.packets() {
		if p.typ == packet.PUBLISH {
			s.got = append(s.got, p)
			s.backlog = append(s.backlog, p.id)
		}
	}
	for i := 0; i < rate && len(s.backlog) > 0; i++ {
		s.cl.puback(s.backlog[0])
		s.backlog = s.backlog[1:]
	}
}

func subscribeQoS1(h *harness, name, filter string) *slowSub {
	cl := h.dial(name, packet.V311, "t")
	cl.connect(name, true, packet.Properties{})
	cl.send(sub(1, filter, 1))
	cl.packets()
	return &slowSub{cl: cl}
}

// TestBackpressureFanInLosesNothing: four publishers, each with a window of
// five, send to one subscriber that acknowledges two messages per
// millisecond, behind a queue of 8 and a window of 4. Before, the broker
// acknowledged every PUBLISH and dropped what did not fit; now the
// acknowledgements wait for room, so the publishers go at the
// subscriber's pace and every acknowledged message arrives, in each
// publisher's order, while the session never holds more than its bounds.
func TestBackpressureFanInLosesNothing(t *testing.T) {
	t.Parallel()
	const queued, inflight, perPub = 8, 4, 60
	h := newBackpressure(t, queued, inflight, nil, nil)
	s := subscribeQoS1(h, "sub", "f/+")
	var pubs []*windowed
	for i := range 4 {
		pubs = append(pubs, newWindowed(h, fmt.Sprint("p", i), fmt.Sprint("f/", i), 5))
	}
	start := h.clock.Now()
	maxParked := 0
	for step := 0; ; step++ {
		if step > 10000 {
			t.Fatal("no progress")
		}
		done := len(s.got) == 4*perPub
		for _, p := range pubs {
			p.step(perPub - p.sent)
			done = done && len(p.acked) == perPub
		}
		if done {
			break
		}
		s.step(2)
		info, err := h.b.Session("t", "sub")
		if err != nil {
			t.Fatal(err)
		}
		if info.Queued > queued || info.Inflight > inflight {
			t.Fatalf("session holds %d queued, %d in flight", info.Queued, info.Inflight)
		}
		maxParked = max(maxParked, info.Parked)
		h.clock.Advance(time.Millisecond)
	}
	took := h.clock.Now().Sub(start)

	st := h.b.Stats()
	if n := st.Dropped.Load(); n != 0 {
		t.Fatalf("%d messages dropped", n)
	}
	if maxParked == 0 || st.Throttled[ThrottleSlowSubscriber].Load() == 0 {
		t.Fatalf("no acknowledgement was held (max parked %d)", maxParked)
	}
	if maxParked > 4*5 {
		t.Fatalf("%d deliveries parked, more than the publishers' windows", maxParked)
	}
	// Everything acknowledged arrived, in each publisher's order.
	next := map[string]int{}
	for _, p := range s.got {
		var name string
		var n int
		if _, err := fmt.Sscanf(p.payload, "p%d-%d", new(int), &n); err != nil {
			t.Fatalf("payload %q", p.payload)
		}
		name = p.payload[:2]
		if n != next[name] {
			t.Fatalf("%s: got message %d, want %d", name, n, next[name])
		}
		next[name]++
	}
	for _, p := range pubs {
		if next[p.cl.name] != perPub {
			t.Fatalf("%s: %d of %d delivered", p.cl.name, next[p.cl.name], perPub)
		}
	}
	// 240 messages at 2 per millisecond: the publishers went at the
	// subscriber's pace, with no wait anywhere near the bound.
	if took > 200*time.Millisecond {
		t.Fatalf("took %v", took)
	}
}

// TestBackpressureStuckSubscriber: a subscriber that never acknowledges
// holds its publishers back for the bound (5 s by default), no longer; then
// what waited is dropped and counted, the acknowledgements go, and until
// the subscriber's queue has drained the publishers are not held again.
func TestBackpressureStuckSubscriber(t *testing.T) {
	t.Parallel()
	h := newBackpressure(t, 4, 2, nil, nil)
	s := subscribeQoS1(h, "stuck", "x")
	p := newWindowed(h, "p", "x", 3)

	// 2 in flight and 4 queued are acknowledged at once; the next 3 wait.
	for range 10 {
		p.step(1)
	}
	if len(p.acked) != 6 || len(p.pending) != 3 {
		t.Fatalf("acked %d, pending %d; want 6 and 3", len(p.acked), len(p.pending))
	}
	h.clock.Advance(5*time.Second - time.Millisecond)
	p.step(0)
	if len(p.acked) != 6 {
		t.Fatalf("acknowledged before the bound: %d", len(p.acked))
	}
	h.clock.Advance(time.Millisecond)
	p.step(0)
	if len(p.acked) != 9 {
		t.Fatalf("after the bound: %d acknowledged, want 9", len(p.acked))
	}
	st := h.b.Stats()
	if got := st.DroppedBy[DropQueueFull].Load(); got != 3 {
		t.Fatalf("queue_full drops = %d, want the 3 that waited", got)
	}
	if st.Stalls.Load() != 1 {
		t.Fatalf("stalls = %d", st.Stalls.Load())
	}
	info, _ := h.b.Session("t", "stuck")
	if !info.Stalled || info.Dropped.QueueFull != 3 || info.Parked != 0 {
		t.Fatalf("session: stalled %v, dropped %d, parked %d", info.Stalled, info.Dropped.QueueFull, info.Parked)
	}

	// Stalled: the publisher is no longer held; what does not fit is
	// dropped at once, as before back-pressure.
	p.step(3)
	p.step(0)
	if len(p.acked) != 12 || st.DroppedBy[DropQueueFull].Load() != 6 {
		t.Fatalf("stalled: %d acknowledged, %d dropped", len(p.acked), st.DroppedBy[DropQueueFull].Load())
	}

	// The subscriber recovers: once its queue is down to half its bound,
	// back-pressure is back.
	for range 3 {
		s.step(10)
	}
	info, _ = h.b.Session("t", "stuck")
	if info.Stalled {
		t.Fatalf("still stalled with %d queued", info.Queued)
	}
	for range 10 {
		p.step(1)
	}
	info, _ = h.b.Session("t", "stuck")
	if info.Parked == 0 || len(p.pending) == 0 {
		t.Fatalf("no back-pressure after recovery: parked %d, pending %d", info.Parked, len(p.pending))
	}
	// Everything delivered so far came in order.
	last := -1
	for _, g := range s.got {
		var n int
		fmt.Sscanf(g.payload, "p-%d", &n)
		if n <= last {
			t.Fatalf("out of order: %d after %d", n, last)
		}
		last = n
	}
}

// TestBackpressureFastAndStuckSubscriber documents the trade-off: a fast
// subscriber of the same topic as a stuck one is held to the stuck one's
// pace, for one bound, no more. The publisher never waits longer than the
// bound for an acknowledgement, and the fast subscriber loses nothing.
func TestBackpressureFastAndStuckSubscriber(t *testing.T) {
	t.Parallel()
	h := newBackpressure(t, 100, 10, nil, nil)
	fast := subscribeQoS1(h, "fast", "x")
	subscribeQoS1(h, "stuck", "x")
	p := newWindowed(h, "p", "x", 10)
	start := h.clock.Now()
	var firstAfterBound int
	for now := time.Duration(0); now < 8*time.Second; now += time.Millisecond {
		p.step(10)
		fast.step(1000)
		if now == 5*time.Second+time.Millisecond {
			firstAfterBound = len(fast.got)
		}
		h.clock.Advance(time.Millisecond)
	}
	p.step(0)
	fast.step(1000)
	// During the bound: the stuck subscriber's window and queue (110) and
	// the publisher's window; after it: 10 per millisecond.
	if firstAfterBound > 130 {
		t.Fatalf("%d delivered during the bound, expected the publisher to be held", firstAfterBound)
	}
	if after := len(fast.got) - firstAfterBound; after < 10*2900 {
		t.Fatalf("only %d delivered in the 3 s after the bound", after)
	}
	t.Logf("fast subscriber: %d messages during the bound, %d in the 3 s after", firstAfterBound, len(fast.got)-firstAfterBound)
	waited := time.Duration(0)
	prev := start
	for _, pl := range p.acked {
		if d := p.ackAt[pl].Sub(prev); d > waited {
			waited = d
		}
		prev = p.ackAt[pl]
	}
	if waited > 5*time.Second+time.Millisecond {
		t.Fatalf("the publisher waited %v for an acknowledgement", waited)
	}
	// The fast subscriber got every acknowledged message.
	if len(fast.got) != len(p.acked) {
		t.Fatalf("fast subscriber got %d of %d acknowledged", len(fast.got), len(p.acked))
	}
}

// TestBackpressureAckOrder: an acknowledgement held for a slow subscriber
// holds the later ones of the same connection, even for a message that
// reached nobody [v5 MQTT-4.6.0-2] [v3.1.1 MQTT-4.6.0-2].
func TestBackpressureAckOrder(t *testing.T) {
	t.Parallel()
	h := newBackpressure(t, 1, 1, nil, nil)
	s := subscribeQoS1(h, "sub", "slow")
	p := h.dial("p", packet.V5, "t")
	p.connect("p", true, packet.Properties{})
	p.packets()
	p.send(pub("slow", "1", 1, 1)) // in flight
	p.send(pub("slow", "2", 1, 2)) // queued
	p.send(pub("slow", "3", 1, 3)) // parked
	p.send(pub("nobody", "4", 1, 4))
	p.send(pub("slow", "5", 0, 0))
	got := p.packets()
	if len(got) != 2 || got[0].id != 1 || got[1].id != 2 {
		t.Fatalf("publisher got %v, want PUBACKs 1 and 2 only", got)
	}
	s.step(1) // PUBACK 1: room for 3
	got = p.packets()
	want := []pkt{{typ: packet.PUBACK, id: 3}, {typ: packet.PUBACK, id: 4, code: packet.NoMatchingSubscribers}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("publisher got %v, want %v", got, want)
	}
}

// TestBackpressureSubscriberLeaves: the publishers held by a subscriber
// whose session ends (clean session, connection closed) go at once; its
// queue and what waited for it go with it, uncounted.
func TestBackpressureSubscriberLeaves(t *testing.T) {
	t.Parallel()
	h := newBackpressure(t, 1, 1, nil, nil)
	s := subscribeQoS1(h, "sub", "x")
	p := newWindowed(h, "p", "x", 5)
	p.step(5)
	p.step(0)
	if len(p.pending) != 3 {
		t.Fatalf("%d pending", len(p.pending))
	}
	s.cl.c.Closed()
	p.step(0)
	if len(p.pending) != 0 {
		t.Fatalf("%d still pending after the subscriber left", len(p.pending))
	}
	if n := h.b.Stats().Dropped.Load(); n != 0 {
		t.Fatalf("%d drops counted", n)
	}
	if n := h.clock.Pending() - pendingTenantChecks(h.b); n != 0 {
		t.Fatalf("%d timers left", n)
	}
}

// pendingTenantChecks counts the tenants whose freeing check is armed.
func pendingTenantChecks(b *Broker) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, t := range b.tenants {
		if t.freeTimer != nil {
			n++
		}
	}
	return n
}

// TestBackpressurePersistentReconnect: deliveries parked on a persistent
// subscriber stay parked through a short disconnection and enter its queue
// when it has room after reconnecting.
func TestBackpressurePersistentReconnect(t *testing.T) {
	t.Parallel()
	h := newBackpressure(t, 1, 1, nil, nil)
	cl := h.dial("sub", packet.V311, "t")
	cl.connect("sub", false, packet.Properties{})
	cl.send(sub(1, "x", 1))
	cl.packets()
	p := newWindowed(h, "p", "x", 5)
	p.step(4)
	p.step(0)
	if len(p.pending) != 2 {
		t.Fatalf("%d pending", len(p.pending))
	}
	cl.c.Closed()
	h.clock.Advance(time.Second)
	s := &slowSub{cl: h.dial("sub2", packet.V311, "t")}
	s.cl.connect("sub", false, packet.Properties{})
	for range 10 {
		s.step(10)
		p.step(0)
	}
	if len(p.pending) != 0 || len(p.acked) != 4 {
		t.Fatalf("pending %d, acked %d", len(p.pending), len(p.acked))
	}
	var payloads []string
	for _, g := range s.got {
		payloads = append(payloads, g.payload)
	}
	// The first was in flight (sent again), then the queue, then what waited.
	if fmt.Sprint(payloads) != "[p-0 p-1 p-2 p-3]" {
		t.Fatalf("got %v", payloads)
	}
	if n := h.b.Stats().Dropped.Load(); n != 0 {
		t.Fatalf("%d dropped", n)
	}
}

// TestBackpressureWaitZero: slow_subscriber_wait_ms 0 keeps the old
// behaviour: dropped at once, acknowledged at once.
func TestBackpressureWaitZero(t *testing.T) {
	t.Parallel()
	h := newBackpressure(t, 1, 1, nil, func(s *tenantpkg.Settings) { s.SlowSubscriberWaitMs = 0 })
	subscribeQoS1(h, "sub", "x")
	p := newWindowed(h, "p", "x", 5)
	p.step(5)
	p.step(0)
	if len(p.acked) != 5 || h.b.Stats().DroppedBy[DropQueueFull].Load() != 3 {
		t.Fatalf("acked %d, dropped %d", len(p.acked), h.b.Stats().DroppedBy[DropQueueFull].Load())
	}
}

// TestBackpressureFloodingPublisher: a 3.1.1 publisher that ignores flow
// control (more held acknowledgements than the Receive Maximum) has its
// reading paused, and beyond that its messages are dropped as before
// rather than held without bound.
func TestBackpressureFloodingPublisher(t *testing.T) {
	t.Parallel()
	h := newBackpressure(t, 1, 1, nil, func(s *tenantpkg.Settings) { s.ReceiveMaximum = 4 })
	subscribeQoS1(h, "sub", "x")
	p := h.dial("p", packet.V311, "t")
	p.connect("p", true, packet.Properties{})
	p.packets()
	for i := range 10 {
		p.send(pub("x", fmt.Sprint(i), 1, uint16(i+1)))
	}
	if d := p.c.InboundPause(100); d <= 0 {
		t.Fatal("reading not paused")
	}
	info, _ := h.b.Session("t", "sub")
	if info.Parked != 4 {
		t.Fatalf("%d parked, want the Receive Maximum (4)", info.Parked)
	}
	if n := h.b.Stats().DroppedBy[DropQueueFull].Load(); n != 4 {
		t.Fatalf("%d dropped, want 4", n)
	}
}

// manualStore is a store.Store whose commits complete when the test says.
type manualStore struct {
	mu      sync.Mutex
	pending []func(error)
}

func (s *manualStore) Commit(_ *store.Batch, done func(error)) {
	s.mu.Lock()
	s.pending = append(s.pending, done)
	s.mu.Unlock()
}
func (s *manualStore) Load(store.Visitor) error { return nil }
func (s *manualStore) Close() error             { return nil }

func (s *manualStore) step() {
	s.mu.Lock()
	p := s.pending
	s.pending = nil
	s.mu.Unlock()
	for _, f := range p {
		if f != nil {
			f(nil)
		}
	}
}

// TestBackpressureDurable: a delivery parked on a persistent subscriber
// becomes a queue entry when room appears; the publisher's acknowledgement
// waits for that entry to be durable too.
func TestBackpressureDurable(t *testing.T) {
	t.Parallel()
	st := &manualStore{}
	h := newBackpressure(t, 1, 1, st, nil)
	cl := h.dial("sub", packet.V311, "t")
	cl.connect("sub", false, packet.Properties{})
	st.step()
	cl.send(sub(1, "x", 1))
	st.step()
	s := &slowSub{cl: cl}
	s.step(0)
	p := newWindowed(h, "p", "x", 5)
	p.step(3)
	st.step()
	p.step(0)
	if len(p.acked) != 2 || len(p.pending) != 1 {
		t.Fatalf("acked %d, pending %d", len(p.acked), len(p.pending))
	}
	s.step(1) // room: the parked delivery is queued and journaled
	p.step(0)
	if len(p.pending) != 1 {
		t.Fatal("acknowledged before its queue entry was durable")
	}
	st.step()
	p.step(0)
	if len(p.pending) != 0 || len(p.acked) != 3 {
		t.Fatalf("after the commit: acked %d, pending %d", len(p.acked), len(p.pending))
	}
}
