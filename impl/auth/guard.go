package auth

import (
	"container/list"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/event"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// A Guard bounds the work authentication costs, so that a storm of wrong
// passwords can neither use every core on bcrypt nor keep a legitimate
// client out (docs/AUTH.md, "Limits"):
//
//   - Failure throttling, decided before anything is hashed. Failures are
//     counted per source (the client's IP address; IPv6 by /64) and per
//     user name. After FreeFailures failures (after the first, for a source
//     with more attempts waiting for a worker than there are workers: a
//     flood, not a client retrying), attempts within a window
//     that doubles with each further failure (Delay, 2×Delay, ... up to
//     MaxDelay) are refused at once with 0x9F Connection rate exceeded. A
//     source whose failures and refused attempts reach BanAfter is refused
//     with 0x8A Banned for BanFor. A success resets its user's count; a
//     record with no failure for Forget is dropped. The per-user throttle
//     does not apply to a source with no failure of its own, so that a
//     storm against a user name from one place does not lock that user
//     out everywhere (a storm from many places gets one try per place).
//   - A bounded pool of verifications: at most Workers verifications (a
//     bcrypt comparison, a SCRAM step) run at once, at most PerSource of
//     them for one source; the others wait in a queue of at most Queue,
//     where waiters from sources without failures go first, and a source
//     with failures starts one only while no clean source's runs (so that
//     a legitimate client's bcrypt does not share the cores with a
//     storm's). An attempt
//     that finds the queue full is refused with 0x89 Server busy, unless it
//     comes from a source without failures and a waiter from a failing one
//     can give up its place. The throttle is checked again once a worker
//     is free, so queued attempts of a source that got throttled meanwhile
//     hash nothing.
//
// The trackers are bounded (MaxTracked records each, least recently used
// evicted and counted). A Guard is pure: it reads an env.Clock, starts no
// goroutine, and waits only on its own sync.Cond — which the one-threaded
// simulator never reaches, since a verification there always ends before
// the next begins.

// GuardOptions configure a Guard. DefaultGuardOptions gives the documented
// defaults.
type GuardOptions struct {
	Clock env.Clock
	// Events receives a Throttled event when a source or a user starts
	// being throttled (Detail "auth_source", "auth_user", Reason 0x9F) or a
	// source is banned ("auth_ban", 0x8A). Nil: none.
	Events event.Sink
	// Workers bounds the verifications running at once.
	Workers int
	// PerSource bounds those of one source (0: half the workers, at least one).
	PerSource int
	// Queue bounds the verifications waiting for a worker.
	Queue int
	// FreeFailures are the failures allowed before throttling starts.
	FreeFailures int
	// Delay is the first throttle window; each further failure doubles it,
	// up to MaxDelay.
	Delay, MaxDelay time.Duration
	// BanAfter is how many failures and refused attempts ban a source
	// (0: never), for BanFor.
	BanAfter int
	BanFor   time.Duration
	// Forget drops the record of a source or user without a failure for
	// this long.
	Forget time.Duration
	// MaxTracked bounds the sources, and the users, with a record.
	MaxTracked int
	// RefusalDelay is how long a runtime holds the refusal of a throttled
	// or banned source before answering (RefusalDelay), so that a storm's
	// connections wait instead of coming back at once. 0: no delay.
	RefusalDelay time.Duration
}

// DefaultGuardOptions returns the defaults of the auth.limits section with
// workers.
func DefaultGuardOptions(clock env.Clock, workers int) GuardOptions {
	return GuardOptions{Clock: clock, Workers: workers, Queue: 256, FreeFailures: 5,
		Delay: time.Second, MaxDelay: 5 * time.Minute, BanAfter: 100, BanFor: 10 * time.Minute,
		Forget: 15 * time.Minute, MaxTracked: 65536, RefusalDelay: time.Second}
}

func (o *GuardOptions) validate() error {
	switch {
	case o.Clock == nil:
		return errors.New("auth: the guard needs a clock")
	case o.Workers < 1:
		return errors.New("auth: guard workers must be at least 1")
	case o.PerSource < 0 || o.Queue < 0 || o.FreeFailures < 0 || o.BanAfter < 0 || o.RefusalDelay < 0:
		return errors.New("auth: guard per_source, queue, free_failures, ban_after and refusal_delay cannot be negative")
	case o.Delay <= 0 || o.MaxDelay < o.Delay:
		return errors.New("auth: guard delay must be positive and max_delay at least delay")
	case o.BanAfter > 0 && o.BanFor <= 0:
		return errors.New("auth: guard ban_for must be positive")
	case o.Forget < o.MaxDelay:
		return errors.New("auth: guard forget_after must be at least max_delay")
	case o.MaxTracked < 1:
		return errors.New("auth: guard max_tracked must be at least 1")
	}
	return nil
}

// GuardStats are a Guard's counters.
type GuardStats struct {
	Verifications                        uint64 // verifications run on a worker
	Waited                               uint64 // of those, how many waited in the queue
	Busy                                 uint64 // refused 0x89: queue full
	Throttled                            uint64 // refused 0x9F before hashing
	Banned                               uint64 // refused 0x8A
	SourceThrottles, UserThrottles, Bans uint64 // throttles and bans started
	Evicted                              uint64 // records dropped by the MaxTracked bound
	Running, Waiting                     int    // verifications now
	Sources, Users                       int    // records now
}

// Guard implements the limits above; see Authenticator, Bounded and
// Enhanced for where they apply.
type Guard struct {
	o GuardOptions

	mu      sync.Mutex
	sources tracker
	users   tracker
	running int
	// cleanRunning are the running verifications of sources that had no
	// failure when they started.
	cleanRunning int
	bySource     map[string]int // running verifications per source
	waitingBy    map[string]int // waiting verifications per source
	// attempts are the CONNECTs inside Authenticator, for Bounded to find.
	attempts map[*broker.AuthRequest]*attempt
	// events wait here for the lock to be released (flush).
	events    []event.Event
	hasEvents atomic.Bool
	queue     []*waiter

	verifications, waited, busy, throttled, banned atomic.Uint64
	sourceThrottles, userThrottles, bans           atomic.Uint64
	evicted                                        atomic.Uint64
}

// NewGuard checks o and returns a Guard.
func NewGuard(o GuardOptions) (*Guard, error) {
	if o.PerSource == 0 {
		o.PerSource = max(1, o.Workers/2)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	g := &Guard{o: o, bySource: map[string]int{}, waitingBy: map[string]int{}, attempts: map[*broker.AuthRequest]*attempt{}}
	g.sources.init(o.MaxTracked, &g.evicted)
	g.users.init(o.MaxTracked, &g.evicted)
	return g, nil
}

// Stats returns the counters.
func (g *Guard) Stats() GuardStats {
	g.mu.Lock()
	st := GuardStats{Running: g.running, Waiting: len(g.queue), Sources: g.sources.len(), Users: g.users.len()}
	g.mu.Unlock()
	st.Verifications, st.Waited, st.Busy = g.verifications.Load(), g.waited.Load(), g.busy.Load()
	st.Throttled, st.Banned = g.throttled.Load(), g.banned.Load()
	st.SourceThrottles, st.UserThrottles, st.Bans = g.sourceThrottles.Load(), g.userThrottles.Load(), g.bans.Load()
	st.Evicted = g.evicted.Load()
	return st
}

// RefusalDelay returns how long the runtime should hold the refusal it is
// about to send to remote: RefusalDelay while remote's source is throttled
// or banned, else 0. The guard itself never waits for it: holding a
// connection is the runtime's business (impl/server bounds how many it
// holds).
func (g *Guard) RefusalDelay(remote string) time.Duration {
	if g.o.RefusalDelay <= 0 {
		return 0
	}
	now := g.o.Clock.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if r := g.sources.peek(SourceOf(remote)); r != nil && (now.Before(r.bannedUntil) || now.Before(r.until)) {
		return g.o.RefusalDelay
	}
	return 0
}

// attempt is who is trying: the keys of its records and what events name.
type attempt struct {
	source, user string // "" when unknown: not tracked
	req          *broker.AuthRequest
	recorded     bool // its outcome is recorded (by Bounded, before its worker went)
}

func attemptOf(req *broker.AuthRequest) attempt {
	a := attempt{source: SourceOf(req.Remote), req: req}
	if req.HasUser {
		a.user = req.Username
		if !strings.Contains(a.user, "/") {
			a.user = req.DefaultTenant + "/" + a.user
		}
	}
	return a
}

// SourceOf returns the source key of a remote address "ip:port": the IP
// (IPv4-mapped IPv6 as IPv4), an IPv6 address's /64 (one host commonly
// has a whole /64). An address that is not IP:port counts as its part
// before the last ':'.
func SourceOf(remote string) string {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		if ap.Addr().Is4() {
			// "a.b.c.d:port": the part before the port is the address as
			// String writes it (ParseAddrPort takes only that form), so the
			// key shares remote's memory instead of a string of its own
			// per CONNECT.
			return remote[:strings.LastIndexByte(remote, ':')]
		}
		ip := ap.Addr().Unmap()
		if ip.Is6() {
			p, _ := ip.WithZone("").Prefix(64)
			return p.String()
		}
		return ip.String()
	}
	if i := strings.LastIndexByte(remote, ':'); i > 0 {
		return remote[:i]
	}
	return remote
}

// failed reports whether a decision counts as a failure.
func failed(code packet.ReasonCode) bool {
	return code == packet.BadUserNameOrPassword || code == packet.NotAuthorized
}

// check returns the refusal a throttled or banned attempt gets (Success:
// none) and counts it. The caller holds g.mu.
func (g *Guard) check(a *attempt, now time.Time) packet.ReasonCode {
	src := g.sources.get(a.source, now, g.o.Forget)
	if src != nil && now.Before(src.bannedUntil) {
		g.banned.Add(1)
		return packet.Banned
	}
	throttled := src != nil && now.Before(src.until)
	if !throttled && (src != nil && src.failures > 0) {
		if u := g.users.get(a.user, now, g.o.Forget); u != nil && now.Before(u.until) {
			throttled = true
		}
	}
	if !throttled {
		return packet.Success
	}
	if src != nil {
		src.refused++
		g.maybeBan(a, src, now)
		if now.Before(src.bannedUntil) {
			g.banned.Add(1)
			return packet.Banned
		}
	}
	g.throttled.Add(1)
	return packet.ConnectionRateExceeded
}

// maybeBan bans the source of r once it has failed often enough.
func (g *Guard) maybeBan(a *attempt, r *record, now time.Time) {
	if g.o.BanAfter == 0 || r.failures+r.refused < g.o.BanAfter || now.Before(r.bannedUntil) {
		return
	}
	r.bannedUntil = now.Add(g.o.BanFor)
	g.bans.Add(1)
	g.emit(a, "auth_ban", packet.Banned, now)
}

// result records the outcome of a verification.
func (g *Guard) result(a *attempt, code packet.ReasonCode, now time.Time) {
	if !failed(code) {
		if code == packet.Success {
			g.mu.Lock()
			g.users.remove(a.user)
			g.mu.Unlock()
		}
		return
	}
	g.mu.Lock()
	defer g.flush()
	defer g.mu.Unlock()
	if r := g.sources.touch(a.source, now, g.o.Forget); r != nil {
		if g.flooding(a.source) {
			r.failures = max(r.failures, g.o.FreeFailures)
		}
		if g.fail(r, now) {
			g.sourceThrottles.Add(1)
			g.emit(a, "auth_source", packet.ConnectionRateExceeded, now)
		}
		g.maybeBan(a, r, now)
	}
	if r := g.users.touch(a.user, now, g.o.Forget); r != nil && g.fail(r, now) {
		g.userThrottles.Add(1)
		g.emit(a, "auth_user", packet.ConnectionRateExceeded, now)
	}
}

// fail counts a failure on r and reports whether a throttle starts.
func (g *Guard) fail(r *record, now time.Time) bool {
	r.failures++
	r.last = now
	over := r.failures - g.o.FreeFailures
	if over <= 0 {
		return false
	}
	d := g.o.Delay
	for i := 1; i < over && d < g.o.MaxDelay; i++ {
		d *= 2
	}
	r.until = now.Add(min(d, g.o.MaxDelay))
	return over == 1
}

// emit queues an event; the caller holds g.mu, and flush hands the
// events to the sink once it is released.
func (g *Guard) emit(a *attempt, what string, code packet.ReasonCode, now time.Time) {
	if g.o.Events == nil {
		return
	}
	tenant, user, _ := strings.Cut(a.user, "/")
	e := event.NewThrottled(now, event.Who{Tenant: tenant, ClientID: a.req.ClientID, User: user}, what)
	e.Reason, e.Listener, e.Remote = code, a.req.Listener, a.req.Remote
	g.events = append(g.events, e)
	g.hasEvents.Store(true)
}

// flush emits the queued events, without g.mu held.
func (g *Guard) flush() {
	if !g.hasEvents.Load() {
		return
	}
	g.mu.Lock()
	evs := g.events
	g.events = nil
	g.hasEvents.Store(false)
	g.mu.Unlock()
	for _, e := range evs {
		g.o.Events.Emit(e)
	}
}

// --- the pool ---

type waiter struct {
	source string
	cond   sync.Cond
	state  int // waiting, granted or turnedAway
	w      worker
}

const (
	waiting = iota
	granted
	turnedAway
)

// worker is a place on the pool, given back with release.
type worker struct {
	source string
	clean  bool // its source had no failure when it started
}

// acquire takes a worker for a, waiting in the queue if need be; it
// returns ServerBusy when the queue is full.
func (g *Guard) acquire(a *attempt) (worker, packet.ReasonCode) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) == 0 && g.runnable(a.source, g.clean(a.source)) {
		return g.start(a.source), packet.Success
	}
	w := &waiter{source: a.source}
	w.cond.L = &g.mu
	if len(g.queue) >= g.o.Queue && !g.makeRoom(w) {
		g.busy.Add(1)
		return worker{}, packet.ServerBusy
	}
	g.queue = append(g.queue, w)
	g.waitingBy[w.source]++
	g.waited.Add(1)
	g.dispatch()
	for w.state == waiting {
		w.cond.Wait()
	}
	if w.state == turnedAway {
		g.busy.Add(1)
		return worker{}, packet.ServerBusy
	}
	return w.w, packet.Success
}

