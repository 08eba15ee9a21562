package edgesim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/cloud/fleet"
	"github.com/skybridge-mq/skybridge/edge/agent"
	"github.com/skybridge-mq/skybridge/sim"
)

// Bug is a deliberate bug planted in the cores, to prove that the
// invariants catch it.
type Bug uint32

// Planted bugs.
const (
	// BugNoJitter: nodes resync at once after a reconnect and ignore the
	// cloud's pacing (request-bound).
	BugNoJitter Bug = 1 << iota
	// BugNoDedupe: the cloud applies duplicates (outbox-once).
	BugNoDedupe
	// BugDeleteOnSend: a node deletes records once published, not once
	// acknowledged (outbox-once: lost).
	BugDeleteOnSend
	// BugStopAppsOffline: a node stops its apps after 10 minutes offline
	// (apps-run).
	BugStopAppsOffline
	// BugWaitForCloud: a node starts no app after a reboot until the cloud
	// answers (apps-run).
	BugWaitForCloud
	// BugDesiredInMemory: desired states are not stored (no-rollback: a
	// reboot goes back to an older one).
	BugDesiredInMemory
	// BugRenewOnlyOnline: certificates are renewed only while connected
	// (converge: a certificate that expired offline never comes back).
	BugRenewOnlyOnline
)

var bugNames = []struct {
	b    Bug
	name string
}{{BugNoJitter, "no-jitter"}, {BugNoDedupe, "no-dedupe"}, {BugDeleteOnSend, "delete-on-send"},
	{BugStopAppsOffline, "stop-apps-offline"}, {BugWaitForCloud, "wait-for-cloud"},
	{BugDesiredInMemory, "desired-in-memory"}, {BugRenewOnlyOnline, "renew-only-online"}}

