package edgesim

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

var (
	flagSeed     = flag.Uint64("seed", 0, "TestReplay: the seed")
	flagScenario = flag.String("scenario", "outage", "TestReplay: outage or mass")
	flagBugs     = flag.String("bugs", "none", "TestReplay: planted bugs (comma-separated)")
	flagEdges    = flag.Int("edges", 0, "TestReplay: number of nodes (0: the scenario's)")
	flagDuration = flag.Duration("duration", 0, "TestReplay: virtual duration of the workload (0: the scenario's)")
	flagSeeds    = flag.Int("seeds", 0, "TestOutage: number of seeds (0: $SKYBRIDGE_EDGESIM_SEEDS or 24)")
	flagTrace    = flag.Bool("tail", false, "TestReplay: print the trace's tail even when the run passes")
)

// The scenarios as make test runs them.
const (
	outageEdges    = 4
	outageDuration = 6 * time.Hour
	massEdges      = 50
)

func scenario(name string, edges int, d time.Duration) (Scenario, error) {
	switch name {
	case "outage":
		if edges == 0 {
			edges = outageEdges
		}
		if d == 0 {
			d = outageDuration
		}
		return Outage(edges, d), nil
	case "mass":
		if edges == 0 {
			edges = massEdges
		}
		sc := Mass(edges)
		if d != 0 {
			sc.Duration = d
		}
		return sc, nil
	}
	return Scenario{}, fmt.Errorf("unknown scenario %q", name)
}

func replayCommand(r *Result) string {
	cmd := fmt.Sprintf("go test ./sim/edgesim -run TestReplay -v -args -scenario=%s -seed=%d", r.Scenario, r.Seed)
	if r.Bugs != 0 {
		cmd += " -bugs=" + r.Bugs.String()
	}
	return cmd
}

func report(t *testing.T, r *Result) {
	t.Helper()
	t.Errorf("seed %d: %s\nreplay: %s", r.Seed, r.Failure, replayCommand(r))
	for _, l := range r.Tail {
		t.Log(l)
	}
}

func seeds() int {
	if *flagSeeds > 0 {
		return *flagSeeds
	}
	if n, err := strconv.Atoi(os.Getenv("SKYBRIDGE_EDGESIM_SEEDS")); err == nil && n > 0 {
		return n
	}
	return 24
}

// TestOutage runs the main scenario over many seeds: a few nodes through
// hours of partitions, power losses, cloud restarts, app crashes and
// expiring certificates, with the desired state changing meanwhile.
func TestOutage(t *testing.T) {
	n := seeds()
	var checks, appended, applied, dropped, boots, late, refused, faults atomic.Int64
	var worst atomic.Int64
	start := time.Now()
	t.Run("seeds", func(t *testing.T) {
		for seed := 1; seed <= n; seed++ {
			t.Run(strconv.Itoa(seed), func(t *testing.T) {
				t.Parallel()
				sc, _ := scenario("outage", 0, 0)
				r := Run(sc, uint64(seed))
				if r.Failure != nil {
					report(t, r)
				}
				var c uint64
				for _, x := range r.Checked {
					c += x
				}
				checks.Add(int64(c))
				appended.Add(int64(r.Appended))
				applied.Add(int64(r.Applied))
				dropped.Add(int64(r.Dropped))
				boots.Add(int64(r.Boots))
				late.Add(int64(r.LateRenewals))
				refused.Add(int64(r.Refused))
				for _, f := range r.Faults {
					faults.Add(int64(f))
				}
				for {
					w := worst.Load()
					if int64(r.ConvergeMax) <= w || worst.CompareAndSwap(w, int64(r.ConvergeMax)) {
						break
					}
				}
			})
		}
	})
	t.Logf("outage: %d seeds in %v (%d nodes, %v each): %d faults, %d checks, %d records appended, %d applied, %d dropped by policy, %d boots, %d certificates renewed after expiring offline, slowest final convergence %v",
		n, time.Since(start).Round(time.Millisecond), outageEdges, outageDuration, faults.Load(), checks.Load(), appended.Load(), applied.Load(),
		dropped.Load(), boots.Load(), late.Load(), time.Duration(worst.Load()))
	// A certificate that expired offline is refused when the node comes
	// back: if the broker never refused one, it does not check them (a
	// harness that once replaced the certificate check hid a planted bug).
	if late.Load() > 0 && refused.Load() == 0 {
		t.Errorf("%d certificates expired offline, and the broker refused no connection", late.Load())
	}
}

