package raftkv

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// cmdKind is the first byte of a normal raft entry's data.
type cmdKind byte

const (
	cmdBatch      cmdKind = iota + 1 // client writes
	cmdSplit                         // split at a key into a new range
	cmdFreeze                        // stop serving: about to merge into the left neighbour
	cmdMerge                         // take over the right neighbour (its data comes with the command)
	cmdMergeAbort                    // raise the generation, so that no merge prepared before applies
	cmdUnfreeze                      // the merge was abandoned
)

// Internal request kinds proposed by the leader itself.
const (
	reqSplit ReqKind = iota + 100
	reqMerge
)

func adminCmd(k ReqKind) cmdKind {
	switch k {
	case reqSplit:
		return cmdSplit
	case reqFreeze:
		return cmdFreeze
	case reqMerge:
		return cmdMerge
	case reqMergeAbort:
		return cmdMergeAbort
	case reqUnfreeze:
		return cmdUnfreeze
	}
	return 0
}

// encodeHeader starts an entry: its command and who proposed it (node and
// a sequence number unique to that node's incarnation), so the proposer
// can find its requests when the entry is applied.
func encodeHeader(e *enc, k cmdKind, proposer NodeID, seq uint64) {
	e.byte1(byte(k))
	e.u64(uint64(proposer))
	e.u64(seq)
}

func decodeHeader(d *dec) (cmdKind, NodeID, uint64) {
	return cmdKind(d.byte1()), NodeID(d.u64()), d.u64()
}

// encodeAdmin writes an internal request's arguments.
func encodeAdmin(e *enc, req *Request) {
	e.u64(uint64(req.Range))
	e.u64(req.Gen)
	e.u64(uint64(req.Into))
	e.u64(req.IntoGen)
	e.optBytes(req.Key)
	e.optBytes(req.End)
	e.bool(req.desc != nil)
	if req.desc != nil {
		req.desc.encode(e)
	}
	encodeKVs(e, req.data)
}

func decodeAdmin(d *dec) *Request {
	req := &Request{Range: RangeID(d.u64()), Gen: d.u64(), Into: RangeID(d.u64()), IntoGen: d.u64(), Key: d.optBytes(), End: d.optBytes()}
	if d.bool() {
		req.desc = decodeDescriptor(d)
	}
	req.data = decodeKVs(d)
	return req
}

// effects are what an apply batch leads to once it is committed.
type effects struct {
	after []func()
}

func (fx *effects) then(f func()) { fx.after = append(fx.after, f) }

// applyEntries applies committed entries into b (an indexed batch shared
// by every replica of the Ready). Everything it decides depends only on
// the entries and the replicated state, so every replica decides alike.
// It stops after a split, a merge, a freeze or a membership change and
// returns the entries left: their effects (a replica created or
// destroyed, a span changed) must be in place before the next entry of
// any replica applies (Advance commits the batch and goes on).
func (r *replica) applyEntries(b *pebble.Batch, ents []*pb.Entry, fx *effects) ([]*pb.Entry, error) {
	if len(ents) == 0 {
		return nil, nil
	}
	r.fx = fx
	defer func() { r.fx = nil }()
	for i, e := range ents {
		if r.destroyed {
			return nil, nil
		}
		if e.GetIndex() != r.state.Index+1 {
			return nil, fmt.Errorf("raftkv: r%d applies entry %d after %d", r.id, e.GetIndex(), r.state.Index)
		}
		structural := false
		switch e.GetType() {
		case pb.EntryNormal:
			if err := r.applyNormal(b, e, fx); err != nil {
				return nil, err
			}
			structural = len(e.GetData()) > 0 && cmdKind(e.GetData()[0]) != cmdBatch
		case pb.EntryConfChange, pb.EntryConfChangeV2:
			if err := r.applyConfChange(e, fx); err != nil {
				return nil, err
			}
			structural = true
		}
		r.state.Index, r.state.Term = e.GetIndex(), e.GetTerm()
		if structural && i+1 < len(ents) {
			if r.destroyed {
				return nil, nil
			}
			return ents[i+1:], b.Set(rangeKey(r.id, sufState), r.state.bytes(), nil)
		}
	}
	if r.destroyed {
		return nil, nil
	}
	return nil, b.Set(rangeKey(r.id, sufState), r.state.bytes(), nil)
}