// release gives a worker back and hands it on.
func (g *Guard) release(w worker) {
	g.mu.Lock()
	g.running--
	if w.clean {
		g.cleanRunning--
	}
	if w.source != "" {
		if g.bySource[w.source]--; g.bySource[w.source] <= 0 {
			delete(g.bySource, w.source)
		}
	}
	g.dispatch()
	g.mu.Unlock()
}

// runnable reports whether a verification of source may start now: a
// worker is free, the source is below PerSource and, for a source with
// failures, no verification of a clean source is running (those get the
// machine's cores to themselves as far as the pool can tell).
func (g *Guard) runnable(source string, clean bool) bool {
	return g.running < g.o.Workers && (source == "" || g.bySource[source] < g.o.PerSource) &&
		(clean || g.cleanRunning == 0)
}

func (g *Guard) start(source string) worker {
	w := worker{source: source, clean: g.clean(source)}
	g.running++
	if w.clean {
		g.cleanRunning++
	}
	if source != "" {
		g.bySource[source]++
	}
	return w
}

func (g *Guard) unwait(source string) {
	if g.waitingBy[source]--; g.waitingBy[source] <= 0 {
		delete(g.waitingBy, source)
	}
}

// flooding reports whether a source has more verifications waiting than
// the pool has workers: no client retrying a password does that, a storm
// does, so its first failure throttles it (FreeFailures are for the
// former).
func (g *Guard) flooding(source string) bool {
	return source != "" && g.waitingBy[source] > g.o.Workers
}

