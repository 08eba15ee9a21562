package server

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// parkingServer starts a server whose parked connections are announced on
// the returned channel; it skips the test where connections do not park.
func parkingServer(t *testing.T) (*Server, string, <-chan struct{}) {
	t.Helper()
	cfg := testConfig(ListenerConfig{Name: "tcp", Type: TCP, Addr: "127.0.0.1:0", DefaultTenant: "default"})
	s := New(cfg, broker.New(cfg.Broker, env.Real(), nil))
	parked := make(chan struct{}, 64)
	s.parkedHook = func() { parked <- struct{}{} }
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if s.parker == nil {
		t.Skip("connections do not park on this platform")
	}
	return s, s.Addr("tcp").String(), parked
}

func waitParked(t *testing.T, parked <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-parked:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the connection did not park", what)
	}
}

func readExactly(t *testing.T, c net.Conn, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read % x (%v), want % x", got, err, want)
	}
}

func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 64)
	for {
		if _, err := c.Read(b); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the connection was not closed")
			}
			return
		}
	}
}

// TestParkedConnections follows connections through parking: a connection
// that has only connected (or subscribed, or pinged) parks, and a parked one
// still answers, receives what is published to it, is taken over, and is
// closed with the server.
func TestParkedConnections(t *testing.T) {
	s, addr, parked := parkingServer(t)

	sub := idleClient(t, addr, "sub")
	waitParked(t, parked, "after CONNECT")

	// A PINGREQ is answered by the parker (TestParkedPing); other bytes
	// resume a parked connection, and a control-only batch parks it again.
	if _, err := sub.Write([]byte{0xc0, 0x00}); err != nil {
		t.Fatal(err)
	}
	readExactly(t, sub, []byte{0xd0, 0x00})

	if _, err := sub.Write(encode(t, &packet.Subscribe{PacketID: 7, Subscriptions: []packet.Subscription{{Filter: []byte("park/t")}}}, packet.V311)); err != nil {
		t.Fatal(err)
	}
	readExactly(t, sub, []byte{0x90, 0x03, 0x00, 0x07, 0x00})
	waitParked(t, parked, "after SUBSCRIBE")

	// A parked subscriber gets messages: its writer does not need its reader.
	pub := idleClient(t, addr, "pub")
	waitParked(t, parked, "publisher after CONNECT")
	msg := encode(t, &packet.Publish{Topic: []byte("park/t"), Payload: []byte("hello")}, packet.V311)
	if _, err := pub.Write(msg); err != nil {
		t.Fatal(err)
	}
	readExactly(t, sub, msg)

	// A takeover closes the parked connection (3.1.1: no DISCONNECT).
	again := idleClient(t, addr, "sub")
	expectClosed(t, sub)
	waitParked(t, parked, "after the takeover")

	// Closing the server closes parked connections and returns.
	s.Close()
	expectClosed(t, again)
	expectClosed(t, pub)
	if n := s.OpenConnections(); n != 0 {
		t.Fatalf("%d connections open after Close", n)
	}
}

// TestParkedConnectionEOF: a client that goes away while its connection is
// parked ends it.
func TestParkedConnectionEOF(t *testing.T) {
	s, addr, parked := parkingServer(t)
	c := idleClient(t, addr, "gone")
	waitParked(t, parked, "after CONNECT")
	c.Close()
	// The server ends the connection; Shutdown waits for that.
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(t.Context()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Shutdown still waits: %d connections open", s.OpenConnections())
	}
}

// TestParkedKeepAlive: parked connections are closed at their keep-alive
// deadline (1.5 times the keep alive), each at its own, whatever the order
// they parked in, and a connection whose deadline is far stays open.
func TestParkedKeepAlive(t *testing.T) {
	_, addr, parked := parkingServer(t)
	dial := func(id string, ka uint16) net.Conn { return dialKeepAlive(t, addr, parked, id, ka) }
	late := dial("late", 2)
	early := dial("early", 1)
	open := dial("open", 100)
	start := time.Now()
	expectClosed(t, early)
	expectClosed(t, late)
	if d := time.Since(start); d < time.Second {
		t.Fatalf("closed after %v, before the keep-alive deadlines", d)
	}
	if _, err := open.Write([]byte{0xc0, 0x00}); err != nil {
		t.Fatal(err)
	}
	readExactly(t, open, []byte{0xd0, 0x00})
}

