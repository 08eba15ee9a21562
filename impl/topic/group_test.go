package topic

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// groupOf subscribes members 1..n to "$share/g/a/+" on a new trie and
// returns the group.
func groupOf(t *testing.T, n int) (*Trie, *Group) {
	t.Helper()
	tr := NewTrie()
	for id := 1; id <= n; id++ {
		tr.Subscribe([]byte("$share/g/a/+"), sub(SubscriberID(id), 0))
	}
	var m Matches
	tr.Match([]byte("a/x"), &m)
	if len(m.Groups) != 1 || m.Groups[0].Len() != n {
		t.Fatalf("want one group of %d, got %d groups", n, len(m.Groups))
	}
	g := m.Groups[0]
	if g.Name() != "g" || g.Filter() != "a/+" {
		t.Fatalf("group %q %q", g.Name(), g.Filter())
	}
	return tr, g
}

// picks runs Pick n times and returns the subscribers chosen (0 for none).
func picks(g *Group, n int, p Policy, key uint64, r interface{ IntN(int) int }, ok func(SubscriberID) bool) []SubscriberID {
	out := make([]SubscriberID, n)
	for i := range out {
		if s, found := g.Pick(p, key, r, ok); found {
			out[i] = s.Subscriber
		}
	}
	return out
}

func count(ids []SubscriberID) map[SubscriberID]int {
	c := map[SubscriberID]int{}
	for _, id := range ids {
		c[id]++
	}
	return c
}

func TestPickRoundRobin(t *testing.T) {
	t.Parallel()
	_, g := groupOf(t, 3)
	if diff := cmp.Diff([]SubscriberID{1, 2, 3, 1, 2, 3, 1}, picks(g, 7, RoundRobin, 0, nil, nil)); diff != "" {
		t.Errorf("cycle (-want +got):\n%s", diff)
	}
	// Skipping a member: the others still take turns evenly.
	not2 := func(id SubscriberID) bool { return id != 2 }
	got := count(picks(g, 600, RoundRobin, 0, nil, not2))
	if diff := cmp.Diff(map[SubscriberID]int{1: 300, 3: 300}, got); diff != "" {
		t.Errorf("with member 2 refused (-want +got):\n%s", diff)
	}
	// An unknown policy, and Random without a source, are round robin.
	got = count(append(picks(g, 300, Policy(9), 0, nil, nil), picks(g, 300, Random, 0, nil, nil)...))
	if diff := cmp.Diff(map[SubscriberID]int{1: 200, 2: 200, 3: 200}, got); diff != "" {
		t.Errorf("fallbacks (-want +got):\n%s", diff)
	}
}

func TestPickSticky(t *testing.T) {
	t.Parallel()
	tr, g := groupOf(t, 5)
	const keys = 5000
	before := make([]SubscriberID, keys)
	for k := range before {
		ids := picks(g, 3, Sticky, uint64(k)*0x9E3779B97F4A7C15, nil, nil)
		if ids[0] != ids[1] || ids[1] != ids[2] {
			t.Fatalf("key %d picks %v", k, ids)
		}
		before[k] = ids[0]
	}
	c := count(before)
	for id := SubscriberID(1); id <= 5; id++ {
		if c[id] < keys/5*8/10 {
			t.Errorf("member %d gets %d of %d keys", id, c[id], keys)
		}
	}
	// A join moves about 1/6 of the keys, all to the newcomer.
	tr.Subscribe([]byte("$share/g/a/+"), sub(6, 0))
	moved := 0
	for k := range before {
		s, _ := g.Pick(Sticky, uint64(k)*0x9E3779B97F4A7C15, nil, nil)
		if s.Subscriber != before[k] {
			moved++
			if s.Subscriber != 6 {
				t.Fatalf("key %d moved from %d to %d, not to the new member", k, before[k], s.Subscriber)
			}
		}
	}
	if moved < keys/6*7/10 || moved > keys/6*13/10 {
		t.Errorf("a join moved %d of %d keys, want about %d", moved, keys, keys/6)
	}
	// The refused member's keys go elsewhere, the rest stay.
	for k := range before[:500] {
		key := uint64(k) * 0x9E3779B97F4A7C15
		want, _ := g.Pick(Sticky, key, nil, nil)
		got, ok := g.Pick(Sticky, key, nil, func(id SubscriberID) bool { return id != 3 })
		if !ok || (want.Subscriber != 3 && got != want) || got.Subscriber == 3 {
			t.Fatalf("key %d: %d without a filter, %d (%v) refusing 3", k, want.Subscriber, got.Subscriber, ok)
		}
	}
	// A leave moves the leaver's keys and, by the swap, about as many more.
	tr.Unsubscribe([]byte("$share/g/a/+"), 2)
	moved = 0
	for k := range before {
		s, _ := g.Pick(Sticky, uint64(k)*0x9E3779B97F4A7C15, nil, nil)
		if s.Subscriber != before[k] {
			moved++
		}
	}
	if moved > keys*2/5 {
		t.Errorf("a join and a leave moved %d of %d keys", moved, keys)
	}
}

func TestPickRandom(t *testing.T) {
	t.Parallel()
	_, g := groupOf(t, 5)
	r := rand.New(rand.NewPCG(42, 1))
	c := count(picks(g, 5000, Random, 0, r, nil))
	for id := SubscriberID(1); id <= 5; id++ {
		if c[id] < 800 || c[id] > 1200 {
			t.Errorf("member %d picked %d times of 5000", id, c[id])
		}
	}
	// The same seed gives the same picks.
	a := picks(g, 50, Random, 0, rand.New(rand.NewPCG(7, 7)), nil)
	b := picks(g, 50, Random, 0, rand.New(rand.NewPCG(7, 7)), nil)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("same seed, different picks (-first +second):\n%s", diff)
	}
	// A source that misbehaves cannot make Pick index out of range.
	if _, ok := g.Pick(Random, 0, badRand{}, nil); !ok {
		t.Error("no pick with a misbehaving source")
	}
}