func (r *replica) applyNormal(b *pebble.Batch, e *pb.Entry, fx *effects) error {
	// An own proposal expected at this index that is not this entry was
	// overwritten by another leader: it will never apply.
	if seq, ok := r.propByIndex[e.GetIndex()]; ok {
		if p := r.proposals[seq]; p != nil && !sameProposal(e.GetData(), r.n.cfg.ID, seq) {
			r.n.stats.ProposalsLost++
			r.finishProposal(p, func(*exec) *Response {
				return &Response{Err: errf(ErrDropped, "r%d: entry %d went to another proposal", r.id, e.GetIndex())}
			})
		}
		delete(r.propByIndex, e.GetIndex())
	}
	if len(e.GetData()) == 0 {
		return nil // a new leader's empty entry
	}
	d := dec{b: e.GetData()}
	kind, proposer, seq := decodeHeader(&d)
	var p *proposal
	if proposer == r.n.cfg.ID {
		p = r.proposals[seq]
	}
	answer := func(resps []*Response) {
		if p == nil {
			return
		}
		fx.then(func() {
			if r.proposals[p.seq] != p {
				return
			}
			i := 0
			r.finishProposal(p, func(*exec) *Response { i++; return resps[i-1] })
		})
	}
	switch kind {
	case cmdBatch:
		// The writes' keys and values are slices of the entry's data
		// (raft never modifies an entry): applyWrite copies what it keeps
		// (the batch copies what it is given, watch events and sampled
		// keys are clones).
		d.alias = true
		n := d.count()
		resps := make([]*Response, 0, n)
		for range n {
			req := decodeRequest(&d)
			if d.err != nil {
				break
			}
			resp, err := r.applyWrite(b, req)
			if err != nil {
				return err
			}
			resps = append(resps, resp)
		}
		if d.err != nil {
			return fmt.Errorf("raftkv: r%d entry %d: %w", r.id, e.GetIndex(), d.err)
		}
		r.n.stats.WritesApplied += uint64(n)
		answer(resps)
	case cmdSplit, cmdFreeze, cmdMerge, cmdMergeAbort, cmdUnfreeze:
		req := decodeAdmin(&d)
		if d.err != nil {
			return fmt.Errorf("raftkv: r%d entry %d: %w", r.id, e.GetIndex(), d.err)
		}
		resp, err := r.applyAdmin(b, kind, req, p != nil, fx)
		if err != nil {
			return err
		}
		answer([]*Response{resp})
	default:
		return fmt.Errorf("raftkv: r%d entry %d: unknown command %d", r.id, e.GetIndex(), kind)
	}
	return nil
}

func sameProposal(data []byte, node NodeID, seq uint64) bool {
	if len(data) == 0 {
		return false
	}
	d := dec{b: data}
	_, p, s := decodeHeader(&d)
	return d.err == nil && p == node && s == seq
}

