package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skybridge-mq/skybridge/impl/forward"
	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// PeerConfig configures the sending end of the link to one node.
type PeerConfig struct {
	Link forward.SenderConfig
	Addr string      // the peer's Listener
	TLS  *tls.Config // client side; nil: plain TCP
	// Dial opens a connection (nil: a net.Dialer with TCP keep-alive).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Released receives the tokens the peer acknowledged, on the
	// connection's reader goroutine; it must not block, and the slice is
	// reused after it returns.
	Released func(tokens []uint64)

	MinBackoff, MaxBackoff time.Duration // between failed connections
	// AckTimeout breaks a connection on which written frames wait longer
	// for any acknowledgement (a peer whose socket lives but whose node
	// does not answer); they are written again on the next one.
	AckTimeout time.Duration
	Common
}

func (c *PeerConfig) fill() {
	if c.Dial == nil {
		d := &net.Dialer{Timeout: DefaultHandshakeTimeout, KeepAlive: 15 * time.Second}
		c.Dial = d.DialContext
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	c.Common.fill()
}

// DefaultAckTimeout is PeerConfig.AckTimeout's default.
const DefaultAckTimeout = 30 * time.Second

// PeerStats adds the connection counters to the link's.
type PeerStats struct {
	forward.SenderStats
	Dials        uint64
	DialFailures uint64
	Broken       uint64 // connections that ended with an error
}

// Peer is the sending end of the link to one node.
type Peer struct {
	cfg    PeerConfig
	mu     sync.Mutex
	core   *forward.Sender
	conn   net.Conn // the current connection, closed by Close
	wake   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	cancel context.CancelFunc
	ctx    context.Context
	once   sync.Once
	armed  bool // the connection's read deadline bounds the wait for an ack (under mu)

	dials, dialFailures, broken atomic.Uint64
}

// NewPeer starts the link to cfg.Addr; it connects in the background and
// keeps reconnecting until Close.
func NewPeer(cfg PeerConfig) *Peer {
	cfg.fill()
	ctx, cancel := context.WithCancel(context.Background())
	p := &Peer{cfg: cfg, core: forward.NewSender(cfg.Link), wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}), ctx: ctx, cancel: cancel}
	go p.run()
	return p
}

// Enqueue queues a message for the peer (forward.Sender.Enqueue: a full
// link drops QoS 0 and refuses QoS 1/2 with 0x97).
func (p *Peer) Enqueue(tenant string, m *message.Message, qos packet.QoS, token uint64) error {
	return p.EnqueueFor(tenant, m, qos, token, &forward.Everyone)
}

// EnqueueFor queues a message for some of the peer's subscriptions
// (forward.Sender.EnqueueFor).
func (p *Peer) EnqueueFor(tenant string, m *message.Message, qos packet.QoS, token uint64, to *forward.Audience) error {
	p.mu.Lock()
	err := p.core.EnqueueFor(tenant, m, qos, token, to)
	p.mu.Unlock()
	if err == nil {
		wake(p.wake)
	}
	return err
}

// Stats returns the counters.
func (p *Peer) Stats() PeerStats {
	p.mu.Lock()
	st := p.core.Stats()
	p.mu.Unlock()
	return PeerStats{SenderStats: st, Dials: p.dials.Load(), DialFailures: p.dialFailures.Load(), Broken: p.broken.Load()}
}

// Flush waits until the peer acknowledged everything queued, or ctx ends.
func (p *Peer) Flush(ctx context.Context) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		if st := p.Stats(); st.Queued == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.done:
			return errors.New("transport: peer closed")
		case <-t.C:
		}
	}
}

// Close stops the link and waits for its goroutines. What the peer did
// not acknowledge stays unacknowledged: its tokens are never released.
func (p *Peer) Close() error {
	p.once.Do(func() {
		close(p.stop)
		p.cancel()
		p.mu.Lock()
		if p.conn != nil {
			p.conn.Close()
		}
		p.mu.Unlock()
	})
	<-p.done
	return nil
}

// Abandon closes the link, for a peer gone from the cluster for good, and
// appends to dst the tokens of the QoS 1/2 messages it never acknowledged
// (forward.Sender.Abandon): the caller tells their publishers.
func (p *Peer) Abandon(dst []uint64) []uint64 {
	p.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.core.Abandon(dst)
}

func (p *Peer) stopped() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

