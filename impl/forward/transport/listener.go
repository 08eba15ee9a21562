package transport

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/skybridge-mq/skybridge/impl/forward"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// ListenerConfig configures the receiving ends of this node's links.
type ListenerConfig struct {
	Link forward.ReceiverConfig
	TLS  *tls.Config // server side; nil: plain TCP
	// Deliver takes each message, in each sender's order, on that link's
	// reader goroutine with the link locked: it must not block nor call
	// the Listener. The Delivery borrows the frame (valid during the call).
	Deliver func(from string, d *forward.Delivery)
	// State returns what the node persisted for a sending node (see
	// forward.ReceiverState); nil: nothing is persisted.
	State func(from string) forward.ReceiverState
	// CheckPeer, when set, decides whether the connection c may carry the
	// link of the node its hello names (from): over TLS, that the client
	// certificate is that node's. A refusal ends the connection with a
	// goaway 0x87.
	CheckPeer func(from string, c net.Conn) error

	Common
}

// inLink is the receiving end of one sending node's link; it outlives
// the connections that serve it.
type inLink struct {
	mu   sync.Mutex
	core *forward.Receiver
	cur  *inConn // the connection serving it, nil between connections
}

type inConn struct {
	c    net.Conn
	wake chan struct{}
	done chan struct{} // the reader ended
}

// Listener takes the links of the nodes that send to this one.
type Listener struct {
	cfg   ListenerConfig
	ln    net.Listener
	mu    sync.Mutex
	links map[string]*inLink
	conns map[net.Conn]struct{}
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

// Serve accepts links on ln until Close.
func Serve(ln net.Listener, cfg ListenerConfig) *Listener {
	cfg.Common.fill()
	if cfg.Link.MaxFrame <= 0 {
		cfg.Link.MaxFrame = forward.DefaultMaxFrame
	}
	l := &Listener{cfg: cfg, ln: ln, links: map[string]*inLink{}, conns: map[net.Conn]struct{}{}, stop: make(chan struct{})}
	l.wg.Add(1)
	go l.accept()
	return l
}

// Addr returns the address links connect to.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Durable reports that the messages of node from's incarnation inc up to
// frame seq are durable here (with Link.WaitDurable).
func (l *Listener) Durable(from string, inc, seq uint64) {
	l.mu.Lock()
	in := l.links[from]
	l.mu.Unlock()
	if in == nil {
		return
	}
	in.mu.Lock()
	in.core.Durable(inc, seq)
	cur := in.cur
	in.mu.Unlock()
	if cur != nil {
		wake(cur.wake)
	}
}

// Stats returns the counters of the link from a node.
func (l *Listener) Stats(from string) (forward.ReceiverStats, bool) {
	l.mu.Lock()
	in := l.links[from]
	l.mu.Unlock()
	if in == nil {
		return forward.ReceiverStats{}, false
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.core.Stats(), true
}

// Close stops accepting, closes every connection and waits for their
// goroutines.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.stop)
		err = l.ln.Close()
		l.mu.Lock()
		for c := range l.conns {
			c.Close()
		}
		l.mu.Unlock()
	})
	l.wg.Wait()
	return err
}

func (l *Listener) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.stop:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.cfg.Logger.Error("forward listener stopped", "err", err)
			return
		}
		if l.cfg.TLS != nil {
			c = tls.Server(c, l.cfg.TLS)
		}
		if !l.track(c) {
			c.Close()
			return
		}
		l.wg.Add(1)
		go l.serve(c)
	}
}

func (l *Listener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.stop:
		return false
	default:
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *Listener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	c.Close()
}

// MaxLinks bounds the sending nodes a Listener keeps links for.
const MaxLinks = 4096

// hasRoom reports whether node from has a link or one can be made.
func (l *Listener) hasRoom(from string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.links[from] != nil || len(l.links) < MaxLinks
}

// link returns the receiving end for node from, made on its first hello.
func (l *Listener) link(from string) *inLink {
	l.mu.Lock()
	defer l.mu.Unlock()
	in := l.links[from]
	if in == nil {
		var st forward.ReceiverState
		if l.cfg.State != nil {
			st = l.cfg.State(from)
		}
		in = &inLink{core: forward.NewReceiver(l.cfg.Link, st)}
		l.links[from] = in
	}
	return in
}

