package edgesim

import (
	"cmp"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/skybridge-mq/skybridge/cloud/api"
)

// Invariant names a property the oracle checks.
type Invariant int

// The invariants.
const (
	// InvOutbox: every record a node appended reaches the cloud's state
	// exactly once (once the outage is over), unless the node dropped it
	// by its stated policy; nothing else is applied.
	InvOutbox Invariant = iota
	// InvConverge: a node connected to a running cloud runs its latest
	// desired state within ConvergeWithin of the later of its
	// (re)connection and the last change, and every node does so at the
	// end of the run.
	InvConverge
	// InvAppsRun: an app of the node's stored desired state whose artifact
	// is on the node is never down longer than AppDownMax, whether the
	// cloud is reachable or not, and after a reboot.
	InvAppsRun
	// InvNoRollback: the desired version a node reports never goes back
	// (a power loss must not lose a stored desired state).
	InvNoRollback
	// InvRequests: after a mass reconnect, the cloud handles at most
	// RequestBound node requests in any second.
	InvRequests
	// InvRecovery: stores open again after every power loss.
	InvRecovery
	// InvProtocol: no component refuses what another sent.
	InvProtocol
	// InvNoPanic: nothing panics.
	InvNoPanic
	numInvariants
)

var invNames = [numInvariants]string{"outbox-once", "converge", "apps-run", "no-rollback", "request-bound",
	"recovery", "protocol", "no-panic"}

func (i Invariant) String() string { return invNames[i] }

// InvariantNames returns the names of the invariants.
func InvariantNames() []string { return invNames[:] }

// Failure is the first broken invariant of a run.
type Failure struct {
	Inv Invariant
	At  time.Duration // virtual time since the start
	Msg string
}

func (f *Failure) String() string { return fmt.Sprintf("%s at %v: %s", f.Inv, f.At, f.Msg) }

type recKey struct {
	node       string
	epoch, seq uint64
}

type recState struct {
	at      time.Time
	hash    uint64
	dropped bool
	applied int
}

// Oracle watches the run (it is the fleet's and the agents' Observer) and
// checks the invariants.
type Oracle struct {
	w       *World
	recs    map[recKey]*recState // lookups; the final check walks keys sorted
	reports map[string]uint64    // node → highest desired version reported (this epoch)
	epochs  map[string]uint64
	// firstRequired: when the check first saw an app required but down.
	firstRequired map[string]time.Time

	// Requests per second of the measurement window (mass reconnects).
	window  time.Time
	buckets []int

	Failure *Failure
	Checked [numInvariants]uint64
	// Counters of records.
	nAppended, nDropped, nApplied int
	// ConvergeMax is the longest time a node took to converge after the
	// final heal.
	ConvergeMax time.Duration
}

func newOracle(w *World) *Oracle {
	return &Oracle{w: w, recs: map[recKey]*recState{}, reports: map[string]uint64{}, epochs: map[string]uint64{},
		firstRequired: map[string]time.Time{}}
}

func (o *Oracle) fail(inv Invariant, msg string) {
	if o.Failure == nil {
		o.Failure = &Failure{Inv: inv, At: o.w.Sim.Elapsed(), Msg: msg}
		o.w.Sim.Stop()
	}
}

func recHash(r *api.Record) uint64 {
	h := fnv.New64a()
	h.Write([]byte(r.Kind))
	h.Write(r.Body)
	h.Write([]byte(r.At.UTC().Format(time.RFC3339Nano)))
	return h.Sum64()
}

// Appended implements agent.Observer.
func (o *Oracle) Appended(node string, epoch uint64, r *api.Record) {
	k := recKey{node, epoch, r.Seq}
	o.Checked[InvOutbox]++
	if _, ok := o.recs[k]; ok {
		o.fail(InvOutbox, fmt.Sprintf("%s: sequence number %d appended twice", node, r.Seq))
		return
	}
	o.recs[k] = &recState{at: r.At, hash: recHash(r)}
	o.nAppended++
}

// Dropped implements agent.Observer.
func (o *Oracle) Dropped(node string, epoch uint64, seq uint64) {
	if st := o.recs[recKey{node, epoch, seq}]; st != nil && !st.dropped {
		st.dropped = true
		o.nDropped++
	}
}

