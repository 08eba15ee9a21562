package sim

import (
	"fmt"
	"runtime"
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
	f, _ := ParseFaults("network,crash")
	f.Every = 3 * time.Second
	sc := Standard(d, 50, f)
	sc.Quiesce = 60 * time.Second
	return sc
}

func TestDeterminism(t *testing.T) {
	t.Parallel()
	sc := short(20 * time.Second)
	a, b, c := Run(sc, 42), Run(sc, 42), Run(sc, 43)
	if a.Hash != b.Hash || a.Events != b.Events || a.Deliveries != b.Deliveries {
		t.Fatalf("same seed, different runs: %x/%d vs %x/%d", a.Hash, a.Events, b.Hash, b.Events)
	}
	if a.Hash == c.Hash {
		t.Fatalf("seeds 42 and 43 gave the same trace %x", a.Hash)
	}
	if a.Events < 1000 || a.Deliveries == 0 || a.Faults.Total() == 0 {
		t.Fatalf("suspiciously small run: %+v", a)
	}
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

// TestSweep runs 200 seeds of the standard scenario with every fault; any
// failure prints the command that replays it.
func TestSweep(t *testing.T) {
	if testing.Short() {
		t.Skip("sweep skipped in -short mode")
	}
	sc := short(10 * time.Second)
	start := time.Now()
	res := sweep(sc, 1, 200, nil)
	var events, msgs, deliveries, checks uint64
	var virtual time.Duration
	for _, r := range res {
		events += r.Events
		msgs += uint64(r.Messages)
		deliveries += r.Deliveries
		checks += r.ChecksTotal()
		virtual += r.Virtual
		if f := r.Failure; f != nil {
			t.Errorf("seed %d: %s: %s\n  replay: go run ./cmd/skybridge-sim run --seed %d --duration 10s --faults network,crash --clients 50 --every 3s --quiesce 60s",
				r.Seed, f.Invariant, f.Detail, r.Seed)
		}
	}
	real := time.Since(start)
	t.Logf("200 seeds in %v: %d events, %d messages, %d deliveries, %d checks, %v virtual (%.0fx real time on %d CPUs)",
		real.Round(time.Millisecond), events, msgs, deliveries, checks, virtual, virtual.Seconds()/real.Seconds(), runtime.GOMAXPROCS(0))
}

// TestPlantedBugs plants each known bug and asserts that a sweep catches
// it within a bounded number of seeds, with the invariant expected.
func TestPlantedBugs(t *testing.T) {
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
	}
	for _, tt := range tests {
		t.Run(tt.bug.String(), func(t *testing.T) {
			sc := short(20 * time.Second)
			sc.Bugs = tt.bug
			res := sweep(sc, 1, tt.bound, func(r *Result) bool { return r.Failure != nil })
			for _, r := range res {
				if r == nil || r.Failure == nil {
					continue
				}
				ok := false
				for _, inv := range tt.want {
					ok = ok || r.Failure.Invariant == inv
				}
				if !ok {
					t.Fatalf("seed %d caught %s by %s (%s), want one of %v", r.Seed, tt.bug, r.Failure.Invariant, r.Failure.Detail, tt.want)
				}
				t.Logf("%s caught at seed %d by %s: %s", tt.bug, r.Seed, r.Failure.Invariant, r.Failure.Detail)
				return
			}
			t.Fatalf("%s not caught in %d seeds", tt.bug, tt.bound)
		})
	}
}
