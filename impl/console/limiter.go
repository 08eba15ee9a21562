package console

import (
	"net/netip"
	"time"
)

// limiter throttles failed logins per source address: after freeFails
// failures, each further attempt waits a window that doubles with every
// failure, up to maxWait. It holds at most maxSources addresses (the one
// whose last failure is oldest is forgotten first). The caller holds the
// console's lock.
type limiter struct {
	entries map[netip.Addr]*strikes
}

type strikes struct {
	fails int
	last  time.Time
	until time.Time
}

const (
	freeFails   = 5
	firstWait   = time.Second
	maxWait     = 5 * time.Minute
	maxSources  = 4096
	forgetAfter = time.Hour
)

// wait returns how long src must wait before its next attempt.
func (l *limiter) wait(src netip.Addr, now time.Time) time.Duration {
	s := l.entries[src]
	if s == nil || !now.Before(s.until) {
		return 0
	}
	return s.until.Sub(now)
}

func (l *limiter) fail(src netip.Addr, now time.Time) {
	s := l.entries[src]
	if s == nil {
		if len(l.entries) >= maxSources {
			l.forgetOldest(now)
		}
		s = &strikes{}
		l.entries[src] = s
	}
	s.fails++
	s.last = now
	if n := s.fails - freeFails; n > 0 {
		d := firstWait << min(n-1, 20)
		s.until = now.Add(min(d, maxWait))
	}
}

func (l *limiter) forget(src netip.Addr) { delete(l.entries, src) }

// forgetOldest drops records not failed for forgetAfter, or else the one
// whose last failure is oldest.
func (l *limiter) forgetOldest(now time.Time) {
	var oldest netip.Addr
	var at time.Time
	for a, s := range l.entries {
		if now.Sub(s.last) > forgetAfter {
			delete(l.entries, a)
			continue
		}
		if !oldest.IsValid() || s.last.Before(at) || s.last.Equal(at) && a.Less(oldest) {
			oldest, at = a, s.last
		}
	}
	if len(l.entries) >= maxSources && oldest.IsValid() {
		delete(l.entries, oldest)
	}
}
