// Package gossip is the production runtime of cluster membership: it runs
// hashicorp/memberlist (SWIM gossip over UDP and TCP, seeds, no registry,
// optional AES-GCM encryption) and feeds what memberlist reports into the
// core (impl/cluster) as events. docs/CLUSTER.md has the model.
//
// What memberlist reports, and so what this runtime can say: a node joined
// (or came back), updated its metadata, or went away. memberlist v0.7.0
// does not tell which of dead or left a departure was (the state it keeps
// is not exported: hashicorp/memberlist#266), nor when a node is merely
// suspected, nor when a suspicion is refuted. So a node about to leave
// gracefully first gossips metadata with Leaving set, and a departure after
// that is reported Left, any other Dead; and this runtime never reports
// Suspect (the core handles it for runtimes that can, such as a simulator).
//
// It is a runtime, not a core (impl/env's purity check lists it): sockets
// are memberlist's, the node's incarnation comes from the wall clock at
// start (so a restart is told apart), and its goroutines are memberlist's
// own, the apply loop that feeds the core, a seed rejoin loop until the
// first join succeeds, and the reconnect loop (reconnect.go), whose rounds
// start at most maxReconnectAttempts joins at once and wait for them. The
// simulator (sim/clustersim) drives the same core on virtual time instead.
package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/skybridge-mq/skybridge/impl/cluster"
)

// Node is one running member.
type Node struct {
	cfg  Config
	log  *slog.Logger
	ml   *memberlist.Memberlist
	meta metaHolder

	q     queue
	left  leftSet
	recon reconnectBook
	// leftNews says the left set learned something from a peer that the
	// apply loop has not looked at yet.
	leftNews atomic.Bool

	coreMu sync.Mutex // guards core; never held while calling out
	core   *cluster.Membership

	statsMu sync.Mutex
	stats   Stats

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// Stats are the runtime's counters; Core are the core's.
type Stats struct {
	Core cluster.Stats
	// Reports memberlist made, reports replaced by a newer one about the
	// same node before the core took them, and reports dropped because
	// MaxMembers different nodes were already waiting.
	Reported, Coalesced, Dropped uint64
	// BadMeta: reports whose metadata did not decode (not applied).
	BadMeta uint64
	// LeftRecords known, forgotten for room, and payloads from peers that
	// did not decode.
	LeftRecords                     int
	LeftRecordsEvicted, BadLeftData uint64
	// RefusedAlive: gossip about nodes refused before entering memberlist
	// (metadata of another cluster, or undecodable).
	RefusedAlive uint64
	// Conflicts: another address claimed this node's id or another's.
	Conflicts                  uint64
	JoinAttempts, JoinFailures uint64
	// ReconnectAttempts: joins tried at the address of a member held dead
	// (or a seed, while one is), ReconnectFailures those that reached
	// nobody, ReconnectGaveUp dead members no longer tried
	// (ReconnectTimeout).
	ReconnectAttempts, ReconnectFailures, ReconnectGaveUp uint64
}

// Start creates the node, listens, and joins the seeds (retrying in the
// background until one answers, when none does at first).
func Start(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Incarnation == 0 {
		cfg.Incarnation = uint64(time.Now().UnixMilli())
	}
	if cfg.MaxMembers == 0 {
		cfg.MaxMembers = 1024
	}
	if cfg.JoinRetry == 0 {
		cfg.JoinRetry = defaultJoinRetry
	}
	if cfg.ReconnectInterval == 0 {
		cfg.ReconnectInterval = defaultReconnectInterval
	}
	if cfg.ReconnectTimeout == 0 {
		cfg.ReconnectTimeout = defaultReconnectTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.NodeID), stop: make(chan struct{})}
	local := cfg.meta(cfg.Incarnation)
	core, err := cluster.NewMembership(cfg.NodeID, local, cluster.Options{MaxMembers: cfg.MaxMembers})
	if err != nil {
		return nil, err
	}
	n.core = core
	if err := n.meta.set(local); err != nil {
		return nil, err
	}
	n.q.init(cfg.MaxMembers)
	n.left.init(maxLeftRecords)
	n.recon.init(2 * cfg.MaxMembers)

	mc, err := n.memberlistConfig()
	if err != nil {
		return nil, err
	}
	n.wg.Add(1)
	go n.applyLoop()
	ml, err := memberlist.Create(mc)
	if err != nil {
		n.stopLoops()
		return nil, fmt.Errorf("gossip: %w", err)
	}
	n.ml = ml
	if len(cfg.Seeds) > 0 && !n.join() {
		n.wg.Add(1)
		go n.rejoinLoop()
	}
	n.wg.Add(1)
	go n.reconnectLoop()
	return n, nil
}

