package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/skybridge-mq/skybridge/impl/env"
)

// Options configure a Pebble store.
type Options struct {
	// MaxPending bounds the batches waiting for the committer; beyond it
	// Commit fails at once with ErrBusy.
	MaxPending int
	// DisableCompactions turns off Pebble's automatic compactions: the
	// simulator uses it so that no background work of Pebble's can change
	// what a run observes.
	DisableCompactions bool
	// MinFreeBytes is the free space the disk must keep: below it commits
	// fail with ErrDiskFull instead of running into a full disk, which
	// Pebble cannot survive. 0: 64 MiB.
	MinFreeBytes uint64
	// Logger receives a line for each record Load quarantines; nil: none.
	Logger *slog.Logger
}

// ErrDiskFull is the error of a commit refused because the disk is nearly full.
var ErrDiskFull = errors.New("store: disk nearly full")

// ErrBusy is the error of a Commit refused because the commit queue is full.
var ErrBusy = errors.New("store: commit queue full")

// ErrClosed is the error of a Commit after Close.
var ErrClosed = errors.New("store: closed")

// Pebble is a Store on Pebble. Commits are applied by Step, which the
// runtime calls in a loop (Run) and the simulator calls as an event.
type Pebble struct {
	db   *pebble.DB
	lock *pebble.Lock // the directory's lock, released after the database closes
	fs   vfs.FS
	dir  string
	opts Options

	mu      sync.Mutex
	pending []pendingBatch
	closed  bool
	wake    chan struct{} // sent to and closed under mu
	running bool          // Run was started; it closes runDone when it returns
	runDone chan struct{}
	// stepMu serialises Step: Run and Close may both call it.
	stepMu sync.Mutex
	// fatal is set when Pebble hit an error it cannot continue after (a
	// failed WAL write): every later commit fails with it.
	fatal error
	// steps counts groups, to sample the free disk space now and then.
	steps int
	avail uint64
	// group numbers the groups, for findCancelled's marks.
	group uint64

	// Stats
	commits   atomic.Uint64 // Pebble batches synced (groups)
	batches   atomic.Uint64 // broker batches committed
	failed    atomic.Uint64 // batches whose commit failed
	busy      atomic.Uint64 // batches refused with ErrBusy
	cancelled atomic.Uint64 // ops never written: a fresh delivery done within its group
	// quarantined counts the records Load could not read and moved aside.
	quarantined atomic.Uint64
	key, val    []byte   // scratch of applyOp (Step runs one at a time)
	run         removals // apply's open run of removals
}

type pendingBatch struct {
	b    *Batch
	done func(error)
}

// findCancelled marks (Op.skip) the ops of deliveries created and completed
// within one group commit: a subscriber that acknowledged a QoS 1 message
// before its queue entry reached the disk leaves nothing to write. Ops of
// one entry share its *DeliveryRecord, which carries the mark of its fresh
// put (the group and the op) — no map: maps, even reused, were a good part
// of the committer's time. apply clears every mark it meets.
func (p *Pebble) findCancelled(group []pendingBatch) {
	p.group++
	stamp := p.group
	for gi := range group {
		ops := group[gi].b.Ops
		for i := range ops {
			op := &ops[i]
			switch r := op.Delivery; {
			case op.Kind == PutDelivery && op.Fresh:
				r.group, r.put = stamp, op
			case op.Kind == DeleteDelivery && r != nil && r.group == stamp && r.put != nil:
				r.put.skip, op.skip = true, true
				r.put = nil
			}
		}
	}
}

// clearMarks clears what findCancelled marked, for a group apply gave up on.
func clearMarks(group []pendingBatch) {
	for gi := range group {
		ops := group[gi].b.Ops
		for i := range ops {
			ops[i].skip = false
			if ops[i].Kind == PutDelivery && ops[i].Delivery != nil {
				ops[i].Delivery.put = nil
			}
		}
	}
}

// quietLogger drops Pebble's informational chatter; errors still surface
// through the errors Pebble returns. Fatalf must not return (Pebble goes on
// as if the process had ended): it panics with a fatalError, which Step
// turns into a stopped store instead of a crashed broker.
type quietLogger struct{}

