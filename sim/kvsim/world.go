package kvsim

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/skybridge-mq/skybridge/impl/raftkv"
	"github.com/skybridge-mq/skybridge/sim"
)

// Faults says which faults a run injects.
type Faults struct {
	Partition bool // cut a minority of nodes off, heal later
	Loss      bool // drop and duplicate raft messages (rates drawn per run)
	Crash     bool // power loss of a node (unsynced writes may vanish), restart later
	Stall     bool // a node's fsyncs hang for a while
	Replace   bool // a node dies for good, is declared dead, a new node joins
}

// AllFaults enables every fault.
var AllFaults = Faults{Partition: true, Loss: true, Crash: true, Stall: true, Replace: true}

func (f Faults) String() string {
	var s []string
	for _, x := range []struct {
		on   bool
		name string
	}{{f.Partition, "partition"}, {f.Loss, "loss"}, {f.Crash, "crash"}, {f.Stall, "stall"}, {f.Replace, "replace"}} {
		if x.on {
			s = append(s, x.name)
		}
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

// ParseFaults reads a comma-separated list ("all", "none" or names).
func ParseFaults(s string) (Faults, error) {
	var f Faults
	for _, name := range strings.Split(s, ",") {
		switch strings.TrimSpace(name) {
		case "all":
			f = AllFaults
		case "none", "":
		case "partition":
			f.Partition = true
		case "loss":
			f.Loss = true
		case "crash":
			f.Crash = true
		case "stall":
			f.Stall = true
		case "replace":
			f.Replace = true
		default:
			return f, fmt.Errorf("unknown fault %q", name)
		}
	}
	return f, nil
}

// Options configure a run.
type Options struct {
	Nodes    int           // 3 or 5 (any number from 1 works)
	Clients  int           // concurrent clients
	Duration time.Duration // virtual time with load and faults
	Faults   Faults
	Bug      string // a planted bug (Bugs), "" for none

	Tick               time.Duration
	FsyncMin, FsyncMax time.Duration
	Think              time.Duration // mean pause between a client's operations
	ClientTimeout      time.Duration
	Keys               int // single-key registers
	BulkValue          int // bytes of a bulk value
	Config             raftkv.Config
	// Observe, when set, hears every node's replica changes (splits,
	// merges, snapshots, replicas created and destroyed): for debugging.
	Observe func(node raftkv.NodeID, at time.Duration, msg string)
}

// DefaultOptions is the standard run: small ranges (they split and merge
// under the load), a short log (snapshots), every fault.
func DefaultOptions(nodes int) Options {
	cfg := raftkv.DefaultConfig()
	cfg.RequestTicks = 20
	cfg.SplitBytes = 6 << 10
	cfg.SplitWrites = 150
	cfg.MergeBytes = 3 << 10
	cfg.LogKeep, cfg.LogMax = 10, 100
	cfg.DeadAfterTicks = 150
	if nodes >= 5 {
		cfg.Learners = 1 // a non-voting replica per range, serving stale reads
	}
	return Options{
		Nodes: nodes, Clients: 4, Duration: 20 * time.Second, Faults: AllFaults,
		Tick: 100 * time.Millisecond, FsyncMin: 500 * time.Microsecond, FsyncMax: 4 * time.Millisecond,
		Think: 20 * time.Millisecond, ClientTimeout: 3 * time.Second, Keys: 8, BulkValue: 200,
		Config: cfg,
	}
}

// Bugs are the planted bugs a run can carry, by name.
var Bugs = map[string]raftkv.Knobs{
	"ack-before-apply":        {AckBeforeApply: true},
	"read-without-read-index": {ReadWithoutReadIndex: true},
	"snapshot-no-clear":       {SnapshotNoClear: true},
	"snapshot-live-data":      {SnapshotLiveData: true},
	"no-sync":                 {NoSync: true},
	"merge-drops-data":        {MergeDropsData: true},
	"watch-keeps-split":       {WatchKeepsSplit: true},
}

// BugNames lists Bugs in order.
func BugNames() []string {
	var out []string
	for k := range Bugs {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Stats counts what a run did.
type Stats struct {
	OpsOK, OpsFailed, OpsUnknown, ClientTimeouts uint64
	Writes                                       uint64 // acknowledged writes
	Partitions, Crashes, Stalls, Replacements    uint64
	RaftDropped, RaftDuplicated                  uint64
	Linearized, Inconclusive                     int
	Node                                         raftkv.Stats
	// RangeSeconds sums, over the seconds of the run, the ranges that
	// existed (the user ranges any running node held): divided by
	// Seconds, the mean number of ranges.
	RangeSeconds, Seconds uint64
}

// Add adds another run's counts (a sweep's totals).
func (s *Stats) Add(o Stats) {
	s.OpsOK += o.OpsOK
	s.OpsFailed += o.OpsFailed
	s.OpsUnknown += o.OpsUnknown
	s.ClientTimeouts += o.ClientTimeouts
	s.Writes += o.Writes
	s.Partitions += o.Partitions
	s.Crashes += o.Crashes
	s.Stalls += o.Stalls
	s.Replacements += o.Replacements
	s.RaftDropped += o.RaftDropped
	s.RaftDuplicated += o.RaftDuplicated
	s.Linearized += o.Linearized
	s.Inconclusive += o.Inconclusive
	s.Node.Add(o.Node)
	s.RangeSeconds += o.RangeSeconds
	s.Seconds += o.Seconds
}

// Result is the outcome of one run.
type Result struct {
	Seed     uint64
	Nodes    int
	Failures []string
	Hash     uint64
	Events   uint64
	Virtual  time.Duration
	Stats    Stats
	Tail     []string
}

// Failed reports whether a check failed.
func (r *Result) Failed() bool { return len(r.Failures) > 0 }

// Replay is the command that runs this seed again.
func (r *Result) Replay(o Options) string {
	s := fmt.Sprintf("go run ./cmd/skybridge-kv sim --seed %d --nodes %d --duration %s --faults %s", r.Seed, r.Nodes, o.Duration, o.Faults)
	if o.Bug != "" {
		s += " --bug " + o.Bug
	}
	return s
}

// world is one run.
type world struct {
	opts     Options
	seed     uint64
	s        *sim.Sim
	net      *sim.Network
	nodes    []*nodeProc
	initial  []raftkv.NodeID
	nextNode raftkv.NodeID
	clients  []*client
	watcher  *watcher
	workload *workload
	history  []porcupine.Operation
	stale    []porcupine.Operation
	written  map[string][]string // every value written per key (lookup only)
	loss     float64
	dup      float64
	stopping bool
	replaced int
	failures []string
	// lastAdminErr is the last error of an operator's call (for reports).
	lastAdminErr string
	stats        Stats
}

func (w *world) fail(check, msg string) {
	if len(w.failures) < 20 {
		w.failures = append(w.failures, check+": "+msg)
	}
}

func (w *world) nodeByID(id raftkv.NodeID) *nodeProc {
	for _, p := range w.nodes {
		if p.id == id {
			return p
		}
	}
	return nil
}

// Run runs one seed.
func Run(o Options, seed uint64) (res *Result) {
	w := &world{opts: o, seed: seed, s: sim.New(seed, 64), written: map[string][]string{}}
	if o.Bug != "" {
		k, ok := Bugs[o.Bug]
		if !ok {
			return &Result{Seed: seed, Failures: []string{"unknown bug " + o.Bug}}
		}
		w.opts.Config.Knobs = k
	}
	defer func() {
		if p := recover(); p != nil {
			w.fail("no-panic", fmt.Sprintf("%v\n%s", p, debug.Stack()))
			res = w.result()
		}
		for _, p := range w.nodes {
			if p.node != nil {
				p.node.Close()
			}
		}
	}()
	w.net = sim.NewNetwork(w.s, sim.LinkSpec{Latency: time.Millisecond, Jitter: 2 * time.Millisecond, SpikeProb: 0.01, Spike: 50 * time.Millisecond})
	if o.Faults.Loss {
		w.loss = w.s.Rand.Float64() * 0.05
		w.dup = w.s.Rand.Float64() * 0.05
	}
	for i := 1; i <= o.Nodes; i++ {
		w.initial = append(w.initial, raftkv.NodeID(i))
	}
	w.nextNode = raftkv.NodeID(o.Nodes + 1)
	for _, id := range w.initial {
		w.newNode(id, false)
	}
	w.workload = newWorkload(w)
	for i := range o.Clients {
		w.newClient(i)
	}
	w.newWatcher()
	w.s.After(w.s.Exp(2*time.Second), w.fault)
	w.s.After(time.Second, w.verify)
	w.s.Run(sim.Epoch.Add(o.Duration))
	w.finish()
	w.check()
	return w.result()
}

func (w *world) result() *Result {
	for _, p := range w.nodes {
		w.stats.Node.Add(p.totals())
		w.stats.RaftDropped += p.dropped
		w.stats.RaftDuplicated += p.dupd
	}
	return &Result{Seed: w.seed, Nodes: w.opts.Nodes, Failures: w.failures, Hash: w.s.Trace.Hash(),
		Events: w.s.Trace.Count(), Virtual: w.s.Elapsed(), Stats: w.stats, Tail: w.s.Trace.Tail()}
}

// verify checks every running node's replicas against their data, every
// second of virtual time.
func (w *world) verify() {
	ranges := map[raftkv.RangeID]bool{}
	for _, p := range w.up() {
		if err := p.node.Verify(); err != nil {
			w.fail("replica-state", err.Error())
		}
		for _, lr := range p.node.Ranges() {
			if lr.Desc.RangeID != raftkv.MetaRangeID {
				ranges[lr.Desc.RangeID] = true
			}
		}
	}
	w.stats.RangeSeconds += uint64(len(ranges))
	w.stats.Seconds++
	if !w.stopping {
		w.s.After(time.Second, w.verify)
	}
}

// up returns the nodes running now.
func (w *world) up() []*nodeProc {
	var out []*nodeProc
	for _, p := range w.nodes {
		if p.up {
			out = append(out, p)
		}
	}
	return out
}

// active returns the nodes that belong to the cluster (not replaced).
func (w *world) active() []*nodeProc {
	var out []*nodeProc
	for _, p := range w.nodes {
		if !p.gone {
			out = append(out, p)
		}
	}
	return out
}

// fault injects one fault and schedules the next.
func (w *world) fault() {
	if w.stopping {
		return
	}
	defer func() { w.s.After(w.s.Exp(2*time.Second), w.fault) }()
	f := w.opts.Faults
	var kinds []func() bool
	if f.Partition {
		kinds = append(kinds, w.partition)
	}
	if f.Crash {
		kinds = append(kinds, w.crash)
	}
	if f.Stall {
		kinds = append(kinds, w.stall)
	}
	if f.Replace && w.replaced == 0 && w.s.Chance(0.3) {
		kinds = append(kinds, w.replace)
	}
	if len(kinds) == 0 {
		return
	}
	kinds[w.s.Rand.IntN(len(kinds))]()
}

// minority is how many nodes may be down or cut off at once.
func (w *world) minority() int { return (len(w.active()) - 1) / 2 }

func (w *world) partition() bool {
	act := w.active()
	if w.minority() == 0 {
		return false
	}
	k := 1 + w.s.Rand.IntN(w.minority())
	perm := w.s.Rand.Perm(len(act))
	// Half the time the cut isolates the leader of the registers' range:
	// the hard case for reads (a deposed leader that does not know it yet).
	isolate := w.s.Chance(0.5)
	if isolate {
		key := []byte("u" + w.workload.keys[w.s.Rand.IntN(len(w.workload.keys))])
		for i, p := range act {
			if !p.up {
				continue
			}
			for _, lr := range p.node.Ranges() {
				if lr.Leader && lr.Desc.Contains(key) {
					j := slices.Index(perm, i)
					perm[0], perm[j] = perm[j], perm[0]
				}
			}
		}
	}
	var a, b []*sim.Host
	for i, j := range perm {
		if i < k {
			a = append(a, act[j].host)
		} else {
			b = append(b, act[j].host)
		}
	}
	// Clients stay with the node they are connected to (a cut between
	// sites, each with its own clients), so both sides keep working. When
	// a leader is isolated, the writers fail over to the majority: reads
	// on the old leader's side then race writes acknowledged on the other.
	for _, c := range w.clients {
		side := w.s.Chance(0.5)
		if c.node != nil {
			side = slices.Contains(a, c.node.host)
		}
		if isolate && c.id%2 == 0 && side {
			c.failover(act[perm[k+w.s.Rand.IntN(len(act)-k)]])
			side = false
		}
		if side {
			a = append(a, c.host)
		} else {
			b = append(b, c.host)
		}
	}
	w.net.Partition(a, b)
	w.stats.Partitions++
	w.s.Note(sim.KindFault, 0, 0, fmt.Sprintf("partition %d nodes", k))
	heal := w.s.Uniform(time.Second, 6*time.Second)
	if isolate {
		heal = w.s.Uniform(2500*time.Millisecond, 6*time.Second) // past the old leader's step-down
	}
	w.s.After(heal, func() {
		w.net.HealAll()
		w.s.Note(sim.KindFault, 0, 0, "heal")
	})
	return true
}

func (w *world) crash() bool {
	up := w.up()
	down := len(w.active()) - len(up)
	if len(up) == 0 || down >= w.minority() {
		return false
	}
	p := up[w.s.Rand.IntN(len(up))]
	p.crash()
	w.stats.Crashes++
	w.s.After(w.s.Uniform(500*time.Millisecond, 5*time.Second), func() {
		if !p.gone && !p.up {
			p.start(p.joined)
		}
	})
	return true
}

func (w *world) stall() bool {
	up := w.up()
	if len(up) == 0 {
		return false
	}
	p := up[w.s.Rand.IntN(len(up))]
	p.stall(w.s.Now().Add(w.s.Uniform(100*time.Millisecond, 2*time.Second)))
	w.stats.Stalls++
	w.s.Note(sim.KindFault, p.host.ID, 0, fmt.Sprintf("n%d disk stall", p.id))
	return true
}

// replace: a node dies for good; an operator declares it dead; a new
// node (new ID, empty disk) joins.
func (w *world) replace() bool {
	up := w.up()
	if len(up) < len(w.active()) || len(up) < 3 {
		return false
	}
	victim := up[w.s.Rand.IntN(len(up))]
	victim.crash()
	victim.gone = true
	w.replaced++
	w.stats.Replacements++
	w.s.Note(sim.KindFault, victim.host.ID, 0, fmt.Sprintf("n%d gone for good", victim.id))
	w.s.After(w.s.Uniform(500*time.Millisecond, 2*time.Second), func() {
		w.declareDead(victim.id, 0)
	})
	w.s.After(w.s.Uniform(2*time.Second, 4*time.Second), func() {
		id := w.nextNode
		w.nextNode++
		w.newNode(id, true)
		w.s.Note(sim.KindFault, 0, 0, fmt.Sprintf("n%d joins", id))
	})
	return true
}

// declareDead asks a running node to declare id dead, until one answers.
func (w *world) declareDead(id raftkv.NodeID, attempt int) {
	up := w.up()
	if attempt > 20 {
		w.fail("replace", fmt.Sprintf("could not declare n%d dead (last error %s)", id, w.lastAdminErr))
		return
	}
	retry := func() { w.s.After(time.Second, func() { w.declareDead(id, attempt+1) }) }
	if len(up) == 0 {
		retry()
		return
	}
	p := up[w.s.Rand.IntN(len(up))]
	p.nextSubID++
	sid := p.nextSubID
	p.adminWait(sid, func(resp *raftkv.Response) {
		if resp.Err != nil {
			w.lastAdminErr = fmt.Sprintf("n%d: %v", p.id, resp.Err)
			retry()
		}
	})
	p.node.DeclareDead(sid, id)
	p.after()
}

// finish ends the load and the faults, brings every node back, lets the
// cluster settle, and reads every key once more.
func (w *world) finish() {
	w.stopping = true
	w.net.HealAll()
	for _, p := range w.nodes {
		p.stalled = time.Time{}
		if !p.up && !p.gone {
			p.start(p.joined)
		}
	}
	keys := slices.Clone(w.workload.keys)
	keys = append(keys, w.workload.scanKeys...)
	for i, c := range w.clients {
		c.final = nil
		for j, k := range keys {
			if j%len(w.clients) == i {
				c.final = append(c.final, k)
			}
		}
		if c.cur == nil && c.thinkE == nil {
			c.think()
		}
	}
	end := w.s.Now().Add(60 * time.Second)
	for w.s.Now().Before(end) {
		w.s.Run(w.s.Now().Add(time.Second))
		done := true
		for _, c := range w.clients {
			if len(c.final) > 0 {
				done = false
			}
		}
		if done && w.converged() == "" && w.watcher.idle() {
			// Events still travelling reach the watcher; then, the
			// replicas agreeing again, its cache must be the store's.
			w.s.Run(w.s.Now().Add(2 * time.Second))
			for range 10 {
				if w.converged() == "" && w.watcher.idle() {
					break
				}
				w.s.Run(w.s.Now().Add(time.Second))
			}
			w.checkCache()
			return
		}
	}
	var stuck []string
	for _, c := range w.clients {
		if len(c.final) > 0 {
			stuck = append(stuck, fmt.Sprintf("c%d %v", c.id, c.final))
		}
	}
	if len(stuck) > 0 {
		w.fail("liveness", fmt.Sprintf("could not read within 60 s after the faults ended: %s\n%s", strings.Join(stuck, ", "), w.dump()))
	}
	if why := w.converged(); why != "" {
		w.fail("convergence", why+"\n"+w.dump())
	}
	w.checkCache()
	w.verify()
}

// dump describes every running node's replicas.
func (w *world) dump() string {
	var b strings.Builder
	for _, p := range w.nodes {
		if !p.up {
			fmt.Fprintf(&b, "  n%d down (gone=%v)\n", p.id, p.gone)
			continue
		}
		for _, lr := range p.node.Ranges() {
			fmt.Fprintf(&b, "  n%d: %v applied=%d leader=%v term=%d frozen=%v bytes=%d\n", p.id, lr.Desc, lr.Applied, lr.Leader, lr.Term, lr.Frozen, lr.LiveBytes)
		}
	}
	return b.String()
}

// converged checks that every range's replicas, as its leader describes
// them, hold the same applied index and the same data ("" when so).
func (w *world) converged() string {
	type lead struct {
		p  *nodeProc
		lr raftkv.LocalRange
	}
	leaders := map[raftkv.RangeID]lead{}
	var ids []raftkv.RangeID
	for _, p := range w.up() {
		for _, lr := range p.node.Ranges() {
			if lr.Leader && lr.Desc.Initialized() {
				if _, ok := leaders[lr.Desc.RangeID]; !ok {
					ids = append(ids, lr.Desc.RangeID)
				}
				leaders[lr.Desc.RangeID] = lead{p, lr}
			}
		}
	}
	slices.Sort(ids)
	if len(ids) == 0 {
		return "no range has a leader"
	}
	// The leaders' spans must tile the key space: a range without a leader
	// is a hole.
	descs := make([]*raftkv.Descriptor, 0, len(ids))
	for _, id := range ids {
		descs = append(descs, leaders[id].lr.Desc)
	}
	slices.SortFunc(descs, func(a, b *raftkv.Descriptor) int { return bytes.Compare(a.Start, b.Start) })
	at := []byte("")
	for _, d := range descs {
		if !bytes.Equal(d.Start, at) {
			return fmt.Sprintf("no leader for the keys from %q to %q", at, d.Start)
		}
		at = d.End
	}
	if at != nil {
		return fmt.Sprintf("no leader for the keys from %q", at)
	}
	for _, id := range ids {
		l := leaders[id]
		want, err := l.p.node.RangeData(id)
		if err != nil {
			return err.Error()
		}
		for _, rd := range l.lr.Desc.Replicas {
			p := w.nodeByID(rd.Node)
			if p == nil || !p.up {
				return fmt.Sprintf("r%d replica on n%d is not running", id, rd.Node)
			}
			var got *raftkv.LocalRange
			for _, lr := range p.node.Ranges() {
				if lr.Desc.RangeID == id {
					got = &lr
				}
			}
			if got == nil || got.ReplicaID != rd.ID || got.Applied != l.lr.Applied {
				return fmt.Sprintf("r%d replica %d on n%d not caught up with the leader on n%d (applied %d)", id, rd.ID, rd.Node, l.p.id, l.lr.Applied)
			}
			data, err := p.node.RangeData(id)
			if err != nil {
				return err.Error()
			}
			if !slices.EqualFunc(data, want, func(a, b raftkv.KV) bool { return string(a.Key) == string(b.Key) && string(a.Value) == string(b.Value) }) {
				return fmt.Sprintf("DIVERGED: r%d on n%d holds %d pairs, the leader on n%d %d, at applied %d", id, rd.Node, len(data), l.p.id, len(want), l.lr.Applied)
			}
		}
	}
	return ""
}

// newRNG is the generator CrashClone draws from.
func newRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)) }
