package bridge

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/skybridge-mq/skybridge/impl/store"
)

// The queue of one bridge: a Pebble database holding both directions.
//
//	00 "format"         "skybridge-bridge-queue/1"
//	'o' seq(8, BE)      a message waiting to go local → remote
//	'i' seq(8, BE)      a message waiting to go remote → local
//
// Appends are group-committed: the committer writes everything waiting as
// one synced batch and then calls the appends' done functions in order.
// Deletions (a message acknowledged by the other side, or dropped) ride
// along unsynced: losing one after a crash only sends a message again.
// Memory holds 16 bytes per queued message (its sequence number and
// size), never the messages themselves; the forwarder reads them back in
// batches (from Pebble's memtable while they are fresh).

const queueFormat = "skybridge-bridge-queue/1"

// Directions.
const (
	dirOut = 0 // local → remote
	dirIn  = 1 // remote → local
)

var dirPrefix = [2]byte{'o', 'i'}

func queueKey(dir int, seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = dirPrefix[dir]
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

var (
	errQueueFull   = errors.New("bridge queue full")
	errQueueClosed = errors.New("bridge queue closed")
)

type entry struct {
	seq  uint64
	size uint32
	gone bool
}

// dirQueue is the in-memory index of one direction.
type dirQueue struct {
	entries []entry // entries[head:] in seq order; gone ones are holes
	head    int
	live    int
	bytes   int64
	next    uint64 // the next seq to assign
	durable uint64 // every seq up to this one is committed (or gone)
	dropped uint64 // removed to make room (drop_oldest) or refused (refuse_new)
}

func (d *dirQueue) find(seq uint64) int {
	es := d.entries[d.head:]
	i := sort.Search(len(es), func(i int) bool { return es[i].seq >= seq })
	if i < len(es) && es[i].seq == seq {
		return d.head + i
	}
	return -1
}

func (d *dirQueue) removeAt(i int) {
	e := &d.entries[i]
	e.gone = true
	d.live--
	d.bytes -= int64(e.size)
	for d.head < len(d.entries) && d.entries[d.head].gone {
		d.head++
	}
	if d.head == len(d.entries) {
		d.entries, d.head = d.entries[:0], 0
	} else if d.head > 1024 && d.head > len(d.entries)/2 {
		n := copy(d.entries, d.entries[d.head:])
		d.entries, d.head = d.entries[:n], 0
	}
}

type pendingSet struct {
	dir  int
	seq  uint64
	key  []byte
	val  []byte
	done func(error)
}

type queue struct {
	db   *pebble.DB
	dir  string
	opts queueOptions

	mu      sync.Mutex
	d       [2]dirQueue
	sets    []pendingSet
	dels    [][]byte
	closed  bool
	fatal   error
	wake    chan struct{}
	quit    chan struct{}
	stopped chan struct{}
	// durableFn is told when new messages of a direction became durable.
	durableFn func(dir int)
}

type queueOptions struct {
	maxMessages int
	maxBytes    int64
	dropOldest  bool
}

// quietLogger keeps Pebble's chatter out of the logs; Fatalf must not
// return, so it panics with a value the committer turns into an error.
type quietLogger struct{}

type fatalError struct{ msg string }

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fatalError{fmt.Sprintf(format, args...)})
}

// openQueue opens (creating) the queue in dir and loads its index.
func openQueue(fs vfs.FS, dir string, opts queueOptions) (*queue, error) {
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bridge queue %s: %w", dir, err)
	}
	db, err := pebble.Open(dir, &pebble.Options{FS: fs, Logger: quietLogger{}})
	if err != nil {
		return nil, fmt.Errorf("bridge queue %s: cannot open (%w); if the directory holds other data or was damaged, move it aside to start empty", dir, err)
	}
	q := &queue{db: db, dir: dir, opts: opts, wake: make(chan struct{}, 1), quit: make(chan struct{}), stopped: make(chan struct{})}
	if err := q.load(); err != nil {
		db.Close()
		return nil, err
	}
	go q.run()
	return q, nil
}

