package agent

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/cloud/blob"
	"github.com/skybridge-mq/skybridge/cloud/kv"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/fifo"
)

// Config configures an Agent. Zero fields take the defaults.
type Config struct {
	// ReportEvery is the period of status reports (default 60s, each
	// period drawn ±10%); a change is reported after ReportDelay (2s).
	ReportEvery, ReportDelay time.Duration
	// ResyncJitter bounds the random delay before the first message after
	// a (re)connection (default 30s).
	ResyncJitter time.Duration
	// AckTimeout: a batch not acknowledged by then is sent again (30s).
	AckTimeout time.Duration
	// BatchRecords and BatchBytes bound one Up (100 records, 64 KiB).
	BatchRecords, BatchBytes int
	// Outbox bounds.
	Outbox Limits
	// RenewAt is the fraction of a certificate's lifetime after which the
	// node renews it (default 2/3).
	RenewAt float64
	// RetryMin and RetryMax bound the backoff of failed requests and
	// downloads (5s, 10m).
	RetryMin, RetryMax time.Duration
	// Info describes the machine (the runtime fills it).
	Info api.NodeInfo
	// DB tunes the local store.
	DB kv.Options
	// Observer hears the outbox's appends and drops (tests, simulator).
	Observer Observer
	// Hooks plant known bugs (simulator tests of the checkers).
	Hooks Hooks
}

// Limits bound the outbox.
type Limits struct {
	MaxRecords int           // default 10000
	MaxBytes   int           // default 8 MiB
	MaxAge     time.Duration // default 7 days
}

// Hooks are deliberate bugs that the simulator's invariants must catch.
type Hooks struct {
	// NoJitter resyncs at once after a reconnect and ignores the cloud's
	// pacing.
	NoJitter bool
	// StopAppsOffline stops every app once the link has been down this
	// long (the reconcile-needs-cloud failure).
	StopAppsOffline time.Duration
	// WaitForCloud starts no app at boot until a desired state comes from
	// the cloud (the KubeEdge #4441 failure).
	WaitForCloud bool
	// DeleteOnSend deletes outbox records once published, without the
	// cloud's acknowledgement.
	DeleteOnSend bool
	// DesiredInMemory keeps desired states in memory only: a reboot
	// falls back to an older one.
	DesiredInMemory bool
	// RenewOnlyOnline renews the certificate only while connected.
	RenewOnlyOnline bool
}

// Observer hears what the outbox did. Calls happen inside the agent's.
type Observer interface {
	// Appended: a record is durable in the outbox.
	Appended(node string, epoch uint64, rec *api.Record)
	// Dropped: the outbox dropped a record (full or too old).
	Dropped(node string, epoch uint64, seq uint64)
}

func (c *Config) defaults() {
	if c.ReportEvery <= 0 {
		c.ReportEvery = time.Minute
	}
	if c.ReportDelay <= 0 {
		c.ReportDelay = 2 * time.Second
	}
	if c.ResyncJitter <= 0 {
		c.ResyncJitter = 30 * time.Second
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 30 * time.Second
	}
	if c.BatchRecords <= 0 {
		c.BatchRecords = 100
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 64 << 10
	}
	if c.Outbox.MaxRecords <= 0 {
		c.Outbox.MaxRecords = 10000
	}
	if c.Outbox.MaxBytes <= 0 {
		c.Outbox.MaxBytes = 8 << 20
	}
	if c.Outbox.MaxAge <= 0 {
		c.Outbox.MaxAge = 7 * 24 * time.Hour
	}
	if c.RenewAt <= 0 || c.RenewAt >= 1 {
		c.RenewAt = 2.0 / 3
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 5 * time.Second
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(c.RetryMin, 10*time.Minute)
	}
}

// Message is an MQTT message to publish (QoS 1).
type Message struct {
	Topic   string
	Payload []byte
}

// StartApp asks the runner to start generation Gen of an app; a running
// older generation is stopped first.
type StartApp struct {
	Name string
	Gen  uint64
	Spec api.AppSpec
}

// StopApp asks the runner to stop an app's generation.
type StopApp struct {
	Name string
	Gen  uint64
}

// Request kinds.
const (
	ReqActivate = "activate"
	ReqRenew    = "renew"
)

// Request is an HTTPS request to the cloud's API: POST API+"/v1/"+Kind
// with Body (JSON). An activation trusts the server certificate whose CA
// has the fingerprint CAHash; a renewal trusts the node's CA.
type Request struct {
	ID     uint64
	Kind   string
	API    string
	CAHash string
	Body   []byte
}

// DeviceDesired asks the device gateway to write desired values.
type DeviceDesired struct {
	Device  string
	Model   string
	Props   map[string]json.RawMessage
	Version uint64
}

