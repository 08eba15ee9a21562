package raftkv

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// logStore is one replica's raft.Storage on the node's Pebble store. What
// it answers is what is durable (or at least committed to Pebble): the
// in-memory fields change only in Node.Advance, after the batch carrying
// the change has been committed, so raft's unstable log and this view never
// disagree about an entry.
type logStore struct {
	db *pebble.DB
	r  *replica

	hs        *pb.HardState
	first     uint64 // first index in the log (truncated index + 1)
	truncTerm uint64 // term of first-1
	last      uint64 // last index (first-1 when empty)

	// cache holds the newest entries (contiguous, ending at last), so that
	// appends to followers rarely read Pebble.
	cache      []*pb.Entry
	cacheBytes int

	buf []byte // reused to marshal entries (the batch copies them)
}

// cacheMax bounds the entry cache of one replica.
const cacheMaxBytes = 4 << 20

var _ raft.Storage = (*logStore)(nil)

// InitialState implements raft.Storage.
func (s *logStore) InitialState() (*pb.HardState, *pb.ConfState, error) {
	hs := proto.Clone(s.hs).(*pb.HardState)
	if !s.r.state.Desc.Initialized() {
		return hs, &pb.ConfState{}, nil
	}
	return hs, s.r.state.Desc.ConfState(), nil
}

// FirstIndex implements raft.Storage.
func (s *logStore) FirstIndex() (uint64, error) { return s.first, nil }

// LastIndex implements raft.Storage.
func (s *logStore) LastIndex() (uint64, error) { return s.last, nil }

// Term implements raft.Storage.
func (s *logStore) Term(i uint64) (uint64, error) {
	switch {
	case i == s.first-1:
		return s.truncTerm, nil
	case i < s.first:
		return 0, raft.ErrCompacted
	case i > s.last:
		return 0, raft.ErrUnavailable
	}
	if e := s.cached(i); e != nil {
		return e.GetTerm(), nil
	}
	e, err := s.read(i)
	if err != nil {
		return 0, err
	}
	return e.GetTerm(), nil
}

// Entries implements raft.Storage.
func (s *logStore) Entries(lo, hi, maxSize uint64) ([]*pb.Entry, error) {
	if lo < s.first {
		return nil, raft.ErrCompacted
	}
	if hi > s.last+1 {
		return nil, raft.ErrUnavailable
	}
	var out []*pb.Entry
	var size uint64
	add := func(e *pb.Entry) bool {
		n := uint64(proto.Size(e))
		if len(out) > 0 && size+n > maxSize {
			return false
		}
		out = append(out, e)
		size += n
		return true
	}
	i := lo
	// Entries below the cache come from Pebble.
	if len(s.cache) == 0 || i < s.cache[0].GetIndex() {
		stop := hi
		if len(s.cache) > 0 {
			stop = min(hi, s.cache[0].GetIndex())
		}
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: logKey(s.r.id, i), UpperBound: logKey(s.r.id, stop)})
		if err != nil {
			return nil, err
		}
		for ok := it.First(); ok; ok = it.Next() {
			e := &pb.Entry{}
			if err := proto.Unmarshal(it.Value(), e); err != nil {
				it.Close()
				return nil, err
			}
			if e.GetIndex() != i {
				it.Close()
				return nil, fmt.Errorf("raftkv: r%d log has index %d where %d belongs", s.r.id, e.GetIndex(), i)
			}
			if !add(e) {
				it.Close()
				return out, nil
			}
			i++
		}
		if err := it.Close(); err != nil {
			return nil, err
		}
		if i != stop {
			return nil, fmt.Errorf("raftkv: r%d log is missing entry %d", s.r.id, i)
		}
	}
	for ; i < hi; i++ {
		if !add(s.cached(i)) {
			break
		}
	}
	return out, nil
}