func (n *Node) memberlistConfig() (*memberlist.Config, error) {
	mc := memberlist.DefaultLANConfig()
	mc.Name = n.cfg.NodeID
	// The label keeps clusters apart before anything is decoded (and is
	// authenticated data when gossip is encrypted); the metadata check in
	// NotifyAlive backs it up.
	mc.Label = "skybridge/" + n.cfg.Cluster
	host, port, _ := splitIPPort(n.cfg.Bind)
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertisePort = port
	if n.cfg.Advertise != "" {
		mc.AdvertiseAddr, mc.AdvertisePort, _ = splitIPPort(n.cfg.Advertise)
	}
	key, err := ParseSecretKey(n.cfg.SecretKey)
	if err != nil {
		return nil, err
	}
	mc.SecretKey = key
	t := n.cfg.Timing
	for _, d := range []struct {
		dst *time.Duration
		v   time.Duration
	}{{&mc.ProbeInterval, t.ProbeInterval}, {&mc.ProbeTimeout, t.ProbeTimeout}, {&mc.GossipInterval, t.GossipInterval}, {&mc.PushPullInterval, t.PushPullInterval}} {
		if d.v > 0 {
			*d.dst = d.v
		}
	}
	if t.SuspicionMult > 0 {
		mc.SuspicionMult = t.SuspicionMult
	}
	mc.Logger = log.New(slogWriter{n.log}, "", 0)
	if n.cfg.wrapTransport != nil {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: mc.Logger})
		if err != nil {
			return nil, err
		}
		if port == 0 {
			mc.BindPort = nt.GetAutoBindPort()
			if n.cfg.Advertise == "" {
				mc.AdvertisePort = mc.BindPort
			}
		}
		mc.Transport = n.cfg.wrapTransport(nt)
	}
	d := &delegate{n}
	mc.Delegate, mc.Events, mc.Alive, mc.Conflict = d, d, d, d
	if n.cfg.tune != nil {
		n.cfg.tune(mc)
	}
	return mc, nil
}

// join tries every seed once and reports whether one answered.
func (n *Node) join() bool {
	_, err := n.ml.Join(n.cfg.Seeds)
	n.count(func(s *Stats) {
		s.JoinAttempts++
		if err != nil {
			s.JoinFailures++
		}
	})
	if err != nil {
		n.log.Warn("cluster: no seed answered; retrying", "seeds", n.cfg.Seeds, "retry", n.cfg.JoinRetry, "err", err)
		return false
	}
	return true
}

func (n *Node) rejoinLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.JoinRetry)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			if n.join() {
				return
			}
		}
	}
}

// applyLoop moves reports from the queue into the core, one at a time,
// and calls OnChange with what changed.
func (n *Node) applyLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case <-n.q.wake:
		}
		died := false
		for {
			ev, ok := n.q.pop()
			if !ok {
				break
			}
			n.coreMu.Lock()
			ch := n.core.Apply(ev)
			n.coreMu.Unlock()
			died = died || (ch.Outcome == cluster.Applied && ch.Member.State == cluster.StateDead)
			n.changed(ev, ch)
		}
		if n.leftNews.Swap(false) || died {
			n.applyLeftRecords()
		}
	}
}

