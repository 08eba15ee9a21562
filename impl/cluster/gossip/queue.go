package gossip

import (
	"sync"

	"github.com/skybridge-mq/skybridge/impl/cluster"
	"github.com/skybridge-mq/skybridge/impl/fifo"
)

// queue holds memberlist's reports until the apply loop gives them to the
// core. memberlist must never wait on it (it calls in holding its node
// lock), and membership reports must not be lost, so instead of a bounded
// channel that drops, it keeps at most one report per node, the latest:
// the core keeps only the greatest report per node anyway, and a restart
// hidden by coalescing (dead, then alive with a higher incarnation) is
// still reported as one, since the incarnation went up. (A report of a
// lower incarnation than the one waiting is the stale one, and is dropped.) The bound is on
// distinct nodes waiting (MaxMembers), which the core's own bound matches;
// a report beyond it is dropped and counted.
type queue struct {
	mu      sync.Mutex
	max     int
	pending map[string]cluster.Event
	order   fifo.Queue[string] // nodes with a pending report, oldest first
	seq     uint64
	wake    chan struct{} // capacity 1: a signal, never a backlog

	reported, coalesced, dropped uint64
}

func (q *queue) init(max int) {
	q.max = max
	q.pending = map[string]cluster.Event{}
	q.wake = make(chan struct{}, 1)
}

// push numbers ev (Seq: memberlist's order of reports, which it has
// already settled by its own incarnations) and queues it.
func (q *queue) push(ev cluster.Event) {
	q.mu.Lock()
	q.reported++
	q.seq++
	ev.Seq = q.seq
	if old, ok := q.pending[ev.Node]; ok {
		q.coalesced++
		if ev.Meta.Incarnation >= old.Meta.Incarnation {
			q.pending[ev.Node] = ev
		}
	} else if len(q.pending) >= q.max {
		q.dropped++
	} else {
		q.pending[ev.Node] = ev
		q.order.Push(ev.Node)
	}
	q.mu.Unlock()
	q.signal()
}

// signal wakes the apply loop without ever waiting.
func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// nextSeq numbers a report made outside memberlist's callbacks.
func (q *queue) nextSeq() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.seq++
	return q.seq
}

func (q *queue) pop() (cluster.Event, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.order.Len() == 0 {
		return cluster.Event{}, false
	}
	node := q.order.Pop()
	ev := q.pending[node]
	delete(q.pending, node)
	return ev, true
}

func (q *queue) counters() (reported, coalesced, dropped uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.reported, q.coalesced, q.dropped
}
