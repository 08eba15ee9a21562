package event

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Sink receives events. Emit must not block and must be safe for
// concurrent use (see the package doc).
type Sink interface {
	Emit(e Event)
}

// SinkFunc adapts a function to a Sink. The function must not block.
type SinkFunc func(e Event)

// Emit implements Sink.
func (f SinkFunc) Emit(e Event) { f(e) }

// Discard drops every event.
type Discard struct{}

// Emit implements Sink.
func (Discard) Emit(Event) {}

// Fanout hands each event to several sinks, in order.
type Fanout []Sink

// Emit implements Sink.
func (f Fanout) Emit(e Event) {
	for _, s := range f {
		if s != nil {
			s.Emit(e)
		}
	}
}

// --- Log ---

// LogOptions configure a Log sink.
type LogOptions struct {
	// Levels overrides Type.Level for some types.
	Levels map[Type]slog.Level
	// MaxPerSecond bounds the lines written per second of event time (0:
	// 100). Beyond it events are counted, not written, and a summary line
	// reports how many were suppressed when the next second begins.
	MaxPerSecond int
}

// Log writes one structured line per event through a slog.Handler, at a
// level per event type, stamped with the event's own time. It is bounded:
// at most MaxPerSecond lines per second of event time.
type Log struct {
	h      slog.Handler
	levels map[Type]slog.Level
	max    int

	mu         sync.Mutex
	window     int64 // the second (Unix) being counted
	inWindow   int
	pending    uint64 // suppressed in the current window, not yet reported
	suppressed atomic.Uint64
}

// NewLog returns a Log sink writing to l's handler.
func NewLog(l *slog.Logger, opts LogOptions) *Log {
	if opts.MaxPerSecond <= 0 {
		opts.MaxPerSecond = 100
	}
	return &Log{h: l.Handler(), levels: opts.Levels, max: opts.MaxPerSecond}
}

// Suppressed returns how many events were not written because of the rate
// bound.
func (l *Log) Suppressed() uint64 { return l.suppressed.Load() }

func (l *Log) level(e *Event) slog.Level {
	if lv, ok := l.levels[e.Type]; ok {
		return lv
	}
	return e.Type.Level(e.Reason)
}

// Emit implements Sink.
func (l *Log) Emit(e Event) {
	ctx := context.Background()
	lv := l.level(&e)
	if !l.h.Enabled(ctx, lv) {
		return
	}
	sec := e.Time.Unix()
	l.mu.Lock()
	var report uint64
	if sec > l.window { // a late event from another goroutine counts in the current second
		report, l.pending = l.pending, 0
		l.window, l.inWindow = sec, 0
	}
	write := l.inWindow < l.max
	if write {
		l.inWindow++
	} else {
		l.pending++
		l.suppressed.Add(1)
	}
	l.mu.Unlock()
	if report > 0 {
		r := slog.NewRecord(e.Time, slog.LevelWarn, "events suppressed", 0)
		r.AddAttrs(slog.Uint64("count", report), slog.Int("max_per_second", l.max))
		_ = l.h.Handle(ctx, r)
	}
	if !write {
		return
	}
	r := slog.NewRecord(e.Time, lv, "event "+e.Type.String(), 0)
	r.AddAttrs(slog.String("tenant", e.Tenant))
	if e.ClientID != "" {
		r.AddAttrs(slog.String("client_id", e.ClientID))
	}
	if e.User != "" {
		r.AddAttrs(slog.String("user", e.User))
	}
	if e.Listener != "" {
		r.AddAttrs(slog.String("listener", e.Listener))
	}
	if e.Remote != "" {
		r.AddAttrs(slog.String("remote", e.Remote))
	}
	if e.Reason != 0 || e.Type == Disconnected {
		r.AddAttrs(slog.String("reason", "0x"+strconv.FormatUint(uint64(e.Reason), 16)),
			slog.String("reason_name", reasonName(e.Reason)))
	}
	if e.Detail != "" {
		r.AddAttrs(slog.String("detail", e.Detail))
	}
	if e.Count != 0 {
		r.AddAttrs(slog.Uint64("count", e.Count))
	}
	_ = l.h.Handle(ctx, r)
}

// --- Counter ---

// OtherTenant is the label events of tenants beyond a Counter's cap are
// counted under, and the one /metrics sums the tenants beyond
// admin.max_tenant_labels under. (A tenant really named "_other" shares it.)
const OtherTenant = "_other"

// DefaultMaxTenants is the tenants a Counter keeps apart by default, as
// admin.max_tenant_labels.
const DefaultMaxTenants = 100

type counts struct {
	events [numTypes]atomic.Uint64
	items  [numTypes]atomic.Uint64
}

