package server

import (
	"bytes"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// neverAttached reports whether every open connection is detached and has
// never had a net.Conn: its reader reads the bare descriptor (acceptBare).
func neverAttached(s *Server) (n int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok = true
	for _, cn := range s.conns {
		cn.dmu.Lock()
		if !cn.detached || cn.r.nc != nil || cn.r.stash != nil {
			ok = false
		}
		cn.dmu.Unlock()
		n++
	}
	return n, ok
}

// TestBornDetached: a plain TCP connection is accepted on the listener's
// descriptor and never needs a net.Conn while it connects, subscribes and
// pings: before its CONNECT comes it waits in the parker (no goroutine),
// its CONNECT and SUBSCRIBE are read from the bare descriptor, the parker
// answers its PINGREQ. Publishing to it and disconnecting still work.
func TestBornDetached(t *testing.T) {
	s, addr, parked := parkingServer(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Nothing sent yet: the connection parks waiting for its first byte.
	waitFor(t, "parked before CONNECT", func() bool {
		s.parker.mu.Lock()
		defer s.parker.mu.Unlock()
		return len(s.parker.due) == 1
	})
	if n, ok := neverAttached(s); n != 1 || !ok {
		t.Fatalf("%d connections, never attached: %v; want 1, true", n, ok)
	}
	if _, err := c.Write(encode(t, &packet.Connect{Version: packet.V311, ClientID: []byte("born"), CleanStart: true, KeepAlive: 60}, packet.V311)); err != nil {
		t.Fatal(err)
	}
	readExactly(t, c, []byte{0x20, 0x02, 0x00, 0x00})
	waitParked(t, parked, "after CONNECT")
	if _, err := c.Write(encode(t, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("born/t")}}}, packet.V311)); err != nil {
		t.Fatal(err)
	}
	readExactly(t, c, []byte{0x90, 0x03, 0x00, 0x01, 0x00})
	waitParked(t, parked, "after SUBSCRIBE")
	if _, err := c.Write(pingReq[:]); err != nil {
		t.Fatal(err)
	}
	readExactly(t, c, pingResp[:])
	if n, ok := neverAttached(s); n != 1 || !ok {
		t.Fatalf("after CONNECT, SUBSCRIBE, PINGREQ: %d connections, never attached: %v; want 1, true", n, ok)
	}

	pub := idleClient(t, addr, "born-pub")
	defer pub.Close()
	if _, err := pub.Write(encode(t, &packet.Publish{Topic: []byte("born/t"), Payload: []byte("hi")}, packet.V311)); err != nil {
		t.Fatal(err)
	}
	readExactly(t, c, encode(t, &packet.Publish{Topic: []byte("born/t"), Payload: []byte("hi")}, packet.V311))
	if _, err := c.Write([]byte{0xe0, 0x00}); err != nil { // DISCONNECT
		t.Fatal(err)
	}
	t.Log("read", time.Now())
	expectClosed(t, c)
	t.Log("closed", time.Now())
	waitFor(t, "the connection's end", func() bool { return s.OpenConnections() == 1 })
	t.Log("ended", time.Now())
}

