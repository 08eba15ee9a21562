package router

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

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/cluster"
	"github.com/skybridge-mq/skybridge/impl/cluster/owner"
	"github.com/skybridge-mq/skybridge/impl/cluster/routes"
	"github.com/skybridge-mq/skybridge/impl/forward"
	"github.com/skybridge-mq/skybridge/impl/forward/transport"
	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/raftkv"
)

// KV is what the router needs of raftkv (kvclient.Client has it).
type KV interface {
	Put(ctx context.Context, key, value []byte) error
	Delete(ctx context.Context, key []byte) error
	Scan(ctx context.Context, start, end []byte, limit int) ([]raftkv.KV, []byte, error)
	Watch(ctx context.Context, prefix []byte, buffer int) (<-chan raftkv.WatchEvent, error)
	Get(ctx context.Context, key []byte) ([]byte, bool, error)
	CompareAndSet(ctx context.Context, key, expect, value []byte) (bool, []byte, error)
}

// Config configures a Router.
type Config struct {
	Self        string // this node's id in the membership
	Incarnation uint64 // this process's (the membership's), > 0
	KV          KV
	// Listener takes the forward links of the other nodes (bound by the
	// caller; its address is advertised in the gossip metadata).
	Listener  net.Listener
	ServerTLS *tls.Config // nil: plain TCP
	// CheckPeer decides whether a connection may carry the link of the
	// node its hello names (transport.ListenerConfig.CheckPeer).
	CheckPeer func(from string, c net.Conn) error
	// PeerTLS is the client side of the link to node (nil: plain TCP);
	// it should check that the server's certificate is that node's.
	PeerTLS func(node string) *tls.Config
	// Deliver hands a forwarded message to the broker
	// (broker.DeliverForwarded). It must not block for long.
	Deliver func(tenant []byte, m *message.Message, plain bool, groups [][]byte) int
	// Retained makes m the retained message of its topic in this node's
	// store, or deletes it (empty payload), without writing it back to
	// the cluster (broker.ApplyRetained). m is borrowed. It is called
	// once FollowRetained was.
	Retained func(tenant []byte, m *message.Message)
	// EndSession ends a local session another node claims for user: its
	// connection is told 0x8E (session taken over) and the session is
	// discarded (broker.EndTakenOver); false when the session is another
	// user's and stays. nil: nothing to end.
	EndSession func(tenant, clientID, user string) bool
	// LoadTimeout bounds how long a publish waits for the routes it needs
	// (0: 2 s). A QoS 1/2 publish that times out is refused; a QoS 0 one
	// reaches this node's subscribers only.
	LoadTimeout time.Duration
	// Writers is how many route writes run at once (0: 8).
	Writers int
	// SyncTimeout bounds how long AwaitRoutes (a SUBACK) waits for every
	// live node to confirm a new route (0: 5 s).
	SyncTimeout time.Duration
	Cache       routes.Options
	Logger      *slog.Logger
}

// Stats are the router's counters.
type Stats struct {
	Cache routes.Stats
	// Messages forwarded (one per destination node), dropped at a link
	// (QoS 0), refused by a link or abandoned with a node (QoS 1/2), and
	// publishes whose routes could not be loaded in time.
	Forwarded, Dropped, Refused, Abandoned, Unrouted uint64
	// Received: messages other nodes forwarded here.
	Received uint64
	// Route writes done, failed (retried), and waiting now; new routes
	// not confirmed by every live node within SyncTimeout.
	RouteWrites, RouteWriteErrors, Unconfirmed uint64
	RoutesPending                              int
	Peers                                      int
	// Retained messages applied from the cluster (sets and deletes), and
	// stored ones that did not decode.
	RetainedApplied, BadRetained uint64
	// Sessions this node claimed, claims refused, and sessions it let go
	// of for another node's claim.
	Claims, ClaimsRefused, Released uint64
	// Other nodes' connection counts that did not decode.
	BadCounts uint64
	// QoS 1/2 publishes refused because this node saw no majority of the
	// cluster's members alive (a partition's minority side).
	Minority uint64
}

