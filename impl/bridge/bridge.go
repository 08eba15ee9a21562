package bridge

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Bridge runs the configured bridges.
type Bridge struct {
	links []*link
	log   *slog.Logger

	mu      sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New validates cfg (filling in its defaults), reads the TLS files and
// opens each bridge's queue on fs (vfs.Default in production), resuming
// what a previous run left in it. Nothing connects before Start.
func New(cfg Config, fs vfs.FS, log *slog.Logger) (*Bridge, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Validate works on a copy: the caller's Config (and its slices) stay
	// as they were.
	c := Config{Bridges: make([]BridgeConfig, len(cfg.Bridges))}
	for i, b := range cfg.Bridges {
		b.Out = append([]Rule(nil), b.Out...)
		b.In = append([]Rule(nil), b.In...)
		c.Bridges[i] = b
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	br := &Bridge{log: log}
	for _, bc := range c.Bridges {
		l, err := newLink(bc, fs, log)
		if err != nil {
			for _, o := range br.links {
				o.q.close()
			}
			return nil, err
		}
		br.links = append(br.links, l)
	}
	return br, nil
}

// Start connects every bridge to both sides and starts forwarding. The
// bridges run until Close, or until ctx is cancelled (Close must still be
// called to release the queues).
func (b *Bridge) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("bridge: closed")
	}
	if b.started {
		return errors.New("bridge: already started")
	}
	b.started = true
	ctx, b.cancel = context.WithCancel(ctx)
	for _, l := range b.links {
		out, _, _ := l.q.stats(dirOut)
		in, _, _ := l.q.stats(dirIn)
		l.log.Info("bridge starting", "local", l.cfg.Local.Address, "remote", l.cfg.Remote.Address,
			"queued_out", out, "queued_in", in)
		l.start(ctx, &b.wg)
	}
	return nil
}

// Close disconnects both sides of every bridge (cleanly: their sessions
// stay on the brokers), stops forwarding, writes what is waiting and
// closes the queues. Messages not yet acknowledged by the other side stay
// queued for the next run. It is safe to call more than once.
func (b *Bridge) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	cancel := b.cancel
	b.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	b.wg.Wait()
	var errs []error
	for _, l := range b.links {
		if err := l.q.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Stats is a snapshot of every bridge's counters, in configuration order.
type Stats struct {
	Bridges []BridgeStats
}

// BridgeStats are one bridge's counters.
type BridgeStats struct {
	Name   string
	Local  ConnState
	Remote ConnState
	// Out is local → remote, In is remote → local.
	Out DirStats
	In  DirStats
}

// DirStats are one direction's counters (since the bridge started, except
// Queued and QueuedBytes, which include what a previous run left).
type DirStats struct {
	// Received counts messages taken from the source side.
	Received uint64
	// Forwarded counts messages the other side acknowledged (QoS 1) or
	// that were written to it (QoS 0).
	Forwarded uint64
	// Queued and QueuedBytes are waiting now (in flight included).
	Queued      int
	QueuedBytes int64
	Dropped     Drops
}

// Drops counts dropped messages by reason.
type Drops struct {
	QueueFull uint64 // the queue was full (see Queue.DropPolicy)
	Loop      uint64 // the message had already crossed this bridge
	Hops      uint64 // the message had crossed max_hops bridges
	Expired   uint64 // its Message Expiry Interval ran out in the queue
	TooLarge  uint64 // above the receiver's Maximum Packet Size
	Rejected  uint64 // the receiver refused it (PUBACK reason code >= 0x80, except 0x97/0x89 which are retried)
	Unmapped  uint64 // no rule matched its topic, or it mapped to an empty topic
	Corrupt   uint64 // its queue record could not be read back
}

// Total is the sum of all reasons.
func (d Drops) Total() uint64 {
	var n uint64
	d.Each(func(_ string, v uint64) { n += v })
	return n
}

// Each calls f for every reason, in a fixed order, with its metric label
// (queue_full, loop, hops, expired, too_large, rejected, unmapped, corrupt).
func (d Drops) Each(f func(reason string, n uint64)) {
	for i, v := range []uint64{d.QueueFull, d.Loop, d.Hops, d.Expired, d.TooLarge, d.Rejected, d.Unmapped, d.Corrupt} {
		f(dropNames[i], v)
	}
}

// Stats returns the counters of every bridge.
func (b *Bridge) Stats() Stats {
	s := Stats{Bridges: make([]BridgeStats, 0, len(b.links))}
	for _, l := range b.links {
		s.Bridges = append(s.Bridges, l.stats())
	}
	return s
}
