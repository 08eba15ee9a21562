package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

var dirName = [2]string{"out", "in"}

func hexCode(c byte) string { return fmt.Sprintf("0x%02X", c) }

// Drop reasons (indexes into the per-direction counters).
const (
	dropQueueFull = iota // counted by the queue itself
	dropLoop
	dropHops
	dropExpired
	dropTooLarge
	dropRejected
	dropUnmapped
	dropCorrupt
	numDrops
)

var dropNames = [numDrops]string{"queue_full", "loop", "hops", "expired", "too_large", "rejected", "unmapped", "corrupt"}

// link is one configured bridge at run time.
type link struct {
	cfg   BridgeConfig
	log   *slog.Logger
	q     *queue
	local *endpoint
	rem   *endpoint
	fwd   [2]*forwarder

	received [2]atomic.Uint64
	drops    [2][numDrops]atomic.Uint64

	logMu   sync.Mutex
	lastLog time.Time
}

// dropLogEvery bounds how often drops are logged (with the totals).
const dropLogEvery = 10 * time.Second

func newLink(cfg BridgeConfig, fs vfs.FS, log *slog.Logger) (*link, error) {
	l := &link{cfg: cfg, log: log.With("bridge", cfg.Name)}
	field := func(f string) string { return "bridge " + cfg.Name + ": " + f }
	subsOf := func(rules []Rule) []subscription {
		var s []subscription
		for _, r := range rules {
			s = append(s, subscription{filter: r.Filter, qos: byte(*r.QoS)})
		}
		return s
	}
	var err error
	if l.local, err = newEndpoint("local", cfg.Local, subsOf(cfg.Out), cfg.MaxInflight, l.log); err != nil {
		return nil, errors.New(field(err.Error()))
	}
	if l.rem, err = newEndpoint("remote", cfg.Remote, subsOf(cfg.In), cfg.MaxInflight, l.log); err != nil {
		return nil, errors.New(field(err.Error()))
	}
	l.fwd[dirOut] = newForwarder(l, dirOut, l.rem, cfg.MaxInflight)
	l.fwd[dirIn] = newForwarder(l, dirIn, l.local, cfg.MaxInflight)
	l.local.ev = events{
		up:      l.fwd[dirIn].up,
		down:    l.fwd[dirIn].down,
		acked:   l.fwd[dirIn].acked,
		message: func(r *record, ack, kick func()) { l.receive(dirOut, r, ack, kick) },
	}
	l.rem.ev = events{
		up:      l.fwd[dirOut].up,
		down:    l.fwd[dirOut].down,
		acked:   l.fwd[dirOut].acked,
		message: func(r *record, ack, kick func()) { l.receive(dirIn, r, ack, kick) },
	}
	l.q, err = openQueue(fs, cfg.Queue.Dir, queueOptions{
		maxMessages: cfg.Queue.MaxMessages,
		maxBytes:    cfg.Queue.MaxBytes,
		dropOldest:  cfg.Queue.DropPolicy == DropOldest,
	})
	if err != nil {
		return nil, errors.New(field(err.Error()))
	}
	l.q.mu.Lock()
	l.q.durableFn = func(dir int) { l.fwd[dir].signal() }
	l.q.mu.Unlock()
	return l, nil
}

// receive takes a message from the source side of direction dir: maps its
// topic, checks the loop marker, queues it, and acknowledges it to the
// source once it is durable.
func (l *link) receive(dir int, r *record, ack, kick func()) {
	l.received[dir].Add(1)
	rules := l.cfg.Out
	if dir == dirIn {
		rules = l.cfg.In
	}
	var rule *Rule
	for i := range rules {
		if match(rules[i].Filter, r.topic) {
			rule = &rules[i]
			break
		}
	}
	if rule == nil {
		l.drop(dir, dropUnmapped, "no rule matches topic "+r.topic)
		ack()
		return
	}
	t, ok := rule.mapTopic(r.topic)
	if !ok {
		l.drop(dir, dropUnmapped, "topic "+r.topic+" maps to an empty topic")
		ack()
		return
	}
	if crossed(r.user, l.cfg.Name) {
		l.drop(dir, dropLoop, "")
		ack()
		return
	}
	h := hops(r.user)
	if h >= l.cfg.MaxHops {
		l.drop(dir, dropHops, "")
		ack()
		return
	}
	r.topic = t
	r.qos = min(r.qos, byte(*rule.QoS))
	r.user = mark(r.user, l.cfg.Name, h)
	val := r.encode(nil)
	_, err := l.q.append(dir, val, func(err error) {
		if err != nil {
			// Not durable: not acknowledged. Dropping the connection makes
			// the source send it (and everything after it) again.
			l.log.Error("bridge queue write failed", "direction", dirName[dir], "err", err)
			kick()
			return
		}
		ack()
	})
	switch {
	case err == nil:
	case errors.Is(err, errQueueFull):
		ack() // refused (refuse_new, or larger than the byte bound): counted by the queue
		l.logDrops()
	case errors.Is(err, errQueueClosed):
		// Shutting down: unacknowledged, the source sends it again later.
	default:
		l.log.Error("bridge queue unusable", "direction", dirName[dir], "err", err)
		kick()
	}
}

// drop counts a message dropped for reason and logs the totals now and
// then.
func (l *link) drop(dir, reason int, why string) {
	l.drops[dir][reason].Add(1)
	l.dropped(dir, reason, why)
}

// dropped logs a drop already counted (by the queue, as it removed the
// message).
func (l *link) dropped(dir, reason int, why string) {
	if why != "" {
		l.log.Debug("bridge dropped a message", "direction", dirName[dir], "reason", dropNames[reason], "why", why)
	}
	l.logDrops()
}

func (l *link) logDrops() {
	l.logMu.Lock()
	now := time.Now()
	if now.Sub(l.lastLog) < dropLogEvery {
		l.logMu.Unlock()
		return
	}
	l.lastLog = now
	l.logMu.Unlock()
	s := l.stats()
	for dir, d := range []DirStats{s.Out, s.In} {
		if d.Dropped.Total() > 0 {
			var attrs []any
			d.Dropped.Each(func(reason string, n uint64) {
				if n > 0 {
					attrs = append(attrs, reason, n)
				}
			})
			l.log.Warn("bridge dropped messages (totals since start)", append([]any{"direction", dirName[dir]}, attrs...)...)
		}
	}
}

func (l *link) start(ctx context.Context, wg *sync.WaitGroup) {
	for _, f := range l.fwd {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.run(ctx)
		}()
		f.signal()
	}
	for _, e := range []*endpoint{l.local, l.rem} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.run(ctx)
		}()
	}
}

func (l *link) stats() BridgeStats {
	s := BridgeStats{Name: l.cfg.Name, Local: l.local.state(), Remote: l.rem.state()}
	for dir, d := range []*DirStats{&s.Out, &s.In} {
		n, b, full := l.q.stats(dir)
		d.Received = l.received[dir].Load()
		d.Forwarded = l.fwd[dir].forwarded.Load()
		d.Queued = n
		d.QueuedBytes = b
		d.Dropped = Drops{
			QueueFull: full,
			Loop:      l.drops[dir][dropLoop].Load(),
			Hops:      l.drops[dir][dropHops].Load(),
			Expired:   l.drops[dir][dropExpired].Load(),
			TooLarge:  l.drops[dir][dropTooLarge].Load(),
			Rejected:  l.drops[dir][dropRejected].Load(),
			Unmapped:  l.drops[dir][dropUnmapped].Load(),
			Corrupt:   l.drops[dir][dropCorrupt].Load(),
		}
	}
	return s
}
