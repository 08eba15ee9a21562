package raftkv

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"
)

// Node is one node's multi-raft state machine: every local replica, the
// request router and the background decisions (placement, splits, merges,
// liveness). It does no I/O of its own beyond its Pebble store, starts no
// goroutine and reads no clock; see doc.go for the runtime's contract.
type Node struct {
	cfg Config
	db  *pebble.DB

	replicas   map[RangeID]*replica // lookup only
	order      []*replica           // by range ID: the iteration order
	spans      []*replica           // initialized replicas by start key
	tombstones map[RangeID]ReplicaID
	uninit     int

	tick     int64
	seqBase  uint64
	seq      uint64
	rd       *Ready
	out      []*Message
	replies  []Reply
	snapsOut int
	snapsIn  int
	streams  map[*SnapshotStream]bool // being sent; closed with the node (any order)

	router     router
	lastHeard  map[NodeID]int64 // lookup only
	metaGen    uint64           // bumped by every meta change
	metaCache  *metaView
	background background

	// Watches (watch.go): the clients' at this node, and the parts
	// registered at its replicas.
	watches      map[uint64]*watch // lookup only; watchOrder is the order
	watchOrder   []uint64
	watchOut     []WatchEvent
	watcherCount int

	sampleWrites bool
	propBuf      []byte // scratch for encoding proposals (flushProposals)
	stats        Stats
	closed       bool
}

// MsgKind says what a Message carries.
type MsgKind uint8

// Message kinds.
const (
	MsgRaft     MsgKind = iota + 1 // a raft message of one range
	MsgRequest                     // a request forwarded to the node that can execute it
	MsgResponse                    // its answer
	MsgWatch                       // watch events, pings and pongs (watch.go)
)

// Message is what nodes send each other. A MsgRaft carrying a raft MsgSnap
// has its data in Snap (sending side: stream it after the message, then
// call SnapshotDone) or SnapData (receiving side: all of it, assembled).
type Message struct {
	Kind     MsgKind
	From, To NodeID
	Range    RangeID
	Raft     *pb.Message
	Snap     *SnapshotStream
	SnapData []KV
	ID       uint64
	Hops     uint8
	Req      *Request
	Resp     *Response
	Watch    []WatchMsg
}

// Reply answers a Submit.
type Reply struct {
	ID   uint64
	Resp *Response
}

// Output is what the node produced since the last TakeOutput.
type Output struct {
	Messages []*Message
	Replies  []Reply
	Watch    []WatchEvent
}

// Ready is one round of persistence: Batch holds the raft log entries,
// hard states and snapshots of every replica with something to persist
// (the group commit across ranges). Commit it (synced when Sync), then call
// Advance. Until then the node takes messages, ticks and requests, but
// HasReady is false.
type Ready struct {
	Batch *pebble.Batch
	Sync  bool
	parts []readyPart
	bytes int
}

type readyPart struct {
	r          *replica
	rd         raft.Ready
	truncIndex uint64
	truncTerm  uint64
	snapshot   *stagedSnap
	sent       bool // the messages went out with the Ready (a leader's)
}

// Commit commits the batch (a convenience for runtimes that commit inline).
func (rd *Ready) Commit() error {
	if rd.Batch.Empty() {
		return nil
	}
	opts := pebble.NoSync
	if rd.Sync {
		opts = pebble.Sync
	}
	return rd.Batch.Commit(opts)
}

// Open opens the node's store (bootstrapping a new cluster's first state
// when the store is empty and the node is not joining) and loads its replicas.
func Open(cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// Bloom filters: every write reads the key's old value (the range's
	// byte and key counts stay exact), and most written keys are new.
	po := &pebble.Options{FS: cfg.FS, Logger: pebbleLogger{}, MemTableSize: uint64(cfg.MemTableBytes)}
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	if cfg.CacheBytes > 0 {
		cache := pebble.NewCache(cfg.CacheBytes)
		defer cache.Unref() // the store holds its own reference
		po.Cache = cache
	}
	db, err := pebble.Open(cfg.Dir, po)
	if err != nil {
		return nil, fmt.Errorf("raftkv: open %s: %w", cfg.Dir, err)
	}
	n := &Node{cfg: cfg, db: db, replicas: map[RangeID]*replica{}, tombstones: map[RangeID]ReplicaID{},
		lastHeard: map[NodeID]int64{}, streams: map[*SnapshotStream]bool{}}
	n.sampleWrites = cfg.SplitWrites > 0
	// Proposal sequence numbers are unique per incarnation, so that an entry
	// proposed before a restart never answers a request made after it.
	n.seqBase = cfg.Rand.Uint64() << 24
	n.router.init(n)
	if err := n.load(); err != nil {
		db.Close()
		return nil, err
	}
	return n, nil
}

