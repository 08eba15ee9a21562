package fleet

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/tidwall/btree"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/cloud/ca"
	"github.com/skybridge-mq/skybridge/cloud/kv"
	"github.com/skybridge-mq/skybridge/impl/env"
)

// Config configures a Fleet. Zero fields take the defaults.
type Config struct {
	// CertLifetime is the validity of a node certificate (default 7 days);
	// nodes renew at two thirds of it. RenewGrace is how long after its
	// expiry a node may still renew with its expired certificate, so that
	// a node offline for longer than its certificate recovers on its own
	// (default 30 days).
	CertLifetime, RenewGrace time.Duration
	// TokenTTL is the default validity of an activation token (24h).
	TokenTTL time.Duration
	// Lease: a node unheard for this long is offline (default 3m: three
	// missed status reports).
	Lease time.Duration
	// DrainRate is how many upstream batches per second the cloud admits
	// from nodes that have more to send (default 200): after an outage
	// each Ack tells a draining node when to send its next batch, so the
	// sum over the fleet stays at this rate.
	DrainRate float64
	// MaxEvents bounds the event log (default 10000; older ones go).
	MaxEvents int
	// MaxDesiredBytes bounds a node's encoded desired state (default 512
	// KiB): a change that makes one larger is refused.
	MaxDesiredBytes int
	// Broker is the MQTT address nodes connect to; API the URL of the
	// REST API (written into join tokens).
	Broker, API string
	// SecretKey (32 bytes) encrypts secrets and the CA key at rest.
	SecretKey []byte
	// DB tunes the database.
	DB kv.Options
	// Observer, when set, hears what the fleet applied and handled (tests
	// and the simulator's oracle).
	Observer Observer
	// Hooks plant known bugs (simulator tests of the checkers).
	Hooks Hooks
}

// Hooks are deliberate bugs that the simulator's invariants must catch.
type Hooks struct {
	// NoDedupe applies every record it receives, duplicates included.
	NoDedupe bool
}

// Observer hears what a fleet did. Calls happen inside the fleet's calls.
type Observer interface {
	// Applied: a node's record is applied and durable.
	Applied(node string, epoch uint64, rec *api.Record)
	// Request: a node's request was handled (kind: "up", "activate",
	// "renew", "artifact").
	Request(node, kind string)
}

func (c *Config) defaults() {
	if c.CertLifetime <= 0 {
		c.CertLifetime = 7 * 24 * time.Hour
	}
	if c.RenewGrace <= 0 {
		c.RenewGrace = 30 * 24 * time.Hour
	}
	if c.TokenTTL <= 0 {
		c.TokenTTL = 24 * time.Hour
	}
	if c.Lease <= 0 {
		c.Lease = 3 * time.Minute
	}
	if c.DrainRate <= 0 {
		c.DrainRate = 200
	}
	if c.MaxEvents <= 0 {
		c.MaxEvents = 10000
	}
	if c.MaxDesiredBytes <= 0 {
		c.MaxDesiredBytes = 512 << 10
	}
}

// Stats count what the fleet did since it was opened.
type Stats struct {
	Ups, RecordsApplied, Duplicates, Gaps, Malformed, Ignored uint64
	Activations, Renewals, ArtifactFetches, Refused           uint64
	Pushes, Acks                                              uint64
	CommitErrors                                              uint64
}

// Publish is an MQTT message the runtime publishes (QoS 1, not retained).
type Publish struct {
	Topic   string
	Payload []byte
}

// Output is what Ready hands the runtime.
type Output struct {
	Publish []Publish
	// Kick names nodes whose connections the broker must close.
	Kick []string
}

// Record keys.
const (
	keyMeta     = "meta/"
	keyCA       = "meta/ca"
	keySerial   = "meta/serial"
	keyEventSeq = "meta/eventseq"
	keyNode     = "node/"
	keyToken    = "token/"
	keyApp      = "app/"
	keyConfig   = "config/"
	keySecret   = "secret/"
	keyArtifact = "artifact/"
	keyModel    = "model/"
	keyDevice   = "device/"
	keyShadow   = "shadow/"
	keyEvent    = "event/"
)

// CloudUser is the identity of the cloud's own MQTT connection (not a
// valid node name, so no node can claim it).
const CloudUser = "$cloud"

type nodeRec struct {
	api.Node
	Serial      uint64 `json:"serial,omitempty"`
	PrevSerial  uint64 `json:"prev_serial,omitempty"`
	DesiredHash string `json:"desired_hash,omitempty"`

	leaseAt time.Time // the lease's entry in leases (zero: none)
}

