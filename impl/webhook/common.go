package webhook

import (
	"bytes"
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skybridge-mq/skybridge/impl/env"
)

// maxResponse bounds the response bodies read.
const maxResponse = 64 << 10

// Endpoint is where requests go.
type Endpoint struct {
	// URL is an http or https URL.
	URL string
	// Timeout bounds each request (0: 2s).
	Timeout time.Duration
	// Headers are added to every request (for example Authorization).
	Headers map[string]string
	// Client sends the requests (nil: a client of its own).
	Client *http.Client
}

func (e *Endpoint) check() error {
	u, err := url.Parse(e.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook: URL %q is not an http(s) URL", e.URL)
	}
	if e.Timeout < 0 {
		return errors.New("webhook: negative timeout")
	}
	if e.Timeout == 0 {
		e.Timeout = 2 * time.Second
	}
	if e.Client == nil {
		e.Client = &http.Client{}
	}
	return nil
}

// errStatus is a response whose status is not 200.
type errStatus int

func (e errStatus) Error() string { return fmt.Sprintf("webhook: status %d", int(e)) }

// post sends body as JSON and decodes a 200 response into out (when out is
// not nil).
func (e *Endpoint) post(ctx context.Context, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, e.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range e.Headers {
		req.Header.Set(k, v)
	}
	resp, err := e.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	lr := io.LimitReader(resp.Body, maxResponse+1)
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, lr)
		return errStatus(resp.StatusCode)
	}
	b, err := io.ReadAll(lr)
	if err != nil {
		return err
	}
	if len(b) > maxResponse {
		return errors.New("webhook: response too large")
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// OpenPolicy says what to do while the breaker is open (and when a request
// fails) for a client without a fresh cached decision.
type OpenPolicy int

// Open policies.
const (
	// Deny refuses (authentication: 0x88 Server unavailable).
	Deny OpenPolicy = iota
	// AllowCached uses an allow that is still cached after its TTL, and
	// refuses the rest.
	AllowCached
)

// BreakerState is the state of a circuit breaker.
type BreakerState int32

// Breaker states.
const (
	Closed BreakerState = iota
	Open
	HalfOpen
)

func (s BreakerState) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("BreakerState(%d)", int32(s))
}

// breaker opens after threshold consecutive failures, for cooldown; then
// lets one probe through (half-open).
type breaker struct {
	clock     env.Clock
	threshold int
	cooldown  time.Duration

	mu       sync.Mutex
	state    BreakerState
	failures int
	openedAt time.Time
	probing  bool
	opens    atomic.Uint64
}

func newBreaker(clock env.Clock, threshold int, cooldown time.Duration) *breaker {
	if threshold <= 0 {
		threshold = 5
	}
	if cooldown <= 0 {
		cooldown = 30 * time.Second
	}
	return &breaker{clock: clock, threshold: threshold, cooldown: cooldown}
}

// allow reports whether a request may go out now.
func (b *breaker) allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case Closed:
		return true
	case Open:
		if b.clock.Now().Sub(b.openedAt) < b.cooldown {
			return false
		}
		b.state, b.probing = HalfOpen, true
		return true
	default: // half-open: one probe at a time
		if b.probing {
			return false
		}
		b.probing = true
		return true
	}
}

func (b *breaker) success() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.state, b.failures, b.probing = Closed, 0, false
}

func (b *breaker) failure() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	if b.state == HalfOpen || (b.state == Closed && b.failures >= b.threshold) {
		b.state, b.openedAt, b.probing = Open, b.clock.Now(), false
		b.opens.Add(1)
	}
}

func (b *breaker) State() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// cache is a bounded LRU of decisions with expiry instants. Entries past
// their expiry stay (stale) until pushed out, for AllowCached.
type cache[V any] struct {
	mu  sync.Mutex
	max int
	ll  list.List
	m   map[string]*list.Element
}

type cacheItem[V any] struct {
	key     string
	val     V
	expires time.Time
}

func newCache[V any](max int) *cache[V] {
	return &cache[V]{max: max, m: make(map[string]*list.Element)}
}

// get looks key up (as bytes, without allocating a string for it) and
// reports whether it was found and whether it is still fresh at now.
func (c *cache[V]) get(key []byte, now time.Time) (v V, found, fresh bool) {
	if c.max <= 0 {
		return v, false, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[string(key)]
	if !ok {
		return v, false, false
	}
	c.ll.MoveToFront(el)
	it := el.Value.(*cacheItem[V])
	return it.val, true, now.Before(it.expires)
}

func (c *cache[V]) put(key []byte, v V, expires time.Time) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[string(key)]; ok {
		it := el.Value.(*cacheItem[V])
		it.val, it.expires = v, expires
		c.ll.MoveToFront(el)
		return
	}
	it := &cacheItem[V]{key: string(key), val: v, expires: expires}
	c.m[it.key] = c.ll.PushFront(it)
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.m, old.Value.(*cacheItem[V]).key)
	}
}

func (c *cache[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// CacheConfig configures a decision cache.
type CacheConfig struct {
	// Size bounds the entries (0: 10000; negative: no cache).
	Size int
	// AllowTTL and DenyTTL are how long an allow and a deny are used
	// (0: 60s and 10s).
	AllowTTL time.Duration
	DenyTTL  time.Duration
}

func (c *CacheConfig) defaults() {
	if c.Size == 0 {
		c.Size = 10000
	}
	if c.AllowTTL == 0 {
		c.AllowTTL = time.Minute
	}
	if c.DenyTTL == 0 {
		c.DenyTTL = 10 * time.Second
	}
}

// BreakerConfig configures a circuit breaker.
type BreakerConfig struct {
	// Failures is how many consecutive failures open it (0: 5).
	Failures int
	// Cooldown is how long it stays open before a probe (0: 30s).
	Cooldown time.Duration
	// WhenOpen says what to do without a fresh cached decision while it is
	// open, and when a request fails.
	WhenOpen OpenPolicy
}

// counters shared by the authenticator and the authorizer.
type counters struct {
	requests, errors, hits, misses, stale, rejected atomic.Uint64
}

// Stats are a webhook client's counters.
type Stats struct {
	Requests     uint64 // requests sent
	Errors       uint64 // requests that failed (timeout, status, body)
	CacheHits    uint64 // fresh cached decisions used
	CacheMisses  uint64
	StaleHits    uint64 // stale allows used (AllowCached)
	Rejected     uint64 // refused without a request because the breaker was open
	BreakerOpens uint64 // times the breaker opened
	Breaker      BreakerState
	CacheLen     int
}

func (c *counters) stats(b *breaker, n int) Stats {
	return Stats{Requests: c.requests.Load(), Errors: c.errors.Load(), CacheHits: c.hits.Load(),
		CacheMisses: c.misses.Load(), StaleHits: c.stale.Load(), Rejected: c.rejected.Load(),
		BreakerOpens: b.opens.Load(), Breaker: b.State(), CacheLen: n}
}
