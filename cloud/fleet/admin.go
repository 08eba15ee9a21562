package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/skybridge-mq/skybridge/cloud/api"
)

// maxTokens bounds the outstanding activation tokens.
const maxTokens = 10000

func uitoa(v uint64) string { return strconv.FormatUint(v, 10) }

func (f *Fleet) randHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := f.rnd.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func tokenHash(secret string) string {
	s := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(s[:])
}

// CreateToken returns a one-time activation token for node, valid for ttl
// (0: the default), and its join string. A new node is registered as
// pending with labels; for a known node (a node re-installed, or revoked
// and let back) non-nil labels replace its labels when it activates.
func (f *Fleet) CreateToken(node string, labels map[string]string, ttl time.Duration, now time.Time) (join, token string, err error) {
	if err := api.ValidName(node); err != nil {
		return "", "", invalid(err)
	}
	if err := api.ValidLabels(labels); err != nil {
		return "", "", invalid(err)
	}
	if ttl <= 0 {
		ttl = f.cfg.TokenTTL
	}
	t := f.begin(now)
	for _, tr := range f.tokens.Values() {
		if !now.Before(tr.Expires) {
			f.tokens.Delete(tr.ID)
			t.b.Delete(keyToken + tr.ID)
		}
	}
	if f.tokens.Len() >= maxTokens {
		return "", "", errf(http.StatusTooManyRequests, "%d activation tokens outstanding", maxTokens)
	}
	id, err := f.randHex(8)
	if err != nil {
		return "", "", err
	}
	secret, err := f.randHex(16)
	if err != nil {
		return "", "", err
	}
	tr := &tokenRec{ID: id, Hash: tokenHash(secret), Node: node, Labels: labels, Expires: now.Add(ttl)}
	f.tokens.Set(id, tr)
	t.b.Put(keyToken+id, tr)
	if _, ok := f.nodes.Get(node); !ok {
		n := &nodeRec{Node: api.Node{Name: node, Labels: labels, State: api.NodePending, Created: now}}
		f.nodes.Set(node, n)
		t.putNode(n)
		t.event("node.registered", node, "", "", "")
	}
	t.event("token.created", node, "", "", "expires "+tr.Expires.UTC().Format(time.RFC3339))
	if err := t.commit(); err != nil {
		return "", "", err
	}
	token = id + "." + secret
	join = api.EncodeJoin(api.JoinToken{API: f.cfg.API, CAHash: f.ca.Fingerprint(), Token: token})
	return join, token, nil
}

// Tokens returns the activation tokens not used and not expired at now,
// by identifier. The secret half of a token is never kept, so it is never
// shown: a token's identifier names it for revocation.
func (f *Fleet) Tokens(now time.Time) []api.TokenInfo {
	out := []api.TokenInfo{}
	f.tokens.Scan(func(_ string, tr *tokenRec) bool {
		if now.Before(tr.Expires) {
			out = append(out, api.TokenInfo{ID: tr.ID, Node: tr.Node, Labels: maps.Clone(tr.Labels), Expires: tr.Expires})
		}
		return true
	})
	return out
}

// RevokeToken deletes an activation token before it is used. A pending
// node registered by it stays registered (a new token lets it in).
func (f *Fleet) RevokeToken(id string, now time.Time) error {
	tr, ok := f.tokens.Get(id)
	if !ok || !now.Before(tr.Expires) {
		return notFound("activation token", id)
	}
	t := f.begin(now)
	f.tokens.Delete(id)
	t.b.Delete(keyToken + id)
	t.event("token.revoked", tr.Node, "", "", "token "+id)
	return t.commit()
}

func publicNode(n *nodeRec) api.Node {
	out := n.Node
	out.Labels = maps.Clone(n.Labels)
	return out
}

// Nodes returns every node, by name.
func (f *Fleet) Nodes() []api.Node {
	out := make([]api.Node, 0, f.nodes.Len())
	f.nodes.Scan(func(_ string, n *nodeRec) bool {
		out = append(out, publicNode(n))
		return true
	})
	return out
}

// Node returns one node.
func (f *Fleet) Node(name string) (api.Node, error) {
	n, ok := f.nodes.Get(name)
	if !ok {
		return api.Node{}, notFound("node", name)
	}
	return publicNode(n), nil
}