// clean reports whether a source has no failure on record.
func (g *Guard) clean(source string) bool {
	r := g.sources.peek(source)
	return r == nil || r.failures == 0
}

// dispatch grants free workers to waiters: first those of clean sources,
// then the others, each in arrival order, skipping sources at their
// PerSource bound.
func (g *Guard) dispatch() {
	for pass := 0; pass < 2 && g.running < g.o.Workers; pass++ {
		for i := 0; i < len(g.queue) && g.running < g.o.Workers; {
			w := g.queue[i]
			clean := g.clean(w.source)
			if (pass == 0 && !clean) || !g.runnable(w.source, clean) {
				i++
				continue
			}
			g.queue = append(g.queue[:i], g.queue[i+1:]...)
			g.unwait(w.source)
			w.w = g.start(w.source)
			w.state = granted
			w.cond.Signal()
		}
	}
}

// makeRoom, for a waiter of a clean source, refuses the newest waiter of
// a failing source to free its place.
func (g *Guard) makeRoom(w *waiter) bool {
	if !g.clean(w.source) {
		return false
	}
	for i := len(g.queue) - 1; i >= 0; i-- {
		if v := g.queue[i]; !g.clean(v.source) {
			g.queue = append(g.queue[:i], g.queue[i+1:]...)
			g.unwait(v.source)
			v.state = turnedAway
			v.cond.Signal()
			return true
		}
	}
	return false
}

