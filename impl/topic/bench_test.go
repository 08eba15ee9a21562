package topic

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The 1M-subscription tries are built on first use by a benchmark only, so
// that `go test` without -bench stays fast.

const benchDevices = 400_000

// benchFilter appends filter kind k of device i ("tenant/dev/{i}/...").
func benchFilter(b []byte, kind string, i int) []byte {
	b = append(b, "tenant/dev/"...)
	b = strconv.AppendInt(b, int64(i), 10)
	return append(b, kind...)
}

// buildMixed builds the benchmark trie: 1,000,002 subscriptions.
//
//	400,000  tenant/dev/{i}/telemetry        (subscriber i)
//	400,000  tenant/dev/{i}/cmd              (subscriber i)
//	100,000  tenant/dev/{i}/+                (every 4th device, another subscriber)
//	 50,000  tenant/dev/{i}/#                (every 8th device)
//	 50,000  $share/ingest/tenant/dev/{i}/telemetry, 2 members (every 16th device)
//	      2  tenant/#, tenant/+/+/alarm      (monitoring)
//
// A telemetry topic matches 2 to 4 subscriptions and up to one group.
func buildMixed() *Trie {
	tr := NewTrie()
	var buf []byte
	for i := range benchDevices {
		id := SubscriberID(i + 1)
		buf = benchFilter(buf[:0], "/telemetry", i)
		tr.Subscribe(buf, Subscription{Subscriber: id, Options: Options{QoS: 1}})
		buf = benchFilter(buf[:0], "/cmd", i)
		tr.Subscribe(buf, Subscription{Subscriber: id, Options: Options{QoS: 1}})
		if i%4 == 0 {
			buf = benchFilter(buf[:0], "/+", i)
			tr.Subscribe(buf, Subscription{Subscriber: id + 1_000_000})
		}
		if i%8 == 0 {
			buf = benchFilter(buf[:0], "/#", i)
			tr.Subscribe(buf, Subscription{Subscriber: id + 2_000_000, Options: Options{ID: 7}})
		}
		if i%16 == 0 {
			buf = append(buf[:0], "$share/ingest/"...)
			buf = benchFilter(buf, "/telemetry", i)
			tr.Subscribe(buf, Subscription{Subscriber: id + 3_000_000})
			tr.Subscribe(buf, Subscription{Subscriber: id + 4_000_000})
		}
	}
	tr.Subscribe([]byte("tenant/#"), Subscription{Subscriber: 9_000_000})
	tr.Subscribe([]byte("tenant/+/+/alarm"), Subscription{Subscriber: 9_000_001})
	return tr
}

// buildExact builds 1,000,000 exact subscriptions tenant/dev/{i}/telemetry.
func buildExact() *Trie {
	tr := NewTrie()
	var buf []byte
	for i := range 1_000_000 {
		buf = benchFilter(buf[:0], "/telemetry", i)
		tr.Subscribe(buf, Subscription{Subscriber: SubscriberID(i + 1), Options: Options{QoS: 1}})
	}
	return tr
}

type builtTrie struct {
	once  sync.Once
	build func() *Trie
	trie  *Trie
	bytes float64 // heap bytes per subscription
}

func (bt *builtTrie) get(b *testing.B) *Trie {
	bt.once.Do(func() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		bt.trie = bt.build()
		runtime.GC()
		runtime.ReadMemStats(&after)
		bt.bytes = float64(after.HeapAlloc-before.HeapAlloc) / float64(bt.trie.Len())
	})
	return bt.trie
}

var (
	mixedTrie = &builtTrie{build: buildMixed}
	exactTrie = &builtTrie{build: buildExact}
)

// benchTopics returns n topics of random devices: 3/4 telemetry, 1/4 cmd.
func benchTopics(n int) [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	topics := make([][]byte, n)
	for i := range topics {
		kind := "/telemetry"
		if r.IntN(4) == 0 {
			kind = "/cmd"
		}
		topics[i] = benchFilter(nil, kind, r.IntN(benchDevices))
	}
	return topics
}

// BenchmarkMatch matches random device topics against the 1M mixed trie:
// ns/op is the mean; ns-median and ns-p99 are per-call latencies over 100k
// individually timed calls (each includes one clock read, reported as
// ns-clock so it can be subtracted).
func BenchmarkMatch(b *testing.B) {
	tr := mixedTrie.get(b)
	topics := benchTopics(1 << 16)
	var m Matches
	matched := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		m.Reset()
		tr.Match(topics[i&(len(topics)-1)], &m)
		matched += len(m.Subs) + len(m.Groups)
	}
	b.StopTimer()
	b.ReportMetric(float64(matched)/float64(b.N), "matches/op")
	b.ReportMetric(mixedTrie.bytes, "B/sub")
	median, p99, clock := matchLatency(tr, topics, &m, 100_000)
	b.ReportMetric(median, "ns-median")
	b.ReportMetric(p99, "ns-p99")
	b.ReportMetric(clock, "ns-clock")
}

// matchLatency times calls one by one and returns the median and 99th
// percentile in ns, and the median cost of the clock read itself.
func matchLatency(tr *Trie, topics [][]byte, m *Matches, n int) (median, p99, clock float64) {
	lat := make([]time.Duration, n)
	for i := range lat {
		tp := topics[(i*7919)&(len(topics)-1)]
		m.Reset()
		start := time.Now()
		tr.Match(tp, m)
		lat[i] = time.Since(start)
	}
	slices.Sort(lat)
	median, p99 = float64(lat[n/2]), float64(lat[n*99/100])
	for i := range lat {
		start := time.Now()
		lat[i] = time.Since(start)
	}
	slices.Sort(lat)
	return median, p99, float64(lat[n/2])
}

