package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/acl"
	"github.com/skybridge-mq/skybridge/impl/auth"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/event"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// endpoint is a test HTTP endpoint whose behaviour the test switches.
type endpoint struct {
	srv      *httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	handle   func(w http.ResponseWriter, body []byte, r *http.Request)
	bodies   [][]byte
	release  chan struct{}
}

func newEndpoint(t *testing.T) *endpoint {
	e := &endpoint{release: make(chan struct{})}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.requests.Add(1)
		body, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		e.bodies = append(e.bodies, body)
		h := e.handle
		e.mu.Unlock()
		h(w, body, r)
	}))
	t.Cleanup(func() {
		close(e.release)
		e.srv.Close()
	})
	return e
}

func (e *endpoint) set(h func(w http.ResponseWriter, body []byte, r *http.Request)) {
	e.mu.Lock()
	e.handle = h
	e.mu.Unlock()
}

func (e *endpoint) reply(status int, body string) {
	e.set(func(w http.ResponseWriter, _ []byte, _ *http.Request) {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})
}

// stuck makes the endpoint answer nothing until the client gives up.
func (e *endpoint) stuck() {
	e.set(func(w http.ResponseWriter, _ []byte, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-e.release:
		}
	})
}

func (e *endpoint) lastBody() []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.bodies) == 0 {
		return nil
	}
	return e.bodies[len(e.bodies)-1]
}

var t0 = time.Unix(1_800_000_000, 0)

func areq(user, pw string) *broker.AuthRequest {
	return &broker.AuthRequest{ClientID: "c1", Username: user, HasUser: user != "", Password: []byte(pw),
		Listener: "tcp", DefaultTenant: "dflt", Remote: "127.0.0.1:1234", CertSubject: "CN=x"}
}

