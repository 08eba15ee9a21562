package transport

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/forward"
	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/raftkv/kvserver"
)

// conns records the connections a test may cut.
type conns struct {
	mu   sync.Mutex
	list []net.Conn
}

func (c *conns) add(n net.Conn) net.Conn {
	c.mu.Lock()
	c.list = append(c.list, n)
	c.mu.Unlock()
	return n
}

// cutLast closes the newest connection from the test's side.
func (c *conns) cutLast() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.list) > 0 {
		c.list[len(c.list)-1].Close()
	}
}

// recordingListener records the connections it accepts.
type recordingListener struct {
	net.Listener
	conns *conns
}

func (l recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.conns.add(c), nil
}

// sink is a receiving node: it records what arrives and, with a durable
// goroutine, reports durability behind the deliveries so that a broken
// connection leaves delivered, unacknowledged frames to be sent again.
type sink struct {
	mu      sync.Mutex
	got     []uint64 // the number each payload carries
	bad     int      // payloads not as sent
	inc     uint64
	seq     uint64
	arrived chan struct{}
	hold    atomic.Bool // durability is not reported while set
	durable uint64      // the last frame reported durable
}

// undurable reports whether a frame was delivered and not reported
// durable.
func (s *sink) undurable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq > s.durable
}

func newSink() *sink { return &sink{arrived: make(chan struct{}, 1)} }

func (s *sink) deliver(from string, d *forward.Delivery) {
	s.mu.Lock()
	if from != "a" || string(d.Tenant) != "acme" || string(d.Message.Topic) != "t/x" || len(d.Message.Payload) < 8 {
		s.bad++
	} else {
		s.got = append(s.got, binary.BigEndian.Uint64(d.Message.Payload))
	}
	s.inc, s.seq = d.Incarnation, d.Seq
	s.mu.Unlock()
	wake(s.arrived)
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// reportDurable calls l.Durable for what arrived until stop closes.
func (s *sink) reportDurable(l *Listener, stop chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-s.arrived:
		}
		if s.hold.Load() {
			continue
		}
		s.mu.Lock()
		inc, seq := s.inc, s.seq
		s.durable = seq
		s.mu.Unlock()
		l.Durable("a", inc, seq)
	}
}

// releases counts released tokens and wakes a producer waiting for room.
type releases struct {
	mu   sync.Mutex
	seen []uint8 // per token: times released
	room chan struct{}
}

func newReleases(n int) *releases {
	return &releases{seen: make([]uint8, n), room: make(chan struct{}, 1)}
}

func (r *releases) release(tokens []uint64) {
	r.mu.Lock()
	for _, t := range tokens {
		r.seen[t]++
	}
	r.mu.Unlock()
	wake(r.room)
}

type pair struct {
	l        *Listener
	p        *Peer
	sink     *sink
	rel      *releases
	dialled  *conns
	accepted *conns
	stop     chan struct{}
}

func startPair(t testing.TB, n int, rcfg forward.ReceiverConfig, scfg forward.SenderConfig, serverTLS, clientTLS *tls.Config) *pair {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pr := &pair{sink: newSink(), rel: newReleases(n), dialled: &conns{}, accepted: &conns{}, stop: make(chan struct{})}
	rcfg.Node, rcfg.Incarnation = "b", 1
	pr.l = Serve(recordingListener{ln, pr.accepted}, ListenerConfig{Link: rcfg, TLS: serverTLS, Deliver: pr.sink.deliver})
	if rcfg.WaitDurable {
		go pr.sink.reportDurable(pr.l, pr.stop)
	}
	scfg.Node, scfg.Peer, scfg.Incarnation = "a", "b", 1
	d := &net.Dialer{}
	pr.p = NewPeer(PeerConfig{Link: scfg, Addr: ln.Addr().String(), TLS: clientTLS, Released: pr.rel.release,
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return pr.dialled.add(c), nil
		}})
	t.Cleanup(func() {
		pr.p.Close()
		pr.l.Close()
		close(pr.stop)
	})
	return pr
}

