//go:build linux

package server

import (
	"container/heap"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// parker keeps idle TCP connections without a goroutine: their sockets wait
// in an epoll set of the server's own, and a readable (or closed) socket gets
// a reader goroutine again, unless it holds a lone PINGREQ, which the parker
// answers (answerPing). The epoll descriptor itself waits in the Go
// runtime's poller, so no thread blocks on it. The keep-alive deadlines of
// the parked connections wait in a heap of the parker's, under one timer
// (a timer per connection cost more than the rest of a parked connection's
// runtime state).
type parker struct {
	epfd int
	file *os.File // epfd, waiting in the runtime's poller (never call its Fd: it would make it blocking)

	mu sync.Mutex
	// conns holds the parked connections by descriptor: the kernel hands
	// out the lowest free descriptor, so a slice indexed by it stays dense
	// and costs a pointer per descriptor, where a map cost about 36 B per
	// parked connection.
	conns []*connection
	// due holds the parked connections with a deadline, earliest first (a
	// binary heap on connection.deadline; connection.due is 1 + the place).
	// timer fires at or before the earliest; closed stops it for good.
	due    dueHeap
	timer  *time.Timer
	closed bool

	// scratch is where run looks at a socket's bytes (answerPing).
	scratch [3]byte
}

func newParker() (*parker, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, os.NewSyscallError("setnonblock", err)
	}
	return &parker{epfd: fd, file: os.NewFile(uintptr(fd), "skybridge-parker")}, nil
}

// add registers cn's socket for one readiness event. A plain TCP
// connection is detached first (see detach), unless a writer is running.
func (p *parker) add(cn *connection) bool {
	cn.dmu.Lock()
	defer cn.dmu.Unlock()
	if cn.bare {
		if cn.closeAsked {
			// Asked to close while its reader read the bare descriptor (no
			// net.Conn to close then, and the wake-up found no parked
			// connection): parked now, nothing would wake it. The reader
			// goes on, attaches and fails (bareConn).
			return false
		}
		// Its reader read the bare descriptor: that one parks as it is,
		// without the raw read's closure (readBare makes it again).
		cn.bare = false
		if p.arm(cn, int(cn.pfd)) == nil {
			cn.r.readFn = nil
			return true
		}
		_ = p.attachLocked(cn, false) // the reader goes on with the socket
		return false
	}
	if p.detach(cn) {
		if p.arm(cn, int(cn.pfd)) == nil {
			return true
		}
		_ = p.attachLocked(cn, false) // the reader goes on with the socket
		return false
	}
	if cn.control(false) != nil {
		p.remove(cn)
		return false
	}
	return true
}

// control runs cn.ctlFn (register, or dup when dup) on cn's descriptor.
func (cn *connection) control(dup bool) error {
	if cn.ctlFn == nil {
		cn.ctlFn = cn.controlFn // one closure per connection, not per park
	}
	cn.ctlDup, cn.ctlErr = dup, 0
	if err := cn.r.raw.Control(cn.ctlFn); err != nil {
		return err
	}
	if cn.ctlErr != 0 {
		return syscall.Errno(cn.ctlErr)
	}
	return nil
}

// controlFn is the callback of syscall.RawConn.Control, in which the
// descriptor cannot be closed.
func (cn *connection) controlFn(fd uintptr) {
	if cn.ctlDup {
		cn.dup(fd)
	} else {
		cn.register(fd)
	}
}

// register arms cn's socket.
func (cn *connection) register(fd uintptr) {
	if err := cn.s.parker.arm(cn, int(fd)); err != nil {
		cn.ctlErr = uint32(syscall.EINVAL)
		if errno, ok := err.(syscall.Errno); ok {
			cn.ctlErr = uint32(errno)
		}
	}
}

// arm puts cn in the table under fd and arms fd for one readiness event.
func (p *parker) arm(cn *connection, fd int) error {
	cn.fd = int32(fd)
	p.mu.Lock()
	p.set(cn)
	if cn.deadline != 0 && cn.due == 0 {
		p.push(cn)
	}
	p.mu.Unlock()
	op := syscall.EPOLL_CTL_MOD
	if !cn.registered {
		op = syscall.EPOLL_CTL_ADD
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: cn.fd}
	err := syscall.EpollCtl(p.epfd, op, fd, &ev)
	if err == nil {
		cn.registered = true
	} else {
		p.remove(cn)
	}
	return err
}