// Router joins a broker to its cluster (see the package doc).
type Router struct {
	cfg Config
	log *slog.Logger
	ctx context.Context
	end context.CancelFunc
	wg  sync.WaitGroup

	// mu guards the cache, the watches, the members and the peers; loaded
	// is signalled when a prefix loads.
	mu      sync.Mutex
	loaded  *sync.Cond
	cache   *routes.Cache
	watches map[string]*watch
	members map[string]cluster.Member
	// Of members: those counted against a majority (not left) and those
	// of them alive; this node is in neither.
	known, up int
	peers     map[string]*peerLink
	// links numbers the links this process dials (forward.SenderConfig.Link):
	// a link made again to a node whose old one was abandoned (it was held
	// dead, then alive again in the same incarnation) has a higher number,
	// so that node's receiver starts the new link's frames afresh instead
	// of taking them for resends of the old link's.
	links  uint64
	dst    []routes.Destination
	closed bool
	// The SUBACK guarantee (sync.go): route keys every live node
	// confirmed, rounds of questions in progress, and other nodes'
	// questions waiting for this node's cache.
	visible   map[string]bool
	syncs     map[string]*syncing
	syncByID  map[uint64]*syncing
	nextSync  uint64
	questions []question
	// Session ownership (sessions.go): what this node owns, and its
	// questions to other owners waiting for an answer.
	holder      *owner.Holder
	releases    map[uint64]chan byte
	nextRelease uint64
	// Tenant connection counts (connections.go): the other nodes' last
	// written ones, tenant → node → count.
	remote map[string]map[string]int64

	// cmu guards this node's own counts, tenant → connected clients.
	cmu       sync.Mutex
	connected map[string]int64

	// tmu guards the tokens of QoS 1/2 messages in flight on the links
	// (never held while a link's lock is taken).
	tmu     sync.Mutex
	next    uint64
	pending map[uint64]*pending

	writes writeQueue
	in     *transport.Listener

	forwarded, dropped, refused, abandoned, unrouted, received, unconfirmed atomic.Uint64
	minority                                                                atomic.Uint64
	retainedApplied, badRetained, claims, claimsRefused, released           atomic.Uint64
	badCounts                                                               atomic.Uint64
}

type watch struct{ cancel context.CancelFunc }

type peerLink struct {
	peer *transport.Peer
	addr string
}

// pending is a QoS 1/2 message on its way to some nodes.
type pending struct {
	left int // links that have not acknowledged it
	err  error
	done func(error)
}

// New starts a router: its forward listener and route writers.
func New(cfg Config) (*Router, error) {
	if cfg.Self == "" || cfg.Incarnation == 0 || cfg.KV == nil || cfg.Listener == nil || cfg.Deliver == nil {
		return nil, errors.New("router: Self, Incarnation, KV, Listener and Deliver are required")
	}
	if cfg.LoadTimeout <= 0 {
		cfg.LoadTimeout = 2 * time.Second
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 8
	}
	if cfg.SyncTimeout <= 0 {
		cfg.SyncTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Cache.Self = cfg.Self
	ctx, end := context.WithCancel(context.Background())
	r := &Router{cfg: cfg, log: cfg.Logger, ctx: ctx, end: end, cache: routes.NewCache(cfg.Cache),
		watches: map[string]*watch{}, members: map[string]cluster.Member{}, peers: map[string]*peerLink{},
		pending: map[uint64]*pending{}, visible: map[string]bool{}, syncs: map[string]*syncing{}, syncByID: map[uint64]*syncing{},
		holder: owner.NewHolder(), releases: map[uint64]chan byte{}, remote: map[string]map[string]int64{},
		connected: map[string]int64{}}
	r.loaded = sync.NewCond(&r.mu)
	r.writes.init()
	r.in = transport.Serve(cfg.Listener, transport.ListenerConfig{
		Link:      forward.ReceiverConfig{Node: cfg.Self, Incarnation: cfg.Incarnation},
		TLS:       cfg.ServerTLS,
		CheckPeer: cfg.CheckPeer,
		Deliver: func(from string, d *forward.Delivery) {
			if string(d.Tenant) == ctlTenant {
				r.control(from, d.Message)
				return
			}
			r.received.Add(1)
			cfg.Deliver(d.Tenant, d.Message, d.Plain, d.Groups)
		},
		Common: transport.Common{Logger: cfg.Logger},
	})
	for range cfg.Writers {
		r.wg.Add(1)
		go r.writer()
	}
	r.followConnections()
	return r, nil
}

var _ broker.Cluster = (*Router)(nil)

// Close stops everything the router started. Messages in flight to other
// nodes are abandoned (their publishers' acknowledgements fail).
func (r *Router) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	peers := r.peers
	r.peers = map[string]*peerLink{}
	for _, w := range r.watches {
		w.cancel()
	}
	r.loaded.Broadcast()
	r.mu.Unlock()
	for id, p := range peers {
		r.abandon(id, p)
	}
	r.end()
	r.writes.close()
	r.in.Close()
	r.wg.Wait()
}