type fatalError struct{ msg string }

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fatalError{fmt.Sprintf(format, args...)})
}

// ErrNotAStore is the error of Open on a non-empty directory that holds no
// Pebble database: it is somebody else's, and the store writes nothing
// into it.
var ErrNotAStore = errors.New("not a Skybridge store")

// Open opens (creating if needed) the store in dir on fs. A directory in
// use by another process (or already open in this one) is refused as such;
// a non-empty directory without a Pebble database with ErrNotAStore, before
// anything is written into it; one written by an incompatible version with
// ErrFormat; a damaged one with the error Pebble reports. Each names the
// directory.
func Open(fs vfs.FS, dir string, opts Options) (*Pebble, error) {
	if opts.MaxPending <= 0 {
		opts.MaxPending = 1 << 16
	}
	if opts.MinFreeBytes == 0 {
		opts.MinFreeBytes = 64 << 20
	}
	// The entries leading to the directory are synced too: Pebble syncs
	// only its own, and a store made just before a power loss would
	// otherwise vanish whole, acknowledged messages with it.
	if err := env.MkdirAllDurable(fs, dir); err != nil {
		return nil, fmt.Errorf("store %s: %w", dir, err)
	}
	if err := checkDirectory(fs, dir); err != nil {
		return nil, err
	}
	lock, err := pebble.LockDirectory(dir, fs)
	if err != nil {
		return nil, lockError(dir, err)
	}
	po := &pebble.Options{FS: fs, Logger: quietLogger{}, DisableAutomaticCompactions: opts.DisableCompactions, Lock: lock}
	db, err := pebble.Open(dir, po)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("store %s: cannot open (%w); if the directory was damaged, move it aside to start empty", dir, err)
	}
	p := &Pebble{db: db, lock: lock, fs: fs, dir: dir, opts: opts, wake: make(chan struct{}, 1), runDone: make(chan struct{})}
	if err := p.checkFormat(); err != nil {
		db.Close()
		lock.Close()
		return nil, err
	}
	return p, nil
}

// lockError explains a failure to take the directory's lock: Pebble locks
// its LOCK file (fcntl on Unix), so a store running in another process
// holds it. A failure to create the file at all is reported as it is.
func lockError(dir string, err error) error {
	var pe *fs.PathError
	switch {
	case errors.As(err, &pe):
		return fmt.Errorf("store %s: cannot create its lock file: %w", dir, err)
	case strings.Contains(err.Error(), "held by current process"):
		return fmt.Errorf("store %s: already open in this process (%v)", dir, err)
	}
	return fmt.Errorf("store %s: in use by another process (its LOCK file is locked: %v); stop that process, or give this one another directory", dir, err)
}

// checkDirectory refuses a non-empty directory that holds no Pebble files
// (lost+found, which a file system puts at its root, does not count).
func checkDirectory(fs vfs.FS, dir string) error {
	names, err := fs.List(dir)
	if err != nil {
		return fmt.Errorf("store %s: %w", dir, err)
	}
	var foreign []string
	for _, n := range names {
		if isPebbleFile(n) {
			return nil
		}
		if n != "lost+found" {
			foreign = append(foreign, n)
		}
	}
	if len(foreign) == 0 {
		return nil
	}
	slices.Sort(foreign)
	const show = 5
	list := strings.Join(foreign[:min(len(foreign), show)], ", ")
	if len(foreign) > show {
		list += fmt.Sprintf(" and %d more", len(foreign)-show)
	}
	return fmt.Errorf("store %s: %w: the directory is not empty and holds no database (%s); give the store an empty or new directory", dir, ErrNotAStore, list)
}

// isPebbleFile reports whether name is one of the files only a Pebble
// database has (an empty database already has all but the tables).
func isPebbleFile(name string) bool {
	return name == "CURRENT" || name == "LOCK" || strings.HasPrefix(name, "MANIFEST-") ||
		strings.HasPrefix(name, "OPTIONS-") || strings.HasPrefix(name, "marker.")
}

