package topic

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// This file holds the naive reference the trie is compared with: filters
// and topics split on '/' and compared level by level, subscriptions kept in
// a flat list.

// refMatch reports whether a (valid, non-shared) filter matches a topic.
func refMatch(filter, topic string) bool {
	return refMatchLevels(strings.Split(filter, "/"), strings.Split(topic, "/"))
}

// refMatchLevels is refMatch on levels already split.
func refMatchLevels(fl, tl []string) bool {
	if strings.HasPrefix(tl[0], "$") && (fl[0] == "+" || fl[0] == "#") {
		return false
	}
	for i, f := range fl {
		if f == "#" {
			return true // the parent level and anything below
		}
		if i >= len(tl) || (f != "+" && f != tl[i]) {
			return false
		}
	}
	return len(fl) == len(tl)
}

func refValidName(name string) bool {
	return name != "" && len(name) <= 65535 && !strings.ContainsAny(name, "+#\x00")
}

func refValidFilter(f string) bool {
	if f == "" || len(f) > 65535 || strings.Contains(f, "\x00") {
		return false
	}
	if strings.HasPrefix(f, "$share/") {
		parts := strings.SplitN(f, "/", 3)
		if len(parts) < 3 || parts[1] == "" || strings.ContainsAny(parts[1], "+#") || parts[2] == "" {
			return false
		}
		f = parts[2]
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return false
		}
		if strings.Contains(l, "+") && l != "+" {
			return false
		}
	}
	return true
}

// refShared splits a valid filter the way the reference sees it.
func refShared(filter string) (group, inner string, ok bool) {
	if !strings.HasPrefix(filter, "$share/") {
		return "", filter, false
	}
	parts := strings.SplitN(filter, "/", 3)
	return parts[1], parts[2], true
}

type refKey struct {
	filter string
	id     SubscriberID
}

// refTrie is the reference model of a Trie: one map entry per
// subscription. Results are sorted, so map order does not matter here.
type refTrie struct {
	subs   map[refKey]Options
	levels map[string][]string // split filter (after any share name), by filter
}

func newRefTrie() *refTrie {
	return &refTrie{subs: map[refKey]Options{}, levels: map[string][]string{}}
}

func (r *refTrie) subscribe(filter string, s Subscription) bool {
	k := refKey{filter, s.Subscriber}
	_, existed := r.subs[k]
	r.subs[k] = s.Options
	if _, ok := r.levels[filter]; !ok {
		_, inner, _ := refShared(filter)
		r.levels[filter] = strings.Split(inner, "/")
	}
	return existed
}

func (r *refTrie) unsubscribe(filter string, id SubscriberID) bool {
	k := refKey{filter, id}
	_, existed := r.subs[k]
	delete(r.subs, k)
	return existed
}

// groupResult is a matched group with its members, comparable with cmp.
type groupResult struct {
	Name, Filter string
	Members      []Subscription
}

type matchResult struct {
	Subs   []Subscription
	Groups []groupResult
}

func (r *refTrie) match(topic string) matchResult {
	var res matchResult
	groups := map[[2]string][]Subscription{}
	tl := strings.Split(topic, "/")
	for k, o := range r.subs {
		s := Subscription{Subscriber: k.id, Options: o}
		if !refMatchLevels(r.levels[k.filter], tl) {
			continue
		}
		name, inner, shared := refShared(k.filter)
		if shared {
			gk := [2]string{name, inner}
			groups[gk] = append(groups[gk], s)
		} else {
			res.Subs = append(res.Subs, s)
		}
	}
	for gk, members := range groups {
		res.Groups = append(res.Groups, groupResult{gk[0], gk[1], members})
	}
	return normalize(res)
}

func cmpSub(a, b Subscription) int {
	return cmp.Or(cmp.Compare(a.Subscriber, b.Subscriber), cmp.Compare(a.ID, b.ID),
		cmp.Compare(a.QoS, b.QoS), cmp.Compare(a.RetainHandling, b.RetainHandling),
		boolCmp(a.NoLocal, b.NoLocal), boolCmp(a.RetainAsPublished, b.RetainAsPublished))
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// normalize sorts a result into a canonical form (keeping duplicates, so
// that a subscription or group reported twice shows in a diff).
func normalize(r matchResult) matchResult {
	slices.SortFunc(r.Subs, cmpSub)
	for _, g := range r.Groups {
		slices.SortFunc(g.Members, cmpSub)
	}
	slices.SortFunc(r.Groups, func(a, b groupResult) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Filter, b.Filter))
	})
	return r
}