// Stats returns the counters.
func (r *Router) Stats() Stats {
	r.mu.Lock()
	s := Stats{Cache: r.cache.Stats(), Peers: len(r.peers)}
	r.mu.Unlock()
	s.Forwarded, s.Dropped, s.Refused = r.forwarded.Load(), r.dropped.Load(), r.refused.Load()
	s.Abandoned, s.Unrouted, s.Received = r.abandoned.Load(), r.unrouted.Load(), r.received.Load()
	s.Minority = r.minority.Load()
	s.RouteWrites, s.RouteWriteErrors, s.RoutesPending = r.writes.stats()
	s.Unconfirmed = r.unconfirmed.Load()
	s.RetainedApplied, s.BadRetained = r.retainedApplied.Load(), r.badRetained.Load()
	s.Claims, s.ClaimsRefused, s.Released = r.claims.Load(), r.claimsRefused.Load(), r.released.Load()
	s.BadCounts = r.badCounts.Load()
	return s
}

// MemberChanged takes a membership change (gossip's OnChange). A member
// that died or left loses its link, and what it held is abandoned; a
// member whose forward address changed is dialled there.
func (r *Router) MemberChanged(ch cluster.Change) {
	m := ch.Member
	if m.ID == "" || m.ID == r.cfg.Self {
		return
	}
	r.mu.Lock()
	old, had := r.members[m.ID]
	r.count(old, had, -1)
	r.members[m.ID] = m
	r.count(m, true, +1)
	p := r.peers[m.ID]
	down := m.State == cluster.StateDead || m.State == cluster.StateLeft
	gone := p != nil && (down || p.addr != m.Forward)
	if gone {
		delete(r.peers, m.ID)
	}
	if down {
		r.forgetNode(m.ID)
	}
	r.mu.Unlock()
	if gone {
		r.abandon(m.ID, p)
	}
}

// count adds sign × m to the members this node knows of and those it
// sees up (r.mu held); had false: nothing (m was not known).
func (r *Router) count(m cluster.Member, had bool, sign int) {
	if !had || m.State == cluster.StateLeft {
		return // a member that left the cluster gracefully counts no more
	}
	r.known += sign
	if m.State == cluster.StateAlive {
		r.up += sign
	}
}

// quorateLocked reports whether this node sees a majority of the members
// it knows of (itself included; members that left gracefully do not count,
// dead ones do) alive (r.mu held). A node cut off from the others takes
// them for dead, as they take it: only the side with a majority may go on
// acknowledging as if it were the whole cluster. Suspects do not count as
// alive: a node that suspects most of the others is likely the one cut off
// (its publishes to a suspect wait for the link anyway).
func (r *Router) quorateLocked() bool { return 2*(r.up+1) > r.known+1 }

// abandon closes a link and fails what it held.
func (r *Router) abandon(id string, p *peerLink) {
	tokens := p.peer.Abandon(nil)
	if len(tokens) > 0 {
		r.abandoned.Add(uint64(len(tokens)))
		r.release(tokens, fmt.Errorf("router: node %s gone with %d messages unacknowledged", id, len(tokens)))
	}
}

// alive reports whether a node can take forwarded messages (r.mu held).
func (r *Router) alive(node string) bool {
	if node == r.cfg.Self {
		return true
	}
	m, ok := r.members[node]
	return ok && m.State == cluster.StateAlive && m.Forward != ""
}

// peerLocked returns the link to node, dialling it on first use (r.mu
// held); nil when the node is not alive or advertises no forward address.
func (r *Router) peerLocked(node string) *peerLink {
	if p := r.peers[node]; p != nil {
		return p
	}
	if r.closed || !r.alive(node) {
		return nil
	}
	addr := r.members[node].Forward
	var tc *tls.Config
	if r.cfg.PeerTLS != nil {
		tc = r.cfg.PeerTLS(node)
	}
	r.links++
	p := &peerLink{addr: addr, peer: transport.NewPeer(transport.PeerConfig{
		Link: forward.SenderConfig{Node: r.cfg.Self, Peer: node, Incarnation: r.cfg.Incarnation, Link: r.links},
		Addr: addr, TLS: tc,
		Released: func(tokens []uint64) { r.release(tokens, nil) },
		Common:   transport.Common{Logger: r.log},
	})}
	r.peers[node] = p
	return p
}