// SetLabels replaces a node's labels (and so the apps it runs).
func (f *Fleet) SetLabels(name string, labels map[string]string, now time.Time) error {
	if err := api.ValidLabels(labels); err != nil {
		return invalid(err)
	}
	n, ok := f.nodes.Get(name)
	if !ok {
		return notFound("node", name)
	}
	t := f.begin(now)
	n.Labels = maps.Clone(labels)
	t.putNode(n)
	t.event("node.labels", name, "", "", fmt.Sprint(sortedLabels(labels)))
	if err := f.recompute(t, []*nodeRec{n}); err != nil {
		return t.abort(err)
	}
	return t.commit()
}

func sortedLabels(l map[string]string) []string {
	var out []string
	for k, v := range l {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// Revoke refuses a node's certificates from now on and closes its
// connection. Its record stays; a new token lets it back.
func (f *Fleet) Revoke(name string, now time.Time) error {
	n, ok := f.nodes.Get(name)
	if !ok {
		return notFound("node", name)
	}
	t := f.begin(now)
	n.State = api.NodeRevoked
	n.Serial, n.PrevSerial, n.CertSerial = 0, 0, ""
	n.Online = false
	f.dropLease(n)
	t.putNode(n)
	t.event("node.revoked", name, "", "", "")
	t.owe = append(t.owe, func() { f.owe(name).kick = true })
	return t.commit()
}

// DeleteNode forgets a node (refused while devices are bound to it).
func (f *Fleet) DeleteNode(name string, now time.Time) error {
	n, ok := f.nodes.Get(name)
	if !ok {
		return notFound("node", name)
	}
	for _, d := range f.devices.Values() {
		if d.Node == name {
			return errf(http.StatusConflict, "device %q is bound to node %q", d.Name, name)
		}
	}
	t := f.begin(now)
	f.dropLease(n)
	f.nodes.Delete(name)
	t.b.Delete(keyNode + name)
	t.event("node.deleted", name, "", "", "")
	t.owe = append(t.owe, func() { f.owe(name).kick = true })
	return t.commit()
}

// PutArtifact registers an artifact the runtime stored (cloud/blob).
func (f *Fleet) PutArtifact(a ArtifactInfo, now time.Time) error {
	if err := api.ValidSHA256(a.SHA256); err != nil {
		return invalid(err)
	}
	a.Uploaded = now
	t := f.begin(now)
	f.artifacts.Set(a.SHA256, &a)
	t.b.Put(keyArtifact+a.SHA256, &a)
	t.event("artifact.uploaded", "", "", "", a.SHA256+" "+a.Name)
	return t.commit()
}

// Artifacts returns the uploaded artifacts.
func (f *Fleet) Artifacts() []ArtifactInfo {
	out := []ArtifactInfo{}
	for _, a := range f.artifacts.Values() {
		out = append(out, *a)
	}
	return out
}

// Artifact returns one artifact's record.
func (f *Fleet) Artifact(sha string) (ArtifactInfo, bool) {
	a, ok := f.artifacts.Get(sha)
	if !ok {
		return ArtifactInfo{}, false
	}
	return *a, true
}

// DeleteArtifact forgets an artifact no app uses (the runtime removes the
// blob).
func (f *Fleet) DeleteArtifact(sha string, now time.Time) error {
	if _, ok := f.artifacts.Get(sha); !ok {
		return notFound("artifact", sha)
	}
	for _, a := range f.apps.Values() {
		if a.Artifact.SHA256 == sha {
			return errf(http.StatusConflict, "app %q uses artifact %s", a.Name, sha)
		}
	}
	t := f.begin(now)
	f.artifacts.Delete(sha)
	t.b.Delete(keyArtifact + sha)
	return t.commit()
}

// PutApp creates or updates an app; its revision goes up when it changes.
func (f *Fleet) PutApp(a api.App, now time.Time) (api.App, error) {
	a.Revision = 0
	if err := a.Validate(); err != nil {
		return api.App{}, invalid(err)
	}
	art, ok := f.artifacts.Get(a.Artifact.SHA256)
	if !ok {
		return api.App{}, errf(http.StatusBadRequest, "artifact %s is not uploaded", a.Artifact.SHA256)
	}
	if a.Artifact.Size == 0 {
		a.Artifact.Size = art.Size
	}
	if a.Artifact.Size != art.Size {
		return api.App{}, errf(http.StatusBadRequest, "artifact %s has %d bytes, not %d", a.Artifact.SHA256, art.Size, a.Artifact.Size)
	}
	if a.Artifact.Name == "" {
		a.Artifact.Name = art.Name
	}
	for _, m := range a.Mounts {
		if m.Config != "" {
			if _, ok := f.configs.Get(m.Config); !ok {
				return api.App{}, errf(http.StatusBadRequest, "config %q not found", m.Config)
			}
		} else if _, ok := f.secrets.Get(m.Secret); !ok {
			return api.App{}, errf(http.StatusBadRequest, "secret %q not found", m.Secret)
		}
	}
	sel, _ := api.ParseSelector(a.Selector) // validated
	a.Selector = sel.String()
	old, exists := f.apps.Get(a.Name)
	if exists {
		prev := old.App
		prev.Revision = 0
		if reflect.DeepEqual(prev, a) {
			return old.App, nil
		}
		a.Revision = old.Revision + 1
	} else {
		a.Revision = 1
	}
	t := f.begin(now)
	f.apps.Set(a.Name, &appRec{App: a, sel: sel})
	t.b.Put(keyApp+a.Name, &a)
	t.event("app.put", "", a.Name, "", "revision "+uitoa(a.Revision)+", selector "+a.Selector)
	if err := f.recomputeAll(t); err != nil {
		return api.App{}, t.abort(err)
	}
	return a, t.commit()
}

// DeleteApp removes an app from every node.
func (f *Fleet) DeleteApp(name string, now time.Time) error {
	if _, ok := f.apps.Get(name); !ok {
		return notFound("app", name)
	}
	t := f.begin(now)
	f.apps.Delete(name)
	t.b.Delete(keyApp + name)
	t.event("app.deleted", "", name, "", "")
	if err := f.recomputeAll(t); err != nil {
		return t.abort(err)
	}
	return t.commit()
}

// Apps returns every app, by name.
func (f *Fleet) Apps() []api.App {
	out := []api.App{}
	f.apps.Scan(func(_ string, a *appRec) bool { out = append(out, a.App); return true })
	return out
}

// App returns one app.
func (f *Fleet) App(name string) (api.App, error) {
	a, ok := f.apps.Get(name)
	if !ok {
		return api.App{}, notFound("app", name)
	}
	return a.App, nil
}

// AppNodes returns the active nodes an app is placed on.
func (f *Fleet) AppNodes(name string) ([]string, error) {
	a, ok := f.apps.Get(name)
	if !ok {
		return nil, notFound("app", name)
	}
	var out []string
	f.nodes.Scan(func(_ string, n *nodeRec) bool {
		if n.State == api.NodeActive && a.sel.Matches(n.Labels) {
			out = append(out, n.Name)
		}
		return true
	})
	return out, nil
}

// mountedBy returns the first app that mounts the config (secret: the
// secret) called name.
func (f *Fleet) mountedBy(name string, secret bool) string {
	for _, a := range f.apps.Values() {
		for _, m := range a.Mounts {
			if (secret && m.Secret == name) || (!secret && m.Config == name) {
				return a.Name
			}
		}
	}
	return ""
}

// PutConfig creates or updates a config; its version goes up when it
// changes, and every node that mounts it gets a new desired state.
func (f *Fleet) PutConfig(c api.Config, now time.Time) (api.Config, error) {
	return f.putConfig(c, false, now)
}

// PutSecret is PutConfig for a secret (kept encrypted).
func (f *Fleet) PutSecret(c api.Secret, now time.Time) (api.Secret, error) {
	c, err := f.putConfig(c, true, now)
	return keysOnly(c), err
}

func (f *Fleet) putConfig(c api.Config, secret bool, now time.Time) (api.Config, error) {
	c.Version = 0
	if err := c.Validate(); err != nil {
		return api.Config{}, invalid(err)
	}
	if c.Data == nil {
		c.Data = map[string]string{}
	}
	m, kind, prefix := f.configs, "config", keyConfig
	if secret {
		m, kind, prefix = f.secrets, "secret", keySecret
	}
	old, exists := m.Get(c.Name)
	if exists && maps.Equal(old.Data, c.Data) {
		return *old, nil
	}
	c.Version = 1
	if exists {
		c.Version = old.Version + 1
	}
	t := f.begin(now)
	if secret {
		plain, _ := json.Marshal(c.Data)
		sealed, err := f.seal.seal(plain, prefix+c.Name)
		if err != nil {
			return api.Config{}, err
		}
		keys := slices.Sorted(maps.Keys(c.Data))
		t.b.Put(prefix+c.Name, sealedRec{Name: c.Name, Version: c.Version, Keys: keys, Sealed: sealed})
	} else {
		t.b.Put(prefix+c.Name, &c)
	}
	cp := c
	m.Set(c.Name, &cp)
	t.event(kind+".put", "", "", "", c.Name+" version "+uitoa(c.Version))
	if err := f.recomputeAll(t); err != nil {
		return api.Config{}, t.abort(err)
	}
	return c, t.commit()
}

func keysOnly(c api.Config) api.Config {
	out := api.Config{Name: c.Name, Version: c.Version, Data: map[string]string{}}
	for k := range c.Data {
		out.Data[k] = ""
	}
	return out
}

// DeleteConfig removes a config no app mounts.
func (f *Fleet) DeleteConfig(name string, now time.Time) error {
	return f.deleteConfig(name, false, now)
}

// DeleteSecret removes a secret no app mounts.
func (f *Fleet) DeleteSecret(name string, now time.Time) error {
	return f.deleteConfig(name, true, now)
}

func (f *Fleet) deleteConfig(name string, secret bool, now time.Time) error {
	m, kind, prefix := f.configs, "config", keyConfig
	if secret {
		m, kind, prefix = f.secrets, "secret", keySecret
	}
	if _, ok := m.Get(name); !ok {
		return notFound(kind, name)
	}
	if app := f.mountedBy(name, secret); app != "" {
		return errf(http.StatusConflict, "app %q mounts %s %q", app, kind, name)
	}
	t := f.begin(now)
	m.Delete(name)
	t.b.Delete(prefix + name)
	t.event(kind+".deleted", "", "", "", name)
	return t.commit()
}

// Configs returns every config.
func (f *Fleet) Configs() []api.Config {
	out := []api.Config{}
	for _, c := range f.configs.Values() {
		out = append(out, *c)
	}
	return out
}

// Config returns one config.
func (f *Fleet) Config(name string) (api.Config, error) {
	c, ok := f.configs.Get(name)
	if !ok {
		return api.Config{}, notFound("config", name)
	}
	return *c, nil
}

// Secrets returns every secret, keys only.
func (f *Fleet) Secrets() []api.Secret {
	out := []api.Secret{}
	for _, c := range f.secrets.Values() {
		out = append(out, keysOnly(*c))
	}
	return out
}

// Secret returns one secret, keys only.
func (f *Fleet) Secret(name string) (api.Secret, error) {
	c, ok := f.secrets.Get(name)
	if !ok {
		return api.Secret{}, notFound("secret", name)
	}
	return keysOnly(*c), nil
}

// PutDeviceModel creates or replaces a device model.
func (f *Fleet) PutDeviceModel(m api.DeviceModel, now time.Time) error {
	if err := m.Validate(); err != nil {
		return invalid(err)
	}
	t := f.begin(now)
	cp := m
	f.models.Set(m.Name, &cp)
	t.b.Put(keyModel+m.Name, &m)
	t.event("devicemodel.put", "", "", "", m.Name)
	// The model travels with its devices to their nodes.
	var affected []*nodeRec
	seen := map[string]bool{}
	for _, d := range f.devices.Values() {
		if d.Model != m.Name || seen[d.Node] {
			continue
		}
		seen[d.Node] = true
		if n, ok := f.nodes.Get(d.Node); ok {
			affected = append(affected, n)
		}
	}
	if err := f.recompute(t, affected); err != nil {
		return t.abort(err)
	}
	return t.commit()
}

// DeleteDeviceModel removes a model no device uses.
func (f *Fleet) DeleteDeviceModel(name string, now time.Time) error {
	if _, ok := f.models.Get(name); !ok {
		return notFound("device model", name)
	}
	for _, d := range f.devices.Values() {
		if d.Model == name {
			return errf(http.StatusConflict, "device %q uses model %q", d.Name, name)
		}
	}
	t := f.begin(now)
	f.models.Delete(name)
	t.b.Delete(keyModel + name)
	return t.commit()
}

// DeviceModels returns every device model.
func (f *Fleet) DeviceModels() []api.DeviceModel {
	out := []api.DeviceModel{}
	for _, m := range f.models.Values() {
		out = append(out, *m)
	}
	return out
}

// PutDevice creates or updates a device (bound to a node).
func (f *Fleet) PutDevice(d api.Device, now time.Time) error {
	if err := d.Validate(); err != nil {
		return invalid(err)
	}
	if _, ok := f.models.Get(d.Model); !ok {
		return errf(http.StatusBadRequest, "device model %q not found", d.Model)
	}
	n, ok := f.nodes.Get(d.Node)
	if !ok {
		return errf(http.StatusBadRequest, "node %q not found", d.Node)
	}
	t := f.begin(now)
	affected := []*nodeRec{n}
	if old, ok := f.devices.Get(d.Name); ok && old.Node != d.Node {
		if on, ok := f.nodes.Get(old.Node); ok {
			affected = append(affected, on)
		}
	}
	cp := d
	f.devices.Set(d.Name, &cp)
	t.b.Put(keyDevice+d.Name, &d)
	if _, ok := f.shadows.Get(d.Name); !ok {
		sh := &api.Shadow{Device: d.Name, Desired: map[string]json.RawMessage{}, Reported: map[string]json.RawMessage{}}
		f.shadows.Set(d.Name, sh)
		t.b.Put(keyShadow+d.Name, sh)
	}
	t.event("device.put", d.Node, "", d.Name, "model "+d.Model)
	if err := f.recompute(t, affected); err != nil {
		return t.abort(err)
	}
	return t.commit()
}

// DeleteDevice removes a device and its shadow.
func (f *Fleet) DeleteDevice(name string, now time.Time) error {
	d, ok := f.devices.Get(name)
	if !ok {
		return notFound("device", name)
	}
	t := f.begin(now)
	f.devices.Delete(name)
	f.shadows.Delete(name)
	t.b.Delete(keyDevice + name)
	t.b.Delete(keyShadow + name)
	t.event("device.deleted", d.Node, "", name, "")
	if n, ok := f.nodes.Get(d.Node); ok {
		if err := f.recompute(t, []*nodeRec{n}); err != nil {
			return t.abort(err)
		}
	}
	return t.commit()
}

// Devices returns every device.
func (f *Fleet) Devices() []api.Device {
	out := []api.Device{}
	for _, d := range f.devices.Values() {
		out = append(out, *d)
	}
	return out
}

// Shadow returns a device's shadow with its delta.
func (f *Fleet) Shadow(device string) (api.Shadow, error) {
	sh, ok := f.shadows.Get(device)
	if !ok {
		return api.Shadow{}, notFound("device", device)
	}
	out := *sh
	out.Desired, out.Reported = maps.Clone(sh.Desired), maps.Clone(sh.Reported)
	out.ComputeDelta()
	return out, nil
}

// SetShadowDesired merges desired property values into a device's shadow
// (a JSON null removes one); the device's node gets them in its desired
// state.
func (f *Fleet) SetShadowDesired(device string, props map[string]json.RawMessage, now time.Time) (api.Shadow, error) {
	d, ok := f.devices.Get(device)
	if !ok {
		return api.Shadow{}, notFound("device", device)
	}
	m, ok := f.models.Get(d.Model)
	if !ok {
		return api.Shadow{}, notFound("device model", d.Model)
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(props)) {
		p := m.Property(k)
		switch {
		case p == nil:
			errs = append(errs, fmt.Errorf("%s: no such property in model %s", k, m.Name))
		case !p.Writable:
			errs = append(errs, fmt.Errorf("%s: not writable", k))
		case string(props[k]) != "null":
			if err := p.CheckValue(props[k]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return api.Shadow{}, invalid(errors.Join(errs...))
	}
	sh, _ := f.shadows.Get(device)
	t := f.begin(now)
	for k, v := range props {
		if string(v) == "null" {
			delete(sh.Desired, k)
		} else {
			sh.Desired[k] = v
		}
	}
	sh.DesiredVersion++
	t.b.Put(keyShadow+device, sh)
	t.event("shadow.desired", d.Node, "", device, "version "+uitoa(sh.DesiredVersion))
	if n, ok := f.nodes.Get(d.Node); ok {
		if err := f.recompute(t, []*nodeRec{n}); err != nil {
			return api.Shadow{}, t.abort(err)
		}
	}
	if err := t.commit(); err != nil {
		return api.Shadow{}, err
	}
	return f.Shadow(device)
}

// LastEvents returns the newest n events (at most), oldest first.
func (f *Fleet) LastEvents(n int) []api.Event {
	out := f.events
	if n >= 0 && len(out) > n {
		out = out[len(out)-n:]
	}
	return slices.Clone(out)
}

// Events returns up to limit events with a sequence number above since,
// oldest first.
func (f *Fleet) Events(since uint64, limit int) []api.Event {
	i, _ := slices.BinarySearchFunc(f.events, since+1, func(e api.Event, s uint64) int {
		switch {
		case e.Seq < s:
			return -1
		case e.Seq > s:
			return 1
		}
		return 0
	})
	out := f.events[i:]
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return slices.Clone(out)
}
