package topic

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// sub makes a subscription whose subscription identifier says which filter
// it belongs to in the tables below.
func sub(id SubscriberID, subID uint32) Subscription {
	return Subscription{Subscriber: id, Options: Options{QoS: 1, ID: subID}}
}

// TestMatchTable checks matching on fixed examples: each filter i is
// subscribed by subscriber 1 with subscription identifier i+1, and each
// topic lists the identifiers it must match.
func TestMatchTable(t *testing.T) {
	t.Parallel()
	filters := []string{
		"sport/tennis/player1/#", // 1
		"sport/#",                // 2
		"#",                      // 3
		"sport/tennis/+",         // 4
		"sport/+",                // 5
		"+/+",                    // 6
		"/+",                     // 7
		"+",                      // 8
		"$SYS/#",                 // 9
		"+/monitor/Clients",      // 10
		"$SYS/monitor/+",         // 11
		"a//b",                   // 12
		"a/+/b",                  // 13
		"+/+/+",                  // 14
		"/",                      // 15
		"a/b",                    // 16
		"A/b",                    // 17
		"caf\u00e9",              // 18: precomposed é
		"cafe\u0301",             // 19: e + combining acute
		"a/b/",                   // 20
		"$share",                 // 21 (not shared: no '/')
	}
	tests := []struct {
		name  string
		topic string
		want  []uint32
	}{
		{"spec example: # matches the parent level", "sport/tennis/player1", []uint32{1, 2, 3, 4, 14}},
		{"spec example: # below", "sport/tennis/player1/ranking", []uint32{1, 2, 3}},
		{"spec example: # deep", "sport/tennis/player1/score/wimbledon", []uint32{1, 2, 3}},
		{"sport/# matches sport", "sport", []uint32{2, 3, 8}},
		{"+ matches an empty level", "sport/", []uint32{2, 3, 5, 6}},
		{"leading empty level", "/finance", []uint32{3, 6, 7}},
		{"only separators", "/", []uint32{3, 6, 7, 15}},
		{"empty middle level", "a//b", []uint32{3, 12, 13, 14}},
		{"$ topics skip first-level wildcards [v5 MQTT-4.7.2-1] [v3.1.1 MQTT-4.7.2-1]", "$SYS/monitor/Clients", []uint32{9, 11}},
		{"$ topic one level [v5 MQTT-4.7.2-1] [v3.1.1 MQTT-4.7.2-1]", "$SYS", []uint32{9}},
		{"$ anywhere else is ordinary [v5 MQTT-4.7.2-1] [v3.1.1 MQTT-4.7.2-1]", "x/$SYS", []uint32{3, 6}},
		{"no case folding [v5 MQTT-4.7.3-4] [v3.1.1 MQTT-4.7.3-4]", "A/b", []uint32{3, 6, 17}},
		{"no case folding the other way [v5 MQTT-4.7.3-4] [v3.1.1 MQTT-4.7.3-4]", "a/b", []uint32{3, 6, 16}},
		{"no Unicode normalisation [v5 MQTT-4.7.3-4] [v3.1.1 MQTT-4.7.3-4]", "caf\u00e9", []uint32{3, 8, 18}},
		{"no Unicode normalisation, decomposed [v5 MQTT-4.7.3-4] [v3.1.1 MQTT-4.7.3-4]", "cafe\u0301", []uint32{3, 8, 19}},
		{"trailing slash is a level [v5 MQTT-4.7.3-4] [v3.1.1 MQTT-4.7.3-4]", "a/b/", []uint32{3, 14, 20}},
		{"$share as a topic", "$share", []uint32{21}},
		{"nothing for a deep $ topic", "$other/x/y", nil},
	}
	tr := NewTrie()
	for i, f := range filters {
		if err := ValidFilter([]byte(f)); err != nil {
			t.Fatalf("table filter %q: %v", f, err)
		}
		tr.Subscribe([]byte(f), sub(1, uint32(i+1)))
	}
	checkInvariants(t, tr)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var m Matches
			tr.Match([]byte(tc.topic), &m)
			var got []uint32
			for _, s := range m.Subs {
				got = append(got, s.ID)
			}
			slices.Sort(got)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Match(%q) identifiers (-want +got):\n%s", tc.topic, diff)
			}
			for _, id := range got {
				if f := filters[id-1]; !refMatch(f, tc.topic) {
					t.Errorf("reference disagrees: %q does not match %q", f, tc.topic)
				}
			}
		})
	}
}

