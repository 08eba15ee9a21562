package kvsim

import (
	"fmt"
	"strings"
	"time"
)

// workload chooses the clients' operations: single keys read, written,
// compared-and-set and deleted concurrently (each key one register); a
// small region of keys also scanned as a whole; and bulk keys with larger
// values that make ranges split (and, deleted again, merge).
type workload struct {
	keys     []string // single-key registers
	scanKeys []string // the scanned region, "s0".."s5"
	bulk     []string // bulk keys written and not yet deleted
	nextBulk int
	pad      string
}

func newWorkload(w *world) *workload {
	wl := &workload{pad: strings.Repeat("x", w.opts.BulkValue)}
	for i := range w.opts.Keys {
		wl.keys = append(wl.keys, fmt.Sprintf("k%d", i))
	}
	for i := range 6 {
		wl.scanKeys = append(wl.scanKeys, fmt.Sprintf("s%d", i))
	}
	return wl
}

// pick draws the next operation of c.
func (wl *workload) pick(c *client) kvIn {
	w := c.w
	c.seq++
	val := fmt.Sprintf("c%d-%d", c.id, c.seq)
	if c.id%2 == 1 {
		// A reader: only reads (a read-only application), so that it keeps
		// reading through a partition instead of waiting on a write.
		switch r := w.s.Rand.IntN(100); {
		case r < 15:
			return kvIn{kind: opScan, start: "s", end: "t"}
		case r < 20:
			return kvIn{kind: opStale, key: wl.keys[w.s.Rand.IntN(len(wl.keys))]}
		case r < 30:
			return kvIn{kind: opGet, key: wl.scanKeys[w.s.Rand.IntN(len(wl.scanKeys))]}
		}
		return kvIn{kind: opGet, key: wl.keys[w.s.Rand.IntN(len(wl.keys))]}
	}
	// Bulk keys grow for 6 s, then shrink for 4 s: ranges split, then merge.
	grow := w.s.Elapsed()%(10*time.Second) < 6*time.Second
	putP, delP := 20, 3
	if !grow {
		putP, delP = 2, 22
	}
	r := w.s.Rand.IntN(100)
	switch {
	case r < putP:
		wl.nextBulk++
		k := fmt.Sprintf("b%05d", wl.nextBulk)
		wl.bulk = append(wl.bulk, k)
		return kvIn{kind: opPut, key: k, val: val + wl.pad}
	case r < putP+delP && len(wl.bulk) > 0:
		i := w.s.Rand.IntN(len(wl.bulk))
		k := wl.bulk[i]
		wl.bulk = append(wl.bulk[:i], wl.bulk[i+1:]...)
		return kvIn{kind: opDel, key: k}
	case r < putP+delP+5:
		return kvIn{kind: opScan, start: "s", end: "t"}
	case r < putP+delP+15:
		k := wl.scanKeys[w.s.Rand.IntN(len(wl.scanKeys))]
		switch w.s.Rand.IntN(3) {
		case 0:
			return kvIn{kind: opGet, key: k}
		case 1:
			return kvIn{kind: opPut, key: k, val: val}
		}
		return kvIn{kind: opDel, key: k}
	}
	k := wl.keys[w.s.Rand.IntN(len(wl.keys))]
	reads := 35
	switch r2 := w.s.Rand.IntN(100); {
	case r2 < reads:
		return kvIn{kind: opGet, key: k}
	case r2 < reads+(100-reads)*3/8:
		return kvIn{kind: opPut, key: k, val: val}
	case r2 < reads+(100-reads)*6/8:
		// Compare with a value the key may hold: the last one written.
		vals := w.written[k]
		if len(vals) == 0 || w.s.Chance(0.2) {
			return kvIn{kind: opCAS, key: k, val: val, expectAbsent: true}
		}
		exp := vals[len(vals)-1-w.s.Rand.IntN(min(2, len(vals)))]
		return kvIn{kind: opCAS, key: k, val: val, expect: exp, expectAbsent: exp == ""}
	case r2 < reads+(100-reads)*7/8:
		return kvIn{kind: opDel, key: k}
	}
	return kvIn{kind: opStale, key: k}
}
