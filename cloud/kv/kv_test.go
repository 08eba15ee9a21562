package kv

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
)

type rec struct {
	N int    `json:"n"`
	S string `json:"s"`
}

func TestBatchScanReopen(t *testing.T) {
	t.Parallel()
	fs := vfs.NewMem()
	db, err := Open(fs, "db", Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := db.Batch()
	for i, k := range []string{"a/1", "a/2", "b/1", "a/3"} {
		b.Put(k, rec{N: i, S: k})
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b = db.Batch()
	b.Delete("a/2")
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := db.Scan("a/", func(k string, _ []byte) error { keys = append(keys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"a/1", "a/3"}, keys); d != "" {
		t.Error(d)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(fs, "db", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var r rec
	if ok, err := db.Get("b/1", &r); !ok || err != nil || r.S != "b/1" {
		t.Errorf("after reopen: %v %v %+v", ok, err, r)
	}
	if k, ok, _ := db.First("a/"); !ok || k != "a/1" {
		t.Errorf("First = %q %v", k, ok)
	}
}

// What Commit returned survives a power loss, whatever of the unsynced
// data the crash keeps.
func TestCommittedSurvivesPowerLoss(t *testing.T) {
	t.Parallel()
	for seed := uint64(0); seed < 8; seed++ {
		fs := vfs.NewCrashableMem()
		db, err := Open(fs, "db", Options{})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 50; i++ {
			b := db.Batch()
			b.Put("k/"+string(rune('a'+i%26))+string(rune('a'+i/26)), rec{N: i})
			if err := b.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: int(seed * 12), RNG: rand.New(rand.NewPCG(seed, seed))})
		_ = db.Close()
		db2, err := Open(clone, "db", Options{})
		if err != nil {
			t.Fatalf("seed %d: reopen after power loss: %v", seed, err)
		}
		n := 0
		_ = db2.Scan("k/", func(string, []byte) error { n++; return nil })
		_ = db2.Close()
		if n != 50 {
			t.Errorf("seed %d: %d of 50 committed records after a power loss", seed, n)
		}
	}
}

// A new database survives a power loss right after it was created: the
// directory entries leading to it are synced too.
func TestNewDatabaseSurvivesPowerLoss(t *testing.T) {
	t.Parallel()
	fs := vfs.NewCrashableMem()
	if err := fs.MkdirAll("data/node", 0o755); err != nil { // as a caller with a data directory does
		t.Fatal(err)
	}
	db, err := Open(fs, "data/node/db", Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := db.Batch()
	b.Put("k", rec{N: 1})
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0, RNG: rand.New(rand.NewPCG(1, 1))})
	_ = db.Close()
	db, err = Open(clone, "data/node/db", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var r rec
	if ok, _ := db.Get("k", &r); !ok || r.N != 1 {
		t.Fatal("the committed record is gone after a power loss")
	}
}

// TestCompactionsWithoutTicker: with our compaction scheduler (no
// periodic wake-up) a churning database still compacts, and stays small.
func TestCompactionsWithoutTicker(t *testing.T) {
	t.Parallel()
	fs := vfs.NewMem()
	d, err := Open(fs, "db", Options{MemTableSize: 256 << 10, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	val := bytes.Repeat([]byte("x"), 200)
	for round := range 30 {
		b := d.Batch()
		for i := range 1000 {
			b.PutRaw(fmt.Sprintf("out/%08d", round*1000+i), val)
		}
		if round > 0 { // an outbox: the previous round is acknowledged
			b.DeleteRange(fmt.Sprintf("out/%08d", (round-1)*1000), fmt.Sprintf("out/%08d", round*1000))
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := d.db.Metrics()
		if m.Compact.Count > 0 && m.Levels[0].TablesCount < 12 {
			t.Logf("%d compactions, %d tables in L0", m.Compact.Count, m.Levels[0].TablesCount)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no compaction after 30 flushes: %d compactions, %d tables in L0", m.Compact.Count, m.Levels[0].TablesCount)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline (compactions run in Pebble's goroutines)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}