// A parked plain TCP connection is detached: it keeps its socket as a bare
// descriptor of its own (a duplicate) in the parker's epoll set and lets go
// of its net.Conn, whose runtime state (the net package's descriptor and
// addresses, the runtime poller's descriptor with its two deadline timers,
// a cleanup record) cost about 1.1 KiB of RSS per connection, more than the
// rest of an idle connection together. Whoever needs the socket again
// attaches it (net.FileConn): the resumed reader, or a writer whose output
// the socket does not take at once (a writer first writes to the bare
// descriptor, which never blocks). Detaching costs a dup and a close per
// park, attaching about ten system calls per resume: nothing next to the
// keep-alive period of an idle client.
//
// cn.dmu guards the switch against a writer and closeTransport: nc is nil
// while detached, and a connection is detached only by its reader (parking)
// while no writer runs.

// detach swaps cn's net.Conn for a duplicate of its descriptor (cn.pfd) and
// closes the net.Conn. It reports false, leaving cn as it was, when it
// cannot (a writer runs, the transport is closing, dup failed). The caller
// holds cn.dmu.
func (p *parker) detach(cn *connection) bool {
	if cn.detached || cn.closeAsked || cn.state.Load()&writerRunning != 0 {
		return false
	}
	if cn.control(true) != nil {
		return false
	}
	if cn.registered {
		// The descriptor about to close stays in the epoll set as long as the
		// duplicate keeps the socket open: take it out first.
		p.remove(cn)
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(cn.fd), nil)
		cn.registered = false
	}
	cn.r.nc.Close()
	cn.setConn(nil)
	// The raw read and control callbacks (a closure each) are made again
	// by the next attach: a detached connection does not need them.
	cn.r.readFn, cn.ctlFn = nil, nil
	cn.detached = true
	return true
}

// dup is the callback of syscall.RawConn.Control that duplicates the socket.
func (cn *connection) dup(fd uintptr) {
	for {
		nfd, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			cn.ctlErr = uint32(errno)
			return
		}
		cn.pfd = int32(nfd)
		return
	}
}

// attachLocked attaches the detached cn; rearm keeps the connection parked
// (a writer attaches it): its new descriptor is armed in the epoll set
// instead of the duplicate. The caller holds cn.dmu.
func (p *parker) attachLocked(cn *connection, rearm bool) error {
	fd := int(cn.pfd)
	cn.detached, cn.bare, cn.pfd = false, false, -1
	cn.setConn(nil) // no bareConn either, until the net.Conn
	p.mu.Lock()
	p.unset(cn)
	p.mu.Unlock()
	if cn.registered {
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
		cn.registered = false
	}
	if cn.closeAsked {
		syscall.Close(fd)
		return net.ErrClosed
	}
	f := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(f) // a duplicate of fd, in the runtime's poller
	f.Close()
	if err != nil {
		return err
	}
	cn.setConn(nc)
	if cn.deadline != 0 {
		_ = nc.SetReadDeadline(cn.deadlineAt()) // keep alive, as before parking
	}
	if rearm {
		if cn.control(false) == nil {
			return nil
		}
		// Not armed: resume a reader, as if the socket were readable.
		go cn.unpark()
	}
	return nil
}

// writeDetached writes out to a detached connection's descriptor without
// waiting and returns how much the socket took; when it did not take all,
// the connection is attached (still parked) for the rest to be written
// through its net.Conn. The caller holds cn.dmu.
func (p *parker) writeDetached(cn *connection, out []byte) (int, error) {
	n := 0
	for n < len(out) {
		m, err := syscall.Write(int(cn.pfd), out[n:])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			break
		}
		if err != nil {
			return n, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", err)}
		}
		n += m
	}
	if n < len(out) && !cn.bare { // bare: the writer waits for the reader (connection.write)
		// A parked connection stays parked (rearm); a reader that is ending
		// (writerStop: finish) writes the rest itself.
		if err := p.attachLocked(cn, cn.state.Load()&writerStop == 0); err != nil {
			return n, err
		}
	}
	return n, nil
}

// remove forgets cn (its socket may stay in the set, disarmed, until it is
// closed).
func (p *parker) remove(cn *connection) {
	p.mu.Lock()
	p.unset(cn)
	if cn.due != 0 {
		p.drop(int(cn.due - 1))
	}
	p.mu.Unlock()
}

