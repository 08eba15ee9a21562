package server

import (
	"errors"
	"io"
	"math"
	"net"
	"strconv"
	"sync"
	"syscall"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// Idle connections must be cheap: most of a large broker's connections are
// idle most of the time. A connection therefore holds no read buffer while
// nothing is buffered: it borrows one from a pool when bytes arrive and
// gives it back as soon as everything read has been handled and the socket
// has nothing more (the read that would block). A busy connection keeps its
// buffer from batch to batch and reads exactly as before: a packet that
// fits in the buffer is handed to the broker in place (zero-copy), larger
// ones are gathered in a separate buffer.
//
// On a plain TCP socket the wait for data costs no buffer at all: the read
// is issued from syscall.RawConn.Read's callback, which takes the buffer
// when the socket is readable and returns it when the read would block, so
// a busy connection makes no more system calls than with a bufio.Reader.
// Other transports (TLS, WebSocket) block in Read with a few bytes of
// stash instead, and take a buffer once those arrive.

// minReadBuffer is the smallest read buffer: it must hold a fixed header.
const minReadBuffer = 64

// bigChunk is how much of a body larger than the read buffer is gathered at
// a time, so that a client that announces a large packet and sends it
// slowly does not make the server allocate the whole claim up front.
const bigChunk = 64 << 10

// errPark is returned by waitBatch on a connection allowed to park
// (frameReader.parkOK) when nothing is buffered and the socket has nothing.
var errPark = errors.New("server: idle connection may park")

// bufPool hands out read buffers of one size. It stores pointers so that
// neither Get nor Put allocates.
type bufPool struct {
	size int
	p    sync.Pool // of *[]byte
}

func newBufPool(size int) *bufPool {
	return &bufPool{size: max(size, minReadBuffer)}
}

func (p *bufPool) get() *[]byte {
	if b, ok := p.p.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, p.size)
	return &b
}

func (p *bufPool) put(b *[]byte) { p.p.Put(b) }

// frameReader reads MQTT packets from one connection. It applies the same
// checks as packet.Reader (reserved type, length encoding, maximum packet
// size before the body is read) and returns the same errors; the body it
// returns aliases its memory until the next call.
type frameReader struct {
	nc   net.Conn
	raw  syscall.RawConn // nil: read through nc
	pool *bufPool

	bufp *[]byte // the borrowed buffer (buf()), nil while nothing is buffered
	r, w int     // unread bytes are buf()[r:w]
	big  *[]byte // a body larger than the buffer; kept while the connection is busy (behind a pointer: most connections never have one)

	// boundary is true while waiting for the first byte of a packet: a read
	// that would block then also lets go of big, and returns errPark when
	// parkOK.
	boundary bool
	parkOK   bool
	// writing makes the raw callback write dst instead (writeNow).
	writing bool
	parked  bool // the raw read's result: the connection may park (errPark)

	// The raw read's destination (nil: buf()) and result: n bytes, or
	// errno, or parked.
	dst    []byte
	readFn func(fd uintptr) bool
	errno  syscall.Errno
	n      int32
	max    int32 // maximum packet size (fixed header included)

	// stash holds the first bytes of a batch on transports without a raw
	// read (made on first use: plain TCP connections never need it).
	stash *[16]byte
}

// init makes f read packets of at most maxPacket bytes (0: the protocol's
// maximum) from nc.
func (f *frameReader) init(nc net.Conn, pool *bufPool, maxPacket int) {
	if maxPacket <= 0 {
		maxPacket = packet.MaxPacketSize
	}
	*f = frameReader{pool: pool, max: int32(min(maxPacket, math.MaxInt32))}
	f.setConn(nc)
}

// setConn makes f read from nc (nil: none; reads fail with net.ErrClosed).
func (f *frameReader) setConn(nc net.Conn) {
	f.nc, f.raw = nc, nil
	if sc, ok := nc.(syscall.Conn); ok && rawReadSupported {
		if raw, err := sc.SyscallConn(); err == nil {
			f.raw = raw
			if f.readFn == nil {
				f.readFn = f.rawRead // one closure per connection, not per read
			}
		}
	}
}

