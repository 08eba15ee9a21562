package sim

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/store"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// The durable broker: its store (impl/store on Pebble) lives on a crashable
// in-memory disk of the broker's host, and the simulator is its committer.
//
// Every Commit of the broker goes through durableStore, which hands the
// batch to the real store and, if no commit is scheduled, schedules one
// after a simulated fsync latency drawn from the seed; batches that arrive
// meanwhile join the same group commit (store.Pebble.Step, called only from
// that event, never Run). A batch whose done ran is synced; a batch still
// waiting when the power fails is lost.
//
// durableStore also keeps the shadow: the logical content of the disk, as
// the ops of the batches whose commit completed, applied in commit order.
// After a power loss the shadow is exactly what the restarted broker must
// find (Recover), and the oracle checks both the promises (what a client
// was told is durable must be in it) and the recovery (the restarted
// broker must hold exactly it).

// durableStore is the store.Store the simulated broker commits to.
type durableStore struct {
	p     *BrokerProc
	inner *store.Pebble
	dead  bool // the process lost power: nothing more reaches the broker or the shadow
	ev    *Event
	// submitted counts the batches handed to Commit; recent are those not
	// yet committed, for the oracle to tag (bsess).
	submitted uint64
	recent    []*pbatch
	// stalledUntil: a disk fault holds every fsync until then.
	stalledUntil time.Time
}

// pbatch is one batch of the broker on its way to the disk.
type pbatch struct {
	b   *store.Batch
	idx uint64
	// tag is the broker session whose creation this batch's PutSession for
	// tagKey records (set by the oracle after the CONNECT was handled).
	tag    *bsess
	tagKey string
}

func newDurableStore(p *BrokerProc, inner *store.Pebble) *durableStore {
	return &durableStore{p: p, inner: inner}
}

// Commit implements store.Store.
func (d *durableStore) Commit(b *store.Batch, done func(error)) {
	if d.dead {
		return // the process is gone: nobody waits
	}
	pb := &pbatch{b: b, idx: d.submitted}
	d.submitted++
	d.recent = append(d.recent, pb)
	d.inner.Commit(b, func(err error) {
		if d.dead {
			return
		}
		if err == nil {
			d.p.shadow.apply(pb, d.p.w.Oracle)
		} else {
			d.p.Stats.StoreErrors++
		}
		if done != nil {
			done(err)
		}
	})
	d.schedule()
}

// schedule arms the next group commit, one fsync latency from now.
func (d *durableStore) schedule() {
	if d.ev != nil || d.dead {
		return
	}
	s := d.p.w.Sim
	spec := &d.p.Spec
	delay := s.Uniform(spec.FsyncMin, spec.FsyncMax)
	if now := s.Now(); now.Before(d.stalledUntil) {
		delay += d.stalledUntil.Sub(now) // the disk answers when the stall ends
	}
	d.ev = s.After(delay, d.step)
}

// stall makes every group commit until the given instant wait for it (a
// commit already scheduled is pushed back too: its fsync is what hangs).
// Batches keep arriving and join the group commit that ends the stall.
func (d *durableStore) stall(until time.Time) {
	if until.After(d.stalledUntil) {
		d.stalledUntil = until
	}
	if d.ev != nil {
		d.p.w.Sim.Cancel(d.ev)
		d.ev = nil
		d.schedule()
	}
}

// step is the group commit: everything waiting is written as one synced
// Pebble batch and the broker's callbacks run, in order. Batches the
// callbacks submit wait for the next one.
func (d *durableStore) step() {
	d.ev = nil
	if d.dead {
		return
	}
	d.recent = d.recent[:0]
	n := d.inner.Step()
	d.p.Stats.Commits++
	d.p.Stats.Batches += uint64(n)
	d.p.w.Sim.Note(KindCommit, d.p.Host.ID, 0, fmt.Sprint(n))
}

// Load implements store.Store.
func (d *durableStore) Load(v store.Visitor) error { return d.inner.Load(v) }

// Close implements store.Store (the broker never calls it in the simulator).
func (d *durableStore) Close() error { return d.inner.Close() }

// kill cuts the power: pending batches are lost, no callback runs again.
func (d *durableStore) kill() {
	d.dead = true
	d.p.w.Sim.Cancel(d.ev)
	d.ev = nil
	d.recent = nil
}