// release counts down the messages whose tokens a link gave back.
func (r *Router) release(tokens []uint64, err error) {
	var done []*pending
	r.tmu.Lock()
	for _, t := range tokens {
		p := r.pending[t]
		if p == nil {
			continue
		}
		if err != nil && p.err == nil {
			p.err = err
		}
		if p.left--; p.left == 0 {
			delete(r.pending, t)
			done = append(done, p)
		}
	}
	r.tmu.Unlock()
	for _, p := range done {
		p.done(p.err)
	}
}

// errUnrouted refuses a QoS 1/2 publish whose routes could not be read.
var errUnrouted = &forward.Error{Code: packet.ImplementationSpecificError, Reason: "cluster routes unavailable"}

// errMinority refuses a QoS 1/2 publish on a node that sees no majority
// of the cluster's members (quorateLocked): the subscribers of the others
// may be out of its reach without its knowing.
var errMinority = &forward.Error{Code: packet.ImplementationSpecificError, Reason: "this node sees no majority of the cluster"}

// Forward implements broker.Cluster.
func (r *Router) Forward(tenant string, m *message.Message, done func(error)) broker.Forwarded {
	r.mu.Lock()
	if done != nil && m.QoS > 0 && !r.quorateLocked() {
		r.mu.Unlock()
		r.minority.Add(1)
		done(errMinority)
		return broker.Forwarded{AllGroups: true, Pending: true}
	}
	dst, complete := r.match(tenant, m)
	if !complete {
		r.mu.Unlock()
		r.unrouted.Add(1)
		if done != nil {
			done(errUnrouted)
			return broker.Forwarded{AllGroups: true, Pending: true}
		}
		return broker.Forwarded{AllGroups: true}
	}
	var f broker.Forwarded
	type send struct {
		p  *peerLink
		to forward.Audience
	}
	var buf [4]send
	sends := buf[:0]
	for _, d := range dst {
		if d.Node == r.cfg.Self {
			f.Groups = d.Groups
			continue
		}
		if p := r.peerLocked(d.Node); p != nil {
			sends = append(sends, send{p, forward.Audience{Plain: d.Plain, Groups: d.Groups}})
		}
	}
	r.mu.Unlock()
	if len(sends) == 0 {
		return f
	}
	var token uint64
	var pd *pending
	if done != nil && m.QoS > 0 {
		pd = &pending{left: len(sends), done: done}
		r.tmu.Lock()
		r.next++
		token = r.next
		r.pending[token] = pd
		r.tmu.Unlock()
		f.Pending = true
	}
	for _, s := range sends {
		err := s.p.peer.EnqueueFor(tenant, m, m.QoS, token, &s.to)
		switch {
		case err == nil:
			f.Nodes++
			r.forwarded.Add(1)
		case m.QoS == 0:
			r.dropped.Add(1)
		default:
			r.refused.Add(1)
			if pd != nil {
				r.release([]uint64{token}, err)
			}
		}
	}
	return f
}

// match reads the routes of a topic, waiting (r.mu held, released while
// waiting) until the prefixes it needs are loaded or LoadTimeout passes.
func (r *Router) match(tenant string, m *message.Message) ([]routes.Destination, bool) {
	var dst []routes.Destination
	complete := r.waitLocked(r.cfg.LoadTimeout, func() bool {
		var ok bool
		dst, ok = r.cache.Match(tenant, m.Topic, r.alive, r.dst[:0])
		r.startWatches() // the prefixes it lacks start loading
		return ok
	})
	r.dst = dst
	return dst, complete
}

// waitLocked waits, r.mu held, until done (called with r.mu held, first
// at once, then after each change the cond announces) reports true, d
// passes, or the router closes; it reports done's last answer.
func (r *Router) waitLocked(d time.Duration, done func() bool) bool {
	if done() {
		return true
	}
	ctx, cancel := context.WithTimeout(r.ctx, d)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		r.mu.Lock()
		r.loaded.Broadcast()
		r.mu.Unlock()
	})
	defer stop()
	for ctx.Err() == nil && !r.closed {
		r.loaded.Wait()
		if done() {
			return true
		}
	}
	return false
}