type badRand struct{}

func (badRand) IntN(int) int { return -7 }

func TestPickFilter(t *testing.T) {
	t.Parallel()
	_, g := groupOf(t, 4)
	only := func(id SubscriberID) func(SubscriberID) bool {
		return func(x SubscriberID) bool { return x == id }
	}
	none := func(SubscriberID) bool { return false }
	r := rand.New(rand.NewPCG(1, 1))
	for _, p := range []Policy{RoundRobin, Random, Sticky} {
		t.Run(p.String(), func(t *testing.T) {
			for key := range uint64(20) {
				if s, ok := g.Pick(p, key, r, only(3)); !ok || s.Subscriber != 3 {
					t.Fatalf("only 3 acceptable: got %d, %v", s.Subscriber, ok)
				}
				if s, ok := g.Pick(p, key, r, none); ok {
					t.Fatalf("none acceptable: got %d", s.Subscriber)
				}
			}
		})
	}
}

func TestPickEmptiedGroup(t *testing.T) {
	t.Parallel()
	tr, g := groupOf(t, 2)
	tr.Unsubscribe([]byte("$share/g/a/+"), 1)
	tr.Unsubscribe([]byte("$share/g/a/+"), 2)
	if tr.Nodes() != 0 {
		t.Errorf("%d nodes left", tr.Nodes())
	}
	for _, p := range []Policy{RoundRobin, Random, Sticky} {
		if s, ok := g.Pick(p, 1, rand.New(rand.NewPCG(1, 1)), nil); ok {
			t.Errorf("%s picked %d from an emptied group", p, s.Subscriber)
		}
	}
	// Subscribing again makes a new group; the old one stays empty.
	tr.Subscribe([]byte("$share/g/a/+"), sub(9, 0))
	var m Matches
	tr.Match([]byte("a/b"), &m)
	if len(m.Groups) != 1 || m.Groups[0] == g || g.Len() != 0 {
		t.Errorf("resubscribing: %d groups, same pointer %v, old Len %d", len(m.Groups), len(m.Groups) == 1 && m.Groups[0] == g, g.Len())
	}
}

func TestPolicyString(t *testing.T) {
	t.Parallel()
	got := fmt.Sprint(RoundRobin, Random, Sticky, Policy(7))
	if want := "round-robin random sticky Policy(7)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestConcurrentMatchPick runs Match and round-robin Pick from several
// goroutines at once, as the broker does under its read lock (run it with
// -race). Round robin with an atomic cursor is exactly fair: each member
// is picked the same number of times.
func TestConcurrentMatchPick(t *testing.T) {
	t.Parallel()
	tr := NewTrie()
	for id := 1; id <= 4; id++ {
		tr.Subscribe([]byte("$share/workers/jobs/+"), sub(SubscriberID(id), 0))
		tr.Subscribe([]byte("jobs/#"), sub(SubscriberID(100+id), 0))
	}
	const workers, rounds = 8, 1000
	var wg sync.WaitGroup
	results := make([][]SubscriberID, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var m Matches
			topic := []byte(fmt.Sprintf("jobs/%d", w))
			for range rounds {
				m.Reset()
				tr.Match(topic, &m)
				if len(m.Subs) != 4 || len(m.Groups) != 1 {
					t.Errorf("worker %d: %d subscriptions, %d groups", w, len(m.Subs), len(m.Groups))
					return
				}
				s, ok := m.Groups[0].Pick(RoundRobin, 0, nil, nil)
				if !ok {
					t.Errorf("worker %d: no pick", w)
					return
				}
				results[w] = append(results[w], s.Subscriber)
			}
		}()
	}
	wg.Wait()
	total := map[SubscriberID]int{}
	for _, r := range results {
		for id, n := range count(r) {
			total[id] += n
		}
	}
	want := map[SubscriberID]int{1: workers * rounds / 4, 2: workers * rounds / 4, 3: workers * rounds / 4, 4: workers * rounds / 4}
	if diff := cmp.Diff(want, total); diff != "" {
		t.Errorf("picks per member (-want +got):\n%s", diff)
	}
}

// TestGroupShrinks grows a group past its index threshold and shrinks it
// again: membership, order of the survivors and bookkeeping stay right.
func TestGroupShrinks(t *testing.T) {
	t.Parallel()
	tr := NewTrie()
	for id := 1; id <= 100; id++ {
		tr.Subscribe([]byte("$share/g/a"), sub(SubscriberID(id), 0))
	}
	for id := 100; id > 5; id-- {
		if !tr.Unsubscribe([]byte("$share/g/a"), SubscriberID(id)) {
			t.Fatalf("member %d not found", id)
		}
		checkInvariants(t, tr)
	}
	var m Matches
	tr.Match([]byte("a"), &m)
	var ids []SubscriberID
	for _, s := range m.Groups[0].AppendMembers(nil) {
		ids = append(ids, s.Subscriber)
	}
	if diff := cmp.Diff([]SubscriberID{1, 2, 3, 4, 5}, ids); diff != "" {
		t.Errorf("members (-want +got):\n%s", diff)
	}
	if c := cap(m.Groups[0].members.s); c > 32 {
		t.Errorf("5 members keep a list of capacity %d", c)
	}
}
