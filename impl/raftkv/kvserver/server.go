// Package kvserver is the production runtime of a raftkv node: it drives
// the sans-I/O core (impl/raftkv) from one goroutine on a wall-clock
// ticker, commits each Ready's batch on a committer goroutine (so that
// everything arriving meanwhile joins the next group commit), and moves
// messages over TCP (TLS with client certificates between nodes when
// configured): one connection per peer for messages, written in batches,
// and one for snapshots, streamed in chunks. Clients speak the frame
// protocol of impl/raftkv (frame.go) on a port of their own.
//
// Every queue is bounded. Messages to a peer whose queue is full are
// dropped and counted (raft retransmits; a forwarded request times out
// and the router decides); a client whose reply queue is full is
// disconnected and counted.
package kvserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/raftkv"
)

// Config configures a Server.
type Config struct {
	// Node is the core's configuration; FS and Rand default to the disk and
	// a random seed.
	Node raftkv.Config
	// PeerAddrs are the node addresses known from the start (the initial
	// cluster, or whom a joining node asks); others come from meta.
	PeerAddrs map[raftkv.NodeID]string
	// Listen is the address for other nodes, ClientListen for clients;
	// listeners made by the caller (PeerListener, ClientListener: tests,
	// inherited sockets) take their place when set.
	Listen, ClientListen         string
	PeerListener, ClientListener net.Listener
	// PeerTLS secures node-to-node connections (nil: plain TCP). Server
	// must require and verify client certificates; Client presents one and
	// verifies the server's. Every certificate must name its node
	// (NodeURI): a dialed peer's must name that peer, and an accepting node
	// takes from a connection only messages from the node its client
	// certificate names (LoadTLS builds such a pair).
	PeerTLS *TLSPair
	// ClientTLS secures the client port (nil: plain TCP).
	ClientTLS *tls.Config
	Tick      time.Duration // default 100 ms
	Logger    *slog.Logger
	// Bounds.
	PeerQueue   int // frames queued per peer (default 16384)
	ClientQueue int // replies queued per client connection (default 4096)
	Events      int // events queued for the node's loop (default 65536)
}

// TLSPair is the two sides of mutual TLS.
type TLSPair struct{ Server, Client *tls.Config }

// Stats counts what the runtime did, besides the core's counters.
type Stats struct {
	Node              raftkv.Stats
	PeerDropped       uint64 // frames dropped: a peer's queue was full
	PeerDials         uint64
	PeerDialFailures  uint64
	PeerRefused       uint64 // peer connections refused: the certificate named no node, or another node than the one dialed or the sender
	SnapshotsStreamed uint64
	ClientsDropped    uint64 // clients disconnected: their reply queue was full
	Commits           uint64
}

// Server is a running node.
type Server struct {
	cfg    Config
	log    *slog.Logger
	node   *raftkv.Node
	events chan event
	commit chan *raftkv.Ready
	done   chan error
	stop   chan struct{}
	wg     sync.WaitGroup

	ln, cln net.Listener

	// Owned by the loop.
	peers   map[raftkv.NodeID]*peer
	waiting map[uint64]waiter
	watches map[uint64]waiter // node watch id → client connection and its id
	nextSub uint64

	conns   sync.Map // client connections, for Close
	stopped atomic.Bool

	peerDropped, dials, dialFailures, peerRefused, streamed, clientsDropped, commits atomic.Uint64
	nodeStats                                                                        atomic.Pointer[raftkv.Stats]
}

type waiter struct {
	c  *clientConn
	id uint64
}

// event is something for the loop.
type event struct {
	msg      *raftkv.Message
	req      *raftkv.Request
	watch    []byte // a prefix to watch
	unwatch  bool
	gone     bool // the client connection ended
	dead     raftkv.NodeID
	c        *clientConn
	id       uint64
	snapDone *raftkv.Message
	snapOK   bool
	unreach  raftkv.NodeID
	call     func(*raftkv.Node)
}

