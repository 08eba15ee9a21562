package session

import "sync"

// pidTable maps packet identifiers to the QoS 1/2 deliveries that hold
// them. It replaces a map[uint16]*delivery: a session with thousands of
// messages queued looked one up for every acknowledgement and every new
// packet id, and those lookups (cache misses in a large hash table) were a
// tenth of the broker's time when many publishers fed one subscriber.
//
// It is a two-level array: 256 pages of 256 deliveries, a page taken when
// one of its ids is first used and given back when it empties again
// (packet ids are allocated in sequence, so a session with a few messages
// in flight holds one or two pages). Pages come from a pool shared by all
// sessions: a steady stream of messages reuses them instead of allocating
// one per 256 messages, and an idle session keeps none. The directory is
// allocated with the first delivery; a session that never has a QoS 1/2
// delivery pays for a nil pointer.
type pidTable struct {
	n   int
	dir *[256]*pidPage
}

var pidPages = sync.Pool{New: func() any { return new(pidPage) }}

type pidPage struct {
	n int
	d [256]*delivery
}

func (t *pidTable) len() int { return t.n }

func (t *pidTable) get(pid uint16) *delivery {
	if t.dir == nil {
		return nil
	}
	if p := t.dir[pid>>8]; p != nil {
		return p.d[pid&0xff]
	}
	return nil
}

// set stores d under pid, which must be free.
func (t *pidTable) set(pid uint16, d *delivery) {
	if t.dir == nil {
		t.dir = new([256]*pidPage)
	}
	p := t.dir[pid>>8]
	if p == nil {
		p = pidPages.Get().(*pidPage)
		t.dir[pid>>8] = p
	}
	if p.d[pid&0xff] == nil {
		p.n++
		t.n++
	}
	p.d[pid&0xff] = d
}

func (t *pidTable) del(pid uint16) {
	if t.dir == nil {
		return
	}
	p := t.dir[pid>>8]
	if p == nil || p.d[pid&0xff] == nil {
		return
	}
	p.d[pid&0xff] = nil
	p.n--
	t.n--
	if p.n == 0 {
		t.dir[pid>>8] = nil
		pidPages.Put(p) // empty: n is 0 and every entry nil
	}
}
