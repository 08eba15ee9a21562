package server

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// A connection has a reader goroutine while it is busy, and a writer
// goroutine only while it has output the reader did not write: the
// broker's wake starts one when none runs, and the writer ends once the
// output is empty. After each batch the reader writes what the batch
// produced itself when no writer runs, without blocking (flush). The reader
// holds a read buffer (reader.go) and the broker a packet decoder
// (broker.Conn.Idle) only while there are bytes to handle. On Linux, a TCP
// connection whose last batch was only control packets (CONNECT, SUBSCRIBE,
// UNSUBSCRIBE, PINGREQ, AUTH) and that has nothing more to read parks: its
// reader ends and its socket waits in the server's epoll set
// (parker_linux.go), its keep-alive deadline in the parker's heap; bytes, a
// hang-up, the deadline or a close give it a reader again, except a lone
// PINGREQ, which the parker answers itself (answerPing). A connection
// that is only waiting for its next keep-alive therefore costs no goroutine
// and no buffer, only its state in the broker, instead of two goroutines and
// a 16 KiB read buffer. A connection carrying publishes or acknowledgements
// keeps its reader waiting in the runtime's poller, as before.

// Park states (connection.park).
const (
	reading = iota // a reader goroutine owns the connection
	parking        // the reader is registering the socket
	parked         // no goroutine: the parker, the timer or a close resumes it
	woken          // resumed while parking: the reader goes on reading
)

// Writer states (connection.state).
const (
	writerRunning = 1 << iota // a writer goroutine runs
	writerAgain               // woken while running: look at the output again
	writerStop                // the reader is done and flushes the rest itself
	writerDead                // the transport is closed (write error, close asked)
)

// connection is the runtime side of one client connection.
type connection struct {
	s *Server
	c *broker.Conn
	r frameReader // r.nc is the transport (nil while detached)

	lis *listenerLog
	// exited is made by the reader before it sets writerStop; a writer that
	// sees writerStop when it ends signals it.
	exited chan struct{}
	// spare is the output buffer the next writer hands to the broker
	// (double buffering); only the running writer, or the reader once the
	// writer is stopped, touches it.
	spare []byte

	// Parking (readers only, in turn). ctlFn is the callback of
	// syscall.RawConn.Control: it registers the socket in the parker's
	// epoll set, or duplicates it when ctlDup (parker_linux.go).
	ctlFn func(fd uintptr)
	// deadline is the keep-alive deadline in force, as time since the
	// server started (monotonic; 0: none).
	deadline time.Duration

	// Detaching (parker_linux.go): a parked TCP connection may give up its
	// net.Conn (r.nc is nil) and keep a bare duplicate descriptor, pfd. dmu
	// guards the switch, r.nc against it, and closeAsked (the transport is
	// to be closed: the next attach closes pfd instead).
	dmu sync.Mutex

	state atomic.Uint32
	park  atomic.Uint32
	fd    int32 // the socket, once parked
	due   int32 // 1 + its place in the parker's deadline heap (0: not in it)
	pfd   int32
	slot  int32 // the place in Server.conns
	// ctlErr is the error of ctlFn (a syscall.Errno).
	ctlErr uint32

	// tcpKeepAlive is set once TCP keep-alive has been turned on.
	tcpKeepAlive bool
	// counted: the connection holds a count of the server's WaitGroup,
	// released by finish (it may outlive the goroutine that took it).
	counted bool
	// started is set once the first byte was looked at (garbage.go),
	// handled once the first packet was handled.
	started, handled bool
	registered       bool // the socket is in the parker's epoll set
	detached         bool
	closeAsked       bool
	ctlDup           bool
	// bare: detached, and its reader reads the bare descriptor (bareConn,
	// parker_linux.go); only that reader may attach it meanwhile.
	bare bool
}

// deadlineAt returns the keep-alive deadline as a time (valid when
// cn.deadline is not 0).
func (cn *connection) deadlineAt() time.Time { return cn.s.started.Add(cn.deadline) }

// keepAliveDeadline is the deadline (as cn.deadline counts it) of a
// connection that has just read a packet: ka from now, 0 for none.
func (s *Server) keepAliveDeadline(ka time.Duration) time.Duration {
	if ka <= 0 {
		return 0
	}
	return max(time.Since(s.started)+ka, 1)
}

// maxSpare bounds the output buffer a connection keeps between writes.
const maxSpare = 256 << 10

