// Package kv is the small embedded database of skybridge-cloud and
// skybridge-edge: JSON records under string keys in Pebble, every batch
// synced before Commit returns.
//
// # Contract
//
// The package is core code: it reaches the disk only through the vfs.FS
// it is given (the disk in production, a crashable in-memory FS in the
// simulator), reads no clock and starts no goroutine of its own (Pebble
// runs its own background work; nothing of it reaches a result). A batch
// is atomic: after a power loss either all of it or none of it is there,
// and once Commit has returned it survives one. A DB is not safe for
// concurrent use: its owner (a core, serialised by its runtime) calls it.
package kv

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/skybridge-mq/skybridge/impl/env"
)

// Options tune the database.
type Options struct {
	// MemTableSize and CacheSize bound Pebble's memory (defaults 1 MiB and
	// 2 MiB: the records are small, and a simulation runs hundreds of
	// nodes, each with a database).
	MemTableSize, CacheSize int64
	// NoSync commits without waiting for the disk (tests of the checkers
	// only: a power loss then loses acknowledged writes).
	NoSync bool
}

// DB is an open database.
type DB struct {
	db    *pebble.DB
	cache *pebble.Cache
	wo    *pebble.WriteOptions
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...)) // Pebble's own contract: it does not return
}

// Open opens (creating if needed) the database in dir on fs.
func Open(fs vfs.FS, dir string, o Options) (*DB, error) {
	if o.MemTableSize <= 0 {
		o.MemTableSize = 1 << 20
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 2 << 20
	}
	// Pebble syncs its own directory; the entries that lead to it must
	// survive a power loss too, or a new database vanishes whole.
	if err := env.MkdirAllDurable(fs, dir); err != nil {
		return nil, err
	}
	cache := pebble.NewCache(o.CacheSize)
	po := &pebble.Options{FS: fs, Logger: quietLogger{}, MemTableSize: uint64(o.MemTableSize), Cache: cache}
	po.Experimental.CompactionScheduler = newScheduler()
	db, err := pebble.Open(dir, po)
	if err != nil {
		cache.Unref()
		return nil, fmt.Errorf("database %s: %w", dir, err)
	}
	wo := pebble.Sync
	if o.NoSync {
		wo = pebble.NoSync
	}
	return &DB{db: db, cache: cache, wo: wo}, nil
}

// Close closes the database.
func (d *DB) Close() error {
	err := d.db.Close()
	d.cache.Unref()
	return err
}

// GetRaw returns the value of key.
func (d *DB) GetRaw(key string) ([]byte, bool, error) {
	v, closer, err := d.db.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := append([]byte(nil), v...)
	_ = closer.Close()
	return out, true, nil
}

// Get decodes the JSON value of key into v.
func (d *DB) Get(key string, v any) (bool, error) {
	b, ok, err := d.GetRaw(key)
	if !ok || err != nil {
		return ok, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return true, fmt.Errorf("record %q: %w", key, err)
	}
	return true, nil
}

// Scan calls fn for every key with prefix, in key order. The value is
// valid during the call only.
func (d *DB) Scan(prefix string, fn func(key string, val []byte) error) error {
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: upper(prefix)})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(string(it.Key()), it.Value()); err != nil {
			_ = it.Close()
			return err
		}
	}
	return it.Close()
}

// Range calls fn for the keys in [lower, upper), in order, while fn
// returns true. The value is valid during the call only.
func (d *DB) Range(lower, upper string, fn func(key string, val []byte) bool) error {
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: []byte(lower), UpperBound: []byte(upper)})
	if err != nil {
		return err
	}
	for ok := it.First(); ok && fn(string(it.Key()), it.Value()); ok = it.Next() {
	}
	return it.Close()
}

// First returns the first key with prefix.
func (d *DB) First(prefix string) (string, bool, error) {
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: upper(prefix)})
	if err != nil {
		return "", false, err
	}
	ok := it.First()
	k := string(it.Key())
	return k, ok, it.Close()
}

// upper is the smallest key above every key with prefix.
func upper(prefix string) []byte {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return b[:i+1]
		}
	}
	return nil
}

// Batch is a set of writes committed atomically.
type Batch struct {
	d   *DB
	b   *pebble.Batch
	err error
	n   int
}

// Batch starts a batch.
func (d *DB) Batch() *Batch { return &Batch{d: d, b: d.db.NewBatch()} }

// Put sets key to v encoded as JSON.
func (b *Batch) Put(key string, v any) {
	raw, err := json.Marshal(v)
	if err != nil {
		b.err = errors.Join(b.err, fmt.Errorf("record %q: %w", key, err))
		return
	}
	b.PutRaw(key, raw)
}

// PutRaw sets key to val.
func (b *Batch) PutRaw(key string, val []byte) {
	if err := b.b.Set([]byte(key), val, nil); err != nil {
		b.err = errors.Join(b.err, err)
	}
	b.n++
}

// Delete removes key.
func (b *Batch) Delete(key string) {
	if err := b.b.Delete([]byte(key), nil); err != nil {
		b.err = errors.Join(b.err, err)
	}
	b.n++
}

// DeleteRange removes the keys in [start, end).
func (b *Batch) DeleteRange(start, end string) {
	if err := b.b.DeleteRange([]byte(start), []byte(end), nil); err != nil {
		b.err = errors.Join(b.err, err)
	}
	b.n++
}

// Len returns the number of writes in the batch.
func (b *Batch) Len() int { return b.n }

// Commit writes the batch and waits for the disk (unless Options.NoSync).
// An empty batch commits nothing.
func (b *Batch) Commit() error { return b.commit(b.d.wo) }

// CommitNoSync writes the batch without waiting for the disk: for writes
// whose loss in a power failure is harmless (a deletion the peer will
// make redundant anyway).
func (b *Batch) CommitNoSync() error { return b.commit(pebble.NoSync) }

func (b *Batch) commit(wo *pebble.WriteOptions) error {
	defer b.b.Close()
	if b.err != nil {
		return b.err
	}
	if b.n == 0 {
		return nil
	}
	return b.b.Commit(wo)
}

// Abandon drops the batch.
func (b *Batch) Abandon() { _ = b.b.Close() }