type tokenRec struct {
	ID      string            `json:"id"`
	Hash    string            `json:"hash"`
	Node    string            `json:"node"`
	Labels  map[string]string `json:"labels,omitempty"`
	Expires time.Time         `json:"expires"`
}

type appRec struct {
	api.App
	sel api.Selector
}

type sealedRec struct {
	Name    string   `json:"name"`
	Version uint64   `json:"version"`
	Keys    []string `json:"keys"`
	Sealed  []byte   `json:"sealed"`
}

type caRec struct {
	Cert   []byte `json:"cert"`
	Sealed []byte `json:"sealed_key"`
}

// ArtifactInfo is an uploaded artifact.
type ArtifactInfo struct {
	SHA256   string    `json:"sha256"`
	Size     int64     `json:"size"`
	Name     string    `json:"name,omitempty"`
	Uploaded time.Time `json:"uploaded"`
}

type lease struct {
	at   time.Time
	node string
}

func leaseLess(a, b lease) bool {
	if !a.at.Equal(b.at) {
		return a.at.Before(b.at)
	}
	return a.node < b.node
}

// pending is what the fleet owes one node: at most one acknowledgement
// and one desired state, so the output queue is bounded by the number of
// nodes.
type pending struct {
	ack     *api.Ack
	desired bool
	kick    bool
}

// Fleet is the cloud core.
type Fleet struct {
	cfg  Config
	rnd  env.Rand
	db   *kv.DB
	seal *sealer
	ca   *ca.CA

	serial      uint64
	cloudSerial uint64
	eventSeq    uint64

	nodes     *btree.Map[string, *nodeRec]
	tokens    *btree.Map[string, *tokenRec]
	apps      *btree.Map[string, *appRec]
	configs   *btree.Map[string, *api.Config]
	secrets   *btree.Map[string, *api.Config]
	artifacts *btree.Map[string, *ArtifactInfo]
	models    *btree.Map[string, *api.DeviceModel]
	devices   *btree.Map[string, *api.Device]
	shadows   *btree.Map[string, *api.Shadow]
	events    []api.Event // the newest, at most cfg.MaxEvents, oldest first

	leases *btree.BTreeG[lease]

	owed    map[string]*pending // lookups only; order is owedQ
	owedQ   []string
	nextDrn time.Time // the drain scheduler's next free slot

	Stats Stats
}

// Open opens the fleet's database in dir on fs and loads it; a new
// database gets a new CA (valid ten years from now).
func Open(cfg Config, rnd env.Rand, fs vfs.FS, dir string, now time.Time) (*Fleet, error) {
	cfg.defaults()
	s, err := newSealer(cfg.SecretKey, rnd)
	if err != nil {
		return nil, err
	}
	db, err := kv.Open(fs, dir, cfg.DB)
	if err != nil {
		return nil, err
	}
	f := &Fleet{cfg: cfg, rnd: rnd, db: db, seal: s}
	if err := f.load(now); err != nil {
		_ = db.Close()
		return nil, err
	}
	return f, nil
}

// Close closes the database.
func (f *Fleet) Close() error { return f.db.Close() }

// CA returns the fleet's certificate authority.
func (f *Fleet) CA() *ca.CA { return f.ca }

// Settings returns the configuration with its defaults.
func (f *Fleet) Settings() Config { return f.cfg }

func scanInto[T any](db *kv.DB, prefix string, m *btree.Map[string, *T], name func(*T) string) error {
	return db.Scan(prefix, func(k string, v []byte) error {
		x := new(T)
		if err := json.Unmarshal(v, x); err != nil {
			return fmt.Errorf("record %q: %w", k, err)
		}
		m.Set(name(x), x)
		return nil
	})
}

