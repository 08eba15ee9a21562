package kvsim

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/raftkv"
	"github.com/skybridge-mq/skybridge/sim"
)

// Ports of a node's host.
const (
	portPeer   = 1
	portClient = 2
)

// connsPerPeer is how many connections a node keeps to each peer: raft
// messages take one at random, so that they overtake each other (the
// network delays connections independently); requests and responses take
// the first, in order, as they would on one TCP stream.
const connsPerPeer = 2

// maxBuffered drops raft messages to a peer whose connection already has
// this much unsent (a partitioned peer): the transport's bound.
const maxBuffered = 1 << 20

// nodeProc is the runtime of one raftkv node on the simulator: ticks are
// events, each Ready's batch commits one fsync latency later (the disk of
// the host: a crashable in-memory FS), messages travel over the virtual
// network with the run's loss, duplication and reordering.
type nodeProc struct {
	w      *world
	id     raftkv.NodeID
	host   *sim.Host
	disk   *vfs.MemFS
	node   *raftkv.Node
	up     bool
	gone   bool // replaced: never restarts
	joined bool // joined a running cluster (restarts as a joining node)

	peers     map[raftkv.NodeID][]*sim.Endpoint // lookup only
	tickEv    *sim.Event
	commitEv  *sim.Event
	rd        *raftkv.Ready
	stalled   time.Time
	clients   map[uint64]clientReply // Submit id → the client connection and its id; lookup only
	admin     map[uint64]func(*raftkv.Response)
	watches   map[uint64]clientReply // node watch id → the client connection and its watch id; lookup only
	nextSubID uint64
	incarn    int
	stats     raftkv.Stats // totals of earlier incarnations
	dropped   uint64       // raft messages the transport dropped (bound, fault)
	dupd      uint64
}

type clientReply struct {
	ep *sim.Endpoint
	id uint64
}

func (w *world) newNode(id raftkv.NodeID, join bool) *nodeProc {
	p := &nodeProc{w: w, id: id, disk: vfs.NewCrashableMem()}
	p.host = w.net.AddHost(fmt.Sprintf("n%d", id))
	w.nodes = append(w.nodes, p)
	p.start(join)
	return p
}

func (p *nodeProc) start(join bool) {
	w := p.w
	cfg := w.opts.Config
	cfg.ID, cfg.FS, cfg.Dir = p.id, p.disk, "kv"
	cfg.Rand = env.NewRand(w.s.Rand.Uint64())
	cfg.Peers = w.initial
	cfg.Join = join || p.joined
	p.joined = cfg.Join
	cfg.Addr = p.host.Name
	host, id := p.host.ID, p.id
	cfg.Log = func(msg string) {
		w.s.Note(sim.KindAction, host, 0, msg)
		if w.opts.Observe != nil {
			w.opts.Observe(id, w.s.Elapsed(), msg)
		}
	}
	n, err := raftkv.Open(cfg)
	if err != nil {
		w.fail("open", fmt.Sprintf("n%d: %v", p.id, err))
		return
	}
	p.node, p.up = n, true
	p.incarn++
	p.peers = map[raftkv.NodeID][]*sim.Endpoint{}
	p.clients = map[uint64]clientReply{}
	p.admin = map[uint64]func(*raftkv.Response){}
	p.watches = map[uint64]clientReply{}
	p.host.Up()
	p.host.Listen(portPeer, func(ep *sim.Endpoint) sim.Handler { return &peerConn{p: p} })
	p.host.Listen(portClient, func(ep *sim.Endpoint) sim.Handler { return &serverConn{p: p, incarn: p.incarn} })
	phase := w.s.Uniform(0, w.opts.Tick)
	p.tickEv = w.s.After(phase, p.tick)
	w.s.Note(sim.KindRestart, p.host.ID, 0, fmt.Sprintf("n%d up (incarnation %d)", p.id, p.incarn))
}

func (p *nodeProc) tick() {
	if !p.up {
		return
	}
	p.node.Tick()
	p.after()
	p.tickEv = p.w.s.After(p.w.opts.Tick, p.tick)
}

// after runs after every call into the node: send what it produced and
// start a commit if there is something to persist.
func (p *nodeProc) after() {
	if !p.up {
		return
	}
	p.flush()
	if p.rd != nil || !p.node.HasReady() {
		return
	}
	rd, err := p.node.Ready()
	if err != nil {
		p.w.fail("ready", fmt.Sprintf("n%d: %v", p.id, err))
		return
	}
	p.rd = rd
	p.flush()
	var delay time.Duration
	if rd.Sync && !rd.Batch.Empty() {
		delay = p.w.s.Uniform(p.w.opts.FsyncMin, p.w.opts.FsyncMax)
		if now := p.w.s.Now(); now.Before(p.stalled) {
			delay += p.stalled.Sub(now)
		}
	}
	p.commitEv = p.w.s.After(delay, p.commit)
}

