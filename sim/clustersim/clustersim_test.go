package clustersim

import (
	"flag"
	"testing"
)

var seeds = flag.Int("clustersim.seeds", 100, "seeds to run")

// TestMembership runs seeds of partitions, crashes, restarts and leaves
// and checks the views (doc.go lists the checks).
func TestMembership(t *testing.T) {
	t.Parallel()
	var total Result
	for seed := uint64(1); seed <= uint64(*seeds); seed++ {
		r := Run(seed, DefaultOptions())
		if len(r.Failures) > 0 {
			t.Fatalf("seed %d failed (replay: go test ./sim/clustersim -run 'TestReplay' -clustersim.seed %d):\n%v", seed, seed, r.Failures)
		}
		total.Partitions += r.Partitions
		total.Crashes += r.Crashes
		total.Leaves += r.Leaves
		total.Returns += r.Returns
		total.Restarted += r.Restarted
		total.Suspects += r.Suspects
		total.Deaths += r.Deaths
	}
	t.Logf("%d seeds: %d partitions, %d crashes, %d leaves (%d returned); %d restarts seen, %d suspect and %d dead reports",
		*seeds, total.Partitions, total.Crashes, total.Leaves, total.Returns, total.Restarted, total.Suspects, total.Deaths)
	// The faults must have happened, or the checks prove nothing.
	if total.Partitions == 0 || total.Crashes == 0 || total.Leaves == 0 || total.Restarted == 0 || total.Deaths == 0 {
		t.Fatalf("faults missing: %+v", total)
	}
}

var seed = flag.Uint64("clustersim.seed", 1, "the seed TestReplay runs")

// TestReplay runs one seed twice: the same run, event for event.
func TestReplay(t *testing.T) {
	t.Parallel()
	a, b := Run(*seed, DefaultOptions()), Run(*seed, DefaultOptions())
	if a.Hash != b.Hash {
		t.Fatalf("seed %d: two runs differ (hash %x, %x)", *seed, a.Hash, b.Hash)
	}
	if len(a.Failures) > 0 {
		t.Fatalf("seed %d: %v", *seed, a.Failures)
	}
	t.Logf("seed %d: %+v", *seed, *a)
}