// Ready is what the runtime must do.
type Ready struct {
	Publish  []Message
	Start    []StartApp
	Stop     []StopApp
	Fetch    []api.Artifact
	Requests []Request
	Devices  []DeviceDesired
	// Reconnect: the credentials changed (activation, renewal): the link
	// must reconnect with Credentials().
	Reconnect bool
}

// Empty reports whether there is nothing to do.
func (r *Ready) Empty() bool {
	return len(r.Publish) == 0 && len(r.Start) == 0 && len(r.Stop) == 0 && len(r.Fetch) == 0 &&
		len(r.Requests) == 0 && len(r.Devices) == 0 && !r.Reconnect
}

// Stats count what the agent did since it started.
type Stats struct {
	Outbox                          api.OutboxStats
	Ups, Hellos, Acks, Desired      uint64
	StaleDesired, Ignored           uint64
	Starts, Stops, Restarts, Exits  uint64
	Fetches, FetchFailures          uint64
	Renewals, RenewFailures         uint64
	Reconnects, LinkUps, LinkDowns  uint64
	StoreErrors, HealthFailRestarts uint64
}

// Record keys of the local store.
const (
	keyIdentity = "meta/identity"
	keyEpoch    = "meta/epoch"
	keySeq      = "meta/seq"
	keyDesired  = "meta/desired"
	keyOut      = "out/"
	keyOutEnd   = "out0" // above every "out/..." key
)

// identity is what activation gave the node.
type identity struct {
	Node   string `json:"node"`
	Seed   []byte `json:"seed"` // the Ed25519 key's seed
	Cert   []byte `json:"cert"`
	CA     []byte `json:"ca"`
	Broker string `json:"broker"`
	API    string `json:"api"`
	// NotBefore and NotAfter of Cert, and when the node received it
	// (NotBefore is set back for clock skew: the lifetime that matters
	// runs from the receipt).
	NotBefore time.Time `json:"not_before"`
	Received  time.Time `json:"received"`
	NotAfter  time.Time `json:"not_after"`
}

// Credentials are what the link connects with.
type Credentials struct {
	Node    string
	Cert    []byte // DER
	KeySeed []byte
	CA      []byte // DER
	Broker  string
	API     string
}

// outEntry indexes one stored outbox record.
type outEntry struct {
	seq  uint64
	size int
	at   time.Time
}

// Agent is the edge core.
type Agent struct {
	cfg   Config
	rnd   env.Rand
	db    *kv.DB
	blobs *blob.Store
	boot  time.Time

	id    *identity
	epoch uint64

	desired *api.Desired
	applied uint64
	// the device gateway's last view (reported in the status)
	devices []api.DeviceState
	gateway *api.GatewayStats
	apps    map[string]*app // lookups; order comes from names()
	fetches map[string]*fetch
	devSent map[string]uint64 // device → desired version handed to the gateway
	info    api.NodeInfo
	usage   api.Usage

	// Outbox.
	nextSeq  uint64
	index    fifo.Queue[outEntry]
	bytes    int
	inflight uint64    // highest seq of the batch in flight (0: none)
	sentAt   time.Time // when it was sent
	sendAt   time.Time // the cloud's pacing: not before
	helloAt  time.Time // after a connection, the first message waits until then
	helloDue bool

	// Link.
	up        bool
	downSince time.Time
	timeouts  int // acknowledgement timeouts since the cloud last spoke

	// Timers.
	reportAt time.Time
	changed  time.Time // a change to report; zero: none
	renewAt  time.Time
	renew    *pendingRenew
	retry    backoff
	stopped  bool // StopAppsOffline hook fired

	// Requests in flight.
	nextReq    uint64
	requests   map[uint64]string
	pendKey    []byte // activation: the key the CSR was made for
	pendingAPI string // activation: the API the join token names
	// An activation that could not reach the cloud is sent again then.
	activateAt   time.Time
	activateReq  Request
	lastActivate Request

	out   Ready
	Stats Stats
}

type pendingRenew struct {
	id   uint64
	seed []byte
}

// New opens the node's local store in dir on fs and starts from what it
// holds: the apps of the stored desired state are started at once (Ready),
// with no cloud. A node not yet activated waits for Activate.
func New(cfg Config, rnd env.Rand, fs vfs.FS, dir string, now time.Time) (*Agent, error) {
	cfg.defaults()
	if err := fs.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	db, err := kv.Open(fs, fs.PathJoin(dir, "db"), cfg.DB)
	if err != nil {
		return nil, err
	}
	blobs, err := blob.Open(fs, fs.PathJoin(dir, "artifacts"))
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	a := &Agent{cfg: cfg, rnd: rnd, db: db, blobs: blobs, boot: now, info: cfg.Info,
		apps: map[string]*app{}, fetches: map[string]*fetch{}, devSent: map[string]uint64{}, requests: map[uint64]string{}}
	a.retry = backoff{min: cfg.RetryMin, max: cfg.RetryMax}
	if err := a.load(now); err != nil {
		_ = db.Close()
		return nil, err
	}
	a.scheduleReport(now)
	if a.id != nil {
		a.scheduleRenew(now)
	}
	if a.desired != nil && !cfg.Hooks.WaitForCloud {
		a.reconcile(now)
	}
	return a, nil
}

