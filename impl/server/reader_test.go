package server

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// chunkConn is a net.Conn that reads a fixed byte stream in chunks of at
// most n bytes (it has no raw descriptor, so frameReader reads through
// Read).
type chunkConn struct {
	net.Conn // nil: only Read is used
	r        *bytes.Reader
	n        int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

// readAll reads packets until an error and records each one (or the error)
// as a line.
type readResult struct {
	Type      packet.Type
	Flags     byte
	Remaining int
	Body      []byte
	Err       string
	Code      packet.ReasonCode
}

func result(h packet.FixedHeader, body []byte, err error) readResult {
	r := readResult{Type: h.Type, Flags: h.Flags, Remaining: h.Remaining, Body: bytes.Clone(body)}
	if err != nil {
		r = readResult{Err: err.Error(), Code: packet.CodeOf(err)}
		var pe *packet.Error
		if !errors.As(err, &pe) {
			r.Code = 0
		}
	}
	return r
}

func readAllPacket(stream []byte, max int) []readResult {
	r := packet.NewReader(bytes.NewReader(stream), 256)
	r.MaxPacketSize = max
	var out []readResult
	for {
		h, body, err := r.ReadPacket()
		out = append(out, result(h, body, err))
		if err != nil {
			return out
		}
	}
}

func readAllFrame(stream []byte, max, chunk, bufSize int) []readResult {
	var f frameReader
	f.init(&chunkConn{r: bytes.NewReader(stream), n: chunk}, newBufPool(bufSize), max)
	var out []readResult
	for {
		h, body, err := f.ReadPacket()
		out = append(out, result(h, body, err))
		if err != nil {
			return out
		}
	}
}

func frameStreams(t testing.TB) map[string][]byte {
	pub := func(n int) []byte {
		return encode(t, &packet.Publish{Topic: []byte("a/b"), Payload: bytes.Repeat([]byte{'x'}, n)}, packet.V311)
	}
	connect := encode(t, &packet.Connect{Version: packet.V5, ClientID: []byte("c"), CleanStart: true, KeepAlive: 30}, packet.V5)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	return map[string][]byte{
		"empty":             nil,
		"connect":           connect,
		"small packets":     cat(connect, pub(0), pub(10), []byte{0xc0, 0x00}, pub(100)),
		"fills the buffer":  cat(pub(250), pub(251), pub(300), pub(252)),
		"larger than buf":   cat(pub(1000), pub(5), pub(70_000), pub(3)),
		"reserved type 0":   {0x00, 0x00},
		"type 0 after one":  cat(pub(3), []byte{0x05}),
		"length 5 bytes":    {0x30, 0xff, 0xff, 0xff, 0xff, 0x01},
		"not minimal":       {0x30, 0x80, 0x00},
		"too large":         cat(pub(10), pub(2000)),
		"eof in header":     {0x30, 0x80},
		"eof after type":    {0x30},
		"eof in body":       pub(100)[:50],
		"eof in large body": pub(70_000)[:66_000],
		"pingreq":           {0xc0, 0x00, 0xd0, 0x00},
	}
}

// TestFrameReaderMatchesPacketReader reads the same streams with
// packet.Reader and frameReader, through chunks of every size that
// matters, and wants the same packets and errors.
func TestFrameReaderMatchesPacketReader(t *testing.T) {
	for name, stream := range frameStreams(t) {
		for _, max := range []int{0, 1500} {
			want := readAllPacket(stream, max)
			for _, chunk := range []int{1, 2, 3, 7, 64, 1 << 20} {
				if chunk < 64 && len(stream) > 4096 {
					continue // slow, and the long streams' chunks of 7 say it all
				}
				for _, bufSize := range []int{0, 256, 4096} {
					got := readAllFrame(stream, max, chunk, bufSize)
					if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("%s (max %d, chunks of %d, buffer %d): -packet.Reader +frameReader:\n%s", name, max, chunk, bufSize, diff)
					}
				}
			}
		}
	}
}

