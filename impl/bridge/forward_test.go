package bridge

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
)

// fakeConn records what the forwarder publishes.
type fakeConn struct {
	mu   sync.Mutex
	sent []sent
	lim  limits
	err  error
}

type sent struct {
	seq     uint64
	payload string
	qos     byte
	retain  bool
}

func (c *fakeConn) publish(r *record, qos byte, retain bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	c.sent = append(c.sent, sent{r.seq, string(r.payload), qos, retain})
	return nil
}
func (c *fakeConn) done() <-chan struct{} { return nil }
func (c *fakeConn) limits() limits        { return c.lim }
func (c *fakeConn) close(bool)            {}

func (c *fakeConn) take() []sent {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sent
	c.sent = nil
	return s
}

// forwarderRig is a link with one forwarder (out) whose sink is a fake
// connection; pump runs synchronously.
type forwarderRig struct {
	t    *testing.T
	l    *link
	f    *forwarder
	conn *fakeConn
}

func newRig(t *testing.T, window int, lim limits) *forwarderRig {
	cfg := BridgeConfig{Name: "x", Remote: Endpoint{ReconnectMin: 30 * time.Millisecond}}
	l := &link{cfg: cfg, log: slog.New(slog.DiscardHandler)}
	q, err := openQueue(vfs.NewMem(), "q", queueOptions{maxMessages: 1000, maxBytes: 1 << 20, dropOldest: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.close() })
	l.q = q
	conn := &fakeConn{lim: lim}
	sink := &endpoint{cfg: cfg.Remote, cur: conn, gen: 1, connected: true, log: l.log}
	f := newForwarder(l, dirOut, sink, window)
	l.fwd[dirOut] = f
	l.rem, l.local = sink, &endpoint{}
	l.fwd[dirIn] = newForwarder(l, dirIn, l.local, 1)
	f.up(1, lim)
	return &forwarderRig{t, l, f, conn}
}

func (r *forwarderRig) add(rec *record) {
	r.t.Helper()
	done := make(chan error, 1)
	if _, err := r.l.q.append(dirOut, rec.encode(nil), func(err error) { done <- err }); err != nil {
		r.t.Fatal(err)
	}
	if err := <-done; err != nil {
		r.t.Fatal(err)
	}
}

func (r *forwarderRig) pump() []sent {
	for r.f.pump() {
	}
	return r.conn.take()
}

func msg(p string) *record { return &record{qos: 1, topic: "t", payload: []byte(p)} }

func TestForwarderWindowOrderAndAcks(t *testing.T) {
	r := newRig(t, 3, limits{receiveMax: 100, maxQoS: 2, retain: true})
	for i := range 7 {
		r.add(msg(fmt.Sprint("m", i)))
	}
	got := r.pump()
	want := []sent{{1, "m0", 1, false}, {2, "m1", 1, false}, {3, "m2", 1, false}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(sent{})); diff != "" {
		t.Fatalf("first window (-want +got):\n%s", diff)
	}
	// Acknowledged out of order: the window refills in queue order.
	r.f.acked(1, 2, 0)
	r.f.acked(1, 1, 0x10) // no matching subscribers: still delivered
	got = r.pump()
	if diff := cmp.Diff([]sent{{4, "m3", 1, false}, {5, "m4", 1, false}}, got, cmp.AllowUnexported(sent{})); diff != "" {
		t.Fatalf("refill (-want +got):\n%s", diff)
	}
	// Refused for good: dropped and counted.
	r.f.acked(1, 3, 0x87)
	r.f.acked(1, 4, 0)
	r.f.acked(1, 5, 0)
	got = r.pump()
	if len(got) != 2 || got[0].seq != 6 || got[1].seq != 7 {
		t.Fatalf("rest: %+v", got)
	}
	if s := r.l.stats().Out; s.Forwarded != 4 || s.Dropped.Rejected != 1 || s.Queued != 2 {
		t.Fatalf("stats: %+v", s)
	}
	// The connection drops: what was in flight goes again, oldest first.
	r.f.down(1)
	r.f.acked(1, 6, 0) // a late answer from the old connection still counts
	r.f.up(2, limits{receiveMax: 100, maxQoS: 2, retain: true})
	r.f.sink.gen = 2
	got = r.pump()
	if len(got) != 1 || got[0].seq != 7 {
		t.Fatalf("after reconnecting: %+v", got)
	}
	// Answers for gen 1 no longer move the window of gen 2.
	r.f.mu.Lock()
	inflight := len(r.f.inflight)
	r.f.mu.Unlock()
	if inflight != 1 {
		t.Fatalf("in flight %d, want 1", inflight)
	}
}