func (a *Agent) load(now time.Time) error {
	var id identity
	ok, err := a.db.Get(keyIdentity, &id)
	if err != nil {
		return err
	}
	if ok {
		a.id = &id
	}
	if _, err := a.db.Get(keyEpoch, &a.epoch); err != nil {
		return err
	}
	if a.epoch == 0 {
		// A new store: its records are numbered from 1 again, and the epoch
		// tells the cloud so.
		for a.epoch == 0 {
			a.epoch = a.rnd.Uint64()
		}
		b := a.db.Batch()
		b.Put(keyEpoch, a.epoch)
		if err := b.Commit(); err != nil {
			return err
		}
	}
	if _, err := a.db.Get(keySeq, &a.nextSeq); err != nil {
		return err
	}
	if a.nextSeq == 0 {
		a.nextSeq = 1
	}
	var d api.Desired
	if ok, err := a.db.Get(keyDesired, &d); err != nil {
		return err
	} else if ok {
		a.desired = &d
	}
	return a.db.Scan(keyOut, func(k string, v []byte) error {
		var r api.Record
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("outbox record %q: %w", k, err)
		}
		a.index.Push(outEntry{seq: r.Seq, size: len(v), at: r.At})
		a.bytes += len(v)
		if r.Seq >= a.nextSeq {
			a.nextSeq = r.Seq + 1 // the counter's write may be older than a record's
		}
		return nil
	})
}

// Close closes the local store.
func (a *Agent) Close() error { return a.db.Close() }

// Artifacts returns the node's artifact store (the runtime downloads into
// it and runs from it).
func (a *Agent) Artifacts() *blob.Store { return a.blobs }

// Activated reports whether the node has its identity.
func (a *Agent) Activated() bool { return a.id != nil }

// Node returns the node's name ("" before activation).
func (a *Agent) Node() string {
	if a.id == nil {
		return ""
	}
	return a.id.Node
}

// Epoch returns the local store's epoch.
func (a *Agent) Epoch() uint64 { return a.epoch }

// Credentials returns what the link connects with (ok false before
// activation).
func (a *Agent) Credentials() (Credentials, bool) {
	if a.id == nil {
		return Credentials{}, false
	}
	return Credentials{Node: a.id.Node, Cert: a.id.Cert, KeySeed: a.id.Seed, CA: a.id.CA, Broker: a.id.Broker, API: a.id.API}, true
}

// CertExpires returns the expiry of the node's certificate.
func (a *Agent) CertExpires() time.Time {
	if a.id == nil {
		return time.Time{}
	}
	return a.id.NotAfter
}

// Desired returns the stored desired state (nil: none yet).
func (a *Agent) Desired() *api.Desired { return a.desired }

// Applied returns the desired version the node runs completely.
func (a *Agent) Applied() uint64 { return a.applied }

// Ready returns what the runtime must do, and forgets it.
func (a *Agent) Ready() Ready {
	r := a.out
	a.out = Ready{}
	return r
}

// Observe gives the agent fresh samples of the machine (and, when the
// runner knows them, each app's usage) for the next status report.
func (a *Agent) Observe(info api.NodeInfo, usage api.Usage, apps map[string]api.AppStatus) {
	a.info, a.usage = info, usage
	for name, u := range apps {
		if ap := a.apps[name]; ap != nil {
			ap.rss, ap.cpu = u.RSSBytes, u.CPUPercent
		}
	}
}

// ObserveDevices gives the agent the device gateway's view for the
// status reports; a device changing state is reported soon.
func (a *Agent) ObserveDevices(devs []api.DeviceState, stats api.GatewayStats, now time.Time) {
	if !slices.Equal(devs, a.devices) {
		a.noteChange(now)
	}
	a.devices = slices.Clone(devs)
	if len(devs) > 0 || stats != (api.GatewayStats{}) {
		a.gateway = &stats
	} else {
		a.gateway = nil
	}
}

// --- link ---

// LinkUp: the MQTT link to the cloud's broker is connected (and
// subscribed to the node's down topic).
func (a *Agent) LinkUp(now time.Time) {
	if a.id == nil || a.up {
		return
	}
	a.up = true
	a.stopped = false
	a.Stats.LinkUps++
	a.inflight = 0
	a.helloDue = true
	a.helloAt = now
	if !a.cfg.Hooks.NoJitter {
		a.helloAt = now.Add(time.Duration(a.rnd.Float64() * float64(a.cfg.ResyncJitter)))
	}
	a.pump(now)
}

