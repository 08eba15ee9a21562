package raftkv

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// watchCache is what a watcher builds: on Reset it reads the prefix again
// (here: right away, from the cluster), then applies the events.
type watchCache struct {
	c      *tcluster
	at     NodeID
	seen   int
	kv     map[string]string
	resets int
}

func (w *watchCache) sync() {
	evs := w.c.events[w.at]
	for ; w.seen < len(evs); w.seen++ {
		ev := evs[w.seen]
		switch {
		case ev.Reset:
			w.resets++
			w.kv = map[string]string{}
			for k := []byte("k"); k != nil; {
				resp := w.c.must(w.at, &Request{Kind: ReqScan, Key: k, End: []byte("l")})
				for _, kv := range resp.KVs {
					w.kv[string(kv.Key)] = string(kv.Value)
				}
				k = resp.Resume
			}
			evs = w.c.events[w.at] // the read ran the cluster: more may have come
		case ev.End != nil:
			for k := range w.kv {
				if k >= string(ev.Key) && k < string(ev.End) {
					delete(w.kv, k)
				}
			}
		case ev.Deleted:
			delete(w.kv, string(ev.Key))
		default:
			w.kv[string(ev.Key)] = string(ev.Value)
		}
	}
}

func (w *watchCache) truth() map[string]string {
	out := map[string]string{}
	for k := []byte("k"); k != nil; {
		resp := w.c.must(1, &Request{Kind: ReqScan, Key: k, End: []byte("l")})
		for _, kv := range resp.KVs {
			out[string(kv.Key)] = string(kv.Value)
		}
		k = resp.Resume
	}
	return out
}

func TestWatchKeepsACacheCurrent(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, func(cfg *Config) { cfg.SplitBytes = 1500; cfg.MergeBytes = 0 })
	c.must(1, put("k0", "before"))
	w := &watchCache{c: c, at: 3}
	c.nodes[3].Watch(1, []byte("k"))
	c.collect(3)
	c.run(50, func() bool { w.sync(); return w.resets > 0 })
	if w.resets == 0 {
		t.Fatal("no Reset after Watch")
	}
	for i := range 150 {
		k := fmt.Sprintf("k%03d", i%40)
		at := NodeID(i%2*2 + 1) // n1 and n3: n2 goes down below
		switch i % 5 {
		case 3:
			c.must(at, &Request{Kind: ReqWrite, Ops: []Op{{Kind: OpDelete, Key: []byte(k)}}})
		default:
			c.must(at, put(k, fmt.Sprintf("v%d-%s", i, "0123456789012345678901234567890123456789")))
		}
		w.sync()
		if i == 100 {
			c.crash(2, false) // parts on n2 go: their pings fail, the watch registers again
		}
	}
	c.run(100, func() bool { w.sync(); return false })
	want := w.truth()
	w.sync()
	if diff := cmp.Diff(want, w.kv); diff != "" {
		t.Fatalf("cache differs from the store (-store +cache):\n%s", diff)
	}
	var st Stats
	for _, n := range c.nodes {
		st.Add(n.Stats())
	}
	if st.Splits == 0 || w.resets < 2 {
		t.Fatalf("want splits and more than one Reset: %d splits, %d resets", st.Splits, w.resets)
	}
	t.Logf("%d keys, %d resets, %d splits, %d watch resets", len(want), w.resets, st.Splits, st.WatchResets)
}
