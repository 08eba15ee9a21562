package raftkv

import (
	"bytes"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// background is what a node does on its own, on ticks: publish its ranges'
// descriptors to meta, place replicas, split and merge, declare nodes dead
// (the meta leader), collect replicas that were removed without hearing
// of it, join the cluster. Every decision is taken by a range's leader from
// its own state and the local meta view, with one rule every node computes
// alike (rendezvous ranking, meta.go), so there is no placement service to
// fail over; a decision taken on stale information is refused at apply
// (descriptor generations) and taken again later.
type background struct {
	joined       bool
	joinBusy     bool
	addrBusy     bool
	deadBusy     map[NodeID]bool
	metaLeadFrom int64
}

func (bg *background) tick(n *Node) {
	if bg.deadBusy == nil {
		bg.deadBusy = map[NodeID]bool{}
	}
	every := int64(n.cfg.PlacementTicks)
	if n.cfg.Join && !bg.joined && n.tick%5 == 0 {
		bg.join(n)
	}
	if n.tick%every == 0 {
		bg.registerAddr(n)
	}
	for _, r := range slices.Clone(n.order) {
		if r.destroyed || !r.state.Desc.Initialized() {
			if !r.destroyed && (n.tick+int64(r.id))%(3*every) == 0 {
				bg.collect(n, r)
			}
			continue
		}
		if !r.isLeader() {
			r.writesWin = 0
			if (n.tick+int64(r.id))%(3*every) == 0 {
				bg.collect(n, r)
			}
			continue
		}
		bg.publish(n, r)
		if r.state.Frozen {
			bg.frozen(n, r)
			continue
		}
		if (n.tick+int64(r.id))%every != 0 {
			continue
		}
		if r.confBusy && n.tick-r.confTick > int64(n.cfg.RequestTicks) {
			r.confBusy = false
		}
		if !bg.place(n, r) && !bg.split(n, r) {
			bg.merge(n, r)
		}
		r.writesWin = 0
	}
	if r := n.replicas[MetaRangeID]; r != nil && !r.destroyed && r.isLeader() {
		if bg.metaLeadFrom == 0 {
			bg.metaLeadFrom = n.tick
		}
		if n.cfg.DeadAfterTicks > 0 && n.tick%every == 0 {
			bg.liveness(n)
		}
	} else {
		bg.metaLeadFrom = 0
	}
}

// internal routes a request of the node's own.
func (n *Node) internal(req *Request, done func(*Response)) {
	n.router.start(req, 0, done)
}

// publish writes the range's descriptor to meta after it changed or the
// leadership moved here.
func (bg *background) publish(n *Node, r *replica) {
	d := r.state.Desc
	if r.published >= d.Gen || r.publishBusy {
		return
	}
	r.publishBusy = true
	gen := d.Gen
	n.internal(&Request{Kind: ReqWrite, Ops: []Op{{Kind: opPutDesc, Key: metaDescKey(d.End), Value: EncodeDescriptor(d)}}},
		func(resp *Response) {
			r.publishBusy = false
			if resp.Err == nil {
				r.published = max(r.published, gen)
				n.stats.DescsPublished++
			}
		})
}

// place makes at most one membership change toward the range's target:
// voters on the Replicas best-ranked live nodes (and, for meta, learners
// on every other live node), then the leader on the best-ranked voter. It
// reports whether it did something.
func (bg *background) place(n *Node, r *replica) bool {
	view := n.meta()
	live := view.live()
	if len(live) == 0 || r.confBusy {
		return false
	}
	d := r.state.Desc
	if d.Joint() {
		return false // raft leaves the joint configuration by itself
	}
	rank := ranked(r.id, live)
	want := rank[:min(n.cfg.Replicas, len(rank))]
	var wantLearners []NodeID
	switch {
	case r.id == MetaRangeID:
		wantLearners = rank[len(want):]
	case n.cfg.Learners > 0:
		wantLearners = rank[len(want):min(len(rank), len(want)+n.cfg.Learners)]
	}
	st := r.rn.Status()
	last := r.st.last
	// Caught up: replicating, close to the end of the log, and heard from
	// lately (raft's own RecentActive is reset by every quorum check, on a
	// period that can line up with this one).
	caughtUp := func(id ReplicaID) bool {
		pr, ok := st.Progress[uint64(id)]
		rd, _ := d.Replica(id)
		heard, seen := n.lastHeard[rd.Node]
		return ok && seen && n.tick-heard <= int64(n.cfg.ElectionTicks) && pr.State == tracker.StateReplicate &&
			pr.Match+uint64(n.cfg.LogKeep/10+1) >= last
	}
	isLive := func(node NodeID) bool { return slices.Contains(live, node) }

	// 1. A replica on every wanted node (learner first: it catches up by
	// snapshot without weakening the quorum).
	for _, node := range append(slices.Clone(want), wantLearners...) {
		if _, ok := d.OnNode(node); !ok {
			id := d.NextReplicaID
			return r.proposeConf(d, []ReplicaDesc{{ID: id, Node: node}}, change(pb.ConfChangeAddLearnerNode, id))
		}
	}
	// 2. Promote a caught-up learner on a wanted node, demoting or removing
	// an unwanted voter in the same (joint) change.
	// Unwanted voters, those on dead nodes first, the leader itself last
	// (it hands leadership over before it goes).
	var unwanted []ReplicaDesc
	for pass := range 3 {
		for _, rd := range d.Replicas {
			if !d.IsVoter(rd.ID) || slices.Contains(want, rd.Node) {
				continue
			}
			self := rd.ID == r.replicaID
			if pass == 0 && !self && !isLive(rd.Node) || pass == 1 && !self && isLive(rd.Node) || pass == 2 && self {
				unwanted = append(unwanted, rd)
			}
		}
	}
	for _, node := range want {
		rd, _ := d.OnNode(node)
		if !d.IsLearner(rd.ID) || !caughtUp(rd.ID) {
			continue
		}
		cc := []*pb.ConfChangeSingle{change(pb.ConfChangeAddNode, rd.ID)}
		if len(unwanted) > 0 {
			old := unwanted[0]
			if old.ID == r.replicaID {
				return bg.transfer(n, r, want, caughtUp)
			}
			cc = append(cc, retire(old, wantLearners))
		}
		return r.proposeConf(d, nil, cc...)
	}
	// 3. Too many voters: remove (or, for meta, demote) the unwanted ones.
	if len(unwanted) > 0 && len(d.Voters) > len(want) {
		old := unwanted[0]
		if old.ID == r.replicaID {
			return bg.transfer(n, r, want, caughtUp)
		}
		return r.proposeConf(d, nil, retire(old, wantLearners))
	}
	// 4. Learners nobody wants (dead nodes, moved ranges).
	for _, rd := range d.Replicas {
		if d.IsLearner(rd.ID) && !slices.Contains(want, rd.Node) && !(slices.Contains(wantLearners, rd.Node) && isLive(rd.Node)) {
			return r.proposeConf(d, nil, change(pb.ConfChangeRemoveNode, rd.ID))
		}
	}
	// 5. Leadership to the best-ranked voter, once it has settled here.
	if n.tick-r.leaderSince > int64(4*n.cfg.PlacementTicks) {
		for _, node := range want {
			rd, ok := d.OnNode(node)
			if !ok || !d.IsVoter(rd.ID) {
				continue
			}
			if rd.ID != r.replicaID && caughtUp(rd.ID) {
				r.rn.TransferLeader(uint64(rd.ID))
				n.stats.LeaderTransfers++
				return true
			}
			break
		}
	}
	return false
}

// transfer hands leadership to another caught-up voter (a wanted one if
// possible) before this replica is changed away.
func (bg *background) transfer(n *Node, r *replica, want []NodeID, caughtUp func(ReplicaID) bool) bool {
	d := r.state.Desc
	for pass := range 2 {
		for _, rd := range d.Replicas {
			if rd.ID == r.replicaID || !d.IsVoter(rd.ID) || !caughtUp(rd.ID) || (pass == 0 && !slices.Contains(want, rd.Node)) {
				continue
			}
			r.rn.TransferLeader(uint64(rd.ID))
			n.stats.LeaderTransfers++
			return true
		}
	}
	return false
}

// retire removes a voter, or demotes it when a learner is wanted there.
func retire(old ReplicaDesc, wantLearners []NodeID) *pb.ConfChangeSingle {
	if slices.Contains(wantLearners, old.Node) {
		return change(pb.ConfChangeAddLearnerNode, old.ID)
	}
	return change(pb.ConfChangeRemoveNode, old.ID)
}

func change(t pb.ConfChangeType, id ReplicaID) *pb.ConfChangeSingle {
	return &pb.ConfChangeSingle{Type: t.Enum(), NodeId: new(uint64(id))}
}

// proposeConf proposes a membership change planned against d.
func (r *replica) proposeConf(d *Descriptor, adds []ReplicaDesc, ccs ...*pb.ConfChangeSingle) bool {
	cc := &pb.ConfChangeV2{Changes: ccs, Context: encodeConfContext(&confContext{Gen: d.Gen, Adds: adds})}
	if err := r.rn.ProposeConfChange(cc); err != nil {
		return false
	}
	r.confBusy, r.confTick = true, r.n.tick
	r.n.stats.ConfProposed++
	return true
}

// split splits the range when it is too big or too busy.
func (bg *background) split(n *Node, r *replica) bool {
	d := r.state.Desc
	if r.id == MetaRangeID || r.splitBusy || r.confBusy || d.Joint() {
		return false
	}
	var key []byte
	switch {
	case r.state.LiveBytes > n.cfg.SplitBytes:
		key = r.middleKey()
	case n.cfg.SplitWrites > 0 && r.writesWin > n.cfg.SplitWrites && len(r.sampleKeys) > 1:
		ks := slices.Clone(r.sampleKeys)
		slices.SortFunc(ks, bytes.Compare)
		key = ks[len(ks)/2]
	default:
		return false
	}
	if key == nil || bytes.Compare(key, d.Start) <= 0 || !d.Contains(key) {
		return false
	}
	r.splitBusy = true
	gen := d.Gen
	// The new range's ID comes from meta's counter.
	n.internal(&Request{Kind: ReqWrite, Ops: []Op{{Kind: OpIncrement, Key: metaIDKey, Delta: 1}}}, func(resp *Response) {
		if resp.Err != nil || r.destroyed || r.state.Desc.Gen != gen {
			r.splitBusy = false
			return
		}
		r.exec(&Request{Kind: reqSplit, Range: r.id, Gen: gen, Into: RangeID(resp.Int), Key: key}, func(resp *Response) {
			r.splitBusy = false
		})
	})
	return true
}

// middleKey returns the key at half the range's bytes. It streams the
// range (LiveBytes is exact: Verify checks it), so a split of a large
// range neither holds its data in memory nor reads it twice.
func (r *replica) middleKey() []byte {
	d := r.state.Desc
	it, err := r.n.db.NewIter(&pebble.IterOptions{LowerBound: dataKey(d.Start), UpperBound: dataEnd(d.End)})
	if err != nil {
		return nil
	}
	defer it.Close()
	total := r.state.LiveBytes
	var acc int64
	for ok, i := it.First(), 0; ok; ok, i = it.Next(), i+1 {
		acc += int64(len(it.Key()) - 1 + len(it.Value()))
		if acc*2 >= total && i > 0 {
			return bytes.Clone(it.Key()[1:])
		}
	}
	return nil
}

// merge merges the right neighbour into this range when both are small
// and quiet: freeze it (it stops serving, its data is final), then propose
// the merge carrying its data, so that every replica of this range can
// apply it wherever the neighbour's replicas are (those go: a merge on a
// node destroys the neighbour's replica there, collect the others). If
// anything goes wrong the frozen range unfreezes itself (frozen).
func (bg *background) merge(n *Node, r *replica) bool {
	d := r.state.Desc
	if n.cfg.MergeBytes == 0 || r.id == MetaRangeID || d.End == nil || r.mergeBusy || r.confBusy || d.Joint() ||
		r.state.LiveBytes >= n.cfg.MergeBytes || (n.cfg.SplitWrites > 0 && r.writesWin*4 > n.cfg.SplitWrites) {
		return false
	}
	rhs := n.meta().lookup(d.End)
	if rhs == nil || !bytes.Equal(rhs.Start, d.End) || rhs.Joint() {
		return false
	}
	r.mergeBusy = true
	gen := d.Gen
	limit := n.cfg.MergeBytes - r.state.LiveBytes
	freeze := &Request{Kind: reqFreeze, Key: rhs.Start, Range: rhs.RangeID, Gen: rhs.Gen, Into: r.id, IntoGen: gen, End: d.Start, Limit: int(limit)}
	n.internal(freeze, func(resp *Response) {
		if resp.Err != nil || resp.Desc == nil || r.destroyed || r.state.Desc.Gen != gen || !r.isLeader() {
			r.mergeBusy = false // the frozen range will time out and unfreeze
			return
		}
		r.exec(&Request{Kind: reqMerge, Range: r.id, Gen: gen, Into: resp.Desc.RangeID, desc: resp.Desc, data: resp.Data},
			func(*Response) { r.mergeBusy = false })
	})
	return true
}

// frozen runs on the leader of a range frozen for a merge: after a while
// without the merge it makes sure the merge can no longer happen, then
// unfreezes. The merge cannot happen once the left range's generation
// moved past the one it froze us with without taking our span (it asks
// that range to raise it), or once that range is gone (a later range owns
// its start: it was merged away itself). If a later range owns our own
// start, the merge happened: this replica goes (collect).
func (bg *background) frozen(n *Node, r *replica) {
	if r.frozenSince == 0 {
		r.frozenSince = n.tick
	}
	if r.abortBusy || n.tick-r.frozenSince < int64(3*n.cfg.ElectionTicks) {
		return
	}
	view := n.meta()
	d, st := r.state.Desc, r.state
	if own := view.lookup(d.Start); own != nil && own.RangeID != r.id && own.Gen > d.Gen {
		return
	}
	unfreeze := func() {
		r.exec(&Request{Kind: reqUnfreeze, Range: r.id, Gen: d.Gen}, func(*Response) {
			r.abortBusy = false
			r.frozenSince = 0
		})
	}
	r.abortBusy = true
	if lhs := view.byID(st.MergeInto); lhs != nil {
		n.internal(&Request{Kind: reqMergeAbort, Key: lhs.Start, End: d.Start, Range: lhs.RangeID},
			func(resp *Response) {
				if resp.Err != nil || resp.Int == 1 || r.destroyed || r.state.Desc.Gen != d.Gen {
					r.abortBusy = false // merged (this replica goes with it) or ask again
					return
				}
				unfreeze()
			})
		return
	}
	if over := view.lookup(st.MergeStart); over != nil && over.RangeID != st.MergeInto && over.Gen > st.MergeGen {
		unfreeze()
		return
	}
	r.abortBusy = false
}

// liveness: the meta leader hears from every node (every node holds a meta
// replica) and declares dead the nodes it has not heard from for
// DeadAfterTicks; placement then replaces their replicas.
func (bg *background) liveness(n *Node) {
	since := bg.metaLeadFrom
	for _, rec := range n.meta().nodes {
		if rec.ID == n.cfg.ID || rec.State != NodeLive || bg.deadBusy[rec.ID] {
			continue
		}
		if n.tick-max(n.lastHeard[rec.ID], since) < int64(n.cfg.DeadAfterTicks) {
			continue
		}
		bg.deadBusy[rec.ID] = true
		id := rec.ID
		n.declareDead(id, func(*Response) { delete(bg.deadBusy, id) })
	}
}

// declareDead marks a node dead in meta.
func (n *Node) declareDead(id NodeID, done func(*Response)) {
	rec := n.meta().node(id)
	if rec == nil {
		done(&Response{Err: errf(ErrBadRequest, "node %d unknown", id)})
		return
	}
	dead := *rec
	dead.State = NodeDead
	n.stats.NodesDeclaredDead++
	n.internal(&Request{Kind: ReqWrite, Ops: []Op{{Kind: OpCAS, Key: metaNodeKey(id), Expect: encodeNodeRecord(rec), Value: encodeNodeRecord(&dead)}}}, done)
}

// DeclareDead marks a node dead (an operator's decision, or the
// simulator's node replacement); the answer comes as a Reply with id.
func (n *Node) DeclareDead(id uint64, node NodeID) {
	n.declareDead(node, func(resp *Response) { n.replies = append(n.replies, Reply{ID: id, Resp: resp}) })
}

// join asks the cluster to record this node.
func (bg *background) join(n *Node) {
	if bg.joinBusy {
		return
	}
	bg.joinBusy = true
	rec := encodeNodeRecord(&NodeRecord{ID: n.cfg.ID, Addr: n.cfg.Addr})
	n.internal(&Request{Kind: ReqWrite, Ops: []Op{{Kind: OpCAS, Key: metaNodeKey(n.cfg.ID), ExpectAbsent: true, Value: rec}}},
		func(resp *Response) {
			bg.joinBusy = false
			if resp.Err == nil {
				bg.joined = true // recorded now, or it was already
			}
		})
}

// registerAddr records this node's address in meta when it differs.
func (bg *background) registerAddr(n *Node) {
	rec := n.meta().node(n.cfg.ID)
	if bg.addrBusy || rec == nil || n.cfg.Addr == "" || rec.Addr == n.cfg.Addr || rec.State != NodeLive {
		return
	}
	bg.addrBusy = true
	upd := *rec
	upd.Addr = n.cfg.Addr
	n.internal(&Request{Kind: ReqWrite, Ops: []Op{{Kind: OpCAS, Key: metaNodeKey(n.cfg.ID), Expect: encodeNodeRecord(rec), Value: encodeNodeRecord(&upd)}}},
		func(*Response) { bg.addrBusy = false })
}

// collect destroys a replica that meta proves is no longer wanted here:
// its range moved on to a later generation without this replica, or a
// later range took over its span (a merge). Without such proof nothing is
// removed: a replica that only looks idle may be needed for a quorum.
func (bg *background) collect(n *Node, r *replica) {
	view := n.meta()
	d := r.state.Desc
	if md := view.byID(r.id); md != nil {
		rd, ok := md.Replica(r.replicaID)
		mine := ok && rd.Node == n.cfg.ID
		switch {
		case d.Initialized() && md.Gen > d.Gen && !mine:
		case !d.Initialized() && !mine && md.NextReplicaID > r.replicaID:
		default:
			return
		}
	} else {
		if !d.Initialized() {
			return
		}
		// A range never changes its start key (splits cut its end, merges
		// extend it): a later range owning our start means ours was merged.
		over := view.lookup(d.Start)
		if over == nil || over.RangeID == r.id || over.Gen <= d.Gen {
			return
		}
	}
	n.stats.ReplicasCollected++
	if err := n.destroy(r, "collected"); err != nil {
		n.stats.StoreErrors++
	}
}
