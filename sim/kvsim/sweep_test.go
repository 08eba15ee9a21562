package kvsim

import (
	"flag"
	"runtime"
	"sync"
	"testing"
	"time"
)

var seedsFlag = flag.Int("kv.seeds", 200, "seeds of TestSweep (half with 3 nodes, half with 5)")

// sweep runs seeds [from, from+n) on every core; odd seeds use 3 nodes,
// even seeds 5.
func sweep(o func(nodes int) Options, from uint64, n int, stopAtFirst bool) []*Result {
	out := make([]*Result, n)
	var mu sync.Mutex
	stop := false
	var wg sync.WaitGroup
	next := 0
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				done := stop
				mu.Unlock()
				if i >= n || done {
					return
				}
				seed := from + uint64(i)
				r := Run(o(nodesFor(seed)), seed)
				mu.Lock()
				out[i] = r
				if r.Failed() && stopAtFirst {
					stop = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

func nodesFor(seed uint64) int {
	if seed%2 == 1 {
		return 3
	}
	return 5
}

func TestSweep(t *testing.T) {
	start := time.Now()
	res := sweep(DefaultOptions, 1, *seedsFlag, false)
	var failed uint64
	var st Stats
	for _, r := range res {
		st.Add(r.Stats)
		if r.Failed() {
			failed++
			report(t, DefaultOptions(r.Nodes), r)
		}
	}
	t.Logf("%d seeds in %v: %d failed; %d operations answered; %d partitions, %d power losses, %d nodes replaced; %d splits, %d merges, %d snapshots, %d membership changes",
		len(res), time.Since(start).Round(time.Millisecond), failed, st.OpsOK, st.Partitions, st.Crashes, st.Replacements,
		st.Node.Splits, st.Node.Merges, st.Node.SnapshotsApplied, st.Node.ConfChanges)
}