// set files cn under its descriptor. The caller holds p.mu.
func (p *parker) set(cn *connection) {
	fd := int(cn.fd)
	if fd >= len(p.conns) {
		p.conns = append(p.conns, make([]*connection, fd+1-len(p.conns))...)
		p.conns = p.conns[:cap(p.conns)]
	}
	p.conns[fd] = cn
}

// unset forgets cn under its descriptor (unless another connection has it
// by now). The caller holds p.mu.
func (p *parker) unset(cn *connection) {
	if fd := int(cn.fd); fd >= 0 && fd < len(p.conns) && p.conns[fd] == cn {
		p.conns[fd] = nil
	}
}

// get returns the connection parked under fd (nil: none). The caller holds
// p.mu.
func (p *parker) get(fd int32) *connection {
	if fd >= 0 && int(fd) < len(p.conns) {
		return p.conns[fd]
	}
	return nil
}

// push files cn's deadline, arming the timer when it is the earliest. The
// caller holds p.mu.
func (p *parker) push(cn *connection) {
	heap.Push(&p.due, cn)
	if p.due[0] != cn || p.closed {
		return
	}
	if d := time.Until(cn.deadlineAt()); p.timer == nil {
		p.timer = time.AfterFunc(d, p.expire)
	} else {
		p.timer.Reset(d)
	}
}

// drop takes the connection at place i out of the heap. The caller holds
// p.mu. (The timer may fire early because of it: expire re-arms it.)
func (p *parker) drop(i int) {
	heap.Remove(&p.due, i)
	if len(p.due) == 0 && cap(p.due) > 1024 {
		p.due = nil // let a burst's heap go
	}
}

// dueHeap orders parked connections by deadline (container/heap); each
// knows its place (connection.due, 1 + the index) so that it can leave.
type dueHeap []*connection

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].deadline < h[j].deadline }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].due, h[j].due = int32(i+1), int32(j+1)
}

func (h *dueHeap) Push(x any) {
	cn := x.(*connection)
	cn.due = int32(len(*h) + 1)
	*h = append(*h, cn)
}

func (h *dueHeap) Pop() any {
	old := *h
	cn := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	cn.due = 0
	return cn
}

// expire resumes the parked connections whose deadline has passed (their
// first read then times out) and re-arms the timer for the next one.
func (p *parker) expire() {
	now := time.Now()
	var ready []*connection
	p.mu.Lock()
	for len(p.due) > 0 && !p.due[0].deadlineAt().After(now) {
		cn := p.due[0]
		p.drop(0)
		ready = append(ready, cn)
	}
	if len(p.due) > 0 && !p.closed {
		p.timer.Reset(time.Until(p.due[0].deadlineAt()))
	}
	p.mu.Unlock()
	for _, cn := range ready {
		cn.unpark()
	}
}

// run hands every ready socket back to its connection until the parker is
// closed.
func (p *parker) run() {
	rc, err := p.file.SyscallConn()
	if err != nil {
		return
	}
	events := make([]syscall.EpollEvent, 128)
	for {
		n := 0
		var werr error
		err := rc.Read(func(fd uintptr) bool {
			for {
				m, err := syscall.EpollWait(int(fd), events, 0)
				if err == syscall.EINTR {
					continue
				}
				n, werr = max(m, 0), err
				return n > 0 || err != nil
			}
		})
		if err != nil || werr != nil {
			return // closed
		}
		for _, ev := range events[:n] {
			p.mu.Lock()
			cn := p.get(ev.Fd)
			p.mu.Unlock()
			switch {
			case cn == nil:
			case ev.Events == syscall.EPOLLIN:
				p.readable(cn)
			default:
				cn.unpark() // a hang-up or an error
			}
		}
	}
}

func (p *parker) close() {
	p.mu.Lock()
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
	}
	p.mu.Unlock()
	p.file.Close()
}

// A parked connection's client sends a PINGREQ every keep-alive period, and
// nothing else while it is idle. The parker answers it itself, as the
// socket becomes readable: when the socket holds exactly the two bytes of a
// PINGREQ, it writes the PINGRESP to the detached descriptor, takes the
// PINGREQ off the socket, renews the keep-alive deadline and arms the
// socket again; the connection stays parked and detached, without the
// attach (about ten system calls and the allocations of a net.Conn), the
// reader goroutine and the detach that waking it cost. Anything else — other
// bytes, a PINGREQ with more behind it or half of one, a hang-up, an error,
// a connection the broker would do more for (broker.Conn.Ping), a writer at
// work, a socket that takes nothing — wakes the connection as before. Only
// detached connections qualify: they are plain TCP (raw MQTT bytes), and
// their descriptor stays theirs while the parker holds it.