func newAuth(t *testing.T, e *endpoint, clock env.Clock, mod func(*AuthConfig)) *Authenticator {
	t.Helper()
	cfg := AuthConfig{Endpoint: Endpoint{URL: e.srv.URL, Timeout: 5 * time.Second, Headers: map[string]string{"Authorization": "Bearer k"}},
		Clock: clock}
	if mod != nil {
		mod(&cfg)
	}
	a, err := NewAuthenticator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAuthenticatorAnswers(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t)
	clock := env.NewManualClock(t0)
	a := newAuth(t, e, clock, func(c *AuthConfig) { c.Cache.Size = -1 })
	var header string
	type res struct {
		Code         packet.ReasonCode
		Tenant, User string
		Recognised   bool
		Expires      int64
		HasACL       bool
	}
	tests := []struct {
		name string
		body string
		user string
		want res
	}{
		{"allow with everything", `{"result":"allow","tenant":"acme","user":"bob","expires_at":1800000600,"acl":{"publish":["a/%c"]}}`, "x", res{0, "acme", "bob", true, 1800000600, true}},
		{"allow, tenant from the user name", `{"result":"allow"}`, "t/u", res{0, "t", "u", true, 0, false}},
		{"allow, listener tenant", `{"result":"allow"}`, "u", res{0, "dflt", "u", true, 0, false}},
		{"deny", `{"result":"deny"}`, "u", res{packet.BadUserNameOrPassword, "", "", true, 0, false}},
		{"deny banned", `{"result":"deny","reason":138}`, "u", res{packet.Banned, "", "", true, 0, false}},
		{"deny with a code CONNACK cannot carry", `{"result":"deny","reason":142}`, "u", res{packet.BadUserNameOrPassword, "", "", true, 0, false}},
		{"deny with a success code", `{"result":"deny","reason":0}`, "u", res{packet.BadUserNameOrPassword, "", "", true, 0, false}},
		{"ignore", `{"result":"ignore"}`, "u", res{0, "", "", false, 0, false}},
		{"unknown result", `{"result":"maybe"}`, "u", res{packet.ServerUnavailable, "", "", true, 0, false}},
		{"bad acl", `{"result":"allow","acl":{"publish":["a/#/b"]}}`, "u", res{packet.ServerUnavailable, "", "", true, 0, false}},
		{"not JSON", `allow`, "u", res{packet.ServerUnavailable, "", "", true, 0, false}},
	}
	for _, tc := range tests {
		e.set(func(w http.ResponseWriter, _ []byte, r *http.Request) {
			header = r.Header.Get("Authorization")
			_, _ = io.WriteString(w, tc.body)
		})
		id, ok := a.Decide(areq(tc.user, "s3cret"))
		got := res{id.Code, id.Tenant, id.User, ok, 0, id.ACL != nil}
		if !id.Expires.IsZero() {
			got.Expires = id.Expires.Unix()
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
	if header != "Bearer k" {
		t.Errorf("Authorization header %q", header)
	}
	var sent map[string]any
	if err := json.Unmarshal(e.lastBody(), &sent); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"clientid": "c1", "username": "u", "password": "czNjcmV0", "listener": "tcp",
		"remote": "127.0.0.1:1234", "cert_subject": "CN=x", "default_tenant": "dflt"}
	if d := cmp.Diff(want, sent); d != "" {
		t.Errorf("request body (-want +got):\n%s", d)
	}
	// "ignore" through Authenticate is a refusal; in a Chain the next decides.
	e.reply(200, `{"result":"ignore"}`)
	if code := a.Authenticate(areq("u", "p")).Code; code != packet.BadUserNameOrPassword {
		t.Errorf("ignore alone: %v", code)
	}
	chain := &auth.Chain{Deciders: []auth.Decider{a}, AllowAnonymous: []string{"tcp"}}
	if ar := chain.Authenticate(areq("", "")); ar.Code != 0 || ar.Tenant != "dflt" {
		t.Errorf("ignore then anonymous: %+v", ar)
	}
	for _, status := range []int{500, 404, 302} {
		e.reply(status, `{"result":"allow"}`)
		if code := a.Authenticate(areq("u", "p")).Code; code != packet.ServerUnavailable {
			t.Errorf("status %d: %v", status, code)
		}
	}
	e.reply(200, `{"result":"allow","user":"`+string(make([]byte, maxResponse))+`"}`)
	if code := a.Authenticate(areq("u", "p")).Code; code != packet.ServerUnavailable {
		t.Errorf("oversize answer: %v", code)
	}
}

func TestAuthenticatorCache(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t)
	clock := env.NewManualClock(t0)
	a := newAuth(t, e, clock, func(c *AuthConfig) {
		c.Cache = CacheConfig{Size: 2, AllowTTL: time.Minute, DenyTTL: 10 * time.Second}
	})
	e.set(func(w http.ResponseWriter, body []byte, _ *http.Request) {
		var r authRequest
		_ = json.Unmarshal(body, &r)
		if string(r.Password) == "good" {
			_, _ = io.WriteString(w, `{"result":"allow","tenant":"acme"}`)
			return
		}
		_, _ = io.WriteString(w, `{"result":"deny"}`)
	})
	check := func(user, pw string, code packet.ReasonCode, requests int64) {
		t.Helper()
		if got := a.Authenticate(areq(user, pw)).Code; got != code {
			t.Fatalf("%s/%s: %v, want %v", user, pw, got, code)
		}
		if n := e.requests.Load(); n != requests {
			t.Fatalf("%s/%s: %d requests, want %d", user, pw, n, requests)
		}
	}
	check("u", "good", 0, 1)
	check("u", "good", 0, 1) // hit
	other := areq("u", "good")
	other.Remote = "10.0.0.1:9" // the remote address is not part of the key
	if a.Authenticate(other).Code != 0 || e.requests.Load() != 1 {
		t.Fatal("another remote address missed the cache")
	}
	check("u", "bad", packet.BadUserNameOrPassword, 2) // the password is part of the key
	check("u", "bad", packet.BadUserNameOrPassword, 2)
	clock.Advance(11 * time.Second) // the deny expires, the allow does not
	check("u", "bad", packet.BadUserNameOrPassword, 3)
	check("u", "good", 0, 3)
	clock.Advance(time.Minute)
	check("u", "good", 0, 4)
	// LRU bound: a third key pushes out the least recently used.
	check("v", "good", 0, 5)
	if n := a.Stats().CacheLen; n != 2 {
		t.Errorf("cache holds %d, bound 2", n)
	}
	check("u", "bad", packet.BadUserNameOrPassword, 6) // was pushed out
	st := a.Stats()
	if st.CacheHits != 4 || st.Requests != 6 || st.Errors != 0 {
		t.Errorf("stats %+v", st)
	}
	// expires_at shortens the cache TTL.
	e.reply(200, fmt.Sprintf(`{"result":"allow","expires_at":%d}`, clock.Now().Add(5*time.Second).Unix()))
	check("w", "x", 0, 7)
	check("w", "x", 0, 7)
	clock.Advance(5 * time.Second)
	check("w", "x", 0, 8)
}