func (p *Pebble) checkFormat() error {
	if err := CheckFormat(p.db, formatVersion); err != nil {
		return fmt.Errorf("store %s: %w; use the Skybridge version that wrote it, or move the directory aside to start empty", p.dir, err)
	}
	return nil
}

// CheckFormat checks the format marker of a Skybridge Pebble database (the
// key "\x00format", holding version), writing it into an empty one. A
// database without it that is not empty, or with another version, is
// refused with ErrFormat, saying what was found. The broker's store and the
// bridge's queue share it; each names its directory and what to do.
func CheckFormat(db *pebble.DB, version string) error {
	v, closer, err := db.Get(formatKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		it, err := db.NewIter(nil)
		if err != nil {
			return err
		}
		empty := !it.First()
		it.Close()
		if !empty {
			return fmt.Errorf("%w: no format marker in a non-empty database: it is not a %s", ErrFormat, version)
		}
		return db.Set(formatKey, []byte(version), pebble.Sync)
	case err != nil:
		return err
	}
	defer closer.Close()
	if string(v) != version {
		return fmt.Errorf("%w: found %q, this Skybridge reads %q", ErrFormat, v, version)
	}
	return nil
}

// Commit implements Store.
func (p *Pebble) Commit(b *Batch, done func(error)) {
	p.mu.Lock()
	switch {
	case p.fatal != nil:
		err := p.fatal
		p.mu.Unlock()
		if done != nil {
			done(err)
		}
		return
	case p.closed:
		p.mu.Unlock()
		if done != nil {
			done(ErrClosed)
		}
		return
	case len(p.pending) >= p.opts.MaxPending:
		p.mu.Unlock()
		p.busy.Add(1)
		if done != nil {
			done(ErrBusy)
		}
		return
	}
	p.pending = append(p.pending, pendingBatch{b, done})
	select {
	case p.wake <- struct{}{}:
	default:
	}
	p.mu.Unlock()
}

// Pending returns the number of batches waiting to be committed.
func (p *Pebble) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}

// Step commits every waiting batch as one synced Pebble batch (the group
// commit) and calls their done functions in order. It returns how many
// batches it committed.
func (p *Pebble) Step() int {
	p.stepMu.Lock()
	defer p.stepMu.Unlock()
	p.mu.Lock()
	group := p.pending
	p.pending = nil
	fatal := p.fatal
	p.mu.Unlock()
	if len(group) == 0 {
		return 0
	}
	if fatal != nil {
		p.finish(group, fatal)
		return len(group)
	}
	if err := p.checkSpace(); err != nil {
		p.finish(group, err)
		return len(group)
	}
	p.finish(group, p.apply(group))
	return len(group)
}

// checkSpace refuses commits when the disk is nearly full. The free space
// is sampled every 64 groups: asking the file system is not free.
func (p *Pebble) checkSpace() error {
	if p.steps%64 == 0 {
		if u, err := p.fs.GetDiskUsage(p.dir); err == nil {
			p.avail = u.AvailBytes
		} else {
			p.avail = 0 // unknown: do not refuse
		}
	}
	p.steps++
	if p.avail != 0 && p.avail < p.opts.MinFreeBytes {
		p.steps = 0 // look again next time: space may come back
		return fmt.Errorf("store %s: %w: %d bytes free, below the %d kept in reserve; free disk space or move the data directory",
			p.dir, ErrDiskFull, p.avail, p.opts.MinFreeBytes)
	}
	return nil
}