// BenchmarkMatchExact matches against 1M exact subscriptions only.
func BenchmarkMatchExact(b *testing.B) {
	tr := exactTrie.get(b)
	r := rand.New(rand.NewPCG(3, 4))
	topics := make([][]byte, 1<<16)
	for i := range topics {
		topics[i] = benchFilter(nil, "/telemetry", r.IntN(1_000_000))
	}
	var m Matches
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		m.Reset()
		tr.Match(topics[i&(len(topics)-1)], &m)
	}
	b.StopTimer()
	b.ReportMetric(exactTrie.bytes, "B/sub")
	median, p99, clock := matchLatency(tr, topics, &m, 100_000)
	b.ReportMetric(median, "ns-median")
	b.ReportMetric(p99, "ns-p99")
	b.ReportMetric(clock, "ns-clock")
}

// BenchmarkMatchSmall matches in a trie that fits in cache (1k devices).
func BenchmarkMatchSmall(b *testing.B) {
	tr := NewTrie()
	var buf []byte
	for i := range 1000 {
		buf = benchFilter(buf[:0], "/telemetry", i)
		tr.Subscribe(buf, Subscription{Subscriber: SubscriberID(i)})
		buf = benchFilter(buf[:0], "/+", i)
		tr.Subscribe(buf, Subscription{Subscriber: SubscriberID(i)})
	}
	tr.Subscribe([]byte("tenant/#"), Subscription{Subscriber: 1})
	topic := []byte("tenant/dev/500/telemetry")
	var m Matches
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		m.Reset()
		tr.Match(topic, &m)
	}
}

// BenchmarkSubscribe adds exact subscriptions to a growing trie.
func BenchmarkSubscribe(b *testing.B) {
	tr := NewTrie()
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		buf = benchFilter(buf[:0], "/telemetry", i)
		tr.Subscribe(buf, Subscription{Subscriber: SubscriberID(i)})
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "subs/s")
}

// BenchmarkSubscribeWildcard adds wildcard and shared subscriptions.
func BenchmarkSubscribeWildcard(b *testing.B) {
	tr := NewTrie()
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		switch i % 3 {
		case 0:
			buf = benchFilter(buf[:0], "/+", i)
		case 1:
			buf = benchFilter(buf[:0], "/#", i)
		default:
			buf = append(buf[:0], "$share/g/"...)
			buf = benchFilter(buf, "/+", i)
		}
		tr.Subscribe(buf, Subscription{Subscriber: SubscriberID(i)})
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "subs/s")
}

// BenchmarkUnsubscribe removes b.N exact subscriptions (added untimed) in
// random order, down to an empty trie.
func BenchmarkUnsubscribe(b *testing.B) {
	tr := NewTrie()
	filters := make([][]byte, b.N)
	for i := range filters {
		filters[i] = benchFilter(nil, "/telemetry", i)
		tr.Subscribe(filters[i], Subscription{Subscriber: SubscriberID(i)})
	}
	r := rand.New(rand.NewPCG(5, 6))
	order := r.Perm(b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for _, i := range order {
		tr.Unsubscribe(filters[i], SubscriberID(i))
	}
	b.StopTimer()
	if tr.Len() != 0 || tr.Nodes() != 0 {
		b.Fatalf("Len %d, Nodes %d", tr.Len(), tr.Nodes())
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "unsubs/s")
}

// BenchmarkPick picks from a group of 16 with each policy.
func BenchmarkPick(b *testing.B) {
	tr := NewTrie()
	for id := range 16 {
		tr.Subscribe([]byte("$share/g/a"), Subscription{Subscriber: SubscriberID(id)})
	}
	var m Matches
	tr.Match([]byte("a"), &m)
	g := m.Groups[0]
	r := rand.New(rand.NewPCG(1, 1))
	ok := func(id SubscriberID) bool { return id%2 == 0 }
	for _, p := range []Policy{RoundRobin, Random, Sticky} {
		b.Run(p.String(), func(b *testing.B) {
			b.ReportAllocs()
			for i := range b.N {
				g.Pick(p, uint64(i), r, ok)
			}
		})
	}
}

// BenchmarkMemoryLatency is a yardstick for the Match figures: one random
// dependent load in a 128 MB array (a cache and TLB miss), as a Match on
// the 1M trie makes a few of. ns-median is per load, timed like
// matchLatency.
func BenchmarkMemoryLatency(b *testing.B) {
	const n = 32 << 20
	next := make([]uint32, n)
	for i := range next {
		next[i] = uint32(i)
	}
	// Sattolo's algorithm: one cycle through every element.
	r := rand.New(rand.NewPCG(9, 9))
	for i := n - 1; i > 0; i-- {
		j := r.IntN(i)
		next[i], next[j] = next[j], next[i]
	}
	p := uint32(0)
	b.ResetTimer()
	for range b.N {
		p = next[p]
	}
	b.StopTimer()
	lat := make([]time.Duration, 100_000)
	for i := range lat {
		start := time.Now()
		p = next[p]
		lat[i] = time.Since(start)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2]), "ns-median")
	runtime.KeepAlive(p)
}
