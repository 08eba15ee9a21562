//go:build linux

package server

import (
	"container/heap"
	"os"
	"sync"
	"syscall"
	"time"
)

// parker keeps idle TCP connections without a goroutine: their sockets wait
// in an epoll set of the server's own, and a readable (or closed) socket gets
// a reader goroutine again. The epoll descriptor itself waits in the Go
// runtime's poller, so no thread blocks on it. The keep-alive deadlines of
// the parked connections wait in a heap of the parker's, under one timer
// (a timer per connection cost more than the rest of a parked connection's
// runtime state).
type parker struct {
	epfd int
	file *os.File // epfd, waiting in the runtime's poller (never call its Fd: it would make it blocking)

	mu    sync.Mutex
	conns map[int32]*connection // parked connections by descriptor
	// due holds the parked connections with a deadline, earliest first (a
	// binary heap on connection.deadline; connection.due is 1 + the place).
	// timer fires at or before the earliest; closed stops it for good.
	due    dueHeap
	timer  *time.Timer
	closed bool
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
	if !cn.deadline.IsZero() && cn.due == 0 {
		p.push(cn)
	}
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
	if cn.due != 0 {
		p.drop(int(cn.due - 1))
	}
	p.mu.Unlock()
}

// push files cn's deadline, arming the timer when it is the earliest. The
// caller holds p.mu.
func (p *parker) push(cn *connection) {
	heap.Push(&p.due, cn)
	if p.due[0] != cn || p.closed {
		return
	}
	if d := time.Until(cn.deadline); p.timer == nil {
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
func (h dueHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
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
	for len(p.due) > 0 && !p.due[0].deadline.After(now) {
		cn := p.due[0]
		p.drop(0)
		ready = append(ready, cn)
	}
	if len(p.due) > 0 && !p.closed {
		p.timer.Reset(time.Until(p.due[0].deadline))
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
			cn := p.conns[ev.Fd]
			p.mu.Unlock()
			if cn != nil {
				cn.unpark()
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
