package raftkv

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	pb "go.etcd.io/raft/v3/raftpb"
)

// NodeID names a node (a process with one Pebble store). 0 is no node.
type NodeID uint64

// RangeID names a range; never reused.
type RangeID uint64

// ReplicaID names a replica within its range; it is the replica's raft ID.
// A replica removed and later added back on the same node gets a new ID,
// so that raft state of an earlier membership can never be confused with
// the current one.
type ReplicaID uint64

// MetaRangeID is the meta range: the range descriptor table, the node
// records and the range ID counter. It is never split or merged.
const MetaRangeID RangeID = 1

// firstUserRangeID is the range that covers all user keys at bootstrap.
const firstUserRangeID RangeID = 2

// The logical key space that ranges partition. Meta keys sort before user
// keys; a user key k is stored as userPrefix+k. An End of nil is +infinity.
var (
	metaStart = []byte("")
	userStart = []byte("u")
)

// ReplicaDesc is one replica of a range: its raft ID and the node holding it.
type ReplicaDesc struct {
	ID   ReplicaID
	Node NodeID
}

// Descriptor says what a range is: its span, its replicas and their roles.
// Gen grows with every change (split, merge, membership); of two
// descriptors whose spans overlap, the one with the higher Gen is later
// (each change of a span's owner raises it), which is what settles which
// of two overlapping replicas on a node is stale.
type Descriptor struct {
	RangeID       RangeID
	Start, End    []byte // [Start, End); End nil is +infinity
	Gen           uint64
	Replicas      []ReplicaDesc // sorted by ID
	NextReplicaID ReplicaID
	// The raft configuration (joint while VotersOutgoing is non-empty).
	Voters, VotersOutgoing, Learners, LearnersNext []uint64
	AutoLeave                                      bool
}

// Contains reports whether key lies in the span.
func (d *Descriptor) Contains(key []byte) bool {
	return bytes.Compare(key, d.Start) >= 0 && (d.End == nil || bytes.Compare(key, d.End) < 0)
}

// ContainsSpan reports whether [start, end) lies in the span (end nil: +inf).
func (d *Descriptor) ContainsSpan(start, end []byte) bool {
	if !d.Contains(start) {
		return false
	}
	if d.End == nil {
		return true
	}
	return end != nil && bytes.Compare(end, d.End) <= 0
}

// Overlaps reports whether the spans of d and o intersect.
func (d *Descriptor) Overlaps(o *Descriptor) bool {
	return spansOverlap(d.Start, d.End, o.Start, o.End)
}

func spansOverlap(s1, e1, s2, e2 []byte) bool {
	return (e2 == nil || bytes.Compare(s1, e2) < 0) && (e1 == nil || bytes.Compare(s2, e1) < 0)
}

// endLE reports a <= b for span ends (nil is +inf).
func endLE(a, b []byte) bool {
	if b == nil {
		return true
	}
	return a != nil && bytes.Compare(a, b) <= 0
}

// Initialized reports whether the replica holding d has a span (an
// uninitialized replica exists only to take part in raft until a snapshot
// or a split gives it its range).
func (d *Descriptor) Initialized() bool { return d.Start != nil }

// Replica returns the replica with id.
func (d *Descriptor) Replica(id ReplicaID) (ReplicaDesc, bool) {
	for _, r := range d.Replicas {
		if r.ID == id {
			return r, true
		}
	}
	return ReplicaDesc{}, false
}

// OnNode returns the replica on node.
func (d *Descriptor) OnNode(n NodeID) (ReplicaDesc, bool) {
	for _, r := range d.Replicas {
		if r.Node == n {
			return r, true
		}
	}
	return ReplicaDesc{}, false
}

// IsVoter reports whether id votes (in either half of a joint config).
func (d *Descriptor) IsVoter(id ReplicaID) bool {
	return slices.Contains(d.Voters, uint64(id)) || slices.Contains(d.VotersOutgoing, uint64(id))
}

// IsLearner reports whether id is a learner (or becomes one on leaving a joint config).
func (d *Descriptor) IsLearner(id ReplicaID) bool {
	return slices.Contains(d.Learners, uint64(id)) || slices.Contains(d.LearnersNext, uint64(id))
}

// Joint reports a joint configuration.
func (d *Descriptor) Joint() bool { return len(d.VotersOutgoing) > 0 || len(d.LearnersNext) > 0 }

// ConfState is the raft form of the configuration.
func (d *Descriptor) ConfState() *pb.ConfState {
	return &pb.ConfState{
		Voters: slices.Clone(d.Voters), VotersOutgoing: slices.Clone(d.VotersOutgoing),
		Learners: slices.Clone(d.Learners), LearnersNext: slices.Clone(d.LearnersNext),
		AutoLeave: new(d.AutoLeave),
	}
}