// Buffered returns how many bytes have been read from the connection but not
// yet returned in a packet.
func (f *frameReader) Buffered() int { return f.w - f.r }

// holding reports whether the reader holds a read buffer (for tests).
func (f *frameReader) holding() bool { return f.bufp != nil }

// buf returns the borrowed read buffer (the caller knows there is one).
func (f *frameReader) buf() []byte { return *f.bufp }

func (f *frameReader) acquire() {
	f.bufp = f.pool.get()
	f.r, f.w = 0, 0
}

// releaseBuf gives the read buffer back; the caller checked that nothing is
// buffered.
func (f *frameReader) releaseBuf() {
	if f.bufp != nil {
		f.pool.put(f.bufp)
		f.bufp = nil
	}
	f.r, f.w = 0, 0
}

// letGo gives back what an idle wait need not hold: the read buffer when
// nothing is buffered, and at a packet boundary the large body buffer.
func (f *frameReader) letGo() {
	if f.r == f.w {
		f.releaseBuf()
		if f.boundary {
			f.big = nil
		}
	}
}

// release gives back every buffer (the connection is done).
func (f *frameReader) release() {
	f.releaseBuf()
	f.big = nil
}

// ReadPacket reads one packet's fixed header and body. io.EOF means the
// stream ended cleanly between packets.
func (f *frameReader) ReadPacket() (packet.FixedHeader, []byte, error) {
	var h packet.FixedHeader
	if err := f.waitBatch(); err != nil {
		return h, nil, err
	}
	b0 := f.buf()[f.r]
	h.Type, h.Flags = packet.Type(b0>>4), b0&0x0f
	if h.Type == 0 {
		return h, nil, &packet.Error{Code: packet.MalformedPacket, Reason: "reserved packet type 0"}
	}
	var v uint32
	k := 0
	for ; ; k++ {
		if k == 4 {
			return h, nil, &packet.Error{Code: packet.MalformedPacket, Packet: h.Type, Reason: "remaining length longer than four bytes"}
		}
		if err := f.need(2 + k); err != nil {
			return h, nil, unexpected(err)
		}
		d := f.buf()[f.r+1+k]
		v |= uint32(d&0x7f) << (7 * k)
		if d&0x80 == 0 {
			if k > 0 && d == 0 {
				return h, nil, &packet.Error{Code: packet.MalformedPacket, Packet: h.Type, Statement: "MQTT-1.5.5-1",
					Reason: "remaining length not minimally encoded"}
			}
			break
		}
	}
	h.Remaining = int(v)
	f.r += 2 + k
	if total := 2 + k + h.Remaining; total > int(f.max) {
		return h, nil, &packet.Error{Code: packet.PacketTooLarge, Packet: h.Type,
			Reason: "packet of " + strconv.Itoa(total) + " bytes exceeds the maximum of " + strconv.Itoa(int(f.max))}
	}
	n := h.Remaining
	if n == 0 {
		return h, nil, nil
	}
	if n <= f.pool.size {
		// Zero-copy: the body lies in the read buffer until the next read.
		if err := f.need(n); err != nil {
			return h, nil, unexpected(err)
		}
		body := f.buf()[f.r : f.r+n : f.r+n]
		f.r += n
		return h, body, nil
	}
	var big []byte
	if f.big != nil {
		big = (*f.big)[:0]
	}
	for len(big) < n {
		step := min(n-len(big), bigChunk)
		if cap(big)-len(big) < step {
			nb := make([]byte, len(big), min(n, max(2*cap(big), len(big)+step)))
			copy(nb, big)
			big = nb
		}
		var m int
		var err error
		if f.r < f.w {
			m = copy(big[len(big):len(big)+step], f.buf()[f.r:f.w])
			f.r += m
		} else {
			m, err = f.read(big[len(big) : len(big)+step])
		}
		big = big[:len(big)+m]
		if err != nil {
			f.keepBig(big)
			return h, nil, unexpected(err)
		}
	}
	f.keepBig(big)
	return h, big, nil
}