// serve reads one connection; after the hello it starts the writer.
func (l *Listener) serve(c net.Conn) {
	defer l.wg.Done()
	defer l.untrack(c)
	r := bufio.NewReaderSize(c, bufSize)
	var buf []byte
	c.SetReadDeadline(deadline(l.cfg.HandshakeTimeout)) // covers the TLS handshake too
	frame, err := readFrame(r, &buf, l.cfg.Link.MaxFrame)
	if err != nil {
		return
	}
	h, err := forward.ParseHello(frame)
	if err == nil && h.To != l.cfg.Link.Node {
		err = &forward.Error{Code: packet.ProtocolError, Reason: fmt.Sprintf("hello for node %q reached %q", h.To, l.cfg.Link.Node)}
	}
	if err == nil && l.cfg.CheckPeer != nil {
		if cerr := l.cfg.CheckPeer(h.From, c); cerr != nil {
			err = &forward.Error{Code: packet.NotAuthorized, Reason: cerr.Error()}
		}
	}
	if err == nil && !l.hasRoom(h.From) {
		err = &forward.Error{Code: packet.QuotaExceeded, Reason: "too many sending nodes"}
	}
	if err != nil {
		// A link is made only for a valid hello to this node, so that
		// strangers cannot fill the map of links; the goaway says why.
		fe, ok := err.(*forward.Error)
		if !ok {
			fe = &forward.Error{Code: packet.ProtocolError, Reason: err.Error()}
		}
		c.SetWriteDeadline(deadline(l.cfg.WriteTimeout))
		c.Write(forward.AppendGoAway(nil, fe))
		l.cfg.Logger.Warn("forward link refused", "remote", c.RemoteAddr(), "err", err)
		return
	}
	from := h.From
	deliver := func(d *forward.Delivery) { l.cfg.Deliver(from, d) }
	in := l.link(from)
	ic := &inConn{c: c, wake: make(chan struct{}, 1), done: make(chan struct{})}
	in.mu.Lock()
	if in.cur != nil {
		// A new connection from the same node replaces the old one, whose
		// goroutines find they no longer serve the link and end.
		in.cur.c.Close()
	}
	in.cur = ic
	in.core.Disconnected()
	in.core.Connected()
	err = in.core.Handle(frame, deliver)
	in.mu.Unlock()
	c.SetReadDeadline(time.Time{})

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		l.write(in, ic)
	}()
	for err == nil {
		if frame, err = readFrame(r, &buf, l.cfg.Link.MaxFrame); err != nil {
			break
		}
		in.mu.Lock()
		if in.cur != ic {
			in.mu.Unlock()
			break
		}
		err = in.core.Handle(frame, deliver)
		in.mu.Unlock()
		wake(ic.wake)
	}
	var fe *forward.Error
	if errors.As(err, &fe) {
		l.cfg.Logger.Warn("forward link broken", "peer", from, "err", err)
	}
	close(ic.done)
	<-writerDone
	in.mu.Lock()
	if in.cur == ic {
		in.core.Disconnected()
		in.cur = nil
	}
	in.mu.Unlock()
}

// write writes the link's output (welcome, acks, a goaway) while ic
// serves it; after the reader ends it writes what is left once.
func (l *Listener) write(in *inLink, ic *inConn) {
	w := bufio.NewWriterSize(ic.c, 4<<10)
	last := false
	for {
		in.mu.Lock()
		if in.cur != ic {
			in.mu.Unlock()
			return
		}
		b := in.core.Output(w.AvailableBuffer())
		in.mu.Unlock()
		if len(b) > 0 {
			ic.c.SetWriteDeadline(deadline(l.cfg.WriteTimeout))
			if _, err := w.Write(b); err != nil {
				return
			}
			continue
		}
		if w.Buffered() > 0 {
			ic.c.SetWriteDeadline(deadline(l.cfg.WriteTimeout))
			if err := w.Flush(); err != nil {
				return
			}
		}
		if last {
			return
		}
		select {
		case <-ic.wake:
		case <-ic.done:
			last = true
		case <-l.stop:
			return
		}
	}
}