// Applied implements fleet.Observer.
func (o *Oracle) Applied(node string, epoch uint64, r *api.Record) {
	o.Checked[InvOutbox]++
	st := o.recs[recKey{node, epoch, r.Seq}]
	switch {
	case st == nil:
		o.fail(InvOutbox, fmt.Sprintf("%s: the cloud applied record %d, which the node never appended", node, r.Seq))
		return
	case st.hash != recHash(r):
		o.fail(InvOutbox, fmt.Sprintf("%s: the cloud applied record %d with other content than appended", node, r.Seq))
		return
	}
	st.applied++
	o.nApplied++
	if st.applied > 1 {
		o.fail(InvOutbox, fmt.Sprintf("%s: record %d (epoch %x) applied %d times", node, r.Seq, epoch, st.applied))
		return
	}
	if r.Kind == api.KindStatus {
		var s api.Status
		if json.Unmarshal(r.Body, &s) != nil {
			o.fail(InvProtocol, node+": a status record that does not decode")
			return
		}
		if o.epochs[node] != epoch {
			o.epochs[node], o.reports[node] = epoch, 0
		}
		o.Checked[InvNoRollback]++
		if s.DesiredVersion < o.reports[node] {
			o.fail(InvNoRollback, fmt.Sprintf("%s reports desired version %d after %d: a stored desired state was lost",
				node, s.DesiredVersion, o.reports[node]))
			return
		}
		o.reports[node] = s.DesiredVersion
	}
}

// Request implements fleet.Observer.
func (o *Oracle) Request(node, kind string) {
	if o.window.IsZero() {
		return
	}
	i := int(o.w.Sim.Now().Sub(o.window) / time.Second)
	if i < 0 || i >= len(o.buckets) {
		return
	}
	o.buckets[i]++
}

// openWindow starts counting requests per second for d.
func (o *Oracle) openWindow(d time.Duration) {
	o.window = o.w.Sim.Now()
	o.buckets = make([]int, int(d/time.Second)+1)
}

// MaxRate returns the most requests in one second of the window.
func (o *Oracle) MaxRate() int {
	m := 0
	for _, b := range o.buckets {
		m = max(m, b)
	}
	return m
}

// converged reports whether a node runs the cloud's latest desired state
// and the cloud knows it.
func (o *Oracle) converged(e *edgeProc) (bool, string) {
	f := o.w.cloud.f
	if f == nil || !e.up || e.a == nil || !e.a.Activated() {
		return false, "down"
	}
	n, err := f.Node(e.name)
	if err != nil {
		return false, err.Error()
	}
	d := e.a.Desired()
	if d == nil || d.Version != n.DesiredVersion {
		return false, fmt.Sprintf("holds desired version %v, cloud has %d", versionOf(d), n.DesiredVersion)
	}
	if e.a.Applied() != d.Version {
		return false, fmt.Sprintf("applied %d of desired %d", e.a.Applied(), d.Version)
	}
	for _, s := range d.Apps {
		ap := e.apps[s.Name]
		if ap == nil || ap.spec != s.Hash() {
			return false, "app " + s.Name + " does not run its desired spec"
		}
	}
	for name := range e.apps {
		if d.App(name) == nil {
			return false, "app " + name + " runs but is not desired"
		}
	}
	if n.Status == nil || n.Status.AppliedVersion != n.DesiredVersion {
		return false, "the cloud has not heard that it applied the desired state"
	}
	return true, ""
}

func versionOf(d *api.Desired) any {
	if d == nil {
		return "none"
	}
	return d.Version
}

// check runs the periodic checks.
func (o *Oracle) check() {
	w := o.w
	now := w.Sim.Now()
	for _, e := range w.edges {
		if !e.up || e.a == nil {
			continue
		}
		o.checkApps(e, now)
		// Convergence while everything is up and unchanged for the bound.
		// A slow link (seconds of delay each way) is not the healthy
		// connection the bound is for: judged from when it ends.
		since := latest(e.linkUpSince, w.cloudUpSince, w.changedAt[e.name], e.bootAt, w.slowUntil[e.name])
		if e.mq.up() && w.cloud.up && !since.IsZero() && !now.Before(since) && now.Sub(since) >= w.sc.ConvergeWithin {
			o.Checked[InvConverge]++
			if ok, why := o.converged(e); !ok {
				o.fail(InvConverge, fmt.Sprintf("%s has been connected for %v without converging: %s [%s]",
					e.name, now.Sub(since).Round(time.Second), why, o.describe(e)))
				return
			}
		}
	}
}