// FuzzFrameReader checks frameReader against packet.Reader on any stream.
func FuzzFrameReader(f *testing.F) {
	for _, s := range frameStreams(f) {
		f.Add(s, uint8(3), uint16(0))
	}
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8, max uint16) {
		want := readAllPacket(stream, int(max))
		got := readAllFrame(stream, int(max), int(chunk)+1, 64)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("-packet.Reader +frameReader:\n%s", diff)
		}
	})
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// TestFrameReaderIdleHoldsNoBuffer checks the point of frameReader on a
// real socket: the read buffer is held while packets are handled and given
// back when the socket has nothing more, and a large body's buffer goes with
// it at a packet boundary.
func TestFrameReaderIdleHoldsNoBuffer(t *testing.T) {
	server, client := tcpPair(t)
	var f frameReader
	f.init(server, newBufPool(1024), 0)
	if f.raw == nil {
		t.Skip("no raw reads on this platform")
	}
	pub := func(n int) []byte {
		return encode(t, &packet.Publish{Topic: []byte("t"), Payload: bytes.Repeat([]byte{'p'}, n)}, packet.V311)
	}
	idle := func() {
		t.Helper()
		// A read that times out has found the socket empty, and let go.
		_ = server.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		if _, _, err := f.ReadPacket(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("ReadPacket on an idle socket: %v, want a timeout", err)
		}
		if f.holding() || f.big != nil {
			t.Fatalf("idle reader holds a buffer (read buffer %v, large body buffer %d bytes)", f.holding(), bigCap(&f))
		}
		_ = server.SetReadDeadline(time.Time{})
	}
	idle()

	if _, err := client.Write(append(pub(10), pub(20)...)); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{10, 20} {
		h, body, err := f.ReadPacket()
		if err != nil || h.Type != packet.PUBLISH || !bytes.HasSuffix(body, bytes.Repeat([]byte{'p'}, n)) {
			t.Fatalf("ReadPacket: %v %v %q", h, err, body)
		}
		if !f.holding() {
			t.Fatal("the buffer a body lies in was given back")
		}
	}
	idle()

	big := pub(100_000)
	go func() { _, _ = client.Write(big) }()
	h, body, err := f.ReadPacket()
	if err != nil || h.Remaining != len(body) || len(body) < 100_000 {
		t.Fatalf("large packet: %v %v (%d bytes)", h, err, len(body))
	}
	idle()
}

// TestFrameReaderEOF: a clean close between packets is io.EOF, inside one
// io.ErrUnexpectedEOF, on a real socket.
func TestFrameReaderEOF(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"between packets", []byte{0xc0, 0x00}, io.EOF},
		{"in a header", []byte{0xc0, 0x00, 0x30}, io.ErrUnexpectedEOF},
		{"in a body", []byte{0xc0, 0x00, 0x30, 0x05, 0x00}, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := tcpPair(t)
			var f frameReader
			f.init(server, newBufPool(0), 0)
			_, _ = client.Write(tc.data)
			client.Close()
			if _, _, err := f.ReadPacket(); err != nil {
				t.Fatalf("first packet: %v", err)
			}
			if _, _, err := f.ReadPacket(); err != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			f.release()
		})
	}
}

// loopConn serves the same bytes over and over (in reads of up to 16 KiB).
type loopConn struct {
	net.Conn
	data []byte
	off  int
}

func (c *loopConn) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

// BenchmarkReadPacket compares frameReader with packet.Reader on a stream
// of small PUBLISH packets (the QoS 0 hot path), per packet.
func BenchmarkReadPacket(b *testing.B) {
	one := encode(b, &packet.Publish{Topic: []byte("bench/topic/1"), Payload: bytes.Repeat([]byte{'x'}, 16)}, packet.V311)
	stream := bytes.Repeat(one, (64<<10)/len(one))
	b.Run("frameReader", func(b *testing.B) {
		var f frameReader
		f.init(&loopConn{data: stream}, newBufPool(16<<10), 0)
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := f.ReadPacket(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("packet.Reader", func(b *testing.B) {
		r := packet.NewReader(&loopConn{data: stream}, 16<<10)
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := r.ReadPacket(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// bigCap is the capacity of f's large body buffer (0: none).
func bigCap(f *frameReader) int {
	if f.big == nil {
		return 0
	}
	return cap(*f.big)
}
