package topic

import (
	"bytes"
	"slices"
)

// SubscriberID identifies a session. The broker assigns them, unique per
// broker.
type SubscriberID uint64

// Options are a subscription's MQTT options, packed into 8 bytes.
type Options struct {
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	ID                uint32 // subscription identifier, 0 = none
}

// Subscription is one match result: who subscribed, with which options.
// It is 16 bytes and holds no pointer, so result slices cost the garbage
// collector nothing to scan.
type Subscription struct {
	Subscriber SubscriberID
	Options
}

// Matches collects the result of Match. Reuse one value (Reset between
// calls) so that matching allocates nothing once its slices have grown.
type Matches struct {
	// Subs are the matching non-shared subscriptions. A subscriber whose
	// overlapping filters both match appears once per filter.
	Subs []Subscription
	// Groups are the shared groups whose filter matches, each once. They
	// are owned by the Trie: read them under the same lock as Match.
	Groups []*Group
}

// Reset empties m, keeping its capacity and dropping its group pointers.
func (m *Matches) Reset() {
	m.Subs = m.Subs[:0]
	clear(m.Groups)
	m.Groups = m.Groups[:0]
}

// Tuning. A node keeps its edges in a slice (scanned) until it has more
// than kidTableMin, then in a kidTable; back to a slice when they shrink to
// kidTableMin/4. A list of subscriptions or groups gets an index map beyond
// subIdxMin entries and drops it at subIdxMin/4.
const (
	kidTableMin = 8
	subIdxMin   = 8
)

// Trie is a subscription index for one tenant.
//
// It is not safe for concurrent use, except that Match (and the methods of
// the Groups it returns) may run concurrently with other Match calls: the
// broker guards Subscribe and Unsubscribe with a write lock and Match with a
// read lock. The only state Match-side calls mutate is a group's round-robin
// cursor, which is atomic.
//
// The zero Trie is empty and ready to use.
type Trie struct {
	root  node
	subs  int // subscriptions, shared members included
	nodes int // edges and wildcard nodes: the trie's size, 0 when empty
}

// The layout is chosen for Match on a large index, where the cost is cache
// misses rather than instructions:
//
//   - An edge carries a run of exact levels, not one (path compression):
//     under "tenant/dev" the edge for "tenant/dev/42/telemetry" has label
//     "42/telemetry". A node exists only where something branches.
//   - A leaf with one subscription and nothing below lives in its edge: no
//     node, no pointer to follow.
//   - An edge holds a short label inline (see edge.go), and many edges go
//     in an open-addressing table of edges, not a map of pointers.
//   - A node holds its first subscription inline.
//
// Wildcard levels are never part of a label: '+' and '#' lead to nodes of
// their own (node.plus, extra.hash).

// node is a branch point of the trie (64 bytes).
type node struct {
	kids []edge       // edges to exact children while few (unordered); nil when x.table is used
	sub0 Subscription // the first subscription, when nsub > 0
	plus *node        // child for a '+' level
	x    *extra       // everything rarer; nil when empty
	nsub int32        // subscriptions: sub0, then x.subs
}

// nodeWithKids is a node allocated with room for two edges, for a node
// that is created to branch: scanning its edges then reads memory next to
// it.
type nodeWithKids struct {
	node
	kids [2]edge
}

type extra struct {
	hash     *node          // child for a '#' level
	table    *kidTable      // edges when many
	subs     []Subscription // subscriptions after sub0
	subIdx   map[SubscriberID]int32
	groups   []*Group // shared groups whose filter ends here
	groupIdx map[string]int32
}

// NewTrie returns an empty Trie.
func NewTrie() *Trie { return &Trie{} }

// Len returns the number of subscriptions, shared group members included.
func (t *Trie) Len() int { return t.subs }

// Nodes returns the size of the trie's structure (edges to exact children,
// and '+' and '#' nodes): 0 when the trie is empty. It exists to check that
// unsubscribing frees what subscribing built.
func (t *Trie) Nodes() int { return t.nodes }

// levelEnd returns the index of the '/' ending the level that starts at
// start, or len(s).
func levelEnd[S string | []byte](s S, start int) int {
	for i := start; i < len(s); i++ {
		if s[i] == '/' {
			return i
		}
	}
	return len(s)
}