// apply writes a group; a fatal Pebble error stops the store.
func (p *Pebble) apply(group []pendingBatch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			fe, ok := r.(fatalError)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("store %s: stopped after a fatal write error (%s): nothing more is written; fix the disk and restart", p.dir, fe.msg)
			p.mu.Lock()
			p.fatal = err
			p.mu.Unlock()
		}
	}()
	p.findCancelled(group)
	pb := p.db.NewBatch()
	defer pb.Close()
	run := &p.run
	*run = removals{}
	for _, g := range group {
		ops := g.b.Ops
		for i := range ops {
			op := &ops[i]
			skip := op.skip
			op.skip = false
			r := op.Delivery
			if r != nil && op.Kind == PutDelivery {
				r.put = nil              // the mark must not keep the batch alive
				skip = skip || r.removed // its removal came first (DeliveryRecord.removed)
			}
			if op.Epoch.Ended() && op.Kind != DeleteSession {
				p.cancelled.Add(1) // its incarnation's removal came first (Op.Epoch)
				continue
			}
			if run.open && run.ends(op) {
				if err := p.flushRemovals(pb); err != nil {
					clearMarks(group)
					return err
				}
			}
			switch op.Kind {
			case DeleteSession:
				if op.Epoch != nil {
					op.Epoch.ended = true
				}
			case DeleteDelivery:
				if r != nil {
					r.removed = true
				}
				run.add(op, skip)
				if skip {
					p.cancelled.Add(1)
				}
				continue
			}
			if skip {
				p.cancelled.Add(1)
				continue
			}
			if err := p.applyOp(pb, op); err != nil {
				clearMarks(group)
				return err
			}
		}
	}
	if err := p.flushRemovals(pb); err != nil {
		return err
	}
	if err := pb.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("store %s: %w", p.dir, err)
	}
	return nil
}

// removals is a run of removals of consecutive queue entries of one
// session, gathered across a group and written as one deletion (a range
// deletion from the first entry's key to the one after the last): a
// subscriber acknowledging a stream in order makes such runs, one per
// batch of PUBACKs, and a group holds many of them. One entry in the
// memtable and the log for the run instead of one per message, and far
// fewer range tombstones for compactions to carry.
//
// The deletion is written when the run ends, after some of its members'
// positions in the group. That is the same as writing each in its place
// because nothing else of the session's comes between: any other op of
// the session ends the run first, except a put of a later entry (outside
// the range). A put of an entry inside it would come after the entry's
// removal, and is not written anyway (DeliveryRecord.removed). Members
// skipped with their puts (findCancelled) fall inside harmlessly; a run
// wholly skipped writes nothing.
type removals struct {
	tenant, clientID string
	first, last      uint64
	written          int // members not skipped
	open             bool
}

// ends reports whether op ends the open run: the removal of another
// session's entry, or any op of the run's session but the removal of the
// next entry (which extends the run) and the put of a later one.
func (r *removals) ends(op *Op) bool {
	if op.ClientID != r.clientID || op.Tenant != r.tenant {
		return op.Kind == DeleteDelivery
	}
	switch op.Kind {
	case DeleteDelivery:
		return op.Seq != r.last+1 || r.last == math.MaxUint64
	case PutDelivery:
		return op.Delivery == nil || op.Delivery.Seq <= r.last
	}
	return true
}

// add adds a removal to the run, opening one if none is; skipped: it is
// not written (findCancelled), though the range may cover it.
func (r *removals) add(op *Op, skipped bool) {
	if !r.open {
		*r = removals{tenant: op.Tenant, clientID: op.ClientID, first: op.Seq, open: true}
	}
	r.last = op.Seq
	if !skipped {
		r.written++
	}
}

// flushRemovals writes the open run of removals, if any, and closes it.
func (p *Pebble) flushRemovals(pb *pebble.Batch) error {
	r := &p.run
	if !r.open {
		return nil
	}
	r.open = false
	if r.written == 0 {
		return nil
	}
	k := deliveryKey(p.key[:0], r.tenant, r.clientID, r.first)
	if r.first == r.last {
		p.key = k[:0]
		return pb.Delete(k, nil)
	}
	end := deliveryKey(p.val[:0], r.tenant, r.clientID, r.last+1)
	p.key, p.val = k[:0], end[:0]
	return pb.DeleteRange(k, end, nil)
}

// Err returns the error that stopped the store, if one did.
func (p *Pebble) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fatal
}

func (p *Pebble) finish(group []pendingBatch, err error) {
	p.commits.Add(1)
	p.batches.Add(uint64(len(group)))
	if err != nil {
		p.failed.Add(uint64(len(group)))
	}
	for _, g := range group {
		if g.done != nil {
			g.done(err)
		}
	}
}