func TestAuthenticatorTimeout(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t)
	e.stuck()
	a := newAuth(t, e, env.NewManualClock(t0), func(c *AuthConfig) { c.Timeout = 50 * time.Millisecond })
	start := time.Now()
	if code := a.Authenticate(areq("u", "p")).Code; code != packet.ServerUnavailable {
		t.Errorf("timeout: %v", code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v with a 50ms timeout", d)
	}
	if st := a.Stats(); st.Errors != 1 || st.Requests != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestAuthenticatorBreaker(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t)
	clock := env.NewManualClock(t0)
	a := newAuth(t, e, clock, func(c *AuthConfig) {
		c.Breaker = BreakerConfig{Failures: 3, Cooldown: 30 * time.Second, WhenOpen: AllowCached}
		c.Cache = CacheConfig{AllowTTL: time.Second, DenyTTL: time.Second}
	})
	// Warm the cache with an allow for "known", then let it go stale.
	e.reply(200, `{"result":"allow"}`)
	if a.Authenticate(areq("known", "p")).Code != 0 {
		t.Fatal("allow refused")
	}
	clock.Advance(2 * time.Second)
	e.reply(503, "")
	for i := range 3 {
		if code := a.Authenticate(areq(fmt.Sprint("x", i), "p")).Code; code != packet.ServerUnavailable {
			t.Fatalf("failure %d: %v", i, code)
		}
	}
	if st := a.Stats(); st.Breaker != Open || st.BreakerOpens != 1 {
		t.Fatalf("after 3 failures: %+v", st)
	}
	n := e.requests.Load()
	if code := a.Authenticate(areq("new", "p")).Code; code != packet.ServerUnavailable {
		t.Errorf("open, unknown client: %v", code)
	}
	if code := a.Authenticate(areq("known", "p")).Code; code != 0 {
		t.Errorf("open, stale allow with AllowCached: %v", code)
	}
	if e.requests.Load() != n {
		t.Error("requests sent while the breaker is open")
	}
	// After the cooldown one probe goes out; it fails: open again.
	clock.Advance(30 * time.Second)
	a.Authenticate(areq("new", "p"))
	if e.requests.Load() != n+1 || a.Stats().Breaker != Open || a.Stats().BreakerOpens != 2 {
		t.Fatalf("failed probe: %d requests, %+v", e.requests.Load()-n, a.Stats())
	}
	// The next probe succeeds: closed.
	clock.Advance(30 * time.Second)
	e.reply(200, `{"result":"allow"}`)
	if a.Authenticate(areq("new", "p")).Code != 0 || a.Stats().Breaker != Closed {
		t.Fatalf("successful probe: %+v", a.Stats())
	}
	st := a.Stats()
	if st.Rejected != 2 || st.StaleHits != 1 {
		t.Errorf("stats %+v", st)
	}

	// With WhenOpen Deny, a stale allow is not used.
	d := newAuth(t, e, clock, func(c *AuthConfig) {
		c.Breaker = BreakerConfig{Failures: 1}
		c.Cache = CacheConfig{AllowTTL: time.Second}
	})
	e.reply(200, `{"result":"allow"}`)
	d.Authenticate(areq("known", "p"))
	clock.Advance(2 * time.Second)
	e.reply(500, "")
	if code := d.Authenticate(areq("known", "p")).Code; code != packet.ServerUnavailable {
		t.Errorf("Deny policy used a stale allow: %v", code)
	}
}

