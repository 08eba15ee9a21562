package raftkv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// appliedState is what a replica has applied: written with every apply
// batch, so that data and the index it reflects never disagree on disk.
type appliedState struct {
	Desc                *Descriptor
	Index, Term         uint64
	LiveBytes, LiveKeys int64
	// Frozen: the range is being merged into its left neighbour MergeInto
	// (which started at MergeStart with generation MergeGen when it asked);
	// it refuses every request until the merge completes or is abandoned.
	Frozen     bool
	MergeInto  RangeID
	MergeStart []byte
	MergeGen   uint64
}

func (s *appliedState) encode(e *enc) {
	s.Desc.encode(e)
	e.u64(s.Index)
	e.u64(s.Term)
	e.i64(s.LiveBytes)
	e.i64(s.LiveKeys)
	e.bool(s.Frozen)
	e.u64(uint64(s.MergeInto))
	e.optBytes(s.MergeStart)
	e.u64(s.MergeGen)
}

func decodeAppliedState(b []byte) (appliedState, error) {
	d := dec{b: b}
	s := appliedState{Desc: decodeDescriptor(&d)}
	s.Index, s.Term = d.u64(), d.u64()
	s.LiveBytes, s.LiveKeys = d.i64(), d.i64()
	s.Frozen = d.bool()
	s.MergeInto = RangeID(d.u64())
	s.MergeStart = d.optBytes()
	s.MergeGen = d.u64()
	return s, d.done()
}

func (s *appliedState) bytes() []byte {
	var e enc
	s.encode(&e)
	return e.b
}

// replica is the local member of one range's raft group.
type replica struct {
	n                                *Node
	id                               RangeID
	replicaID                        ReplicaID
	rn                               *raft.RawNode
	st                               *logStore
	state                            appliedState
	electionElapsed, electionTimeout int
	leaderSince                      int64 // tick it became leader (0: not leader)

	// Writes wait in propQueue until the next Ready proposes them as one
	// entry; proposals are those entries until applied.
	propQueue   []*exec
	proposals   map[uint64]*proposal // by seq; lookup only
	propByIndex map[uint64]uint64    // log index → seq of an own proposal; lookup only
	peers       map[ReplicaID]NodeID // where messages came from (a replica not in our descriptor yet); lookup only
	inflight    int                  // requests in propQueue and proposals

	// Linearizable reads wait in readQueue, then for their ReadIndex, then
	// for the apply index to reach it.
	readQueue []*exec
	reads     []*readBatch

	out        *snapSource // the current outgoing snapshot's data
	staged     *stagedSnap // an incoming snapshot stepped into raft, not yet applied
	destroyed  bool
	writesWin  int      // writes applied since the last placement look (load-based splits)
	sampleKeys [][]byte // some keys written lately, to split a hot range in its middle

	// Background work in flight (background.go).
	confBusy    bool // a membership change proposed, not yet applied
	confTick    int64
	published   uint64 // the generation this leader last wrote to meta
	publishBusy bool
	splitBusy   bool
	mergeBusy   bool
	abortBusy   bool
	frozenSince int64

	watchers []*watcher // watch parts registered here (watch.go)
	fx       *effects   // the current apply's effects (set during applyEntries)
}

// exec is a request being executed on this node.
type exec struct {
	req      *Request
	done     func(*Response)
	deadline int64
}

type proposal struct {
	seq   uint64
	reqs  []*exec
	index uint64 // log index once appended (0 until then)
	term  uint64
}

type readBatch struct {
	ctx   uint64
	reqs  []*exec
	index uint64 // 0 until the ReadIndex answer
}

// discardLogger keeps raft's chatter out of the node's output.
var discardLogger = &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}

// newReplica builds the in-memory replica over what the store holds.
func (n *Node) newReplica(id RangeID, rid ReplicaID, state appliedState, hs *pb.HardState, truncIndex, truncTerm, last uint64) (*replica, error) {
	r := &replica{n: n, id: id, replicaID: rid, state: state,
		proposals: map[uint64]*proposal{}, propByIndex: map[uint64]uint64{}, peers: map[ReplicaID]NodeID{}}
	r.st = &logStore{db: n.db, r: r, hs: hs, first: truncIndex + 1, truncTerm: truncTerm, last: max(last, truncIndex)}
	if err := r.startRaft(); err != nil {
		return nil, err
	}
	return r, nil
}