// nextLevel returns the level of s starting at start and where the next
// level starts. The last level ends at len(s), so the level after it starts
// at len(s)+1: a walk is done when start > len(s). An empty s is one empty
// level, and "a/" is "a" then "".
func nextLevel(s []byte, start int) (level []byte, next int) {
	end := levelEnd(s, start)
	return s[start:end], end + 1
}

func isPlus(level []byte) bool { return len(level) == 1 && level[0] == '+' }
func isHash(level []byte) bool { return len(level) == 1 && level[0] == '#' }

// Subscribe adds s under filter, or replaces the options of the subscription
// the same subscriber already has to this exact filter string ($share prefix
// included). It reports whether one existed. filter should have passed
// ValidFilter; other input does not panic and can be unsubscribed again, but
// what it matches is unspecified. The trie keeps no reference to filter.
func (t *Trie) Subscribe(filter []byte, s Subscription) (existed bool) {
	name, f, shared := ParseShared(filter)
	if !shared {
		f = filter
	}
	n := &t.root
	for p := 0; p <= len(f); {
		level, next := nextLevel(f, p)
		switch {
		case isPlus(level):
			if n.plus == nil {
				n.plus = &node{}
				t.nodes++
			}
			n, p = n.plus, next
			continue
		case isHash(level):
			x := n.ext()
			if x.hash == nil {
				x.hash = &node{}
				t.nodes++
			}
			n, p = x.hash, next
			continue
		}
		e := n.child(level)
		if e == nil {
			// A new edge takes all the exact levels up to the next
			// wildcard level or the end. If the filter ends there, the
			// edge is the leaf.
			q := exactRunEnd(f, p)
			label := f[p:q]
			t.nodes++
			if q == len(f) && !shared {
				n.addEdge(newEdge(label, nil, s))
				t.subs++
				return false
			}
			c := &node{}
			n.addEdge(newEdge(label, c, Subscription{}))
			n, p = c, q+1
			continue
		}
		full, m, fp := e.matchFilter(f, p)
		if !full {
			t.split(e, m)
		} else if e.n == nil {
			if fp == len(f) && !shared && e.sub.Subscriber == s.Subscriber {
				e.sub = s
				return true
			}
			// The leaf gets company: it needs a node.
			e.n = &node{sub0: e.sub, nsub: 1}
			e.sub = Subscription{}
		}
		n, p = e.n, fp+1
	}
	if shared {
		x := n.ext()
		g := x.group(name)
		if g == nil {
			g = &Group{name: string(name), filter: string(f)}
			x.addGroup(g)
		}
		existed = g.members.put(s)
	} else {
		existed = n.putSub(s)
	}
	if !existed {
		t.subs++
	}
	return existed
}

// exactRunEnd returns where the run of exact levels of f starting at p (its
// first level is exact) ends: before the next wildcard level, or len(f).
func exactRunEnd(f []byte, p int) int {
	q := levelEnd(f, p)
	for q < len(f) {
		end := levelEnd(f, q+1)
		if l := f[q+1 : end]; isPlus(l) || isHash(l) {
			break
		}
		q = end
	}
	return q
}

// split cuts the edge e after m bytes of its label (a level boundary): e
// keeps the first part and leads to a new node, which takes the rest.
func (t *Trie) split(e *edge, m int) {
	w := &nodeWithKids{}
	mid := &w.node
	label := e.fullLabel()
	mid.kids = append(w.kids[:0], newEdge(label[m+1:], e.n, e.sub))
	*e = newEdge(label[:m], mid, Subscription{})
	t.nodes++
}

// Unsubscribe removes the subscriber's subscription to exactly this filter
// string ($share prefix included) and reports whether there was one. What
// is left empty is freed, and edges are joined again.
func (t *Trie) Unsubscribe(filter []byte, id SubscriberID) bool {
	name, f, shared := ParseShared(filter)
	if !shared {
		f = filter
	}
	if t.nodes == 0 || !t.unsubscribe(&t.root, f, 0, name, shared, id) {
		return false
	}
	t.subs--
	return true
}