// detachedCount returns how many connections are parked without their
// net.Conn (parker_linux.go).
func detachedCount(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, cn := range s.conns {
		cn.dmu.Lock()
		if cn.detached {
			n++
		}
		cn.dmu.Unlock()
	}
	return n
}

// TestDetachedSubscriberFullSocket: a parked connection is detached (it keeps
// a bare descriptor, not its net.Conn); output for it goes to the
// descriptor, and output the socket cannot take at once (the subscriber does
// not read) attaches it again, with nothing lost or reordered, and the
// connection still answers afterwards.
func TestDetachedSubscriberFullSocket(t *testing.T) {
	s, addr, parked := parkingServer(t)
	sub := idleClient(t, addr, "sub")
	waitParked(t, parked, "after CONNECT")
	if _, err := sub.Write(encode(t, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("full/t"), QoS: 1}}}, packet.V311)); err != nil {
		t.Fatal(err)
	}
	readExactly(t, sub, []byte{0x90, 0x03, 0x00, 0x01, 0x01})
	waitParked(t, parked, "after SUBSCRIBE")
	pub := idleClient(t, addr, "pub")
	waitParked(t, parked, "publisher after CONNECT")
	if n := detachedCount(s); n != 2 {
		t.Fatalf("%d detached connections, want 2", n)
	}

	// 1000 QoS 1 messages of 8 KiB: more than the sockets between the broker
	// and a subscriber that reads nothing hold.
	const n, size = 1000, 8 << 10
	var batch []byte
	for i := range n {
		payload := bytes.Repeat([]byte{byte(i)}, size)
		batch = append(batch, encode(t, &packet.Publish{Topic: []byte("full/t"), QoS: 1, PacketID: uint16(i + 1), Payload: payload}, packet.V311)...)
	}
	go func() { _, _ = pub.Write(batch) }()
	go func() { _, _ = io.Copy(io.Discard, pub) }() // PUBACKs
	// The subscriber sends nothing: only its writer, finding the socket
	// full, attaches it.
	for deadline := time.Now().Add(10 * time.Second); detachedCount(s) != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the subscriber's full socket did not attach it")
		}
	}

	r := packet.NewReader(sub, 64<<10)
	_ = sub.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range n {
		h, body, err := r.ReadPacket()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		// topic (2+6), packet identifier (2), payload
		if h.Type != packet.PUBLISH || len(body) != 10+size || body[10] != byte(i) {
			t.Fatalf("message %d: %v, %d bytes", i, h, len(body))
		}
		ack := []byte{0x40, 0x02, body[8], body[9]}
		if _, err := sub.Write(ack); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sub.Write([]byte{0xc0, 0x00}); err != nil {
		t.Fatal(err)
	}
	readExactly(t, sub, []byte{0xd0, 0x00})
}

// dialKeepAlive connects a 3.1.1 client with keep alive ka and waits for
// its connection to park.
func dialKeepAlive(t *testing.T, addr string, parked <-chan struct{}, id string, ka uint16) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	b := encode(t, &packet.Connect{Version: packet.V311, ClientID: []byte(id), CleanStart: true, KeepAlive: ka}, packet.V311)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	readExactly(t, c, []byte{0x20, 0x02, 0x00, 0x00})
	waitParked(t, parked, id)
	return c
}

// waitFor polls cond until it holds, failing after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not after 10 s", what)
		}
	}
}

