package sim

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSchedulerOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		at    []time.Duration // scheduling order
		want  string
		until time.Duration
	}{
		{"by time", []time.Duration{3, 1, 2}, "b c a", 10},
		{"ties by sequence", []time.Duration{1, 1, 0, 1}, "c a b d", 10},
		{"until stops", []time.Duration{1, 5, 20}, "a b", 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(1, 4)
			var got []string
			for i, d := range tt.at {
				name := string(rune('a' + i))
				s.After(d*time.Second, func() { got = append(got, name) })
			}
			s.Run(Epoch.Add(tt.until * time.Second))
			if d := cmp.Diff(tt.want, strings.Join(got, " ")); d != "" {
				t.Fatal(d)
			}
			if s.Now() != Epoch.Add(tt.until*time.Second) {
				t.Fatalf("clock at %v", s.Elapsed())
			}
		})
	}
}

func TestClockTimersDieWithProcess(t *testing.T) {
	t.Parallel()
	s := New(1, 4)
	c := s.NewClock(0)
	fired := 0
	c.AfterFunc(time.Second, func() { fired++ })
	stopped := c.AfterFunc(time.Second, func() { fired += 10 })
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop should report true once")
	}
	c.AfterFunc(3*time.Second, func() { fired += 100 })
	s.Run(Epoch.Add(2 * time.Second))
	c.Kill()
	s.Run(Epoch.Add(5 * time.Second))
	if fired != 1 {
		t.Fatalf("fired = %d, want 1", fired)
	}
}

// recorder is a Handler that keeps what it receives.
type recorder struct {
	data   []byte
	opened bool
	closed int // 1 FIN, 2 reset
}

func (r *recorder) Opened(*Endpoint)            { r.opened = true }
func (r *recorder) Data(ep *Endpoint, b []byte) { r.data = append(r.data, b...); ep.Consume(len(b)) }
func (r *recorder) Writable(*Endpoint)          {}
func (r *recorder) Closed(ep *Endpoint, reset bool) {
	r.closed = map[bool]int{false: 1, true: 2}[reset]
}

func TestNetworkStreams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// fault runs at 50ms, with the client endpoint and the server host.
		fault      func(n *Network, cl *Endpoint, a, b *Host)
		wantAll    bool // every byte arrives, in order
		wantServer int  // how the server end learns of the end (0: never)
	}{
		{"plain", func(*Network, *Endpoint, *Host, *Host) {}, true, 1},
		{"partition healed", func(n *Network, _ *Endpoint, a, b *Host) {
			n.Partition([]*Host{a}, []*Host{b})
			n.s.After(2*time.Second, n.HealAll)
		}, true, 1},
		{"reset", func(n *Network, cl *Endpoint, _, _ *Host) { n.Reset(cl.Conn) }, false, 2},
		{"half-open", func(n *Network, cl *Endpoint, _, _ *Host) { n.HalfOpen(cl.Conn, 0) }, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(7, 8)
			n := NewNetwork(s, LinkSpec{Latency: time.Millisecond, Jitter: 20 * time.Millisecond, Bandwidth: 1 << 20})
			n.Window = 1 << 10
			a, b := n.AddHost("a"), n.AddHost("b")
			srv := &recorder{}
			b.Listen(1, func(*Endpoint) Handler { return srv })
			cl := &recorder{}
			ep := a.Dial("b", 1, cl)
			var sent []byte
			for i := 0; i < 200; i++ {
				i := i
				s.After(time.Duration(i)*time.Millisecond, func() {
					chunk := []byte(fmt.Sprintf("<%d>", i))
					sent = append(sent, chunk...)
					ep.Write(chunk)
				})
			}
			s.After(50*time.Millisecond, func() { tt.fault(n, ep, a, b) })
			s.After(time.Second, ep.Close)
			s.Run(Epoch.Add(10 * time.Second))
			if !cl.opened {
				t.Fatal("not opened")
			}
			if !strings.HasPrefix(string(sent), string(srv.data)) {
				t.Fatalf("bytes out of order or corrupted:\n got %q", srv.data)
			}
			if tt.wantAll && len(srv.data) != len(sent) {
				t.Fatalf("got %d of %d bytes", len(srv.data), len(sent))
			}
			if srv.closed != tt.wantServer {
				t.Fatalf("server end closed=%d, want %d", srv.closed, tt.wantServer)
			}
		})
	}
}