// unsubscribe removes the subscription below n for the filter levels from
// p on. On the way back it tidies what it went through: a node left empty
// is freed, a node left with one edge is joined with it, a node left with
// one subscription and nothing else goes back into its edge.
func (t *Trie) unsubscribe(n *node, f []byte, p int, name []byte, shared bool, id SubscriberID) bool {
	if p > len(f) {
		if !shared {
			return n.removeSub(id)
		}
		if n.x == nil {
			return false
		}
		g := n.x.group(name)
		if g == nil || !g.members.remove(id) {
			return false
		}
		if g.members.len() == 0 {
			n.x.removeGroup(g)
			n.tidy()
		}
		return true
	}
	level, next := nextLevel(f, p)
	switch {
	case isPlus(level):
		c := n.plus
		if c == nil || !t.unsubscribe(c, f, next, name, shared, id) {
			return false
		}
		if c.empty() {
			n.plus = nil
			t.nodes--
		}
		return true
	case isHash(level):
		if n.x == nil || n.x.hash == nil {
			return false
		}
		c := n.x.hash
		if !t.unsubscribe(c, f, next, name, shared, id) {
			return false
		}
		if c.empty() {
			n.x.hash = nil
			n.tidy()
			t.nodes--
		}
		return true
	}
	e := n.child(level)
	if e == nil {
		return false
	}
	full, _, fp := e.matchFilter(f, p)
	if !full {
		return false
	}
	if e.n == nil {
		if fp != len(f) || shared || e.sub.Subscriber != id {
			return false
		}
		n.removeEdge(level)
		t.nodes--
		return true
	}
	// e stays valid: below, only e.n's subtree changes, not n's edges.
	c := e.n
	if !t.unsubscribe(c, f, fp+1, name, shared, id) {
		return false
	}
	switch {
	case c.empty():
		n.removeEdge(level)
		t.nodes--
	case c.nsub == 0 && len(c.kids) == 1 && c.plus == nil && c.x == nil:
		// Join e with c's only edge.
		d := &c.kids[0]
		*e = newEdge(e.fullLabel()+"/"+d.fullLabel(), d.n, d.sub)
		t.nodes--
	case c.nsub == 1 && len(c.kids) == 0 && c.plus == nil && c.x == nil:
		// Back to a leaf in its edge.
		e.n, e.sub = nil, c.sub0
	}
	return true
}

// Match appends to m.Subs every non-shared subscription whose filter
// matches topic, and to m.Groups, once each, every shared group whose filter
// matches. It does not Reset m. The order is the trie's: it depends only on
// the history of Subscribe and Unsubscribe calls, never on map iteration.
// Matching is byte-exact [MQTT-4.7.3-4]. Any bytes are safe; for a topic
// that is not a valid name the result is unspecified. Match does not
// allocate once m's slices have grown.
func (t *Trie) Match(topic []byte, m *Matches) {
	if m == nil || t.nodes == 0 {
		return
	}
	// Filters starting with a wildcard do not match topics starting with
	// '$' [MQTT-4.7.2-1]: the root's '+' and '#' are skipped for them.
	t.matchFrom(&t.root, topic, 0, m, len(topic) > 0 && topic[0] == '$')
}

// matchFrom collects what matches below n, which has matched the topic's
// levels before start. Edges are followed in a loop, '+' children by
// recursion, so the stack grows with the wildcards of the trie, not the
// levels of the topic. noWild skips n's wildcard children (for the root
// and a '$' topic).
func (t *Trie) matchFrom(n *node, topic []byte, start int, m *Matches, noWild bool) {
	for start <= len(topic) {
		rest := topic[start:]
		end := bytes.IndexByte(rest, '/')
		if end < 0 {
			end = len(rest)
		}
		if !noWild {
			if n.x != nil && n.x.hash != nil {
				m.collect(n.x.hash)
			}
			if n.plus != nil {
				t.matchFrom(n.plus, topic, start+end+1, m, false)
			}
		}
		noWild = false
		level := rest[:end]
		e := n.child(level)
		if e == nil {
			return
		}
		if l := e.labelLen(); l > end {
			// The edge holds more levels: the topic must go on with them.
			if !e.continues(rest, end) {
				return
			}
			end = l
		}
		if e.n == nil {
			// A leaf: it matches if the topic ends here.
			if end == len(rest) {
				m.Subs = append(m.Subs, e.sub)
			}
			return
		}
		n = e.n
		start += end + 1
	}
	// Every level matched: n's own subscriptions, and "n/#" since '#' also
	// matches its parent level.
	m.collect(n)
	if n.x != nil && n.x.hash != nil {
		m.collect(n.x.hash)
	}
}