// applyLeftRecords turns members dead in the view whose incarnation is in
// the left set into left ones.
func (n *Node) applyLeftRecords() {
	type applied struct {
		ev cluster.Event
		ch cluster.Change
	}
	var done []applied
	n.coreMu.Lock()
	for _, m := range n.core.View().Members {
		if m.State != cluster.StateDead || !n.left.left(m.ID, m.Incarnation) {
			continue
		}
		meta := m.Meta
		meta.Leaving = true
		ev := cluster.Event{Kind: cluster.Left, Node: m.ID, Seq: n.q.nextSeq(), Meta: meta}
		done = append(done, applied{ev, n.core.Apply(ev)})
	}
	n.coreMu.Unlock()
	for _, a := range done {
		n.changed(a.ev, a.ch)
	}
}

// changed logs what an event did and tells OnChange.
func (n *Node) changed(ev cluster.Event, ch cluster.Change) {
	switch ch.Outcome {
	case cluster.Applied:
		n.recon.state(ch.Member, time.Now())
		n.log.Info("cluster: member "+ch.Member.State.String(), "member", ch.Member.ID, "incarnation", ch.Member.Incarnation,
			"roles", ch.Member.Roles.String(), "restarted", ch.Restarted, "leaving", ch.Member.Leaving)
		if n.cfg.OnChange != nil {
			n.cfg.OnChange(ch)
		}
	case cluster.Refused:
		n.log.Warn("cluster: report refused", "member", ev.Node, "kind", ev.Kind.String(), "reason", ch.Reason)
	}
}

// Members returns the current view.
func (n *Node) Members() cluster.View {
	n.coreMu.Lock()
	defer n.coreMu.Unlock()
	return n.core.View()
}

// Stats returns the counters.
func (n *Node) Stats() Stats {
	n.statsMu.Lock()
	s := n.stats
	n.statsMu.Unlock()
	s.Reported, s.Coalesced, s.Dropped = n.q.counters()
	s.LeftRecords, s.LeftRecordsEvicted = n.left.counters()
	n.coreMu.Lock()
	s.Core = n.core.Stats()
	n.coreMu.Unlock()
	return s
}

func (n *Node) count(f func(*Stats)) {
	n.statsMu.Lock()
	f(&n.stats)
	n.statsMu.Unlock()
}

// GossipAddr is the address other nodes can use as a seed for this one.
func (n *Node) GossipAddr() string { return n.ml.LocalNode().Address() }

// Incarnation is this run's incarnation.
func (n *Node) Incarnation() uint64 { return n.cfg.Incarnation }

// Leave leaves the cluster gracefully: it gossips metadata with Leaving
// set, so that observers report the departure as Left rather than Dead,
// then memberlist's leave. Each step waits up to timeout for its message
// to go out. Call Shutdown afterwards.
func (n *Node) Leave(timeout time.Duration) error {
	select {
	case <-n.stop: // memberlist panics on a leave after shutdown
		return errors.New("gossip: leave after shutdown")
	default:
	}
	m := n.meta.get()
	m.Leaving = true
	n.left.add(n.cfg.NodeID, m.Incarnation)
	var errs []error
	if err := n.meta.set(m); err != nil {
		errs = append(errs, err)
	} else if err := n.ml.UpdateNode(timeout); err != nil {
		errs = append(errs, fmt.Errorf("gossip: announcing the leave: %w", err))
	}
	if err := n.ml.Leave(timeout); err != nil {
		errs = append(errs, fmt.Errorf("gossip: leave: %w", err))
	}
	return errors.Join(errs...)
}

// Shutdown stops gossip without leaving (others will find this node dead)
// and waits for the node's goroutines. It may be called more than once.
func (n *Node) Shutdown() error {
	n.stopOnce.Do(func() { close(n.stop) })
	err := n.ml.Shutdown()
	n.stopLoops()
	return err
}

func (n *Node) stopLoops() {
	n.stopOnce.Do(func() { close(n.stop) })
	n.wg.Wait()
}

// metaHolder is the local metadata memberlist reads through NodeMeta.
type metaHolder struct {
	mu      sync.Mutex
	meta    cluster.Meta
	encoded []byte
}