// New opens the node's store and starts listening; Run serves.
func New(cfg Config) (*Server, error) {
	if cfg.Tick == 0 {
		cfg.Tick = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PeerQueue == 0 {
		cfg.PeerQueue = 16384
	}
	if cfg.ClientQueue == 0 {
		cfg.ClientQueue = 4096
	}
	if cfg.Events == 0 {
		cfg.Events = 65536
	}
	if cfg.Node.FS == nil {
		cfg.Node.FS = vfs.Default
	}
	if cfg.Node.Rand == nil {
		cfg.Node.Rand = env.NewLockedRand(env.SystemSeed())
	}
	if cfg.Node.Addr == "" {
		cfg.Node.Addr = cfg.Listen
		if cfg.PeerListener != nil {
			cfg.Node.Addr = cfg.PeerListener.Addr().String()
		}
	}
	n, err := raftkv.Open(cfg.Node)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("node", cfg.Node.ID), node: n,
		events: make(chan event, cfg.Events), commit: make(chan *raftkv.Ready, 1), done: make(chan error, 1),
		stop: make(chan struct{}), peers: map[raftkv.NodeID]*peer{}, waiting: map[uint64]waiter{}, watches: map[uint64]waiter{}}
	st := n.Stats()
	s.nodeStats.Store(&st)
	var peerTLS *tls.Config
	if cfg.PeerTLS != nil {
		if cfg.PeerTLS.Server == nil || cfg.PeerTLS.Client == nil || cfg.PeerTLS.Client.InsecureSkipVerify {
			n.Close()
			return nil, errors.New("kvserver: PeerTLS needs a Server and a Client that verifies the server's certificate")
		}
		if peerTLS, err = s.nodeServerTLS(cfg.PeerTLS.Server); err != nil {
			n.Close()
			return nil, err
		}
	}
	if s.ln, err = listen(cfg.PeerListener, cfg.Listen, peerTLS); err != nil {
		n.Close()
		return nil, err
	}
	if s.cln, err = listen(cfg.ClientListener, cfg.ClientListen, cfg.ClientTLS); err != nil {
		s.ln.Close()
		n.Close()
		return nil, err
	}
	return s, nil
}

func listen(ln net.Listener, addr string, tc *tls.Config) (net.Listener, error) {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, err
		}
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	return ln, nil
}

// Addr returns the node-to-node address it listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// ClientAddr returns the client address it listens on.
func (s *Server) ClientAddr() string { return s.cln.Addr().String() }

// Run serves until Close or a fatal store error.
func (s *Server) Run() error {
	s.wg.Add(3)
	go s.acceptPeers()
	go s.acceptClients()
	go s.committer()
	s.log.Info("raftkv node serving", "peers", s.Addr(), "clients", s.ClientAddr())
	err := s.loop()
	s.shutdown()
	return err
}

// Close stops the server and closes the store.
func (s *Server) Close() error {
	if s.stopped.CompareAndSwap(false, true) {
		close(s.stop)
	}
	return nil
}

func (s *Server) shutdown() {
	s.stopped.Store(true)
	s.ln.Close()
	s.cln.Close()
	s.conns.Range(func(k, _ any) bool { k.(*clientConn).close(); return true })
	for _, p := range s.peers {
		p.close()
	}
	close(s.commit)
	s.wg.Wait()
	s.node.Close()
}

// Stats returns the counters (the core's as of the last loop round).
func (s *Server) Stats() Stats {
	return Stats{Node: *s.nodeStats.Load(), PeerDropped: s.peerDropped.Load(), PeerDials: s.dials.Load(),
		PeerDialFailures: s.dialFailures.Load(), PeerRefused: s.peerRefused.Load(), SnapshotsStreamed: s.streamed.Load(),
		ClientsDropped: s.clientsDropped.Load(), Commits: s.commits.Load()}
}