// keepBig keeps big, a large body's buffer, for the connection's next one
// until the connection is idle (letGo).
func (f *frameReader) keepBig(big []byte) {
	if f.big == nil {
		f.big = new([]byte)
	}
	*f.big = big
}

// waitBatch waits for the first byte of the next packet. Called with nothing
// buffered, it is where an idle connection waits: with no read buffer, and
// (called from the read loop) with little on its goroutine's stack.
func (f *frameReader) waitBatch() error {
	if f.r < f.w {
		return nil
	}
	f.boundary = true
	err := f.need(1)
	f.boundary = false
	return err
}

// need makes sure that at least n (at most the buffer's size) bytes are
// buffered, contiguous from f.r.
func (f *frameReader) need(n int) error {
	for f.w-f.r < n {
		if f.r == f.w {
			if f.raw == nil && f.bufp != nil {
				// Wait for the next batch without holding a buffer.
				f.releaseBuf()
			}
			f.r, f.w = 0, 0
		} else if f.r > 0 {
			// Slide the unread bytes to the front, as bufio does, so that
			// the read has the whole buffer.
			f.w = copy(f.buf(), f.buf()[f.r:f.w])
			f.r = 0
		}
		if _, err := f.read(nil); err != nil {
			return err
		}
	}
	return nil
}

// read reads into dst, or into the free end of the read buffer (taking one
// if needed) when dst is nil.
func (f *frameReader) read(dst []byte) (int, error) {
	if f.raw == nil {
		return f.readConn(dst)
	}
	f.dst = dst
	err := f.raw.Read(f.readFn)
	f.dst = nil
	if err != nil {
		// A deadline that passed before the read began ends it before
		// rawRead runs: let go as a read that found the socket empty does.
		f.letGo()
		return 0, err
	}
	n := int(f.n)
	if f.parked {
		f.parked = false
		return 0, errPark
	}
	if f.errno != 0 {
		return 0, f.rawError()
	}
	if n == 0 {
		return 0, io.EOF
	}
	if dst == nil {
		f.w += n
	}
	return n, nil
}

// writeNow writes b to the raw descriptor without waiting and returns how
// much the socket took (0 when it is full). The reader calls it, between
// reads, to write its connection's output itself (connection.flush); it
// reuses the read callback, so that it costs no closure.
func (f *frameReader) writeNow(b []byte) (int, error) {
	f.dst, f.writing = b, true
	err := f.raw.Write(f.readFn)
	f.dst, f.writing = nil, false
	n, errno := int(f.n), f.errno
	f.n, f.errno = 0, 0
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, f.opError("write", errno)
	}
	return n, nil
}

//go:noinline
func (f *frameReader) rawError() error {
	errno := f.errno
	f.n, f.errno = 0, 0
	return f.opError("read", errno)
}

// opError is the error of a raw read or write; a connection read through
// its bare descriptor (parker_linux.go) has no addresses to name.
func (f *frameReader) opError(op string, errno syscall.Errno) error {
	e := &net.OpError{Op: op, Net: "tcp", Err: errno}
	if f.nc != nil {
		e.Source, e.Addr = f.nc.LocalAddr(), f.nc.RemoteAddr()
	}
	return e
}

// readConn is read through net.Conn.Read: while nothing is buffered it
// blocks with the small stash and takes a buffer once bytes arrive.
func (f *frameReader) readConn(dst []byte) (int, error) {
	if f.nc == nil {
		return 0, net.ErrClosed // detached, and attaching failed
	}
	if dst != nil {
		return f.nc.Read(dst)
	}
	if f.bufp == nil {
		if f.stash == nil {
			f.stash = new([16]byte)
		}
		n, err := f.nc.Read(f.stash[:])
		if n == 0 {
			if err == nil {
				err = io.ErrNoProgress
			}
			return 0, err
		}
		f.acquire()
		f.w = copy(f.buf(), f.stash[:n])
		return n, nil // an error comes back with the next read
	}
	n, err := f.nc.Read(f.buf()[f.w:])
	f.w += n
	if n > 0 {
		return n, nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return 0, err
}

// unexpected turns a clean EOF in the middle of a packet into
// io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