// applyWrite applies one client Write atomically: every op's key must lie
// in the range and every CAS must hold, or nothing changes.
func (r *replica) applyWrite(b *pebble.Batch, req *Request) (*Response, error) {
	if e := r.checkSpan(req); e != nil {
		return &Response{Err: e}, nil
	}
	for i, op := range req.Ops {
		if op.Kind != OpCAS {
			continue
		}
		cur, found, err := getValue(b, op.Key)
		if err != nil {
			return nil, err
		}
		if op.ExpectAbsent && found || !op.ExpectAbsent && (!found || !bytes.Equal(cur, op.Expect)) {
			return &Response{Succeeded: false, FailedOp: i, Current: cur, CurrentFound: found}, nil
		}
	}
	p, err := newPrior(b, req.Ops)
	if err != nil {
		return nil, err
	}
	defer p.close()
	resp := &Response{Succeeded: true}
	for _, op := range req.Ops {
		switch op.Kind {
		case OpPut:
			if err := r.put(p, op.Key, op.Value); err != nil {
				return nil, err
			}
		case OpDelete:
			if err := r.del(p, op.Key); err != nil {
				return nil, err
			}
		case OpCAS:
			var err error
			if op.Delete {
				err = r.del(p, op.Key)
			} else {
				err = r.put(p, op.Key, op.Value)
			}
			if err != nil {
				return nil, err
			}
		case OpIncrement:
			cur, _, err := getValue(b, op.Key)
			if err != nil {
				return nil, err
			}
			var v int64
			if len(cur) == 8 {
				v = int64(binary.BigEndian.Uint64(cur))
			}
			v += op.Delta
			resp.Int = v
			if err := r.put(p, op.Key, binary.BigEndian.AppendUint64(nil, uint64(v))); err != nil {
				return nil, err
			}
		case OpDeleteRange:
			if err := r.delRange(b, op.Key, op.End); err != nil {
				return nil, err
			}
		case opPutDesc:
			if err := r.putMetaDesc(b, op.Value); err != nil {
				return nil, err
			}
		}
		if r.n.sampleWrites {
			r.sample(op.Key)
		}
	}
	r.writesWin += len(req.Ops)
	return resp, nil
}

// sample keeps a few recent write keys, to split a hot range in the middle.
func (r *replica) sample(k []byte) {
	const n = 32
	if len(r.sampleKeys) < n {
		r.sampleKeys = append(r.sampleKeys, bytes.Clone(k))
		return
	}
	r.sampleKeys[r.n.cfg.Rand.IntN(n)] = bytes.Clone(k)
}

func (r *replica) put(p prior, k, v []byte) error {
	old, found, err := p.size(k)
	if err != nil {
		return err
	}
	if found {
		r.state.LiveBytes -= int64(len(k) + old)
	} else {
		r.state.LiveKeys++
	}
	r.state.LiveBytes += int64(len(k) + len(v))
	if r.id == MetaRangeID {
		r.n.metaChanged()
	}
	if r.fx != nil {
		r.notify(r.fx, k, nil, v, false)
	}
	return p.b.Set(dataKey(k), v, nil)
}

func (r *replica) del(p prior, k []byte) error {
	old, found, err := p.size(k)
	if err != nil || !found {
		return err
	}
	r.state.LiveBytes -= int64(len(k) + old)
	r.state.LiveKeys--
	if r.id == MetaRangeID {
		r.n.metaChanged()
	}
	if r.fx != nil {
		r.notify(r.fx, k, nil, nil, true)
	}
	return p.b.Delete(dataKey(k), nil)
}

func (r *replica) delRange(b *pebble.Batch, start, end []byte) error {
	bytesN, keys, err := spanStats(b, start, end)
	if err != nil {
		return err
	}
	r.state.LiveBytes -= bytesN
	r.state.LiveKeys -= keys
	if r.id == MetaRangeID {
		r.n.metaChanged()
	}
	if r.fx != nil {
		r.notify(r.fx, start, end, nil, true)
	}
	return b.DeleteRange(dataKey(start), dataEnd(end), nil)
}

// spanStats counts the data in [start, end).
func spanStats(rd pebble.Reader, start, end []byte) (bytesN, keys int64, err error) {
	it, err := rd.NewIter(&pebble.IterOptions{LowerBound: dataKey(start), UpperBound: dataEnd(end)})
	if err != nil {
		return 0, 0, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		bytesN += int64(len(it.Key()) - 1 + len(it.Value()))
		keys++
	}
	return bytesN, keys, it.Close()
}