// commit is the fsync completing: the batch is durable, the node advances.
func (p *nodeProc) commit() {
	p.commitEv = nil
	if !p.up || p.rd == nil {
		return
	}
	rd := p.rd
	if err := rd.Commit(); err != nil {
		p.w.fail("commit", fmt.Sprintf("n%d: %v", p.id, err))
		return
	}
	p.w.s.Note(sim.KindCommit, p.host.ID, 0, "")
	p.rd = nil
	if err := p.node.Advance(rd); err != nil {
		p.w.fail("advance", fmt.Sprintf("n%d: %v", p.id, err))
		return
	}
	p.after()
}

// stall holds every fsync until the given instant.
func (p *nodeProc) stall(until time.Time) {
	if until.After(p.stalled) {
		p.stalled = until
	}
	if p.commitEv != nil && p.rd != nil && p.rd.Sync {
		p.w.s.Cancel(p.commitEv)
		p.commitEv = p.w.s.At(p.stalled.Add(p.w.s.Uniform(p.w.opts.FsyncMin, p.w.opts.FsyncMax)), p.commit)
	}
}

// flush sends the node's output.
func (p *nodeProc) flush() {
	out := p.node.TakeOutput()
	for _, r := range out.Replies {
		if f := p.admin[r.ID]; f != nil {
			delete(p.admin, r.ID)
			f(r.Resp)
			continue
		}
		cr, ok := p.clients[r.ID]
		if !ok {
			continue
		}
		delete(p.clients, r.ID)
		if cr.ep.IsClosed() {
			continue
		}
		cr.ep.Write(raftkv.AppendIDFrame(nil, raftkv.FrameResponse, cr.id, raftkv.EncodeResponse(r.Resp)))
	}
	for _, ev := range out.Watch {
		cr, ok := p.watches[ev.ID]
		if !ok || cr.ep.IsClosed() {
			continue
		}
		cr.ep.Write(raftkv.AppendIDFrame(nil, raftkv.FrameWatchEvt, cr.id, raftkv.EncodeWatchEvent(&ev)))
	}
	for _, m := range out.Messages {
		p.send(m)
	}
}

func (p *nodeProc) send(m *raftkv.Message) {
	if m.Snap != nil {
		p.stream(m)
		return
	}
	p.write(m)
}

// stream reads a snapshot's data a chunk at a time, some milliseconds
// apart, as a runtime streaming it while the node goes on applying would;
// then it sends the whole as one message.
func (p *nodeProc) stream(m *raftkv.Message) {
	w := p.w
	incarn := p.incarn
	var step func()
	step = func() {
		if !p.up || p.incarn != incarn {
			return // the node is gone, and its snapshot with it
		}
		kvs, err := m.Snap.Next(2 << 10)
		if err == nil && len(kvs) > 0 {
			m.SnapData = append(m.SnapData, kvs...)
			w.s.After(w.s.Uniform(time.Millisecond, 5*time.Millisecond), step)
			return
		}
		p.write(m)
		p.after()
	}
	w.s.After(w.s.Uniform(time.Millisecond, 5*time.Millisecond), step)
}

// write encodes m and writes it to its peer (with the run's loss and
// duplication for raft messages).
func (p *nodeProc) write(m *raftkv.Message) {
	w := p.w
	b, err := raftkv.EncodeMessage(nil, m)
	if err != nil {
		w.fail("encode", err.Error())
		return
	}
	f := raftkv.AppendFrame(nil, raftkv.FrameNode, b)
	raft := m.Kind == raftkv.MsgRaft
	copies := 1
	if raft && w.s.Chance(w.loss) {
		copies = 0
		p.dropped++
	} else if raft && w.s.Chance(w.dup) {
		copies = 2
		p.dupd++
	}
	ok := false
	for range copies {
		i := 0
		if raft {
			i = w.s.Rand.IntN(connsPerPeer)
		}
		ep := p.conn(m.To, i)
		if ep == nil {
			continue
		}
		if raft && ep.Buffered() > maxBuffered {
			p.dropped++
			continue
		}
		ep.Write(f)
		ok = true
	}
	if m.Snap != nil {
		p.node.SnapshotDone(m, ok)
	}
}