// serve runs one connection until it ends. It returns when the reader and
// any writer are done, or when the connection is parked (then another
// goroutine ends it). remote is the client's address ("": nc's), cert the
// subject of its verified certificate.
func (s *Server) serve(nc net.Conn, lc *ListenerConfig, remote, cert string) {
	if cn := s.admit(nc, -1, lc, remote, cert); cn != nil {
		s.run(cn)
	}
}

// run reads until the connection ends (then ends it) or parks.
func (s *Server) run(cn *connection) {
	if s.readLoop(cn) {
		return
	}
	s.finish(cn)
}

// admit admits and registers a new connection (nil: refused). Its
// transport is nc or, when nc is nil, the bare socket descriptor fd of a
// plain TCP connection accepted by acceptBare (parker_linux.go).
//
//go:noinline
func (s *Server) admit(nc net.Conn, fd int, lc *ListenerConfig, remote, cert string) *connection {
	refused := s.closed.Load()
	if max := s.cfg.MaxConnections; !refused && max > 0 && s.open.Load() >= int64(max) {
		s.rejected.Add(1)
		refused = true
	}
	if refused {
		if nc != nil {
			nc.Close()
		} else {
			closeFD(fd)
		}
		return nil
	}
	s.open.Add(1)
	if remote == "" && nc != nil {
		remote = remoteString(nc.RemoteAddr())
	}
	info := broker.ConnInfo{Listener: lc.Name, DefaultTenant: lc.DefaultTenant, Remote: remote, CertSubject: cert,
		Redirect: lc.Redirect, Moved: lc.Moved, IdleEndsBatch: true} // readLoop and finish call Idle
	cn := &connection{s: s, pfd: -1}
	cn.r.init(nc, s.bufs, s.cfg.Broker.MaxPacketSize)
	cn.c = s.b.NewConn(info, cn.wakeUp)
	s.mu.Lock()
	cn.slot = int32(len(s.conns))
	s.conns = append(s.conns, cn)
	cn.lis = s.notMQTT[lc.Name]
	s.mu.Unlock()
	if nc == nil {
		// Born detached: the CONNECT deadline is the parker's, or the
		// attach's (bareConn.Read), and the connection may park before its
		// first byte, waiting for it without a goroutine.
		cn.readBare(fd)
		cn.deadline = s.keepAliveDeadline(s.cfg.ConnectTimeout)
		cn.r.parkOK = true
		return cn
	}
	_ = nc.SetReadDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	return cn
}

// finish ends a connection whose reader is done: it waits for a running
// writer, writes what is left, closes the transport and tells the broker.
//
//go:noinline
func (s *Server) finish(cn *connection) {
	cn.r.release()
	cn.c.Idle()
	cn.exited = make(chan struct{}, 1)
	old := cn.state.Or(writerStop)
	if cn.bare {
		// The reader is done with the bare descriptor: a writer waiting for
		// it (write) goes on, and so do the writes below, which attach the
		// connection when the socket does not take everything.
		cn.dmu.Lock()
		cn.bare = false
		cn.dmu.Unlock()
	}
	if old&writerRunning != 0 {
		<-cn.exited
	}
	if cn.state.Load()&writerDead == 0 {
		for {
			out, _ := cn.c.Output(cn.spare)
			if len(out) == 0 || !cn.write(out) {
				break
			}
		}
	}
	cn.spare = nil
	if cn.r.nc != nil {
		cn.r.nc.Close()
	} else {
		cn.closeDetached() // it ended reading its bare descriptor
	}
	cn.c.Closed()
	if cn.registered {
		s.parker.remove(cn)
	}
	s.mu.Lock()
	s.forget(cn)
	s.mu.Unlock()
	s.open.Add(-1)
	if cn.counted {
		s.wg.Done()
	}
}

// forget takes cn out of the open connections. The caller holds s.mu.
func (s *Server) forget(cn *connection) {
	last := len(s.conns) - 1
	if i := cn.slot; s.conns[i] == cn {
		s.conns[i] = s.conns[last]
		s.conns[i].slot = i
		s.conns[last] = nil
		s.conns = s.conns[:last]
	}
	if cap(s.conns) > 1024 && len(s.conns) < cap(s.conns)/4 {
		s.conns = append([]*connection(nil), s.conns...) // let a burst's table go
	}
}

