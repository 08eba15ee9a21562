package fifo

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestQueue(t *testing.T) {
	t.Parallel()
	var q Queue[int]
	if q.Peek() != nil || q.Last() != nil || q.Len() != 0 {
		t.Fatal("zero queue not empty")
	}
	// Interleave pushes and pops across several compactions and empties,
	// against a plain slice as the model.
	var model, got []int
	next := 0
	for round := range 50 {
		for range 100 + round*37 {
			q.Push(next)
			model = append(model, next)
			next++
		}
		for range 90 + round*31 {
			if p := q.Peek(); p == nil || *p != model[0] {
				t.Fatalf("round %d: Peek = %v, want %d", round, p, model[0])
			}
			if l := q.Last(); l == nil || *l != model[len(model)-1] {
				t.Fatalf("round %d: Last = %v, want %d", round, l, model[len(model)-1])
			}
			got = append(got, q.Pop())
			model = model[1:]
		}
		if q.Len() != len(model) {
			t.Fatalf("round %d: Len = %d, want %d", round, q.Len(), len(model))
		}
	}
	for q.Len() > 0 {
		got = append(got, q.Pop())
	}
	want := make([]int, next)
	for i := range want {
		want[i] = i
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("order (-want +got):\n%s", d)
	}
	if len(q.items) != 0 || q.head != 0 {
		t.Fatalf("emptied queue keeps %d items from head %d", len(q.items), q.head)
	}
}

// TestPopReleases checks that a popped slot no longer refers to its item.
func TestPopReleases(t *testing.T) {
	t.Parallel()
	var q Queue[*int]
	a, b := new(int), new(int)
	q.Push(a)
	q.Push(b)
	q.Pop()
	if q.items[0] != nil {
		t.Fatal("popped slot still holds its pointer")
	}
}

func TestAt(t *testing.T) {
	t.Parallel()
	var q Queue[int]
	for i := range 5 {
		q.Push(i)
	}
	q.Pop()
	for i := range 4 {
		if p := q.At(i); p == nil || *p != i+1 {
			t.Fatalf("At(%d) = %v, want %d", i, p, i+1)
		}
	}
	if q.At(4) != nil || q.At(-1) != nil {
		t.Fatal("At past the ends is not nil")
	}
}

func BenchmarkPushPop(b *testing.B) {
	var q Queue[*int]
	v := new(int)
	b.ReportAllocs()
	for range b.N {
		q.Push(v)
		q.Push(v)
		q.Pop()
		q.Pop()
	}
}