func (b Bug) String() string {
	var s []string
	for _, n := range bugNames {
		if b&n.b != 0 {
			s = append(s, n.name)
		}
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

// ParseBugs reads "no-jitter,no-dedupe" (or "none").
func ParseBugs(s string) (Bug, error) {
	var b Bug
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" || p == "none" {
			continue
		}
		found := false
		for _, n := range bugNames {
			if n.name == p {
				b |= n.b
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown bug %q", p)
		}
	}
	return b, nil
}

func (b Bug) agentHooks() agent.Hooks {
	h := agent.Hooks{NoJitter: b&BugNoJitter != 0, DeleteOnSend: b&BugDeleteOnSend != 0,
		WaitForCloud: b&BugWaitForCloud != 0, DesiredInMemory: b&BugDesiredInMemory != 0, RenewOnlyOnline: b&BugRenewOnlyOnline != 0}
	if b&BugStopAppsOffline != 0 {
		h.StopAppsOffline = 10 * time.Minute
	}
	return h
}

// Faults says which faults a run injects and how long they last.
type Faults struct {
	// Every is the mean time between two faults.
	Every time.Duration
	// Partition cuts one node (or, with MassProb, all of them) from the
	// cloud for a duration in [PartitionMin, PartitionMax].
	Partition                  bool
	PartitionMin, PartitionMax time.Duration
	MassProb                   float64
	// EdgeCrash: a node loses power, back after up to EdgeDownMax.
	EdgeCrash   bool
	EdgeDownMax time.Duration
	// CloudCrash: the cloud's host loses power, back after up to
	// CloudDownMax.
	CloudCrash   bool
	CloudDownMax time.Duration
	// AppCrash: a running app exits with an error.
	AppCrash bool
	// Reset: a node's connection is reset.
	Reset bool
	// Slow: a node's link to the cloud slows to a one-way delay of
	// SlowLatency (plus as much jitter) for up to SlowMax, so that
	// acknowledgements come back after the node has sent again.
	Slow                 bool
	SlowLatency, SlowMax time.Duration
}

// Scenario is a simulation of the cloud and its nodes.
type Scenario struct {
	Name  string
	Edges int
	// Duration runs the workload and the faults; then Quiesce heals
	// everything and lets the fleet converge before the final checks.
	Duration, Quiesce time.Duration
	Link              sim.LinkSpec
	Agent             agent.Config
	Fleet             fleet.Config
	Faults            Faults
	// OperatorEvery is the mean time between two changes an operator
	// makes (app revisions, labels, configs, device values).
	OperatorEvery time.Duration
	// DeviceEvery is the mean time between two device measurements of a
	// node.
	DeviceEvery time.Duration
	// MassOutage, when set, cuts every node from the cloud at MassAt for
	// MassOutage (their outboxes fill), heals, and restarts the cloud
	// MassRestart later (every node reconnects at once, most with records
	// still to send); the cloud's requests are counted per second for
	// RequestWindow from the heal.
	MassAt, MassOutage, MassRestart, RequestWindow time.Duration
	// Bounds of the invariants.
	ConvergeWithin, AppDownMax time.Duration
	RequestBound               int
	Bugs                       Bug
	// CheckEvery is the period of the oracle's checks.
	CheckEvery time.Duration
	TraceTail  int
}

// Outage is the main scenario: a few nodes through hours of partitions
// (of one node or of all), node and cloud power losses, app crashes and
// connection resets, with certificates that expire during outages and an
// operator changing desired states meanwhile.
func Outage(edges int, duration time.Duration) Scenario {
	return Scenario{
		Name: "outage", Edges: edges, Duration: duration, Quiesce: 15 * time.Minute,
		Link: sim.LinkSpec{Latency: 20 * time.Millisecond, Jitter: 60 * time.Millisecond, SpikeProb: 0.02,
			Spike: 500 * time.Millisecond, Bandwidth: 1 << 20},
		Agent: agent.Config{ReportEvery: time.Minute, ResyncJitter: 30 * time.Second, AckTimeout: 30 * time.Second,
			BatchRecords: 20, RetryMin: 5 * time.Second, RetryMax: 2 * time.Minute,
			Outbox: agent.Limits{MaxRecords: 200}},
		Fleet: fleet.Config{CertLifetime: 3 * time.Hour, RenewGrace: 48 * time.Hour, Lease: 3 * time.Minute, DrainRate: 50},
		Faults: Faults{Every: 15 * time.Minute, Partition: true, PartitionMin: 5 * time.Minute, PartitionMax: 4 * time.Hour,
			MassProb: 0.3, EdgeCrash: true, EdgeDownMax: 10 * time.Minute, CloudCrash: true, CloudDownMax: 15 * time.Minute,
			AppCrash: true, Reset: true, Slow: true, SlowLatency: 20 * time.Second, SlowMax: 10 * time.Minute},
		OperatorEvery: 20 * time.Minute, DeviceEvery: 2 * time.Minute,
		ConvergeWithin: 6 * time.Minute, AppDownMax: 90 * time.Second,
		CheckEvery: 10 * time.Second, TraceTail: 30,
	}
}

// Mass is the stampede scenario: many nodes lose the cloud together for
// long enough to fill their outboxes; the network comes back, and soon
// after the cloud restarts, so that every node reconnects at once with
// records still to send.
func Mass(edges int) Scenario {
	sc := Outage(edges, 80*time.Minute)
	sc.Name = "mass"
	sc.Faults = Faults{}
	sc.OperatorEvery = 0
	sc.Agent.BatchRecords = 5
	sc.Fleet.CertLifetime = 7 * 24 * time.Hour
	sc.Fleet.DrainRate = 10
	sc.MassAt, sc.MassOutage, sc.MassRestart, sc.RequestWindow = 5*time.Minute, 40*time.Minute, 2*time.Minute, 15*time.Minute
	// Hellos spread over ResyncJitter (and the reconnect backoff), batches
	// at the drain rate, plus the steady reports: a bound with room, well
	// below what unpaced nodes send.
	sc.RequestBound = int(sc.Fleet.DrainRate) + 4*edges*int(time.Second)/int(sc.Agent.ResyncJitter) + edges/20 + 10
	return sc
}

// World is a running scenario.
type World struct {
	sc     *Scenario
	Sim    *sim.Sim
	Net    *sim.Network
	oracle *Oracle
	cloud  *cloudProc
	edges  []*edgeProc
	arts   []api.Artifact

	cloudUpSince time.Time
	changedAt    map[string]time.Time // node → when its desired version last changed
	// slowUntil: a node's link is slow until then (zero: it is not); its
	// convergence is judged from the end of the slow period.
	slowUntil   map[string]time.Time
	versions    map[string]uint64
	partitioned bool
	stopping    bool
	Faults      map[string]int
	rev         int
	// LateRenewals counts certificates renewed after they expired (the
	// node was offline past the expiry).
	LateRenewals int
}

// Result is what a run did and found.
type Result struct {
	Scenario string
	Seed     uint64
	Bugs     Bug
	Virtual  time.Duration
	Events   uint64
	Steps    uint64
	Hash     uint64
	Failure  *Failure
	Tail     []string
	Checked  [numInvariants]uint64
	// Outbox records appended, dropped by policy, applied by the cloud.
	Appended, Dropped, Applied int
	Faults                     map[string]int
	CloudStats                 fleet.Stats
	// ConvergeMax: the longest convergence after the final heal;
	// MaxRate: the most cloud requests in one second of the window.
	ConvergeMax time.Duration
	MaxRate     int
	Boots       int
	// Renewals of certificates, those after an expiry, connections the
	// broker refused (an expired certificate).
	Renewals, LateRenewals, Refused int
}

// Run runs sc with seed. The same scenario and seed give the same run.
func Run(sc Scenario, seed uint64) (res *Result) {
	w := build(&sc, seed)
	defer func() {
		if r := recover(); r != nil {
			w.oracle.fail(InvNoPanic, fmt.Sprintf("panic: %v\n%s", r, debug.Stack()))
			res = w.result(seed)
		}
		w.close()
	}()
	s := w.Sim
	s.Run(sim.Epoch.Add(sc.Duration))
	if w.oracle.Failure == nil {
		w.quiesce()
		s.Run(sim.Epoch.Add(sc.Duration + sc.Quiesce))
	}
	if w.oracle.Failure == nil {
		w.finalCheck()
	}
	return w.result(seed)
}

func build(sc *Scenario, seed uint64) *World {
	if sc.TraceTail == 0 {
		sc.TraceTail = 30
	}
	if sc.CheckEvery == 0 {
		sc.CheckEvery = 10 * time.Second
	}
	s := sim.New(seed, sc.TraceTail)
	w := &World{sc: sc, Sim: s, Net: sim.NewNetwork(s, sc.Link), changedAt: map[string]time.Time{}, slowUntil: map[string]time.Time{},
		versions: map[string]uint64{}, Faults: map[string]int{}}
	w.oracle = newOracle(w)
	cloudHost := w.Net.AddHost("cloud")
	w.cloud = newCloud(w, cloudHost)
	w.cloud.start()
	w.cloudUpSince = s.Now()
	w.setup()
	for i := 0; i < sc.Edges; i++ {
		name := "edge-" + strconv.Itoa(i)
		e := newEdge(w, name, w.Net.AddHost(name))
		w.edges = append(w.edges, e)
		labels := map[string]string{"site": []string{"a", "b"}[i%2]}
		w.register(e, labels)
		s.After(s.Uniform(0, 30*time.Second), e.boot)
	}
	w.every(sc.CheckEvery, func() { w.trackVersions(); w.oracle.check() })
	if sc.OperatorEvery > 0 {
		w.operatorLoop()
	}
	if sc.Faults.Every > 0 {
		w.faultLoop()
	}
	if sc.MassOutage > 0 {
		s.After(sc.MassAt, func() {
			w.Faults["mass-partition"]++
			var all []*sim.Host
			for _, e := range w.edges {
				all = append(all, e.host)
			}
			s.Note(sim.KindFault, w.cloud.host.ID, 0, "every node cut from the cloud")
			w.Net.Partition(all, []*sim.Host{w.cloud.host})
			s.After(sc.MassOutage, func() {
				s.Note(sim.KindFault, 0, 0, "heal")
				w.Net.HealAll()
				w.oracle.openWindow(sc.RequestWindow)
				s.After(sc.MassRestart, func() {
					w.Faults["cloud-restart"]++
					s.Note(sim.KindFault, w.cloud.host.ID, 0, "cloud restart")
					w.cloud.crash()
					s.After(5*time.Second, w.cloudUp)
				})
			})
		})
	}
	return w
}

// every runs fn periodically until the end.
func (w *World) every(d time.Duration, fn func()) {
	w.Sim.After(d, func() {
		fn()
		w.every(d, fn)
	})
}

// setup is the operator's first day: artifacts, a config, a device
// model, three apps.
func (w *World) setup() {
	f, now := w.cloud.f, w.Sim.Now()
	for i, size := range []int{4 << 10, 16 << 10, 48 << 10} {
		data := bytes.Repeat([]byte{byte('a' + i)}, size)
		sha, n, err := w.cloud.blobs.Put(bytes.NewReader(data), "")
		if err == nil {
			err = f.PutArtifact(fleet.ArtifactInfo{SHA256: sha, Size: n, Name: "app" + strconv.Itoa(i)}, now)
		}
		if err != nil {
			w.oracle.fail(InvProtocol, "setup: "+err.Error())
			return
		}
		w.arts = append(w.arts, api.Artifact{SHA256: sha, Size: n})
	}
	_, err := f.PutConfig(api.Config{Name: "conf", Data: map[string]string{"app.yaml": "level: 1"}}, now)
	if err == nil {
		err = f.PutDeviceModel(api.DeviceModel{Name: "thermo", Properties: []api.Property{
			{Name: "temp", Type: api.PropInt}, {Name: "setpoint", Type: api.PropInt, Writable: true}}}, now)
	}
	for _, app := range []api.App{
		{Name: "core", Selector: "", Artifact: w.arts[0], Mounts: []api.Mount{{Config: "conf", Dir: "etc"}}},
		{Name: "web", Selector: "site=a", Artifact: w.arts[1]},
		{Name: "batch", Selector: "site=b", Artifact: w.arts[2]},
	} {
		if err == nil {
			_, err = f.PutApp(app, now)
		}
	}
	if err != nil {
		w.oracle.fail(InvProtocol, "setup: "+err.Error())
	}
}

// register makes the node's token and binds its device.
func (w *World) register(e *edgeProc, labels map[string]string) {
	f, now := w.cloud.f, w.Sim.Now()
	join, _, err := f.CreateToken(e.name, labels, 0, now)
	if err == nil {
		err = f.PutDevice(api.Device{Name: e.deviceName(), Model: "thermo", Node: e.name}, now)
	}
	if err != nil {
		w.oracle.fail(InvProtocol, "register "+e.name+": "+err.Error())
		return
	}
	e.join, _ = api.DecodeJoin(join)
}

// newJoin gives a node a fresh token (its activation answer was lost); if
// the cloud is down, the node asks again later.
func (w *World) newJoin(e *edgeProc) {
	if !w.cloud.up {
		return
	}
	join, _, err := w.cloud.f.CreateToken(e.name, nil, 0, w.Sim.Now())
	if err != nil {
		w.oracle.fail(InvProtocol, "token for "+e.name+": "+err.Error())
		return
	}
	e.join, _ = api.DecodeJoin(join)
}

// trackVersions notes when each node's desired version changed.
func (w *World) trackVersions() {
	if !w.cloud.up {
		return
	}
	for _, n := range w.cloud.f.Nodes() {
		if w.versions[n.Name] != n.DesiredVersion {
			w.versions[n.Name] = n.DesiredVersion
			w.changedAt[n.Name] = w.Sim.Now()
		}
	}
}

func (w *World) cloudUp() {
	if w.cloud.up {
		return
	}
	w.cloud.restart()
	w.cloudUpSince = w.Sim.Now()
	w.Sim.Note(sim.KindRestart, w.cloud.host.ID, 0, "cloud")
}

// operatorLoop changes desired states now and then.
func (w *World) operatorLoop() {
	s := w.Sim
	s.After(s.Exp(w.sc.OperatorEvery), func() {
		if w.stopping {
			return
		}
		if w.cloud.up {
			w.operate()
		}
		w.operatorLoop()
	})
}

func (w *World) operate() {
	s, f, now := w.Sim, w.cloud.f, w.Sim.Now()
	w.rev++
	var err error
	var what string
	switch s.Rand.IntN(5) {
	case 0: // a new revision of an app
		name := []string{"core", "web", "batch"}[s.Rand.IntN(3)]
		var app api.App
		if app, err = f.App(name); err == nil {
			app.Args = []string{"--rev", strconv.Itoa(w.rev)}
			_, err = f.PutApp(app, now)
		}
		what = "revision of " + name
	case 1: // a node moves to the other site
		e := w.edges[s.Rand.IntN(len(w.edges))]
		var n api.Node
		if n, err = f.Node(e.name); err == nil {
			site := "a"
			if n.Labels["site"] == "a" {
				site = "b"
			}
			err = f.SetLabels(e.name, map[string]string{"site": site}, now)
		}
		what = "labels of " + e.name
	case 2: // a config change
		_, err = f.PutConfig(api.Config{Name: "conf", Data: map[string]string{"app.yaml": "level: " + strconv.Itoa(w.rev)}}, now)
		what = "config"
	case 3: // a device value
		e := w.edges[s.Rand.IntN(len(w.edges))]
		_, err = f.SetShadowDesired(e.deviceName(), map[string]json.RawMessage{"setpoint": json.RawMessage(strconv.Itoa(15 + w.rev%10))}, now)
		what = "setpoint of " + e.deviceName()
	case 4: // an app comes or goes
		if _, e := f.App("extra"); e == nil {
			err = f.DeleteApp("extra", now)
			what = "extra removed"
		} else {
			_, err = f.PutApp(api.App{Name: "extra", Selector: "site in (a,b)", Artifact: w.arts[s.Rand.IntN(len(w.arts))]}, now)
			what = "extra added"
		}
	}
	if err != nil {
		w.oracle.fail(InvProtocol, "operator ("+what+"): "+err.Error())
		return
	}
	s.Note(sim.KindAction, w.cloud.host.ID, 0, "operator: "+what)
	w.cloud.flush()
}

// faultLoop injects faults.
func (w *World) faultLoop() {
	s := w.Sim
	s.After(s.Exp(w.sc.Faults.Every), func() {
		if w.stopping {
			return
		}
		w.injectFault()
		w.faultLoop()
	})
}

func (w *World) injectFault() {
	s, f := w.Sim, w.sc.Faults
	var kinds []string
	if f.Partition && !w.partitioned {
		kinds = append(kinds, "partition")
	}
	if f.EdgeCrash {
		kinds = append(kinds, "edge-crash")
	}
	if f.CloudCrash && w.cloud.up {
		kinds = append(kinds, "cloud-crash")
	}
	if f.AppCrash {
		kinds = append(kinds, "app-crash", "app-crash")
	}
	if f.Reset {
		kinds = append(kinds, "reset")
	}
	if f.Slow {
		kinds = append(kinds, "slow")
	}
	if len(kinds) == 0 {
		return
	}
	kind := kinds[s.Rand.IntN(len(kinds))]
	w.Faults[kind]++
	switch kind {
	case "partition":
		var cut []*sim.Host
		if s.Chance(f.MassProb) {
			for _, e := range w.edges {
				cut = append(cut, e.host)
			}
		} else {
			cut = []*sim.Host{w.edges[s.Rand.IntN(len(w.edges))].host}
		}
		d := s.Uniform(f.PartitionMin, f.PartitionMax)
		w.partitioned = true
		s.Note(sim.KindFault, cut[0].ID, 0, fmt.Sprintf("partition of %d nodes for %v", len(cut), d))
		w.Net.Partition(cut, []*sim.Host{w.cloud.host})
		s.After(d, func() {
			if w.partitioned {
				w.partitioned = false
				s.Note(sim.KindFault, 0, 0, "heal")
				w.Net.HealAll()
			}
		})
	case "edge-crash":
		e := w.edges[s.Rand.IntN(len(w.edges))]
		if !e.up {
			return
		}
		e.crash()
		s.After(s.Uniform(time.Second, f.EdgeDownMax), e.restart)
	case "cloud-crash":
		s.Note(sim.KindFault, w.cloud.host.ID, 0, "cloud power loss")
		w.cloud.crash()
		s.After(s.Uniform(time.Second, f.CloudDownMax), w.cloudUp)
	case "app-crash":
		w.edges[s.Rand.IntN(len(w.edges))].crashApp()
	case "slow":
		e := w.edges[s.Rand.IntN(len(w.edges))]
		d := s.Uniform(time.Minute, f.SlowMax)
		s.Note(sim.KindFault, e.host.ID, 0, fmt.Sprintf("slow link %s for %v", e.name, d))
		w.Net.SetLink(e.host, w.cloud.host, sim.LinkSpec{Latency: f.SlowLatency, Jitter: f.SlowLatency, Bandwidth: 64 << 10})
		w.slowUntil[e.name] = latest(w.slowUntil[e.name], s.Now().Add(d))
		s.After(d, func() {
			if !s.Now().Before(w.slowUntil[e.name]) {
				w.Net.SetLink(e.host, w.cloud.host, w.sc.Link)
			}
		})
	case "reset":
		e := w.edges[s.Rand.IntN(len(w.edges))]
		if cs := e.host.Conns(); len(cs) > 0 {
			c := cs[s.Rand.IntN(len(cs))]
			s.Note(sim.KindFault, e.host.ID, c.ID, "reset")
			w.Net.Reset(c)
		}
	}
}

// quiesce ends the faults: partitions heal, every process is up.
func (w *World) quiesce() {
	s := w.Sim
	w.stopping = true
	s.Note(sim.KindFault, 0, 0, "quiesce")
	w.partitioned = false
	w.Net.HealAll()
	for _, e := range w.edges {
		if !w.slowUntil[e.name].IsZero() {
			w.Net.SetLink(e.host, w.cloud.host, w.sc.Link)
			w.slowUntil[e.name] = s.Now()
		}
	}
	w.cloudUp()
	for _, e := range w.edges {
		e.restart()
	}
	start := s.Now()
	pending := map[string]bool{}
	for _, e := range w.edges {
		pending[e.name] = true
	}
	var poll func()
	poll = func() {
		for _, e := range w.edges {
			if pending[e.name] {
				if ok, _ := w.oracle.converged(e); ok {
					delete(pending, e.name)
					w.oracle.ConvergeMax = max(w.oracle.ConvergeMax, s.Now().Sub(start))
				}
			}
		}
		if len(pending) > 0 {
			s.After(time.Second, poll)
		}
	}
	s.After(time.Second, poll)
}

// finalCheck: everything converged within the bound, and the outbox
// invariant holds over the whole run.
func (w *World) finalCheck() {
	o := w.oracle
	for _, e := range w.edges {
		o.Checked[InvConverge]++
		if ok, why := o.converged(e); !ok {
			o.fail(InvConverge, e.name+" did not converge by the end: "+why)
			return
		}
	}
	if o.ConvergeMax > w.sc.ConvergeWithin {
		o.fail(InvConverge, fmt.Sprintf("the fleet took %v to converge after the final heal (bound %v)", o.ConvergeMax, w.sc.ConvergeWithin))
		return
	}
	for _, e := range w.edges {
		o.checkApps(e, w.Sim.Now())
	}
	o.finish()
	if w.sc.RequestWindow > 0 {
		o.Checked[InvRequests]++
		if m := o.MaxRate(); m > w.sc.RequestBound {
			o.fail(InvRequests, fmt.Sprintf("%d node requests in one second after the mass reconnect (bound %d)", m, w.sc.RequestBound))
		}
	}
}

func (w *World) close() {
	for _, e := range w.edges {
		if e.a != nil {
			_ = e.a.Close()
			e.a = nil
		}
	}
	w.cloud.close()
}

func (w *World) result(seed uint64) *Result {
	o := w.oracle
	r := &Result{Scenario: w.sc.Name, Seed: seed, Bugs: w.sc.Bugs, Virtual: w.Sim.Elapsed(), Events: w.Sim.Trace.Count(),
		Steps: w.Sim.Steps(), Hash: w.Sim.Trace.Hash(), Failure: o.Failure, Checked: o.Checked,
		Appended: o.nAppended, Dropped: o.nDropped, Applied: o.nApplied, Faults: w.Faults,
		ConvergeMax: o.ConvergeMax, MaxRate: o.MaxRate()}
	if w.cloud.f != nil {
		r.CloudStats = w.cloud.f.Stats
	}
	for _, e := range w.edges {
		r.Boots += e.Boots
		if e.a != nil {
			r.Renewals += int(e.a.Stats.Renewals)
		}
		if e.mq != nil {
			r.Refused += int(e.mq.Refused)
		}
	}
	r.LateRenewals = w.LateRenewals
	if o.Failure != nil {
		r.Tail = w.Sim.Trace.Tail()
	}
	return r
}
