package kvserver

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/skybridge-mq/skybridge/impl/raftkv"
)

// peer is the transport to one node: a sender goroutine writing the
// message queue in batches on one connection, and a snapshot goroutine
// streaming snapshots on another.
type peer struct {
	s     *Server
	id    raftkv.NodeID
	tls   *tls.Config  // nil: plain TCP; else the certificate must name id
	addr  atomic.Value // string
	msgs  chan []byte
	snaps chan *raftkv.Message
	stop  chan struct{}
	once  sync.Once
	mu    sync.Mutex
	conns map[net.Conn]bool // open connections, closed on stop
}

const (
	snapChunk        = 1 << 20
	dialTimeout      = 2 * time.Second
	handshakeTimeout = 10 * time.Second
	writeTimeout     = 10 * time.Second
	maxBackoff       = time.Second
	// userTimeout bounds how long what a node sent may stay unacknowledged
	// by its peer before the kernel ends the connection. Raft writes to a
	// peer every tick, so through a network cut the socket's buffer takes
	// them without error (the write timeout never passes) while the kernel
	// retransmits ever more rarely; after the cut heals, its next
	// retransmission could come many seconds later. Ended at once instead,
	// the connection is dialled again, and the first dial after the heal
	// carries the messages (TestClusterPartition in cmd/skybridge).
	userTimeout = 5 * time.Second
)

func newPeer(s *Server, id raftkv.NodeID) *peer {
	p := &peer{s: s, id: id, msgs: make(chan []byte, s.cfg.PeerQueue),
		snaps: make(chan *raftkv.Message, s.cfg.Node.MaxSnapshotsOut+1), stop: make(chan struct{})}
	if s.cfg.PeerTLS != nil {
		p.tls = s.nodeClientTLS(s.cfg.PeerTLS.Client, id)
	}
	p.addr.Store("")
	s.wg.Add(2)
	go p.sender()
	go p.snapshotter()
	return p
}

func (p *peer) close() {
	p.once.Do(func() {
		close(p.stop)
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
}

// track registers an open connection (closed on stop); untrack forgets it.
func (p *peer) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.stop:
		return false
	default:
	}
	if p.conns == nil {
		p.conns = map[net.Conn]bool{}
	}
	p.conns[c] = true
	return true
}

func (p *peer) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// send queues a frame, dropping it when the queue is full.
func (p *peer) send(f []byte) {
	select {
	case p.msgs <- f:
	default:
		p.s.peerDropped.Add(1)
	}
}

// sendSnapshot queues a snapshot; one that cannot be queued fails at once.
func (p *peer) sendSnapshot(m *raftkv.Message) {
	select {
	case p.snaps <- m:
	default:
		p.s.peerDropped.Add(1)
		p.s.node.SnapshotDone(m, false) // called on the loop: flush runs there
	}
}

func (p *peer) dial() (net.Conn, error) {
	addr, _ := p.addr.Load().(string)
	if addr == "" {
		return nil, errors.New("no address")
	}
	p.s.dials.Add(1)
	d := peerDialer()
	var c net.Conn
	var err error
	if p.tls != nil {
		c, err = tls.DialWithDialer(&d, "tcp", addr, p.tls)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		p.s.dialFailures.Add(1)
		return nil, err
	}
	if tcp, ok := c.(*net.TCPConn); ok {
		tcp.SetNoDelay(true)
	}
	return c, nil
}

// peerDialer dials other nodes: within dialTimeout, with userTimeout.
func peerDialer() net.Dialer {
	return net.Dialer{Timeout: dialTimeout, Control: func(_, _ string, c syscall.RawConn) error {
		return setUserTimeout(c, int(userTimeout.Milliseconds()))
	}}
}

// sleep waits d unless the peer stops; it reports whether to go on.
func (p *peer) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.stop:
		return false
	}
}

// sender writes queued frames, as many as are waiting per write.
func (p *peer) sender() {
	defer p.s.wg.Done()
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-p.stop:
			return
		case f := <-p.msgs:
			c, err := p.dial()
			if err != nil {
				p.s.post(event{unreach: p.id})
				if !p.sleep(backoff) {
					return
				}
				backoff = min(2*backoff, maxBackoff)
				continue // this frame is lost; raft and the router cope
			}
			backoff = 50 * time.Millisecond
			if !p.track(c) {
				c.Close()
				return
			}
			p.write(c, f)
			p.untrack(c)
		}
	}
}

