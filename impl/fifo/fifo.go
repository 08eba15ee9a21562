// Package fifo is a first-in, first-out queue on a slice, for the session's
// queue of deliveries and the broker's deliveries parked on a slow
// subscriber. It is not safe for concurrent use: each queue lives under its
// owner's lock.
//
// Popping moves a head index rather than reslicing, so the slice's array is
// reused when the queue empties, and compacted only when the dead prefix is
// large (over 1024 entries and more than half), which keeps both push and
// pop O(1) amortised without a ring's wrap-around arithmetic.
package fifo

// Queue is a FIFO of T. The zero value is an empty queue.
type Queue[T any] struct {
	items []T
	head  int
}

// Len returns the number of items queued.
func (q *Queue[T]) Len() int { return len(q.items) - q.head }

// Push appends v at the tail.
func (q *Queue[T]) Push(v T) { q.items = append(q.items, v) }

// Peek returns the head item in place, or nil when the queue is empty. The
// pointer is valid until the next Push or Pop.
func (q *Queue[T]) Peek() *T {
	if q.head < len(q.items) {
		return &q.items[q.head]
	}
	return nil
}

// At returns the i-th item from the head (0 is the head) in place, or nil
// when there is none. The pointer is valid until the next Push or Pop.
func (q *Queue[T]) At(i int) *T {
	if i < 0 || i >= q.Len() {
		return nil
	}
	return &q.items[q.head+i]
}

// Last returns the tail item in place, or nil when the queue is empty. The
// pointer is valid until the next Push or Pop.
func (q *Queue[T]) Last() *T {
	if q.head < len(q.items) {
		return &q.items[len(q.items)-1]
	}
	return nil
}

// Pop removes and returns the head item; the queue must not be empty. The
// slot is zeroed so that the queue does not keep what it held alive.
func (q *Queue[T]) Pop() T {
	var zero T
	v := q.items[q.head]
	q.items[q.head] = zero
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > 1024 && q.head > len(q.items)/2 {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return v
}