// Run commits batches as they arrive until Close. The runtime calls it on
// a goroutine of its own.
func (p *Pebble) Run() {
	p.mu.Lock()
	if p.closed || p.running {
		p.mu.Unlock()
		return
	}
	p.running = true
	p.mu.Unlock()
	defer close(p.runDone)
	for range p.wake {
		p.Step()
		p.mu.Lock()
		closed := p.closed && len(p.pending) == 0
		p.mu.Unlock()
		if closed {
			return
		}
	}
}

// Stats returns counters: synced groups, batches committed, batches whose
// commit failed, batches refused because the queue was full.
func (p *Pebble) Stats() (groups, batches, failed, busy uint64) {
	return p.commits.Load(), p.batches.Load(), p.failed.Load(), p.busy.Load()
}

// Cancelled returns how many ops were never written because a delivery was
// created and completed within one group commit.
func (p *Pebble) Cancelled() uint64 { return p.cancelled.Load() }

// DiskUsage returns the bytes the store occupies on its file system.
func (p *Pebble) DiskUsage() uint64 { return p.db.Metrics().DiskSpaceUsage() }

// Close commits what is waiting, stops Run and closes the database.
func (p *Pebble) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	fatal := p.fatal
	p.mu.Unlock()
	p.Step()
	p.mu.Lock()
	close(p.wake)
	running := p.running
	p.mu.Unlock()
	if running {
		<-p.runDone // Run's last Step is over before the database closes
	}
	if fatal != nil {
		return fatal // Pebble cannot be closed cleanly after a fatal error
	}
	err := p.db.Close()
	if lerr := p.lock.Close(); err == nil {
		err = lerr
	}
	return err
}

// applyOp adds op to pb. Keys and values are built in the store's scratch
// buffers: a Pebble batch copies what it is given.
func (p *Pebble) applyOp(pb *pebble.Batch, op *Op) error {
	k, v := p.key[:0], p.val[:0]
	defer func() { p.key, p.val = k[:0], v[:0] }()
	switch op.Kind {
	case PutSession:
		k, v = sessionKey(k, op.Tenant, op.ClientID), encodeSession(v, op.Session)
		return pb.Set(k, v, nil)
	case DeleteSession:
		k = sessionPrefix(k, op.Tenant, op.ClientID)
		v = append(append(v, k[:len(k)-1]...), 1) // the next client id
		return pb.DeleteRange(k, v, nil)
	case PutSub:
		k, v = subKey(k, op.Tenant, op.ClientID, op.Filter), encodeOptions(v, op.Options)
		return pb.Set(k, v, nil)
	case DeleteSub:
		k = subKey(k, op.Tenant, op.ClientID, op.Filter)
		return pb.Delete(k, nil)
	case PutDelivery:
		k, v = deliveryKey(k, op.Tenant, op.ClientID, op.Delivery.Seq), encodeDelivery(v, op.Delivery)
		return pb.Set(k, v, nil)
	case DeleteDelivery:
		k = deliveryKey(k, op.Tenant, op.ClientID, op.Seq)
		return pb.Delete(k, nil)
	case PutInbound:
		k = inboundKey(k, op.Tenant, op.ClientID, op.PID)
		return pb.Set(k, nil, nil)
	case DeleteInbound:
		k = inboundKey(k, op.Tenant, op.ClientID, op.PID)
		return pb.Delete(k, nil)
	case PutRetained:
		k, v = retainedKey(k, op.Tenant, op.Message.Topic), encodeRetained(v, op.Message)
		return pb.Set(k, v, nil)
	case DeleteRetained:
		k = retainedKey(k, op.Tenant, op.Message.Topic)
		return pb.Delete(k, nil)
	}
	return fmt.Errorf("store: unknown op kind %d", op.Kind)
}

// quarantinePrefix starts the key under which Load keeps a record it could
// not read: the original key follows, the value is kept as it was.
const quarantinePrefix = 'q'

// maxQuarantineLines bounds the log lines of one Load; the count says the rest.
const maxQuarantineLines = 20