// Do runs f on the loop (the only goroutine that may touch the node) and
// waits for it.
func (s *Server) Do(ctx context.Context, f func(*raftkv.Node)) error {
	done := make(chan struct{})
	select {
	case s.events <- event{call: func(n *raftkv.Node) { f(n); close(done) }}:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return errors.New("kvserver: stopped")
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// post hands an event to the loop, waiting while its queue is full (the
// sender's reading pauses: back-pressure rather than loss).
func (s *Server) post(ev event) bool {
	select {
	case s.events <- ev:
		return true
	case <-s.stop:
		return false
	}
}

// committer commits Readies one at a time; the loop keeps going meanwhile.
func (s *Server) committer() {
	defer s.wg.Done()
	for rd := range s.commit {
		s.done <- rd.Commit()
	}
}

// loop is the node's only driver.
func (s *Server) loop() error {
	tick := time.NewTicker(s.cfg.Tick)
	defer tick.Stop()
	var rd *raftkv.Ready
	for {
		select {
		case <-s.stop:
			return nil
		case <-tick.C:
			s.node.Tick()
			st := s.node.Stats()
			s.nodeStats.Store(&st)
		case ev := <-s.events:
			s.handle(ev)
			// Take what else is queued before persisting: larger batches.
			for more := true; more; {
				select {
				case ev := <-s.events:
					s.handle(ev)
				default:
					more = false
				}
			}
		case err := <-s.done:
			if err != nil {
				return fmt.Errorf("kvserver: commit: %w", err)
			}
			s.commits.Add(1)
			if err := s.node.Advance(rd); err != nil {
				return fmt.Errorf("kvserver: advance: %w", err)
			}
			rd = nil
		}
		s.flush()
		if rd == nil && s.node.HasReady() {
			var err error
			if rd, err = s.node.Ready(); err != nil {
				return fmt.Errorf("kvserver: ready: %w", err)
			}
			s.flush()
			s.commit <- rd
		}
	}
}

func (s *Server) handle(ev event) {
	switch {
	case ev.call != nil:
		ev.call(s.node)
	case ev.msg != nil:
		s.node.Receive(ev.msg)
	case ev.req != nil:
		s.nextSub++
		s.waiting[s.nextSub] = waiter{ev.c, ev.id}
		s.node.Submit(s.nextSub, ev.req)
	case ev.watch != nil:
		s.nextSub++
		s.watches[s.nextSub] = waiter{ev.c, ev.id}
		ev.c.watches[ev.id] = s.nextSub
		s.node.Watch(s.nextSub, ev.watch)
	case ev.unwatch:
		if id, ok := ev.c.watches[ev.id]; ok {
			delete(ev.c.watches, ev.id)
			delete(s.watches, id)
			s.node.Unwatch(id)
		}
	case ev.gone:
		for _, id := range ev.c.watches {
			delete(s.watches, id)
			s.node.Unwatch(id)
		}
		clear(ev.c.watches)
	case ev.dead != 0:
		s.nextSub++
		s.waiting[s.nextSub] = waiter{ev.c, ev.id}
		s.node.DeclareDead(s.nextSub, ev.dead)
	case ev.snapDone != nil:
		s.node.SnapshotDone(ev.snapDone, ev.snapOK)
	case ev.unreach != 0:
		s.node.Unreachable(ev.unreach)
	}
}

// flush sends what the node produced.
func (s *Server) flush() {
	out := s.node.TakeOutput()
	for _, r := range out.Replies {
		w, ok := s.waiting[r.ID]
		if !ok {
			continue
		}
		delete(s.waiting, r.ID)
		w.c.reply(w.id, r.Resp)
	}
	for _, ev := range out.Watch {
		if w, ok := s.watches[ev.ID]; ok {
			w.c.send(raftkv.AppendIDFrame(nil, raftkv.FrameWatchEvt, w.id, raftkv.EncodeWatchEvent(&ev)))
		}
	}
	for _, m := range out.Messages {
		p := s.peer(m.To)
		if m.Snap != nil {
			p.sendSnapshot(m)
			continue
		}
		b, err := raftkv.EncodeMessage(nil, m)
		if err != nil {
			s.log.Error("encode", "err", err)
			continue
		}
		p.send(raftkv.AppendFrame(nil, raftkv.FrameNode, b))
	}
}

// peer returns the transport to a node, starting it on first use.
func (s *Server) peer(id raftkv.NodeID) *peer {
	p := s.peers[id]
	if p == nil {
		p = newPeer(s, id)
		s.peers[id] = p
	}
	addr := s.cfg.PeerAddrs[id]
	if addr == "" {
		addr = s.node.Addr(id)
	}
	p.addr.Store(addr)
	return p
}