// run connects, serves the connection, and starts again.
func (p *Peer) run() {
	defer close(p.done)
	backoff := p.cfg.MinBackoff
	for !p.stopped() {
		c, err := p.dial()
		if err == nil {
			var wasUp bool
			wasUp, err = p.serve(c)
			if wasUp {
				backoff = p.cfg.MinBackoff
			}
			if err != nil && !p.stopped() {
				p.broken.Add(1)
				p.cfg.Logger.Warn("forward link broken", "peer", p.cfg.Link.Peer, "err", err)
			}
		} else {
			p.dialFailures.Add(1)
		}
		if p.stopped() {
			return
		}
		// Jitter keeps the nodes of a restarted cluster from dialling in step.
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-t.C:
		case <-p.stop:
			t.Stop()
			return
		}
		backoff = min(2*backoff, p.cfg.MaxBackoff)
	}
}

func (p *Peer) dial() (net.Conn, error) {
	p.dials.Add(1)
	c, err := p.cfg.Dial(p.ctx, "tcp", p.cfg.Addr)
	if err != nil {
		return nil, err
	}
	if tcp, ok := c.(*net.TCPConn); ok {
		tcp.SetNoDelay(true) // the writer batches; Nagle would only add latency
	}
	if p.cfg.TLS != nil {
		tc := tls.Client(c, p.cfg.TLS)
		ctx, cancel := context.WithTimeout(p.ctx, p.cfg.HandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			c.Close()
			return nil, err
		}
		c = tc
	}
	return c, nil
}

// serve runs one connection: this goroutine writes, a second one reads.
// It reports whether the handshake completed, and why the connection ended.
func (p *Peer) serve(c net.Conn) (bool, error) {
	p.mu.Lock()
	if p.stopped() {
		p.mu.Unlock()
		c.Close()
		return false, nil
	}
	p.conn = c
	p.armed = false
	p.core.Connected()
	p.mu.Unlock()

	readDone := make(chan struct{})
	var readErr error
	go func() {
		defer close(readDone)
		readErr = p.read(c)
	}()
	writeErr := p.write(c, readDone)
	c.Close()
	<-readDone

	p.mu.Lock()
	wasUp := p.core.Up()
	p.core.Disconnected()
	p.conn = nil
	p.mu.Unlock()
	if writeErr != nil {
		return wasUp, writeErr
	}
	return wasUp, readErr
}

// write writes the core's output until the connection or the peer ends.
func (p *Peer) write(c net.Conn, readDone chan struct{}) error {
	p.mu.Lock()
	frame := p.core.FrameBytes() + 64 // a frame's header is smaller
	p.mu.Unlock()
	w := bufio.NewWriterSize(c, max(bufSize, 2*frame))
	for {
		if w.Available() < frame && w.Buffered() > 0 {
			// Room for a whole frame, so that Output appends in place.
			c.SetWriteDeadline(deadline(p.cfg.WriteTimeout))
			if err := w.Flush(); err != nil {
				return err
			}
		}
		p.mu.Lock()
		b := p.core.Output(w.AvailableBuffer(), w.Available())
		if !p.armed && p.core.Waiting() {
			// From the oldest frame not acknowledged, not the newest.
			c.SetReadDeadline(deadline(p.cfg.AckTimeout))
			p.armed = true
		}
		p.mu.Unlock()
		if len(b) > 0 {
			c.SetWriteDeadline(deadline(p.cfg.WriteTimeout))
			if _, err := w.Write(b); err != nil {
				return err
			}
			continue
		}
		if w.Buffered() > 0 {
			c.SetWriteDeadline(deadline(p.cfg.WriteTimeout))
			if err := w.Flush(); err != nil {
				return err
			}
			continue
		}
		select {
		case <-p.wake:
		case <-readDone:
			return nil
		case <-p.stop:
			return nil
		}
	}
}

// read hands the receiver's frames to the core and its releases to the
// caller.
func (p *Peer) read(c net.Conn) error {
	r := bufio.NewReaderSize(c, bufSize)
	var buf []byte
	var tokens []uint64
	c.SetReadDeadline(deadline(p.cfg.HandshakeTimeout))
	for {
		frame, err := readFrame(r, &buf, forward.DefaultMaxFrame)
		if err != nil {
			return err
		}
		p.mu.Lock()
		before := p.core.Stats().Acked
		wasUp := p.core.Up()
		err = p.core.Handle(frame)
		tokens = p.core.TakeReleased(tokens[:0])
		switch {
		case !p.core.Up():
		case !p.core.Waiting():
			// Nothing awaits an ack: TCP keep-alive watches an idle peer.
			c.SetReadDeadline(time.Time{})
			p.armed = false
		case !wasUp || p.core.Stats().Acked > before:
			c.SetReadDeadline(deadline(p.cfg.AckTimeout))
			p.armed = true
		}
		p.mu.Unlock()
		if len(tokens) > 0 && p.cfg.Released != nil {
			p.cfg.Released(tokens)
		}
		if err != nil {
			return err
		}
		wake(p.wake) // the window may have opened
	}
}