// pingreq and pingresp are the two packets, whole.
var (
	pingreq  = [2]byte{0xc0, 0x00}
	pingresp = [2]byte{0xd0, 0x00}
)

// readable resumes the parked cn whose socket has bytes (and nothing else:
// no hang-up, no error), unless they are a PINGREQ that answerPing answers.
// It runs in run, so that one goroutine looks at the sockets' bytes.
func (p *parker) readable(cn *connection) {
	// Hold cn as a parking reader does: an unpark meanwhile (a close, the
	// deadline) marks it woken, and cn gets a reader below.
	if !cn.park.CompareAndSwap(parked, parking) {
		cn.unpark() // a reader is still parking it: it goes on reading
		return
	}
	if p.answerPing(cn) && cn.park.CompareAndSwap(parking, parked) {
		return
	}
	cn.park.Store(reading) // as unpark
	go cn.s.resume(cn)
}

// answerPing answers the PINGREQ of cn (held by readable) and reports
// whether cn stays parked; false: a reader must take over (not a lone
// PINGREQ, or something failed).
func (p *parker) answerPing(cn *connection) bool {
	if cn.deadline != 0 && !time.Now().Before(cn.deadlineAt()) {
		return false // too late (the timer has not fired yet): the reader times out, as it would have
	}
	// Become cn's writer: no output is written, and no writer attaches the
	// socket (closing the duplicate), until the PINGRESP is out.
	if !cn.claimWriter() {
		return false
	}
	ka, ok := cn.c.Ping()
	if !ok {
		cn.releaseWriter()
		return false
	}
	cn.dmu.Lock()
	n, keep := p.pongLocked(cn, ka)
	cn.dmu.Unlock()
	if n == 1 {
		// The socket took one byte of two (it was full): a writer goroutine
		// writes the other before any output, attaching the socket.
		go cn.writeRest([]byte{pingresp[1]}, 0)
	} else {
		cn.releaseWriter()
	}
	return keep
}

