package agent

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/cloud/fleet"
	"github.com/skybridge-mq/skybridge/impl/env"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// world connects agents to a fleet directly (no broker): what the agent
// publishes is handed to the fleet, what the fleet publishes to the
// agent, while the link is up. Time moves only when the test says.
type world struct {
	t      *testing.T
	now    time.Time
	rnd    *env.SeededRand
	cloud  *fleet.Fleet
	blob   []byte // the artifact's content
	sha    string
	nodes  map[string]*node
	cloudO *obs
}

type node struct {
	name string
	fs   *vfs.MemFS
	a    *Agent
	up   bool
	cut  bool // the network is cut: no link, no HTTPS
	cfg  Config
	// The simulated runner: generation running per app.
	running map[string]uint64
	obs     *obs
}

type obs struct {
	appended, dropped, applied []uint64
}

func (o *obs) Appended(_ string, _ uint64, r *api.Record) { o.appended = append(o.appended, r.Seq) }
func (o *obs) Dropped(_ string, _ uint64, s uint64)       { o.dropped = append(o.dropped, s) }
func (o *obs) Applied(_ string, _ uint64, r *api.Record)  { o.applied = append(o.applied, r.Seq) }
func (o *obs) Request(string, string)                     {}

func newWorld(t *testing.T) *world {
	w := &world{t: t, now: t0, rnd: env.NewRand(3), nodes: map[string]*node{}, cloudO: &obs{}}
	f, err := fleet.Open(fleet.Config{SecretKey: bytes.Repeat([]byte{1}, 32), Broker: "b:8883", API: "https://c", Observer: w.cloudO,
		CertLifetime: 6 * time.Hour, RenewGrace: 48 * time.Hour}, w.rnd, vfs.NewMem(), "cloud", t0)
	if err != nil {
		t.Fatal(err)
	}
	w.cloud = f
	w.blob = []byte("#!/bin/true\n")
	s := sha256.Sum256(w.blob)
	w.sha = hex.EncodeToString(s[:])
	if err := f.PutArtifact(fleet.ArtifactInfo{SHA256: w.sha, Size: int64(len(w.blob)), Name: "app"}, t0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range w.nodes {
			_ = n.a.Close()
		}
		_ = f.Close()
	})
	return w
}

func (w *world) config() Config {
	return Config{ResyncJitter: 10 * time.Second, ReportEvery: time.Minute, AckTimeout: 20 * time.Second, RetryMin: time.Second, RetryMax: time.Minute}
}

// join creates and activates a node.
func (w *world) join(name string, labels map[string]string, cfg Config) *node {
	w.t.Helper()
	n := &node{name: name, fs: vfs.NewCrashableMem(), running: map[string]uint64{}, obs: &obs{}, cfg: cfg}
	n.cfg.Observer = n.obs
	a, err := New(n.cfg, env.NewRand(uint64(len(w.nodes))+10), n.fs, "edge", w.now)
	if err != nil {
		w.t.Fatal(err)
	}
	n.a = a
	w.nodes[name] = n
	join, _, err := w.cloud.CreateToken(name, labels, 0, w.now)
	if err != nil {
		w.t.Fatal(err)
	}
	j, _ := api.DecodeJoin(join)
	if err := a.Activate(j, w.now); err != nil {
		w.t.Fatal(err)
	}
	w.settle()
	if !a.Activated() || a.Node() != name {
		w.t.Fatalf("%s not activated", name)
	}
	n.up = true
	a.LinkUp(w.now)
	w.settle()
	return n
}

// settle runs every action until nothing is left.
func (w *world) settle() {
	for i := 0; i < 1000; i++ {
		busy := false
		for _, name := range sortedKeys(w.nodes) {
			n := w.nodes[name]
			r := n.a.Ready()
			if !r.Empty() {
				busy = true
			}
			w.do(n, r)
		}
		out := w.cloud.Ready()
		for _, p := range out.Publish {
			busy = true
			for _, n := range w.nodes {
				if n.up && p.Topic == api.NodeDownTopic(n.name) {
					n.a.Message(p.Topic, p.Payload, w.now)
				}
			}
		}
		if !busy {
			return
		}
	}
	w.t.Fatal("no quiescence")
}

