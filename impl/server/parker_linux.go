//go:build linux

package server

import (
	"os"
	"sync"
	"syscall"
)

// parker keeps idle TCP connections without a goroutine: their sockets wait
// in an epoll set of the server's own, and a readable (or closed) socket gets
// a reader goroutine again. The epoll descriptor itself waits in the Go
// runtime's poller, so no thread blocks on it.
type parker struct {
	epfd int
	file *os.File // epfd, waiting in the runtime's poller (never call its Fd: it would make it blocking)

	mu    sync.Mutex
	conns map[int32]*connection // parked connections by descriptor
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
	return &parker{epfd: fd, file: os.NewFile(uintptr(fd), "skybridge-parker"), conns: map[int32]*connection{}}, nil
}

// add registers cn's socket for one readiness event.
func (p *parker) add(cn *connection) bool {
	if cn.ctlFn == nil {
		cn.ctlFn = cn.register // one closure per connection, not per park
	}
	cn.ctlErr = nil
	if err := cn.r.raw.Control(cn.ctlFn); err != nil || cn.ctlErr != nil {
		p.remove(cn)
		return false
	}
	return true
}

// register is the callback of syscall.RawConn.Control, in which the
// descriptor cannot be closed: it puts cn in the table and arms its socket.
func (cn *connection) register(fd uintptr) {
	p := cn.s.parker
	cn.fd = int32(fd)
	p.mu.Lock()
	p.conns[cn.fd] = cn
	p.mu.Unlock()
	op := syscall.EPOLL_CTL_MOD
	if !cn.registered {
		op = syscall.EPOLL_CTL_ADD
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: cn.fd}
	if cn.ctlErr = syscall.EpollCtl(p.epfd, op, int(fd), &ev); cn.ctlErr == nil {
		cn.registered = true
	}
}

// remove forgets cn (its socket may stay in the set, disarmed, until it is
// closed).
func (p *parker) remove(cn *connection) {
	p.mu.Lock()
	if p.conns[cn.fd] == cn {
		delete(p.conns, cn.fd)
	}
	p.mu.Unlock()
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
			cn := p.conns[ev.Fd]
			p.mu.Unlock()
			if cn != nil {
				cn.unpark()
			}
		}
	}
}

func (p *parker) close() { p.file.Close() }
