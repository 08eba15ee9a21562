package kv

import (
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// scheduler is Pebble's compaction scheduler for our databases: it grants
// a compaction when Pebble asks (TrySchedule, after every flush and
// compaction) and when one ends (Done), up to what the database allows.
// Pebble's default one also wakes every 100 ms to look for work; on a
// small board that costs more than everything else an idle agent does (an
// idle database used a quarter of a core of emulated mips32, docs/EDGE.md),
// and it is a goroutine of a package that keeps none. What the tick would
// catch — more compactions allowed after a flush — is asked for at once
// by the flush's own TrySchedule, so nothing waits for it here.
//
// Locking follows Pebble's contract: the scheduler's mutex is taken after
// the database's; GetWaitingCompaction and Schedule are called only from
// Done (which Pebble calls without its mutex), never under s.mu.
type scheduler struct {
	mu           sync.Mutex
	cond         *sync.Cond
	db           pebble.DBForCompaction
	running      int
	granting     bool
	unregistered bool
}

var _ pebble.CompactionScheduler = (*scheduler)(nil)

func newScheduler() *scheduler {
	s := &scheduler{}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// Register implements pebble.CompactionScheduler.
func (s *scheduler) Register(_ int, db pebble.DBForCompaction) {
	s.mu.Lock()
	s.db = db
	s.mu.Unlock()
}

// Unregister implements pebble.CompactionScheduler: no grant after it
// returns.
func (s *scheduler) Unregister() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unregistered = true
	for s.granting {
		s.cond.Wait()
	}
}

// TrySchedule implements pebble.CompactionScheduler.
func (s *scheduler) TrySchedule() (bool, pebble.CompactionGrantHandle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unregistered || s.db == nil {
		return false, nil
	}
	if s.db.GetAllowedWithoutPermission() > s.running {
		s.running++
		return true, s
	}
	return false, nil
}

// UpdateGetAllowedWithoutPermission implements pebble.CompactionScheduler:
// nothing to do, the flush that calls it asks for its compactions next.
func (s *scheduler) UpdateGetAllowedWithoutPermission() {}

// Started, MeasureCPU and CumulativeStats implement
// pebble.CompactionGrantHandle: nothing is paced.
func (s *scheduler) Started()                                                {}
func (s *scheduler) MeasureCPU(pebble.CompactionGoroutineKind)               {}
func (s *scheduler) CumulativeStats(stats pebble.CompactionGrantHandleStats) {}

// Done implements pebble.CompactionGrantHandle: a compaction ended; the
// compactions waiting get its place.
func (s *scheduler) Done() {
	s.mu.Lock()
	s.running--
	for s.granting && !s.unregistered {
		s.cond.Wait()
	}
	if s.unregistered {
		s.mu.Unlock()
		return
	}
	toGrant := s.db.GetAllowedWithoutPermission() - s.running
	if toGrant <= 0 {
		s.mu.Unlock()
		return
	}
	s.granting = true
	s.mu.Unlock()
	for ; toGrant > 0; toGrant-- {
		if waiting, _ := s.db.GetWaitingCompaction(); !waiting {
			break
		}
		if !s.db.Schedule(s) {
			break
		}
		s.mu.Lock()
		s.running++
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.granting = false
	s.cond.Broadcast()
	s.mu.Unlock()
}