// setConf takes the configuration raft applied and drops replicas it no
// longer names.
func (d *Descriptor) setConf(cs *pb.ConfState) {
	d.Voters = sortedIDs(cs.GetVoters())
	d.VotersOutgoing = sortedIDs(cs.GetVotersOutgoing())
	d.Learners = sortedIDs(cs.GetLearners())
	d.LearnersNext = sortedIDs(cs.GetLearnersNext())
	d.AutoLeave = cs.GetAutoLeave()
	keep := d.Replicas[:0]
	for _, r := range d.Replicas {
		if d.IsVoter(r.ID) || d.IsLearner(r.ID) {
			keep = append(keep, r)
		}
	}
	d.Replicas = keep
}

func sortedIDs(ids []uint64) []uint64 {
	if len(ids) == 0 {
		return nil
	}
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// Clone returns a deep copy.
func (d *Descriptor) Clone() *Descriptor {
	c := *d
	c.Start = bytes.Clone(d.Start)
	c.End = bytes.Clone(d.End)
	c.Replicas = slices.Clone(d.Replicas)
	c.Voters = slices.Clone(d.Voters)
	c.VotersOutgoing = slices.Clone(d.VotersOutgoing)
	c.Learners = slices.Clone(d.Learners)
	c.LearnersNext = slices.Clone(d.LearnersNext)
	return &c
}

// Nodes returns the nodes holding replicas, sorted.
func (d *Descriptor) Nodes() []NodeID {
	var out []NodeID
	for _, r := range d.Replicas {
		out = append(out, r.Node)
	}
	slices.Sort(out)
	return out
}

func (d *Descriptor) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "r%d[%s,%s) g%d", d.RangeID, fmtKey(d.Start), fmtEnd(d.End), d.Gen)
	for _, r := range d.Replicas {
		role := "v"
		switch {
		case slices.Contains(d.VotersOutgoing, uint64(r.ID)) && !slices.Contains(d.Voters, uint64(r.ID)):
			role = "o"
		case d.IsLearner(r.ID):
			role = "l"
		}
		fmt.Fprintf(&b, " %s%d@n%d", role, r.ID, r.Node)
	}
	return b.String()
}

func fmtKey(k []byte) string { return fmt.Sprintf("%q", k) }

func fmtEnd(k []byte) string {
	if k == nil {
		return "∞"
	}
	return fmtKey(k)
}

func (d *Descriptor) encode(e *enc) {
	e.u64(uint64(d.RangeID))
	e.optBytes(d.Start)
	e.optBytes(d.End)
	e.u64(d.Gen)
	e.u64(uint64(len(d.Replicas)))
	for _, r := range d.Replicas {
		e.u64(uint64(r.ID))
		e.u64(uint64(r.Node))
	}
	e.u64(uint64(d.NextReplicaID))
	for _, ids := range [][]uint64{d.Voters, d.VotersOutgoing, d.Learners, d.LearnersNext} {
		e.u64(uint64(len(ids)))
		for _, id := range ids {
			e.u64(id)
		}
	}
	e.bool(d.AutoLeave)
}

func decodeDescriptor(d *dec) *Descriptor {
	x := &Descriptor{RangeID: RangeID(d.u64())}
	x.Start = d.optBytes()
	x.End = d.optBytes()
	x.Gen = d.u64()
	n := d.count()
	for range n {
		x.Replicas = append(x.Replicas, ReplicaDesc{ID: ReplicaID(d.u64()), Node: NodeID(d.u64())})
	}
	x.NextReplicaID = ReplicaID(d.u64())
	for _, p := range []*[]uint64{&x.Voters, &x.VotersOutgoing, &x.Learners, &x.LearnersNext} {
		k := d.count()
		for range k {
			*p = append(*p, d.u64())
		}
	}
	x.AutoLeave = d.bool()
	return x
}

// EncodeDescriptor returns the binary form of d.
func EncodeDescriptor(d *Descriptor) []byte {
	var e enc
	d.encode(&e)
	return e.b
}

// DecodeDescriptor parses EncodeDescriptor's output.
func DecodeDescriptor(b []byte) (*Descriptor, error) {
	d := dec{b: b}
	x := decodeDescriptor(&d)
	return x, d.done()
}

// NodeState says whether a node may hold replicas.
type NodeState uint8

// Node states.
const (
	NodeLive NodeState = iota // holds replicas
	NodeDead                  // declared dead: its replicas are replaced elsewhere
)

// NodeRecord is a node as the meta range knows it.
type NodeRecord struct {
	ID    NodeID
	Addr  string
	State NodeState
}

func encodeNodeRecord(r *NodeRecord) []byte {
	var e enc
	e.u64(uint64(r.ID))
	e.bytes([]byte(r.Addr))
	e.byte1(byte(r.State))
	return e.b
}

func decodeNodeRecord(b []byte) (*NodeRecord, error) {
	d := dec{b: b}
	r := &NodeRecord{ID: NodeID(d.u64()), Addr: string(d.bytes()), State: NodeState(d.byte1())}
	return r, d.done()
}
