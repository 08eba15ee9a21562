package sim

import (
	"time"

	"github.com/tidwall/btree"

	"github.com/skybridge-mq/skybridge/impl/env"
)

// Epoch is the virtual instant every simulation starts at. It is fixed so
// that a seed replays the same times, not only the same durations.
var Epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// Sim is the single-threaded scheduler: a queue of events ordered by
// virtual time, then by the sequence number they were scheduled with. The
// clock jumps from event to event; nothing runs concurrently.
type Sim struct {
	now    time.Time
	seq    uint64
	events *btree.BTreeG[*Event]
	// Rand is the run's only source of randomness: every choice of the
	// scheduler, the network, the workloads and the faults draws from it,
	// and the processes get sources derived from it.
	Rand  *env.SeededRand
	Trace *Trace

	stopped bool
	steps   uint64
	// Livelock is set when more than LivelockLimit events ran without the
	// clock moving: something schedules itself at the same instant forever.
	Livelock      bool
	LivelockLimit uint64
	sameInstant   uint64
}

// Event is a scheduled function.
type Event struct {
	at   time.Time
	seq  uint64
	fn   func()
	done bool
}

// At returns the event's deadline.
func (e *Event) At() time.Time { return e.at }

func eventLess(a, b *Event) bool {
	if !a.at.Equal(b.at) {
		return a.at.Before(b.at)
	}
	return a.seq < b.seq
}

// New returns a simulation seeded with seed, its clock at Epoch.
func New(seed uint64, traceTail int) *Sim {
	return &Sim{
		now:    Epoch,
		events: btree.NewBTreeGOptions(eventLess, btree.Options{NoLocks: true, Degree: 64}),
		Rand:   env.NewRand(seed),
		Trace:  NewTrace(traceTail),

		LivelockLimit: 1_000_000,
	}
}

// Now returns the virtual time.
func (s *Sim) Now() time.Time { return s.now }

// Elapsed returns the virtual time since Epoch.
func (s *Sim) Elapsed() time.Duration { return s.now.Sub(Epoch) }

// Steps returns the number of events run so far.
func (s *Sim) Steps() uint64 { return s.steps }

// At schedules fn at t (now, if t is in the past).
func (s *Sim) At(t time.Time, fn func()) *Event {
	if t.Before(s.now) {
		t = s.now
	}
	s.seq++
	e := &Event{at: t, seq: s.seq, fn: fn}
	s.events.Set(e)
	return e
}

// After schedules fn d from now.
func (s *Sim) After(d time.Duration, fn func()) *Event { return s.At(s.now.Add(d), fn) }

// Cancel removes a pending event; it reports whether the event was pending.
func (s *Sim) Cancel(e *Event) bool {
	if e == nil || e.done {
		return false
	}
	e.done = true
	s.events.Delete(e)
	return true
}

// Stop makes Run return after the current event.
func (s *Sim) Stop() { s.stopped = true }

// Run runs events in order until the queue is empty, Stop is called, or
// the next event lies after until; the clock then reads until (or the
// instant it stopped at).
func (s *Sim) Run(until time.Time) {
	s.stopped = false
	for !s.stopped {
		e, ok := s.events.Min()
		if !ok || e.at.After(until) {
			break
		}
		s.events.Delete(e)
		e.done = true
		if e.at.After(s.now) {
			s.now = e.at
			s.sameInstant = 0
		} else if s.sameInstant++; s.LivelockLimit > 0 && s.sameInstant > s.LivelockLimit {
			s.Livelock = true
			return
		}
		s.steps++
		e.fn()
	}
	if !s.stopped && until.After(s.now) {
		s.now = until
	}
}

// Record adds an event at the current virtual time to the trace.
func (s *Sim) Record(kind Kind, host int, conn uint64, b []byte) {
	s.Trace.record(s.Elapsed(), kind, host, conn, b, "")
}

// Note adds an event with a description to the trace. The note is hashed
// too, so it must be deterministic (no pointers, no map order).
func (s *Sim) Note(kind Kind, host int, conn uint64, note string) {
	s.Trace.record(s.Elapsed(), kind, host, conn, nil, note)
}

// Pending returns the number of scheduled events.
func (s *Sim) Pending() int { return s.events.Len() }

// Uniform returns a duration drawn uniformly from [lo, hi].
func (s *Sim) Uniform(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(s.Rand.Int64N(int64(hi-lo)+1))
}

// Exp returns a duration drawn from an exponential distribution of the
// given mean (at least 1µs), for Poisson processes.
func (s *Sim) Exp(mean time.Duration) time.Duration {
	d := time.Duration(s.Rand.ExpFloat64() * float64(mean))
	return max(d, time.Microsecond)
}

// Chance reports true with probability p.
func (s *Sim) Chance(p float64) bool { return p > 0 && s.Rand.Float64() < p }

// Clock is an env.Clock on the simulation's virtual time, belonging to one
// process: its timers run as simulation events (deadline order, ties in
// scheduling order) and all of them die with the process (Kill), so a
// crashed broker's will and expiry timers never fire into its successor.
type Clock struct {
	s      *Sim
	host   int
	timers map[*clockTimer]struct{} // live timers, for Kill; never iterated into output
	dead   bool
}

// NewClock returns a process clock. host tags its timer events in the trace.
func (s *Sim) NewClock(host int) *Clock {
	return &Clock{s: s, host: host, timers: map[*clockTimer]struct{}{}}
}

type clockTimer struct {
	c  *Clock
	ev *Event
}

// Now implements env.Clock.
func (c *Clock) Now() time.Time { return c.s.now }

// AfterFunc implements env.Clock: f runs as a simulation event.
func (c *Clock) AfterFunc(d time.Duration, f func()) env.Timer {
	t := &clockTimer{c: c}
	if c.dead {
		return t
	}
	c.timers[t] = struct{}{}
	t.ev = c.s.After(d, func() {
		delete(c.timers, t)
		c.s.Record(KindTimer, c.host, 0, nil)
		f()
	})
	return t
}

// Stop implements env.Timer.
func (t *clockTimer) Stop() bool {
	if t.ev == nil {
		return false
	}
	delete(t.c.timers, t)
	return t.c.s.Cancel(t.ev)
}

// Kill cancels every pending timer of the process and refuses new ones.
// Cancelling in any order is fine: cancellation changes no output.
func (c *Clock) Kill() {
	c.dead = true
	for t := range c.timers {
		c.s.Cancel(t.ev)
	}
	clear(c.timers)
}

var _ env.Clock = (*Clock)(nil)