// conn returns the i-th connection to a peer, dialling it if needed.
func (p *nodeProc) conn(to raftkv.NodeID, i int) *sim.Endpoint {
	eps := p.peers[to]
	if eps == nil {
		eps = make([]*sim.Endpoint, connsPerPeer)
		p.peers[to] = eps
	}
	if ep := eps[i]; ep != nil && !ep.IsClosed() {
		return ep
	}
	dst := p.w.nodeByID(to)
	if dst == nil {
		return nil
	}
	ep := p.host.Dial(dst.host.Name, portPeer, &peerConn{p: p})
	eps[i] = ep
	return ep
}

// adminWait arranges for f to get the reply to an admin call.
func (p *nodeProc) adminWait(id uint64, f func(*raftkv.Response)) { p.admin[id] = f }

// crash is a power loss: the host goes down, unsynced writes may be lost.
func (p *nodeProc) crash() {
	if !p.up {
		return
	}
	w := p.w
	p.up = false
	p.host.Crash()
	w.s.Cancel(p.tickEv)
	w.s.Cancel(p.commitEv)
	p.rd = nil
	pct := 0
	if w.s.Chance(0.5) {
		pct = 1 + w.s.Rand.IntN(100)
	}
	clone := p.disk.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: newRNG(w.s.Rand.Uint64())})
	p.stats.Add(p.node.Stats())
	p.node.Close()
	p.node = nil
	p.disk = clone
	w.s.Note(sim.KindCrash, p.host.ID, 0, fmt.Sprintf("n%d power loss (keep %d%% of unsynced)", p.id, pct))
}

// totals returns the node's counters over all its incarnations.
func (p *nodeProc) totals() raftkv.Stats {
	s := p.stats
	if p.node != nil {
		s.Add(p.node.Stats())
	}
	return s
}

// peerConn receives node messages.
type peerConn struct {
	p  *nodeProc
	in raftkv.Framer
}

// Opened sends what was written while the connection was being set up.
func (c *peerConn) Opened(ep *sim.Endpoint)    { ep.Write(nil) }
func (c *peerConn) Writable(*sim.Endpoint)     {}
func (c *peerConn) Closed(*sim.Endpoint, bool) {}
func (c *peerConn) Data(ep *sim.Endpoint, b []byte) {
	ep.Consume(len(b))
	p := c.p
	c.in.Feed(b, func(kind byte, body []byte) {
		if kind != raftkv.FrameNode || !p.up {
			return
		}
		m, err := raftkv.DecodeMessage(body)
		if err != nil {
			p.w.fail("decode", fmt.Sprintf("n%d: %v", p.id, err))
			return
		}
		p.node.Receive(m)
	})
	p.after()
}

// serverConn is a client's connection to a node.
type serverConn struct {
	p       *nodeProc
	in      raftkv.Framer
	watches []uint64 // node watch ids of this connection
	incarn  int
}

func (c *serverConn) Opened(*sim.Endpoint)   {}
func (c *serverConn) Writable(*sim.Endpoint) {}

// Closed ends the connection's watches.
func (c *serverConn) Closed(*sim.Endpoint, bool) {
	p := c.p
	if !p.up || p.incarn != c.incarn {
		return
	}
	for _, id := range c.watches {
		p.node.Unwatch(id)
		delete(p.watches, id)
	}
	c.watches = nil
}
func (c *serverConn) Data(ep *sim.Endpoint, b []byte) {
	ep.Consume(len(b))
	p := c.p
	c.in.Feed(b, func(kind byte, body []byte) {
		cid, rest, ok := raftkv.SplitID(body)
		if !p.up || !ok {
			return
		}
		p.nextSubID++
		sid := p.nextSubID
		p.clients[sid] = clientReply{ep: ep, id: cid}
		switch kind {
		case raftkv.FrameRequest:
			req, err := raftkv.DecodeRequest(rest)
			if err != nil {
				p.w.fail("decode", err.Error())
				return
			}
			p.node.Submit(sid, req)
		case raftkv.FrameAdmin:
			if len(rest) == 8 {
				p.node.DeclareDead(sid, raftkv.NodeID(binary.BigEndian.Uint64(rest)))
			}
		case raftkv.FrameWatch:
			delete(p.clients, sid)
			p.watches[sid] = clientReply{ep: ep, id: cid}
			c.watches = append(c.watches, sid)
			p.node.Watch(sid, rest)
		}
	})
	p.after()
}
