package broker

import (
	"sync"
	"time"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/session"
	"github.com/skybridge-mq/skybridge/impl/store"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// waiter is a session whose held output waits for a batch: once the batch
// is durable, so is the span of the session's journal it carries.
type waiter struct {
	e    *entry
	span session.Span
}

// commitJob is one batch on its way to the store and what waits for it:
// the sessions whose held output it releases and, for publishes, the
// publisher's acknowledgements (one per PUBLISH; several when the runtime
// lets a batch of PUBLISHes share one commit, see Conn.Idle). Jobs are pooled: nearly every persistent
// QoS 1/2 message makes two (its route, then its subscriber's
// acknowledgement), and a batch, a waiter slice and a callback allocated
// for each were a good part of the persistent path's garbage. The store
// keeps nothing of a batch once its done has run (store.Store), so the
// job is recycled at the end of done.
type commitJob struct {
	b       *Broker
	batch   store.Batch
	waiters []waiter
	acks    []*heldAck  // all of one connection
	done    func(error) // finish, bound once
	// retained: the batch changes retained messages, which take effect
	// in the retained store when it is committed (setRetained).
	retained bool
}

var commitJobs sync.Pool

func init() {
	// Set here, not in the declaration: finish leads back to the pool
	// (an initialization cycle for the compiler).
	commitJobs.New = func() any {
		j := new(commitJob)
		j.done = j.finish
		return j
	}
}

func (b *Broker) newCommitJob() *commitJob {
	j := commitJobs.Get().(*commitJob)
	j.b = b
	return j
}

// commit hands the job to the store. A batch that changes retained
// messages applies them to the retained store as it is handed over, under
// retainMu, so that the store and the disk see them in the same order.
func (j *commitJob) commit() {
	b := j.b
	if !j.retained {
		b.st.Commit(&j.batch, j.done)
		return
	}
	b.retainMu.Lock()
	for i := range j.batch.Ops {
		if op := &j.batch.Ops[i]; op.Kind == store.PutRetained || op.Kind == store.DeleteRetained {
			b.retained.Set(op.Tenant, op.Message)
		}
	}
	b.st.Commit(&j.batch, j.done) // j may be recycled once this returns
	b.retainMu.Unlock()
}

// finish is the job's done: it releases the waiting sessions and the
// acknowledgements, and recycles the job. The acknowledgements are all of
// one connection: their waits are dropped first, and the connection sends
// what is ready once.
func (j *commitJob) finish(err error) {
	b := j.b
	b.release(j.waiters, err)
	j.batch.ReleaseMessages()
	var c *Conn
	ready := false
	for _, a := range j.acks {
		if err != nil {
			a.fail(err)
		}
		c = a.c // read before the decrement: a flush elsewhere may recycle a
		if a.waits.Add(-1) == 0 {
			ready = true
		}
	}
	j.recycle()
	if ready {
		c.flushAcks()
	}
}

func (j *commitJob) recycle() {
	clear(j.batch.Ops)
	clear(j.waiters)
	clear(j.acks)
	j.batch.Ops, j.waiters, j.acks = j.batch.Ops[:0], j.waiters[:0], j.acks[:0]
	j.retained = false
	if cap(j.batch.Ops) > 1024 {
		j.batch.Ops = nil // a big fan-out's buffer is not kept
	}
	if cap(j.waiters) > 256 {
		j.waiters = nil
	}
	if cap(j.acks) > maxBatchAcks {
		j.acks = nil
	}
	j.b = nil
	commitJobs.Put(j)
}

// jobFor returns the route's commit job, taking one when it has none.
func (rs *routeScratch) jobFor(b *Broker) *commitJob {
	if rs.job == nil {
		rs.job = b.newCommitJob()
	}
	return rs.job
}

// empty reports whether routing journaled nothing.
func (rs *routeScratch) empty() bool { return rs.job == nil || len(rs.job.batch.Ops) == 0 }

// size returns how many ops the route's batch holds.
func (rs *routeScratch) size() int {
	if rs.job == nil {
		return 0
	}
	return len(rs.job.batch.Ops)
}

// add puts ops into the route's batch (a retained message: no session
// waits for it).
func (rs *routeScratch) add(b *Broker, ops ...store.Op) {
	rs.jobFor(b).batch.Add(ops...)
}

// addSession moves what e's session journaled into the route's batch, and
// makes e wait for it. The caller holds e.mu.
func (rs *routeScratch) addSession(b *Broker, e *entry) {
	j := rs.jobFor(b)
	ops, span, ok := e.s.AppendOps(j.batch.Ops)
	if ok {
		j.batch.Ops = ops
		if n := len(j.waiters); n > 0 && j.waiters[n-1].e == e && j.waiters[n-1].span.Hi == span.Lo {
			j.waiters[n-1].span.Hi = span.Hi // the same session again (a batch of PUBLISHes)
			return
		}
		j.waiters = append(j.waiters, waiter{e, span})
	}
}

// takeJob hands over the route's job (the scratch starts afresh).
func (rs *routeScratch) takeJob(b *Broker) *commitJob {
	j := rs.jobFor(b)
	rs.job = nil
	return j
}

// dropJob lets go of a job with nothing to commit.
func (rs *routeScratch) dropJob() {
	if rs.job != nil {
		rs.job.recycle()
		rs.job = nil
	}
}

// dropEmptyJob lets go of the route's job if it holds nothing (no op, no
// acknowledgement): a job that a batch of PUBLISHes shares stays.
func (rs *routeScratch) dropEmptyJob() {
	if j := rs.job; j != nil && len(j.batch.Ops) == 0 && len(j.acks) == 0 {
		rs.dropJob()
	}
}

// commitRoute commits what a route's job holds: what a route of the
// broker's own (a will, $SYS) journaled, or the batch of PUBLISHes a
// connection's reader ends (Conn.Idle; a job holds acknowledgements only
// with ops).
func (b *Broker) commitRoute(rs *routeScratch) {
	if rs.empty() {
		rs.dropJob()
		return
	}
	rs.takeJob(b).commit()
}

// release tells each waiting session that its journal is durable and wakes
// its writer for the output that waited.
func (b *Broker) release(waiters []waiter, err error) {
	b.noteStoreError(err)
	for _, w := range waiters {
		w.e.mu.Lock()
		w.e.s.Committed(w.span)
		c := w.e.conn
		w.e.mu.Unlock()
		if c != nil {
			c.wakeUp()
		}
	}
}

// commitSession commits a session's journaled ops and then releases its
// held output. The caller holds no lock.
func (b *Broker) commitSession(e *entry, ops []store.Op, span session.Span) {
	if len(ops) == 0 {
		return
	}
	j := b.newCommitJob()
	j.batch.Ops = ops
	j.waiters = append(j.waiters, waiter{e, span})
	j.commit()
}

// commitOps commits ops that nothing waits for (a discarded session's).
func (b *Broker) commitOps(ops []store.Op) {
	j := b.newCommitJob()
	j.batch.Ops = ops
	j.commit()
}

// noteStoreError counts and logs a failed commit. The broker goes on: what
// waited is released (no acknowledgement promised durability for it: a
// publisher whose message was in the batch is refused).
func (b *Broker) noteStoreError(err error) {
	if err == nil {
		return
	}
	if b.stats.StoreErrors.Add(1)%1000 == 1 {
		b.log.Error("store commit failed", "err", err, "failures", b.stats.StoreErrors.Load())
	}
}

// storeFull reports whether the durable store is over its size limit. The
// size is sampled at most once a second: measuring it is not free.
func (b *Broker) storeFull() bool {
	if b.cfg.MaxStoreBytes == 0 {
		return false
	}
	u, ok := b.st.(interface{ DiskUsage() uint64 })
	if !ok {
		return false
	}
	now := b.env.Clock.Now().UnixNano()
	if at := b.usageAt.Load(); now-at > int64(time.Second) && b.usageAt.CompareAndSwap(at, now) {
		b.usage.Store(u.DiskUsage())
	}
	return b.usage.Load() > b.cfg.MaxStoreBytes
}

// Recover loads the durable state: sessions (offline, with their
// subscriptions, queues and QoS 2 state), retained messages, and the
// timers of pending wills and session expiry, counted from when each
// session went offline, the time the broker was down included. A session
// that was connected when the broker stopped counts as offline from now.
// Call it once, before the broker serves.
func (b *Broker) Recover() error {
	now := b.env.Clock.Now()
	r := &recovery{b: b, sessions: map[string]*entry{}}
	if err := b.st.Load(r); err != nil {
		return err
	}
	for _, key := range sortedKeys(r.sessions) {
		e := r.sessions[key]
		b.rearm(e, now)
	}
	return nil
}

// recovery is the store.Visitor that rebuilds the broker.
type recovery struct {
	b        *Broker
	sessions map[string]*entry // tenant 00 clientID
	last     *entry
	lastKey  string
}

func (r *recovery) entry(tenant, clientID string) *entry {
	key := tenant + "\x00" + clientID
	if key == r.lastKey {
		return r.last
	}
	r.last, r.lastKey = r.sessions[key], key
	return r.last
}

func (r *recovery) Session(tenant, clientID string, rec *store.SessionRecord) error {
	b := r.b
	t := b.acquireTenant(tenant)
	defer b.releaseTenant(t)
	e := b.newEntry(t, clientID)
	e.s = session.Restore(&b.tenantLimits(t).sess, e.id, tenant, clientID, rec)
	e.counted = true
	t.persistent.Add(1)
	t.regMu.Lock()
	t.sessions[clientID] = e
	t.regMu.Unlock()
	r.sessions[tenant+"\x00"+clientID] = e
	return nil
}

func (r *recovery) Sub(tenant, clientID, filter string, o topic.Options) error {
	e := r.entry(tenant, clientID)
	if e == nil {
		return nil // a subscription left from a session removed in the same crash window
	}
	e.s.RestoreSub(filter, o)
	e.t.routesMu.Lock()
	if !e.t.routes.Subscribe([]byte(filter), topic.Subscription{Subscriber: e.id, Options: o}) {
		r.b.routeAdded(e.t, filter)
	}
	e.t.routesMu.Unlock()
	return nil
}

func (r *recovery) Delivery(tenant, clientID string, d *store.DeliveryRecord) error {
	if e := r.entry(tenant, clientID); e != nil {
		e.s.RestoreDelivery(d)
	}
	return nil
}

func (r *recovery) Inbound(tenant, clientID string, pid uint16) error {
	if e := r.entry(tenant, clientID); e != nil {
		e.s.RestoreInbound(pid)
	}
	return nil
}

func (r *recovery) Retained(tenant string, m *message.Message) error {
	r.b.retained.Set(tenant, m)
	return nil
}

// rearm starts the will and expiry timers of a recovered session from the
// instant it went offline.
func (b *Broker) rearm(e *entry, now time.Time) {
	since := e.s.Offline()
	if since.IsZero() || since.After(now) {
		since = now
	}
	will, delay := e.s.Will()
	expire := e.s.ExpireAfter()
	var willIn time.Duration
	if will != nil {
		willIn = max(0, since.Add(time.Duration(delay)*time.Second).Sub(now))
		if expire != session.Forever {
			willIn = min(willIn, max(0, since.Add(expire).Sub(now)))
		}
	}
	expireIn := session.Forever
	if expire != session.Forever {
		expireIn = since.Add(expire).Sub(now)
		if expireIn <= 0 {
			// It expired while the broker was down: its will (if any) goes
			// with the end of the session.
			b.endSession(e, e.gen, will)
			return
		}
	}
	if will != nil && willIn == 0 {
		e.mu.Lock()
		e.s.WillPublished()
		ops, span := e.s.TakeOps()
		e.mu.Unlock()
		b.commitSession(e, ops, span)
		b.publishWill(e.t, will)
		will = nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if will != nil {
		gen := e.gen
		x := e.more()
		x.pendingWill = will
		x.willTimer = b.env.Clock.AfterFunc(willIn, func() { b.fireWill(e, gen, will) })
	}
	if expireIn != session.Forever {
		gen := e.gen
		e.more().expiryTimer = b.env.Clock.AfterFunc(expireIn, func() { b.endSession(e, gen, nil) })
	}
}

func sortedKeys(m map[string]*entry) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	return keys
}