// Counter counts events per type and tenant, for metrics. It keeps at most
// MaxTenants tenants apart; events of the tenants seen after that are
// counted under OtherTenant, so a flood of tenant names cannot grow it (or
// a metrics label set) without bound.
type Counter struct {
	max     int
	mu      sync.RWMutex
	tenants map[string]*counts
	other   counts
	total   counts
}

// NewCounter returns a Counter that keeps up to maxTenants tenants apart
// (0 or less: DefaultMaxTenants).
func NewCounter(maxTenants int) *Counter {
	if maxTenants <= 0 {
		maxTenants = DefaultMaxTenants
	}
	return &Counter{max: maxTenants, tenants: map[string]*counts{}}
}

func (c *Counter) slot(tenant string) *counts {
	c.mu.RLock()
	s, ok := c.tenants[tenant]
	n := len(c.tenants)
	c.mu.RUnlock()
	if ok {
		return s
	}
	if n >= c.max {
		return &c.other
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.tenants[tenant]; ok {
		return s
	}
	if len(c.tenants) >= c.max {
		return &c.other
	}
	s = &counts{}
	c.tenants[tenant] = s
	return s
}

// Emit implements Sink. Events of an unknown type are ignored.
func (c *Counter) Emit(e Event) {
	if !e.Type.Valid() {
		return
	}
	s := c.slot(e.Tenant)
	n := e.N()
	s.events[e.Type].Add(1)
	s.items[e.Type].Add(n)
	c.total.events[e.Type].Add(1)
	c.total.items[e.Type].Add(n)
}

// Sample is one counter: events of a type for a tenant (or OtherTenant),
// and the things they stand for (Items: messages for MessageDropped,
// otherwise equal to Events).
type Sample struct {
	Type   Type
	Tenant string
	Events uint64
	Items  uint64
}

// Snapshot returns every non-zero counter, sorted by tenant then type,
// with OtherTenant's last.
func (c *Counter) Snapshot() []Sample {
	c.mu.RLock()
	names := make([]string, 0, len(c.tenants))
	slots := make(map[string]*counts, len(c.tenants))
	for name, s := range c.tenants {
		names = append(names, name)
		slots[name] = s
	}
	c.mu.RUnlock()
	slices.Sort(names)
	var out []Sample
	add := func(name string, s *counts) {
		for t := Connected; t < numTypes; t++ {
			if n := s.events[t].Load(); n > 0 {
				out = append(out, Sample{Type: t, Tenant: name, Events: n, Items: s.items[t].Load()})
			}
		}
	}
	for _, name := range names {
		add(name, slots[name])
	}
	add(OtherTenant, &c.other)
	return out
}

// Total returns the events of type t over all tenants.
func (c *Counter) Total(t Type) uint64 {
	if !t.Valid() {
		return 0
	}
	return c.total.events[t].Load()
}

// Tenants returns how many tenants are counted apart.
func (c *Counter) Tenants() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.tenants)
}

// --- Ring ---

// Ring keeps the last events in a bounded buffer (recent events for an
// admin API, or a test's record). Older events are overwritten and counted.
type Ring struct {
	mu          sync.Mutex
	buf         []Event
	next        int
	full        bool
	overwritten atomic.Uint64
}

// NewRing returns a Ring holding up to size events (at least 1).
func NewRing(size int) *Ring {
	if size < 1 {
		size = 1
	}
	return &Ring{buf: make([]Event, size)}
}

// Emit implements Sink.
func (r *Ring) Emit(e Event) {
	r.mu.Lock()
	if r.full {
		r.overwritten.Add(1)
	}
	r.buf[r.next] = e
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// Events returns the events held, oldest first.
func (r *Ring) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return slices.Clone(r.buf[:r.next])
	}
	return append(slices.Clone(r.buf[r.next:]), r.buf[:r.next]...)
}

// Overwritten returns how many events were pushed out by newer ones.
func (r *Ring) Overwritten() uint64 { return r.overwritten.Load() }

// String summarises an event on one line, for tests and debugging.
func (e Event) String() string {
	var b strings.Builder
	b.WriteString(e.Type.String())
	b.WriteString(" tenant=")
	b.WriteString(e.Tenant)
	if e.ClientID != "" {
		b.WriteString(" client=" + e.ClientID)
	}
	if e.User != "" {
		b.WriteString(" user=" + e.User)
	}
	if e.Reason != 0 {
		b.WriteString(" reason=0x" + strconv.FormatUint(uint64(e.Reason), 16))
	}
	if e.Detail != "" {
		b.WriteString(" detail=" + e.Detail)
	}
	if e.Count != 0 {
		b.WriteString(" count=" + strconv.FormatUint(e.Count, 10))
	}
	return b.String()
}