// startRaft (re)creates the RawNode from the storage view.
func (r *replica) startRaft() error {
	c := r.n.cfg
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        uint64(r.replicaID),
		ElectionTick:              c.ElectionTicks,
		HeartbeatTick:             c.HeartbeatTicks,
		Storage:                   r.st,
		Applied:                   r.state.Index,
		MaxSizePerMsg:             1 << 20,
		MaxCommittedSizePerReady:  c.MaxApplyBytes,
		MaxUncommittedEntriesSize: c.MaxUncommittedBytes,
		MaxInflightMsgs:           256,
		CheckQuorum:               true,
		PreVote:                   true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		StepDownOnRemoval:         true,
		Logger:                    discardLogger,
	})
	if err != nil {
		return err
	}
	r.rn = rn
	r.resetElection()
	return nil
}

// resetElection draws the next election timeout. raft's own randomized
// timeout comes from crypto/rand; followers never run it (they get
// TickQuiesced), so every campaign is ours, timed from the node's Rand.
func (r *replica) resetElection() {
	e := r.n.cfg.ElectionTicks
	r.electionElapsed = 0
	r.electionTimeout = e + r.n.cfg.Rand.IntN(e)
}

func (r *replica) isLeader() bool {
	return r.rn.BasicStatus().RaftState == raft.StateLeader
}

// leaderNode returns the node of the leader this replica knows (0: none).
func (r *replica) leaderNode() NodeID {
	lead := r.rn.BasicStatus().Lead
	if lead == 0 {
		return 0
	}
	if rd, ok := r.state.Desc.Replica(ReplicaID(lead)); ok {
		return rd.Node
	}
	return 0
}

func (r *replica) tick() {
	st := r.rn.BasicStatus()
	if st.RaftState == raft.StateLeader {
		r.rn.Tick()
		return
	}
	// Advance raft's election clock (its leader lease check reads it)
	// without letting it run its own randomized timer.
	r.rn.TickQuiesced()
	r.electionElapsed++
	if r.electionElapsed >= r.electionTimeout {
		r.resetElection()
		if r.state.Desc.Initialized() && r.state.Desc.IsVoter(r.replicaID) {
			_ = r.rn.Campaign()
		}
	}
}

// step feeds a raft message to the group.
func (r *replica) step(m *pb.Message) {
	if err := r.rn.Step(m); err != nil {
		return // a message for another term or a peer not in the config
	}
	switch m.GetType() {
	case pb.MsgApp, pb.MsgHeartbeat, pb.MsgSnap:
		if r.rn.BasicStatus().Lead == m.GetFrom() {
			r.electionElapsed = 0
		}
	}
}

// hasWork reports whether the next Ready has something for this replica.
func (r *replica) hasWork() bool {
	return len(r.propQueue) > 0 || len(r.readQueue) > 0 || r.rn.HasReady()
}

// exec starts a request whose key this replica holds. done runs once.
func (r *replica) exec(req *Request, done func(*Response)) {
	if e := r.checkSpan(req); e != nil {
		done(&Response{Err: e})
		return
	}
	if req.Kind == reqWatch {
		done(r.registerWatcher(req))
		return
	}
	if !req.isWrite() && req.Read == Stale {
		done(r.read(req))
		return
	}
	if !r.isLeader() {
		done(&Response{Err: r.notLeader()})
		return
	}
	x := &exec{req: req, done: done, deadline: r.n.tick + int64(r.n.cfg.RequestTicks)}
	if !req.isWrite() {
		if r.n.cfg.Knobs.ReadWithoutReadIndex {
			done(r.read(req))
			return
		}
		if len(r.readQueue)+r.pendingReads() >= r.n.cfg.MaxPendingReads {
			r.n.stats.ReadsRefused++
			done(&Response{Err: errf(ErrBusy, "r%d: %d reads pending", r.id, r.n.cfg.MaxPendingReads)})
			return
		}
		r.readQueue = append(r.readQueue, x)
		return
	}
	if req.Kind == reqFreeze {
		d := r.state.Desc
		if d.Joint() || r.state.LiveBytes > int64(req.Limit) {
			done(&Response{Err: errf(ErrBadRequest, "r%d cannot merge now (%d bytes)", r.id, r.state.LiveBytes)})
			return
		}
	}
	if r.inflight >= r.n.cfg.MaxInflightProposals {
		r.n.stats.ProposalsRefused++
		done(&Response{Err: errf(ErrBusy, "r%d: %d proposals in flight", r.id, r.n.cfg.MaxInflightProposals)})
		return
	}
	r.inflight++
	r.propQueue = append(r.propQueue, x)
}

