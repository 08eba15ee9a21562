package fleet

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/cloud/ca"
	"github.com/skybridge-mq/skybridge/impl/acl"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

const sha1 = "1111111111111111111111111111111111111111111111111111111111111111"

type recorder struct {
	applied  []string
	requests int
}

func (r *recorder) Applied(node string, epoch uint64, rec *api.Record) {
	r.applied = append(r.applied, node+"/"+uitoa(rec.Seq))
}
func (r *recorder) Request(string, string) { r.requests++ }

type harness struct {
	t   *testing.T
	fs  vfs.FS
	rnd *env.SeededRand
	f   *Fleet
	obs *recorder
	cfg Config
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, fs: vfs.NewCrashableMem(), rnd: env.NewRand(7), obs: &recorder{}}
	h.cfg = Config{SecretKey: bytes.Repeat([]byte{9}, 32), Broker: "cloud:8883", API: "https://cloud:8443", Observer: h.obs,
		CertLifetime: time.Hour, RenewGrace: 24 * time.Hour}
	h.open(t0)
	t.Cleanup(func() { _ = h.f.Close() })
	return h
}

func (h *harness) open(now time.Time) {
	h.t.Helper()
	f, err := Open(h.cfg, h.rnd, h.fs, "cloud", now)
	if err != nil {
		h.t.Fatal(err)
	}
	h.f = f
}

// crash loses power: only what was synced survives.
func (h *harness) crash(now time.Time) {
	h.t.Helper()
	clone := h.fs.(*vfs.MemFS).CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(1, 2))})
	_ = h.f.Close()
	h.fs = clone
	h.open(now)
}

func (h *harness) artifact() {
	h.t.Helper()
	if err := h.f.PutArtifact(ArtifactInfo{SHA256: sha1, Size: 10, Name: "app"}, t0); err != nil {
		h.t.Fatal(err)
	}
}

// activate registers and activates a node; it returns its key and cert.
func (h *harness) activate(node string, labels map[string]string, now time.Time) (ed25519.PrivateKey, []byte) {
	h.t.Helper()
	_, token, err := h.f.CreateToken(node, labels, 0, now)
	if err != nil {
		h.t.Fatal(err)
	}
	key, _, _ := ca.NewKey(h.rnd)
	csr, _ := ca.CSR(key, node)
	resp, err := h.f.Activate(api.ActivateRequest{Token: token, CSR: csr}, now)
	if err != nil {
		h.t.Fatal(err)
	}
	h.f.Ready() // its first desired state
	return key, resp.Cert
}

func (h *harness) up(u api.Up, now time.Time) api.Down {
	h.t.Helper()
	b, _ := json.Marshal(u)
	if err := h.f.HandleUp(api.NodeUpTopic(u.Node), b, now); err != nil {
		h.t.Fatal(err)
	}
	out := h.f.Ready()
	var d api.Down
	for _, p := range out.Publish {
		if p.Topic == api.NodeDownTopic(u.Node) {
			if err := json.Unmarshal(p.Payload, &d); err != nil {
				h.t.Fatal(err)
			}
		}
	}
	return d
}

func rec(seq uint64, kind string, body any) api.Record {
	b, _ := json.Marshal(body)
	return api.Record{Seq: seq, At: t0, Kind: kind, Body: b}
}

