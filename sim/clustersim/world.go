package clustersim

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/skybridge-mq/skybridge/impl/cluster"
	"github.com/skybridge-mq/skybridge/sim"
)

// Options shape a run.
type Options struct {
	Nodes          int           // 3 to 7
	Duration       time.Duration // of the faults
	Quiet          time.Duration // after them, before the checks
	HeartbeatEvery time.Duration
	SuspectAfter   time.Duration
	DeadAfter      time.Duration
	// ReconnectEvery is how often a node writes to a peer it reported
	// dead (none to one it reported left), as the gossip runtime's
	// reconnect loop joins dead members every reconnect_interval:
	// memberlist itself stops talking to them.
	ReconnectEvery time.Duration
}

// DefaultOptions are what the tests run.
func DefaultOptions() Options {
	return Options{Nodes: 5, Duration: 60 * time.Second, Quiet: 15 * time.Second,
		HeartbeatEvery: 200 * time.Millisecond, SuspectAfter: time.Second, DeadAfter: 3 * time.Second,
		ReconnectEvery: 5 * time.Second}
}

// Result is what a run found.
type Result struct {
	Seed     uint64
	Failures []string
	// What happened, to show that the faults did occur.
	Partitions, Crashes, Leaves, Returns int
	Restarted                            int // Changes that said Restarted
	Suspects, Deaths                     int // Suspect and Dead reports applied
	Hash                                 uint64
}

const port = 7946

type world struct {
	o     Options
	s     *sim.Sim
	net   *sim.Network
	nodes []*node
	res   *Result
	hash  []byte
	incs  map[string]uint64 // the last incarnation each node id started with
}

// Run runs one seed.
func Run(seed uint64, o Options) *Result {
	w := &world{o: o, s: sim.New(seed, 0), res: &Result{Seed: seed}, incs: map[string]uint64{}}
	w.net = sim.NewNetwork(w.s, sim.LinkSpec{Latency: time.Millisecond, Jitter: 2 * time.Millisecond, SpikeProb: 0.01, Spike: 100 * time.Millisecond})
	for i := range o.Nodes {
		n := &node{w: w, id: fmt.Sprintf("n%d", i+1)}
		n.host = w.net.AddHost(n.id)
		w.nodes = append(w.nodes, n)
	}
	for _, n := range w.nodes {
		n.start()
	}
	w.s.After(w.s.Uniform(time.Second, 3*time.Second), w.fault)
	end := sim.Epoch.Add(o.Duration)
	w.s.At(end, w.settle)
	w.s.Run(end.Add(o.Quiet))
	w.check()
	h := fnv.New64a()
	h.Write(w.hash)
	w.res.Hash = h.Sum64()
	return w.res
}

func (w *world) fail(format string, args ...any) {
	if len(w.res.Failures) < 20 {
		w.res.Failures = append(w.res.Failures, fmt.Sprintf("%v: ", w.s.Elapsed())+fmt.Sprintf(format, args...))
	}
}

// note feeds the run's hash (two runs of a seed must agree).
func (w *world) note(parts ...string) {
	w.hash = binary.AppendVarint(w.hash, int64(w.s.Elapsed()))
	for _, p := range parts {
		w.hash = append(w.hash, p...)
		w.hash = append(w.hash, 0)
	}
}

func (w *world) running() []*node {
	var out []*node
	for _, n := range w.nodes {
		if n.up {
			out = append(out, n)
		}
	}
	return out
}