func TestAuthenticatorConfig(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "ftp://x", "http://", "::"} {
		if _, err := NewAuthenticator(AuthConfig{Endpoint: Endpoint{URL: u}}); err == nil {
			t.Errorf("URL %q accepted", u)
		}
	}
	if _, err := NewAuthorizer(AuthzConfig{Endpoint: Endpoint{URL: "http://127.0.0.1:1", Timeout: -1}}); err == nil {
		t.Error("negative timeout accepted")
	}
	if _, err := NewSink(SinkConfig{Endpoint: Endpoint{URL: "x"}}); err == nil {
		t.Error("bad sink URL accepted")
	}
	for s, want := range map[BreakerState]string{Closed: "closed", Open: "open", HalfOpen: "half-open", 9: "BreakerState(9)"} {
		if s.String() != want {
			t.Errorf("%d: %q", s, s.String())
		}
	}
}

func TestAuthorizer(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t)
	clock := env.NewManualClock(t0)
	z, err := NewAuthorizer(AuthzConfig{Endpoint: Endpoint{URL: e.srv.URL, Timeout: 5 * time.Second}, Clock: clock,
		Cache: CacheConfig{AllowTTL: time.Minute, DenyTTL: time.Second}, Breaker: BreakerConfig{Failures: 2, WhenOpen: AllowCached}})
	if err != nil {
		t.Fatal(err)
	}
	var seen []authzRequest
	var mu sync.Mutex
	e.set(func(w http.ResponseWriter, body []byte, _ *http.Request) {
		var r authzRequest
		_ = json.Unmarshal(body, &r)
		mu.Lock()
		seen = append(seen, r)
		mu.Unlock()
		if r.Topic == "ok" || r.Topic == "ok/#" {
			_, _ = io.WriteString(w, `{"result":"allow"}`)
			return
		}
		_, _ = io.WriteString(w, `{"result":"deny"}`)
	})
	c := &acl.Client{Tenant: "acme", User: "u", ClientID: "c1"}
	var az acl.Authorizer = z
	got := []bool{
		az.CanPublish(c, []byte("ok"), false),
		az.CanPublish(c, []byte("ok"), false), // hit
		az.CanPublish(c, []byte("ok"), true),  // retain is another key
		az.CanPublish(c, []byte("no"), false),
		az.CanSubscribe(c, []byte("ok/#")),
		az.CanSubscribe(c, []byte("ok/#")),
		az.CanPublish(nil, []byte("ok"), false),
	}
	if d := cmp.Diff([]bool{true, true, true, false, true, true, false}, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	wantSeen := []authzRequest{
		{Tenant: "acme", User: "u", ClientID: "c1", Action: "publish", Topic: "ok"},
		{Tenant: "acme", User: "u", ClientID: "c1", Action: "publish", Topic: "ok", Retain: true},
		{Tenant: "acme", User: "u", ClientID: "c1", Action: "publish", Topic: "no"},
		{Tenant: "acme", User: "u", ClientID: "c1", Action: "subscribe", Topic: "ok/#"},
	}
	mu.Lock()
	if d := cmp.Diff(wantSeen, seen); d != "" {
		t.Errorf("requests (-want +got):\n%s", d)
	}
	mu.Unlock()
	// Failures open the breaker; a stale allow is used, the rest denied.
	clock.Advance(2 * time.Minute)
	e.reply(500, "")
	if z.CanPublish(c, []byte("x"), false) || z.CanPublish(c, []byte("y"), false) {
		t.Error("allowed on failure")
	}
	if z.Stats().Breaker != Open {
		t.Fatalf("breaker %v", z.Stats().Breaker)
	}
	if !z.CanPublish(c, []byte("ok"), false) {
		t.Error("stale allow not used while open")
	}
	if z.CanPublish(c, []byte("no"), false) {
		t.Error("stale deny turned into an allow")
	}
	// A Set and the webhook together: both must allow.
	set, _ := acl.NewSet(acl.Config{Global: []acl.RuleConfig{{Permission: "deny", Action: "publish", Topics: []string{"ok"}}}})
	if (acl.AllOf{set, z}).CanPublish(c, []byte("ok"), false) {
		t.Error("AllOf allowed what the Set denies")
	}
}

