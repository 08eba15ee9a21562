package raftkv

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"slices"
	"sort"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/raft/v3/raftpb"
)

// The meta range is the directory of the cluster: which range covers
// which keys and where its replicas are ("md"+end), the nodes ("mn"+id)
// and the range ID counter ("mi"). It is a routing aid, not the truth:
// each range's own raft log holds its descriptor, and a replica refuses
// keys outside its span (RangeMoved, with its descriptor). A range's
// leader writes its descriptor to meta after every change (opPutDesc,
// which keeps the entry with the highest generation for any span), and
// again after every leadership change, so meta converges to the truth.
// Every node holds a replica of meta (voters on Replicas nodes, learners
// elsewhere) and reads its local copy, possibly stale.

// metaView is the local meta replica's content, decoded.
type metaView struct {
	gen   uint64
	descs []*Descriptor // by start key
	nodes []NodeRecord  // by ID
}

func (n *Node) metaChanged() { n.metaGen++ }

// meta returns the local meta content (cached until meta changes).
func (n *Node) meta() *metaView {
	if n.metaCache != nil && n.metaCache.gen == n.metaGen {
		return n.metaCache
	}
	v := &metaView{gen: n.metaGen}
	n.metaCache = v
	r := n.replicas[MetaRangeID]
	if r == nil || !r.state.Desc.Initialized() {
		return v
	}
	kvs, err := spanData(n.db, []byte("md"), []byte("mo"))
	if err != nil {
		n.stats.StoreErrors++
		return v
	}
	for _, kv := range kvs {
		switch {
		case bytes.HasPrefix(kv.Key, metaDescPrefix):
			if d, err := DecodeDescriptor(kv.Value); err == nil {
				v.descs = append(v.descs, d)
			}
		case bytes.HasPrefix(kv.Key, metaNodePrefix):
			if rec, err := decodeNodeRecord(kv.Value); err == nil {
				v.nodes = append(v.nodes, *rec)
			}
		}
	}
	sort.Slice(v.descs, func(i, j int) bool { return bytes.Compare(v.descs[i].Start, v.descs[j].Start) < 0 })
	return v
}

// lookup returns the descriptor meta has for key.
func (v *metaView) lookup(key []byte) *Descriptor {
	i := sort.Search(len(v.descs), func(i int) bool { return bytes.Compare(v.descs[i].Start, key) > 0 })
	if i == 0 {
		return nil
	}
	if d := v.descs[i-1]; d.Contains(key) {
		return d
	}
	return nil
}

// byID returns meta's descriptor of a range.
func (v *metaView) byID(id RangeID) *Descriptor {
	for _, d := range v.descs {
		if d.RangeID == id {
			return d
		}
	}
	return nil
}

// node returns meta's record of a node.
func (v *metaView) node(id NodeID) *NodeRecord {
	for i := range v.nodes {
		if v.nodes[i].ID == id {
			return &v.nodes[i]
		}
	}
	return nil
}

// live returns the nodes that may hold replicas, sorted.
func (v *metaView) live() []NodeID {
	var out []NodeID
	for _, rec := range v.nodes {
		if rec.State == NodeLive {
			out = append(out, rec.ID)
		}
	}
	return out
}

// putMetaDesc applies opPutDesc: the descriptor replaces every entry it
// overlaps unless one of them is as new or newer.
func (r *replica) putMetaDesc(b *pebble.Batch, value []byte) error {
	d, err := DecodeDescriptor(value)
	if err != nil || !d.Initialized() {
		return nil // ignored, as every replica ignores it
	}
	// Entries are keyed by end: those overlapping d end after d.Start.
	lower := append(metaDescKey(d.Start), 0)
	if len(d.Start) == 0 {
		lower = bytes.Clone(metaDescPrefix)
	}
	it, err := b.NewIter(&pebble.IterOptions{LowerBound: dataKey(lower), UpperBound: dataKey([]byte("me"))})
	if err != nil {
		return err
	}
	var stale [][]byte
	for ok := it.First(); ok; ok = it.Next() {
		old, err := DecodeDescriptor(it.Value())
		if err != nil {
			continue
		}
		if d.End != nil && bytes.Compare(old.Start, d.End) >= 0 {
			break
		}
		if !old.Overlaps(d) {
			continue
		}
		if old.Gen >= d.Gen {
			return it.Close() // meta already knows as much
		}
		stale = append(stale, bytes.Clone(it.Key()[1:]))
	}
	if err := it.Close(); err != nil {
		return err
	}
	for _, k := range stale {
		if err := r.del(prior{b: b}, k); err != nil {
			return err
		}
	}
	return r.put(prior{b: b}, metaDescKey(d.End), value)
}