// load reads everything from the database into memory.
func (f *Fleet) load(now time.Time) error {
	f.nodes, f.tokens, f.apps = new(btree.Map[string, *nodeRec]), new(btree.Map[string, *tokenRec]), new(btree.Map[string, *appRec])
	f.configs, f.secrets, f.artifacts = new(btree.Map[string, *api.Config]), new(btree.Map[string, *api.Config]), new(btree.Map[string, *ArtifactInfo])
	f.models, f.devices, f.shadows = new(btree.Map[string, *api.DeviceModel]), new(btree.Map[string, *api.Device]), new(btree.Map[string, *api.Shadow])
	f.leases = btree.NewBTreeGOptions(leaseLess, btree.Options{NoLocks: true})
	f.owed = map[string]*pending{}
	f.owedQ = nil
	f.events = nil

	var cr caRec
	ok, err := f.db.Get(keyCA, &cr)
	if err != nil {
		return err
	}
	if ok {
		seed, err := f.seal.open(cr.Sealed, keyCA)
		if err != nil {
			return fmt.Errorf("fleet: the CA key does not open with this secret key: %w", err)
		}
		if f.ca, err = ca.Load(cr.Cert, seed); err != nil {
			return err
		}
	} else {
		c, seed, err := ca.New("skybridge-cloud-ca", f.rnd, now, 10*365*24*time.Hour)
		if err != nil {
			return err
		}
		sealed, err := f.seal.seal(seed, keyCA)
		if err != nil {
			return err
		}
		b := f.db.Batch()
		b.Put(keyCA, caRec{Cert: c.CertDER(), Sealed: sealed})
		if err := b.Commit(); err != nil {
			return err
		}
		f.ca = c
	}
	if _, err := f.db.Get(keySerial, &f.serial); err != nil {
		return err
	}
	if _, err := f.db.Get(keyEventSeq, &f.eventSeq); err != nil {
		return err
	}
	if err := scanInto(f.db, keyNode, f.nodes, func(n *nodeRec) string { return n.Name }); err != nil {
		return err
	}
	if err := scanInto(f.db, keyToken, f.tokens, func(t *tokenRec) string { return t.ID }); err != nil {
		return err
	}
	if err := scanInto(f.db, keyApp, f.apps, func(a *appRec) string { return a.Name }); err != nil {
		return err
	}
	for _, a := range f.apps.Values() {
		if a.sel, err = api.ParseSelector(a.Selector); err != nil {
			return fmt.Errorf("app %q: %w", a.Name, err)
		}
	}
	if err := scanInto(f.db, keyConfig, f.configs, func(c *api.Config) string { return c.Name }); err != nil {
		return err
	}
	err = f.db.Scan(keySecret, func(k string, v []byte) error {
		var sr sealedRec
		if err := json.Unmarshal(v, &sr); err != nil {
			return fmt.Errorf("record %q: %w", k, err)
		}
		plain, err := f.seal.open(sr.Sealed, k)
		if err != nil {
			return fmt.Errorf("secret %q does not open with this secret key: %w", sr.Name, err)
		}
		c := &api.Config{Name: sr.Name, Version: sr.Version}
		if err := json.Unmarshal(plain, &c.Data); err != nil {
			return fmt.Errorf("secret %q: %w", sr.Name, err)
		}
		f.secrets.Set(c.Name, c)
		return nil
	})
	if err != nil {
		return err
	}
	if err := scanInto(f.db, keyArtifact, f.artifacts, func(a *ArtifactInfo) string { return a.SHA256 }); err != nil {
		return err
	}
	if err := scanInto(f.db, keyModel, f.models, func(m *api.DeviceModel) string { return m.Name }); err != nil {
		return err
	}
	if err := scanInto(f.db, keyDevice, f.devices, func(d *api.Device) string { return d.Name }); err != nil {
		return err
	}
	if err := scanInto(f.db, keyShadow, f.shadows, func(s *api.Shadow) string { return s.Device }); err != nil {
		return err
	}
	err = f.db.Scan(keyEvent, func(k string, v []byte) error {
		var e api.Event
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("record %q: %w", k, err)
		}
		f.events = append(f.events, e)
		return nil
	})
	if err != nil {
		return err
	}
	// Nodes that were online get a fresh lease: a cloud restart must not
	// make the whole fleet flap offline.
	for _, n := range f.nodes.Values() {
		if n.Online {
			f.renewLease(n, now)
		}
	}
	// Desired states follow the current resources: a change of how they
	// are resolved (a new version of this code) bumps the versions here.
	t := f.begin(now)
	if err := f.recompute(t, f.nodes.Values()); err != nil {
		return err
	}
	return t.commit()
}

// reload brings memory back to what the database holds (after a failed
// commit left memory ahead of it).
func (f *Fleet) reload(now time.Time) {
	if err := f.load(now); err != nil {
		// The database cannot be read: keep failing rather than serve a
		// state that is not on disk.
		f.nodes = new(btree.Map[string, *nodeRec])
	}
}

// --- transactions ---

// tx gathers the writes of one call. Memory is changed as the call goes;
// if the batch does not commit, the fleet reloads from the database.
type tx struct {
	f       *Fleet
	now     time.Time
	b       *kv.Batch
	events  []api.Event
	applied []appliedRec
	owe     []func()
}

type appliedRec struct {
	node  string
	epoch uint64
	rec   *api.Record
}

func (f *Fleet) begin(now time.Time) *tx { return &tx{f: f, now: now, b: f.db.Batch()} }

func (t *tx) event(typ, node, app, device, msg string) {
	t.events = append(t.events, api.Event{At: t.now, Type: typ, Node: node, App: app, Device: device, Message: msg})
}