// trySend enqueues message i, waiting for room (a release) while the link
// is full; it reports false at the deadline.
func (pr *pair) trySend(i int, qos packet.QoS, payload []byte, end time.Time) bool {
	binary.BigEndian.PutUint64(payload, uint64(i))
	m := &message.Message{Topic: []byte("t/x"), Payload: payload, QoS: qos}
	for {
		err := pr.p.Enqueue("acme", m, qos, uint64(i))
		var fe *forward.Error
		switch {
		case err == nil:
			return true
		case !errors.As(err, &fe) || fe.Code != packet.QuotaExceeded:
			panic(err) // the tests' messages are valid
		case time.Now().After(end):
			return false
		}
		select {
		case <-pr.rel.room:
		case <-time.After(time.Millisecond): // QoS 0 releases nothing: look again
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, end time.Time, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestOrderedExactlyOnceAcrossCuts sends 100,000 QoS 1 messages while the
// test closes the connection three times (from either side, mid-stream):
// every message arrives once, in order, and every token is released once.
func TestOrderedExactlyOnceAcrossCuts(t *testing.T) {
	t.Parallel()
	const n = 100_000
	pr := startPair(t, n, forward.ReceiverConfig{WaitDurable: true, Window: 8},
		forward.SenderConfig{MaxMessages: 20_000, FrameBytes: 8 << 10}, nil, nil)
	end := time.Now().Add(2 * time.Minute)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		payload := make([]byte, 16)
		for i := range n {
			if !pr.trySend(i, packet.QoS1, payload, end) {
				t.Errorf("enqueue %d: link still full at the deadline", i)
				return
			}
		}
	}()
	// Each cut comes while frames are delivered but not acknowledged
	// (durability held back), so they must be sent again and dropped.
	for _, c := range []struct {
		at  int
		cut func()
	}{{25_000, pr.dialled.cutLast}, {50_000, pr.accepted.cutLast}, {75_000, pr.dialled.cutLast}} {
		waitFor(t, end, "deliveries before a cut", func() bool { return pr.sink.count() >= c.at })
		pr.sink.hold.Store(true)
		waitFor(t, end, "deliveries not yet durable", pr.sink.undurable)
		before := pr.p.Stats().Connects
		c.cut()
		// Held until the next handshake, so the welcome acknowledges
		// only what was durable before the cut.
		waitFor(t, end, "a new handshake", func() bool { return pr.p.Stats().Connects > before })
		pr.sink.hold.Store(false)
		wake(pr.sink.arrived)
	}
	<-sent
	waitFor(t, end, "every message", func() bool { return pr.sink.count() >= n })
	ctx, cancel := context.WithDeadline(context.Background(), end)
	defer cancel()
	if err := pr.p.Flush(ctx); err != nil {
		t.Fatalf("flush: %v (stats %+v)", err, pr.p.Stats())
	}

	pr.sink.mu.Lock()
	got, bad := pr.sink.got, pr.sink.bad
	pr.sink.mu.Unlock()
	if bad != 0 || len(got) != n {
		t.Fatalf("%d messages arrived (%d damaged), want %d", len(got), bad, n)
	}
	for i, v := range got {
		if v != uint64(i) {
			t.Fatalf("message %d carries %d: out of order or duplicated", i, v)
		}
	}
	pr.rel.mu.Lock()
	for i, c := range pr.rel.seen {
		if c != 1 {
			t.Errorf("token %d released %d times", i, c)
			break
		}
	}
	pr.rel.mu.Unlock()
	ps := pr.p.Stats()
	rs, _ := pr.l.Stats("a")
	t.Logf("sender %+v", ps)
	t.Logf("receiver %+v", rs)
	if ps.Connects < 4 || ps.Resent == 0 || rs.Duplicates == 0 {
		t.Errorf("%d handshakes (want 4 or more: three cuts), %d frames resent, %d duplicates dropped (want some)", ps.Connects, ps.Resent, rs.Duplicates)
	}
	if ps.Dropped != 0 || rs.Messages != n {
		t.Errorf("dropped %d, receiver delivered %d", ps.Dropped, rs.Messages)
	}
}

// TestTLS runs a link over TLS with client certificates.
func TestTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := kvserver.WriteTestCerts(dir, 1); err != nil {
		t.Fatal(err)
	}
	pair, err := kvserver.LoadTLS(1, dir+"/node-1.pem", dir+"/node-1-key.pem", dir+"/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	pr := startPair(t, n, forward.ReceiverConfig{}, forward.SenderConfig{}, pair.Server, pair.Client)
	end := time.Now().Add(time.Minute)
	for i := range n {
		if !pr.trySend(i, packet.QoS1, make([]byte, 100), end) {
			t.Fatalf("enqueue %d: link still full at the deadline", i)
		}
	}
	waitFor(t, end, "every message", func() bool { return pr.sink.count() == n })
	ctx, cancel := context.WithDeadline(context.Background(), end)
	defer cancel()
	if err := pr.p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestWrongNodeRefused: a sender that reaches another node than it meant
// gets a goaway and keeps retrying, delivering nothing; the listener
// makes no link for it.
func TestWrongNodeRefused(t *testing.T) {
	t.Parallel()
	l, delivered := countingListener(t, nil)
	p := refusedPeer(t, l.Addr().String(), "a", "b")
	if st := p.Stats(); st.Connects != 0 || delivered.Load() != 0 {
		t.Errorf("connects %d, delivered %d", st.Connects, delivered.Load())
	}
	if _, ok := l.Stats("a"); ok {
		t.Error("a link was made for a hello meant for another node")
	}
}

// TestCheckPeerRefuses: a hello whose sender CheckPeer refuses (another
// node's certificate, say) gets a goaway and no link; one it accepts
// delivers.
func TestCheckPeerRefuses(t *testing.T) {
	t.Parallel()
	l, delivered := countingListener(t, func(from string, _ net.Conn) error {
		if from != "a" {
			return errors.New("not a")
		}
		return nil
	})
	bad := refusedPeer(t, l.Addr().String(), "b", "c")
	if _, ok := l.Stats("b"); ok || delivered.Load() != 0 || bad.Stats().Connects != 0 {
		t.Fatalf("a refused sender got a link (delivered %d)", delivered.Load())
	}
	good := NewPeer(PeerConfig{Link: forward.SenderConfig{Node: "a", Peer: "c", Incarnation: 1}, Addr: l.Addr().String()})
	defer good.Close()
	if err := good.Enqueue("acme", &message.Message{Topic: []byte("t")}, 1, 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Now().Add(30*time.Second), "the accepted sender's message", func() bool { return delivered.Load() == 1 })
}

// countingListener serves node c's links on a random port, counting the
// messages delivered; it closes when the test ends.
func countingListener(t *testing.T, check func(string, net.Conn) error) (*Listener, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	delivered := new(atomic.Int64)
	l := Serve(ln, ListenerConfig{Link: forward.ReceiverConfig{Node: "c", Incarnation: 1}, CheckPeer: check,
		Deliver: func(string, *forward.Delivery) { delivered.Add(1) }})
	t.Cleanup(func() { l.Close() })
	return l, delivered
}

// refusedPeer starts a link from node from to node to at addr, with one
// message, and waits until three connections were refused; the link
// closes when the test ends.
func refusedPeer(t *testing.T, addr, from, to string) *Peer {
	t.Helper()
	p := NewPeer(PeerConfig{Link: forward.SenderConfig{Node: from, Peer: to, Incarnation: 1}, Addr: addr,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	t.Cleanup(func() { p.Close() })
	if err := p.Enqueue("acme", &message.Message{Topic: []byte("t")}, 1, 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Now().Add(30*time.Second), "refused connections", func() bool { return p.Stats().Broken >= 3 })
	return p
}

// TestCloseWithoutPeer: Close returns while the peer is unreachable.
func TestCloseWithoutPeer(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := NewPeer(PeerConfig{Link: forward.SenderConfig{Node: "a", Peer: "b", Incarnation: 1}, Addr: addr,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	waitFor(t, time.Now().Add(30*time.Second), "dial failures", func() bool { return p.Stats().DialFailures >= 2 })
	p.Close()
}

// TestAckTimeout: a receiver that never acknowledges (its node never
// reports durability) gets its connection broken after AckTimeout, and
// the frame is written again on the next one, where it is a duplicate.
func TestAckTimeout(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var delivered atomic.Int64
	l := Serve(ln, ListenerConfig{Link: forward.ReceiverConfig{Node: "b", Incarnation: 1, WaitDurable: true},
		Deliver: func(string, *forward.Delivery) { delivered.Add(1) }})
	defer l.Close()
	p := NewPeer(PeerConfig{Link: forward.SenderConfig{Node: "a", Peer: "b", Incarnation: 1}, Addr: ln.Addr().String(),
		AckTimeout: 50 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	defer p.Close()
	if err := p.Enqueue("acme", &message.Message{Topic: []byte("t")}, 1, 1); err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(30 * time.Second)
	waitFor(t, end, "connections broken for want of an ack", func() bool {
		st, _ := l.Stats("a")
		return p.Stats().Broken >= 2 && st.Duplicates >= 1
	})
	if n := delivered.Load(); n != 1 {
		t.Errorf("delivered %d times, want once", n)
	}
	// Once durable, the ack comes and the link stays up.
	l.Durable("a", 1, 1)
	ctx, cancel := context.WithDeadline(context.Background(), end)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}