// score ranks nodes for a range (rendezvous hashing): every node computes
// the same ranking from the same inputs, and a node joining or leaving
// moves only the ranges it ranks first in.
func score(id RangeID, node NodeID) uint64 {
	x := uint64(id)*0x9e3779b97f4a7c15 ^ uint64(node)*0xbf58476d1ce4e5b9
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// ranked returns nodes ordered by score for range id, best first.
func ranked(id RangeID, nodes []NodeID) []NodeID {
	out := slices.Clone(nodes)
	slices.SortFunc(out, func(a, b NodeID) int {
		sa, sb := score(id, a), score(id, b)
		switch {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return cmp.Compare(a, b)
	})
	return out
}

// bootstrap writes the first state of a new cluster: the meta range on
// every node (voters on the best-ranked Replicas nodes) and one range for
// all user keys. Every node of the initial cluster writes the same state
// for the replicas it holds.
func (n *Node) bootstrap(b *pebble.Batch) error {
	nodes := slices.Clone(n.cfg.Peers)
	slices.Sort(nodes)
	nodes = slices.Compact(nodes)
	k := min(n.cfg.Replicas, len(nodes))
	mkDesc := func(id RangeID, start, end []byte, voters, learners []NodeID) *Descriptor {
		d := &Descriptor{RangeID: id, Start: start, End: end, Gen: 1}
		rid := ReplicaID(1)
		for _, v := range voters {
			d.Replicas = append(d.Replicas, ReplicaDesc{ID: rid, Node: v})
			d.Voters = append(d.Voters, uint64(rid))
			rid++
		}
		for _, l := range learners {
			d.Replicas = append(d.Replicas, ReplicaDesc{ID: rid, Node: l})
			d.Learners = append(d.Learners, uint64(rid))
			rid++
		}
		d.NextReplicaID = rid
		return d
	}
	mr := ranked(MetaRangeID, nodes)
	meta := mkDesc(MetaRangeID, metaStart, userStart, mr[:k], mr[k:])
	ur := ranked(firstUserRangeID, nodes)
	user := mkDesc(firstUserRangeID, userStart, nil, ur[:k], nil)

	var metaKVs []KV
	for _, d := range []*Descriptor{meta, user} {
		metaKVs = append(metaKVs, KV{metaDescKey(d.End), EncodeDescriptor(d)})
	}
	for _, id := range nodes {
		metaKVs = append(metaKVs, KV{metaNodeKey(id), encodeNodeRecord(&NodeRecord{ID: id})})
	}
	metaKVs = append(metaKVs, KV{metaIDKey, binary.BigEndian.AppendUint64(nil, uint64(firstUserRangeID))})
	slices.SortFunc(metaKVs, func(a, b KV) int { return bytes.Compare(a.Key, b.Key) })

	hs := &pb.HardState{Term: new(uint64(initialTerm)), Commit: new(uint64(initialIndex))}
	for _, d := range []*Descriptor{meta, user} {
		rd, ok := d.OnNode(n.cfg.ID)
		if !ok {
			continue
		}
		st := appliedState{Desc: d, Index: initialIndex, Term: initialTerm}
		if d.RangeID == MetaRangeID {
			for _, kv := range metaKVs {
				if err := b.Set(dataKey(kv.Key), kv.Value, nil); err != nil {
					return err
				}
				st.LiveBytes += int64(len(kv.Key) + len(kv.Value))
				st.LiveKeys++
			}
		}
		if err := writeReplicaState(b, d.RangeID, rd.ID, hs, &st, initialIndex, initialTerm); err != nil {
			return err
		}
	}
	return nil
}

// Addr returns the address meta records for a node ("" when unknown).
func (n *Node) Addr(id NodeID) string {
	if rec := n.meta().node(id); rec != nil {
		return rec.Addr
	}
	return ""
}