// spanData reads the data in [start, end).
func spanData(rd pebble.Reader, start, end []byte) ([]KV, error) {
	it, err := rd.NewIter(&pebble.IterOptions{LowerBound: dataKey(start), UpperBound: dataEnd(end)})
	if err != nil {
		return nil, err
	}
	var out []KV
	for ok := it.First(); ok; ok = it.Next() {
		out = append(out, KV{Key: bytes.Clone(it.Key()[1:]), Value: bytes.Clone(it.Value())})
	}
	return out, it.Close()
}

// applyAdmin applies a split, a merge or a step of the merge protocol.
func (r *replica) applyAdmin(b *pebble.Batch, kind cmdKind, req *Request, mine bool, fx *effects) (*Response, error) {
	d := r.state.Desc
	fail := func(format string, args ...any) (*Response, error) {
		return &Response{Err: &Error{Code: ErrRangeMoved, Desc: d.Clone(), Msg: fmt.Sprintf(format, args...)}}, nil
	}
	if req.Gen != d.Gen && kind != cmdMergeAbort {
		return fail("generation %d, not %d", d.Gen, req.Gen)
	}
	switch kind {
	case cmdSplit:
		if r.state.Frozen || d.Joint() || !d.Contains(req.Key) || bytes.Equal(req.Key, d.Start) {
			return fail("cannot split at %q", req.Key)
		}
		return r.applySplit(b, req.Key, req.Into, fx)
	case cmdFreeze:
		// One merge at a time; the generation moves so that a late freeze
		// from another neighbour is refused.
		if r.state.Frozen || d.Joint() {
			return fail("cannot freeze")
		}
		r.state.Frozen, r.state.MergeInto, r.state.MergeStart, r.state.MergeGen = true, req.Into, req.End, req.IntoGen
		d.Gen++
		fx.then(r.resetWatchers)
		resp := &Response{Succeeded: true, Desc: d.Clone()}
		if mine {
			data, err := spanData(b, d.Start, d.End)
			if err != nil {
				return nil, err
			}
			resp.Data = data
		}
		return resp, nil
	case cmdUnfreeze:
		if !r.state.Frozen {
			return fail("not frozen")
		}
		r.state.Frozen, r.state.MergeInto, r.state.MergeStart, r.state.MergeGen = false, 0, nil, 0
		d.Gen++
		fx.then(r.n.spansChanged)
		return &Response{Succeeded: true}, nil
	case cmdMergeAbort:
		if req.End != nil && d.Contains(req.End) {
			return &Response{Succeeded: true, Int: 1}, nil // already merged
		}
		r.state.Desc.Gen++
		fx.then(r.n.spansChanged)
		return &Response{Succeeded: true, Int: 0, Desc: r.state.Desc.Clone()}, nil
	case cmdMerge:
		rhs := req.desc
		if rhs == nil || r.state.Frozen || d.End == nil || !bytes.Equal(rhs.Start, d.End) {
			return fail("cannot merge %v", rhs)
		}
		return r.applyMerge(b, rhs, req.data, fx)
	}
	return fail("unknown command %d", kind)
}

// initialIndex and initialTerm start every range's log: a new range's
// replicas begin with identical state at this index, so that raft sends a
// snapshot to any replica that has no log yet.
const (
	initialIndex = 10
	initialTerm  = 5
)