// fault injects one fault, then schedules the next, until Duration.
func (w *world) fault() {
	if w.s.Elapsed() >= w.o.Duration {
		return
	}
	r := w.s.Rand
	switch k := r.IntN(10); {
	case k < 4: // a minority cut off for a while
		hosts := make([]*sim.Host, len(w.nodes))
		for i, n := range w.nodes {
			hosts[i] = n.host
		}
		r.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
		cut := 1 + r.IntN((len(hosts)-1)/2)
		w.net.Partition(hosts[:cut], hosts[cut:])
		w.res.Partitions++
		w.note("partition", hosts[0].Name)
		w.s.After(w.s.Uniform(time.Second, 8*time.Second), w.net.HealAll)
	case k < 7: // a crash, and a restart later
		if n := w.pick(func(n *node) bool { return n.up }); n != nil {
			n.crash()
			w.res.Crashes++
			w.s.After(w.s.Uniform(500*time.Millisecond, 6*time.Second), func() {
				if !n.up && !n.left && w.s.Elapsed() < w.o.Duration {
					n.start()
				}
			})
		}
	default: // a graceful leave; perhaps a return later
		if n := w.pick(func(n *node) bool { return n.up }); n != nil && len(w.running()) > 2 {
			n.leave()
			w.res.Leaves++
			if r.IntN(2) == 0 {
				w.s.After(w.s.Uniform(2*time.Second, 10*time.Second), func() {
					if !n.up && w.s.Elapsed() < w.o.Duration {
						n.left = false
						w.res.Returns++
						n.start()
					}
				})
			}
		}
	}
	w.s.After(w.s.Uniform(time.Second, 4*time.Second), w.fault)
}

func (w *world) pick(ok func(*node) bool) *node {
	var c []*node
	for _, n := range w.nodes {
		if ok(n) {
			c = append(c, n)
		}
	}
	if len(c) == 0 {
		return nil
	}
	return c[w.s.Rand.IntN(len(c))]
}

// settle ends the faults: the network heals, crashed nodes restart.
func (w *world) settle() {
	w.net.HealAll()
	for _, n := range w.nodes {
		if !n.up && !n.left {
			n.start()
		}
	}
}

// check compares the views at the end.
func (w *world) check() {
	run := w.running()
	for _, n := range run {
		v := n.m.View()
		byID := map[string]cluster.Member{}
		for _, m := range v.Members {
			byID[m.ID] = m
		}
		for _, o := range w.nodes {
			m, ok := byID[o.id]
			switch {
			case o == n:
				if !ok || !m.Local || m.State != cluster.StateAlive || m.Incarnation != n.inc {
					w.fail("%s's view of itself: %+v", n.id, m)
				}
			case o.up:
				if !ok || m.State != cluster.StateAlive || m.Incarnation != o.inc {
					w.fail("%s sees running %s (incarnation %d) as %v incarnation %d", n.id, o.id, o.inc, m.State, m.Incarnation)
				}
			case ok && m.State == cluster.StateAlive:
				w.fail("%s sees %s, which is gone, alive", n.id, o.id)
			}
		}
	}
	// A node that left and did not return: every running node that knew
	// it at its last incarnation says the same, and that is left as soon
	// as one of them heard it leave (their heartbeats relay what they saw
	// leave, as the gossip runtime's left set does). Dead everywhere is
	// right only when none of them heard its leaving heartbeats (it was
	// cut off, or the only ones who heard crashed since).
	for _, o := range w.nodes {
		if !o.left {
			continue
		}
		states := map[cluster.State][]string{}
		for _, n := range run {
			if m, ok := n.m.Member(o.id); ok && m.Incarnation == o.inc {
				states[m.State] = append(states[m.State], n.id)
			}
		}
		if len(states) > 1 {
			w.fail("running nodes disagree about %s, which left: %v", o.id, states)
		}
		// A node whose detector reported the leave shows it.
		for _, n := range run {
			if p := n.peers[o.id]; p.reported == cluster.Left && p.meta.Incarnation == o.inc {
				if m, _ := n.m.Member(o.id); m.State != cluster.StateLeft {
					w.fail("%s reported %s left, and its view says %v", n.id, o.id, m.State)
				}
			}
		}
	}
	// Every running node has the same view of the running nodes.
	summary := func(n *node) string {
		var s []string
		for _, m := range n.m.View().Members {
			if m.State == cluster.StateAlive {
				s = append(s, fmt.Sprintf("%s@%d", m.ID, m.Incarnation))
			}
		}
		slices.Sort(s)
		return fmt.Sprint(s)
	}
	for _, n := range run[1:] {
		if a, b := summary(run[0]), summary(n); a != b {
			w.fail("views differ: %s has %s, %s has %s", run[0].id, a, n.id, b)
		}
	}
}