func TestActivation(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	join, token, err := h.f.CreateToken("edge-1", map[string]string{"site": "a"}, time.Minute, t0)
	if err != nil {
		t.Fatal(err)
	}
	j, err := api.DecodeJoin(join)
	if err != nil || j.Token != token || j.CAHash != h.f.CA().Fingerprint() || j.API != "https://cloud:8443" {
		t.Fatalf("join %+v %v", j, err)
	}
	if n, _ := h.f.Node("edge-1"); n.State != api.NodePending {
		t.Errorf("state %s before activation", n.State)
	}
	key, _, _ := ca.NewKey(h.rnd)
	csr, _ := ca.CSR(key, "ignored")
	if _, err := h.f.Activate(api.ActivateRequest{Token: token + "x", CSR: csr}, t0); StatusOf(err) != http.StatusForbidden {
		t.Errorf("wrong secret: %v", err)
	}
	resp, err := h.f.Activate(api.ActivateRequest{Token: token, CSR: csr}, t0)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := h.f.CA().Verify(resp.Cert, t0, false)
	if err != nil || nc.Node != "edge-1" {
		t.Fatalf("certificate %+v %v", nc, err)
	}
	if !h.f.CertValid("edge-1", nc.Serial) || h.f.CertValid("edge-1", nc.Serial+1) {
		t.Error("CertValid")
	}
	// One time.
	if _, err := h.f.Activate(api.ActivateRequest{Token: token, CSR: csr}, t0); StatusOf(err) != http.StatusForbidden {
		t.Errorf("token used twice: %v", err)
	}
	// Expired.
	_, token2, _ := h.f.CreateToken("edge-2", nil, time.Minute, t0)
	if _, err := h.f.Activate(api.ActivateRequest{Token: token2, CSR: csr}, t0.Add(time.Minute)); StatusOf(err) != http.StatusForbidden {
		t.Errorf("expired token: %v", err)
	}
	n, _ := h.f.Node("edge-1")
	if n.State != api.NodeActive || n.Labels["site"] != "a" || n.DesiredVersion != 1 {
		t.Errorf("node after activation: %+v", n)
	}
}