// LinkDown: the link is lost.
func (a *Agent) LinkDown(now time.Time) {
	if !a.up {
		return
	}
	a.up = false
	a.downSince = now
	a.Stats.LinkDowns++
	a.inflight = 0
	a.helloDue = false
}

// Online reports whether the link is up.
func (a *Agent) Online() bool { return a.up }

// Message handles a message on the node's down topic.
func (a *Agent) Message(topic string, payload []byte, now time.Time) {
	if a.id == nil || topic != api.NodeDownTopic(a.id.Node) {
		a.Stats.Ignored++
		return
	}
	var d api.Down
	if err := json.Unmarshal(payload, &d); err != nil {
		a.Stats.Ignored++
		return
	}
	a.timeouts = 0
	if d.Ack != nil {
		a.handleAck(d.Ack, now)
	}
	if d.Desired != nil {
		a.handleDesired(d.Desired, now)
	}
	a.pump(now)
}

func (a *Agent) handleDesired(d *api.Desired, now time.Time) {
	if d.Node != a.id.Node {
		a.Stats.Ignored++
		return
	}
	if a.desired != nil && d.Version <= a.desired.Version {
		a.Stats.StaleDesired++
		return
	}
	b := a.db.Batch()
	if !a.cfg.Hooks.DesiredInMemory {
		b.Put(keyDesired, d)
	}
	if err := b.Commit(); err != nil {
		a.Stats.StoreErrors++
		return // not stored: not acted on (the cloud sends it again)
	}
	a.Stats.Desired++
	a.desired = d
	a.reconcile(now)
	a.noteChange(now)
}

// --- time ---

// Tick runs what is due at now.
func (a *Agent) Tick(now time.Time) {
	a.tickApps(now)
	a.tickFetches(now)
	if a.id == nil && !a.activateAt.IsZero() && !now.Before(a.activateAt) {
		a.activateAt = time.Time{}
		q := a.activateReq
		a.request(q.Kind, q.API, q.CAHash, q.Body)
	}
	if a.id != nil && !a.renewAt.IsZero() && !now.Before(a.renewAt) && a.renew == nil {
		if !a.cfg.Hooks.RenewOnlyOnline || a.up {
			a.startRenew(now)
		}
	}
	if !a.reportAt.IsZero() && !now.Before(a.reportAt) || !a.changed.IsZero() && !now.Before(a.changed) {
		a.report(now)
	}
	if h := a.cfg.Hooks.StopAppsOffline; h > 0 && !a.up && !a.stopped && a.id != nil && now.Sub(a.downSince) >= h {
		a.stopped = true
		for _, name := range a.names() {
			ap := a.apps[name]
			if ap.gen > 0 && ap.state != api.AppExited {
				a.out.Stop = append(a.out.Stop, StopApp{Name: name, Gen: ap.gen})
				ap.state = api.AppExited
			}
		}
	}
	a.expireOutbox(now)
	a.pump(now)
}

// NextDeadline returns when Tick is next due (zero: nothing pending).
func (a *Agent) NextDeadline() time.Time {
	var t time.Time
	at := func(x time.Time) {
		if !x.IsZero() && (t.IsZero() || x.Before(t)) {
			t = x
		}
	}
	at(a.reportAt)
	at(a.changed)
	at(a.activateAt)
	if a.renew == nil && (!a.cfg.Hooks.RenewOnlyOnline || a.up) {
		at(a.renewAt)
	}
	for _, ap := range a.apps {
		if ap.state == api.AppBackoff && !a.stopped {
			at(ap.restartAt)
		}
	}
	for _, f := range a.fetches {
		if !f.inflight {
			at(f.retryAt)
		}
	}
	// Each instant below is one at which pump would act: it acts then,
	// and the instant leaves the list.
	if a.up && a.inflight == 0 && (a.helloDue || a.index.Len() > 0) {
		if a.sendAt.After(a.helloAt) && !a.cfg.Hooks.NoJitter {
			at(a.sendAt)
		} else {
			at(a.helloAt)
		}
	}
	if a.up && a.inflight != 0 {
		at(a.sentAt.Add(a.cfg.AckTimeout))
	}
	if h := a.cfg.Hooks.StopAppsOffline; h > 0 && !a.up && !a.stopped && a.id != nil {
		at(a.downSince.Add(h))
	}
	if a.index.Len() > 0 {
		at(a.index.Peek().at.Add(a.cfg.Outbox.MaxAge))
	}
	return t
}

// backoff is an exponential retry delay.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

// jitter spreads d by ±10%.
func (a *Agent) jitter(d time.Duration) time.Duration {
	return d - d/10 + time.Duration(a.rnd.Float64()*float64(d/5))
}

func seqKey(seq uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	return keyOut + string(b[:])
}