func (r *replica) notLeader() *Error {
	return &Error{Code: ErrNotLeader, Leader: r.leaderNode(), Desc: r.state.Desc.Clone()}
}

func (r *replica) pendingReads() int {
	k := 0
	for _, b := range r.reads {
		k += len(b.reqs)
	}
	return k
}

// checkSpan refuses requests this replica cannot serve now.
func (r *replica) checkSpan(req *Request) *Error {
	d := r.state.Desc
	moved := func() *Error { return &Error{Code: ErrRangeMoved, Desc: d.Clone()} }
	if !d.Initialized() {
		return &Error{Code: ErrRangeMoved}
	}
	if r.state.Frozen && req.Kind != reqUnfreeze && req.Kind != reqMergeAbort {
		return &Error{Code: ErrRangeMoved, Msg: "range is merging"}
	}
	switch req.Kind {
	case ReqGet, ReqScan:
		if !d.Contains(req.Key) {
			return moved()
		}
	case ReqWrite:
		for _, op := range req.Ops {
			ok := d.Contains(op.Key)
			if op.Kind == OpDeleteRange {
				ok = d.ContainsSpan(op.Key, op.End)
			}
			if !ok {
				return moved()
			}
		}
	case reqWatch:
		if !d.Contains(req.Key) {
			return moved()
		}
	case reqFreeze, reqMergeAbort, reqUnfreeze:
		if req.Range != r.id {
			return moved()
		}
	}
	return nil
}

// flushProposals proposes the queued writes, batched into entries.
func (r *replica) flushProposals() {
	if len(r.propQueue) == 0 {
		return
	}
	q := r.propQueue
	r.propQueue = nil
	if !r.isLeader() {
		for _, x := range q {
			r.inflight--
			x.done(&Response{Err: r.notLeader()})
		}
		return
	}
	for len(q) > 0 {
		seq := r.n.nextSeq()
		var e enc
		k := 0
		if kind := q[0].req.Kind; kind != ReqWrite {
			// Internal requests go alone, each its own command.
			encodeHeader(&e, adminCmd(kind), r.n.cfg.ID, seq)
			encodeAdmin(&e, q[0].req)
			k = 1
		} else {
			// The requests are encoded into a scratch buffer the node
			// reuses, then copied once into an entry of exactly their size.
			body := enc{b: r.n.propBuf[:0]}
			for k < len(q) && q[k].req.Kind == ReqWrite && (k == 0 || len(body.b) < r.n.cfg.MaxProposalBytes) {
				q[k].req.encode(&body)
				k++
			}
			if cap(body.b) <= 2*r.n.cfg.MaxProposalBytes {
				r.n.propBuf = body.b
			}
			e.b = make([]byte, 0, 1+3*binary.MaxVarintLen64+len(body.b))
			encodeHeader(&e, cmdBatch, r.n.cfg.ID, seq)
			e.u64(uint64(k))
			e.b = append(e.b, body.b...)
		}
		p := &proposal{seq: seq, reqs: q[:k:k]}
		q = q[k:]
		if err := r.rn.Propose(e.b); err != nil {
			r.n.stats.ProposalsDropped++
			for _, x := range p.reqs {
				r.inflight--
				x.done(&Response{Err: errf(ErrBusy, "r%d: %v", r.id, err)})
			}
			continue
		}
		r.proposals[seq] = p
		r.n.stats.Proposals++
		if r.n.cfg.Knobs.AckBeforeApply {
			for _, x := range p.reqs {
				x.done(&Response{Succeeded: true})
				x.done = func(*Response) {}
			}
		}
	}
}

// flushReads asks raft for a read index for the queued reads.
func (r *replica) flushReads() {
	if len(r.readQueue) == 0 {
		return
	}
	q := r.readQueue
	r.readQueue = nil
	if !r.isLeader() {
		for _, x := range q {
			x.done(&Response{Err: r.notLeader()})
		}
		return
	}
	ctx := r.n.nextSeq()
	r.reads = append(r.reads, &readBatch{ctx: ctx, reqs: q})
	r.rn.ReadIndex(binary.BigEndian.AppendUint64(nil, ctx))
}

// readStates records the indexes raft confirmed.
func (r *replica) readStates(rs []raft.ReadState) {
	for _, s := range rs {
		if len(s.RequestCtx) != 8 {
			continue
		}
		ctx := binary.BigEndian.Uint64(s.RequestCtx)
		for _, b := range r.reads {
			if b.ctx == ctx {
				b.index = s.Index
			}
		}
	}
	r.serveReads()
}