// pebbleLogger drops Pebble's informational output; Fatalf must not return.
type pebbleLogger struct{}

func (pebbleLogger) Infof(string, ...any)  {}
func (pebbleLogger) Errorf(string, ...any) {}
func (pebbleLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("raftkv: pebble: "+format, args...))
}

func (n *Node) load() error {
	v, closer, err := n.db.Get(formatKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		it, err := n.db.NewIter(nil)
		if err != nil {
			return err
		}
		empty := !it.First()
		it.Close()
		if !empty {
			return fmt.Errorf("raftkv: %s holds data without a raftkv format marker", n.cfg.Dir)
		}
		b := n.db.NewBatch()
		if !n.cfg.Join {
			if err := n.bootstrap(b); err != nil {
				return err
			}
		}
		if err := b.Set(formatKey, []byte(formatVersion), nil); err != nil {
			return err
		}
		if err := b.Commit(pebble.Sync); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		ver := string(v)
		closer.Close()
		if ver != formatVersion {
			return fmt.Errorf("raftkv: %s has format %q, this build reads %q", n.cfg.Dir, ver, formatVersion)
		}
	}
	return n.loadReplicas()
}

func (n *Node) loadReplicas() error {
	it, err := n.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixRange}, UpperBound: []byte{prefixRange + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; {
		id, _, valid := rangeIDOf(it.Key())
		if !valid {
			return fmt.Errorf("raftkv: bad range-local key %x", it.Key())
		}
		if err := n.loadReplica(id); err != nil {
			return fmt.Errorf("raftkv: load r%d: %w", id, err)
		}
		ok = it.SeekGE(rangePrefixEnd(id))
	}
	return nil
}

func (n *Node) loadReplica(id RangeID) error {
	get := func(suffix byte) ([]byte, bool, error) { return getRaw(n.db, rangeKey(id, suffix)) }
	if v, ok, err := get(sufTombstone); err != nil {
		return err
	} else if ok && len(v) == 8 {
		n.tombstones[id] = ReplicaID(binary.BigEndian.Uint64(v))
	}
	ridB, ok, err := get(sufReplicaID)
	if err != nil || !ok {
		return err // a tombstone alone
	}
	if len(ridB) != 8 {
		return errCorrupt
	}
	rid := ReplicaID(binary.BigEndian.Uint64(ridB))
	hs := &pb.HardState{}
	if v, ok, err := get(sufHard); err != nil {
		return err
	} else if ok {
		if err := proto.Unmarshal(v, hs); err != nil {
			return err
		}
	}
	state := appliedState{Desc: &Descriptor{RangeID: id}}
	if v, ok, err := get(sufState); err != nil {
		return err
	} else if ok {
		if state, err = decodeAppliedState(v); err != nil {
			return err
		}
	}
	var ti, tt uint64
	if v, ok, err := get(sufTrunc); err != nil {
		return err
	} else if ok {
		if ti, tt, err = decodeTrunc(v); err != nil {
			return err
		}
	}
	last := ti
	lit, err := n.db.NewIter(&pebble.IterOptions{LowerBound: logKey(id, 0), UpperBound: rangeKey(id, sufLog+1)})
	if err != nil {
		return err
	}
	if lit.Last() {
		k := lit.Key()
		last = binary.BigEndian.Uint64(k[len(k)-8:])
	}
	lit.Close()
	r, err := n.newReplica(id, rid, state, hs, ti, tt, last)
	if err != nil {
		return err
	}
	n.addReplica(r)
	return nil
}

// Close closes the store. Pending requests are dropped (their callers
// see the connection end).
func (n *Node) Close() error {
	if n.closed {
		return nil
	}
	n.closed = true
	for _, r := range n.order {
		r.dropOut()
	}
	for s := range n.streams {
		s.close()
	}
	if n.rd != nil {
		n.rd.Batch.Close()
		n.rd = nil
	}
	return n.db.Close()
}