// verify runs f on a worker for a: throttle check, queue, check again,
// f, record the outcome. It returns f's code, or the refusal.
func (g *Guard) verify(a *attempt, f func() packet.ReasonCode) packet.ReasonCode {
	if code := g.gate(a); code != packet.Success {
		return code
	}
	w, code := g.acquire(a)
	if code != packet.Success {
		return code
	}
	// Queued attempts of a source throttled meanwhile hash nothing.
	if code := g.gate(a); code != packet.Success {
		g.release(w)
		return code
	}
	g.verifications.Add(1)
	code = f()
	g.result(a, code, g.o.Clock.Now()) // before the worker goes (see Bounded)
	g.release(w)
	return code
}

// gate is check under the lock.
func (g *Guard) gate(a *attempt) packet.ReasonCode {
	now := g.o.Clock.Now()
	g.mu.Lock()
	code := g.check(a, now)
	g.mu.Unlock()
	g.flush()
	return code
}

// --- where the guard applies ---

// Authenticator wraps inner (the broker's Authenticator for CONNECT): the
// throttle decides before inner runs, and inner's failures and successes
// are recorded. It does not take a worker: put the expensive members of a
// Chain behind Bounded.
func (g *Guard) Authenticator(inner broker.Authenticator) broker.Authenticator {
	return &guarded{g: g, inner: inner}
}

