package gossip

import (
	"cmp"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"sync"

	"github.com/skybridge-mq/skybridge/impl/cluster"
)

// leftSet remembers which node incarnations left gracefully, and travels
// in memberlist's push/pull exchanges (Delegate.LocalState and
// MergeRemoteState). A leave is announced by one gossip broadcast of
// metadata with Leaving set; an observer that missed it (UDP is lossy, and
// memberlist ignores that metadata once it holds the node dead) reports
// the node Dead, and learns from the next push/pull with any peer that it
// left. Without this, one lost packet makes an observer call a leave a
// failure for good.
type leftSet struct {
	mu      sync.Mutex
	max     int
	nodes   map[string]uint64 // node id -> incarnation that left
	evicted uint64
}

// maxLeftRecords bounds the set, and so the push/pull payload (at most
// about 140 bytes a record).
const maxLeftRecords = 256

func (s *leftSet) init(max int) {
	s.max = max
	s.nodes = map[string]uint64{}
}

// add records that node's incarnation left and reports whether that is
// news. A full set forgets the record of the lowest incarnation (the
// oldest start, with incarnations from the wall clock).
func (s *leftSet) add(node string, inc uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.nodes[node]; ok && old >= inc {
		return false
	}
	if _, ok := s.nodes[node]; !ok && len(s.nodes) >= s.max {
		victim := ""
		for id, i := range s.nodes {
			if victim == "" || cmp.Or(cmp.Compare(i, s.nodes[victim]), strings.Compare(id, victim)) < 0 {
				victim = id
			}
		}
		delete(s.nodes, victim)
		s.evicted++
	}
	s.nodes[node] = inc
	return true
}

func (s *leftSet) left(node string, inc uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.nodes[node]
	return ok && i == inc
}

func (s *leftSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.nodes)
}

func (s *leftSet) counters() (records int, evicted uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.nodes), s.evicted
}

// encode writes version 1: a version byte, a uvarint count, then per
// record (sorted by id) a uvarint id length, the id, a uvarint incarnation.
func (s *leftSet) encode() []byte {
	s.mu.Lock()
	ids := make([]string, 0, len(s.nodes))
	for id := range s.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	b := binary.AppendUvarint([]byte{1}, uint64(len(ids)))
	for _, id := range ids {
		b = binary.AppendUvarint(b, uint64(len(id)))
		b = append(b, id...)
		b = binary.AppendUvarint(b, s.nodes[id])
	}
	s.mu.Unlock()
	return b
}

type leftRecord struct {
	node string
	inc  uint64
}

var errLeftRecords = errors.New("gossip: malformed left records")

// decodeLeftRecords parses encode's output; it never panics. A later
// version may append fields after the records.
func decodeLeftRecords(b []byte) ([]leftRecord, error) {
	if len(b) < 1 || b[0] == 0 {
		return nil, errLeftRecords
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > maxLeftRecords {
		return nil, errLeftRecords
	}
	b = b[k:]
	out := make([]leftRecord, 0, n)
	for range n {
		l, k := binary.Uvarint(b)
		if k <= 0 || l == 0 || l > cluster.MaxNodeID || l > uint64(len(b)-k) {
			return nil, errLeftRecords
		}
		id := string(b[k : k+int(l)])
		b = b[k+int(l):]
		inc, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, errLeftRecords
		}
		b = b[k:]
		out = append(out, leftRecord{id, inc})
	}
	return out, nil
}
