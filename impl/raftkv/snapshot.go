package raftkv

import (
	"bytes"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Snapshots. raft asks Storage.Snapshot for the replica's state when a
// follower needs one; the replica answers with its applied index and
// descriptor (the snapshot's Data) and takes a Pebble snapshot at that
// instant, so the data streamed later is exactly the state at that index
// whatever is applied meanwhile. The runtime streams the data in chunks
// (SnapshotStream) after the raft message; the receiver assembles it and
// hands both to Receive, which stages the data and steps the message; the
// data is written when raft's Ready says the snapshot is accepted.

// snapSource is the data of one outgoing snapshot, shared by its streams.
type snapSource struct {
	ps         *pebble.Snapshot
	index      uint64
	start, end []byte
	meta       *pb.Snapshot
	refs       int // streams, plus one while it is the replica's current snapshot
}

func (s *snapSource) release() {
	s.refs--
	if s.refs == 0 {
		s.ps.Close()
	}
}

// snapshot implements raft.Storage.Snapshot for the replica.
func (r *replica) snapshot() (*pb.Snapshot, error) {
	if !r.state.Desc.Initialized() {
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	if r.out != nil && r.out.index == r.state.Index {
		return r.out.meta, nil
	}
	r.dropOut()
	d := r.state.Desc
	meta := &pb.Snapshot{
		Data: r.state.bytes(),
		Metadata: &pb.SnapshotMetadata{
			ConfState: d.ConfState(),
			Index:     new(r.state.Index),
			Term:      new(r.state.Term),
		},
	}
	r.out = &snapSource{ps: r.n.db.NewSnapshot(), index: r.state.Index, start: d.Start, end: d.End, meta: meta, refs: 1}
	r.n.stats.SnapshotsMade++
	return meta, nil
}

func (r *replica) dropOut() {
	if r.out != nil {
		r.out.release()
		r.out = nil
	}
}

// SnapshotStream yields the data of one outgoing snapshot in chunks.
type SnapshotStream struct {
	n     *Node
	src   *snapSource
	it    *pebble.Iterator
	err   error
	done  bool
	Range RangeID
	To    NodeID
	sent  int64
}

// Next returns up to about maxBytes of pairs; an empty result means the
// data is complete.
func (s *SnapshotStream) Next(maxBytes int) ([]KV, error) {
	if s.err != nil || s.done {
		return nil, s.err
	}
	if s.it == nil {
		var rd pebble.Reader = s.src.ps
		if s.n.cfg.Knobs.SnapshotLiveData {
			rd = s.n.db // the planted bug: data of when it is sent, not of the snapshot's index
		}
		s.it, s.err = rd.NewIter(&pebble.IterOptions{LowerBound: dataKey(s.src.start), UpperBound: dataEnd(s.src.end)})
		if s.err != nil {
			return nil, s.err
		}
		s.it.First()
	}
	var out []KV
	size := 0
	for ; s.it.Valid() && size < maxBytes; s.it.Next() {
		kv := KV{Key: bytes.Clone(s.it.Key()[1:]), Value: bytes.Clone(s.it.Value())}
		size += len(kv.Key) + len(kv.Value)
		out = append(out, kv)
	}
	s.sent += int64(size)
	if s.sent > s.n.cfg.MaxSnapshotBytes {
		s.err = fmt.Errorf("raftkv: snapshot of r%d exceeds %d bytes", s.Range, s.n.cfg.MaxSnapshotBytes)
		return nil, s.err
	}
	if len(out) == 0 {
		s.done = true
	}
	return out, nil
}

// close releases the stream's hold on the data.
func (s *SnapshotStream) close() {
	if s.it != nil {
		s.it.Close()
		s.it = nil
	}
	if s.src != nil {
		s.src.release()
		s.src = nil
	}
}

// stagedSnap is an incoming snapshot stepped into raft, waiting for raft to
// accept it in a Ready.
type stagedSnap struct {
	index    uint64
	term     uint64
	state    appliedState
	data     []KV
	subsumed []*replica
}

// receiveSnapshot checks and stages an incoming snapshot, then steps it.
func (n *Node) receiveSnapshot(r *replica, m *pb.Message, data []KV) {
	snap := m.GetSnapshot()
	st, err := decodeAppliedState(snap.GetData())
	if err != nil || st.Desc.RangeID != r.id || !st.Desc.Initialized() {
		n.stats.SnapshotsRefused++
		return
	}
	if r.staged != nil || n.snapsIn >= n.cfg.MaxSnapshotsIn {
		n.stats.SnapshotsRefused++
		return
	}
	// A snapshot may only cover other local replicas that it proves stale:
	// spans it contains with an older generation (merged away). Anything
	// else overlapping means this node is behind (a split not yet applied
	// here) and the snapshot must wait.
	var subsumed []*replica
	for _, x := range n.order {
		if x == r || !x.state.Desc.Initialized() || !x.state.Desc.Overlaps(st.Desc) {
			continue
		}
		if x.state.Desc.Gen >= st.Desc.Gen || !st.Desc.ContainsSpan(x.state.Desc.Start, x.state.Desc.End) {
			n.stats.SnapshotsRefused++
			return
		}
		subsumed = append(subsumed, x)
	}
	keep := data[:0]
	for _, kv := range data {
		if st.Desc.Contains(kv.Key) {
			keep = append(keep, kv)
		} else {
			n.stats.SnapshotKeysOutside++
		}
	}
	st.Index, st.Term = snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm()
	// It stays staged until the replica's next Ready: raft answers every
	// snapshot (MsgAppResp), so that Ready either carries it or shows raft
	// refused it — however long the disk takes before that Ready.
	r.staged = &stagedSnap{index: st.Index, term: st.Term, state: st, data: keep, subsumed: subsumed}
	n.snapsIn++
	r.step(m)
}

func (r *replica) dropStaged() {
	if r.staged != nil {
		r.staged = nil
		r.n.snapsIn--
	}
}

// writeSnapshot writes an accepted snapshot into the Ready's batch; the
// staged data now belongs to the Ready (snapshotApplied finishes it).
func (r *replica) writeSnapshot(b *pebble.Batch, snap *pb.Snapshot, hs *pb.HardState) (*stagedSnap, error) {
	s := r.staged
	idx := snap.GetMetadata().GetIndex()
	if s == nil || s.index != idx {
		return nil, fmt.Errorf("raftkv: r%d raft accepted snapshot %d that was not staged", r.id, idx)
	}
	r.staged = nil
	for _, x := range s.subsumed {
		if err := writeDestroy(b, x.id, x.replicaID); err != nil {
			return nil, err
		}
		x.destroyed = true
	}
	if !r.n.cfg.Knobs.SnapshotNoClear {
		if old := r.state.Desc; old.Initialized() {
			if err := b.DeleteRange(dataKey(old.Start), dataEnd(old.End), nil); err != nil {
				return nil, err
			}
		}
		if err := b.DeleteRange(dataKey(s.state.Desc.Start), dataEnd(s.state.Desc.End), nil); err != nil {
			return nil, err
		}
	}
	for _, kv := range s.data {
		if err := b.Set(dataKey(kv.Key), kv.Value, nil); err != nil {
			return nil, err
		}
	}
	if hs == nil || raft.IsEmptyHardState(hs) {
		hs = r.st.hs
	}
	return s, writeReplicaState(b, r.id, r.replicaID, hs, &s.state, s.index, s.term)
}

// snapshotApplied updates the replica once the snapshot's batch committed.
func (r *replica) snapshotApplied(s *stagedSnap) {
	r.n.logf("r%d snapshot at %d applied: %v, %d keys, %d replicas subsumed (was %v)", r.id, s.index, s.state.Desc, len(s.data), len(s.subsumed), r.state.Desc)
	r.n.snapsIn--
	for _, x := range s.subsumed {
		r.n.dropReplica(x, "subsumed by a snapshot")
	}
	r.state = s.state
	r.st.reset(s.index, s.term)
	r.resetWatchers()
	r.n.stats.SnapshotsApplied++
	r.n.spansChanged()
}