func TestSubscribeReplaces(t *testing.T) {
	t.Parallel()
	tr := NewTrie()
	type step struct {
		Op      string
		Filter  string
		Sub     SubscriberID
		QoS     byte
		Existed bool
		Len     int
	}
	steps := []step{
		{"sub", "a/b", 1, 0, false, 1},
		{"sub", "a/b", 1, 2, true, 1}, // same subscriber, same filter: replace
		{"sub", "a/b", 2, 1, false, 2},
		{"sub", "a/+", 1, 1, false, 3},          // another filter of subscriber 1
		{"sub", "$share/g/a/b", 1, 1, false, 4}, // shared is a different subscription
		{"sub", "$share/g/a/b", 1, 0, true, 4},
		{"sub", "$share/h/a/b", 1, 0, false, 5}, // another group
		{"unsub", "a/c", 1, 0, false, 5},        // never subscribed
		{"unsub", "a/b/", 1, 0, false, 5},       // character by character
		{"unsub", "$share/g/a/+", 1, 0, false, 5},
		{"unsub", "$share/g/a/b", 2, 0, false, 5}, // 2 is not a member
		{"unsub", "a/b", 1, 0, true, 4},
		{"unsub", "a/b", 1, 0, false, 4},
		{"unsub", "$share/g/a/b", 1, 0, true, 3},
		{"unsub", "$share/h/a/b", 1, 0, true, 2},
		{"unsub", "a/+", 1, 0, true, 1},
		{"unsub", "a/b", 2, 0, true, 0},
	}
	var got []step
	for _, s := range steps {
		g := s
		if s.Op == "sub" {
			g.Existed = tr.Subscribe([]byte(s.Filter), Subscription{Subscriber: s.Sub, Options: Options{QoS: s.QoS}})
		} else {
			g.Existed = tr.Unsubscribe([]byte(s.Filter), s.Sub)
		}
		g.Len = tr.Len()
		got = append(got, g)
		checkInvariants(t, tr)
	}
	if diff := cmp.Diff(steps, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if tr.Nodes() != 0 {
		t.Errorf("%d nodes left in an empty trie", tr.Nodes())
	}
}

func TestReplaceKeepsOrderAndOptions(t *testing.T) {
	t.Parallel()
	tr := NewTrie()
	for id := SubscriberID(1); id <= 20; id++ { // past subIdxMin, so the index is used
		tr.Subscribe([]byte("x"), sub(id, 0))
	}
	tr.Subscribe([]byte("x"), sub(7, 99))
	tr.Unsubscribe([]byte("x"), 3) // the last entry (20) moves into 3's place
	var m Matches
	tr.Match([]byte("x"), &m)
	var ids []SubscriberID
	for _, s := range m.Subs {
		ids = append(ids, s.Subscriber)
		if s.Subscriber == 7 && s.ID != 99 {
			t.Errorf("subscriber 7 has identifier %d after replacement, want 99", s.ID)
		}
	}
	want := []SubscriberID{1, 2, 20, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	checkInvariants(t, tr)
}

func TestMatchGroupsOnce(t *testing.T) {
	t.Parallel()
	tr := NewTrie()
	tr.Subscribe([]byte("$share/g/a/+"), sub(1, 0))
	tr.Subscribe([]byte("$share/g/a/+"), sub(2, 0))
	tr.Subscribe([]byte("$share/g/a/#"), sub(3, 0)) // same name, another filter: another group
	tr.Subscribe([]byte("$share/h/a/+"), sub(4, 0))
	tr.Subscribe([]byte("a/+"), sub(1, 0))
	var m Matches
	got := trieMatch(tr, "a/b", &m)
	want := matchResult{
		Subs: []Subscription{sub(1, 0)},
		Groups: []groupResult{
			{"g", "a/#", []Subscription{sub(3, 0)}},
			{"g", "a/+", []Subscription{sub(1, 0), sub(2, 0)}},
			{"h", "a/+", []Subscription{sub(4, 0)}},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// A '$' topic is matched by a shared group on "$x/#", not on "#".
	tr.Subscribe([]byte("$share/g/#"), sub(5, 0))
	tr.Subscribe([]byte("$share/g/$x/#"), sub(6, 0))
	got = trieMatch(tr, "$x/y", &m)
	want = matchResult{Groups: []groupResult{{"g", "$x/#", []Subscription{sub(6, 0)}}}}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("$ topic (-want +got):\n%s", diff)
	}
}

// TestMatchOrderDeterministic replays the same random history of
// subscribes and unsubscribes (enough subscribers per node to use an index
// map) several times: Match must report the same slice, in the same order,
// every time, so map iteration order cannot be leaking into it.
func TestMatchOrderDeterministic(t *testing.T) {
	t.Parallel()
	build := func() []Subscription {
		tr := NewTrie()
		r := rand.New(rand.NewPCG(7, 7))
		for i := range 3000 {
			f := fmt.Sprintf("d/%d/+", r.IntN(50))
			if i%3 == 0 {
				f = "d/#"
			}
			id := SubscriberID(r.IntN(200))
			if r.IntN(4) == 0 {
				tr.Unsubscribe([]byte(f), id)
			} else {
				tr.Subscribe([]byte(f), sub(id, uint32(i)))
			}
		}
		var m Matches
		tr.Match([]byte("d/7/x"), &m)
		return m.Subs
	}
	first := build()
	if len(first) < 20 {
		t.Fatalf("only %d matches: the test does not exercise much", len(first))
	}
	for range 5 {
		if diff := cmp.Diff(first, build()); diff != "" {
			t.Fatalf("same history, different order (-first +again):\n%s", diff)
		}
	}
}

// randomCase says how random filters and topics are drawn.
type randomCase struct {
	name        string
	levels      []string // topic levels; filters also use '+' and '#'
	maxDepth    int
	subscribers int
	groups      []string
	ops         int // operations per round
	rounds      int
}

var randomCases = []randomCase{
	// A tiny alphabet so that matches are frequent: empty levels, '$'
	// levels, a level that looks like a share prefix.
	// Two levels too long to be held in an edge, with the same first 19
	// bytes.
	{"small", []string{"a", "b", "", "$s", "$share", "0123456789abcdefghijX", "0123456789abcdefghijY"}, 4, 6, []string{"g", "h"}, 200, 60},
	// Enough distinct levels and subscribers to switch edges to tables
	// and subscriber lists to indexes, and back.
	{"wide", wideLevels(40), 3, 40, []string{"g", "h", "i"}, 3000, 8},
}

func wideLevels(n int) []string {
	l := []string{"", "$s"}
	for i := range n {
		l = append(l, strconv.Itoa(i))
		if i%4 == 0 { // long levels, sharing their first 15 bytes
			l = append(l, "a-level-name-longer-than-an-edge-holds-"+strconv.Itoa(i))
		}
	}
	return l
}

func (c randomCase) topic(r *rand.Rand) string {
	n := 1 + r.IntN(c.maxDepth)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = c.levels[r.IntN(len(c.levels))]
	}
	return strings.Join(parts, "/")
}

// filter returns a random valid filter. The "$share" level can make an
// invalid one ("$share/a" has no filter after its share name): draw again.
func (c randomCase) filter(r *rand.Rand) string {
	for {
		if f := c.rawFilter(r); refValidFilter(f) {
			return f
		}
	}
}

func (c randomCase) rawFilter(r *rand.Rand) string {
	n := 1 + r.IntN(c.maxDepth)
	parts := make([]string, n)
	for i := range parts {
		switch x := r.IntN(8); {
		case x == 0:
			parts[i] = "+"
		case x == 1 && i == n-1:
			parts[i] = "#"
		default:
			parts[i] = c.levels[r.IntN(len(c.levels))]
		}
	}
	f := strings.Join(parts, "/")
	if r.IntN(5) == 0 {
		f = "$share/" + c.groups[r.IntN(len(c.groups))] + "/" + f
	}
	return f
}

// TestMatchRandom compares Match with the reference on random filters and
// topics, while subscribing, replacing and unsubscribing at random, and
// checks that unsubscribing everything leaves no node behind.
func TestMatchRandom(t *testing.T) {
	t.Parallel()
	for ci, c := range randomCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(1, uint64(ci)))
			var m Matches
			compared := 0
			for round := range c.rounds {
				tr, ref := NewTrie(), newRefTrie()
				var filters []string // every filter subscribed this round, for unsubscribes
				compare := func() {
					topic := c.topic(r)
					got, want := trieMatch(tr, topic, &m), ref.match(topic)
					if sameResult(want, got) {
						compared++
						return
					}
					if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
						t.Fatalf("round %d: Match(%q) (-reference +trie):\n%s", round, topic, diff)
					}
					compared++
				}
				for op := range c.ops {
					switch x := r.IntN(10); {
					case x < 5:
						f := c.filter(r)
						filters = append(filters, f)
						s := Subscription{Subscriber: SubscriberID(1 + r.IntN(c.subscribers)),
							Options: Options{QoS: byte(r.IntN(3)), NoLocal: r.IntN(2) == 0, ID: uint32(op)}}
						if got, want := tr.Subscribe([]byte(f), s), ref.subscribe(f, s); got != want {
							t.Fatalf("round %d: Subscribe(%q, %d) = %v, want %v", round, f, s.Subscriber, got, want)
						}
					case x < 7 && len(filters) > 0:
						f := filters[r.IntN(len(filters))]
						id := SubscriberID(1 + r.IntN(c.subscribers))
						if got, want := tr.Unsubscribe([]byte(f), id), ref.unsubscribe(f, id); got != want {
							t.Fatalf("round %d: Unsubscribe(%q, %d) = %v, want %v", round, f, id, got, want)
						}
					default:
						compare()
					}
					if tr.Len() != len(ref.subs) {
						t.Fatalf("round %d: Len %d, reference %d", round, tr.Len(), len(ref.subs))
					}
				}
				checkInvariants(t, tr)
				// Remove everything, in random order, comparing on the way.
				keys := make([]refKey, 0, len(ref.subs))
				for k := range ref.subs {
					keys = append(keys, k)
				}
				slices.SortFunc(keys, func(a, b refKey) int {
					return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
				})
				r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
				for i, k := range keys {
					if !tr.Unsubscribe([]byte(k.filter), k.id) {
						t.Fatalf("round %d: Unsubscribe(%q, %d) found nothing", round, k.filter, k.id)
					}
					ref.unsubscribe(k.filter, k.id)
					if i%8 == 0 {
						compare()
					}
				}
				checkInvariants(t, tr)
				if tr.Len() != 0 || tr.Nodes() != 0 {
					t.Fatalf("round %d: after unsubscribing everything Len %d, Nodes %d", round, tr.Len(), tr.Nodes())
				}
			}
			if compared < 2000 {
				t.Errorf("only %d comparisons", compared)
			}
			t.Logf("%d comparisons", compared)
		})
	}
}