func (t *tx) putNode(n *nodeRec) { t.b.Put(keyNode+n.Name, n) }

// commit writes the batch with its events; on failure memory is reloaded
// and the error returned.
func (t *tx) commit() error {
	f := t.f
	seq := f.eventSeq
	for i := range t.events {
		seq++
		t.events[i].Seq = seq
		t.b.Put(keyEvent+eventKey(seq), &t.events[i])
		if old := int64(seq) - int64(f.cfg.MaxEvents); old > 0 {
			t.b.Delete(keyEvent + eventKey(uint64(old)))
		}
	}
	if len(t.events) > 0 {
		t.b.Put(keyEventSeq, seq)
	}
	if err := t.b.Commit(); err != nil {
		f.Stats.CommitErrors++
		f.reload(t.now)
		return fmt.Errorf("fleet: commit: %w", err)
	}
	f.eventSeq = seq
	f.events = append(f.events, t.events...)
	if over := len(f.events) - f.cfg.MaxEvents; over > 0 {
		f.events = append(f.events[:0], f.events[over:]...)
	}
	for _, a := range t.applied {
		if f.cfg.Observer != nil {
			f.cfg.Observer.Applied(a.node, a.epoch, a.rec)
		}
	}
	for _, fn := range t.owe {
		fn()
	}
	return nil
}

// abort drops the batch and brings memory back to the database.
func (t *tx) abort(err error) error {
	t.b.Abandon()
	t.f.reload(t.now)
	return err
}

func eventKey(seq uint64) string {
	s := strconv.FormatUint(seq, 16)
	return "0000000000000000"[len(s):] + s
}

// --- output ---

func (f *Fleet) owe(node string) *pending {
	p := f.owed[node]
	if p == nil {
		p = &pending{}
		f.owed[node] = p
		f.owedQ = append(f.owedQ, node)
	}
	return p
}

// push queues the node's desired state (sent by Ready, when committed).
func (t *tx) push(node string) {
	t.owe = append(t.owe, func() { t.f.owe(node).desired = true })
}

// Ready returns what the runtime must publish and close, and forgets it.
func (f *Fleet) Ready() Output {
	var out Output
	for _, name := range f.owedQ {
		p := f.owed[name]
		delete(f.owed, name)
		if p.kick {
			out.Kick = append(out.Kick, name)
		}
		n, ok := f.nodes.Get(name)
		if !ok || n.State != api.NodeActive {
			continue
		}
		var d api.Down
		if p.ack != nil {
			d.Ack = p.ack
			f.Stats.Acks++
		}
		if p.desired {
			doc := f.desiredFor(n)
			doc.Version = n.DesiredVersion
			d.Desired = &doc
			f.Stats.Pushes++
		}
		if d.Ack == nil && d.Desired == nil {
			continue
		}
		b, err := json.Marshal(&d)
		if err != nil {
			continue // plain data: cannot happen
		}
		out.Publish = append(out.Publish, Publish{Topic: api.NodeDownTopic(name), Payload: b})
	}
	f.owedQ = f.owedQ[:0]
	return out
}

// HasReady reports whether Ready has something.
func (f *Fleet) HasReady() bool { return len(f.owedQ) > 0 }

// --- leases ---

func (f *Fleet) renewLease(n *nodeRec, now time.Time) {
	if !n.leaseAt.IsZero() {
		f.leases.Delete(lease{n.leaseAt, n.Name})
	}
	n.leaseAt = now.Add(f.cfg.Lease)
	f.leases.Set(lease{n.leaseAt, n.Name})
}

func (f *Fleet) dropLease(n *nodeRec) {
	if !n.leaseAt.IsZero() {
		f.leases.Delete(lease{n.leaseAt, n.Name})
		n.leaseAt = time.Time{}
	}
}

// Tick expires leases: nodes unheard for the lease go offline (and stay
// registered, with their desired state).
func (f *Fleet) Tick(now time.Time) error {
	var t *tx
	for {
		l, ok := f.leases.Min()
		if !ok || l.at.After(now) {
			break
		}
		f.leases.Delete(l)
		n, ok := f.nodes.Get(l.node)
		if !ok {
			continue
		}
		n.leaseAt = time.Time{}
		if n.Online {
			if t == nil {
				t = f.begin(now)
			}
			n.Online = false
			t.putNode(n)
			t.event("node.offline", n.Name, "", "", "no message for "+f.cfg.Lease.String())
		}
	}
	if t == nil {
		return nil
	}
	return t.commit()
}

// NextDeadline returns when Tick is next due (zero: nothing pending).
func (f *Fleet) NextDeadline() time.Time {
	l, ok := f.leases.Min()
	if !ok {
		return time.Time{}
	}
	return l.at
}