func (m *Matches) collect(n *node) {
	if n.nsub > 0 {
		m.Subs = append(m.Subs, n.sub0)
		if n.nsub > 1 {
			m.Subs = append(m.Subs, n.x.subs...)
		}
	}
	if n.x != nil && len(n.x.groups) > 0 {
		m.Groups = append(m.Groups, n.x.groups...)
	}
}

// child returns the edge whose first level is level, or nil. The pointer
// is valid until n's edges change.
func (n *node) child(level []byte) *edge {
	if n.x != nil && n.x.table != nil {
		return n.x.table.find(level)
	}
	for i := range n.kids {
		if n.kids[i].is(level) {
			return &n.kids[i]
		}
	}
	return nil
}

// addEdge adds an edge whose first level n does not have.
func (n *node) addEdge(e edge) {
	switch {
	case n.x != nil && n.x.table != nil:
		n.x.table.insert(e)
	case len(n.kids) < kidTableMin:
		n.kids = append(n.kids, e)
	default:
		n.ext().table = newKidTable(append(n.kids, e))
		n.kids = nil
	}
}

// removeEdge removes the edge whose first level is level.
func (n *node) removeEdge(level []byte) {
	if x := n.x; x != nil && x.table != nil {
		x.table.remove(level)
		if x.table.n <= kidTableMin/4 {
			// Back to a slice, in label order so that the layout does
			// not depend on the seed.
			n.kids = x.table.sorted()
			x.table = nil
			n.tidy()
		}
		return
	}
	for i := range n.kids {
		if n.kids[i].is(level) {
			last := len(n.kids) - 1
			n.kids[i] = n.kids[last]
			n.kids[last] = edge{}
			n.kids = n.kids[:last]
			break
		}
	}
	if len(n.kids) == 0 {
		n.kids = nil
	}
}

func (n *node) ext() *extra {
	if n.x == nil {
		n.x = &extra{}
	}
	return n.x
}

// tidy frees n.x when it holds nothing.
func (n *node) tidy() {
	if x := n.x; x != nil && x.hash == nil && x.table == nil &&
		x.subs == nil && x.subIdx == nil && len(x.groups) == 0 && x.groupIdx == nil {
		n.x = nil
	}
}

func (n *node) empty() bool {
	return n.nsub == 0 && len(n.kids) == 0 && n.plus == nil && n.x == nil
}

// The subscriptions of a node form one list: sub0, then x.subs. Like a
// subList, it keeps insertion order except that a removal moves the last
// entry into the hole, and it is indexed by x.subIdx when long.

func (n *node) subAt(i int) *Subscription {
	if i == 0 {
		return &n.sub0
	}
	return &n.x.subs[i-1]
}

func (n *node) findSub(id SubscriberID) int {
	switch {
	case n.nsub == 0:
		return -1
	case n.sub0.Subscriber == id:
		return 0
	case n.nsub == 1:
		return -1
	case n.x.subIdx != nil:
		if i, ok := n.x.subIdx[id]; ok {
			return int(i)
		}
		return -1
	}
	for i := range n.x.subs {
		if n.x.subs[i].Subscriber == id {
			return i + 1
		}
	}
	return -1
}

// putSub adds s or replaces the subscriber's entry; it reports the latter.
func (n *node) putSub(s Subscription) (existed bool) {
	if i := n.findSub(s.Subscriber); i >= 0 {
		*n.subAt(i) = s
		return true
	}
	if n.nsub == 0 {
		n.sub0 = s
		n.nsub = 1
		return false
	}
	x := n.ext()
	x.subs = append(x.subs, s)
	n.nsub++
	switch {
	case x.subIdx != nil:
		x.subIdx[s.Subscriber] = n.nsub - 1
	case n.nsub > subIdxMin:
		x.subIdx = make(map[SubscriberID]int32, n.nsub)
		for i := range int(n.nsub) {
			x.subIdx[n.subAt(i).Subscriber] = int32(i)
		}
	}
	return false
}