type guarded struct {
	g     *Guard
	inner broker.Authenticator
}

func (x *guarded) Authenticate(req *broker.AuthRequest) broker.AuthResult {
	a := attemptOf(req)
	if code := x.g.gate(&a); code != packet.Success {
		return broker.AuthResult{Code: code}
	}
	x.g.mu.Lock()
	x.g.attempts[req] = &a
	x.g.mu.Unlock()
	r := x.inner.Authenticate(req)
	x.g.mu.Lock()
	delete(x.g.attempts, req)
	recorded := a.recorded
	x.g.mu.Unlock()
	if !recorded {
		x.g.result(&a, r.Code, x.g.o.Clock.Now())
	}
	return r
}

// Bounded runs d's decisions on the guard's workers (d is expensive: the
// password file's bcrypt). A refusal of the pool (0x89) or of the throttle
// checked again after the wait (0x9F, 0x8A) is d's decision. Its outcome
// is recorded by the Authenticator around the chain, not here.
func (g *Guard) Bounded(d Decider) Decider { return &bounded{g: g, d: d} }

type bounded struct {
	g *Guard
	d Decider
}

func (b *bounded) Decide(req *broker.AuthRequest) (Identity, bool) {
	a := attemptOf(req)
	w, code := b.g.acquire(&a)
	if code != packet.Success {
		return refused(code), true
	}
	if code := b.g.gate(&a); code != packet.Success {
		b.g.release(w)
		return refused(code), true
	}
	b.g.verifications.Add(1)
	id, ok := b.d.Decide(req)
	if ok && failed(id.Code) {
		// Recorded before the worker goes to the next waiter, which may
		// be this source's next attempt: it must meet the throttle this
		// failure starts.
		b.g.mu.Lock()
		outer := b.g.attempts[req]
		b.g.mu.Unlock()
		if outer != nil {
			b.g.result(outer, id.Code, b.g.o.Clock.Now())
			b.g.mu.Lock()
			outer.recorded = true
			b.g.mu.Unlock()
		}
	}
	b.g.release(w)
	return id, ok
}