// serveReads answers the reads whose index has been applied.
func (r *replica) serveReads() {
	keep := r.reads[:0]
	for _, b := range r.reads {
		if b.index == 0 || b.index > r.state.Index {
			keep = append(keep, b)
			continue
		}
		for _, x := range b.reqs {
			if e := r.checkSpan(x.req); e != nil {
				x.done(&Response{Err: e})
				continue
			}
			x.done(r.read(x.req))
		}
	}
	clear(r.reads[len(keep):])
	r.reads = keep
}

// read evaluates a Get or Scan against what this node has applied.
func (r *replica) read(req *Request) *Response {
	r.n.stats.Reads++
	switch req.Kind {
	case ReqGet:
		v, ok, err := getValue(r.n.db, req.Key)
		if err != nil {
			return &Response{Err: errf(ErrUnavailable, "read: %v", err)}
		}
		return &Response{Value: v, Found: ok}
	case ReqScan:
		return r.scan(req)
	}
	return &Response{Err: errf(ErrBadRequest, "not a read")}
}

func (r *replica) scan(req *Request) *Response {
	end := req.End
	var resume []byte
	if d := r.state.Desc; d.End != nil && (end == nil || bytes.Compare(end, d.End) > 0) {
		end = d.End
		resume = bytes.Clone(d.End)
	}
	it, err := r.n.db.NewIter(&pebble.IterOptions{LowerBound: dataKey(req.Key), UpperBound: dataEnd(end)})
	if err != nil {
		return &Response{Err: errf(ErrUnavailable, "scan: %v", err)}
	}
	defer it.Close()
	resp := &Response{}
	for ok := it.First(); ok; ok = it.Next() {
		if req.Limit > 0 && len(resp.KVs) == req.Limit {
			resume = append(bytes.Clone(it.Key()[1:]), 0)
			break
		}
		resp.KVs = append(resp.KVs, KV{Key: bytes.Clone(it.Key()[1:]), Value: bytes.Clone(it.Value())})
	}
	resp.Resume = resume
	return resp
}

func getValue(r pebble.Reader, key []byte) ([]byte, bool, error) { return getRaw(r, dataKey(key)) }

// getRaw reads a key of the store, copied out of Pebble's memory.
func getRaw(r pebble.Reader, key []byte) ([]byte, bool, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := bytes.Clone(v)
	closer.Close()
	return out, true, nil
}

// expire fails what waited past its deadline (writes: outcome unknown).
func (r *replica) expire(now int64) {
	keepR := r.reads[:0]
	for _, b := range r.reads {
		if len(b.reqs) > 0 && b.reqs[0].deadline <= now {
			for _, x := range b.reqs {
				x.done(&Response{Err: errf(ErrTimeout, "r%d: read index not confirmed", r.id)})
			}
			continue
		}
		keepR = append(keepR, b)
	}
	clear(r.reads[len(keepR):])
	r.reads = keepR
	var expired []uint64
	for seq, p := range r.proposals {
		if len(p.reqs) > 0 && p.reqs[0].deadline <= now {
			expired = append(expired, seq)
		}
	}
	slices.Sort(expired)
	for _, seq := range expired {
		p := r.proposals[seq]
		r.finishProposal(p, func(x *exec) *Response {
			return &Response{Err: &Error{Code: ErrTimeout, Ambiguous: true, Msg: "not applied in time"}}
		})
	}
}

// finishProposal answers every request of p and forgets it.
func (r *replica) finishProposal(p *proposal, resp func(*exec) *Response) {
	delete(r.proposals, p.seq)
	if p.index != 0 && r.propByIndex[p.index] == p.seq {
		delete(r.propByIndex, p.index)
	}
	for _, x := range p.reqs {
		r.inflight--
		x.done(resp(x))
	}
}

// failAll answers everything waiting on the replica (it is going away).
func (r *replica) failAll(e *Error) {
	for _, x := range r.propQueue {
		x.done(&Response{Err: e})
	}
	r.propQueue = nil
	for _, x := range r.readQueue {
		x.done(&Response{Err: e})
	}
	r.readQueue = nil
	for _, b := range r.reads {
		for _, x := range b.reqs {
			x.done(&Response{Err: e})
		}
	}
	r.reads = nil
	var seqs []uint64
	for seq := range r.proposals {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	amb := *e
	amb.Ambiguous = true
	for _, seq := range seqs {
		r.finishProposal(r.proposals[seq], func(*exec) *Response { return &Response{Err: &amb} })
	}
	r.inflight = 0
}