// Snapshot implements raft.Storage: the replica's applied state, with a
// Pebble snapshot taken now for the data (see replica.snapshot).
func (s *logStore) Snapshot() (*pb.Snapshot, error) { return s.r.snapshot() }

func (s *logStore) cached(i uint64) *pb.Entry {
	if len(s.cache) == 0 {
		return nil
	}
	c0 := s.cache[0].GetIndex()
	if i < c0 || i > s.last {
		return nil
	}
	return s.cache[i-c0]
}

func (s *logStore) read(i uint64) (*pb.Entry, error) {
	v, closer, err := s.db.Get(logKey(s.r.id, i))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("raftkv: r%d log is missing entry %d", s.r.id, i)
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	e := &pb.Entry{}
	if err := proto.Unmarshal(v, e); err != nil {
		return nil, err
	}
	return e, nil
}

// writeEntries puts appended entries into b, deleting any older entries
// past the new last index (raft overwrote a suffix).
func (s *logStore) writeEntries(b *pebble.Batch, ents []*pb.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	for _, e := range ents {
		v, err := proto.MarshalOptions{}.MarshalAppend(s.buf[:0], e)
		if err != nil {
			return err
		}
		s.buf = v
		if err := b.Set(logKey(s.r.id, e.GetIndex()), v, nil); err != nil {
			return err
		}
	}
	if cap(s.buf) > cacheMaxBytes {
		s.buf = nil // one large entry does not keep its buffer
	}
	newLast := ents[len(ents)-1].GetIndex()
	if newLast < s.last {
		return b.DeleteRange(logKey(s.r.id, newLast+1), logKey(s.r.id, s.last+1), nil)
	}
	return nil
}

// appended updates the view after the batch of writeEntries committed.
func (s *logStore) appended(ents []*pb.Entry) {
	if len(ents) == 0 {
		return
	}
	first := ents[0].GetIndex()
	if len(s.cache) > 0 && first > s.cache[0].GetIndex() && first <= s.last+1 {
		keep := int(first - s.cache[0].GetIndex())
		for _, e := range s.cache[keep:] {
			s.cacheBytes -= len(e.GetData())
		}
		s.cache = s.cache[:keep:keep]
	} else {
		s.cache, s.cacheBytes = nil, 0
	}
	for _, e := range ents {
		s.cache = append(s.cache, e)
		s.cacheBytes += len(e.GetData())
	}
	for len(s.cache) > 1 && s.cacheBytes > cacheMaxBytes {
		s.cacheBytes -= len(s.cache[0].GetData())
		s.cache = s.cache[1:]
	}
	s.last = ents[len(ents)-1].GetIndex()
}

// writeTruncation deletes the log up to and including index.
func (s *logStore) writeTruncation(b *pebble.Batch, index, term uint64) error {
	if err := b.DeleteRange(logKey(s.r.id, 0), logKey(s.r.id, index+1), nil); err != nil {
		return err
	}
	return b.Set(rangeKey(s.r.id, sufTrunc), encodeTrunc(index, term), nil)
}

// truncated updates the view after writeTruncation's batch committed.
func (s *logStore) truncated(index, term uint64) {
	if index < s.first {
		return
	}
	s.first, s.truncTerm = index+1, term
	if s.last < index {
		s.last = index
	}
	for len(s.cache) > 0 && s.cache[0].GetIndex() <= index {
		s.cacheBytes -= len(s.cache[0].GetData())
		s.cache = s.cache[1:]
	}
}

// reset makes the log empty after index/term (a snapshot was applied).
func (s *logStore) reset(index, term uint64) {
	s.first, s.truncTerm, s.last = index+1, term, index
	s.cache, s.cacheBytes = nil, 0
}

func encodeTrunc(index, term uint64) []byte {
	var e enc
	e.u64(index)
	e.u64(term)
	return e.b
}

func decodeTrunc(b []byte) (index, term uint64, err error) {
	d := dec{b: b}
	index, term = d.u64(), d.u64()
	return index, term, d.done()
}