// Enhanced wraps enhanced authentication (SCRAM, JWT by AUTH): each step
// of an exchange is checked by the throttle and runs on a worker, and the
// exchange's outcome is recorded.
func (g *Guard) Enhanced(inner broker.EnhancedAuthenticator) broker.EnhancedAuthenticator {
	return &guardedMethods{g: g, inner: inner}
}

type guardedMethods struct {
	g     *Guard
	inner broker.EnhancedAuthenticator
}

func (m *guardedMethods) Begin(method string, req *broker.AuthRequest) (broker.Exchange, bool) {
	ex, ok := m.inner.Begin(method, req)
	if !ok {
		return nil, false
	}
	return &guardedExchange{g: m.g, inner: ex, a: attemptOf(req)}, true
}

type guardedExchange struct {
	g     *Guard
	inner broker.Exchange
	a     attempt
}

func (x *guardedExchange) Step(data []byte) ([]byte, bool, packet.ReasonCode) {
	var reply []byte
	var done bool
	code := x.g.verify(&x.a, func() packet.ReasonCode {
		var c packet.ReasonCode
		reply, done, c = x.inner.Step(data)
		if done && !c.IsError() {
			c = x.inner.Result().Code
		}
		if !done && !c.IsError() {
			c = packet.ContinueAuthentication // not an outcome yet
		}
		return c
	})
	switch {
	case code == packet.ContinueAuthentication:
		return reply, false, packet.Success
	case code.IsError() && !done:
		return nil, false, code
	}
	return reply, done, code
}

func (x *guardedExchange) Result() broker.AuthResult { return x.inner.Result() }

// Identity forwards the identity the exchange established (IdentityOf).
func (x *guardedExchange) Identity() Identity { return IdentityOf(x.inner) }

// --- the trackers ---

// record is what is known of one source or user.
type record struct {
	key         string
	failures    int       // failures since the last reset
	refused     int       // attempts refused while throttled
	last        time.Time // last failure
	until       time.Time // throttled before
	bannedUntil time.Time // banned before (sources)
	elem        *list.Element
}

// tracker holds at most max records, the least recently used evicted.
type tracker struct {
	max     int
	m       map[string]*record
	lru     list.List // of *record, most recent first
	evicted *atomic.Uint64
}

func (t *tracker) init(max int, evicted *atomic.Uint64) {
	t.max, t.m, t.evicted = max, map[string]*record{}, evicted
	t.lru.Init()
}

func (t *tracker) len() int { return len(t.m) }

// peek returns key's record without touching it.
func (t *tracker) peek(key string) *record { return t.m[key] }

// get returns key's record (nil: none), dropping it when it is stale.
func (t *tracker) get(key string, now time.Time, forget time.Duration) *record {
	r := t.m[key]
	if r == nil {
		return nil
	}
	if now.Sub(r.last) >= forget && !now.Before(r.bannedUntil) {
		t.remove(key)
		return nil
	}
	return r
}

// touch returns key's record, made if need be, as the most recent (nil
// for the empty key).
func (t *tracker) touch(key string, now time.Time, forget time.Duration) *record {
	if key == "" {
		return nil
	}
	r := t.get(key, now, forget)
	if r == nil {
		if len(t.m) >= t.max {
			old := t.lru.Back().Value.(*record)
			t.remove(old.key)
			t.evicted.Add(1)
		}
		r = &record{key: key, last: now}
		r.elem = t.lru.PushFront(r)
		t.m[key] = r
		return r
	}
	t.lru.MoveToFront(r.elem)
	return r
}

func (t *tracker) remove(key string) {
	if r := t.m[key]; r != nil {
		t.lru.Remove(r.elem)
		delete(t.m, key)
	}
}