// short is the scenario of the sweeps: 50 clients on two client hosts,
// every fault, a short workload phase and a quiescent end.
func short(d time.Duration) Scenario {
	f, _ := ParseFaults("network,crash,disk")
	f.Every = 3 * time.Second
	sc := Standard(d, 50, f)
	sc.Quiesce = 60 * time.Second
	return sc
}

// TestDeterminism runs seeds of the standard scenario twice at the same
// time (so that Pebble's goroutines of the two runs interleave differently)
// and requires identical traces, with power losses that keep no unsynced
// data and ones that keep some among them; and once with the in-memory
// broker.
func TestDeterminism(t *testing.T) {
	t.Parallel()
	sc := short(20 * time.Second)
	mem := short(20 * time.Second)
	mem.Broker.Durable = false
	twice := func(sc Scenario, seed uint64) (*Result, *Result) {
		var a, b *Result
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); a = Run(sc, seed) }()
		go func() { defer wg.Done(); b = Run(sc, seed) }()
		wg.Wait()
		return a, b
	}
	var losses, unsynced uint64
	hashes := map[uint64]uint64{}
	// Six seeds at least, and on until both kinds of power loss were seen
	// (which seeds have which depends on every random draw of the
	// simulation), at most twenty.
	seed := uint64(40)
	for ; seed < 46 || seed < 60 && (unsynced == 0 || losses == unsynced); seed++ {
		a, b := twice(sc, seed)
		if a.Hash != b.Hash || a.Events != b.Events || a.Deliveries != b.Deliveries || a.Runtime != b.Runtime {
			t.Fatalf("seed %d, same seed, different runs: %x/%d/%+v vs %x/%d/%+v", seed, a.Hash, a.Events, a.Runtime, b.Hash, b.Events, b.Runtime)
		}
		if prev, ok := hashes[a.Hash]; ok {
			t.Fatalf("seeds %d and %d gave the same trace %x", prev, seed, a.Hash)
		}
		hashes[a.Hash] = seed
		losses += a.Runtime.PowerLosses
		unsynced += a.Runtime.Unsynced
		if a.Events < 1000 || a.Deliveries == 0 || a.Faults.Total() == 0 {
			t.Fatalf("seed %d: suspiciously small run: %+v", seed, a)
		}
	}
	if unsynced == 0 || losses == unsynced {
		t.Fatalf("the seeds should include power losses with and without unsynced data kept: %d losses, %d keeping unsynced data", losses, unsynced)
	}
	// The in-memory broker, on a seed whose run has crashes (which seeds
	// do depends on every random draw of the simulation).
	crashed := false
	for seed := uint64(42); seed < 52 && !crashed; seed++ {
		a, b := twice(mem, seed)
		if a.Hash != b.Hash || a.Events != b.Events {
			t.Fatalf("in-memory broker, seed %d: %x/%d vs %x/%d", seed, a.Hash, a.Events, b.Hash, b.Events)
		}
		crashed = a.Faults.Crashes > 0
	}
	if !crashed {
		t.Fatal("in-memory broker: no run of seeds 42-51 had a crash")
	}
	t.Logf("%d seeds twice: %d power losses, %d keeping unsynced data; identical traces", seed-40, losses, unsynced)
}