func sortedKeys(m map[string]*node) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func (w *world) do(n *node, r Ready) {
	for _, p := range r.Publish {
		if n.up {
			if err := w.cloud.HandleUp(p.Topic, p.Payload, w.now); err != nil {
				w.t.Fatal(err)
			}
		}
	}
	for _, s := range r.Stop {
		if n.running[s.Name] == s.Gen {
			delete(n.running, s.Name)
		}
	}
	for _, s := range r.Start {
		n.running[s.Name] = s.Gen
		n.a.AppStarted(s.Name, s.Gen, 100, w.now)
	}
	for _, art := range r.Fetch {
		if !n.cut && art.SHA256 == w.sha {
			if _, _, err := n.a.Artifacts().Put(bytes.NewReader(w.blob), art.SHA256); err != nil {
				w.t.Fatal(err)
			}
			n.a.ArtifactReady(art.SHA256, w.now)
		} else {
			n.a.ArtifactFailed(art.SHA256, w.now)
		}
	}
	for _, q := range r.Requests {
		if n.cut {
			_ = n.a.Response(q.ID, 0, []byte("unreachable"), w.now)
			continue
		}
		var body []byte
		status := http.StatusOK
		var err error
		var resp api.ActivateResponse
		switch q.Kind {
		case ReqActivate:
			var req api.ActivateRequest
			_ = json.Unmarshal(q.Body, &req)
			resp, err = w.cloud.Activate(req, w.now)
		case ReqRenew:
			var req api.RenewRequest
			_ = json.Unmarshal(q.Body, &req)
			resp, err = w.cloud.Renew(req, w.now)
		}
		if err != nil {
			status = fleet.StatusOf(err)
			body = []byte(err.Error())
		} else {
			body, _ = json.Marshal(resp)
		}
		if err := n.a.Response(q.ID, status, body, w.now); err != nil && status == http.StatusOK {
			w.t.Fatal(err)
		}
	}
}

// advance moves time to t, ticking every due deadline on the way.
func (w *world) advance(d time.Duration) {
	end := w.now.Add(d)
	for {
		next := end
		for _, n := range w.nodes {
			if dl := n.a.NextDeadline(); !dl.IsZero() && dl.Before(next) {
				next = dl
			}
		}
		if dl := w.cloud.NextDeadline(); !dl.IsZero() && dl.Before(next) {
			next = dl
		}
		if next.Before(w.now) {
			next = w.now
		}
		w.now = next
		for _, name := range sortedKeys(w.nodes) {
			w.nodes[name].a.Tick(w.now)
		}
		_ = w.cloud.Tick(w.now)
		w.settle()
		if !w.now.Before(end) {
			return
		}
	}
}

func (w *world) setLink(n *node, up bool) {
	if n.up == up {
		return
	}
	n.up, n.cut = up, !up
	if up {
		n.a.LinkUp(w.now)
	} else {
		n.a.LinkDown(w.now)
	}
	w.settle()
}

// reboot loses power on the node and starts its agent again.
func (w *world) reboot(n *node) {
	w.t.Helper()
	clone := n.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 30, RNG: rand.New(rand.NewPCG(5, 6))})
	_ = n.a.Close()
	n.fs = clone
	n.running = map[string]uint64{}
	a, err := New(n.cfg, env.NewRand(99), n.fs, "edge", w.now)
	if err != nil {
		w.t.Fatal(err)
	}
	n.a = a
	wasUp := n.up
	n.up = false
	w.settle()
	if wasUp {
		w.setLink(n, true)
	}
}

func (w *world) deploy(name, selector string, revArgs ...string) {
	w.t.Helper()
	if _, err := w.cloud.PutApp(api.App{Name: name, Selector: selector, Artifact: api.Artifact{SHA256: w.sha}, Args: revArgs}, w.now); err != nil {
		w.t.Fatal(err)
	}
	w.settle()
}