func (q *queue) load() error {
	if err := store.CheckFormat(q.db, queueFormat); err != nil {
		return fmt.Errorf("bridge queue %s: not a bridge queue of this version (%w); move the directory aside to start empty, or choose another queue.dir", q.dir, err)
	}
	for dir := range 2 {
		d := &q.d[dir]
		d.next = 1
		it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: []byte{dirPrefix[dir]}, UpperBound: []byte{dirPrefix[dir] + 1}})
		if err != nil {
			return fmt.Errorf("bridge queue %s: %w", q.dir, err)
		}
		for ok := it.First(); ok; ok = it.Next() {
			k := it.Key()
			if len(k) != 9 {
				it.Close()
				return fmt.Errorf("bridge queue %s: key %q: %w", q.dir, k, errCorrupt)
			}
			seq := binary.BigEndian.Uint64(k[1:])
			size := len(it.Value())
			d.entries = append(d.entries, entry{seq: seq, size: uint32(size)})
			d.live++
			d.bytes += int64(size)
			d.next = seq + 1
		}
		err = it.Error()
		it.Close()
		if err != nil {
			return fmt.Errorf("bridge queue %s: %w", q.dir, err)
		}
		d.durable = d.next - 1
	}
	return nil
}

// append queues a record's stored form. done is called once it is durable
// (nil) or could not be written. It returns errQueueFull when the message
// was refused (refuse_new, or larger than the whole byte bound) and how
// many old messages were dropped to make room.
func (q *queue) append(dir int, val []byte, done func(error)) (dropped int, err error) {
	q.mu.Lock()
	if q.closed || q.fatal != nil {
		err := q.fatal
		if err == nil {
			err = errQueueClosed
		}
		q.mu.Unlock()
		return 0, err
	}
	d := &q.d[dir]
	size := int64(len(val))
	if size > q.opts.maxBytes {
		d.dropped++
		q.mu.Unlock()
		return 0, errQueueFull
	}
	for d.live >= q.opts.maxMessages || d.bytes+size > q.opts.maxBytes {
		if !q.opts.dropOldest {
			d.dropped++
			q.mu.Unlock()
			return dropped, errQueueFull
		}
		e := d.entries[d.head]
		d.removeAt(d.head)
		q.dels = append(q.dels, queueKey(dir, e.seq))
		d.dropped++
		dropped++
	}
	seq := d.next
	d.next++
	d.entries = append(d.entries, entry{seq: seq, size: uint32(size)})
	d.live++
	d.bytes += size
	q.sets = append(q.sets, pendingSet{dir: dir, seq: seq, key: queueKey(dir, seq), val: val, done: done})
	q.mu.Unlock()
	q.signal()
	return dropped, nil
}

// remove deletes a message (acknowledged by the other side, or dropped).
// It reports whether the message was still queued, and if so adds one to
// count (when not nil) before the queue's lock is released: a reader of
// stats who sees the message gone then sees it counted too.
func (q *queue) remove(dir int, seq uint64, count *atomic.Uint64) bool {
	q.mu.Lock()
	d := &q.d[dir]
	i := d.find(seq)
	if i < 0 || d.entries[i].gone {
		q.mu.Unlock()
		return false
	}
	d.removeAt(i)
	if count != nil {
		count.Add(1)
	}
	q.dels = append(q.dels, queueKey(dir, seq))
	q.mu.Unlock()
	q.signal()
	return true
}