// TestParkedPing: the parker answers a parked connection's PINGREQ itself:
// the connection stays parked and detached (no reader is started), and the
// PINGREQ renews its keep-alive deadline as any packet does
// [v3.1.1 MQTT-3.1.2-24]: pinging for longer than 1.5 times the keep alive
// keeps it open; once the pings stop, the deadline closes it.
func TestParkedPing(t *testing.T) {
	s, addr, parked := parkingServer(t)
	c := dialKeepAlive(t, addr, parked, "pinger", 1) // closed 1.5 s after the last packet
	if n := detachedCount(s); n != 1 {
		t.Fatalf("%d detached connections, want 1", n)
	}
	resumed, timeouts := s.resumed.Load(), s.timeouts.Load()

	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	pings := 0
	for start := time.Now(); time.Since(start) < 3500*time.Millisecond; <-tick.C {
		if _, err := c.Write(pingReq[:]); err != nil {
			t.Fatal(err)
		}
		readExactly(t, c, pingResp[:])
		pings++
	}
	if n := parkerAnswered(s, 0, uint64(pings)); n != uint64(pings) {
		t.Errorf("the parker answered %d PINGREQs of %d", n, pings)
	}
	if n := s.resumed.Load() - resumed; n != 0 {
		t.Errorf("the connection was resumed %d times while pinging", n)
	}
	if n := detachedCount(s); n != 1 {
		t.Errorf("%d detached connections after the pings, want 1", n)
	}
	select {
	case <-parked:
		t.Error("the connection parked again: it had been resumed")
	default:
	}

	stopped := time.Now()
	expectClosed(t, c)
	if d := time.Since(stopped); d < time.Second {
		t.Errorf("closed %v after the last PINGREQ, before its keep-alive deadline (1.5 s)", d)
	}
	waitFor(t, "keep-alive timeout counted", func() bool { return s.timeouts.Load() == timeouts+1 })
	if s.resumed.Load() != resumed+1 {
		t.Errorf("resumed %d times, want once (at the deadline)", s.resumed.Load()-resumed)
	}
}

// TestParkedPingThenPacket: a PINGREQ with another packet behind it in the
// same write is not the parker's: the connection wakes and its reader
// handles both, in order.
func TestParkedPingThenPacket(t *testing.T) {
	s, addr, parked := parkingServer(t)
	c := dialKeepAlive(t, addr, parked, "both", 60)
	pings := s.parkedPings.Load()

	sub := encode(t, &packet.Subscribe{PacketID: 3, Subscriptions: []packet.Subscription{{Filter: []byte("both/t"), QoS: 1}}}, packet.V311)
	if _, err := c.Write(append(pingReq[:], sub...)); err != nil {
		t.Fatal(err)
	}
	readExactly(t, c, []byte{0xd0, 0x00, 0x90, 0x03, 0x00, 0x03, 0x01})
	waitParked(t, parked, "after PINGREQ+SUBSCRIBE")

	// PINGREQ then a QoS 1 PUBLISH (not a control packet: the connection
	// keeps its reader), which its own subscription delivers.
	pub := encode(t, &packet.Publish{Topic: []byte("both/t"), QoS: 1, PacketID: 9, Payload: []byte("x")}, packet.V311)
	if _, err := c.Write(append(pingReq[:], pub...)); err != nil {
		t.Fatal(err)
	}
	r := packet.NewReader(c, 1024)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got []packet.Type
	for len(got) < 3 {
		h, _, err := r.ReadPacket()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, h.Type)
	}
	// The PINGRESP comes first; the PUBACK and the delivery may come in
	// either order.
	if got[0] != packet.PINGRESP || !(got[1] == packet.PUBACK && got[2] == packet.PUBLISH || got[1] == packet.PUBLISH && got[2] == packet.PUBACK) {
		t.Fatalf("got %v, want PINGRESP, then PUBACK and PUBLISH", got)
	}
	if n := s.parkedPings.Load() - pings; n != 0 {
		t.Errorf("the parker answered %d PINGREQs, want none", n)
	}
}