// ID returns the node's ID.
func (n *Node) ID() NodeID { return n.cfg.ID }

// Config returns the node's configuration with its defaults filled in.
func (n *Node) Config() Config { return n.cfg }

func (n *Node) nextSeq() uint64 {
	n.seq++
	return n.seqBase + n.seq
}

// addReplica registers r.
func (n *Node) addReplica(r *replica) {
	n.replicas[r.id] = r
	i, _ := slices.BinarySearchFunc(n.order, r.id, func(x *replica, id RangeID) int { return cmp.Compare(x.id, id) })
	n.order = slices.Insert(n.order, i, r)
	if !r.state.Desc.Initialized() {
		n.uninit++
	}
	n.spansChanged()
}

// dropReplica forgets r (its store state is already gone or going).
func (n *Node) dropReplica(r *replica, why string) {
	if n.replicas[r.id] != r {
		return
	}
	n.logf("drop r%d replica %d: %s", r.id, r.replicaID, why)
	r.destroyed = true
	r.dropOut()
	r.dropStaged()
	r.failAll(&Error{Code: ErrRangeMoved, Msg: fmt.Sprintf("r%d replica %s", r.id, why)})
	r.resetWatchers()
	delete(n.replicas, r.id)
	n.order = slices.DeleteFunc(n.order, func(x *replica) bool { return x == r })
	n.tombstones[r.id] = max(n.tombstones[r.id], r.replicaID+1)
	if !r.state.Desc.Initialized() {
		n.uninit--
	}
	n.stats.ReplicasRemoved++
	n.spansChanged()
}