// read returns up to max durable messages of dir with seq >= from, in
// order. Records that cannot be decoded are removed from the queue (they
// could never be sent; keeping them would stop the direction), counted in
// corrupt and their numbers returned.
func (q *queue) read(dir int, from uint64, max int, corrupt *atomic.Uint64) (recs []*record, damaged []uint64, err error) {
	q.mu.Lock()
	d := &q.d[dir]
	es := d.entries[d.head:]
	i := sort.Search(len(es), func(i int) bool { return es[i].seq >= from })
	var seqs []uint64
	for ; i < len(es) && len(seqs) < max && es[i].seq <= d.durable; i++ {
		if !es[i].gone {
			seqs = append(seqs, es[i].seq)
		}
	}
	q.mu.Unlock()
	if len(seqs) == 0 {
		return nil, nil, nil
	}
	// One iterator over the batch's key range; keys in it that are no
	// longer wanted (acknowledged or dropped meanwhile, their deletion not
	// yet written) are skipped.
	it, err := q.db.NewIter(&pebble.IterOptions{LowerBound: queueKey(dir, seqs[0]), UpperBound: queueKey(dir, seqs[len(seqs)-1]+1)})
	if err != nil {
		return nil, nil, fmt.Errorf("bridge queue %s: %w", q.dir, err)
	}
	defer it.Close()
	recs = make([]*record, 0, len(seqs))
	j := 0
	for ok := it.First(); ok && j < len(seqs); ok = it.Next() {
		seq := binary.BigEndian.Uint64(it.Key()[1:])
		for j < len(seqs) && seqs[j] < seq {
			j++ // dropped meanwhile
		}
		if j == len(seqs) || seqs[j] != seq {
			continue
		}
		j++
		r, err := decodeRecord(seq, bytes.Clone(it.Value()))
		if err != nil {
			damaged = append(damaged, seq)
			continue
		}
		recs = append(recs, r)
	}
	for _, seq := range damaged {
		q.remove(dir, seq, corrupt)
	}
	if err := it.Error(); err != nil {
		return recs, damaged, fmt.Errorf("bridge queue %s: %w", q.dir, err)
	}
	return recs, damaged, nil
}

// has reports whether seq is still queued (not acknowledged or dropped).
func (q *queue) has(dir int, seq uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := &q.d[dir]
	i := d.find(seq)
	return i >= 0 && !d.entries[i].gone
}

// stats returns the messages and bytes queued in dir and how many were
// dropped because the queue was full.
func (q *queue) stats(dir int) (n int, b int64, dropped uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := &q.d[dir]
	return d.live, d.bytes, d.dropped
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// run is the group committer.
func (q *queue) run() {
	defer close(q.stopped)
	for {
		select {
		case <-q.wake:
		case <-q.quit:
			for q.step() {
			}
			return
		}
		for q.step() {
		}
	}
}

// step writes what is waiting; it reports whether it wrote anything.
func (q *queue) step() bool {
	q.mu.Lock()
	sets, dels := q.sets, q.dels
	q.sets, q.dels = nil, nil
	fatal := q.fatal
	q.mu.Unlock()
	if len(sets) == 0 && len(dels) == 0 {
		return false
	}
	err := fatal
	if err == nil {
		err = q.apply(sets, dels)
	}
	q.mu.Lock()
	var newly [2]bool
	for _, s := range sets {
		d := &q.d[s.dir]
		if err != nil {
			if i := d.find(s.seq); i >= 0 && !d.entries[i].gone {
				d.removeAt(i)
			}
			continue
		}
		if s.seq > d.durable {
			d.durable = s.seq
			newly[s.dir] = true
		}
	}
	fn := q.durableFn
	q.mu.Unlock()
	for _, s := range sets {
		if s.done != nil {
			s.done(err)
		}
	}
	for dir, ok := range newly {
		if ok && fn != nil {
			fn(dir)
		}
	}
	return true
}

// apply writes sets then deletions (a deletion may name a set of the same
// group: a message dropped before it reached the disk) as one batch,
// synced when it holds new messages.
func (q *queue) apply(sets []pendingSet, dels [][]byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			fe, ok := r.(fatalError)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("bridge queue %s: stopped after a fatal write error (%s); fix the disk and restart", q.dir, fe.msg)
			q.mu.Lock()
			q.fatal = err
			q.mu.Unlock()
		}
	}()
	b := q.db.NewBatch()
	defer b.Close()
	for _, s := range sets {
		if err := b.Set(s.key, s.val, nil); err != nil {
			return err
		}
	}
	for _, k := range dels {
		if err := b.Delete(k, nil); err != nil {
			return err
		}
	}
	opt := pebble.NoSync
	if len(sets) > 0 {
		opt = pebble.Sync
	}
	if err := b.Commit(opt); err != nil {
		return fmt.Errorf("bridge queue %s: %w", q.dir, err)
	}
	return nil
}

func (q *queue) fatalErr() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.fatal
}

// close writes what is waiting and closes the database.
func (q *queue) close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		<-q.stopped
		return nil
	}
	q.closed = true
	fatal := q.fatal
	q.mu.Unlock()
	close(q.quit)
	<-q.stopped
	if fatal == nil {
		fatal = q.fatalErr()
	}
	if fatal != nil {
		return fatal
	}
	return q.db.Close()
}