func TestForwarderTransientRefusal(t *testing.T) {
	r := newRig(t, 10, limits{receiveMax: 100, maxQoS: 2, retain: true})
	for i := range 4 {
		r.add(msg(fmt.Sprint("m", i)))
	}
	if got := r.pump(); len(got) != 4 {
		t.Fatalf("sent %d", len(got))
	}
	r.f.acked(1, 1, 0)
	r.f.acked(1, 2, 0x97) // quota exceeded: keep it, pause
	r.add(msg("m4"))
	if got := r.pump(); len(got) != 0 {
		t.Fatalf("sent while paused with answers outstanding: %+v", got)
	}
	r.f.acked(1, 3, 0)
	r.f.acked(1, 4, 0x97)
	// Everything answered; after the pause, the refused ones go again in
	// order, then the new one.
	var got []sent
	eventually(t, "the pause to end", func() bool {
		got = append(got, r.pump()...)
		return len(got) >= 3
	})
	if diff := cmp.Diff([]sent{{2, "m1", 1, false}, {4, "m3", 1, false}, {5, "m4", 1, false}}, got, cmp.AllowUnexported(sent{})); diff != "" {
		t.Fatalf("after the pause (-want +got):\n%s", diff)
	}
	if s := r.l.stats().Out; s.Forwarded != 2 || s.Dropped.Total() != 0 {
		t.Fatalf("stats: %+v", s)
	}
}

func TestForwarderLimits(t *testing.T) {
	// A receiver with Maximum QoS 0, no retained messages and small packets.
	r := newRig(t, 10, limits{receiveMax: 100, maxQoS: 0, retain: false, maxPacket: 100})
	r.add(&record{qos: 1, retain: true, topic: "t", payload: []byte("a")})
	r.add(&record{qos: 1, topic: "t", payload: make([]byte, 200)})
	r.add(&record{qos: 1, topic: "t", payload: []byte("expired"), expiry: time.Now().Add(-time.Second).UnixNano()})
	r.add(&record{qos: 1, topic: "t", payload: []byte("b"), expiry: time.Now().Add(time.Hour).UnixNano()})
	got := r.pump()
	want := []sent{{1, "a", 0, false}, {4, "b", 0, false}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(sent{})); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	s := r.l.stats().Out
	if s.Forwarded != 2 || s.Dropped.TooLarge != 1 || s.Dropped.Expired != 1 || s.Queued != 0 {
		t.Fatalf("stats: %+v", s)
	}
}

func TestForwarderRefusedByLibrary(t *testing.T) {
	r := newRig(t, 10, limits{receiveMax: 100, maxQoS: 2, retain: true})
	r.add(msg("x"))
	r.conn.err = fmt.Errorf("%w: bad", errRejected)
	r.pump()
	if s := r.l.stats().Out; s.Dropped.Rejected != 1 || s.Queued != 0 {
		t.Fatalf("stats: %+v", s)
	}
	// A failing connection keeps the message.
	r.add(msg("y"))
	r.conn.err = errDown
	r.pump()
	if s := r.l.stats().Out; s.Queued != 1 {
		t.Fatalf("stats: %+v", s)
	}
}