// sweep runs seeds [from, to] of sc on all CPUs and returns the results
// in seed order. stop, when set, ends the sweep at the first result it
// accepts (later seeds may still run).
func sweep(sc Scenario, from, to uint64, stop func(*Result) bool) []*Result {
	res := make([]*Result, to-from+1)
	var next atomic.Uint64
	next.Store(from)
	var done atomic.Bool
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				seed := next.Add(1) - 1
				if seed > to {
					return
				}
				r := Run(sc, seed)
				res[seed-from] = r
				if stop != nil && stop(r) {
					done.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	return res
}

// The sweep of make sim: one-minute runs of the standard scenario, long
// enough for a client to pipeline a subscription change into a
// publisher's batch and for a power loss to follow (the ordering bug of
// issue 13 item 8 failed about one such seed in a hundred; no ten-second
// run of 300 reached it).
const (
	sweepDuration = time.Minute
	sweepDurable  = 100 // seeds of the durable broker
	sweepMemory   = 30  // seeds of the in-memory broker
)

// sweepScenario is the scenario of TestSweep and of the mutants: 50
// clients, every fault every 3 s on average, a minute of quiescence.
func sweepScenario(d time.Duration, durable bool) Scenario {
	sc := short(d)
	sc.Broker.Durable = durable
	return sc
}

// replayArgs are skybridge-sim's flags for sweepScenario.
func replayArgs(d time.Duration, durable bool) string {
	a := fmt.Sprintf("--duration %s --faults network,crash,disk --clients 50 --every 3s --quiesce 60s", d)
	if !durable {
		a += " --storage memory"
	}
	return a
}

// TestSweep runs sweepDurable seeds of the standard scenario (durable
// broker) with every fault, and sweepMemory with the in-memory broker;
// any failure prints the command that replays it.
func TestSweep(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("sweep skipped in -short mode")
	}
	for _, tt := range []struct {
		storage string
		seeds   uint64
	}{{"durable", sweepDurable}, {"memory", sweepMemory}} {
		t.Run(tt.storage, func(t *testing.T) {
			durable := tt.storage == "durable"
			sc := sweepScenario(sweepDuration, durable)
			start := time.Now()
			res := sweep(sc, 1, tt.seeds, nil)
			var events, msgs, deliveries, checks, stalls, firehoses uint64
			var virtual time.Duration
			var rt RuntimeStats
			byInv := map[Invariant][]uint64{}
			for _, r := range res {
				events += r.Events
				msgs += uint64(r.Messages)
				deliveries += r.Deliveries
				checks += r.ChecksTotal()
				virtual += r.Virtual
				rt.PowerLosses += r.Runtime.PowerLosses
				rt.Unsynced += r.Runtime.Unsynced
				stalls += r.Faults.DiskStalls
				if r.Firehose {
					firehoses++
				}
				if f := r.Failure; f != nil {
					byInv[f.Invariant] = append(byInv[f.Invariant], r.Seed)
					detail, _, _ := strings.Cut(f.Detail, "\n")
					t.Errorf("seed %d: %s: %s\n  replay: go run ./cmd/skybridge-sim run --seed %d %s",
						r.Seed, f.Invariant, detail, r.Seed, replayArgs(sweepDuration, durable))
				}
			}
			real := time.Since(start)
			for inv := Invariant(0); inv < numInvariants; inv++ {
				if s := byInv[inv]; len(s) > 0 {
					t.Logf("%s: %d seeds %v", inv, len(s), s)
				}
			}
			t.Logf("%d seeds in %v: %d events, %d messages, %d deliveries, %d checks, %d power losses (%d keeping unsynced data), %d disk stalls, %d firehoses, %v virtual (%.0fx real time on %d CPUs)",
				tt.seeds, real.Round(time.Millisecond), events, msgs, deliveries, checks, rt.PowerLosses, rt.Unsynced, stalls, firehoses, virtual,
				virtual.Seconds()/real.Seconds(), runtime.GOMAXPROCS(0))
		})
	}
}

// regressions are seeds that found a bug, with the scenario they ran:
// each must pass. A seed's history depends on every random draw of the
// simulator, so a seed found with an older workload may not replay the
// bug today; the bug's own test is in the package it was fixed in, and
// seeds that fail with today's simulator on the unfixed code join the
// list (checked by reverting the fix once).
var regressions = []struct {
	seed                     uint64
	duration, every, quiesce time.Duration
	bug                      string
}{
	// Issue 13 item 8 (impl/broker TestSessionChangesKeepTheirOrderOnDisk):
	// a SUBACKed subscription missing from disk after a power loss. Seeds
	// 124, 52 and 135 of skybridge-sim's defaults found it with the
	// workload of the time; 42 and 187 fail with today's on the broker
	// before the fix.
	{124, time.Minute, 8 * time.Second, 90 * time.Second, "subscription change overtaken by a publisher's batch"},
	{52, time.Minute, 8 * time.Second, 90 * time.Second, "subscription change overtaken by a publisher's batch"},
	{135, time.Minute, 8 * time.Second, 90 * time.Second, "subscription change overtaken by a publisher's batch"},
	{42, time.Minute, 3 * time.Second, 60 * time.Second, "subscription change overtaken by a publisher's batch"},
	{187, time.Minute, 3 * time.Second, 60 * time.Second, "subscription change overtaken by a publisher's batch"},
}