// Load implements Store. A record it cannot read (ErrCorrupt: a damaged
// value, a key no version wrote) does not stop the broker from starting:
// it is moved under the quarantine prefix, logged and counted
// (Quarantined), and the rest loads. Other errors (the disk's) end Load.
func (p *Pebble) Load(v Visitor) error {
	it, err := p.db.NewIter(nil)
	if err != nil {
		return fmt.Errorf("store %s: %w", p.dir, err)
	}
	type record struct {
		k, v []byte
		err  error
	}
	var bad []record
	// A session's records follow its session record (kind 01 sorts
	// first): records under a prefix whose session record is missing or
	// went to quarantine are orphans, quarantined too, so that a new
	// session of the same client never inherits them.
	var session []byte // the prefix of the last session record loaded
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if bytes.Equal(k, formatKey) || len(k) > 0 && k[0] == quarantinePrefix {
			continue
		}
		pk, err := parseKey(k)
		if err == nil && !pk.retained {
			prefix := k[:len(k)-len(pk.rest)-1]
			switch {
			case pk.kind == kindSession:
				session = session[:0]
				if err = p.visit(v, pk, bytes.Clone(it.Value())); err == nil {
					session = append(session, prefix...)
				}
			case len(session) == 0 || !bytes.Equal(prefix, session):
				err = fmt.Errorf("%w: orphan: its session record is missing or unreadable", ErrCorrupt)
			default:
				err = p.visit(v, pk, bytes.Clone(it.Value()))
			}
		} else if err == nil {
			err = p.visit(v, pk, bytes.Clone(it.Value()))
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				it.Close()
				return fmt.Errorf("store %s: key %q: %w", p.dir, k, err)
			}
			bad = append(bad, record{bytes.Clone(k), bytes.Clone(it.Value()), err})
		}
	}
	err = it.Error()
	it.Close()
	if err != nil {
		return fmt.Errorf("store %s: %w", p.dir, err)
	}
	if len(bad) == 0 {
		return nil
	}
	b := p.db.NewBatch()
	defer b.Close()
	for i, r := range bad {
		if err := b.Set(append([]byte{quarantinePrefix}, r.k...), r.v, nil); err != nil {
			return fmt.Errorf("store %s: quarantine: %w", p.dir, err)
		}
		if err := b.Delete(r.k, nil); err != nil {
			return fmt.Errorf("store %s: quarantine: %w", p.dir, err)
		}
		if l := p.opts.Logger; l != nil && i < maxQuarantineLines {
			l.Error("store: unreadable record quarantined", "dir", p.dir, "key", fmt.Sprintf("%q", r.k), "error", r.err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("store %s: quarantine: %w", p.dir, err)
	}
	p.quarantined.Add(uint64(len(bad)))
	if l := p.opts.Logger; l != nil {
		l.Error("store: records quarantined at start; the broker runs without them",
			"dir", p.dir, "count", len(bad), "key_prefix", string(rune(quarantinePrefix)))
	}
	return nil
}

// Quarantined returns the number of records Load moved aside because it
// could not read them.
func (p *Pebble) Quarantined() uint64 { return p.quarantined.Load() }

func (p *Pebble) visit(v Visitor, pk key, val []byte) error {
	if pk.retained {
		m, err := decodeRetained(val)
		if err != nil {
			return err
		}
		m.Topic = bytes.Clone(pk.rest)
		return v.Retained(pk.tenant, m)
	}
	switch pk.kind {
	case kindSession:
		r, err := decodeSession(val)
		if err != nil {
			return err
		}
		return v.Session(pk.tenant, pk.clientID, r)
	case kindInbound:
		if len(pk.rest) != 2 {
			return fmt.Errorf("%w: inbound key", ErrCorrupt)
		}
		return v.Inbound(pk.tenant, pk.clientID, binary.BigEndian.Uint16(pk.rest))
	case kindDelivery:
		if len(pk.rest) != 8 {
			return fmt.Errorf("%w: delivery key", ErrCorrupt)
		}
		r, err := decodeDelivery(binary.BigEndian.Uint64(pk.rest), val)
		if err != nil {
			return err
		}
		return v.Delivery(pk.tenant, pk.clientID, r)
	case kindSub:
		o, err := decodeOptions(val)
		if err != nil {
			return err
		}
		return v.Sub(pk.tenant, pk.clientID, string(pk.rest), o)
	}
	return fmt.Errorf("%w: record kind %d", ErrCorrupt, pk.kind)
}