// TestBornDetachedConnectTimeout: a connection that never sends its
// CONNECT is closed at the CONNECT deadline while it waits in the parker.
func TestBornDetachedConnectTimeout(t *testing.T) {
	cfg := testConfig(ListenerConfig{Name: "tcp", Type: TCP, Addr: "127.0.0.1:0", DefaultTenant: "default"})
	cfg.ConnectTimeout = 300 * time.Millisecond
	s := start(t, cfg)
	if s.parker == nil {
		t.Skip("connections do not park")
	}
	c, err := net.Dial("tcp", s.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	began := time.Now()
	expectClosed(t, c)
	if d := time.Since(began); d < 250*time.Millisecond {
		t.Errorf("closed after %v, before the CONNECT deadline (300 ms)", d)
	}
}

// TestSockaddrString: the remote address of a connection accepted on the
// bare descriptor reads as remoteString writes a net.Conn's.
func TestSockaddrString(t *testing.T) {
	t.Parallel()
	var a4 syscall.RawSockaddrAny
	sa4 := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&a4))
	sa4.Family, sa4.Addr = syscall.AF_INET, [4]byte{192, 0, 2, 7}
	*(*[2]byte)(unsafe.Pointer(&sa4.Port)) = [2]byte{0x07, 0x5b} // 1883
	var a6 syscall.RawSockaddrAny
	sa6 := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&a6))
	sa6.Family = syscall.AF_INET6
	copy(sa6.Addr[:], net.ParseIP("2001:db8::1").To16())
	*(*[2]byte)(unsafe.Pointer(&sa6.Port)) = [2]byte{0xff, 0xff}
	var a46 syscall.RawSockaddrAny
	sa46 := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&a46))
	sa46.Family = syscall.AF_INET6
	copy(sa46.Addr[:], net.ParseIP("10.1.2.3").To16()) // ::ffff:10.1.2.3
	*(*[2]byte)(unsafe.Pointer(&sa46.Port)) = [2]byte{0x00, 0x01}
	for _, tc := range []struct {
		sa   *syscall.RawSockaddrAny
		want string
	}{
		{&a4, "192.0.2.7:1883"},
		{&a6, "[2001:db8::1]:65535"},
		{&a46, "10.1.2.3:1"},
	} {
		if got := sockaddrString(tc.sa); got != tc.want {
			t.Errorf("sockaddrString = %q, want %q", got, tc.want)
		}
	}
}

// TestBornDetachedEndsWithOutput: a connection that ends in the batch it
// was born with (CONNECT, SUBSCRIBE to retained messages, DISCONNECT in one
// write) writes everything before it closes, though its socket takes little
// at a time: its reader, still reading the bare descriptor, attaches the
// connection for the rest instead of waiting for itself. (A socket pair with
// a small send buffer stands for the accepted socket.)
func TestBornDetachedEndsWithOutput(t *testing.T) {
	s, addr, _ := parkingServer(t)
	const n, size = 100, 8 << 10 // 800 KiB: less than the session's output bound (1 MiB)
	pub := idleClient(t, addr, "ret-pub")
	defer pub.Close()
	for i := range n {
		p := &packet.Publish{Topic: []byte("ret/" + strconv.Itoa(i)), QoS: 1, PacketID: uint16(i + 1), Retain: true, Payload: bytes.Repeat([]byte{byte(i)}, size)}
		if _, err := pub.Write(encode(t, p, packet.V311)); err != nil {
			t.Fatal(err)
		}
		readExactly(t, pub, []byte{0x40, 0x02, byte((i + 1) >> 8), byte(i + 1)})
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.SetsockoptInt(fds[0], syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4<<10); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[1]), "client")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b []byte
	b = append(b, encode(t, &packet.Connect{Version: packet.V311, ClientID: []byte("ret-sub"), CleanStart: true}, packet.V311)...)
	b = append(b, encode(t, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("ret/#")}}}, packet.V311)...)
	b = append(b, 0xe0, 0x00) // DISCONNECT
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	s.wg.Add(1)
	cn := s.admit(nil, fds[0], &ListenerConfig{Name: "tcp", DefaultTenant: "default"}, "192.0.2.1:1", "")
	if cn == nil {
		t.Fatal("not admitted")
	}
	cn.counted = true
	go s.run(cn)
	time.Sleep(100 * time.Millisecond) // the socket fills
	r := packet.NewReader(c, 64<<10)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	want := []packet.Type{packet.CONNACK, packet.SUBACK}
	for range n {
		want = append(want, packet.PUBLISH)
	}
	for i, w := range want {
		h, _, err := r.ReadPacket()
		if err != nil || h.Type != w {
			t.Fatalf("packet %d: %v %v, want %v", i, h.Type, err, w)
		}
	}
	expectClosed(t, c)
	waitFor(t, "the connection's end", func() bool { return s.OpenConnections() == 1 })
}
