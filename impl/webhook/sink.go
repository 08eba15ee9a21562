package webhook

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skybridge-mq/skybridge/impl/event"
)

// SinkConfig configures an event Sink.
type SinkConfig struct {
	Endpoint
	// BatchSize is the most events in one POST (0: 100).
	BatchSize int
	// BatchAge is how long the first event of a batch waits for others
	// (0: 1s).
	BatchAge time.Duration
	// QueueSize bounds the events waiting to be sent (0: 10000).
	QueueSize int
	// MaxRetries is how many times a failed batch is sent again before it
	// is dropped (0: 3; negative: never).
	MaxRetries int
	// Backoff is the wait before the first retry, doubling up to
	// MaxBackoff (0: 200ms and 10s).
	Backoff    time.Duration
	MaxBackoff time.Duration
}

// Sink posts events to an HTTP endpoint in batches. It implements
// event.Sink; Emit never blocks.
type Sink struct {
	cfg SinkConfig
	q   chan event.Event

	ctx    context.Context // cancelled when Close gives up waiting
	cancel context.CancelFunc
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	closed atomic.Bool

	dropped     atomic.Uint64 // events refused by a full queue (or after Close)
	sent        atomic.Uint64 // events delivered
	batches     atomic.Uint64 // batches delivered
	failed      atomic.Uint64 // events dropped after their batch failed every try
	retries     atomic.Uint64
	errorsCount atomic.Uint64
	inFlight    atomic.Int64
}

// NewSink checks cfg and starts the sink's sender goroutine. Call Close to
// stop it.
func NewSink(cfg SinkConfig) (*Sink, error) {
	if err := cfg.Endpoint.check(); err != nil {
		return nil, err
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 100
	}
	if cfg.BatchAge <= 0 {
		cfg.BatchAge = time.Second
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 10000
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 3
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	s := &Sink{cfg: cfg, q: make(chan event.Event, cfg.QueueSize), stop: make(chan struct{}), done: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.run()
	return s, nil
}

// Emit implements event.Sink: it queues e, or drops and counts it when the
// queue is full or the sink is closed.
func (s *Sink) Emit(e event.Event) {
	if s.closed.Load() {
		s.dropped.Add(1)
		return
	}
	select {
	case s.q <- e:
	default:
		s.dropped.Add(1)
	}
}

// Close stops accepting events, sends what is queued (each batch tried
// once more at most), and stops the sender. If ctx ends first, the
// in-flight request is cancelled, what is left is dropped and counted,
// and ctx's error is returned.
func (s *Sink) Close(ctx context.Context) error {
	s.once.Do(func() {
		s.closed.Store(true)
		close(s.stop)
	})
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.cancel()
		<-s.done
		return ctx.Err()
	}
}

func (s *Sink) run() {
	defer close(s.done)
	defer s.cancel()
	batch := make([]event.Event, 0, s.cfg.BatchSize)
	for {
		select {
		case e := <-s.q:
			batch = append(batch, e)
		case <-s.stop:
			s.drain(batch)
			return
		}
		timer := time.NewTimer(s.cfg.BatchAge)
		stopping := false
	fill:
		for len(batch) < s.cfg.BatchSize {
			select {
			case e := <-s.q:
				batch = append(batch, e)
			case <-timer.C:
				break fill
			case <-s.stop:
				stopping = true
				break fill
			}
		}
		timer.Stop()
		if stopping {
			s.drain(batch)
			return
		}
		s.send(batch, s.cfg.MaxRetries)
		batch = batch[:0]
	}
}

// drain sends batch and everything still queued, without retries.
func (s *Sink) drain(batch []event.Event) {
	for {
		for len(batch) < s.cfg.BatchSize {
			select {
			case e := <-s.q:
				batch = append(batch, e)
				continue
			default:
			}
			break
		}
		if len(batch) == 0 {
			return
		}
		s.send(batch, 0)
		batch = batch[:0]
	}
}

// send posts batch, retrying up to retries times with backoff.
func (s *Sink) send(batch []event.Event, retries int) {
	body, err := json.Marshal(batch)
	if err != nil { // cannot happen for event.Event; count it as a failure
		s.failed.Add(uint64(len(batch)))
		return
	}
	s.inFlight.Store(int64(len(batch)))
	defer s.inFlight.Store(0)
	wait := s.cfg.Backoff
	for attempt := 0; ; attempt++ {
		if s.ctx.Err() != nil {
			s.failed.Add(uint64(len(batch)))
			return
		}
		err := s.cfg.post(s.ctx, body, nil)
		if err == nil {
			s.sent.Add(uint64(len(batch)))
			s.batches.Add(1)
			return
		}
		s.errorsCount.Add(1)
		if attempt >= retries {
			s.failed.Add(uint64(len(batch)))
			return
		}
		s.retries.Add(1)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.stop: // closing: one last try now
			t.Stop()
			retries = attempt + 1
		case <-s.ctx.Done():
			t.Stop()
		}
		wait *= 2
		if wait > s.cfg.MaxBackoff {
			wait = s.cfg.MaxBackoff
		}
	}
}

// SinkStats are a Sink's counters.
type SinkStats struct {
	Queued   int    // events waiting in the queue
	InFlight int    // events of the batch being sent
	Sent     uint64 // events delivered
	Batches  uint64 // batches delivered
	Dropped  uint64 // events refused because the queue was full or the sink closed
	Failed   uint64 // events dropped because their batch failed every try
	Retries  uint64 // batch retries
	Errors   uint64 // failed requests
}

// Stats returns the counters.
func (s *Sink) Stats() SinkStats {
	return SinkStats{Queued: len(s.q), InFlight: int(s.inFlight.Load()), Sent: s.sent.Load(),
		Batches: s.batches.Load(), Dropped: s.dropped.Load(), Failed: s.failed.Load(),
		Retries: s.retries.Load(), Errors: s.errorsCount.Load()}
}
