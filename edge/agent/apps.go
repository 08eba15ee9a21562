package agent

import (
	"slices"
	"strconv"
	"time"

	"github.com/skybridge-mq/skybridge/cloud/api"
)

// app is one app on the node: the spec it runs (or will), the process
// generation, and the restart policy's state.
type app struct {
	name  string
	spec  api.AppSpec
	hash  string // of spec; "" while nothing was started
	gen   uint64
	state api.AppState

	restarts  uint64
	delay     time.Duration // the next restart's backoff
	restartAt time.Time
	startedAt time.Time
	lastExit  int
	pid       int

	healthy    *bool
	healthFail int
	lastEvent  time.Time // of an app.exited record (rate limit)
	suppressed int       // exits not reported since

	rss int64
	cpu float64
}

// fetch is an artifact download.
type fetch struct {
	art      api.Artifact
	inflight bool
	retryAt  time.Time
	retry    backoff
}

// names returns the apps' names, sorted (map order must not reach output).
func (a *Agent) names() []string {
	out := make([]string, 0, len(a.apps))
	for n := range a.apps {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// reconcile brings the apps to the desired state: start what is missing,
// replace what changed (once its artifact is here), stop what is gone.
func (a *Agent) reconcile(now time.Time) {
	var want []api.AppSpec
	if a.desired != nil {
		want = a.desired.Apps
	}
	for _, name := range a.names() {
		if !slices.ContainsFunc(want, func(s api.AppSpec) bool { return s.Name == name }) {
			ap := a.apps[name]
			if ap.gen > 0 {
				a.out.Stop = append(a.out.Stop, StopApp{Name: name, Gen: ap.gen})
				a.Stats.Stops++
			}
			delete(a.apps, name)
			a.noteChange(now)
		}
	}
	complete := a.desired != nil
	for i := range want {
		spec := &want[i]
		ap := a.apps[spec.Name]
		h := spec.Hash()
		if ap != nil && ap.hash == h {
			continue
		}
		if !a.blobs.Has(spec.Artifact.SHA256, spec.Artifact.Size) {
			// Keep the running revision until the new artifact is here.
			complete = false
			a.needArtifact(spec.Artifact, now)
			if ap == nil {
				a.apps[spec.Name] = &app{name: spec.Name, spec: *spec, state: api.AppWaiting}
				a.noteChange(now)
			}
			continue
		}
		if ap == nil {
			ap = &app{name: spec.Name}
			a.apps[spec.Name] = ap
		}
		ap.spec, ap.hash = *spec, h
		ap.restarts, ap.delay = 0, 0
		ap.healthFail, ap.healthy = 0, nil
		a.start(ap, now)
	}
	if complete && a.desired.Version != a.applied {
		a.applied = a.desired.Version
		a.noteChange(now)
		a.collectArtifacts()
	}
	a.sendDevices()
}

func (a *Agent) start(ap *app, now time.Time) {
	ap.gen++
	ap.state = api.AppStarting
	ap.startedAt = now
	ap.pid = 0
	a.out.Start = append(a.out.Start, StartApp{Name: ap.name, Gen: ap.gen, Spec: ap.spec})
	a.Stats.Starts++
	a.noteChange(now)
}

// needArtifact starts a download unless one runs or waits.
func (a *Agent) needArtifact(art api.Artifact, now time.Time) {
	if a.fetches[art.SHA256] != nil {
		return
	}
	f := &fetch{art: art, retry: backoff{min: a.cfg.RetryMin, max: a.cfg.RetryMax}}
	a.fetches[art.SHA256] = f
	a.startFetch(f)
}

func (a *Agent) startFetch(f *fetch) {
	f.inflight = true
	a.out.Fetch = append(a.out.Fetch, f.art)
	a.Stats.Fetches++
}

func (a *Agent) tickFetches(now time.Time) {
	shas := make([]string, 0, len(a.fetches))
	for s := range a.fetches {
		shas = append(shas, s)
	}
	slices.Sort(shas)
	for _, s := range shas {
		if f := a.fetches[s]; !f.inflight && !now.Before(f.retryAt) {
			a.startFetch(f)
		}
	}
}

// ArtifactReady: a download is in Artifacts().
func (a *Agent) ArtifactReady(sha string, now time.Time) {
	delete(a.fetches, sha)
	a.reconcile(now)
	a.pump(now)
}

// ArtifactFailed: a download failed; it is retried with backoff.
func (a *Agent) ArtifactFailed(sha string, now time.Time) {
	f := a.fetches[sha]
	if f == nil {
		return
	}
	a.Stats.FetchFailures++
	f.inflight = false
	f.retryAt = now.Add(f.retry.next())
}

// collectArtifacts removes the artifacts no app uses any more.
func (a *Agent) collectArtifacts() {
	keep := map[string]bool{}
	for _, ap := range a.apps {
		keep[ap.spec.Artifact.SHA256] = true
	}
	if a.desired != nil {
		for _, s := range a.desired.Apps {
			keep[s.Artifact.SHA256] = true
		}
	}
	list, _ := a.blobs.List()
	for _, sha := range list {
		if !keep[sha] && a.fetches[sha] == nil {
			_ = a.blobs.Remove(sha)
		}
	}
}

func (a *Agent) current(name string, gen uint64) *app {
	ap := a.apps[name]
	if ap == nil || ap.gen != gen {
		return nil // an older generation's news
	}
	return ap
}

// AppStarted: the runner started the process.
func (a *Agent) AppStarted(name string, gen uint64, pid int, now time.Time) {
	ap := a.current(name, gen)
	if ap == nil || ap.state != api.AppStarting {
		return
	}
	ap.state, ap.pid = api.AppRunning, pid
	a.noteChange(now)
}

// AppExited: the process ended with code (-1: killed by a signal).
func (a *Agent) AppExited(name string, gen uint64, code int, now time.Time) {
	ap := a.current(name, gen)
	if ap == nil || ap.state == api.AppExited || ap.state == api.AppBackoff {
		return
	}
	a.Stats.Exits++
	ap.lastExit, ap.pid = code, 0
	a.afterExit(ap, code != 0, "app.exited", "exit code "+strconv.Itoa(code), now)
}

// AppFailed: the process could not be started (exec error, missing or
// damaged artifact). A damaged artifact is fetched again.
func (a *Agent) AppFailed(name string, gen uint64, reason string, now time.Time) {
	ap := a.current(name, gen)
	if ap == nil {
		return
	}
	a.Stats.Exits++
	if sha := ap.spec.Artifact.SHA256; a.blobs.Verify(sha) != nil {
		_ = a.blobs.Remove(sha)
		ap.hash = "" // start again once it is back
		ap.state = api.AppWaiting
		a.needArtifact(ap.spec.Artifact, now)
		a.record(ap, "app.failed", reason, -1, now)
		return
	}
	a.afterExit(ap, true, "app.failed", reason, now)
}

// afterExit applies the restart policy.
func (a *Agent) afterExit(ap *app, failed bool, typ, msg string, now time.Time) {
	r := ap.spec.Restart.WithDefaults()
	if now.Sub(ap.startedAt) >= r.StableAfter.D() {
		ap.delay = 0 // it ran long enough: start over from the shortest delay
	}
	restart := r.Policy == api.RestartAlways || (r.Policy == api.RestartOnFailure && failed)
	if restart {
		if ap.delay == 0 {
			ap.delay = r.BackoffMin.D()
		} else {
			ap.delay = min(ap.delay*2, r.BackoffMax.D())
		}
		ap.state = api.AppBackoff
		ap.restartAt = now.Add(ap.delay)
	} else {
		ap.state = api.AppExited
	}
	a.record(ap, typ, msg, ap.lastExit, now)
	a.noteChange(now)
}

// record reports an app's event upstream, at most one a minute per app
// (a crash loop must not fill the outbox); the count of those skipped
// goes with the next.
func (a *Agent) record(ap *app, typ, msg string, code int, now time.Time) {
	if !ap.lastEvent.IsZero() && now.Sub(ap.lastEvent) < time.Minute {
		ap.suppressed++
		return
	}
	if ap.suppressed > 0 {
		msg += " (" + strconv.Itoa(ap.suppressed) + " more since the last report)"
		ap.suppressed = 0
	}
	ap.lastEvent = now
	a.appendRecord(api.KindEvent, api.EdgeEvent{Type: typ, App: ap.name, Message: msg, Code: code}, now)
}

// AppHealth: a health check's result. Failures beyond the spec's
// threshold (after the grace period) restart the app.
func (a *Agent) AppHealth(name string, gen uint64, ok bool, now time.Time) {
	ap := a.current(name, gen)
	if ap == nil || ap.state != api.AppRunning || ap.spec.Health == nil {
		return
	}
	h := ap.spec.Health
	grace := h.Grace.D()
	if grace <= 0 {
		grace = 10 * time.Second
	}
	if ok {
		ap.healthFail = 0
	} else if now.Sub(ap.startedAt) >= grace {
		ap.healthFail++
	}
	if ap.healthy == nil || *ap.healthy != ok {
		ap.healthy = &ok
		a.noteChange(now)
	}
	limit := h.Failures
	if limit <= 0 {
		limit = 3
	}
	if ap.healthFail >= limit {
		a.Stats.HealthFailRestarts++
		a.record(ap, "app.unhealthy", strconv.Itoa(ap.healthFail)+" failed health checks: restarted", 0, now)
		ap.healthFail = 0
		ap.restarts++
		a.Stats.Restarts++
		a.start(ap, now)
	}
}

// tickApps restarts the apps whose backoff has passed.
func (a *Agent) tickApps(now time.Time) {
	for _, name := range a.names() {
		ap := a.apps[name]
		if ap.state == api.AppBackoff && !now.Before(ap.restartAt) && !a.stopped {
			ap.restarts++
			a.Stats.Restarts++
			a.start(ap, now)
		}
	}
}

// Running returns the apps the agent believes run (or start), with their
// spec hash: for the simulator's checks.
func (a *Agent) Running() map[string]string {
	out := map[string]string{}
	for name, ap := range a.apps {
		if ap.state == api.AppRunning || ap.state == api.AppStarting {
			out[name] = ap.hash
		}
	}
	return out
}

// sendDevices hands the gateway the device values it has not had.
func (a *Agent) sendDevices() {
	if a.desired == nil {
		return
	}
	for _, d := range a.desired.Devices {
		if d.DesiredVersion > a.devSent[d.Name] && len(d.Desired) > 0 {
			a.out.Devices = append(a.out.Devices, DeviceDesired{Device: d.Name, Model: d.Model, Props: d.Desired, Version: d.DesiredVersion})
		}
		a.devSent[d.Name] = d.DesiredVersion
	}
}

// DeviceReported: a device reported property values (the gateway read
// them); they go upstream to its shadow.
func (a *Agent) DeviceReported(r api.DeviceReport, now time.Time) {
	a.DevicesReported([]api.DeviceReport{r}, now)
}

// DevicesReported: several reports at once, appended to the outbox in one
// synced batch.
func (a *Agent) DevicesReported(rs []api.DeviceReport, now time.Time) {
	bodies := make([]any, len(rs))
	for i := range rs {
		bodies[i] = rs[i]
	}
	a.appendRecords(api.KindDevice, bodies, now)
	a.pump(now)
}