// Outstanding tokens are listed without their secrets; a revoked one no
// longer activates, survives no crash, and used or expired ones are not
// listed.
func TestTokensListAndRevoke(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, used, _ := h.f.CreateToken("used", nil, time.Hour, t0)
	_, gone, _ := h.f.CreateToken("gone", map[string]string{"site": "b"}, time.Hour, t0)
	_, kept, _ := h.f.CreateToken("kept", map[string]string{"site": "a"}, time.Hour, t0)
	h.f.CreateToken("short", nil, time.Minute, t0)
	key, _, _ := ca.NewKey(h.rnd)
	csr, _ := ca.CSR(key, "x")
	if _, err := h.f.Activate(api.ActivateRequest{Token: used, CSR: csr}, t0); err != nil {
		t.Fatal(err)
	}
	idOf := func(tok string) string { id, _, _ := strings.Cut(tok, "."); return id }
	if err := h.f.RevokeToken(idOf(gone), t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := h.f.RevokeToken(idOf(gone), t0.Add(time.Second)); StatusOf(err) != http.StatusNotFound {
		t.Errorf("revoking twice: %v", err)
	}
	last := h.f.LastEvents(2)
	if len(last) != 2 || last[1].Type != "token.revoked" || last[1].Node != "gone" || last[0].Seq+1 != last[1].Seq {
		t.Errorf("last events: %+v", last)
	}
	h.crash(t0.Add(2 * time.Second))
	got := h.f.Tokens(t0.Add(2 * time.Minute)) // "short" has expired
	want := []api.TokenInfo{{ID: idOf(kept), Node: "kept", Labels: map[string]string{"site": "a"}, Expires: t0.Add(time.Hour)}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tokens (-want +got):\n%s", diff)
	}
	for _, tk := range got {
		if strings.Contains(kept, "."+tk.ID) || tk.ID == kept {
			t.Errorf("a listed token carries its secret: %+v", tk)
		}
	}
	if _, err := h.f.Activate(api.ActivateRequest{Token: gone, CSR: csr}, t0.Add(3*time.Second)); StatusOf(err) != http.StatusForbidden {
		t.Errorf("a revoked token activated: %v", err)
	}
	if n, err := h.f.Node("gone"); err != nil || n.State != api.NodePending {
		t.Errorf("the revoked token's node: %+v %v", n, err)
	}
	if all := h.f.LastEvents(1 << 20); len(all) != len(h.f.Events(0, 0)) {
		t.Errorf("LastEvents beyond the log: %d events, the log has %d", len(all), len(h.f.Events(0, 0)))
	}
}

func TestSchedulingAndVersions(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.artifact()
	h.activate("a1", map[string]string{"site": "a"}, t0)
	h.activate("b1", map[string]string{"site": "b"}, t0)
	h.f.Ready()
	app := api.App{Name: "web", Selector: "site=a", Artifact: api.Artifact{SHA256: sha1}, Args: []string{"-v"}}
	got, err := h.f.PutApp(app, t0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Revision != 1 || got.Artifact.Size != 10 || got.Artifact.Name != "app" {
		t.Errorf("stored app %+v", got)
	}
	out := h.f.Ready()
	if len(out.Publish) != 1 || out.Publish[0].Topic != api.NodeDownTopic("a1") {
		t.Fatalf("pushes %+v, want one to a1", out.Publish)
	}
	var d api.Down
	_ = json.Unmarshal(out.Publish[0].Payload, &d)
	if d.Desired == nil || d.Desired.Version != 2 || len(d.Desired.Apps) != 1 || d.Desired.Apps[0].Restart.Policy != api.RestartAlways {
		t.Fatalf("desired %+v", d.Desired)
	}
	// The same app again changes nothing.
	if again, _ := h.f.PutApp(app, t0); again.Revision != 1 || h.f.HasReady() {
		t.Errorf("unchanged app: revision %d, ready %v", again.Revision, h.f.HasReady())
	}
	// Relabelling moves it.
	if err := h.f.SetLabels("b1", map[string]string{"site": "a"}, t0); err != nil {
		t.Fatal(err)
	}
	if nodes, _ := h.f.AppNodes("web"); !cmp.Equal(nodes, []string{"a1", "b1"}) {
		t.Errorf("app nodes %v", nodes)
	}
	// A config it mounts: a new version reaches the node.
	if _, err := h.f.PutConfig(api.Config{Name: "conf", Data: map[string]string{"app.yaml": "x: 1"}}, t0); err != nil {
		t.Fatal(err)
	}
	app.Mounts = []api.Mount{{Config: "conf", Dir: "etc"}}
	if _, err := h.f.PutApp(app, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := h.f.PutConfig(api.Config{Name: "conf", Data: map[string]string{"app.yaml": "x: 2"}}, t0); err != nil {
		t.Fatal(err)
	}
	dd, _ := h.f.Desired("a1")
	if f := dd.Apps[0].Files; len(f) != 1 || f[0].Path != "etc/app.yaml" || string(f[0].Data) != "x: 2" {
		t.Errorf("files %+v", f)
	}
	if err := h.f.DeleteConfig("conf", t0); StatusOf(err) != http.StatusConflict {
		t.Errorf("deleting a mounted config: %v", err)
	}
	if _, err := h.f.PutApp(api.App{Name: "x", Artifact: api.Artifact{SHA256: strings.Repeat("2", 64)}}, t0); StatusOf(err) != http.StatusBadRequest {
		t.Errorf("app with an unknown artifact: %v", err)
	}
	// Versions survive a power loss and are not bumped by the reload.
	before, _ := h.f.Node("a1")
	h.crash(t0)
	after, _ := h.f.Node("a1")
	if before.DesiredVersion != after.DesiredVersion {
		t.Errorf("desired version %d before a crash, %d after", before.DesiredVersion, after.DesiredVersion)
	}
}

func TestUpstreamDedupe(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.activate("n", nil, t0)
	ev := api.EdgeEvent{Type: "app.exited", App: "web"}
	// A first batch 1..3.
	d := h.up(api.Up{Node: "n", Epoch: 5, Floor: 1, DesiredVersion: 1, Records: []api.Record{rec(1, api.KindEvent, ev), rec(2, api.KindEvent, ev), rec(3, api.KindEvent, ev)}}, t0)
	if d.Ack == nil || d.Ack.Seq != 3 || d.Desired != nil {
		t.Fatalf("down %+v", d)
	}
	// Resent with more: 2..4 (2 and 3 are duplicates).
	d = h.up(api.Up{Node: "n", Epoch: 5, Floor: 2, DesiredVersion: 1, Records: []api.Record{rec(2, api.KindEvent, ev), rec(3, api.KindEvent, ev), rec(4, api.KindEvent, ev)}}, t0)
	if d.Ack.Seq != 4 {
		t.Errorf("ack %d, want 4", d.Ack.Seq)
	}
	// A hole (6 without 5, floor 5): nothing applied, ack stays.
	d = h.up(api.Up{Node: "n", Epoch: 5, Floor: 5, Records: []api.Record{rec(6, api.KindEvent, ev)}}, t0)
	if d.Ack.Seq != 4 {
		t.Errorf("ack %d after a hole, want 4", d.Ack.Seq)
	}
	if d.Desired == nil || d.Desired.Version != 1 {
		t.Errorf("a node reporting desired version 0 gets its desired state: %+v", d.Desired)
	}
	// The node dropped 5..6 (floor 7).
	d = h.up(api.Up{Node: "n", Epoch: 5, Floor: 7, DesiredVersion: 1, Records: []api.Record{rec(7, api.KindEvent, ev)}}, t0)
	if d.Ack.Seq != 7 {
		t.Errorf("ack %d after a gap, want 7", d.Ack.Seq)
	}
	want := []string{"n/1", "n/2", "n/3", "n/4", "n/7"}
	if diff := cmp.Diff(want, h.obs.applied); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
	n, _ := h.f.Node("n")
	if n.Outbox.Duplicates != 2 || n.Outbox.Gaps != 2 || n.Outbox.Applied != 7 {
		t.Errorf("cursor %+v", n.Outbox)
	}
	// The cursor is durable: after a power loss, 7 is still a duplicate.
	h.crash(t0)
	d = h.up(api.Up{Node: "n", Epoch: 5, Floor: 7, DesiredVersion: 1, Records: []api.Record{rec(7, api.KindEvent, ev), rec(8, api.KindEvent, ev)}}, t0)
	if d.Ack.Seq != 8 || h.obs.applied[len(h.obs.applied)-1] != "n/8" || len(h.obs.applied) != 6 {
		t.Errorf("after a crash: ack %d, applied %v", d.Ack.Seq, h.obs.applied)
	}
	// A new store (epoch) starts over.
	d = h.up(api.Up{Node: "n", Epoch: 6, Floor: 1, DesiredVersion: 1, Records: []api.Record{rec(1, api.KindEvent, ev)}}, t0)
	if d.Ack.Seq != 1 || d.Ack.Epoch != 6 {
		t.Errorf("new epoch: ack %+v", d.Ack)
	}
	events := h.f.Events(0, 0)
	var kinds []string
	for _, e := range events {
		if e.Type == "edge.app.exited" || strings.HasPrefix(e.Type, "outbox.") {
			kinds = append(kinds, e.Type)
		}
	}
	if diff := cmp.Diff([]string{"edge.app.exited", "edge.app.exited", "edge.app.exited", "edge.app.exited", "outbox.gap", "edge.app.exited", "edge.app.exited", "outbox.reset", "edge.app.exited"}, kinds); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// The planted bug NoDedupe applies duplicates: the test that the
// simulator's oracle relies on to see them.
func TestNoDedupeHook(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.cfg.Hooks.NoDedupe = true
	_ = h.f.Close()
	h.open(t0)
	h.activate("n", nil, t0)
	r := rec(1, api.KindEvent, api.EdgeEvent{Type: "x"})
	h.up(api.Up{Node: "n", Epoch: 1, Floor: 1, Records: []api.Record{r}}, t0)
	h.up(api.Up{Node: "n", Epoch: 1, Floor: 1, Records: []api.Record{r}}, t0)
	if len(h.obs.applied) != 2 {
		t.Errorf("applied %v", h.obs.applied)
	}
}

func TestLeases(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.activate("n", nil, t0)
	h.up(api.Up{Node: "n", Epoch: 1, Floor: 1, DesiredVersion: 1}, t0)
	if n, _ := h.f.Node("n"); !n.Online {
		t.Fatal("not online after a message")
	}
	lease := h.f.Settings().Lease
	if got := h.f.NextDeadline(); !got.Equal(t0.Add(lease)) {
		t.Errorf("deadline %v", got)
	}
	// A cloud restart does not take it offline: a fresh lease.
	h.crash(t0.Add(lease - time.Second))
	_ = h.f.Tick(t0.Add(lease))
	if n, _ := h.f.Node("n"); !n.Online {
		t.Error("offline right after a cloud restart")
	}
	_ = h.f.Tick(t0.Add(2*lease - time.Second))
	n, _ := h.f.Node("n")
	if n.Online || n.State != api.NodeActive || n.DesiredVersion != 1 {
		t.Errorf("after the lease: %+v (offline, still active, desired kept)", n)
	}
}

func TestRenew(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	key, cert := h.activate("n", nil, t0)
	newKey, _, _ := ca.NewKey(h.rnd)
	csr, _ := ca.CSR(newKey, "n")
	// Expired (lifetime 1h) but within the grace: renewed.
	late := t0.Add(3 * time.Hour)
	resp, err := h.f.Renew(api.RenewRequest{Node: "n", CSR: csr, Cert: cert, Signature: ca.Prove(key, csr)}, late)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := h.f.CA().Verify(resp.Cert, late, false)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := ca.ParseCert(cert)
	if !h.f.CertValid("n", nc.Serial) || !h.f.CertValid("n", old.Serial) {
		t.Error("the new and the previous certificate are both accepted")
	}
	// Renewing again from the new one retires the old one.
	k3, _, _ := ca.NewKey(h.rnd)
	csr3, _ := ca.CSR(k3, "n")
	if _, err := h.f.Renew(api.RenewRequest{Node: "n", CSR: csr3, Cert: resp.Cert, Signature: ca.Prove(newKey, csr3)}, late); err != nil {
		t.Fatal(err)
	}
	if h.f.CertValid("n", old.Serial) {
		t.Error("a certificate two renewals old is still accepted")
	}
	if _, err := h.f.Renew(api.RenewRequest{Node: "n", CSR: csr3, Cert: cert, Signature: ca.Prove(key, csr3)}, late); StatusOf(err) != http.StatusForbidden {
		t.Errorf("renewal with a replaced certificate: %v", err)
	}
	// No proof, or past the grace: refused.
	if _, err := h.f.Renew(api.RenewRequest{Node: "n", CSR: csr3, Cert: resp.Cert, Signature: ca.Prove(k3, csr3)}, late); StatusOf(err) != http.StatusForbidden {
		t.Errorf("renewal without proof: %v", err)
	}
	if _, err := h.f.Renew(api.RenewRequest{Node: "n", CSR: csr3, Cert: resp.Cert, Signature: ca.Prove(newKey, csr3)}, late.Add(48*time.Hour)); StatusOf(err) != http.StatusForbidden {
		t.Errorf("renewal past the grace: %v", err)
	}
	// Revocation.
	if err := h.f.Revoke("n", late); err != nil {
		t.Fatal(err)
	}
	if h.f.CertValid("n", nc.Serial) {
		t.Error("revoked node accepted")
	}
	if out := h.f.Ready(); !cmp.Equal(out.Kick, []string{"n"}) {
		t.Errorf("kick %v", out.Kick)
	}
}

func TestShadow(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.activate("n", nil, t0)
	model := api.DeviceModel{Name: "thermo", Properties: []api.Property{{Name: "temp", Type: api.PropFloat}, {Name: "setpoint", Type: api.PropFloat, Writable: true}}}
	if err := h.f.PutDeviceModel(model, t0); err != nil {
		t.Fatal(err)
	}
	if err := h.f.PutDevice(api.Device{Name: "t1", Model: "thermo", Node: "n"}, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := h.f.SetShadowDesired("t1", map[string]json.RawMessage{"temp": json.RawMessage("3")}, t0); StatusOf(err) != http.StatusBadRequest {
		t.Errorf("writing a read-only property: %v", err)
	}
	if _, err := h.f.SetShadowDesired("t1", map[string]json.RawMessage{"setpoint": json.RawMessage(`"hot"`)}, t0); StatusOf(err) != http.StatusBadRequest {
		t.Errorf("a string for a float: %v", err)
	}
	sh, err := h.f.SetShadowDesired("t1", map[string]json.RawMessage{"setpoint": json.RawMessage("21.5")}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if string(sh.Delta["setpoint"]) != "21.5" {
		t.Errorf("delta %v", sh.Delta)
	}
	d, _ := h.f.Desired("n")
	if len(d.Devices) != 1 || string(d.Devices[0].Desired["setpoint"]) != "21.5" || d.Devices[0].DesiredVersion != 1 {
		t.Errorf("devices in the desired state: %+v", d.Devices)
	}
	rep := api.DeviceReport{Device: "t1", Props: map[string]json.RawMessage{"setpoint": json.RawMessage("21.5"), "temp": json.RawMessage("19")}}
	h.up(api.Up{Node: "n", Epoch: 1, Floor: 1, Records: []api.Record{rec(1, api.KindDevice, rep)}}, t0)
	sh, _ = h.f.Shadow("t1")
	if len(sh.Delta) != 0 || string(sh.Reported["temp"]) != "19" || sh.ReportedVersion != 1 {
		t.Errorf("shadow after a report: %+v", sh)
	}
}

func TestSecretsAtRest(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	if _, err := h.f.PutSecret(api.Secret{Name: "db", Data: map[string]string{"password": "hunter2-very-secret"}}, t0); err != nil {
		t.Fatal(err)
	}
	s, _ := h.f.Secret("db")
	if s.Data["password"] != "" || s.Version != 1 {
		t.Errorf("secret read back: %+v", s)
	}
	_ = h.f.Close()
	// Nothing on the disk holds the plaintext.
	found := false
	var walk func(dir string)
	walk = func(dir string) {
		names, _ := h.fs.List(dir)
		for _, n := range names {
			p := h.fs.PathJoin(dir, n)
			if st, err := h.fs.Stat(p); err == nil && st.IsDir() {
				walk(p)
				continue
			}
			f, err := h.fs.Open(p)
			if err != nil {
				continue
			}
			st, _ := f.Stat()
			b := make([]byte, st.Size())
			_, _ = f.ReadAt(b, 0)
			f.Close()
			if bytes.Contains(b, []byte("hunter2-very-secret")) {
				found = true
			}
		}
	}
	walk("cloud")
	if found {
		t.Error("the secret is on the disk in plaintext")
	}
	h.open(t0)
	// The secret reaches a node that mounts it.
	h.artifact()
	h.activate("n", nil, t0)
	if _, err := h.f.PutApp(api.App{Name: "a", Artifact: api.Artifact{SHA256: sha1}, Mounts: []api.Mount{{Secret: "db", Dir: "sec"}}}, t0); err != nil {
		t.Fatal(err)
	}
	d, _ := h.f.Desired("n")
	if f := d.Apps[0].Files; len(f) != 1 || string(f[0].Data) != "hunter2-very-secret" || !f[0].Secret {
		t.Errorf("secret file %+v", f)
	}
	// Another key does not open it.
	_ = h.f.Close()
	h.cfg.SecretKey = bytes.Repeat([]byte{8}, 32)
	if _, err := Open(h.cfg, h.rnd, h.fs, "cloud", t0); err == nil {
		t.Error("opened with the wrong secret key")
	}
	h.cfg.SecretKey = bytes.Repeat([]byte{9}, 32)
	h.open(t0)
}

func TestDrainPacing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.cfg.DrainRate = 10
	_ = h.f.Close()
	h.open(t0)
	var waits []time.Duration
	for i := 0; i < 5; i++ {
		name := "n" + uitoa(uint64(i))
		h.activate(name, nil, t0)
		d := h.up(api.Up{Node: name, Epoch: 1, Floor: 1, DesiredVersion: 1, More: true}, t0)
		waits = append(waits, d.Ack.Wait.D())
	}
	want := []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 400 * time.Millisecond}
	if diff := cmp.Diff(want, waits); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
	// Without More, no wait.
	if d := h.up(api.Up{Node: "n0", Epoch: 1, Floor: 1, DesiredVersion: 1}, t0); d.Ack.Wait != 0 {
		t.Errorf("wait %v without more", d.Ack.Wait)
	}
}

func TestNodeAuth(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, cert := h.activate("n", nil, t0)
	nc, _ := ca.ParseCert(cert)
	a := NodeAuth{Check: h.f.CertValid}
	res := a.Authenticate(&broker.AuthRequest{CertSubject: nc.Cert.Subject.String(), ClientID: "n", DefaultTenant: "fleet"})
	if res.Code != packet.Success || res.User != "n" || res.Tenant != "fleet" {
		t.Errorf("node certificate: %+v", res)
	}
	for _, subj := range []string{"", "CN=n", "SERIALNUMBER=ff,CN=n", "CN=other,SERIALNUMBER=" + ca.SerialString(nc.Serial)} {
		if res := a.Authenticate(&broker.AuthRequest{CertSubject: subj, ClientID: "n"}); res.Code != packet.NotAuthorized {
			t.Errorf("%q: %+v", subj, res)
		}
	}
	// Another client id (the cloud's, say) is refused.
	for _, id := range []string{"", "other", CloudClientID} {
		if res := a.Authenticate(&broker.AuthRequest{CertSubject: nc.Cert.Subject.String(), ClientID: id}); res.Code != packet.NotAuthorized {
			t.Errorf("node certificate with client id %q: %+v", id, res)
		}
	}
	pub, _, _ := ed25519.GenerateKey(h.rnd)
	der, err := h.f.IssueCloudCert(pub, t0)
	if err != nil {
		t.Fatal(err)
	}
	cc, _ := ca.ParseCert(der)
	if res := a.Authenticate(&broker.AuthRequest{CertSubject: cc.Cert.Subject.String(), ClientID: CloudClientID}); res.Code != packet.Success || res.User != CloudUser {
		t.Errorf("cloud certificate: %+v", res)
	}
}

// An external broker's webhook gets the same decisions as NodeAuth, with
// each connection's ACL and the node certificate's expiry.
func TestBrokerHook(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, cert := h.activate("n", nil, t0)
	nc, _ := ca.ParseCert(cert)
	pub, _, _ := ed25519.GenerateKey(h.rnd)
	der, err := h.f.IssueCloudCert(pub, t0)
	if err != nil {
		t.Fatal(err)
	}
	cc, _ := ca.ParseCert(der)
	nodeSubj, cloudSubj := nc.Cert.Subject.String(), cc.Cert.Subject.String()
	deny := HookAnswer{Result: "deny", Reason: 0x87}
	// What each identity's claim lets it do, decided by the compiled claim
	// as the broker decides it.
	type can struct {
		pub, sub string
		ok       bool
	}
	for _, c := range []struct {
		name, subj, id string
		want           HookAnswer // its ACL is checked by the moves below
		moves          []can
	}{
		{"node", nodeSubj, "n", HookAnswer{Result: "allow", Tenant: "fl", User: "n", ExpiresAt: nc.Cert.NotAfter.Unix()}, []can{
			{pub: "skybridge/nodes/n/up", ok: true}, {sub: "skybridge/nodes/n/down", ok: true},
			{pub: "skybridge/nodes/m/up"}, {pub: "skybridge/nodes/n/down"}, {sub: "skybridge/nodes/m/down"},
			{sub: "skybridge/nodes/n/up"}, {sub: "#"}, {pub: "other"}}},
		{"cloud", cloudSubj, CloudClientID, HookAnswer{Result: "allow", Tenant: "fl", User: CloudUser}, []can{
			{pub: "skybridge/nodes/n/down", ok: true}, {sub: "skybridge/nodes/+/up", ok: true},
			{sub: "#"}, {pub: "other"}}},
		{"node with another client id", nodeSubj, "m", deny, nil},
		{"cloud with a node's client id", cloudSubj, "n", deny, nil},
		{"no certificate", "", "n", deny, nil},
		{"unknown serial", "CN=n,SERIALNUMBER=ff", "n", deny, nil},
	} {
		got := h.f.BrokerHook(c.subj, c.id, "fl")
		if d := cmp.Diff(c.want, got, cmpopts.IgnoreFields(HookAnswer{}, "ACL")); d != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, d)
		}
		if got.Result != "allow" {
			if got.ACL != nil {
				t.Errorf("%s: a refusal with an ACL", c.name)
			}
			continue
		}
		rules, err := got.ACL.Compile(false)
		if err != nil {
			t.Fatalf("%s: the claim does not compile: %v", c.name, err)
		}
		who := &acl.Client{Tenant: "fl", User: got.User, ClientID: c.id}
		for _, m := range c.moves {
			var d acl.Decision
			if m.pub != "" {
				d = rules.Publish(who, []byte(m.pub), false)
			} else {
				d = rules.Subscribe(who, []byte(m.sub))
			}
			if (d == acl.Allowed) != m.ok {
				t.Errorf("%s: publish %q / subscribe %q: %v, want allowed %v", c.name, m.pub, m.sub, d, m.ok)
			}
			if d != acl.Allowed && d != acl.Denied {
				t.Errorf("%s: publish %q / subscribe %q left undecided (%v): the claim must end in a deny", c.name, m.pub, m.sub, d)
			}
		}
	}
	// Revoked: refused from then on.
	if err := h.f.Revoke("n", t0); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(deny, h.f.BrokerHook(nodeSubj, "n", "fl")); d != "" {
		t.Errorf("revoked (-want +got):\n%s", d)
	}
}
