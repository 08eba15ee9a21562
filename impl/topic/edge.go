package topic

import (
	"hash/maphash"
	"slices"
	"strings"
)

// An edge leads from a node to an exact child: it carries a run of exact
// levels (its label) and either the child node or, for a leaf with one
// subscription and nothing else, that subscription itself.
//
// On a large trie every pointer followed is a likely cache miss, and that
// is where Match's time goes. So an edge is one 64-byte cache line that
// holds a label of up to 19 bytes inline ("123456/telemetry"): finding the
// edge for a topic level and checking the rest of its levels reads no other
// memory, and a leaf needs no node at all.
type edge struct {
	in    [inlineMax]byte // the label's first bytes; all of it when llen != longLabel
	llen  uint8           // label length + 1 when the label fits in; longLabel; 0: empty table slot
	flen  uint32          // length of the label's first level
	label string          // the label when longer than inlineMax, else ""
	n     *node           // the child node; nil for a leaf held in the edge
	sub   Subscription    // the leaf's subscription, when n is nil
}

const (
	inlineMax = 19
	longLabel = 0xFF
)

// newEdge makes an edge; it copies label only when too long to be inline.
func newEdge[S string | []byte](label S, n *node, s Subscription) edge {
	e := edge{flen: uint32(levelEnd(label, 0)), n: n, sub: s}
	copy(e.in[:], label)
	if len(label) <= inlineMax {
		e.llen = uint8(len(label) + 1)
	} else {
		e.llen, e.label = longLabel, string(label)
	}
	return e
}

func (e *edge) used() bool { return e.llen != 0 }

func (e *edge) labelLen() int {
	if e.llen == longLabel {
		return len(e.label)
	}
	return int(e.llen) - 1
}

// fullLabel returns the edge's levels (allocating when they are inline).
func (e *edge) fullLabel() string {
	if e.llen == longLabel {
		return e.label
	}
	return string(e.in[:e.llen-1])
}

// first returns the label's first level, as a string when it is not
// inline (b is then nil).
func (e *edge) first() (b []byte, s string) {
	if e.flen <= inlineMax {
		return e.in[:e.flen], ""
	}
	return nil, e.label[:e.flen]
}

// is reports whether level is the label's first level.
func (e *edge) is(level []byte) bool {
	if int(e.flen) != len(level) {
		return false
	}
	if len(level) <= inlineMax {
		return string(e.in[:len(level)]) == string(level)
	}
	return string(e.in[:]) == string(level[:inlineMax]) && e.label[:len(level)] == string(level)
}

// continues reports whether the topic rest, whose first level (ending at
// end) is the label's first level, goes on with the label's other levels.
// The caller has checked that the label is longer than end.
func (e *edge) continues(rest []byte, end int) bool {
	l := e.labelLen()
	if l > len(rest) || (l < len(rest) && rest[l] != '/') {
		return false
	}
	if e.llen != longLabel {
		return string(rest[end:l]) == string(e.in[end:l])
	}
	return string(rest[end:l]) == e.label[end:]
}

// matchFilter compares the edge's label with the filter levels from p on,
// whose first level is the label's (the edge was found by it). It returns
// whether the whole label matched, the index in the label where the
// matched whole levels end (before a '/' of the label, or at its end), and
// where they end in the filter (before a '/', or at its end).
func (e *edge) matchFilter(f []byte, p int) (full bool, m, fp int) {
	var label []byte
	var long string
	if e.llen == longLabel {
		long = e.label
	} else {
		label = e.in[:e.llen-1]
	}
	l := e.labelLen()
	m = int(e.flen)
	fp = p + m
	for m < l && fp < len(f) {
		var le int
		var same bool
		fe := levelEnd(f, fp+1)
		if long != "" {
			le = levelEnd(long, m+1)
			same = string(f[fp+1:fe]) == long[m+1:le]
		} else {
			le = levelEnd(label, m+1)
			same = string(f[fp+1:fe]) == string(label[m+1:le])
		}
		if !same {
			break
		}
		m, fp = le, fe
	}
	return m == l, m, fp
}

func firstLevel(label string) string { return label[:levelEnd(label, 0)] }

// kidTable holds the edges of a node that has many: open addressing with
// linear probing, at most 3/4 full, deletion by backward shift (no
// tombstones), hashed with its own seed. Against a Go map it saves cache
// misses: the label and a leaf's subscription are in the slot. The slot
// order depends on the seed, so nothing may iterate it into an output.
type kidTable struct {
	seed  maphash.Seed
	slots []edge // len is a power of two
	n     int
}

const minTable = 16

func newKidTable(edges []edge) *kidTable {
	size := minTable
	for len(edges)*4 > size*3 {
		size *= 2
	}
	t := &kidTable{seed: maphash.MakeSeed(), slots: make([]edge, size)}
	for _, e := range edges {
		t.insert(e)
	}
	return t
}

func (t *kidTable) mask() int { return len(t.slots) - 1 }

func (t *kidTable) home(level []byte) int {
	return int(maphash.Bytes(t.seed, level)) & t.mask()
}

// homeOf returns the home slot of an edge.
func (t *kidTable) homeOf(e *edge) int {
	b, s := e.first()
	if b == nil {
		return int(maphash.String(t.seed, s)) & t.mask()
	}
	return t.home(b)
}

// slot returns the index of the edge for level, or -1.
func (t *kidTable) slot(level []byte) int {
	for i := t.home(level); ; i = (i + 1) & t.mask() {
		e := &t.slots[i]
		if !e.used() {
			return -1
		}
		if e.is(level) {
			return i
		}
	}
}

func (t *kidTable) find(level []byte) *edge {
	if i := t.slot(level); i >= 0 {
		return &t.slots[i]
	}
	return nil
}

// insert adds an edge whose first level is not in the table yet.
func (t *kidTable) insert(e edge) {
	if (t.n+1)*4 > len(t.slots)*3 {
		t.resize(len(t.slots) * 2)
	}
	i := t.homeOf(&e)
	for t.slots[i].used() {
		i = (i + 1) & t.mask()
	}
	t.slots[i] = e
	t.n++
}

// remove deletes the edge for level.
func (t *kidTable) remove(level []byte) {
	i := t.slot(level)
	if i < 0 {
		return
	}
	// Move back the entries after the hole that may take it: an entry at
	// j whose home h lies cyclically outside (i, j].
	for j := (i + 1) & t.mask(); t.slots[j].used(); j = (j + 1) & t.mask() {
		h := t.homeOf(&t.slots[j])
		if (i <= j && (h <= i || h > j)) || (i > j && h <= i && h > j) {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = edge{}
	t.n--
	if len(t.slots) > minTable && t.n*8 < len(t.slots) {
		t.resize(len(t.slots) / 2)
	}
}

func (t *kidTable) resize(size int) {
	old := t.slots
	t.slots, t.n = make([]edge, size), 0
	for i := range old {
		if old[i].used() {
			t.insert(old[i])
		}
	}
}

// sorted returns the table's edges in label order.
func (t *kidTable) sorted() []edge {
	edges := make([]edge, 0, t.n)
	for _, e := range t.slots {
		if e.used() {
			edges = append(edges, e)
		}
	}
	slices.SortFunc(edges, func(a, b edge) int { return strings.Compare(a.fullLabel(), b.fullLabel()) })
	return edges
}