// TestAuthorizerHitDoesNotAllocate (not parallel: AllocsPerRun).
func TestAuthorizerHitDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	e := newEndpoint(t)
	e.reply(200, `{"result":"allow"}`)
	z, err := NewAuthorizer(AuthzConfig{Endpoint: Endpoint{URL: e.srv.URL}, Clock: env.NewManualClock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	c := &acl.Client{Tenant: "acme", User: "u", ClientID: "c1"}
	topic := []byte("devices/c1/up")
	z.CanPublish(c, topic, false)
	if n := testing.AllocsPerRun(100, func() { z.CanPublish(c, topic, false) }); n != 0 {
		t.Errorf("cache hit: %v allocations", n)
	}
}

func BenchmarkAuthorizerHit(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"result":"allow"}`)
	}))
	defer srv.Close()
	z, err := NewAuthorizer(AuthzConfig{Endpoint: Endpoint{URL: srv.URL}, Clock: env.NewManualClock(t0)})
	if err != nil {
		b.Fatal(err)
	}
	c := &acl.Client{Tenant: "acme", User: "u", ClientID: "c1"}
	topic := []byte("devices/c1/up")
	z.CanPublish(c, topic, false)
	b.ReportAllocs()
	for b.Loop() {
		if !z.CanPublish(c, topic, false) {
			b.Fatal("denied")
		}
	}
}

// --- event sink ---

func decodeBatches(t *testing.T, e *endpoint) [][]event.Event {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	var out [][]event.Event
	for _, b := range e.bodies {
		var batch []event.Event
		if err := json.Unmarshal(b, &batch); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		out = append(out, batch)
	}
	return out
}

func ev(i int) event.Event {
	return event.NewThrottled(t0, event.Who{Tenant: "acme", ClientID: fmt.Sprint("c", i)}, "connect_rate")
}

// sentBatches returns the batches e received and their sizes, and fails
// if the events in them are not c0, c1, ... in order.
func sentBatches(t *testing.T, e *endpoint) ([][]event.Event, []int) {
	t.Helper()
	batches := decodeBatches(t, e)
	var sizes []int
	i := 0
	for _, b := range batches {
		sizes = append(sizes, len(b))
		for _, x := range b {
			if x.ClientID != fmt.Sprint("c", i) {
				t.Fatalf("event %d is %s: order lost (batch sizes %v)", i, x.ClientID, sizes)
			}
			i++
		}
	}
	return batches, sizes
}

// TestSinkBatches: a full batch leaves at once, in order; the rest waits
// for its age or for Close.
//
// Where a batch ends depends on when events come, which a test cannot
// pin with a short BatchAge: with 50ms, the test's goroutine descheduled
// for longer than that after the first Emit (a loaded machine under
// -race) sent it alone, and the sizes came out [1 10 10 4]. So the full
// batches are checked with an age that never passes, and the age with
// fewer events than a batch holds.
func TestSinkBatches(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t)
	e.reply(200, "")
	s, err := NewSink(SinkConfig{Endpoint: Endpoint{URL: e.srv.URL}, BatchSize: 10, BatchAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 25 {
		s.Emit(ev(i))
	}
	// Two full batches go without waiting for their age (an hour).
	waitFor(t, "20 events sent", func() bool { return s.Stats().Sent == 20 })
	if _, sizes := sentBatches(t, e); !slices.Equal(sizes, []int{10, 10}) {
		t.Errorf("batch sizes %v before Close, want [10 10]", sizes)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	batches, sizes := sentBatches(t, e)
	if !slices.Equal(sizes, []int{10, 10, 5}) {
		t.Errorf("batch sizes %v after Close, want [10 10 5]", sizes)
	}
	if got := batches[0][0]; got.Type != event.Throttled || got.Tenant != "acme" || !got.Time.Equal(t0) {
		t.Errorf("first event %+v", got)
	}
	if st := s.Stats(); st.Sent != 25 || st.Dropped != 0 || st.Failed != 0 || st.Batches != 3 {
		t.Errorf("stats %+v", st)
	}

	// A batch short of BatchSize leaves once its first event is BatchAge
	// old, without Close.
	e2 := newEndpoint(t)
	e2.reply(200, "")
	s2, err := NewSink(SinkConfig{Endpoint: Endpoint{URL: e2.srv.URL}, BatchSize: 10, BatchAge: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(context.Background())
	for i := range 3 {
		s2.Emit(ev(i))
	}
	waitFor(t, "3 events sent by their age", func() bool { return s2.Stats().Sent == 3 })
	sentBatches(t, e2)
	if st := s2.Stats(); st.Dropped != 0 || st.Failed != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestSinkRetries(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t)
	var fails atomic.Int64
	fails.Store(2)
	e.set(func(w http.ResponseWriter, _ []byte, _ *http.Request) {
		if fails.Add(-1) >= 0 {
			w.WriteHeader(503)
		}
	})
	s, err := NewSink(SinkConfig{Endpoint: Endpoint{URL: e.srv.URL}, BatchSize: 5, BatchAge: time.Millisecond,
		Backoff: time.Millisecond, MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	for i := range 5 {
		s.Emit(ev(i))
	}
	waitFor(t, "the batch delivered after retries", func() bool { return s.Stats().Sent == 5 })
	if st := s.Stats(); st.Retries != 2 || st.Errors != 2 || st.Failed != 0 {
		t.Errorf("stats %+v", st)
	}
	// A batch that fails every try is dropped and counted.
	e.reply(500, "")
	s.Emit(ev(9))
	waitFor(t, "the batch given up", func() bool { return s.Stats().Failed == 1 })
	if st := s.Stats(); st.Retries != 5 {
		t.Errorf("retries %d, want 2+3", st.Retries)
	}
}

// TestSinkStuckEndpoint: with an endpoint that never answers, Emit stays
// non-blocking and the overflow is dropped and counted.
func TestSinkStuckEndpoint(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t)
	e.stuck()
	// The first two events go as one full batch: with a short BatchAge the
	// first could leave alone before the second came (it did under load).
	s, err := NewSink(SinkConfig{Endpoint: Endpoint{URL: e.srv.URL, Timeout: time.Hour}, BatchSize: 2,
		BatchAge: time.Hour, QueueSize: 8, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	s.Emit(ev(0))
	s.Emit(ev(1))
	waitFor(t, "the first batch in flight", func() bool { return s.Stats().InFlight == 2 })
	start := time.Now()
	for i := range 10000 {
		s.Emit(ev(i))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("10000 Emits took %v", d)
	}
	st := s.Stats()
	if st.Queued != 8 || st.Dropped != 10000-8 || st.Sent != 0 {
		t.Errorf("stats %+v", st)
	}
	// Close gives up at its deadline: the in-flight batch is cancelled and
	// what was queued is counted as failed.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); err == nil {
		t.Error("Close returned nil with a stuck endpoint")
	}
	st = s.Stats()
	if st.Failed != 10 || st.Sent != 0 {
		t.Errorf("after Close: %+v", st)
	}
	s.Emit(ev(0))
	if s.Stats().Dropped != 10000-8+1 {
		t.Error("an Emit after Close was not counted as dropped")
	}
}

func TestSinkCloseFlushes(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t)
	e.reply(200, "")
	s, err := NewSink(SinkConfig{Endpoint: Endpoint{URL: e.srv.URL}, BatchSize: 3, BatchAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		s.Emit(ev(i))
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Sent != 7 || st.Queued != 0 {
		t.Errorf("after Close: %+v", st)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	var sink event.Sink = s // it is an event.Sink
	_ = sink
}