// TestMass: many nodes come back at once; the cloud's request rate stays
// under the bound.
func TestMass(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{1, 2} {
		sc, _ := scenario("mass", 0, 0)
		start := time.Now()
		r := Run(sc, seed)
		if r.Failure != nil {
			report(t, r)
			continue
		}
		t.Logf("mass seed %d: %d nodes, %v: at most %d requests/s after the reconnect (bound %d), %d records applied, converged in %v",
			seed, sc.Edges, time.Since(start).Round(time.Millisecond), r.MaxRate, sc.RequestBound, r.Applied, r.ConvergeMax)
	}
}

// TestDeterminism: a seed replays the same run.
func TestDeterminism(t *testing.T) {
	t.Parallel()
	sc := Outage(3, 3*time.Hour)
	a, b := Run(sc, 7), Run(sc, 7)
	if a.Hash != b.Hash || a.Events != b.Events || a.Applied != b.Applied {
		t.Fatalf("seed 7 twice: hash %x/%x, events %d/%d, applied %d/%d", a.Hash, b.Hash, a.Events, b.Events, a.Applied, b.Applied)
	}
	if a.Events == 0 || a.Applied == 0 {
		t.Fatal("an empty run proves nothing")
	}
}

// TestPlantedBugs: each planted bug is caught by the invariant that
// guards against it, within a few seeds.
func TestPlantedBugs(t *testing.T) {
	tests := []struct {
		bug      Bug
		scenario string
		want     Invariant
	}{
		{BugNoJitter, "mass", InvRequests},
		{BugNoDedupe, "outage", InvOutbox},
		{BugDeleteOnSend, "outage", InvOutbox},
		{BugStopAppsOffline, "outage", InvAppsRun},
		{BugWaitForCloud, "outage", InvAppsRun},
		{BugDesiredInMemory, "outage", InvNoRollback},
		{BugRenewOnlyOnline, "outage", InvConverge},
	}
	for _, tc := range tests {
		t.Run(tc.bug.String(), func(t *testing.T) {
			t.Parallel()
			const tries = 12
			for seed := uint64(1); seed <= tries; seed++ {
				sc, _ := scenario(tc.scenario, 0, 0)
				sc.Bugs = tc.bug
				r := Run(sc, seed)
				if r.Failure == nil {
					continue
				}
				if r.Failure.Inv != tc.want {
					t.Fatalf("seed %d: caught by %s, want %s: %s\nreplay: %s", seed, r.Failure.Inv, tc.want, r.Failure, replayCommand(r))
				}
				t.Logf("caught at seed %d by %s: %s", seed, r.Failure.Inv, r.Failure.Msg)
				return
			}
			t.Fatalf("not caught in %d seeds", tries)
		})
	}
}

// TestReplay runs one scenario and seed (see the flags); a failure's
// report prints the command.
func TestReplay(t *testing.T) {
	if *flagSeed == 0 {
		t.Skip("replay: give -args -seed=N [-scenario=outage|mass] [-bugs=...]")
	}
	sc, err := scenario(*flagScenario, *flagEdges, *flagDuration)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Bugs, err = ParseBugs(*flagBugs); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := Run(sc, *flagSeed)
	t.Logf("%s seed %d: %v wall, %v virtual, %d events (hash %x), records %d appended, %d dropped, %d applied; faults %v; boots %d; final convergence %v; max %d requests/s; cloud %+v",
		r.Scenario, r.Seed, time.Since(start).Round(time.Millisecond), r.Virtual, r.Events, r.Hash, r.Appended, r.Dropped, r.Applied,
		r.Faults, r.Boots, r.ConvergeMax, r.MaxRate, r.CloudStats)
	if r.Failure != nil {
		report(t, r)
	} else if *flagTrace {
		for _, l := range r.Tail {
			t.Log(l)
		}
	}
}