// TestParkedPingSplit: a PINGREQ that comes one byte at a time wakes the
// connection, whose reader waits for the second byte and answers.
func TestParkedPingSplit(t *testing.T) {
	s, addr, parked := parkingServer(t)
	c := dialKeepAlive(t, addr, parked, "split", 60)
	resumed, pings := s.resumed.Load(), s.parkedPings.Load()
	if _, err := c.Write(pingReq[:1]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "resumed by half a PINGREQ", func() bool { return s.resumed.Load() > resumed })
	if _, err := c.Write(pingReq[1:]); err != nil {
		t.Fatal(err)
	}
	readExactly(t, c, pingResp[:])
	waitParked(t, parked, "after the split PINGREQ")
	if n := s.parkedPings.Load() - pings; n != 0 {
		t.Errorf("the parker answered %d PINGREQs, want none", n)
	}
	// A whole one again is the parker's.
	if _, err := c.Write(pingReq[:]); err != nil {
		t.Fatal(err)
	}
	readExactly(t, c, pingResp[:])
	if n := parkerAnswered(s, pings, 1); n != 1 {
		t.Errorf("the parker answered %d PINGREQs, want 1", n)
	}
}

// parkerAnswered returns how many PINGREQs the parker answered since it
// had answered since, waiting up to 10 s for want of them: the parker
// counts an answer just after writing it, so a client can read the
// PINGRESP before the count moves.
func parkerAnswered(s *Server, since, want uint64) uint64 {
	deadline := time.Now().Add(10 * time.Second)
	for s.parkedPings.Load()-since < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling interval
	}
	return s.parkedPings.Load() - since
}

// TestParkedPingWithDeliveries: PINGRESPs the parker writes and messages
// delivered to the same parked subscriber at the same time do not
// interleave: the subscriber reads whole packets, every message in order
// and a PINGRESP for every PINGREQ.
func TestParkedPingWithDeliveries(t *testing.T) {
	s, addr, parked := parkingServer(t)
	sub := dialKeepAlive(t, addr, parked, "sub", 60)
	if _, err := sub.Write(encode(t, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("mix/t")}}}, packet.V311)); err != nil {
		t.Fatal(err)
	}
	readExactly(t, sub, []byte{0x90, 0x03, 0x00, 0x01, 0x00})
	waitParked(t, parked, "after SUBSCRIBE")
	pub := dialKeepAlive(t, addr, parked, "pub", 60)

	// Messages in small writes and PINGREQs one at a time, each paced by a
	// ticker, so that some PINGREQs find the subscriber parked with a
	// delivery on its way, and others its writer at work.
	const n, pings, piece = 20000, 300, 20
	var batch []byte
	for i := range n {
		batch = append(batch, encode(t, &packet.Publish{Topic: []byte("mix/t"), Payload: []byte{byte(i >> 8), byte(i)}}, packet.V311)...)
	}
	size := len(batch) / n
	errs := make(chan error, 2)
	pace := func(every time.Duration, times int, write func(int) error) {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := range times {
			if err := write(i); err != nil {
				errs <- err
				return
			}
			<-tick.C
		}
		errs <- nil
	}
	go pace(200*time.Microsecond, n/piece, func(i int) error {
		_, err := pub.Write(batch[i*piece*size : (i+1)*piece*size])
		return err
	})
	go pace(time.Millisecond, pings, func(int) error {
		_, err := sub.Write(pingReq[:])
		return err
	})
	r := packet.NewReader(sub, 1024)
	_ = sub.SetReadDeadline(time.Now().Add(20 * time.Second))
	msgs, pongs := 0, 0
	for msgs < n || pongs < pings {
		h, body, err := r.ReadPacket()
		if err != nil {
			t.Fatalf("after %d messages and %d PINGRESPs: %v", msgs, pongs, err)
		}
		switch h.Type {
		case packet.PINGRESP:
			pongs++
		case packet.PUBLISH:
			// topic (2+5), payload: the message's number
			if len(body) != 9 || int(body[7])<<8|int(body[8]) != msgs {
				t.Fatalf("message %d: % x", msgs, body)
			}
			msgs++
		default:
			t.Fatalf("unexpected %v", h.Type)
		}
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d of %d PINGREQs answered by the parker, %d wakes", s.parkedPings.Load(), pings, s.resumed.Load())
}

// The two packets of a keep-alive, for the tests.
var pingReq, pingResp = [2]byte{0xc0, 0x00}, [2]byte{0xd0, 0x00}