// pongLocked answers a PINGREQ alone on cn's socket: it writes the
// PINGRESP, takes the PINGREQ off the socket, renews the keep-alive deadline
// from ka and arms the socket again. It returns how many bytes of the
// PINGRESP were written (0: nothing was read or written) and whether cn
// stays parked. The caller holds cn.dmu and is cn's writer.
func (p *parker) pongLocked(cn *connection, ka time.Duration) (n int, keep bool) {
	if !cn.detached || cn.closeAsked {
		return 0, false
	}
	fd := int(cn.pfd)
	b := p.scratch[:]
	if m, errno := recvNow(fd, b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT); errno != 0 || m != len(pingreq) || b[0] != pingreq[0] || b[1] != pingreq[1] {
		return 0, false
	}
	for {
		m, err := syscall.Write(fd, pingresp[:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil || m <= 0 {
			return 0, false // the socket is full or failing: the reader sees to it
		}
		n = m
		break
	}
	// The peeked bytes are there: nothing else reads the socket.
	if m, errno := recvNow(fd, b[:len(pingreq)], syscall.MSG_DONTWAIT); errno != 0 || m != len(pingreq) {
		cn.closeAsked = true // cannot happen; if it did, the stream is lost: the reader's attach closes it
		return n, false
	}
	cn.s.parkedPings.Add(1)
	p.renew(cn, cn.s.keepAliveDeadline(ka)) // a packet was read: the keep alive starts again
	return n, p.arm(cn, fd) == nil          // not armed: a reader waits for the socket
}

// renew sets cn's deadline to d (0: none), moving it in the heap.
func (p *parker) renew(cn *connection, d time.Duration) {
	p.mu.Lock()
	cn.deadline = d
	if cn.due != 0 {
		if d == 0 {
			p.drop(int(cn.due - 1))
		} else {
			heap.Fix(&p.due, int(cn.due-1)) // later: a timer that fires early re-arms
		}
	}
	p.mu.Unlock()
}

// recvNow is recv(2) on a non-blocking socket with flags (MSG_PEEK...).
func recvNow(fd int, b []byte, flags int) (int, syscall.Errno) {
	for {
		n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(flags), 0, 0)
		if errno != syscall.EINTR {
			return int(n), errno
		}
	}
}

// A plain TCP connection is born detached: acceptBare accepts it on the
// listener's descriptor itself and it never gets a net.Conn unless it
// needs one. Its reader reads the bare descriptor (bareConn), without
// waiting: when the socket has nothing, the connection parks (at a packet
// boundary after control packets, and before its first byte, the CONNECT
// deadline then in the parker's heap) or, mid-packet or while streaming,
// attaches (net.FileConn) and waits in the runtime's poller as before. A
// resumed detached connection reads the same way. What the net package's
// accept made per connection and dropped at the first park (its descriptor
// and two addresses, the accept's socket addresses: about 300 B of garbage
// per connect) and the dup and close of the detach are gone; an idle client
// that connects, subscribes and pings never has a net.Conn at all.
//
// While its reader reads the bare descriptor (cn.bare, under cn.dmu), the
// reader alone may attach the socket: a writer whose output the socket
// does not take at once waits for it to park, attach or end
// (connection.write), which takes no longer than the batch it is handling.

// acceptBare runs ln's accept loop on its descriptor when ln is a plain TCP
// listener and connections may park; it returns once ln is closed. It
// reports false, having done nothing, when it cannot.
func (s *Server) acceptBare(ln net.Listener, lc *ListenerConfig) bool {
	tl, ok := ln.(*net.TCPListener)
	if !ok || s.parker == nil {
		return false
	}
	// The listener's RawConn only has Control: accept on a duplicate of
	// its descriptor, an os.File in the runtime's poller, closed with it.
	bl := &bareListener{TCPListener: tl}
	if rc, err := tl.SyscallConn(); err != nil || rc.Control(bl.dup) != nil || bl.err != nil {
		return false
	}
	bl.f = os.NewFile(uintptr(bl.fd), "skybridge-listener")
	rc, err := bl.f.SyscallConn()
	if err != nil {
		bl.f.Close()
		return false
	}
	s.mu.Lock()
	// Close and Shutdown close the listeners under s.mu: one closed
	// before this point stays closed.
	if lrc, err := tl.SyscallConn(); err != nil || lrc.Control(func(uintptr) {}) != nil || s.lns[lc.Name] != ln {
		s.mu.Unlock()
		bl.f.Close()
		return true
	}
	s.lns[lc.Name] = bl
	s.mu.Unlock()
	defer bl.f.Close()
	var (
		nfd   int
		errno syscall.Errno
		rsa   syscall.RawSockaddrAny
	)
	accept := func(fd uintptr) bool {
		for {
			l := uint32(syscall.SizeofSockaddrAny)
			r, _, e := syscall.Syscall6(syscall.SYS_ACCEPT4, fd, uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&l)),
				syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0, 0)
			switch e {
			case 0:
				nfd, errno = int(r), 0
				return true
			case syscall.EINTR, syscall.ECONNABORTED:
				continue // as the net package does
			case syscall.EAGAIN:
				return false // the runtime waits for the next
			}
			nfd, errno = -1, e
			return true
		}
	}
	var backoff time.Duration
	for {
		if err := rc.Read(accept); err != nil {
			return true // the listener is closed
		}
		if errno != 0 {
			if s.closed.Load() {
				return true
			}
			// Temporary failure (out of file descriptors): back off, keep going.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept", "listener", lc.Name, "err", os.NewSyscallError("accept4", errno))
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		// As the net package's accept: no delay.
		_ = syscall.SetsockoptInt(nfd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		remote := sockaddrString(&rsa)
		s.wg.Add(1) // released by serveBare or, once admitted, finish
		go s.serveBare(nfd, remote, lc)
	}
}

// bareListener is a TCP listener that acceptBare accepts on, through f, a
// duplicate of its descriptor: closing it closes both.
type bareListener struct {
	*net.TCPListener
	f   *os.File
	fd  int
	err error
}

// dup is the callback of syscall.RawConn.Control that duplicates the
// listener's descriptor (non-blocking, for the runtime's poller).
func (bl *bareListener) dup(fd uintptr) {
	nfd, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		bl.err = errno
		return
	}
	bl.fd = int(nfd)
	if err := syscall.SetNonblock(bl.fd, true); err != nil {
		syscall.Close(bl.fd)
		bl.err = err
	}
}

func (bl *bareListener) Close() error {
	err := bl.TCPListener.Close()
	bl.f.Close()
	return err
}