// sendControl queues a control record (a message of the reserved tenant,
// sync.go) on a link: ordered and resent like messages, with no token.
func sendControl(p *peerLink, topicName, payload []byte) error {
	m := &message.Message{Topic: topicName, Payload: payload, QoS: packet.QoS1}
	return p.peer.EnqueueFor(ctlTenant, m, packet.QoS1, 0, &forward.Everyone)
}

// startWatches carries out the cache's actions (r.mu held).
func (r *Router) startWatches() {
	a := r.cache.TakeActions()
	for _, p := range a.Unwatch {
		if w := r.watches[string(p)]; w != nil {
			w.cancel()
			delete(r.watches, string(p))
		}
	}
	for _, p := range a.Watch {
		if r.closed {
			break
		}
		ctx, cancel := context.WithCancel(r.ctx)
		w := &watch{cancel: cancel}
		r.watches[string(p)] = w
		r.wg.Add(1)
		prefix := append([]byte(nil), p...)
		go r.follow(ctx, prefix, cacheSink{r, w, prefix})
	}
}

// sink takes what a watched prefix says; each method reports false when
// the watch was replaced or dropped (its loop then ends).
type sink interface {
	reset() bool                 // events from here on may have been missed
	loaded(kvs []routes.KV) bool // the prefix's content after the last reset
	event(ev routes.Event) bool  // a change after loaded
}

// follow keeps a sink in step with a prefix of raftkv: watch, scan on
// every Reset, hand over the events; watch again when the watch ends.
func (r *Router) follow(ctx context.Context, prefix []byte, s sink) {
	defer r.wg.Done()
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(ctx)
		ch, err := r.cfg.KV.Watch(wctx, prefix, 4096)
		if err != nil {
			cancel()
			r.log.Debug("watch failed", "err", err)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		replaced := r.consume(wctx, prefix, ch, s)
		cancel()
		// The watch ended (connection lost, this side fell behind, a scan
		// failed): what follows may have been missed.
		if replaced || !s.reset() {
			return
		}
	}
}

// consume hands one watch's events to s until it ends; it reports whether
// s refused them (the watch was replaced).
func (r *Router) consume(ctx context.Context, prefix []byte, ch <-chan raftkv.WatchEvent, s sink) (replaced bool) {
	for {
		var ev raftkv.WatchEvent
		var ok bool
		select {
		case ev, ok = <-ch:
		case <-ctx.Done():
		}
		if !ok {
			return false
		}
		if !ev.Reset {
			if !s.event(routes.Event{Key: ev.Key, End: ev.End, Value: ev.Value, Deleted: ev.Deleted}) {
				return true
			}
			continue
		}
		if !s.reset() {
			return true
		}
		kvs, err := r.scan(ctx, prefix)
		if err != nil {
			return false // watch again: its Reset scans again
		}
		if !s.loaded(kvs) {
			return true
		}
	}
}

// cacheSink feeds one prefix of the route cache.
type cacheSink struct {
	r      *Router
	w      *watch
	prefix []byte
}

func (c cacheSink) reset() bool { return c.apply(routes.Event{Reset: true}) }

func (c cacheSink) event(ev routes.Event) bool { return c.apply(ev) }

func (c cacheSink) loaded(kvs []routes.KV) bool {
	r := c.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.watches[string(c.prefix)] != c.w {
		return false
	}
	r.cache.Loaded(c.prefix, kvs)
	r.answerWaiting()
	r.loaded.Broadcast()
	return true
}

// apply hands an event to the cache unless the watch was replaced.
func (c cacheSink) apply(ev routes.Event) bool {
	r := c.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.watches[string(c.prefix)] != c.w {
		return false
	}
	r.cache.Event(c.prefix, ev)
	r.startWatches() // a prefix that buffered too much is watched again
	r.answerWaiting()
	return true
}

// scan reads a whole prefix, range after range.
func (r *Router) scan(ctx context.Context, prefix []byte) ([]routes.KV, error) {
	end := raftkv.PrefixEnd(prefix)
	var out []routes.KV
	start := prefix
	for {
		kvs, resume, err := r.cfg.KV.Scan(ctx, start, end, 0)
		if err != nil {
			return nil, err
		}
		for _, kv := range kvs {
			out = append(out, routes.KV{Key: kv.Key, Value: kv.Value})
		}
		if resume == nil {
			return out, nil
		}
		start = resume
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
