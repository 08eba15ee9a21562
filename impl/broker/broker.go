// Package broker is the single-node MQTT broker core: it owns the sessions
// of every tenant, the routes (subscriptions) and the retained messages,
// accepts connections from a runtime, and moves messages from publishers to
// subscribers.
//
// # Contract
//
// The broker does no network or disk I/O of its own and starts no
// goroutines: a runtime (impl/server in production, sim/ in simulation)
// reads packets from a connection and calls Conn.Handle, drains what the
// connection must write with Conn.Output when the wake function it gave
// NewConn is called, and reports the end of the transport with Conn.Closed.
// Time comes from env.Clock, timers (will delay, session expiry) from
// env.Clock.AfterFunc, randomness from env.Rand.
//
// Concurrency: calls for one Conn come from one goroutine at a time (its
// reader), except Output (its writer); different connections run in
// parallel. A publisher's reader delivers into each subscriber's session
// under that session's lock and wakes the subscriber's writer; it never
// writes to another connection's socket. Lock order: tenant registry, then
// session, then routes; no session lock is held while routing.
//
// Tenants are isolated: every session, route and retained message lives in
// its tenant, and matching never crosses tenants.
package broker

import (
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skybridge-mq/skybridge/impl/acl"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/event"
	"github.com/skybridge-mq/skybridge/impl/fifo"
	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/retain"
	"github.com/skybridge-mq/skybridge/impl/session"
	"github.com/skybridge-mq/skybridge/impl/store"
	tenantpkg "github.com/skybridge-mq/skybridge/impl/tenant"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// Config configures a Broker.
type Config struct {
	Session session.Config
	// SharedPolicy chooses the member of a shared group that gets a message.
	SharedPolicy topic.Policy
	// MaxPacketSize is the largest packet accepted from clients; the runtime
	// enforces it while reading.
	MaxPacketSize int
	// Authenticator decides who may connect and in which tenant; nil allows
	// everyone (tenant from a "tenant/user" user name or the listener's).
	Authenticator Authenticator
	// EnhancedAuth serves 5.0 CONNECTs that name an Authentication Method,
	// and re-authentication; nil refuses them with 0x8C.
	EnhancedAuth EnhancedAuthenticator
	// Settings serves per-tenant settings (limits and throttles, hot
	// reloadable); nil: every tenant gets tenant.Default().
	Settings *tenantpkg.Provider
	// Authorizer decides each PUBLISH and SUBSCRIBE (and the will topic at
	// CONNECT); nil allows everything.
	Authorizer acl.Authorizer
	// Events receives the broker's events (connections, refusals, drops,
	// throttles, expiries); nil discards them. Emit must not block.
	Events event.Sink
	// Hooks plant known bugs, for the simulator's planted-bug tests;
	// production leaves it nil.
	Hooks *Hooks
	// MaxStoreBytes bounds the durable store: beyond it new QoS 1/2
	// messages are refused (0x97 to 5.0 publishers; 3.1.1 publishers are
	// disconnected and retry later). 0: no limit.
	MaxStoreBytes uint64
	// Retained indexes retained messages for matching; nil: in memory.
	// (Their durability goes through the broker's store.Store.)
	Retained retain.Store
	// Cluster connects the broker to the other nodes of a cluster; nil:
	// standalone (cluster.go).
	Cluster Cluster
	// Routes returns the subscription index of a new tenant; nil: a
	// topic.Trie in memory. Routes are rebuilt from the durable sessions at
	// start (Recover), so an index need not persist anything itself.
	Routes func(tenant string) Routes
	Logger *slog.Logger
}

// Routes is a tenant's subscription index: which local subscribers a topic
// reaches. topic.Trie is the implementation; the interface is the seam where
// a cluster puts its view of remote nodes' subscriptions next to the local
// ones (docs/ARCHITECTURE.md). The broker serialises calls per tenant:
// Subscribe and Unsubscribe run alone, Match calls may run concurrently
// with each other (a read lock), so an index needs no lock of its own as
// long as Match does not write. It must not call back into the broker.
type Routes interface {
	// Subscribe adds or replaces id's subscription to filter and reports
	// whether it existed.
	Subscribe(filter []byte, s topic.Subscription) (existed bool)
	// Unsubscribe removes id's subscription to filter and reports whether
	// there was one.
	Unsubscribe(filter []byte, id topic.SubscriberID) bool
	// Match appends to m the subscriptions topic reaches.
	Match(topic []byte, m *topic.Matches)
	// Len is the number of subscriptions.
	Len() int
}

// Hooks are deliberate bugs a test can switch on, to prove that the
// simulator's invariants catch them.
type Hooks struct {
	// AckBeforeDurable acknowledges a PUBLISH at once, without waiting
	// for the store to commit what it produced.
	AckBeforeDurable bool
}

// DefaultConfig returns a Config with production defaults.
func DefaultConfig() Config {
	return Config{Session: session.DefaultConfig(), SharedPolicy: topic.RoundRobin, MaxPacketSize: 1 << 20}
}

// Broker is the broker core.
type Broker struct {
	cfg      Config
	env      env.Env
	log      *slog.Logger
	auth     Authenticator
	retained retain.Store
	st       store.Store
	persist  bool // st keeps state across restarts
	settings *tenantpkg.Provider

	lisMu     sync.Mutex                     // guards listeners
	listeners map[listenerInfo]*listenerInfo // interned (Conn.lis)

	mu      sync.Mutex // guards tenants, the growth of slots, nslots, free
	tenants map[string]*tenant
	// slots maps the low 32 bits of a SubscriberID to its entry. Readers
	// (every delivery) take no lock: chunks are never moved once allocated.
	slots   atomic.Pointer[[]*slotChunk]
	nslots  uint32
	free    []uint32
	stopped bool
	// draining holds the Server Reference function while the node sends
	// clients elsewhere (Drain).
	draining atomic.Pointer[func() string]
	// $SYS publication (sys.go).
	sysTimer    env.Timer
	sysInterval time.Duration
	sysVersion  string
	started     time.Time

	// usage samples the store's size for MaxStoreBytes (durable.go).
	usage   atomic.Uint64
	usageAt atomic.Int64
	// dropLogAt rate-limits the drop log line (route.go), stallLogAt the
	// slow subscriber's (backpressure.go).
	dropLogAt  atomic.Int64
	stallLogAt atomic.Int64

	// randMu guards env.Rand, which need not be safe for concurrent use.
	randMu sync.Mutex
	// retainMu orders durable retained changes: their effect on the
	// retained store and their submission to the store (commitJob.commit).
	retainMu sync.Mutex
	// onlineFn is b.isOnline bound once, so that routing does not allocate
	// a method value per message.
	onlineFn func(topic.SubscriberID) bool

	stats Stats
}

// Stats are the broker's counters. They only grow, except the gauges
// (Connections, Sessions).
type Stats struct {
	Connections   atomic.Int64 // gauge: connections with an accepted CONNECT
	Sessions      atomic.Int64 // gauge: sessions, connected or not
	ConnectsTotal atomic.Uint64
	Refused       atomic.Uint64 // CONNECTs refused
	ProtocolError atomic.Uint64 // connections closed for a malformed packet or protocol error
	MessagesIn    atomic.Uint64 // PUBLISH received from clients
	BytesIn       atomic.Uint64
	MessagesOut   atomic.Uint64 // deliveries handed to sessions
	Dropped       atomic.Uint64 // deliveries dropped, all reasons
	// DroppedBy counts drops per reason (DropReasons names them).
	DroppedBy     [numDropReasons]atomic.Uint64
	NoSubscribers atomic.Uint64 // PUBLISH that matched no subscription
	WillsSent     atomic.Uint64
	Expired       atomic.Uint64 // sessions that expired
	// Throttled counts throttle reactions per reason (ThrottleReasons).
	Throttled   [numThrottles]atomic.Uint64
	StoreErrors atomic.Uint64 // batches the durable store failed to commit
	StoreFull   atomic.Uint64 // publishes refused because the store is over its limit
	// Stalls counts subscribers that let a parked delivery wait its whole
	// bound (backpressure.go); what was parked on them is in
	// DroppedBy[DropQueueFull]. Publishes whose acknowledgement waited for
	// a slow subscriber are in Throttled[ThrottleSlowSubscriber].
	Stalls atomic.Uint64
	// TenantsFreed counts tenants removed because they held nothing.
	TenantsFreed atomic.Uint64
	// ClusterConnectionsRefused counts CONNECTs refused at the tenant's
	// max_connections that this node's own clients alone would have let
	// in: the other nodes' clients made up the difference (also in
	// Throttled[ThrottleConnections]).
	ClusterConnectionsRefused atomic.Uint64
}

const chunkSize = 4096

type slotChunk [chunkSize]atomic.Pointer[entry]

// slot returns the cell for index idx, or nil beyond the allocated chunks.
func (b *Broker) slot(idx uint32) *atomic.Pointer[entry] {
	chunks := b.slots.Load()
	if chunks == nil || int(idx/chunkSize) >= len(*chunks) {
		return nil
	}
	return &(*chunks)[idx/chunkSize][idx%chunkSize]
}

// Drop reasons, for DroppedBy.
const (
	DropQueueFull = iota
	DropOutputFull
	DropOffline
	DropTooLarge
	DropExpired
	DropNotAuthorized
	DropRateLimited // a publisher over its tenant's publish or fan-out rate
	DropQuota       // over a tenant limit: payload, user properties, topic, retained
	numDropReasons
)

// DropReasons names the drop reasons, as metrics label them.
var DropReasons = [numDropReasons]string{"queue_full", "output_full", "offline_qos0", "too_large", "expired", "not_authorized",
	"rate_limited", "quota_exceeded"}

// refusalDrop is the drop reason of a PUBLISH the tenant's limits refused
// with code.
func refusalDrop(code packet.ReasonCode) int {
	if code == packet.MessageRateTooHigh {
		return DropRateLimited
	}
	return DropQuota
}

// tenant holds one tenant's sessions and routes.
type tenant struct {
	name     string
	regMu    sync.Mutex // guards sessions
	sessions map[string]*entry
	routesMu sync.RWMutex
	routes   Routes
	// localSubs counts this node's subscriptions per filter: for every
	// shared group (its members, for the group size limit), and for every
	// filter in a cluster (whose first and last one are the cluster's
	// routes). Guarded by routesMu.
	localSubs map[string]int
	stats     tenantStats

	// users counts holds taken by acquireTenant; freeTimer is the pending
	// check of mayBeEmpty. Both guarded by Broker.mu.
	users     int
	freeTimer env.Timer

	limits      atomic.Pointer[limits]
	connected   atomic.Int64 // connected clients
	admitting   atomic.Int64 // CONNECTs admitted, not yet in connected nor refused (admitConnect)
	persistent  atomic.Int64 // sessions that outlive their connection
	connectRate tenantpkg.Bucket
	inBytes     tenantpkg.Bucket
	fanout      tenantpkg.Bucket
}

// counter is a monotonic counter safe for concurrent use.
type counter = atomic.Uint64

// entry is a session and what the broker keeps with it.
type entry struct {
	mu     sync.Mutex
	s      *session.Session
	t      *tenant
	id     topic.SubscriberID
	conn   *Conn // the attached connection, nil when offline
	online atomic.Bool
	dead   bool // removed from the registry; deliveries are dropped
	ending bool // its connection ended with session expiry 0: endSession follows
	// counted says the session counts in its tenant's persistent sessions.
	counted bool
	// stalled says the session stalled under back-pressure (see parked);
	// it sits with the other flags so that an entry fits a smaller size
	// class.
	stalled bool
	// gen changes each time the session is attached, so that a timer armed
	// for an earlier disconnection does nothing.
	gen uint64
	// x is what a connected, unhurried session does not need, made on first
	// use (under mu) and let go when empty again.
	x *entryMore
}

// entryMore is the part of an entry that only an offline session (its
// timers) or a slow subscriber (its parked deliveries) needs.
type entryMore struct {
	// willTimer and expiryTimer run while the session has no connection.
	willTimer   env.Timer
	pendingWill *message.Message // the will willTimer will publish
	expiryTimer env.Timer
	// Back-pressure (backpressure.go): QoS 1/2 deliveries waiting for room
	// in the queue and the timer of the oldest one's bound (whether the
	// session stalled is entry.stalled).
	parked    fifo.Queue[parkedDelivery]
	parkTimer env.Timer
}

// more returns e.x, made on first use. The caller holds e.mu.
func (e *entry) more() *entryMore {
	if e.x == nil {
		e.x = &entryMore{}
	}
	return e.x
}

// tidy lets go of e.x once it holds nothing. The caller holds e.mu.
func (e *entry) tidy() {
	if x := e.x; x != nil && x.willTimer == nil && x.expiryTimer == nil && x.parkTimer == nil && x.parked.Len() == 0 {
		e.x = nil
	}
}

// nparked returns how many deliveries are parked on e. The caller holds
// e.mu.
func (e *entry) nparked() int {
	if e.x == nil {
		return 0
	}
	return e.x.parked.Len()
}

// hasWillTimer reports whether a delayed will waits. The caller holds e.mu.
func (e *entry) hasWillTimer() bool { return e.x != nil && e.x.willTimer != nil }

// New returns a broker running in e that keeps its durable state in st
// (nothing survives the process when st is nil or store.Memory). A broker
// with a durable store must Recover before it serves.
func New(cfg Config, e env.Env, st store.Store) *Broker {
	if st == nil {
		st = store.Memory{}
	}
	_, inMemory := st.(store.Memory)
	retained := cfg.Retained
	if retained == nil {
		retained = retain.NewMemory()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	auth := cfg.Authenticator
	if auth == nil {
		auth = AllowAll{}
	}
	if cfg.Events == nil {
		cfg.Events = event.Discard{}
	}
	settings := cfg.Settings
	if settings == nil {
		settings = tenantpkg.NewProvider()
	}
	b := &Broker{cfg: cfg, env: e, log: log, auth: auth, retained: retained, st: st, persist: !inMemory,
		settings: settings, tenants: map[string]*tenant{}}
	b.onlineFn = b.isOnline
	return b
}

// isOnline reports whether a session has a connection, for shared groups
// that prefer connected members.
func (b *Broker) isOnline(id topic.SubscriberID) bool {
	e := b.lookup(id)
	return e != nil && e.online.Load()
}

// Stats returns the broker's counters.
func (b *Broker) Stats() *Stats { return &b.stats }

// Config returns the broker's configuration.
func (b *Broker) Config() *Config { return &b.cfg }

// emit sends an event to the configured sink.
func (b *Broker) emit(e event.Event) { b.cfg.Events.Emit(e) }

func (b *Broker) newRoutes(tenant string) Routes {
	if b.cfg.Routes != nil {
		return b.cfg.Routes(tenant)
	}
	return topic.NewTrie()
}

// acquireTenant returns the named tenant, creating it on first use, and
// holds it: it is not freed before releaseTenant, by which time what the
// caller made (a session) keeps it.
func (b *Broker) acquireTenant(name string) *tenant {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.tenants[name]
	if t == nil {
		t = &tenant{name: name, sessions: map[string]*entry{}, routes: b.newRoutes(name), localSubs: map[string]int{}}
		b.tenants[name] = t
	}
	t.users++
	return t
}

// tenantIdleTTL is how long a tenant that holds nothing is kept before it
// is freed: long enough that its rate buckets would have refilled anyway.
const tenantIdleTTL = time.Minute

// releaseTenant ends a hold taken by acquireTenant and, if the tenant may
// now hold nothing, schedules its freeing.
func (b *Broker) releaseTenant(t *tenant) {
	b.mu.Lock()
	t.users--
	b.mu.Unlock()
	b.mayBeEmpty(t)
}

// mayBeEmpty schedules a check, tenantIdleTTL from now, that frees the
// tenant if it then holds nothing: tenants are made by connections (any
// name an authenticator returns), so they must not outlive what they hold.
func (b *Broker) mayBeEmpty(t *tenant) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.freeTimer != nil || b.tenants[t.name] != t {
		return
	}
	t.freeTimer = b.env.Clock.AfterFunc(tenantIdleTTL, func() { b.freeTenant(t) })
}

// freeTenant removes the tenant if it holds nothing: no session, no
// connection or acceptance in progress, no retained message. Its counters
// go with it (a tenant that comes back starts them at zero).
func (b *Broker) freeTenant(t *tenant) {
	t.regMu.Lock()
	defer t.regMu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	t.freeTimer = nil
	if b.tenants[t.name] != t || len(t.sessions) > 0 || t.users > 0 || t.connected.Load() > 0 {
		return
	}
	if n, _ := b.retained.Count(t.name); n > 0 {
		return
	}
	delete(b.tenants, t.name)
	b.stats.TenantsFreed.Add(1)
}

// newEntry allocates a session slot. The SubscriberID carries a generation
// in its high bits so that a stale id never reaches a new session.
func (b *Broker) newEntry(t *tenant, clientID string) *entry {
	b.mu.Lock()
	var idx uint32
	if n := len(b.free); n > 0 {
		idx = b.free[n-1]
		b.free = b.free[:n-1]
	} else {
		idx = b.nslots
		b.nslots++
		if b.slot(idx) == nil {
			var chunks []*slotChunk
			if old := b.slots.Load(); old != nil {
				chunks = append(chunks, *old...)
			}
			chunks = append(chunks, new(slotChunk))
			b.slots.Store(&chunks)
		}
	}
	cell := b.slot(idx)
	gen := uint64(0)
	if old := cell.Load(); old != nil {
		gen = uint64(old.id>>32) + 1
	}
	e := &entry{t: t, id: topic.SubscriberID(gen<<32 | uint64(idx))}
	cell.Store(e)
	b.mu.Unlock()
	e.s = session.New(&b.tenantLimits(t).sess, e.id, t.name, clientID, b.persist)
	b.stats.Sessions.Add(1)
	return e
}

// lookup returns the live entry for id, or nil.
func (b *Broker) lookup(id topic.SubscriberID) *entry {
	cell := b.slot(uint32(id))
	if cell == nil {
		return nil
	}
	if e := cell.Load(); e != nil && e.id == id {
		return e
	}
	return nil
}

// freeSlot frees the slot of a dead entry.
func (b *Broker) freeSlot(e *entry) {
	b.mu.Lock()
	idx := uint32(e.id)
	if cell := b.slot(idx); cell != nil && cell.Load() == e {
		b.free = append(b.free, idx)
	}
	b.mu.Unlock()
	b.stats.Sessions.Add(-1)
}

// randUint64 draws from the environment's random source.
func (b *Broker) randUint64() uint64 {
	b.randMu.Lock()
	defer b.randMu.Unlock()
	return b.env.Rand.Uint64()
}

// assignClientID returns a client identifier no session of t uses
// [MQTT-3.1.3-6] [MQTT-3.2.2-16]. The caller holds t.regMu.
func (b *Broker) assignClientID(t *tenant) string {
	for {
		id := "auto-" + strconv.FormatUint(b.randUint64(), 36)
		if _, used := t.sessions[id]; !used {
			return id
		}
	}
}

// intn is a random int in [0,n) for shared-group choice.
type lockedIntn struct{ b *Broker }

func (l lockedIntn) IntN(n int) int {
	l.b.randMu.Lock()
	defer l.b.randMu.Unlock()
	return l.b.env.Rand.IntN(n)
}

// Tenants returns the names of tenants the broker has seen, sorted.
func (b *Broker) Tenants() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tenantNamesLocked()
}

// Shutdown makes the broker refuse new connections; the runtime then
// kicks each connection (Conn.Kick) with ServerShuttingDown.
func (b *Broker) Shutdown() {
	b.mu.Lock()
	b.stopped = true
	b.mu.Unlock()
}
