package kvsim

import (
	"slices"
	"strings"
	"testing"
)

// bugBound is how many seeds each planted bug may take to be caught.
const bugBound = 100

// TestPlantedBugsAreCaught plants each bug in turn and requires a check to
// fail within bugBound seeds: a check that cannot fail proves nothing.
func TestPlantedBugsAreCaught(t *testing.T) {
	for _, bug := range BugNames() {
		opts := func(nodes int) Options {
			o := DefaultOptions(nodes)
			o.Bug = bug
			return o
		}
		res := sweep(opts, 1, bugBound, true)
		caught := false
		for _, r := range res {
			if r != nil && r.Failed() {
				var checks []string
				for _, f := range r.Failures {
					check, _, _ := strings.Cut(f, ":")
					if !slices.Contains(checks, check) {
						checks = append(checks, check)
					}
				}
				t.Logf("%s: caught at seed %d (%d nodes) by %s", bug, r.Seed, r.Nodes, strings.Join(checks, ", "))
				caught = true
				break
			}
		}
		if !caught {
			t.Errorf("%s: not caught in %d seeds", bug, bugBound)
		}
	}
}

// TestDeterminism runs seeds twice at once: same seed, same trace.
func TestDeterminism(t *testing.T) {
	for _, seed := range []uint64{3, 4} {
		o := DefaultOptions(nodesFor(seed))
		got := make(chan *Result, 2)
		for range 2 {
			go func() { got <- Run(o, seed) }()
		}
		a, b := <-got, <-got
		if a.Hash != b.Hash || a.Events != b.Events {
			t.Fatalf("seed %d: two runs differ: %x/%d events vs %x/%d", seed, a.Hash, a.Events, b.Hash, b.Events)
		}
		t.Logf("seed %d twice: %d events, hash %x", seed, a.Events, a.Hash)
	}
}
