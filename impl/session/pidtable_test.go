package session

import (
	"math/rand/v2"
	"testing"
)

// TestPIDTable checks the packet id table against a map under random
// use, and that emptied pages are let go.
func TestPIDTable(t *testing.T) {
	t.Parallel()
	var tb pidTable
	model := map[uint16]*delivery{}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200000 {
		pid := uint16(r.IntN(1 << 16))
		if i%3 == 0 {
			pid = uint16(r.IntN(600)) // a busy region: pages fill and empty
		}
		switch r.IntN(3) {
		case 0, 1:
			if model[pid] == nil {
				d := &delivery{pid: pid}
				model[pid] = d
				tb.set(pid, d)
			}
		case 2:
			delete(model, pid)
			tb.del(pid)
		}
		if got := tb.get(pid); got != model[pid] {
			t.Fatalf("step %d: get(%d) = %v, want %v", i, pid, got, model[pid])
		}
		if tb.len() != len(model) {
			t.Fatalf("step %d: len %d, want %d", i, tb.len(), len(model))
		}
	}
	for pid := range model {
		tb.del(pid)
	}
	if tb.len() != 0 {
		t.Fatalf("len %d after deleting everything", tb.len())
	}
	for i, p := range tb.dir {
		if p != nil {
			t.Fatalf("page %d kept after it emptied", i)
		}
	}
}
