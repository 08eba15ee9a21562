package sim

import (
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/skybridge-mq/skybridge/impl/retain"
	"github.com/skybridge-mq/skybridge/impl/tenant"
)

// Scenario is a simulation as a Go value: the hosts, the processes on
// them, the links between them, the workloads, the faults and the checks.
// Run executes it for one seed.
type Scenario struct {
	Name string
	// Duration is the virtual time the workload and the faults run;
	// Quiesce the virtual time after it in which faults are healed, the
	// broker is up, clients reconnect and drain, before the final checks.
	Duration, Quiesce time.Duration
	Hosts             []string
	// Processes name what runs where. Today one kind exists (ProcBroker,
	// durable or in memory as Broker says); the cluster and edge work add
	// raft nodes, edge agents and the cloud.
	Processes []ProcessSpec
	Broker    BrokerSpec
	// Link is the default link between two distinct hosts; Links overrides
	// pairs.
	Link      LinkSpec
	Links     []LinkOverride
	Workloads []WorkloadSpec
	// Firehose, when its Prob is above 0, may add a fast stream that makes
	// a session's packet identifiers wrap (firehose.go).
	Firehose FirehoseSpec
	Faults   FaultSpec
	Checks   CheckSpec
	// Bugs planted on purpose (tests of the checker).
	Bugs Bug
	// ProbeEvery is the mean interval of retained-store probes per tenant.
	ProbeEvery time.Duration
	// TraceTail is how many events the failure report shows.
	TraceTail int
	// Debug, when set, receives a line for each step the oracle models
	// (connects, closes, wills, crashes).
	Debug func(string)
}

// ProcessKind says what a process is.
type ProcessKind string

// Process kinds.
const (
	// ProcBroker is a single-node broker. With BrokerSpec.Durable it keeps
	// its state in its store on the host's disk and a crash is a power loss;
	// without, a crash loses its sessions and retained messages.
	ProcBroker ProcessKind = "broker"
)

// ProcessSpec places a process on a host.
type ProcessSpec struct {
	Name string
	Host string
	Kind ProcessKind
}

// LinkOverride sets the link between two hosts.
type LinkOverride struct {
	A, B string
	Spec LinkSpec
}

// FaultSpec says which faults a run injects.
type FaultSpec struct {
	// Network: partitions of a client host from the broker (healed later),
	// connection resets, half-open connections.
	Network bool
	// Crash: the broker process crashes and restarts.
	Crash bool
	// Disk: the durable broker's disk stalls (every fsync of the window
	// completes only when it ends), as a disk does under a firmware hiccup,
	// a full device queue or a saturated cloud volume: commits pile up
	// while the broker keeps running.
	Disk bool
	// Every is the mean time between two faults.
	Every time.Duration
	// PartitionMax, DownMax and StallMax bound how long a partition, a
	// crashed broker or a stalled disk lasts.
	PartitionMax, DownMax, StallMax time.Duration
}

// ParseFaults parses "network,crash,disk" (or "none").
func ParseFaults(s string) (FaultSpec, error) {
	f := FaultSpec{Every: 8 * time.Second, PartitionMax: 30 * time.Second, DownMax: 5 * time.Second, StallMax: 3 * time.Second}
	for _, p := range strings.Split(s, ",") {
		switch strings.TrimSpace(p) {
		case "", "none":
		case "network":
			f.Network = true
		case "crash":
			f.Crash = true
		case "disk":
			f.Disk = true
		default:
			return f, fmt.Errorf("unknown fault %q (want network, crash, disk)", p)
		}
	}
	return f, nil
}