func (h *metaHolder) set(m cluster.Meta) error {
	b, err := m.Encode()
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.meta, h.encoded = m, b
	h.mu.Unlock()
	return nil
}

func (h *metaHolder) get() cluster.Meta {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.meta
}

func (h *metaHolder) bytes() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.encoded
}

// delegate receives memberlist's callbacks. memberlist calls the event
// methods one at a time, some while holding its node lock: they only
// decode and enqueue, never wait.
type delegate struct{ n *Node }

func (d *delegate) NodeMeta(limit int) []byte {
	b := d.n.meta.bytes()
	if len(b) > limit { // cannot happen: Encode bounds it to memberlist's limit
		return nil
	}
	return b
}

func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState sends the left set in push/pull exchanges.
func (d *delegate) LocalState(join bool) []byte {
	if d.n.left.len() == 0 {
		return nil
	}
	return d.n.left.encode()
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	recs, err := decodeLeftRecords(buf)
	if err != nil {
		d.n.count(func(s *Stats) { s.BadLeftData++ })
		return
	}
	news := false
	for _, r := range recs {
		news = d.n.left.add(r.node, r.inc) || news
	}
	if news {
		d.n.leftNews.Store(true)
		d.n.q.signal()
	}
}

func (d *delegate) NotifyJoin(node *memberlist.Node)   { d.report(cluster.Joined, node) }
func (d *delegate) NotifyUpdate(node *memberlist.Node) { d.report(cluster.Updated, node) }

// NotifyLeave comes for a failure and a leave alike; the last metadata
// tells them apart.
func (d *delegate) NotifyLeave(node *memberlist.Node) { d.report(cluster.Dead, node) }

func (d *delegate) report(kind cluster.Kind, node *memberlist.Node) {
	m, err := cluster.DecodeMeta(node.Meta)
	if err != nil {
		d.n.count(func(s *Stats) { s.BadMeta++ })
		d.n.log.Warn("cluster: undecodable metadata", "member", node.Name, "err", err)
		return
	}
	d.n.recon.setAddr(node.Name, node.Address())
	if kind == cluster.Dead && m.Leaving {
		kind = cluster.Left
		d.n.left.add(node.Name, m.Incarnation)
	}
	d.n.q.push(cluster.Event{Kind: kind, Node: node.Name, Meta: m})
}

// NotifyAlive refuses gossip about nodes of another cluster before
// memberlist takes them in (the label already keeps most of it out).
func (d *delegate) NotifyAlive(peer *memberlist.Node) error {
	m, err := cluster.DecodeMeta(peer.Meta)
	if err == nil && m.Cluster != d.n.cfg.Cluster {
		err = fmt.Errorf("cluster %q, not %q", m.Cluster, d.n.cfg.Cluster)
	}
	if err != nil {
		d.n.count(func(s *Stats) { s.RefusedAlive++ })
		return err
	}
	return nil
}

func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.n.count(func(s *Stats) { s.Conflicts++ })
	d.n.log.Error("cluster: two addresses claim one node id", "member", existing.Name, "known", existing.Address(), "other", other.Address())
}

// slogWriter turns memberlist's log lines ("[LEVEL] memberlist: text")
// into slog records.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	line := bytes.TrimRight(p, "\n")
	level := slog.LevelInfo
	for _, l := range []struct {
		prefix string
		level  slog.Level
	}{{"[DEBUG] ", slog.LevelDebug}, {"[INFO] ", slog.LevelInfo}, {"[WARN] ", slog.LevelWarn}, {"[ERR] ", slog.LevelError}, {"[ERROR] ", slog.LevelError}} {
		if rest, ok := bytes.CutPrefix(line, []byte(l.prefix)); ok {
			line, level = rest, l.level
			break
		}
	}
	line = bytes.TrimPrefix(line, []byte("memberlist: "))
	w.log.Log(context.Background(), level, "memberlist: "+string(line))
	return len(p), nil
}