// TestChurn subscribes 100k random filters (some shared, some duplicates)
// and unsubscribes them in another random order: the trie must be empty,
// with no node left.
func TestChurn(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	tr := NewTrie()
	type entry struct {
		filter []byte
		id     SubscriberID
	}
	const n = 100_000
	entries := make([]entry, 0, n)
	added := 0
	for range n {
		var b []byte
		if r.IntN(10) == 0 {
			b = fmt.Appendf(b, "$share/g%d/", r.IntN(20))
		}
		depth := 1 + r.IntN(6)
		for l := range depth {
			if l > 0 {
				b = append(b, '/')
			}
			switch x := r.IntN(20); {
			case x == 0:
				b = append(b, '+')
			case x == 1 && l == depth-1:
				b = append(b, '#')
			default:
				b = strconv.AppendInt(b, int64(r.IntN(20+l*l*50)), 36)
			}
		}
		e := entry{b, SubscriberID(r.IntN(5000))}
		if !tr.Subscribe(e.filter, Subscription{Subscriber: e.id}) {
			added++
			entries = append(entries, e)
		}
	}
	if tr.Len() != added || added < n*9/10 {
		t.Fatalf("Len %d after %d new subscriptions", tr.Len(), added)
	}
	nodes := tr.Nodes()
	checkInvariants(t, tr)
	r.Shuffle(len(entries), func(i, j int) { entries[i], entries[j] = entries[j], entries[i] })
	for i, e := range entries {
		if !tr.Unsubscribe(e.filter, e.id) {
			t.Fatalf("Unsubscribe(%q, %d) found nothing", e.filter, e.id)
		}
		if i == len(entries)/2 {
			checkInvariants(t, tr)
		}
	}
	if tr.Len() != 0 || tr.Nodes() != 0 {
		t.Fatalf("after churn: Len %d, Nodes %d (had %d nodes)", tr.Len(), tr.Nodes(), nodes)
	}
	if tr.root.x != nil || tr.root.kids != nil || tr.root.plus != nil || tr.root.nsub != 0 {
		t.Fatalf("root keeps memory after churn: %+v", tr.root)
	}
}