func TestDeployByLabelAndConverge(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := w.join("a", map[string]string{"site": "x"}, w.config())
	b := w.join("b", map[string]string{"site": "y"}, w.config())
	w.advance(15 * time.Second) // past the resync jitter
	w.deploy("web", "site=x")
	w.advance(5 * time.Second)
	if _, ok := a.running["web"]; !ok {
		t.Errorf("a runs %v, want web", a.running)
	}
	if len(b.running) != 0 {
		t.Errorf("b runs %v, want nothing", b.running)
	}
	na, _ := w.cloud.Node("a")
	if a.a.Applied() != na.DesiredVersion {
		t.Errorf("applied %d, desired %d", a.a.Applied(), na.DesiredVersion)
	}
	w.advance(2 * time.Minute)
	na, _ = w.cloud.Node("a")
	if na.Status == nil || na.Status.AppliedVersion != na.DesiredVersion || len(na.Status.Apps) != 1 || na.Status.Apps[0].State != api.AppRunning {
		t.Errorf("reported status %+v", na.Status)
	}
}

// The node runs, restarts and reboots its apps with no cloud at all, and
// a desired state changed while it was offline arrives on reconnect.
func TestOfflineAutonomy(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	n := w.join("a", map[string]string{"site": "x"}, w.config())
	w.deploy("web", "site=x", "v1")
	w.advance(30 * time.Second)
	gen := n.running["web"]
	if gen == 0 {
		t.Fatal("not running")
	}
	w.setLink(n, false)
	// The app crashes offline: restarted by its policy.
	n.a.AppExited("web", gen, 1, w.now)
	delete(n.running, "web")
	w.advance(2 * time.Second)
	if n.running["web"] <= gen {
		t.Fatalf("not restarted offline: %v", n.running)
	}
	// Power loss, offline: started again from the local store.
	w.reboot(n)
	if _, ok := n.running["web"]; !ok {
		t.Fatalf("not started after an offline reboot: %v", n.running)
	}
	// The desired state changes while the node is offline.
	w.deploy("web", "site=x", "v2")
	w.advance(3 * time.Hour)
	if n.a.Desired().Apps[0].Args[0] != "v1" {
		t.Fatal("a desired state arrived while offline")
	}
	if _, ok := n.running["web"]; !ok {
		t.Fatal("stopped while offline")
	}
	w.setLink(n, true)
	w.advance(30 * time.Second)
	if got := n.a.Desired().Apps[0].Args[0]; got != "v2" {
		t.Errorf("after reconnect the node holds %s, want v2", got)
	}
	nd, _ := w.cloud.Node("a")
	if n.a.Applied() != nd.DesiredVersion {
		t.Errorf("applied %d, desired %d", n.a.Applied(), nd.DesiredVersion)
	}
}

// Every record reaches the cloud once, across reconnects, resends and
// power losses; the outbox drains in order after an outage.
func TestOutboxEffectivelyOnce(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	cfg := w.config()
	cfg.BatchRecords = 7
	n := w.join("a", nil, cfg)
	w.advance(time.Minute)
	w.setLink(n, false)
	for i := 0; i < 50; i++ {
		n.a.DeviceReported(api.DeviceReport{Device: "d", Props: map[string]json.RawMessage{"i": json.RawMessage("1")}}, w.now)
		w.advance(time.Minute)
		if i == 20 {
			w.reboot(n)
		}
	}
	w.setLink(n, true)
	w.advance(2 * time.Second)
	w.setLink(n, false) // cut mid-drain
	w.advance(time.Minute)
	w.setLink(n, true)
	w.advance(5 * time.Minute)
	if p := n.a.OutboxStats().Pending; p != 0 {
		t.Errorf("%d records still pending", p)
	}
	// Applied exactly the appended ones, in order, once each.
	if d := cmp.Diff(n.obs.appended, w.cloudO.applied); d != "" {
		t.Errorf("applied differs from appended (-appended +applied):\n%s", d)
	}
	if len(n.obs.dropped) != 0 {
		t.Errorf("dropped %v", n.obs.dropped)
	}
}