// readLoop reads and handles packets until the connection ends (false) or
// parks (true: the goroutine must leave the connection alone).
func (s *Server) readLoop(cn *connection) (parked bool) {
	r := &cn.r
	read := 0
	control := true // the batch so far has only control packets
	for {
		// An idle connection waits here (see frameReader.waitBatch).
		err := r.waitBatch()
		if err == errPark {
			if s.park(cn) {
				return true
			}
			r.parkOK = false
			continue
		}
		if err == nil && !cn.started {
			cn.started = true
			if !firstByteOK(r.buf()[r.r]) {
				s.refuseNotMQTT(cn, r.buf()[r.r:r.w])
				return false
			}
		}
		var h packet.FixedHeader
		var body []byte
		if err == nil {
			h, body, err = r.ReadPacket()
		}
		if err != nil {
			s.readFailed(cn, err)
			return false
		}
		control = control && isControl(h.Type)
		cn.c.Handle(h, body)
		if cn.c.Closing() {
			if !cn.handled {
				s.holdRefusal(cn) // a refused CONNECT
			}
			return false
		}
		cn.handled = true
		read += h.Size() + h.Remaining
		if r.Buffered() == 0 {
			cn.c.Idle() // packet boundary: the broker gives back its decoder
			s.batchDone(cn, read)
			r.parkOK = control && s.parker != nil && r.raw != nil
			read, control = 0, true
			if r.parkOK {
				// Park at once, without the read that would mostly find
				// nothing: the socket's readiness, checked as it joins the
				// epoll set, resumes it at once if bytes came meanwhile.
				r.release()
				if s.park(cn) {
					return true
				}
				r.parkOK = false
			}
		}
	}
}

// isControl says which packets let a connection park after them: those that
// do not come in streams.
func isControl(t packet.Type) bool {
	switch t {
	case packet.CONNECT, packet.SUBSCRIBE, packet.UNSUBSCRIBE, packet.PINGREQ, packet.AUTH:
		return true
	}
	return false
}

// park hands an idle connection to the parker. It returns false when the
// connection must go on reading (it could not be parked, or bytes came in
// the meantime).
//
//go:noinline
func (s *Server) park(cn *connection) bool {
	if cn.deadline != 0 && time.Until(cn.deadlineAt()) < time.Millisecond {
		return false // about to time out: the runtime's poller says when
	}
	handled := cn.handled // (cn is not ours to read once parked)
	cn.park.Store(parking)
	if !s.parker.add(cn) { // also files the keep-alive deadline
		cn.park.Store(reading)
		return false
	}
	if cn.park.CompareAndSwap(parking, parked) {
		// From here on, cn belongs to whoever resumes it.
		if s.parkedHook != nil && handled {
			s.parkedHook()
		}
		return true
	}
	cn.park.Store(reading)
	s.parker.remove(cn)
	s.parker.reading(cn) // a failure leaves no net.Conn: the next read fails
	return false
}

// unpark gives a parked connection a reader goroutine again. It is called
// by the parker (the socket is readable or hung up, or the keep-alive
// deadline passed) and by whoever closed the transport; a spurious call
// costs a reader that finds nothing and parks again.
func (cn *connection) unpark() {
	for {
		switch cn.park.Load() {
		case parked:
			if cn.park.CompareAndSwap(parked, reading) {
				go cn.s.resume(cn)
				return
			}
		case parking:
			if cn.park.CompareAndSwap(parking, woken) {
				return
			}
		default:
			return
		}
	}
}

// resume runs a connection that was parked. The read deadline in force
// still applies: past it, the first read times out as it would have.
func (s *Server) resume(cn *connection) {
	s.resumed.Add(1)
	growStack(0)
	s.parker.remove(cn)
	s.parker.reading(cn) // a failure leaves no net.Conn: the first read fails
	s.run(cn)
}

// closeTransport closes the connection's socket, which ends its reader,
// parked or not.
func (cn *connection) closeTransport() {
	cn.dmu.Lock()
	cn.closeAsked = true
	if cn.r.nc != nil {
		cn.r.nc.Close()
	} // detached: the reader that unpark starts closes the descriptor
	cn.dmu.Unlock()
	cn.unpark()
}

// setConn makes nc the connection's transport (nil: none, while detached).
func (cn *connection) setConn(nc net.Conn) { cn.r.setConn(nc) }