// sameResult is a quick equality check, so that the slower cmp.Diff runs
// only to explain a difference. Nil and empty are the same.
func sameResult(a, b matchResult) bool {
	return slices.Equal(a.Subs, b.Subs) && slices.EqualFunc(a.Groups, b.Groups, func(x, y groupResult) bool {
		return x.Name == y.Name && x.Filter == y.Filter && slices.Equal(x.Members, y.Members)
	})
}

// trieMatch runs Match and converts the result for comparison.
func trieMatch(t *Trie, topic string, m *Matches) matchResult {
	m.Reset()
	t.Match([]byte(topic), m)
	res := matchResult{Subs: slices.Clone(m.Subs)}
	for _, g := range m.Groups {
		res.Groups = append(res.Groups, groupResult{g.Name(), g.Filter(), g.AppendMembers(nil)})
	}
	return normalize(res)
}

// checkInvariants walks the trie and checks its bookkeeping: counts; no
// empty node; no node that should have been joined with its only edge or
// put back into its edge as a leaf; canonical labels without wildcard
// levels and keys that agree with them; no empty extra; indexes that agree
// with their lists; representation thresholds; a sound edge table.
func checkInvariants(t testing.TB, tr *Trie) {
	t.Helper()
	var nodes, subs int
	checkList := func(list []Subscription, idx map[SubscriberID]int32, where string) {
		if idx != nil {
			if len(idx) != len(list) {
				t.Fatalf("%s: index has %d entries, list %d", where, len(idx), len(list))
			}
			if len(list) <= subIdxMin/4 {
				t.Fatalf("%s: index kept for %d entries", where, len(list))
			}
		}
		seen := map[SubscriberID]bool{}
		for i, s := range list {
			if seen[s.Subscriber] {
				t.Fatalf("%s: subscriber %d twice", where, s.Subscriber)
			}
			seen[s.Subscriber] = true
			if idx != nil && idx[s.Subscriber] != int32(i) {
				t.Fatalf("%s: index says %d for entry %d", where, idx[s.Subscriber], i)
			}
		}
		subs += len(list)
	}
	var walk func(n *node, path string, isRoot bool)
	checkEdge := func(e *edge, path string) {
		nodes++
		full := e.fullLabel()
		if want := newEdge(full, e.n, e.sub); *e != want {
			t.Fatalf("%q: edge %+v, want %+v", path, *e, want)
		}
		for _, l := range strings.Split(full, "/") {
			if l == "+" || l == "#" {
				t.Fatalf("%q: wildcard level in label %q", path, full)
			}
		}
		if e.n == nil {
			subs++
			return
		}
		if e.sub != (Subscription{}) {
			t.Fatalf("%q: stale leaf subscription on an edge to a node", path)
		}
		c := e.n
		if c.nsub == 0 && len(c.kids) == 1 && c.plus == nil && c.x == nil {
			t.Fatalf("%q: node holds only one edge", path)
		}
		if c.nsub == 1 && len(c.kids) == 0 && c.plus == nil && c.x == nil {
			t.Fatalf("%q: node holds only one subscription", path)
		}
		walk(c, path, false)
	}
	walk = func(n *node, path string, isRoot bool) {
		if !isRoot && n.empty() {
			t.Fatalf("empty node at %q", path)
		}
		var list []Subscription
		if n.nsub > 0 {
			list = append(list, n.sub0)
		} else if n.sub0 != (Subscription{}) {
			t.Fatalf("%q: stale first subscription", path)
		}
		var idx map[SubscriberID]int32
		if n.x != nil {
			list = append(list, n.x.subs...)
			idx = n.x.subIdx
		}
		if int(n.nsub) != len(list) || (n.nsub <= 1 && n.x != nil && n.x.subs != nil) {
			t.Fatalf("%q: nsub %d, list %d", path, n.nsub, len(list))
		}
		checkList(list, idx, path)
		if len(n.kids) > kidTableMin {
			t.Fatalf("%q: %d edges in a slice", path, len(n.kids))
		}
		firsts := map[string]bool{}
		for i := range n.kids {
			e := &n.kids[i]
			if f := firstLevel(e.fullLabel()); firsts[f] {
				t.Fatalf("%q: two edges start with %q", path, f)
			} else {
				firsts[f] = true
			}
			checkEdge(e, path+"/"+e.fullLabel())
		}
		if n.plus != nil {
			nodes++
			walk(n.plus, path+"/+", false)
		}
		x := n.x
		if x == nil {
			return
		}
		if x.hash == nil && x.table == nil && x.subs == nil && x.subIdx == nil && len(x.groups) == 0 && x.groupIdx == nil {
			t.Fatalf("%q: empty extra kept", path)
		}
		if tb := x.table; tb != nil {
			if n.kids != nil {
				t.Fatalf("%q: edges both in a slice and a table", path)
			}
			if tb.n <= kidTableMin/4 || tb.n*4 > len(tb.slots)*3 || (len(tb.slots) > minTable && tb.n*8 < len(tb.slots)) {
				t.Fatalf("%q: table of %d slots kept for %d edges", path, len(tb.slots), tb.n)
			}
			if len(tb.slots)&(len(tb.slots)-1) != 0 {
				t.Fatalf("%q: table size %d", path, len(tb.slots))
			}
			count := 0
			for i := range tb.slots {
				e := &tb.slots[i]
				if !e.used() {
					if *e != (edge{}) {
						t.Fatalf("%q: empty slot %d not zeroed", path, i)
					}
					continue
				}
				count++
				// Every slot from the entry's home to it is full (linear
				// probing without tombstones).
				for j := tb.homeOf(e); j != i; j = (j + 1) & (len(tb.slots) - 1) {
					if !tb.slots[j].used() {
						t.Fatalf("%q: empty slot %d between home %d and entry %d", path, j, tb.homeOf(e), i)
					}
				}
				first := firstLevel(e.fullLabel())
				if got := tb.find([]byte(first)); got != e {
					t.Fatalf("%q: table does not find %q", path, first)
				}
			}
			if count != tb.n {
				t.Fatalf("%q: table counts %d, holds %d", path, tb.n, count)
			}
			for _, e := range tb.sorted() {
				checkEdge(&e, path+"/"+e.fullLabel())
			}
		}
		if x.hash != nil {
			nodes++
			walk(x.hash, path+"/#", false)
		}
		if x.groupIdx != nil && len(x.groupIdx) != len(x.groups) {
			t.Fatalf("%q: group index has %d entries, list %d", path, len(x.groupIdx), len(x.groups))
		}
		for i, g := range x.groups {
			if g.Len() == 0 {
				t.Fatalf("%q: empty group %q kept", path, g.name)
			}
			if x.groupIdx != nil && x.groupIdx[g.name] != int32(i) {
				t.Fatalf("%q: group index says %d for group %d", path, x.groupIdx[g.name], i)
			}
			checkList(g.members.s, g.members.idx, fmt.Sprintf("%s group %q", path, g.name))
		}
	}
	walk(&tr.root, "", true)
	if nodes != tr.Nodes() || subs != tr.Len() {
		t.Fatalf("walk found %d nodes and %d subscriptions; trie counts %d and %d", nodes, subs, tr.Nodes(), tr.Len())
	}
}

func TestRefMatch(t *testing.T) {
	t.Parallel()
	// The reference itself, on the examples of the specification's
	// section 4.7 (both versions).
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"sport/tennis/player1/#", "sport/tennis/player1", true},
		{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
		{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
		{"sport/#", "sport", true},
		{"#", "sport/tennis", true},
		{"sport/tennis/+", "sport/tennis/player1", true},
		{"sport/tennis/+", "sport/tennis/player1/ranking", false},
		{"sport/+", "sport", false},
		{"sport/+", "sport/", true},
		{"+/+", "/finance", true},
		{"/+", "/finance", true},
		{"+", "/finance", false},
		{"#", "$SYS/x", false},
		{"+/monitor/Clients", "$SYS/monitor/Clients", false},
		{"$SYS/#", "$SYS/monitor/Clients", true},
		{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
	}
	for _, tc := range tests {
		if got := refMatch(tc.filter, tc.topic); got != tc.want {
			t.Errorf("refMatch(%q, %q) = %v, want %v", tc.filter, tc.topic, got, tc.want)
		}
	}
}