func TestOutboxBoundDropsOldest(t *testing.T) {
	t.Parallel()
	// 25 reports one by one, and in batches (one synced batch each), one
	// of them larger than the bound: the batch's own earlier records go.
	for _, batches := range [][]int{{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {7, 18}, {25}} {
		t.Run(fmt.Sprint(len(batches), " batches"), func(t *testing.T) {
			t.Parallel()
			outboxBound(t, batches)
		})
	}
}

func outboxBound(t *testing.T, batches []int) {
	w := newWorld(t)
	cfg := w.config()
	cfg.Outbox.MaxRecords = 10
	cfg.ReportEvery = time.Hour
	n := w.join("a", nil, cfg)
	w.advance(time.Minute)
	w.setLink(n, false)
	before := n.a.OutboxStats()
	for _, size := range batches {
		rs := make([]api.DeviceReport, size)
		for i := range rs {
			rs[i] = api.DeviceReport{Device: "d"}
		}
		n.a.DevicesReported(rs, w.now)
	}
	st := n.a.OutboxStats()
	if st.Pending != 10 || st.DroppedFull < 15 || st.Appended-before.Appended != 25 {
		t.Errorf("outbox %+v: want 10 pending, 15+ dropped, 25 appended", st)
	}
	// What is kept is the newest, in sequence.
	last := n.obs.appended[len(n.obs.appended)-10:]
	for i := 1; i < len(last); i++ {
		if last[i] != last[i-1]+1 {
			t.Fatalf("appended %v: not contiguous", n.obs.appended)
		}
	}
	w.setLink(n, true)
	w.advance(time.Minute)
	nd, _ := w.cloud.Node("a")
	if nd.Outbox.Gaps != uint64(len(n.obs.dropped)) {
		t.Errorf("cloud counted %d gaps, node dropped %d", nd.Outbox.Gaps, len(n.obs.dropped))
	}
	// Every record not dropped was applied.
	dropped := map[uint64]bool{}
	for _, s := range n.obs.dropped {
		dropped[s] = true
	}
	var want []uint64
	for _, s := range n.obs.appended {
		if !dropped[s] {
			want = append(want, s)
		}
	}
	if d := cmp.Diff(want, w.cloudO.applied); d != "" {
		t.Errorf("(-kept +applied):\n%s", d)
	}
}

func TestRestartPolicyBackoff(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	n := w.join("a", nil, w.config())
	w.deploy("crashy", "")
	var delays []time.Duration
	for i := 0; i < 8; i++ {
		gen := n.running["crashy"]
		n.a.AppExited("crashy", gen, 2, w.now)
		delete(n.running, "crashy")
		start := w.now
		for n.running["crashy"] == 0 {
			w.advance(100 * time.Millisecond)
		}
		delays = append(delays, w.now.Sub(start).Round(time.Second))
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60}
	for i := range want {
		want[i] *= time.Second
	}
	if d := cmp.Diff(want, delays); d != "" {
		t.Errorf("restart delays (-want +got):\n%s", d)
	}
	// A run longer than StableAfter starts over from the shortest delay.
	w.advance(time.Minute)
	n.a.AppExited("crashy", n.running["crashy"], 2, w.now)
	delete(n.running, "crashy")
	start := w.now
	for n.running["crashy"] == 0 {
		w.advance(100 * time.Millisecond)
	}
	if d := w.now.Sub(start).Round(time.Second); d != time.Second {
		t.Errorf("after a stable run, restarted after %v", d)
	}
}

func TestRestartPolicies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		policy  string
		code    int
		restart bool
	}{
		{api.RestartAlways, 0, true}, {api.RestartAlways, 3, true},
		{api.RestartOnFailure, 0, false}, {api.RestartOnFailure, 3, true},
		{api.RestartNever, 3, false},
	}
	for _, tc := range tests {
		w := newWorld(t)
		n := w.join("a", nil, w.config())
		if _, err := w.cloud.PutApp(api.App{Name: "p", Artifact: api.Artifact{SHA256: w.sha}, Restart: api.Restart{Policy: tc.policy}}, w.now); err != nil {
			t.Fatal(err)
		}
		w.settle()
		gen := n.running["p"]
		n.a.AppExited("p", gen, tc.code, w.now)
		delete(n.running, "p")
		w.advance(5 * time.Second)
		if got := n.running["p"] > gen; got != tc.restart {
			t.Errorf("%s, exit %d: restarted %v, want %v", tc.policy, tc.code, got, tc.restart)
		}
	}
}