// tagCreation records that the batches submitted since from hold the
// creation of broker session bs: their PutSession of its key belongs to it.
func (d *durableStore) tagCreation(from uint64, key string, bs *bsess) {
	for _, pb := range d.recent {
		if pb.idx < from {
			continue
		}
		for i := range pb.b.Ops {
			op := &pb.b.Ops[i]
			if op.Kind == store.PutSession && op.Tenant+"\x00"+op.ClientID == key {
				pb.tag, pb.tagKey = bs, key
				break
			}
		}
	}
}

// --- The shadow: the logical content of the disk. ---

type shadow struct {
	sess     map[string]*shadowSess // tenant 00 clientID
	retained map[string]uint64      // tenant 00 topic → message id (payloadID)
}

// shadowSess is what the disk holds under one session's prefix. rec is nil
// when the session record is missing (the restarted broker then ignores
// the rest, as Recover does).
type shadowSess struct {
	rec     *store.SessionRecord
	bs      *bsess // the broker session the record belongs to
	subs    map[string]topic.Options
	deliv   map[uint64]*store.DeliveryRecord
	inbound map[uint16]bool
}

func newShadow() *shadow {
	return &shadow{sess: map[string]*shadowSess{}, retained: map[string]uint64{}}
}

func (sh *shadow) get(key string) *shadowSess {
	ss := sh.sess[key]
	if ss == nil {
		ss = &shadowSess{subs: map[string]topic.Options{}, deliv: map[uint64]*store.DeliveryRecord{}, inbound: map[uint16]bool{}}
		sh.sess[key] = ss
	}
	return ss
}

// apply applies a committed batch, op by op, as Pebble does (a
// DeleteSession is a range deletion of the session's prefix).
func (sh *shadow) apply(pb *pbatch, o *Oracle) {
	for i := range pb.b.Ops {
		op := &pb.b.Ops[i]
		if op.Epoch.Ended() && op.Kind != store.DeleteSession {
			continue // the store skips the ops of an ended incarnation too
		}
		key := op.Tenant + "\x00" + op.ClientID
		switch op.Kind {
		case store.PutSession:
			ss := sh.get(key)
			switch {
			case pb.tag != nil && pb.tagKey == key:
				ss.bs = pb.tag
			case ss.rec == nil && o != nil:
				ss.bs = o.bsCur[key]
			}
			ss.rec = op.Session
		case store.DeleteSession:
			delete(sh.sess, key)
		case store.PutSub:
			sh.get(key).subs[op.Filter] = op.Options
		case store.DeleteSub:
			if ss := sh.sess[key]; ss != nil {
				delete(ss.subs, op.Filter)
			}
		case store.PutDelivery:
			if op.Delivery.Removed() {
				continue // its removal was written first: the store skips it too
			}
			// A copy: the broker's record gives its message back to a
			// pool once the batch is committed.
			r := *op.Delivery
			r.Msg = r.Msg.Uncounted()
			sh.get(key).deliv[r.Seq] = &r
		case store.DeleteDelivery:
			if ss := sh.sess[key]; ss != nil {
				delete(ss.deliv, op.Seq)
			}
		case store.PutInbound:
			sh.get(key).inbound[op.PID] = true
		case store.DeleteInbound:
			if ss := sh.sess[key]; ss != nil {
				delete(ss.inbound, op.PID)
			}
		case store.PutRetained:
			id, _ := payloadID(op.Message.Payload)
			sh.retained[op.Tenant+"\x00"+string(op.Message.Topic)] = id
		case store.DeleteRetained:
			delete(sh.retained, op.Tenant+"\x00"+string(op.Message.Topic))
		}
	}
}

// --- The process side: open, power loss, restart. ---

// storeOptions are the simulator's: no automatic compaction (no
// background work of Pebble's may matter to a run).
var storeOptions = store.Options{DisableCompactions: true}

// maxTables is how many sstables the disk may hold before a restart
// compacts it (compactDisk).
const maxTables = 6

// openStore opens the store on the host's disk and wraps it. A failure is
// a finding (Pebble could not reopen what it synced).
func (p *BrokerProc) openStore() (*durableStore, error) {
	if p.disk == nil {
		p.disk = vfs.NewCrashableMem()
		p.shadow = newShadow()
	}
	if tables(p.disk) >= maxTables {
		st, err := p.compactDisk()
		if err != nil {
			return nil, err
		}
		return newDurableStore(p, st), nil
	}
	st, err := store.Open(p.disk, "data", storeOptions)
	if err != nil {
		return nil, err
	}
	return newDurableStore(p, st), nil
}