func (r *replica) applySplit(b *pebble.Batch, key []byte, newID RangeID, fx *effects) (*Response, error) {
	r.n.logf("r%d splits at %q into r%d (index %d)", r.id, key, newID, r.state.Index+1)
	left := r.state.Desc.Clone()
	right := r.state.Desc.Clone()
	left.End, right.Start = bytes.Clone(key), bytes.Clone(key)
	left.Gen++
	right.Gen = left.Gen
	right.RangeID = newID
	rb, rk, err := spanStats(b, right.Start, right.End)
	if err != nil {
		return nil, err
	}
	rstate := appliedState{Desc: right, Index: initialIndex, Term: initialTerm, LiveBytes: rb, LiveKeys: rk}
	r.state.Desc = left
	r.state.LiveBytes -= rb
	r.state.LiveKeys -= rk
	r.n.stats.Splits++
	if !r.n.cfg.Knobs.WatchKeepsSplit {
		fx.then(r.resetWatchers)
	}

	// The right-hand replica on this node, if raft messages already made
	// an uninitialized one, keeps its term and vote.
	hs := &pb.HardState{Term: new(uint64(initialTerm)), Commit: new(uint64(initialIndex))}
	old := r.n.replicas[newID]
	if old != nil && !old.state.Desc.Initialized() && old.replicaID == r.replicaID && old.st.hs.GetTerm() > initialTerm {
		hs.Term, hs.Vote = new(old.st.hs.GetTerm()), new(old.st.hs.GetVote())
	}
	if old == nil || !old.state.Desc.Initialized() {
		if err := writeReplicaState(b, newID, r.replicaID, hs, &rstate, initialIndex, initialTerm); err != nil {
			return nil, err
		}
		rid := r.replicaID
		fx.then(func() {
			r.n.createSplitReplica(newID, rid, rstate, hs)
			// The left half's leader campaigns for the right half at once
			// rather than after an election timeout (1–2 s at the default
			// tick, with the right half's keys unavailable): its log is as
			// long as any replica's, so it wins unless it lost the left's
			// leadership meanwhile.
			if nr := r.n.replicas[newID]; nr != nil && nr.state.Desc.Initialized() && r.rn.BasicStatus().RaftState == raft.StateLeader {
				_ = nr.rn.Campaign()
			}
		})
	}
	fx.then(r.n.spansChanged)
	return &Response{Succeeded: true, Desc: right.Clone()}, nil
}

// writeReplicaState writes everything a new initialized replica needs.
func writeReplicaState(b *pebble.Batch, id RangeID, rid ReplicaID, hs *pb.HardState, st *appliedState, truncIndex, truncTerm uint64) error {
	if err := b.DeleteRange(rangeKey(id, 0), rangePrefixEnd(id), nil); err != nil {
		return err
	}
	hb, err := proto.Marshal(hs)
	if err != nil {
		return err
	}
	for _, kv := range []KV{
		{rangeKey(id, sufReplicaID), binary.BigEndian.AppendUint64(nil, uint64(rid))},
		{rangeKey(id, sufHard), hb},
		{rangeKey(id, sufState), st.bytes()},
		{rangeKey(id, sufTrunc), encodeTrunc(truncIndex, truncTerm)},
	} {
		if err := b.Set(kv.Key, kv.Value, nil); err != nil {
			return err
		}
	}
	return nil
}

func (r *replica) applyMerge(b *pebble.Batch, rhs *Descriptor, data []KV, fx *effects) (*Response, error) {
	r.n.logf("r%d merges %v with %d keys (index %d)", r.id, rhs, len(data), r.state.Index+1)
	if err := b.DeleteRange(dataKey(rhs.Start), dataEnd(rhs.End), nil); err != nil {
		return nil, err
	}
	var addBytes, addKeys int64
	if !r.n.cfg.Knobs.MergeDropsData {
		for _, kv := range data {
			if !rhs.Contains(kv.Key) {
				return nil, fmt.Errorf("raftkv: r%d merge data key %q outside %v", r.id, kv.Key, rhs)
			}
			if err := b.Set(dataKey(kv.Key), kv.Value, nil); err != nil {
				return nil, err
			}
			addBytes += int64(len(kv.Key) + len(kv.Value))
			addKeys++
		}
	}
	d := r.state.Desc
	d.End = bytes.Clone(rhs.End)
	d.Gen = max(d.Gen, rhs.Gen) + 1
	r.state.LiveBytes += addBytes
	r.state.LiveKeys += addKeys
	r.n.stats.Merges++
	fx.then(r.resetWatchers)
	// The right-hand range's local replica is gone with it, and so is any
	// other local replica of its span: older ranges the right-hand one
	// absorbed before, whose merges this node never applied (their data
	// was just overwritten; destroying them later would clear it).
	for _, old := range r.n.order {
		if old == r || old.destroyed {
			continue
		}
		if old.id != rhs.RangeID && !(old.state.Desc.Initialized() && old.state.Desc.Overlaps(rhs)) {
			continue
		}
		if err := writeDestroy(b, old.id, old.replicaID); err != nil {
			return nil, err
		}
		old.destroyed = true
		fx.then(func() { r.n.dropReplica(old, "merged") })
	}
	fx.then(r.n.spansChanged)
	return &Response{Succeeded: true, Desc: d.Clone()}, nil
}