// describe says what a node and the cloud are doing (failure reports).
func (o *Oracle) describe(e *edgeProc) string {
	st := e.a.Stats
	c := o.w.cloud
	cs := "cloud down"
	if c.f != nil {
		cs = fmt.Sprintf("cloud link up %v, ups %d, acks %d, pushes %d, ignored %d", c.mq.up(), c.f.Stats.Ups, c.f.Stats.Acks, c.f.Stats.Pushes, c.f.Stats.Ignored)
	}
	var apps []string
	for _, ap := range e.a.Status(o.w.Sim.Now()).Apps {
		apps = append(apps, fmt.Sprintf("%s:%s@%d", ap.Name, ap.State, ap.Revision))
	}
	return fmt.Sprintf("node: link up %v since %v, ups %d, hellos %d, acks %d, desired %d, stale %d, ignored %d, pending %d, renewals %d/%d failed, cert expires %v, fetches %d/%d failed, apps %v; %s",
		e.mq.up(), e.linkUpSince.Sub(o.w.Sim.Now()), st.Ups, st.Hellos, st.Acks, st.Desired, st.StaleDesired, st.Ignored,
		e.a.OutboxStats().Pending, st.Renewals, st.RenewFailures, e.a.CertExpires().Sub(o.w.Sim.Now()), st.Fetches, st.FetchFailures, apps, cs)
}

func latest(ts ...time.Time) time.Time {
	var m time.Time
	for _, t := range ts {
		if t.After(m) {
			m = t
		}
	}
	return m
}

// checkApps: every app of the stored desired state with its artifact on
// the node runs, or has been down for less than the bound.
func (o *Oracle) checkApps(e *edgeProc, now time.Time) {
	d := e.a.Desired()
	if d == nil {
		return
	}
	for _, s := range d.Apps {
		key := e.name + "/" + s.Name
		if !e.a.Artifacts().Has(s.Artifact.SHA256, s.Artifact.Size) {
			delete(o.firstRequired, key)
			continue
		}
		o.Checked[InvAppsRun]++
		ap := e.apps[s.Name]
		if ap != nil && ap.running {
			delete(o.firstRequired, key)
			continue
		}
		if _, ok := o.firstRequired[key]; !ok {
			o.firstRequired[key] = now
		}
		since := latest(e.bootAt, o.firstRequired[key])
		if ap != nil && !ap.downSince.IsZero() {
			since = latest(e.bootAt, ap.downSince)
		}
		if now.Sub(since) > o.w.sc.AppDownMax {
			where := "online"
			if !e.mq.up() {
				where = "offline"
			}
			o.fail(InvAppsRun, fmt.Sprintf("%s: app %s down for %v (%s, booted %v ago)", e.name, s.Name,
				now.Sub(since).Round(time.Second), where, now.Sub(e.bootAt).Round(time.Second)))
			return
		}
	}
}

// finish runs the final checks: every record appended and not dropped,
// except in the last ConvergeWithin (the node may still be sending it),
// reached the cloud.
func (o *Oracle) finish() {
	recent := o.w.Sim.Now().Add(-o.w.sc.ConvergeWithin)
	keys := make([]recKey, 0, len(o.recs))
	for k := range o.recs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b recKey) int {
		if c := strings.Compare(a.node, b.node); c != 0 {
			return c
		}
		if a.epoch != b.epoch {
			return cmp.Compare(a.epoch, b.epoch)
		}
		return cmp.Compare(a.seq, b.seq)
	})
	for _, k := range keys {
		st := o.recs[k]
		o.Checked[InvOutbox]++
		if st.applied == 0 && !st.dropped && st.at.Before(recent) && o.epochLive(k) {
			o.fail(InvOutbox, fmt.Sprintf("%s: record %d (epoch %x) was appended, not dropped, and never reached the cloud", k.node, k.seq, k.epoch))
			return
		}
	}
}

// epochLive: records of a store that still exists (a store replaced by a
// new one with its own epoch takes its unsent records with it).
func (o *Oracle) epochLive(k recKey) bool {
	for _, e := range o.w.edges {
		if e.name == k.node && e.a != nil {
			return e.a.Epoch() == k.epoch
		}
	}
	return false
}