// write writes f and everything queued after it until an error.
func (p *peer) write(c net.Conn, f []byte) {
	w := bufio.NewWriterSize(c, 256<<10)
	for {
		c.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(f); err != nil {
			return
		}
		select {
		case f = <-p.msgs:
			continue
		default:
		}
		if err := w.Flush(); err != nil {
			return
		}
		select {
		case f = <-p.msgs:
		case <-p.stop:
			return
		}
	}
}

// snapshotter streams snapshots, one at a time.
func (p *peer) snapshotter() {
	defer p.s.wg.Done()
	for {
		select {
		case <-p.stop:
			return
		case m := <-p.snaps:
			ok := p.stream(m)
			if ok {
				p.s.streamed.Add(1)
			}
			if !p.s.post(event{snapDone: m, snapOK: ok}) {
				return
			}
		}
	}
}

func (p *peer) stream(m *raftkv.Message) bool {
	c, err := p.dial()
	if err != nil {
		return false
	}
	if !p.track(c) {
		c.Close()
		return false
	}
	defer p.untrack(c)
	w := bufio.NewWriterSize(c, 256<<10)
	head := *m
	head.Snap = nil
	b, err := raftkv.EncodeMessage(nil, &head)
	if err != nil {
		return false
	}
	c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := w.Write(raftkv.AppendFrame(nil, raftkv.FrameNode, b)); err != nil {
		return false
	}
	for {
		kvs, err := m.Snap.Next(snapChunk)
		if err != nil {
			return false
		}
		c.SetWriteDeadline(time.Now().Add(writeTimeout))
		if len(kvs) == 0 {
			if _, err := w.Write(raftkv.AppendFrame(nil, raftkv.FrameSnapEnd, nil)); err != nil {
				return false
			}
			return w.Flush() == nil
		}
		if _, err := w.Write(raftkv.AppendFrame(nil, raftkv.FrameSnapChunk, raftkv.EncodeChunk(nil, kvs))); err != nil {
			return false
		}
	}
}

// acceptPeers takes connections from other nodes.
func (s *Server) acceptPeers() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go s.readPeer(c)
	}
}

// readPeer reads frames from another node; a snapshot's chunks are
// assembled (bounded by MaxSnapshotBytes) before the message goes on.
// Over TLS, the client certificate names the node (nodeServerTLS checked
// that it names one), and a message from any other node ends the
// connection.
func (s *Server) readPeer(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-s.stop:
			c.Close()
		case <-done:
		}
	}()
	var from raftkv.NodeID // 0: plain TCP, any sender
	if tc, ok := c.(*tls.Conn); ok {
		c.SetDeadline(time.Now().Add(handshakeTimeout))
		if err := tc.Handshake(); err != nil {
			s.log.Debug("peer handshake failed", "remote", c.RemoteAddr(), "err", err)
			return
		}
		c.SetDeadline(time.Time{})
		var err error
		if from, err = CertNodeID(tc.ConnectionState().PeerCertificates[0]); err != nil {
			return // refused in the handshake already (nodeServerTLS)
		}
	}
	r := bufio.NewReaderSize(c, 256<<10)
	var buf []byte
	var snap *raftkv.Message
	var snapBytes int64
	for {
		kind, body, b, err := raftkv.ReadFrame(r, buf)
		buf = b
		if err != nil {
			return
		}
		switch kind {
		case raftkv.FrameNode:
			m, err := raftkv.DecodeMessage(body)
			if err != nil {
				s.log.Warn("bad frame from a peer", "remote", c.RemoteAddr(), "err", err)
				return
			}
			if from != 0 && m.From != from {
				s.peerRefused.Add(1)
				s.log.Warn("peer connection refused: a message from another node than its certificate names",
					"remote", c.RemoteAddr(), "certificate", from, "from", m.From)
				return
			}
			if m.Kind == raftkv.MsgRaft && m.Raft.GetType() == pb.MsgSnap {
				snap, snapBytes = m, 0
				continue
			}
			if !s.post(event{msg: m}) {
				return
			}
		case raftkv.FrameSnapChunk:
			kvs, err := raftkv.DecodeChunk(body)
			if err != nil || snap == nil {
				return
			}
			snapBytes += int64(len(body))
			if snapBytes > s.node.Config().MaxSnapshotBytes {
				return
			}
			snap.SnapData = append(snap.SnapData, kvs...)
		case raftkv.FrameSnapEnd:
			if snap == nil {
				return
			}
			if !s.post(event{msg: snap}) {
				return
			}
			snap = nil
		default:
			return
		}
	}
}