// destroy removes a replica and the data only it held, now.
func (n *Node) destroy(r *replica, why string) error {
	n.logf("destroy r%d %v: %s", r.id, r.state.Desc, why)
	b := n.db.NewBatch()
	defer b.Close()
	if err := writeDestroy(b, r.id, r.replicaID); err != nil {
		return err
	}
	if d := r.state.Desc; d.Initialized() {
		if err := n.clearUnowned(b, r, d.Start, d.End); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	n.dropReplica(r, why)
	return nil
}

// clearUnowned deletes the data in [start, end) except where another
// local replica's span lies: local replicas never overlap, and this keeps
// it so when one is destroyed.
func (n *Node) clearUnowned(b *pebble.Batch, except *replica, start, end []byte) error {
	at := start
	for _, x := range n.spans {
		d := x.state.Desc
		if x == except || x.destroyed || !spansOverlap(at, end, d.Start, d.End) {
			continue
		}
		if bytes.Compare(d.Start, at) > 0 {
			if err := b.DeleteRange(dataKey(at), dataKey(d.Start), nil); err != nil {
				return err
			}
		}
		if d.End == nil {
			return nil
		}
		at = d.End
	}
	if end != nil && bytes.Compare(at, end) >= 0 {
		return nil
	}
	return b.DeleteRange(dataKey(at), dataEnd(end), nil)
}

// removeSelf runs when the local replica applied its own removal.
func (n *Node) removeSelf(r *replica) {
	if err := n.destroy(r, "removed from its range"); err != nil {
		n.stats.StoreErrors++
	}
}

// spansChanged rebuilds the index of initialized replicas by start key.
func (n *Node) spansChanged() {
	n.spans = n.spans[:0]
	n.uninit = 0
	for _, r := range n.order {
		if r.state.Desc.Initialized() {
			n.spans = append(n.spans, r)
		} else {
			n.uninit++
		}
	}
	sort.Slice(n.spans, func(i, j int) bool {
		return bytes.Compare(n.spans[i].state.Desc.Start, n.spans[j].state.Desc.Start) < 0
	})
	if n.replicas[MetaRangeID] != nil {
		n.metaChanged()
	}
}

// replicaFor returns the local initialized replica whose span holds key.
func (n *Node) replicaFor(key []byte) *replica {
	i := sort.Search(len(n.spans), func(i int) bool { return bytes.Compare(n.spans[i].state.Desc.Start, key) > 0 })
	if i == 0 {
		return nil
	}
	r := n.spans[i-1]
	if r.state.Desc.Contains(key) {
		return r
	}
	return nil
}

// createSplitReplica brings up the right-hand replica of a split.
func (n *Node) createSplitReplica(id RangeID, rid ReplicaID, st appliedState, hs *pb.HardState) {
	if old := n.replicas[id]; old != nil {
		if old.state.Desc.Initialized() {
			return
		}
		n.dropReplica(old, "initialized by a split")
		delete(n.tombstones, id)
	}
	n.logf("create r%d %v from a split", id, st.Desc)
	r, err := n.newReplica(id, rid, st, proto.Clone(hs).(*pb.HardState), initialIndex, initialTerm, initialIndex)
	if err != nil {
		n.stats.StoreErrors++
		return
	}
	n.addReplica(r)
}

// uninitializedReplica returns the replica a raft message is for, creating
// an uninitialized one when the node has none (a new member waiting for
// its snapshot, or the right half of a split not yet applied here).
func (n *Node) uninitializedReplica(id RangeID, rid ReplicaID) *replica {
	if r := n.replicas[id]; r != nil {
		if r.replicaID == rid {
			return r
		}
		if rid < r.replicaID {
			return nil // a message for an older incarnation
		}
		// A newer replica of this range on this node: the old one was
		// removed (it may not know yet). Only an uninitialized or
		// GC-able one is replaced: its state belongs to an old membership.
		if err := n.destroy(r, "replaced by a newer replica"); err != nil {
			n.stats.StoreErrors++
			return nil
		}
	}
	if rid < n.tombstones[id] {
		return nil
	}
	if n.uninit >= n.cfg.MaxUninitialized {
		n.stats.UninitializedRefused++
		return nil
	}
	r, err := n.newReplica(id, rid, appliedState{Desc: &Descriptor{RangeID: id}}, &pb.HardState{}, 0, 0, 0)
	if err != nil {
		n.stats.StoreErrors++
		return nil
	}
	n.addReplica(r)
	return r
}

// Tick advances the node's logical clock by one tick.
func (n *Node) Tick() {
	if n.closed {
		return
	}
	n.tick++
	for _, r := range n.order {
		r.tick()
		r.expire(n.tick)
	}
	n.router.tick()
	n.watchTick()
	n.background.tick(n)
}

// Now returns the node's tick count.
func (n *Node) Now() int64 { return n.tick }

// Receive takes a message from another node.
func (n *Node) Receive(m *Message) {
	if n.closed || m.To != n.cfg.ID {
		return
	}
	n.lastHeard[m.From] = n.tick
	switch m.Kind {
	case MsgRaft:
		n.receiveRaft(m)
	case MsgRequest:
		n.router.remote(m)
	case MsgResponse:
		n.router.response(m)
	case MsgWatch:
		n.receiveWatch(m)
	}
}

func (n *Node) receiveRaft(m *Message) {
	if m.Raft == nil {
		return
	}
	to := ReplicaID(m.Raft.GetTo())
	r := n.replicas[m.Range]
	if r == nil || r.replicaID != to {
		r = n.uninitializedReplica(m.Range, to)
		if r == nil {
			n.stats.RaftDropped++
			return
		}
	}
	n.stats.RaftReceived++
	r.peers[ReplicaID(m.Raft.GetFrom())] = m.From
	if m.Raft.GetType() == pb.MsgSnap {
		n.receiveSnapshot(r, m.Raft, m.SnapData)
		return
	}
	r.step(m.Raft)
}

// Submit starts a client request; its answer comes in a Reply with id.
func (n *Node) Submit(id uint64, req *Request) {
	if n.closed {
		return
	}
	lreq, e := toLogical(req)
	if e != nil {
		n.replies = append(n.replies, Reply{ID: id, Resp: &Response{Err: e}})
		return
	}
	n.router.start(lreq, 0, func(resp *Response) {
		n.replies = append(n.replies, Reply{ID: id, Resp: fromLogical(resp)})
	})
}

// HasReady reports whether Ready has something to do.
func (n *Node) HasReady() bool {
	if n.closed || n.rd != nil {
		return false
	}
	for _, r := range n.order {
		if r.hasWork() {
			return true
		}
	}
	return false
}

// Ready collects what every replica must persist, in one batch.
func (n *Node) Ready() (*Ready, error) {
	if n.rd != nil {
		return nil, errors.New("raftkv: Ready before Advance")
	}
	for _, r := range n.order {
		r.flushProposals()
		r.flushReads()
	}
	rd := &Ready{Batch: n.db.NewBatch()}
	for _, r := range n.order {
		if r.destroyed || !r.rn.HasReady() {
			continue
		}
		if rd.bytes > n.cfg.MaxReadyBytes {
			n.stats.ReadyDeferred++
			continue
		}
		if err := n.readyReplica(rd, r); err != nil {
			rd.Batch.Close()
			return nil, err
		}
	}
	if n.cfg.Knobs.NoSync {
		rd.Sync = false
	}
	n.rd = rd
	n.stats.Readies++
	if rd.Sync && !rd.Batch.Empty() {
		n.stats.Syncs++
	}
	return rd, nil
}

func (n *Node) readyReplica(rd *Ready, r *replica) error {
	rrd := r.rn.Ready()
	part := readyPart{r: r, rd: rrd}
	if rrd.SoftState != nil {
		r.softState(rrd.SoftState)
	}
	if len(rrd.ReadStates) > 0 {
		r.readStates(rrd.ReadStates)
	}
	b := rd.Batch
	if !raft.IsEmptySnap(rrd.Snapshot) {
		s, err := r.writeSnapshot(b, rrd.Snapshot, rrd.HardState)
		if err != nil {
			return err
		}
		part.snapshot = s
	} else if r.staged != nil {
		r.dropStaged() // raft refused it
	}
	if err := r.st.writeEntries(b, rrd.Entries); err != nil {
		return err
	}
	for _, e := range rrd.Entries {
		rd.bytes += len(e.GetData())
		if e.GetType() == pb.EntryNormal && sameProposer(e.GetData(), n.cfg.ID) {
			d := dec{b: e.GetData()}
			_, _, seq := decodeHeader(&d)
			if p := r.proposals[seq]; p != nil {
				p.index, p.term = e.GetIndex(), e.GetTerm()
				r.propByIndex[p.index] = seq
			}
		}
	}
	if rrd.HardState != nil && !raft.IsEmptyHardState(rrd.HardState) {
		hb, err := proto.Marshal(rrd.HardState)
		if err != nil {
			return err
		}
		if err := b.Set(rangeKey(r.id, sufHard), hb, nil); err != nil {
			return err
		}
		if r.st.hs.GetTerm() == 0 && !r.state.Desc.Initialized() {
			// The first state of an uninitialized replica: say who it is.
			if err := b.Set(rangeKey(r.id, sufReplicaID), binary.BigEndian.AppendUint64(nil, uint64(r.replicaID)), nil); err != nil {
				return err
			}
		}
	}
	part.truncIndex, part.truncTerm = r.truncation()
	if part.truncIndex > 0 {
		if err := r.st.writeTruncation(b, part.truncIndex, part.truncTerm); err != nil {
			return err
		}
	}
	rd.Sync = rd.Sync || rrd.MustSync || part.snapshot != nil || part.truncIndex > 0
	// A leader sends its appends while it syncs them itself (raft counts
	// its own copy only once the batch is durable, in Advance), unless the
	// Ready also changes its term or vote: messages must never get ahead
	// of a vote that is not yet on disk.
	if r.isLeader() && part.snapshot == nil && (rrd.HardState == nil ||
		rrd.HardState.GetTerm() == r.st.hs.GetTerm() && rrd.HardState.GetVote() == r.st.hs.GetVote()) {
		n.sendRaft(r, rrd.Messages)
		part.sent = true
	}
	rd.parts = append(rd.parts, part)
	return nil
}

func sameProposer(data []byte, node NodeID) bool {
	if len(data) == 0 {
		return false
	}
	d := dec{b: data}
	_, p, _ := decodeHeader(&d)
	return d.err == nil && p == node
}

// softState notes leadership changes.
func (r *replica) softState(ss *raft.SoftState) {
	if ss.RaftState == raft.StateLeader {
		if r.leaderSince == 0 {
			r.leaderSince = r.n.tick
			r.published = 0
			r.n.stats.LeaderChanges++
		}
	} else {
		r.leaderSince = 0
		r.resetElection()
	}
}

// truncation decides whether to cut the log in this Ready: it keeps
// LogKeep entries behind the applied index, and as leader waits for
// followers that are close behind, up to LogMax entries.
func (r *replica) truncation() (uint64, uint64) {
	c := r.n.cfg
	applied := r.state.Index
	if applied < r.st.first+uint64(2*c.LogKeep) {
		return 0, 0
	}
	idx := applied - uint64(c.LogKeep)
	if r.isLeader() && applied-r.st.first < uint64(c.LogMax) {
		st := r.rn.Status()
		for id, pr := range st.Progress { // a minimum: the order does not matter
			if id != uint64(r.replicaID) && pr.RecentActive && pr.Match < idx && pr.Match >= r.st.first {
				idx = pr.Match
			}
		}
	}
	if idx < r.st.first {
		return 0, 0
	}
	term, err := r.st.Term(idx)
	if err != nil {
		return 0, 0
	}
	return idx, term
}

// Advance finishes a Ready once its batch is committed: the in-memory log
// views catch up, messages go out, committed entries are applied (one
// unsynced batch for every replica; the next synced batch makes it
// durable, and a power loss before re-applies from the log).
func (n *Node) Advance(rd *Ready) error {
	if rd != n.rd {
		return errors.New("raftkv: Advance of a Ready that is not outstanding")
	}
	n.rd = nil
	defer rd.Batch.Close()
	for _, p := range rd.parts {
		r := p.r
		if p.snapshot != nil {
			r.snapshotApplied(p.snapshot)
		}
		r.st.appended(p.rd.Entries)
		if p.rd.HardState != nil && !raft.IsEmptyHardState(p.rd.HardState) {
			r.st.hs = proto.Clone(p.rd.HardState).(*pb.HardState)
		}
		if p.truncIndex > 0 {
			r.st.truncated(p.truncIndex, p.truncTerm)
			n.stats.Truncations++
		}
	}
	for _, p := range rd.parts {
		if !p.r.destroyed && !p.sent {
			n.sendRaft(p.r, p.rd.Messages)
		}
	}
	if err := n.apply(rd); err != nil {
		return err
	}
	for _, p := range rd.parts {
		if p.r.destroyed {
			continue
		}
		p.r.rn.Advance(p.rd)
		p.r.serveReads()
	}
	return nil
}

// apply applies the Ready's committed entries in rounds: a round ends
// when a replica applies a structural entry (split, merge, membership),
// so that its effects are in place before anything after it applies.
func (n *Node) apply(rd *Ready) error {
	type todo struct {
		r    *replica
		ents []*pb.Entry
	}
	var round []todo
	for _, p := range rd.parts {
		if len(p.rd.CommittedEntries) > 0 {
			round = append(round, todo{p.r, p.rd.CommittedEntries})
		}
	}
	for len(round) > 0 {
		ab := n.db.NewIndexedBatch()
		var fx effects
		var next []todo
		for _, t := range round {
			if t.r.destroyed {
				continue
			}
			rest, err := t.r.applyEntries(ab, t.ents, &fx)
			if err != nil {
				ab.Close()
				return err
			}
			if len(rest) > 0 {
				next = append(next, todo{t.r, rest})
			}
		}
		if !ab.Empty() {
			if err := ab.Commit(pebble.NoSync); err != nil {
				ab.Close()
				return err
			}
		}
		ab.Close()
		for _, f := range fx.after {
			f()
		}
		round = next
	}
	return nil
}

// sendRaft queues a replica's raft messages, with snapshot data attached.
func (n *Node) sendRaft(r *replica, msgs []*pb.Message) {
	for _, m := range msgs {
		rd, ok := r.state.Desc.Replica(ReplicaID(m.GetTo()))
		if !ok {
			// A replica that does not know its range yet answers whoever wrote.
			rd.ID, rd.Node = ReplicaID(m.GetTo()), r.peers[ReplicaID(m.GetTo())]
			ok = rd.Node != 0
		}
		if !ok {
			if m.GetType() == pb.MsgSnap {
				r.rn.ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
			}
			continue
		}
		out := &Message{Kind: MsgRaft, From: n.cfg.ID, To: rd.Node, Range: r.id, Raft: m}
		if m.GetType() == pb.MsgSnap {
			if n.snapsOut >= n.cfg.MaxSnapshotsOut || r.out == nil || r.out.index != m.GetSnapshot().GetMetadata().GetIndex() {
				n.stats.SnapshotsThrottled++
				r.rn.ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
				continue
			}
			r.out.refs++
			n.snapsOut++
			out.Snap = &SnapshotStream{n: n, src: r.out, Range: r.id, To: rd.Node}
			n.streams[out.Snap] = true
			n.stats.SnapshotsSent++
		}
		n.stats.RaftSent++
		n.out = append(n.out, out)
	}
}

// SnapshotDone tells the node how sending a snapshot ended.
func (n *Node) SnapshotDone(m *Message, ok bool) {
	if m.Snap == nil || m.Snap.src == nil {
		return
	}
	delete(n.streams, m.Snap)
	m.Snap.close()
	n.snapsOut--
	if !ok {
		n.stats.SnapshotsFailed++
	}
	if r := n.replicas[m.Range]; r != nil && !r.destroyed {
		status := raft.SnapshotFinish
		if !ok {
			status = raft.SnapshotFailure
		}
		r.rn.ReportSnapshot(m.Raft.GetTo(), status)
	}
}

// Unreachable tells raft that messages to node could not be sent.
func (n *Node) Unreachable(node NodeID) {
	for _, r := range n.order {
		if rd, ok := r.state.Desc.OnNode(node); ok {
			r.rn.ReportUnreachable(uint64(rd.ID))
		}
	}
}

// TakeOutput returns the messages to send, the replies and the watch
// events to deliver. Messages a node sends itself (watch pings of parts
// on its own replicas) are handled here.
func (n *Node) TakeOutput() Output {
	var msgs []*Message
	for len(n.out) > 0 {
		out := n.out
		n.out = nil
		for _, m := range out {
			if m.To == n.cfg.ID {
				n.Receive(m)
			} else {
				msgs = append(msgs, m)
			}
		}
	}
	o := Output{Messages: msgs, Replies: n.replies, Watch: n.watchOut}
	n.replies, n.watchOut = nil, nil
	return o
}

// LocalRange describes one local replica (for tests, tools and the
// simulator's checks).
type LocalRange struct {
	Desc      *Descriptor
	ReplicaID ReplicaID
	Applied   uint64
	Leader    bool
	Term      uint64
	Frozen    bool
	LiveBytes int64
	LiveKeys  int64
	// Lag, on a leader: how many committed entries the furthest behind
	// replica has yet to acknowledge (0 elsewhere).
	Lag uint64
}

// Ranges lists the local replicas in range order.
func (n *Node) Ranges() []LocalRange {
	var out []LocalRange
	for _, r := range n.order {
		st := r.rn.BasicStatus()
		lr := LocalRange{Desc: r.state.Desc.Clone(), ReplicaID: r.replicaID, Applied: r.state.Index,
			Leader: st.RaftState == raft.StateLeader, Term: st.GetTerm(), Frozen: r.state.Frozen,
			LiveBytes: r.state.LiveBytes, LiveKeys: r.state.LiveKeys}
		if commit := st.GetCommit(); lr.Leader {
			r.rn.WithProgress(func(_ uint64, _ raft.ProgressType, pr tracker.Progress) {
				if pr.Match < commit {
					lr.Lag = max(lr.Lag, commit-pr.Match)
				}
			})
		}
		out = append(out, lr)
	}
	return out
}

// RangeData reads the data a local replica holds, for consistency checks.
func (n *Node) RangeData(id RangeID) ([]KV, error) {
	r := n.replicas[id]
	if r == nil || !r.state.Desc.Initialized() {
		return nil, fmt.Errorf("raftkv: no initialized replica of r%d", id)
	}
	return spanData(n.db, r.state.Desc.Start, r.state.Desc.End)
}

// logf reports a replica change to Config.Log.
func (n *Node) logf(format string, args ...any) {
	if n.cfg.Log != nil {
		n.cfg.Log(fmt.Sprintf(format, args...))
	}
}

func sortReplicas(s []ReplicaDesc) {
	slices.SortFunc(s, func(a, b ReplicaDesc) int { return cmp.Compare(a.ID, b.ID) })
}

// Verify checks what every local replica claims about its data against the
// data itself (key and byte counts, keys inside the span): a check the
// simulator runs after reading, to catch state that went wrong where it
// went wrong rather than when a client happens to read it.
func (n *Node) Verify() error {
	for _, r := range n.spans {
		d := r.state.Desc
		b, k, err := spanStats(n.db, d.Start, d.End)
		if err != nil {
			return err
		}
		if b != r.state.LiveBytes || k != r.state.LiveKeys {
			return fmt.Errorf("r%d on n%d at applied %d: %d keys %d bytes stored, the range state says %d keys %d bytes",
				r.id, n.cfg.ID, r.state.Index, k, b, r.state.LiveKeys, r.state.LiveBytes)
		}
	}
	return nil
}
