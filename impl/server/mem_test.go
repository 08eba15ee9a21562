package server

import (
	"io"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// idleClient opens a connection and completes a 3.1.1 CONNECT on it, with
// no buffer of its own (the client's side shares the process being
// measured).
func idleClient(t testing.TB, addr, id string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := packet.Encode(&packet.Connect{Version: packet.V311, ClientID: []byte(id), CleanStart: true, KeepAlive: 300}, packet.V311)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK: % x %v", ack, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c
}

// TestIdleConnectionMemory guards the cost of an idle connection in
// process: heap and stack per connection over a few hundred connected, idle
// clients (their side included), and the goroutines they keep. Before the
// idle-connection work it was about 36 KiB and two goroutines (a 16 KiB
// read buffer, a reader and a writer); then 8.3 KiB, 4 KiB of it the broker
// core's packet decoder; then, with the decoder borrowed only while the
// connection is busy, about 2.5 KiB of heap and no goroutine when
// connections park (Linux); then, with parked sockets detached from their
// net.Conn and the per-connection structs halved, about 1.5 KiB of heap;
// then, with the structs at their size classes (TestLayout), about 1.4 KiB
// (1.7 KiB and one goroutine, its 4 KiB stack, when they do not park); the
// connections born detached (acceptBare) hold no more, they only leave less
// garbage behind, which this test collects before it measures. The
// bounds are loose on purpose: they fail when a per-connection buffer of a
// few KiB (a read buffer, a decoder) or goroutine comes back, not on noise.
func TestIdleConnectionMemory(t *testing.T) {
	for _, noParking := range []bool{false, true} {
		name := "parking"
		if noParking {
			name = "no parking"
		}
		t.Run(name, func(t *testing.T) { testIdleConnectionMemory(t, noParking) })
	}
}

func testIdleConnectionMemory(t *testing.T, noParking bool) {
	const n = 400
	maxPerConn := int64(3 << 10)
	if noParking {
		maxPerConn = 10 << 10 // the reader's stack, the net.Conn
	}
	if raceEnabled {
		maxPerConn *= 2
	}
	cfg := testConfig(ListenerConfig{Name: "tcp", Type: TCP, Addr: "127.0.0.1:0", DefaultTenant: "default"})
	cfg.NoParking = noParking
	s := start(t, cfg)
	addr := s.Addr("tcp").String()
	for i := range 20 { // warm up: the tenant, pools, the runtime's caches
		idleClient(t, addr, "warm"+strconv.Itoa(i)).Close()
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = idleClient(t, addr, "idle"+strconv.Itoa(i))
	}
	// Two collections: the first shrinks the readers' stacks (grown for
	// the CONNECT) to what a waiting reader needs, the second frees the rest.
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	goroutines := runtime.NumGoroutine() - g0
	heap := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	stack := (int64(after.StackInuse) - int64(before.StackInuse)) / n
	other := (int64(after.OtherSys) - int64(before.OtherSys)) / n
	t.Logf("per idle connection: heap %d B, stack %d B, off-heap %d B, goroutines %.2f", heap, stack, other, float64(goroutines)/n)
	// Off-heap state is logged, not bounded: the clients' side (their
	// poller descriptors) is in it, and it moves with the runtime's caches.
	if heap+stack > maxPerConn {
		t.Errorf("an idle connection costs %d B (heap %d, stack %d), want at most %d", heap+stack, heap, stack, maxPerConn)
	}
	// Writers end once their output is written, readers park once the
	// socket is empty; a few may still be on their way.
	want := n
	if s.parker != nil {
		want = 0
	}
	if goroutines > want+n/4 {
		t.Errorf("%d goroutines for %d idle connections, want about %d", goroutines, n, want)
	}
	for _, c := range conns {
		c.Close()
	}
}