// batchDone runs when everything read has been handled: inbound bandwidth
// limits push back by not reading; a writer sends what the batch produced;
// the keep-alive deadline is armed before the reader waits again. After the
// first packet the connection is either established or closing, so the
// CONNECT deadline gives way to keep alive.
//
//go:noinline
func (s *Server) batchDone(cn *connection, read int) {
	if p := cn.c.InboundPause(read); p > 0 {
		time.Sleep(p)
	}
	cn.flush()
	// A connection reading its bare descriptor keeps the deadline in
	// cn.deadline alone: the parker, or the attach, applies it.
	nc := cn.r.nc
	if cn.deadline = s.keepAliveDeadline(cn.c.KeepAlive()); cn.deadline != 0 {
		if nc != nil {
			_ = nc.SetReadDeadline(cn.deadlineAt())
		}
	} else {
		if nc != nil {
			_ = nc.SetReadDeadline(time.Time{})
		}
		if !cn.tcpKeepAlive {
			// Without MQTT keep alive, TCP keep-alive (Go's defaults) finds a
			// peer that vanished. (TCP listeners accept without it.)
			cn.tcpKeepAlive = true
			if tc, ok := nc.(*net.TCPConn); ok {
				_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true})
			} else if nc == nil {
				cn.keepAliveBare()
			}
		}
	}
}

//go:noinline
func (s *Server) readFailed(cn *connection, err error) {
	var pe *packet.Error
	if errors.As(err, &pe) {
		cn.c.Fail(err) // malformed header or packet too large
		return
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		s.timeouts.Add(1)
	}
	cn.c.Lost(err) // keep-alive timeout, reset, EOF: the disconnected event says which
}

// wakeUp is the broker's wake function: it starts a writer unless one runs
// (then it tells it to look again) or the connection is ending. It never
// blocks.
func (cn *connection) wakeUp() {
	for {
		st := cn.state.Load()
		switch {
		case st&(writerStop|writerDead) != 0:
			return
		case st&writerRunning == 0:
			if cn.state.CompareAndSwap(st, st|writerRunning) {
				go cn.writeLoop()
				return
			}
		case st&writerAgain != 0:
			return
		default:
			if cn.state.CompareAndSwap(st, st|writerAgain) {
				return
			}
		}
	}
}

// flush is the reader's wake after a batch: when no writer runs, the reader
// takes the writer's part and writes what the batch produced itself (a
// CONNACK, a SUBACK, a PINGRESP...), which spares a writer goroutine and
// its wake-up per batch. It never blocks: what the socket does not take at
// once is left to a writer goroutine. Transports without a raw descriptor
// start a writer as before.
func (cn *connection) flush() {
	if cn.r.raw == nil {
		cn.wakeUp()
		return
	}
	if !cn.claimWriter() {
		cn.wakeUp() // a writer runs: it looks again (or nothing is to be written)
		return
	}
	cn.writeOut(nil, true)
}

// claimWriter makes the caller cn's writer (writerRunning), unless a writer
// runs or the connection is ending: the reader after a batch (flush), and
// the parker to write a PINGRESP between other writers' packets
// (parker_linux.go).
func (cn *connection) claimWriter() bool {
	for {
		st := cn.state.Load()
		if st&(writerRunning|writerStop|writerDead) != 0 {
			return false
		}
		if cn.state.CompareAndSwap(st, st|writerRunning) {
			return true
		}
	}
}

// releaseWriter ends claimWriter's part: the connection has no writer
// again, unless a wake came meanwhile, which a writer goroutine then sees to.
func (cn *connection) releaseWriter() {
	for {
		st := cn.state.Load()
		if st&writerAgain != 0 {
			go cn.writeLoop() // it clears writerAgain and looks at the output
			return
		}
		if cn.state.CompareAndSwap(st, st&^writerRunning) {
			return
		}
	}
}

// writeLoop is the writer goroutine.
func (cn *connection) writeLoop() { cn.writeOut(nil, false) }

// writeRest is a writer goroutine that takes over from the reader (flush):
// it waits pause (the outbound bandwidth limit), writes pending, then goes
// on as writeLoop.
func (cn *connection) writeRest(pending []byte, pause time.Duration) {
	if pause > 0 {
		time.Sleep(pause)
	}
	cn.writeOut(pending, false)
}