func TestHealthFailuresRestart(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	n := w.join("a", nil, w.config())
	if _, err := w.cloud.PutApp(api.App{Name: "h", Artifact: api.Artifact{SHA256: w.sha},
		Health: &api.Health{Exec: []string{"check"}, Failures: 2, Grace: api.Duration(time.Second)}}, w.now); err != nil {
		t.Fatal(err)
	}
	w.settle()
	gen := n.running["h"]
	n.a.AppHealth("h", gen, false, w.now) // within the grace: not counted
	w.advance(2 * time.Second)
	n.a.AppHealth("h", gen, false, w.now)
	if n.running["h"] != gen {
		t.Fatal("restarted after one failure")
	}
	n.a.AppHealth("h", gen, false, w.now)
	w.settle()
	if n.running["h"] <= gen {
		t.Error("not restarted after two failures")
	}
}

// A node offline past its certificate's expiry renews with the expired
// certificate when it comes back, then reconnects.
func TestCertificateRenewal(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	n := w.join("a", nil, w.config())
	first := n.a.CertExpires()
	w.advance(5 * time.Hour) // lifetime 6h: renewed at about 4h
	if !n.a.CertExpires().After(first) || n.a.Stats.Renewals != 1 {
		t.Fatalf("not renewed online: expires %v (was %v), renewals %d", n.a.CertExpires(), first, n.a.Stats.Renewals)
	}
	// Offline, the cloud unreachable over HTTPS too, past the expiry.
	exp := n.a.CertExpires()
	w.setLink(n, false)
	w.advance(10 * time.Hour)
	if !w.now.After(exp) || n.a.CertExpires() != exp {
		t.Fatalf("expected an expired certificate: now %v, expires %v", w.now, n.a.CertExpires())
	}
	if n.a.Stats.RenewFailures == 0 {
		t.Error("no renewal attempted while offline")
	}
	// Back: the renewal (with the expired certificate) succeeds within the
	// retry backoff, and the link is asked to reconnect.
	n.cut = false
	w.advance(2 * time.Minute)
	if !n.a.CertExpires().After(w.now) {
		t.Fatalf("certificate not renewed after the outage: expires %v, now %v", n.a.CertExpires(), w.now)
	}
}

// A link that takes publishes but brings nothing back (half-open) is
// replaced after a few acknowledgement timeouts.
func TestSilentLinkReconnects(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	n := w.join("a", nil, w.config())
	w.advance(time.Minute)
	n.a.Ready()
	// The cloud stops answering; the node still believes it is connected.
	reconnects := 0
	for i := 0; i < 200 && reconnects == 0; i++ {
		w.now = w.now.Add(time.Second)
		n.a.Tick(w.now)
		if n.a.Ready().Reconnect {
			reconnects++
		}
	}
	if reconnects == 0 {
		t.Fatal("no reconnect after 200s of silence")
	}
	if took := w.now.Sub(t0.Add(time.Minute)); took > 4*n.cfg.AckTimeout+time.Minute {
		t.Errorf("reconnect after %v of silence", took)
	}
}

// An activation that does not reach the cloud is sent again with backoff
// (the token is still good); a refusal is final.
func TestActivationRetries(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	n := &node{name: "a", fs: vfs.NewCrashableMem(), running: map[string]uint64{}, obs: &obs{}, cfg: w.config(), cut: true}
	a, err := New(n.cfg, env.NewRand(1), n.fs, "edge", w.now)
	if err != nil {
		t.Fatal(err)
	}
	n.a = a
	w.nodes["a"] = n
	join, _, _ := w.cloud.CreateToken("a", nil, 0, w.now)
	j, _ := api.DecodeJoin(join)
	if err := a.Activate(j, w.now); err != nil {
		t.Fatal(err)
	}
	w.advance(10 * time.Second) // unreachable: retried
	if a.Activated() {
		t.Fatal("activated while unreachable")
	}
	n.cut = false
	w.advance(time.Minute)
	if !a.Activated() {
		t.Fatal("not activated once the cloud is reachable")
	}
}
