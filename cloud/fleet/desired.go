package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/skybridge-mq/skybridge/cloud/api"
)

// desiredFor resolves a node's desired state from the current apps,
// configs, secrets and devices (Version left zero). Only active nodes run
// apps. Everything is visited in name order, so equal states encode
// alike.
func (f *Fleet) desiredFor(n *nodeRec) api.Desired {
	d := api.Desired{Node: n.Name, Apps: []api.AppSpec{}}
	if n.State != api.NodeActive {
		return d
	}
	f.apps.Scan(func(_ string, a *appRec) bool {
		if a.sel.Matches(n.Labels) {
			d.Apps = append(d.Apps, f.resolve(a))
		}
		return true
	})
	f.devices.Scan(func(_ string, dev *api.Device) bool {
		if dev.Node == n.Name {
			ds := api.DeviceSpec{Name: dev.Name, Model: dev.Model, Modbus: dev.Modbus}
			if m, ok := f.models.Get(dev.Model); ok {
				ds.Properties = m.Properties
			}
			if sh, ok := f.shadows.Get(dev.Name); ok {
				ds.Desired, ds.DesiredVersion = sh.Desired, sh.DesiredVersion
			}
			d.Devices = append(d.Devices, ds)
		}
		return true
	})
	return d
}

// resolve turns an app into the spec a node runs: mounts become files.
// PutApp and the config/secret deletions keep every mount resolvable.
func (f *Fleet) resolve(a *appRec) api.AppSpec {
	s := api.AppSpec{Name: a.Name, Revision: a.Revision, Artifact: a.Artifact, Args: a.Args, Env: a.Env,
		Restart: a.Restart.WithDefaults(), Health: a.Health, Limits: a.Limits}
	for _, m := range a.Mounts {
		var c *api.Config
		secret := m.Secret != ""
		if secret {
			c, _ = f.secrets.Get(m.Secret)
		} else {
			c, _ = f.configs.Get(m.Config)
		}
		if c == nil {
			continue
		}
		keys := make([]string, 0, len(c.Data))
		for k := range c.Data {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			s.Files = append(s.Files, api.File{Path: m.Dir + "/" + k, Data: []byte(c.Data[k]), Secret: secret})
		}
	}
	slices.SortFunc(s.Files, func(a, b api.File) int { return strings.Compare(a.Path, b.Path) })
	return s
}

// hashDesired identifies a desired state's content (its version aside).
func hashDesired(d *api.Desired) (string, int) {
	b, _ := json.Marshal(d) // plain data: never fails
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:16]), len(b)
}

// recompute bumps the desired version of each node whose resolved state
// changed, in t, and queues its push. A state larger than the bound
// refuses the whole call.
func (f *Fleet) recompute(t *tx, nodes []*nodeRec) error {
	for _, n := range nodes {
		d := f.desiredFor(n)
		h, size := hashDesired(&d)
		if size > f.cfg.MaxDesiredBytes {
			return errf(http.StatusRequestEntityTooLarge, "the desired state of node %q would be %d bytes (limit %d)", n.Name, size, f.cfg.MaxDesiredBytes)
		}
		if h == n.DesiredHash {
			continue
		}
		n.DesiredHash = h
		n.DesiredVersion++
		t.putNode(n)
		t.event("desired.changed", n.Name, "", "", "version "+uitoa(n.DesiredVersion)+", "+uitoa(uint64(len(d.Apps)))+" apps")
		t.push(n.Name)
	}
	return nil
}

// recomputeAll recomputes every node.
func (f *Fleet) recomputeAll(t *tx) error { return f.recompute(t, f.nodes.Values()) }

// Desired returns a node's current desired state.
func (f *Fleet) Desired(node string) (api.Desired, error) {
	n, ok := f.nodes.Get(node)
	if !ok {
		return api.Desired{}, notFound("node", node)
	}
	d := f.desiredFor(n)
	d.Version = n.DesiredVersion
	return d, nil
}