// writeDestroy removes a replica's raft state and leaves a tombstone so
// that late messages to it do not bring it back.
func writeDestroy(b *pebble.Batch, id RangeID, rid ReplicaID) error {
	if err := b.DeleteRange(rangeKey(id, 0), rangePrefixEnd(id), nil); err != nil {
		return err
	}
	return b.Set(rangeKey(id, sufTombstone), binary.BigEndian.AppendUint64(nil, uint64(rid)+1), nil)
}

// confContext travels in a membership change: the generation it was
// planned against and the replicas it adds.
type confContext struct {
	Gen  uint64
	Adds []ReplicaDesc
}

func encodeConfContext(c *confContext) []byte {
	var e enc
	e.u64(c.Gen)
	e.u64(uint64(len(c.Adds)))
	for _, a := range c.Adds {
		e.u64(uint64(a.ID))
		e.u64(uint64(a.Node))
	}
	return e.b
}

func decodeConfContext(b []byte) (*confContext, error) {
	d := dec{b: b}
	c := &confContext{Gen: d.u64()}
	n := d.count()
	for range n {
		c.Adds = append(c.Adds, ReplicaDesc{ID: ReplicaID(d.u64()), Node: NodeID(d.u64())})
	}
	return c, d.done()
}

func (r *replica) applyConfChange(e *pb.Entry, fx *effects) error {
	var cc pb.ConfChangeI
	if e.GetType() == pb.EntryConfChange {
		c := &pb.ConfChange{}
		if err := proto.Unmarshal(e.GetData(), c); err != nil {
			return err
		}
		cc = c
	} else {
		c := &pb.ConfChangeV2{}
		if err := proto.Unmarshal(e.GetData(), c); err != nil {
			return err
		}
		cc = c
	}
	v2 := cc.AsV2()
	r.confBusy = false
	d := r.state.Desc
	ignore := func() error {
		// The documented way to skip a change: raft ignores node ID 0.
		r.rn.ApplyConfChange(&pb.ConfChange{})
		return nil
	}
	var ctx *confContext
	switch {
	case v2.LeaveJoint():
		if !d.Joint() {
			return ignore()
		}
	default:
		c, err := decodeConfContext(v2.GetContext())
		if err != nil || c.Gen != d.Gen {
			return ignore()
		}
		if _, joint := v2.EnterJoint(); joint && d.Joint() {
			return ignore()
		}
		ctx = c
	}
	cs := r.rn.ApplyConfChange(cc)
	if ctx != nil {
		for _, a := range ctx.Adds {
			if _, ok := d.Replica(a.ID); !ok {
				d.Replicas = append(d.Replicas, a)
			}
			d.NextReplicaID = max(d.NextReplicaID, a.ID+1)
		}
		sortReplicas(d.Replicas)
	}
	d.setConf(cs)
	d.Gen++
	r.n.stats.ConfChanges++
	fx.then(r.n.spansChanged)
	if _, ok := d.Replica(r.replicaID); !ok {
		r.destroyed = true
		fx.then(func() { r.n.removeSelf(r) })
	}
	return nil
}