func (f FaultSpec) String() string {
	var s []string
	if f.Network {
		s = append(s, "network")
	}
	if f.Crash {
		s = append(s, "crash")
	}
	if f.Disk {
		s = append(s, "disk")
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

// CheckSpec selects the checks beyond those that always run.
type CheckSpec struct {
	// Porcupine checks the retained store and subscription histories for
	// linearizability at the end of the run.
	Porcupine bool
}

// StandardTenants are the tenants of the standard scenario: acme with the
// default settings and deny rules (no publishing under x/0, no
// subscription that may reach x/1), globex with tight settings (QoS 1 at
// most, three topic levels, sessions of at most 20 s, a Receive Maximum
// of 8).
func StandardTenants() []TenantSpec {
	g := tenant.Default()
	g.MaxQoS, g.MaxTopicLevels, g.MaxSessionExpiry, g.ReceiveMaximum = 1, 3, 20, 8
	return []TenantSpec{
		{Name: "acme", Settings: tenant.Default(), DenyPublish: []string{"x/0/#"}, DenySubscribe: []string{"x/1/#"}},
		{Name: "globex", Settings: g},
	}
}

// Standard returns the standard scenario: one broker host and two client
// hosts with clients spread over them, two tenants (StandardTenants), the
// given faults, and every check.
func Standard(duration time.Duration, clients int, faults FaultSpec) Scenario {
	perHost := clients / 2
	b := DefaultBrokerSpec()
	b.Tenants = StandardTenants()
	return Scenario{
		Name: "standard", Duration: duration, Quiesce: 90 * time.Second,
		Hosts:     []string{"broker", "edge-a", "edge-b"},
		Processes: []ProcessSpec{{Name: "broker", Host: "broker", Kind: ProcBroker}},
		Broker:    b,
		Link: LinkSpec{Latency: 2 * time.Millisecond, Jitter: 8 * time.Millisecond, SpikeProb: 0.01,
			Spike: 200 * time.Millisecond, Bandwidth: 10 << 20},
		Links: []LinkOverride{{A: "broker", B: "edge-b", Spec: LinkSpec{Latency: 20 * time.Millisecond,
			Jitter: 30 * time.Millisecond, SpikeProb: 0.02, Spike: 500 * time.Millisecond, Bandwidth: 256 << 10}}},
		Workloads: []WorkloadSpec{DefaultWorkload("edge-a", perHost), DefaultWorkload("edge-b", clients-perHost)},
		Firehose:  DefaultFirehose(),
		Faults:    faults, Checks: CheckSpec{Porcupine: true},
		ProbeEvery: 10 * time.Second, TraceTail: 40,
	}
}

// World is a running scenario.
type World struct {
	Scenario   *Scenario
	Sim        *Sim
	Net        *Network
	Oracle     *Oracle
	Broker     *BrokerProc
	BrokerHost *Host
	Clients    []*Client
	monitors   map[string]*Client
	tenants    []string
	limitsOf   map[string]*tenantLimits
	firehose   *firehose
	bugs       Bug
	stopping   bool
	partition  bool
	Faults     FaultStats
}

// FaultStats counts injected faults.
type FaultStats struct {
	Partitions, Resets, HalfOpen, Crashes, DiskStalls uint64
}

// Total returns the number of faults.
func (f FaultStats) Total() uint64 {
	return f.Partitions + f.Resets + f.HalfOpen + f.Crashes + f.DiskStalls
}

// Result is what a run did and found.
type Result struct {
	Scenario string
	Seed     uint64
	Virtual  time.Duration
	// Events is the number of traced events, Steps the number of scheduler
	// events run; Hash identifies the trace.
	Events, Steps uint64
	Hash          uint64
	Messages      int
	Deliveries    uint64
	Faults        FaultStats
	// Firehose says whether the run had one (FirehoseSpec).
	Firehose bool
	Checked  [numInvariants]uint64
	Excused  Excused
	Failure  *Failure
	Tail     []string
	Net      NetStats
	Runtime  RuntimeStats
	// BrokerIn, BrokerOut, BrokerDropped are the (last) broker's counters.
	BrokerIn, BrokerOut, BrokerDropped uint64
}

// ChecksTotal returns the number of invariant evaluations.
func (r *Result) ChecksTotal() uint64 {
	var n uint64
	for _, c := range r.Checked {
		n += c
	}
	return n
}

// InvariantNames returns the names of all invariants, in order.
func InvariantNames() []string { return invNames[:] }

// Run runs sc with seed and returns what happened. It is deterministic:
// the same scenario and seed give the same Result (Hash included).
func Run(sc Scenario, seed uint64) (res *Result) {
	w := build(&sc, seed)
	s := w.Sim
	defer func() {
		// A panic in the broker core (or anywhere in the run) is a
		// finding: it would end a real broker process.
		if r := recover(); r != nil {
			w.Oracle.fail(InvNoPanic, fmt.Sprintf("panic: %v\n%s", r, debug.Stack()))
			res = w.result(seed)
			w.Broker.closeStore()
		}
	}()
	s.Run(Epoch.Add(sc.Duration))
	w.checkLivelock()
	if w.Oracle.Failure == nil {
		w.quiesce()
		end := Epoch.Add(sc.Duration + sc.Quiesce)
		s.Run(end)
		// Slow readers may still be draining their queues: the final checks
		// wait (a bounded while) until no connected client's session holds
		// messages, so that a message not received is really missing.
		for i := 0; i < drainSteps && w.Oracle.Failure == nil && w.undrained(); i++ {
			end = end.Add(drainStep)
			s.Run(end)
		}
		w.checkLivelock()
	}
	if w.Oracle.Failure == nil {
		w.Oracle.finish()
	}
	r := w.result(seed)
	w.Broker.closeStore()
	return r
}

func build(sc *Scenario, seed uint64) *World {
	if sc.TraceTail == 0 {
		sc.TraceTail = 40
	}
	if sc.ProbeEvery == 0 {
		sc.ProbeEvery = 10 * time.Second
	}
	s := New(seed, sc.TraceTail)
	w := &World{Scenario: sc, Sim: s, Net: NewNetwork(s, sc.Link), monitors: map[string]*Client{}, bugs: sc.Bugs,
		limitsOf: map[string]*tenantLimits{}}
	w.Oracle = newOracle(w)
	for _, h := range sc.Hosts {
		w.Net.AddHost(h)
	}
	for _, l := range sc.Links {
		w.Net.SetLink(w.Net.Host(l.A), w.Net.Host(l.B), l.Spec)
	}
	for _, p := range sc.Processes {
		if p.Kind != ProcBroker {
			panic("sim: unknown process kind " + string(p.Kind))
		}
		w.BrokerHost = w.Net.Host(p.Host)
		w.Broker = newBrokerProc(w, w.BrokerHost, sc.Broker)
		if sc.Bugs&BugSkipRetainedDelete != 0 {
			w.Broker.Store = func(st retain.Store) retain.Store { return skipDeleteStore{st} }
		}
		w.Broker.Start()
	}
	for i := range sc.Workloads {
		for _, t := range sc.Workloads[i].Tenants {
			if !slices.Contains(w.tenants, t) {
				w.tenants = append(w.tenants, t)
			}
		}
	}
	slices.Sort(w.tenants)
	for _, t := range w.tenants {
		w.newMonitor(t, sc.ProbeEvery)
	}
	for i := range sc.Workloads {
		w.newWorkloadClients(&sc.Workloads[i])
	}
	if sc.Firehose.Prob > 0 && s.Chance(sc.Firehose.Prob) {
		w.newFirehose(&sc.Firehose)
	}
	for _, c := range w.Clients {
		w.Oracle.clientByKey[c.Spec.Tenant+"\x00"+c.Spec.ClientID] = c
	}
	if sc.Faults.Network || sc.Faults.Crash {
		w.faultLoop()
	}
	return w
}

// quiesce ends the workload and the faults: partitions heal, the broker is
// restarted if down, every client reconnects and stays connected.
func (w *World) quiesce() {
	w.stopping = true
	w.Sim.Note(KindFault, 0, 0, "quiesce")
	w.Net.HealAll()
	w.partition = false
	if !w.Broker.Up() {
		w.Broker.Restart()
	}
	for _, c := range w.Clients {
		if c.b != nil {
			c.b.quiesce()
		}
	}
	// A last probe of the retained store near the end.
	end := Epoch.Add(w.Scenario.Duration + w.Scenario.Quiesce)
	for _, t := range w.tenants {
		mon := w.monitors[t]
		w.Sim.At(end.Add(-5*time.Second), func() {
			if mon.mb.stage == 0 {
				mon.mb.probe()
			}
		})
	}
}

// The end of a run waits at most drainSteps × drainStep for queues to drain.
const (
	drainStep  = 10 * time.Second
	drainSteps = 12
)

// undrained reports whether the broker still holds messages (queued or in
// flight) for the session of a connected client.
func (w *World) undrained() bool {
	b := w.Broker.B
	if b == nil {
		return false
	}
	for _, c := range w.Clients {
		if !w.Oracle.attached(c) {
			continue
		}
		if info, err := b.Session(c.Spec.Tenant, c.Spec.ClientID); err == nil && info.Queued+info.Inflight > 0 {
			return true
		}
	}
	return false
}

func (w *World) debugf(format string, args ...any) {
	if d := w.Scenario.Debug; d != nil {
		d(fmtDur(w.Sim.Elapsed()) + " " + fmt.Sprintf(format, args...))
	}
}

func (w *World) checkLivelock() {
	if w.Sim.Livelock && w.Oracle.Failure == nil {
		w.Oracle.fail(InvProtocol, fmt.Sprintf("livelock: %d events at one instant", w.Sim.LivelockLimit))
	}
}

func (w *World) faultLoop() {
	s := w.Sim
	s.After(s.Exp(w.Scenario.Faults.Every), func() {
		if w.stopping {
			return
		}
		w.injectFault()
		w.faultLoop()
	})
}

// remoteConns returns the broker's connections to other hosts, in opening order.
func (w *World) remoteConns() []*Conn {
	var out []*Conn
	for _, c := range w.BrokerHost.Conns() {
		if c.ends[0].Host != c.ends[1].Host {
			out = append(out, c)
		}
	}
	return out
}

func (w *World) injectFault() {
	s := w.Sim
	f := w.Scenario.Faults
	var kinds []string
	if f.Network {
		kinds = append(kinds, "reset", "half-open", "partition")
	}
	if f.Crash && w.Broker.Up() {
		kinds = append(kinds, "crash")
	}
	if f.Disk && w.Broker.Up() && w.Broker.ds != nil {
		kinds = append(kinds, "disk-stall")
	}
	if len(kinds) == 0 {
		return
	}
	switch kinds[s.Rand.IntN(len(kinds))] {
	case "reset":
		if cs := w.remoteConns(); len(cs) > 0 {
			c := cs[s.Rand.IntN(len(cs))]
			w.Faults.Resets++
			s.Note(KindFault, 0, c.ID, "reset")
			w.Net.Reset(c)
		}
	case "half-open":
		if cs := w.remoteConns(); len(cs) > 0 {
			c := cs[s.Rand.IntN(len(cs))]
			w.Faults.HalfOpen++
			side := s.Rand.IntN(2)
			s.Note(KindFault, 0, c.ID, fmt.Sprintf("half-open side %d", side))
			w.Net.HalfOpen(c, side)
		}
	case "partition":
		if w.partition {
			return
		}
		var clientHosts []*Host
		for _, h := range w.Net.Hosts() {
			if h != w.BrokerHost {
				clientHosts = append(clientHosts, h)
			}
		}
		if len(clientHosts) == 0 {
			return
		}
		h := clientHosts[s.Rand.IntN(len(clientHosts))]
		w.partition = true
		w.Faults.Partitions++
		s.Note(KindFault, h.ID, 0, "partition "+h.Name+" | "+w.BrokerHost.Name)
		w.Net.Partition([]*Host{h}, []*Host{w.BrokerHost})
		s.After(s.Uniform(time.Second, max(time.Second, f.PartitionMax)), func() {
			if w.partition {
				w.partition = false
				s.Note(KindFault, h.ID, 0, "heal")
				w.Net.HealAll()
			}
		})
	case "disk-stall":
		d := s.Uniform(100*time.Millisecond, max(100*time.Millisecond, f.StallMax))
		w.Faults.DiskStalls++
		s.Note(KindFault, w.BrokerHost.ID, 0, "disk stall "+d.String())
		w.Broker.ds.stall(s.Now().Add(d))
	case "crash":
		w.Faults.Crashes++
		w.Broker.Crash()
		s.After(s.Uniform(100*time.Millisecond, max(100*time.Millisecond, f.DownMax)), func() {
			if !w.Broker.Up() {
				w.Broker.Restart()
			}
		})
	}
}

func (w *World) result(seed uint64) *Result {
	o := w.Oracle
	r := &Result{Scenario: w.Scenario.Name, Seed: seed, Virtual: w.Sim.Elapsed(),
		Events: w.Sim.Trace.Count(), Steps: w.Sim.Steps(), Hash: w.Sim.Trace.Hash(),
		Messages: o.Messages(), Deliveries: o.Deliveries, Faults: w.Faults, Checked: o.Checked,
		Excused: o.Excused, Failure: o.Failure, Net: w.Net.Stats, Runtime: w.Broker.Stats, Firehose: w.firehose != nil}
	if o.Failure != nil {
		r.Tail = w.Sim.Trace.Tail()
	}
	if b := w.Broker.B; b != nil {
		st := b.Stats()
		r.BrokerIn, r.BrokerOut, r.BrokerDropped = st.MessagesIn.Load(), st.MessagesOut.Load(), st.Dropped.Load()
	}
	return r
}