// TestMatchNoAlloc checks that Match allocates nothing once Matches has
// grown, on a trie with edge tables, leaves in edges, wildcards and groups.
func TestMatchNoAlloc(t *testing.T) {
	tr := NewTrie()
	for i := range 2000 {
		tr.Subscribe(fmt.Appendf(nil, "t/dev/%d/telemetry", i), sub(SubscriberID(i), 0))
		if i%10 == 0 {
			tr.Subscribe(fmt.Appendf(nil, "t/dev/%d/+", i), sub(SubscriberID(i), 1))
			tr.Subscribe(fmt.Appendf(nil, "$share/g/t/dev/%d/#", i), sub(SubscriberID(i), 2))
		}
	}
	tr.Subscribe([]byte("t/#"), sub(1, 3))
	topics := [][]byte{[]byte("t/dev/10/telemetry"), []byte("t/dev/11/telemetry"), []byte("t/nothing"), []byte("$SYS/x")}
	var m Matches
	for _, tp := range topics {
		tr.Match(tp, &m) // grow
	}
	allocs := testing.AllocsPerRun(200, func() {
		for _, tp := range topics {
			m.Reset()
			tr.Match(tp, &m)
		}
	})
	if allocs != 0 {
		t.Errorf("Match allocates %v times per run", allocs)
	}
	m.Reset()
	tr.Match(topics[0], &m)
	if len(m.Subs) != 3 || len(m.Groups) != 1 {
		t.Errorf("t/dev/10/telemetry: %d subscriptions and %d groups, want 3 and 1", len(m.Subs), len(m.Groups))
	}
}