// tables counts the sstables on the disk.
func tables(fs vfs.FS) int {
	names, _ := fs.List("data")
	n := 0
	for _, name := range names {
		if strings.HasSuffix(name, ".sst") {
			n++
		}
	}
	return n
}

// compactDisk stands in for the compaction Pebble never runs here. With
// automatic compactions off, every open flushes the replayed WAL into one
// more L0 table over the same keys; at L0StopWritesThreshold (12) read
// amplification Pebble stops all writes until a compaction that never
// comes, and Step would block forever (pebble db.go maybeInduceWriteStall).
// So, at a restart, when the disk holds maxTables tables, the simulator
// opens the crashed store (Pebble's recovery runs as usual), reads its
// logical content and writes it, as one synced batch, into a store on a
// fresh disk, which the broker then opens: same content, one memtable.
func (p *BrokerProc) compactDisk() (*store.Pebble, error) {
	old, err := store.Open(p.disk, "data", storeOptions)
	if err != nil {
		return nil, err
	}
	var c copier
	err = old.Load(&c)
	_ = old.Close()
	if err != nil {
		return nil, err
	}
	fresh := vfs.NewCrashableMem()
	st, err := store.Open(fresh, "data", storeOptions)
	if err != nil {
		return nil, err
	}
	var cerr error
	st.Commit(&store.Batch{Ops: c.ops}, func(err error) { cerr = err })
	st.Step()
	if cerr != nil {
		_ = st.Close()
		return nil, cerr
	}
	p.disk = fresh
	p.Stats.Compactions++
	return st, nil
}

// copier turns the stored state back into the ops that write it.
type copier struct{ ops []store.Op }

func (c *copier) Session(tenant, clientID string, r *store.SessionRecord) error {
	c.ops = append(c.ops, store.Op{Kind: store.PutSession, Tenant: tenant, ClientID: clientID, Session: r})
	return nil
}

func (c *copier) Sub(tenant, clientID, filter string, o topic.Options) error {
	c.ops = append(c.ops, store.Op{Kind: store.PutSub, Tenant: tenant, ClientID: clientID, Filter: filter, Options: o})
	return nil
}

func (c *copier) Delivery(tenant, clientID string, d *store.DeliveryRecord) error {
	c.ops = append(c.ops, store.Op{Kind: store.PutDelivery, Tenant: tenant, ClientID: clientID, Delivery: d})
	return nil
}

func (c *copier) Inbound(tenant, clientID string, pid uint16) error {
	c.ops = append(c.ops, store.Op{Kind: store.PutInbound, Tenant: tenant, ClientID: clientID, PID: pid})
	return nil
}

func (c *copier) Retained(tenant string, m *message.Message) error {
	c.ops = append(c.ops, store.Op{Kind: store.PutRetained, Tenant: tenant, Message: m})
	return nil
}

// powerLoss keeps what the disk synced: a crash clone in which each
// unsynced block or directory entry survives with a probability drawn
// from the seed (0 for half the crashes). The old store is closed without
// its callbacks reaching anyone (its Close may still write to the old
// disk, which nobody reads again).
func (p *BrokerProc) powerLoss() {
	s := p.w.Sim
	d := p.ds
	d.kill()
	pct := 0
	if s.Chance(0.5) {
		pct = 1 + s.Rand.IntN(100)
	}
	rng := rand.New(rand.NewPCG(s.Rand.Uint64(), s.Rand.Uint64()))
	clone := p.disk.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rng})
	p.Stats.LastUnsynced = pct
	p.Stats.PowerLosses++
	if pct > 0 {
		p.Stats.Unsynced++
	}
	_ = d.inner.Close()
	p.disk = clone
	p.ds = nil
}

// closeStore releases the store at the end of a run (Pebble's goroutines
// and memory); nothing runs afterwards.
func (p *BrokerProc) closeStore() {
	if p.ds != nil {
		p.ds.kill()
		_ = p.ds.inner.Close()
		p.ds = nil
	}
}

var _ store.Store = (*durableStore)(nil)

// since returns the instant a recovered session counts as offline from.
func recoveredSince(rec *store.SessionRecord, now time.Time) time.Time {
	if rec.OfflineSince.IsZero() || rec.OfflineSince.After(now) {
		return now
	}
	return rec.OfflineSince
}
