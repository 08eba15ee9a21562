package routes

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustKey(t testing.TB, r Route) []byte {
	t.Helper()
	k, err := Key(r)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func put(t testing.TB, r Route) Event {
	return Event{Key: mustKey(t, r), Value: Value(r.Count)}
}

func prefixOf(t testing.TB, tenant, level0 string) []byte {
	t.Helper()
	return Prefixes(nil, tenant, []byte(level0))[0]
}

// readyAll answers every Watch with a Reset and an empty scan.
func readyAll(c *Cache) {
	for _, p := range c.TakeActions().Watch {
		c.Event(p, Event{Reset: true})
		c.Loaded(p, nil)
	}
}

// A prefix loads as the store's watch contract says: events after the
// Reset are buffered, the scan installed, the buffer replayed.
func TestCacheLoadsAndReplays(t *testing.T) {
	t.Parallel()
	c := NewCache(Options{Self: "n1"})
	dst, complete := c.Match("t", []byte("a/b"), nil, nil)
	if complete || len(dst) != 0 {
		t.Fatalf("first match: %v complete %v", dst, complete)
	}
	a := c.TakeActions()
	if d := cmp.Diff(Actions{Watch: [][]byte{prefixOf(t, "t", "a"), prefixOf(t, "t", "+"), prefixOf(t, "t", "#")}}, a); d != "" {
		t.Fatalf("actions (-want +got):\n%s", d)
	}
	pa := prefixOf(t, "t", "a")
	c.Event(pa, Event{Reset: true})
	c.Event(pa, put(t, Route{Tenant: "t", Filter: "a/b", Node: "n3", Count: 1})) // after the scan's point
	c.Event(pa, Event{Key: mustKey(t, Route{Tenant: "t", Filter: "a/#", Node: "n2"}), Deleted: true})
	c.Loaded(pa, []KV{
		{mustKey(t, Route{Tenant: "t", Filter: "a/#", Node: "n2"}), Value(2)},
		{mustKey(t, Route{Tenant: "t", Filter: "a/+", Node: "n4"}), Value(1)},
	})
	for _, p := range a.Watch[1:] {
		c.Event(p, Event{Reset: true})
		c.Loaded(p, nil)
	}
	dst, complete = c.Match("t", []byte("a/b"), nil, nil)
	want := []Destination{{Node: "n3", Plain: true}, {Node: "n4", Plain: true}}
	if d := cmp.Diff(want, dst); d != "" || !complete {
		t.Fatalf("after loading, complete %v (-want +got):\n%s", complete, d)
	}
	// Ready: events apply at once. A range deletion takes what it covers
	// ("a/+" sorts before "a/b", node n3 before n4), not what it does not.
	c.Event(pa, put(t, Route{Tenant: "t", Filter: "a/b", Node: "n5", Count: 1}))
	c.Event(pa, Event{Key: pa, End: mustKey(t, Route{Tenant: "t", Filter: "a/b", Node: "n4"})})
	dst, _ = c.Match("t", []byte("a/b"), nil, nil)
	if d := cmp.Diff([]Destination{{Node: "n5", Plain: true}}, dst); d != "" {
		t.Fatalf("after the range deletion (-want +got):\n%s", d)
	}
	// A Reset of a ready prefix sends it back to loading.
	c.Event(pa, Event{Reset: true})
	if _, complete := c.Match("t", []byte("a/b"), nil, nil); complete {
		t.Fatal("complete while a prefix reloads")
	}
	if s := c.Stats(); s.Reloads != 1 || s.Prefixes != 3 || s.Ready != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// Shared groups go to one node each, among the live ones; dead nodes get
// nothing.
func TestCacheGroupsAndLiveness(t *testing.T) {
	t.Parallel()
	c := NewCache(Options{Self: "n1"})
	c.Match("t", []byte("s/x"), nil, nil)
	readyAll(c)
	ps := prefixOf(t, "t", "s")
	for _, r := range []Route{
		{Tenant: "t", Filter: "s/x", Group: "g", Node: "n1", Count: 2},
		{Tenant: "t", Filter: "s/x", Group: "g", Node: "n2", Count: 1},
		{Tenant: "t", Filter: "s/x", Group: "g", Node: "n3", Count: 1},
		{Tenant: "t", Filter: "s/+", Node: "n3", Count: 1},
	} {
		c.Event(ps, put(t, r))
	}
	picked := map[string]int{}
	for range 30 {
		dst, complete := c.Match("t", []byte("s/x"), func(n string) bool { return n != "n2" }, nil)
		if !complete {
			t.Fatal("not complete")
		}
		var groups int
		for _, d := range dst {
			if d.Node == "n2" {
				t.Fatalf("dead n2 got %+v", d)
			}
			if d.Node == "n3" && !d.Plain {
				t.Fatalf("n3's plain subscription lost: %+v", dst)
			}
			for _, g := range d.Groups {
				if g != "$share/g/s/x" {
					t.Fatalf("group %q", g)
				}
				groups++
				picked[d.Node]++
			}
		}
		if groups != 1 {
			t.Fatalf("the group went to %d nodes: %+v", groups, dst)
		}
	}
	if picked["n1"] == 0 || picked["n3"] == 0 {
		t.Errorf("round robin among live nodes: %v", picked)
	}
}

// Bounds: the least recently matched prefix is evicted (and unwatched);
// a loading prefix that buffers too much loads again.
func TestCacheBounds(t *testing.T) {
	t.Parallel()
	c := NewCache(Options{MaxPrefixes: 3, MaxBuffered: 2})
	c.Match("t", []byte("a"), nil, nil)
	c.TakeActions()
	c.Match("t", []byte("b"), nil, nil) // '+' and '#' are shared: only "a" goes
	if d := cmp.Diff(Actions{Watch: [][]byte{prefixOf(t, "t", "b")}, Unwatch: [][]byte{prefixOf(t, "t", "a")}}, c.TakeActions()); d != "" {
		t.Fatalf("eviction (-want +got):\n%s", d)
	}
	pb := prefixOf(t, "t", "b")
	c.Event(pb, Event{Reset: true})
	for i := range 3 {
		c.Event(pb, put(t, Route{Tenant: "t", Filter: "b", Node: fmt.Sprint("n", i), Count: 1}))
	}
	if d := cmp.Diff(Actions{Unwatch: [][]byte{pb}, Watch: [][]byte{pb}}, c.TakeActions()); d != "" {
		t.Fatalf("overflow (-want +got):\n%s", d)
	}
	// A key of another prefix, or that does not decode, is counted.
	c.Loaded(pb, nil)
	c.Event(pb, Event{Key: append(pb, []byte("junk")...), Value: Value(1)})
	c.Event(pb, put(t, Route{Tenant: "t", Filter: "c", Node: "n", Count: 1}))
	if s := c.Stats(); s.Evicted != 1 || s.Overflows != 1 || s.BadKeys != 2 || s.Prefixes != 3 {
		t.Fatalf("stats %+v", s)
	}
}

// matches is the reference: MQTT's matching rules, level by level.
func matches(filter, name string) bool {
	f, n := strings.Split(filter, "/"), strings.Split(name, "/")
	if strings.HasPrefix(name, "$") && (f[0] == "+" || f[0] == "#") {
		return false
	}
	for i, l := range f {
		if l == "#" {
			return true
		}
		if i >= len(n) || (l != "+" && l != n[i]) {
			return false
		}
	}
	return len(f) == len(n)
}

// Whatever the order of puts, deletes, resets and reloads, a cache whose
// prefixes are ready answers as the store's content says.
func TestCacheMatchesTheStore(t *testing.T) {
	t.Parallel()
	levels := []string{"a", "b", "+", "#", "$SYS"}
	nodes := []string{"n1", "n2", "n3", "n4"}
	for seed := range uint64(50) {
		rnd := rand.New(rand.NewPCG(seed, 7))
		store := map[string]Route{} // key → route
		c := NewCache(Options{Self: "n1", MaxPrefixes: 5 + rnd.IntN(20), MaxBuffered: 1 + rnd.IntN(8)})
		loading := map[string]bool{}
		scan := func(p []byte) []KV {
			var kvs []KV
			for _, k := range slices.Sorted(maps.Keys(store)) {
				if strings.HasPrefix(k, string(p)) {
					kvs = append(kvs, KV{[]byte(k), Value(store[k].Count)})
				}
			}
			return kvs
		}
		watching := map[string]bool{}
		deliver := func(ev Event) { // the watch: to every watched prefix the key is under
			for p := range watching {
				if strings.HasPrefix(string(ev.Key), p) {
					c.Event([]byte(p), ev)
				}
			}
		}
		runActions := func() {
			a := c.TakeActions()
			for _, p := range a.Unwatch {
				delete(watching, string(p))
				delete(loading, string(p))
			}
			for _, p := range a.Watch {
				watching[string(p)] = true
				loading[string(p)] = true
				c.Event(p, Event{Reset: true})
			}
		}
		for step := range 400 {
			switch op := rnd.IntN(10); {
			case op < 4: // put
				f := levels[rnd.IntN(len(levels))]
				for rnd.IntN(2) == 0 && f != "#" && !strings.HasSuffix(f, "/#") {
					f += "/" + levels[rnd.IntN(len(levels)-1)]
				}
				r := Route{Tenant: "t", Filter: f, Node: nodes[rnd.IntN(len(nodes))], Count: uint64(1 + rnd.IntN(3))}
				if rnd.IntN(4) == 0 {
					r.Group = "g"
				}
				k := string(mustKey(t, r))
				store[k] = r
				deliver(Event{Key: []byte(k), Value: Value(r.Count)})
			case op < 6 && len(store) > 0: // delete
				ks := slices.Sorted(maps.Keys(store))
				k := ks[rnd.IntN(len(ks))]
				delete(store, k)
				deliver(Event{Key: []byte(k), Deleted: true})
			case op < 7 && len(watching) > 0: // the store resets a watch
				ps := slices.Sorted(maps.Keys(watching))
				p := ps[rnd.IntN(len(ps))]
				loading[p] = true
				c.Event([]byte(p), Event{Reset: true})
			default: // scans complete
				for _, p := range slices.Sorted(maps.Keys(loading)) {
					c.Loaded([]byte(p), scan([]byte(p)))
					delete(loading, p)
				}
			}
			runActions()
			name := levels[rnd.IntN(2)] + "/" + levels[rnd.IntN(2)]
			if rnd.IntN(5) == 0 {
				name = "$SYS/a"
			}
			dst, complete := c.Match("t", []byte(name), nil, nil)
			runActions()
			if !complete {
				continue
			}
			// The reference: plain subscribers' nodes, and for each
			// matching group filter the nodes that may be picked.
			plain := map[string]bool{}
			groups := map[string]map[string]bool{}
			for _, r := range store {
				if !matches(r.Filter, name) {
					continue
				}
				if r.Group == "" {
					plain[r.Node] = true
					continue
				}
				g := "$share/" + r.Group + "/" + r.Filter
				if groups[g] == nil {
					groups[g] = map[string]bool{}
				}
				groups[g][r.Node] = true
			}
			gotPlain := map[string]bool{}
			gotGroups := map[string]string{}
			for _, d := range dst {
				if d.Plain {
					gotPlain[d.Node] = true
				}
				for _, g := range d.Groups {
					if _, dup := gotGroups[g]; dup {
						t.Fatalf("seed %d step %d: group %s picked twice", seed, step, g)
					}
					gotGroups[g] = d.Node
				}
			}
			if d := cmp.Diff(plain, gotPlain); d != "" {
				t.Fatalf("seed %d step %d topic %q: plain nodes (-store +cache):\n%s", seed, step, name, d)
			}
			if len(gotGroups) != len(groups) {
				t.Fatalf("seed %d step %d topic %q: groups %v, store has %v", seed, step, name, gotGroups, groups)
			}
			for g, n := range gotGroups {
				if !groups[g][n] {
					t.Fatalf("seed %d step %d: group %s picked %s, which holds none of it (%v)", seed, step, g, n, groups[g])
				}
			}
		}
	}
}

// Holds tells a key's state through a prefix's life: not cached, loading,
// ready with the key, ready after its deletion.
func TestCacheHolds(t *testing.T) {
	t.Parallel()
	c := NewCache(Options{Self: "n1"})
	k := mustKey(t, Route{Tenant: "t", Filter: "a/b", Node: "n2"})
	type state struct{ Cached, Ready, Present bool }
	holds := func() state {
		cached, ready, present := c.Holds(k)
		return state{cached, ready, present}
	}
	steps := []struct {
		name string
		do   func()
		want state
	}{
		{"not cached", func() {}, state{}},
		{"loading", func() { c.Match("t", []byte("a/b"), nil, nil) }, state{Cached: true}},
		{"event while loading", func() {
			pa := prefixOf(t, "t", "a")
			c.Event(pa, Event{Reset: true})
			c.Event(pa, Event{Key: k, Value: Value(1)})
		}, state{Cached: true}},
		{"loaded", func() { c.Loaded(prefixOf(t, "t", "a"), nil) }, state{true, true, true}},
		{"deleted", func() { c.Event(prefixOf(t, "t", "a"), Event{Key: k, Deleted: true}) }, state{Cached: true, Ready: true}},
	}
	for _, s := range steps {
		s.do()
		if d := cmp.Diff(s.want, holds()); d != "" {
			t.Errorf("%s (-want +got):\n%s", s.name, d)
		}
	}
	if cached, _, _ := c.Holds([]byte("not a key")); cached {
		t.Error("a malformed key is cached")
	}
}