// TestMatchAnyBytes matches hostile topics (not valid names) against a
// trie that also holds hostile filters: nothing may panic, and the
// filters can be removed again.
func TestMatchAnyBytes(t *testing.T) {
	t.Parallel()
	odd := []string{"", "/", "//", "#", "+", "#/#", "a/#/b", "+#", "$share/", "$share/g", "$share//", "$share/g/", "$share/g/#/x", "\x00", "$", "$/+", strings.Repeat("/", 5000), strings.Repeat("+/", 100)}
	tr := NewTrie()
	for i, f := range odd {
		tr.Subscribe([]byte(f), sub(1, uint32(i)))
		tr.Subscribe([]byte(f), sub(2, uint32(i)))
	}
	checkInvariants(t, tr)
	var m Matches
	for _, tp := range append(odd, "a/b", "$share/g/a", strings.Repeat("a/", 30000)) {
		m.Reset()
		tr.Match([]byte(tp), &m)
	}
	tr.Match(nil, &m)
	tr.Match([]byte("a"), nil)
	for _, f := range odd {
		for id := SubscriberID(1); id <= 2; id++ {
			if !tr.Unsubscribe([]byte(f), id) {
				t.Errorf("Unsubscribe(%q, %d) found nothing", f, id)
			}
		}
	}
	if tr.Len() != 0 || tr.Nodes() != 0 {
		t.Errorf("Len %d, Nodes %d after removing everything", tr.Len(), tr.Nodes())
	}
}

func TestMatchesReset(t *testing.T) {
	t.Parallel()
	tr := NewTrie()
	tr.Subscribe([]byte("$share/g/a"), sub(1, 0))
	tr.Subscribe([]byte("a"), sub(1, 0))
	var m Matches
	tr.Match([]byte("a"), &m)
	tr.Match([]byte("a"), &m) // Match appends
	if len(m.Subs) != 2 || len(m.Groups) != 2 {
		t.Fatalf("two Match calls: %d subscriptions, %d groups", len(m.Subs), len(m.Groups))
	}
	groups := m.Groups
	m.Reset()
	if len(m.Subs) != 0 || len(m.Groups) != 0 || groups[0] != nil {
		t.Errorf("Reset left %d subscriptions, %d groups, group pointer %p", len(m.Subs), len(m.Groups), groups[0])
	}
}

func TestZeroTrie(t *testing.T) {
	t.Parallel()
	var tr Trie
	var m Matches
	tr.Match([]byte("a/0123456789abcdefghij"), &m) // a long level before any seed exists
	if tr.Unsubscribe([]byte("a"), 1) {
		t.Error("Unsubscribe on an empty trie found something")
	}
	tr.Subscribe([]byte("a/0123456789abcdefghij"), sub(1, 0))
	tr.Match([]byte("a/0123456789abcdefghij"), &m)
	if len(m.Subs) != 1 {
		t.Errorf("zero Trie: %d matches, want 1", len(m.Subs))
	}
	checkInvariants(t, &tr)
}

// TestLayout pins the sizes the memory figures depend on (64-bit only).
func TestLayout(t *testing.T) {
	t.Parallel()
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are for 64-bit platforms")
	}
	got := map[string]uintptr{
		"Subscription": unsafe.Sizeof(Subscription{}),
		"edge":         unsafe.Sizeof(edge{}),
		"node":         unsafe.Sizeof(node{}),
		"nodeWithKids": unsafe.Sizeof(nodeWithKids{}),
	}
	want := map[string]uintptr{"Subscription": 16, "edge": 64, "node": 64, "nodeWithKids": 192}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sizes (-want +got):\n%s", diff)
	}
}