// TestRegressions runs the seeds of the regression list.
func TestRegressions(t *testing.T) {
	t.Parallel()
	for _, rg := range regressions {
		t.Run(strconv.FormatUint(rg.seed, 10), func(t *testing.T) {
			t.Parallel()
			f, _ := ParseFaults("network,crash,disk")
			f.Every = rg.every
			sc := Standard(rg.duration, 50, f)
			sc.Quiesce = rg.quiesce
			if r := Run(sc, rg.seed); r.Failure != nil {
				t.Errorf("seed %d (%s) fails again: %s: %s\n  replay: go run ./cmd/skybridge-sim run --seed %d --duration %s --every %s --quiesce %s",
					rg.seed, rg.bug, r.Failure.Invariant, r.Failure.Detail, rg.seed, rg.duration, rg.every, rg.quiesce)
			}
		})
	}
}

// TestPlantedBugs plants each known bug and asserts that a sweep catches
// it within a bounded number of seeds, with the invariant expected. A seed
// catches the bug only if the same seed passes without it, so that a
// failure of the broker itself is never taken for the planted bug's.
func TestPlantedBugs(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("planted bugs skipped in -short mode")
	}
	tests := []struct {
		bug   Bug
		want  []Invariant
		bound uint64
	}{
		{BugCrossTenant, []Invariant{InvTenant}, 5},
		{BugSkipRetainedDelete, []Invariant{InvRetained}, 20},
		{BugReorderQueued, []Invariant{InvOrder}, 40},
		{BugDropRedelivery, []Invariant{InvAtLeastOnce, InvSubscriptions, InvQueueBound}, 60},
		// Caught only when a power loss falls between the early
		// acknowledgement and the commit (about one seed in fifteen).
		// The loss shows as a message lost, a retained write undone, or a
		// QoS 2 message routed again because the broker forgot its
		// packet id (the publisher resends it; the subscriber already had
		// it).
		{BugAckBeforeDurable, []Invariant{InvAtLeastOnce, InvRetained, InvExactlyOnce}, 100},
	}
	for _, tt := range tests {
		t.Run(tt.bug.String(), func(t *testing.T) {
			base := short(20 * time.Second)
			sc := base
			sc.Bugs = tt.bug
			var mu sync.Mutex
			clean := map[uint64]*Result{}
			res := sweep(sc, 1, tt.bound, func(r *Result) bool {
				if r.Failure == nil {
					return false
				}
				c := Run(base, r.Seed)
				mu.Lock()
				clean[r.Seed] = c
				mu.Unlock()
				return c.Failure == nil
			})
			skipped := 0
			for _, r := range res {
				if r == nil || r.Failure == nil {
					continue
				}
				if c := clean[r.Seed]; c == nil || c.Failure != nil {
					skipped++ // the broker fails this seed without the planted bug
					continue
				}
				ok := false
				for _, inv := range tt.want {
					ok = ok || r.Failure.Invariant == inv
				}
				if !ok {
					t.Fatalf("seed %d caught %s by %s (%s), want one of %v", r.Seed, tt.bug, r.Failure.Invariant, r.Failure.Detail, tt.want)
				}
				detail, _, _ := strings.Cut(r.Failure.Detail, "\n")
				t.Logf("%s caught at seed %d by %s (%d earlier seeds fail without the bug): %s", tt.bug, r.Seed, r.Failure.Invariant, skipped, detail)
				return
			}
			t.Fatalf("%s not caught in %d seeds (%d fail without the bug)", tt.bug, tt.bound, skipped)
		})
	}
}
