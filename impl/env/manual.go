package env

import (
	"sync"
	"time"

	"github.com/tidwall/btree"
)

// ManualClock is a Clock that moves only when told to. Functions scheduled
// with AfterFunc run synchronously inside Advance or Set, in deadline order
// (ties in scheduling order), on the caller's goroutine. It is safe for
// concurrent use; scheduled functions may schedule others.
type ManualClock struct {
	mu     sync.Mutex
	now    time.Time
	seq    uint64
	timers *btree.BTreeG[*manualTimer]
}

type manualTimer struct {
	c    *ManualClock
	when time.Time
	seq  uint64
	f    func()
	done bool
}

func timerLess(a, b *manualTimer) bool {
	if !a.when.Equal(b.when) {
		return a.when.Before(b.when)
	}
	return a.seq < b.seq
}

// NewManualClock returns a ManualClock reading start.
func NewManualClock(start time.Time) *ManualClock {
	return &ManualClock{now: start, timers: btree.NewBTreeGOptions(timerLess, btree.Options{NoLocks: true})}
}

// Now implements Clock.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc implements Clock. A non-positive d runs f at the next Advance.
func (c *ManualClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &manualTimer{c: c, when: c.now.Add(d), seq: c.seq, f: f}
	c.timers.Set(t)
	return t
}

// Stop implements Timer.
func (t *manualTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	t.c.timers.Delete(t)
	return true
}

// Advance moves the clock forward by d, running every function due on the way.
func (c *ManualClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves the clock to t (never backwards), running every function due
// on the way with the clock reading its deadline.
func (c *ManualClock) Set(t time.Time) {
	for {
		c.mu.Lock()
		next, ok := c.timers.Min()
		if !ok || next.when.After(t) {
			if t.After(c.now) {
				c.now = t
			}
			c.mu.Unlock()
			return
		}
		c.timers.Delete(next)
		next.done = true
		if next.when.After(c.now) {
			c.now = next.when
		}
		c.mu.Unlock()
		next.f()
	}
}

// Pending returns the number of scheduled functions that have not run.
func (c *ManualClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.timers.Len()
}

// NextDeadline returns the earliest scheduled deadline, if any.
func (c *ManualClock) NextDeadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.timers.Min(); ok {
		return t.when, true
	}
	return time.Time{}, false
}