// writeOut writes pending, then the connection's output until there is
// none, then ends; it also ends when the reader is done (which then writes
// the rest) or the transport fails. The caller holds writerRunning. inline
// says the reader runs it (flush): its writes must not block, so output
// the socket does not take at once, or a pause, goes to a writer
// goroutine.
func (cn *connection) writeOut(pending []byte, inline bool) {
	dead := false
	if len(pending) > 0 && !cn.write(pending) {
		dead = true
	}
	for !dead {
		st := cn.state.Load()
		if st&writerStop != 0 {
			break
		}
		if st&writerAgain != 0 {
			// Clear the request before looking at the output, so that a wake
			// from now on is seen.
			if !cn.state.CompareAndSwap(st, st&^writerAgain) {
				continue
			}
			st &^= writerAgain
		}
		out, closeNow := cn.c.Output(cn.spare)
		if len(out) > 0 && inline {
			n, err := cn.r.writeNow(out)
			if err != nil {
				cn.closeTransport()
				dead = true
				break
			}
			if n < len(out) {
				go cn.writeRest(out[n:], cn.c.OutboundPause(n))
				return
			}
			if p := cn.wrote(out); p > 0 {
				go cn.writeRest(nil, p)
				return
			}
			continue
		}
		if len(out) > 0 {
			if !cn.write(out) {
				dead = true
				break
			}
			continue
		}
		if closeNow {
			cn.closeTransport() // ends the reader
			dead = true
			break
		}
		// Nothing to write: end, unless a wake came meanwhile.
		if cn.state.CompareAndSwap(st, st&^writerRunning) {
			return
		}
	}
	for {
		st := cn.state.Load()
		next := st &^ (writerRunning | writerAgain)
		if dead {
			next |= writerDead
		}
		if cn.state.CompareAndSwap(st, next) {
			if st&writerStop != 0 {
				cn.exited <- struct{}{}
			}
			return
		}
	}
}

// write writes out and keeps its buffer as the next spare. On failure it
// closes the transport (which ends the reader).
func (cn *connection) write(out []byte) bool {
	var nc net.Conn
	rest := out
	if cn.s.parker == nil {
		nc = cn.r.nc
	} else {
		// The connection may be detached (parked): write to its descriptor,
		// which attaches it when the socket does not take everything.
		cn.dmu.Lock()
		var err error
		if cn.detached {
			var n int
			n, err = cn.s.parker.writeDetached(cn, rest)
			rest = rest[n:]
			var since time.Time
			for err == nil && len(rest) > 0 && cn.bare {
				// The socket is full and the reader reads the bare
				// descriptor: only it may attach the socket, which it does
				// when its socket is empty (it parks, or attaches to wait) or
				// it ends. Meanwhile write what the socket takes, within the
				// write timeout, as a blocking write would (a client that
				// floods without ever reading keeps its reader bare).
				if since.IsZero() {
					since = time.Now()
				} else if time.Since(since) >= cn.s.cfg.WriteTimeout {
					err = &net.OpError{Op: "write", Net: "tcp", Err: os.ErrDeadlineExceeded}
					break
				}
				cn.dmu.Unlock()
				time.Sleep(time.Millisecond)
				cn.dmu.Lock()
				if cn.detached {
					n, err = cn.s.parker.writeDetached(cn, rest)
					rest = rest[n:]
				}
			}
		}
		nc = cn.r.nc
		cn.dmu.Unlock()
		if err == nil && nc == nil && len(rest) > 0 {
			err = net.ErrClosed
		}
		if err != nil {
			cn.c.WriteFailed(err)
			cn.closeTransport()
			return false
		}
	}
	if len(rest) > 0 {
		_ = nc.SetWriteDeadline(time.Now().Add(cn.s.cfg.WriteTimeout))
		if _, err := nc.Write(rest); err != nil {
			cn.c.WriteFailed(err)
			cn.closeTransport()
			return false
		}
	}
	if p := cn.wrote(out); p > 0 {
		time.Sleep(p) // outbound bandwidth limit
	}
	return true
}

// wrote keeps the buffer of out, written, as the next spare and returns
// the pause the outbound bandwidth limit asks for.
func (cn *connection) wrote(out []byte) time.Duration {
	p := cn.c.OutboundPause(len(out))
	if cap(out) > maxSpare {
		out = nil // do not keep a huge buffer for an idle connection
	}
	cn.spare = out[:0]
	return p
}

// remoteString formats a remote address; a TCP address takes one
// allocation instead of three (net.TCPAddr.String).
func remoteString(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok && ta.Zone == "" {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return netip.AddrPortFrom(ip.Unmap(), uint16(ta.Port)).String()
		}
	}
	return a.String()
}