// removeSub deletes the subscriber's entry; it reports whether there was one.
func (n *node) removeSub(id SubscriberID) bool {
	i := n.findSub(id)
	if i < 0 {
		return false
	}
	last := int(n.nsub) - 1
	if i != last {
		moved := *n.subAt(last)
		*n.subAt(i) = moved
		if n.x.subIdx != nil {
			n.x.subIdx[moved.Subscriber] = int32(i)
		}
	}
	n.nsub--
	if last == 0 {
		n.sub0 = Subscription{}
		return true
	}
	x := n.x
	x.subs = x.subs[:last-1]
	if x.subIdx != nil {
		delete(x.subIdx, id)
		if n.nsub <= subIdxMin/4 {
			x.subIdx = nil
		}
	}
	switch {
	case len(x.subs) == 0:
		x.subs = nil
		n.tidy()
	case cap(x.subs) > 16 && len(x.subs) < cap(x.subs)/4:
		// Give back the memory of a list that was once long.
		x.subs = slices.Clone(x.subs)
	}
	return true
}

// group returns the group with this share name, or nil.
func (x *extra) group(name []byte) *Group {
	if x.groupIdx != nil {
		if i, ok := x.groupIdx[string(name)]; ok {
			return x.groups[i]
		}
		return nil
	}
	for _, g := range x.groups {
		if g.name == string(name) {
			return g
		}
	}
	return nil
}

func (x *extra) addGroup(g *Group) {
	x.groups = append(x.groups, g)
	switch {
	case x.groupIdx != nil:
		x.groupIdx[g.name] = int32(len(x.groups) - 1)
	case len(x.groups) > subIdxMin:
		x.groupIdx = make(map[string]int32, len(x.groups))
		for i, g := range x.groups {
			x.groupIdx[g.name] = int32(i)
		}
	}
}

// removeGroup removes g by swapping the last group into its place.
func (x *extra) removeGroup(g *Group) {
	var i int
	if x.groupIdx != nil {
		i = int(x.groupIdx[g.name])
		delete(x.groupIdx, g.name)
	} else {
		i = slices.Index(x.groups, g)
	}
	last := len(x.groups) - 1
	if i != last {
		x.groups[i] = x.groups[last]
		if x.groupIdx != nil {
			x.groupIdx[x.groups[i].name] = int32(i)
		}
	}
	x.groups[last] = nil
	x.groups = x.groups[:last]
	if len(x.groups) == 0 {
		x.groups = nil
	}
	if x.groupIdx != nil && len(x.groups) <= subIdxMin/4 {
		x.groupIdx = nil
	}
}

// subList is a list of subscriptions, one per subscriber, in insertion
// order except that a removal moves the last entry into the hole. Lookup
// by subscriber scans while the list is short and uses idx when it is long.
// A group's members are one.
type subList struct {
	s   []Subscription
	idx map[SubscriberID]int32
}

func (l *subList) len() int { return len(l.s) }

func (l *subList) find(id SubscriberID) int {
	if l.idx != nil {
		if i, ok := l.idx[id]; ok {
			return int(i)
		}
		return -1
	}
	for i := range l.s {
		if l.s[i].Subscriber == id {
			return i
		}
	}
	return -1
}

// put adds s or replaces the subscriber's entry; it reports the latter.
func (l *subList) put(s Subscription) (existed bool) {
	if i := l.find(s.Subscriber); i >= 0 {
		l.s[i] = s
		return true
	}
	l.s = append(l.s, s)
	switch {
	case l.idx != nil:
		l.idx[s.Subscriber] = int32(len(l.s) - 1)
	case len(l.s) > subIdxMin:
		l.idx = make(map[SubscriberID]int32, len(l.s))
		for i := range l.s {
			l.idx[l.s[i].Subscriber] = int32(i)
		}
	}
	return false
}

// remove deletes the subscriber's entry; it reports whether there was one.
func (l *subList) remove(id SubscriberID) bool {
	i := l.find(id)
	if i < 0 {
		return false
	}
	last := len(l.s) - 1
	if i != last {
		l.s[i] = l.s[last]
		if l.idx != nil {
			l.idx[l.s[i].Subscriber] = int32(i)
		}
	}
	l.s = l.s[:last]
	if l.idx != nil {
		delete(l.idx, id)
		if len(l.s) <= subIdxMin/4 {
			l.idx = nil
		}
	}
	switch {
	case len(l.s) == 0:
		l.s = nil
	case cap(l.s) > 16 && len(l.s) < cap(l.s)/4:
		l.s = slices.Clone(l.s)
	}
	return true
}