// serveBare runs a connection accepted by acceptBare.
func (s *Server) serveBare(fd int, remote string, lc *ListenerConfig) {
	growStack(0)
	cn := s.admit(nil, fd, lc, remote, "")
	if cn == nil {
		s.wg.Done()
		return
	}
	cn.counted = true
	s.run(cn)
}

// sockaddrString formats an accepted socket's remote address as
// remoteString does.
func sockaddrString(rsa *syscall.RawSockaddrAny) string {
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port)).String()
	case syscall.AF_INET6:
		sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(rsa))
		ip := netip.AddrFrom16(sa.Addr)
		if ip.Is4In6() {
			ip = ip.Unmap()
		} else if sa.Scope_id != 0 {
			zone := strconv.Itoa(int(sa.Scope_id))
			if ifi, err := net.InterfaceByIndex(int(sa.Scope_id)); err == nil {
				zone = ifi.Name
			}
			ip = ip.WithZone(zone)
		}
		return netip.AddrPortFrom(ip, ntohs(sa.Port)).String()
	}
	return ""
}

// ntohs reads a port in network byte order.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// readBare makes cn, detached with descriptor fd, read it bare.
func (cn *connection) readBare(fd int) {
	cn.pfd, cn.detached, cn.bare = int32(fd), true, true
	cn.r.raw = (*bareConn)(cn)
	if cn.r.readFn == nil {
		cn.r.readFn = cn.r.rawRead
	}
}

// reading gives a resumed connection's reader its socket: a detached one
// reads its bare descriptor (a closed one is closed now, and the first read
// fails).
func (p *parker) reading(cn *connection) {
	cn.dmu.Lock()
	if cn.detached {
		if cn.closeAsked {
			_ = p.attachLocked(cn, false)
		} else {
			cn.readBare(int(cn.pfd))
		}
	}
	cn.dmu.Unlock()
}

// closeDetached closes the descriptor of a connection that ended detached
// (its reader read the bare descriptor).
func (cn *connection) closeDetached() {
	cn.dmu.Lock()
	if cn.detached {
		syscall.Close(int(cn.pfd))
		cn.detached, cn.bare, cn.pfd = false, false, -1
	}
	cn.dmu.Unlock()
}

// keepAliveBare turns on TCP keep-alive with Go's defaults (15 s idle, 15 s
// interval, 9 probes: net.KeepAliveConfig{Enable: true}) on the bare
// descriptor.
func (cn *connection) keepAliveBare() {
	fd := int(cn.pfd)
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1)
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 15)
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 15)
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 9)
}

// closeFD closes a descriptor that acceptBare accepted and admit refused.
func closeFD(fd int) { syscall.Close(fd) }

// bareConn is the syscall.RawConn of a connection whose reader reads its
// bare descriptor: Read and Write call f on it once and, when f says that
// the socket would block, attach the connection and go on as it would have
// (the runtime's poller waits). A transport closed meanwhile (closeAsked)
// attaches, which closes the descriptor and fails the read.
type bareConn connection

func (b *bareConn) Control(f func(fd uintptr)) error {
	f(uintptr(b.pfd))
	return nil
}

func (b *bareConn) Read(f func(fd uintptr) bool) error {
	raw, err := (*connection)(b).bareOnce(f)
	if raw == nil {
		return err
	}
	return raw.Read(f)
}

func (b *bareConn) Write(f func(fd uintptr) bool) error {
	raw, err := (*connection)(b).bareOnce(f)
	if raw == nil {
		return err
	}
	return raw.Write(f)
}

// bareOnce calls f on cn's bare descriptor and returns nil, nil when f is
// done. When f would block, or the transport is to be closed, it attaches
// cn and returns the net.Conn's RawConn to go on with (nil and the error
// when attaching failed or closed the socket).
func (cn *connection) bareOnce(f func(fd uintptr) bool) (syscall.RawConn, error) {
	cn.dmu.Lock()
	closing := cn.closeAsked
	cn.dmu.Unlock()
	if !closing && f(uintptr(cn.pfd)) {
		return nil, nil
	}
	cn.dmu.Lock()
	defer cn.dmu.Unlock()
	if !cn.detached {
		return nil, net.ErrClosed
	}
	if err := cn.s.parker.attachLocked(cn, false); err != nil {
		return nil, err
	}
	return cn.r.raw, nil
}
