package console

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"

	"github.com/skybridge-mq/skybridge/impl/env"
)

// echoAPI answers with what it was asked: the path it got and whether a
// cookie or the console's user header reached it.
var echoAPI = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"method": r.Method, "path": r.URL.RequestURI(),
		"cookie": r.Header.Get("Cookie"), "user": r.Header.Get("X-Skybridge-Console-User")})
})

type rig struct {
	t     *testing.T
	c     *Console
	clock *env.ManualClock
}

func newRig(t *testing.T, adjust func(*Config)) *rig {
	t.Helper()
	clock := env.NewManualClock(time.Unix(1_700_000_000, 0))
	cfg := Config{Title: "Test", Sections: []Section{SectionBroker}, API: echoAPI, Token: "s3cret",
		Clock: clock, Rand: env.NewRand(7)}
	if adjust != nil {
		adjust(&cfg)
	}
	return &rig{t: t, c: New(cfg), clock: clock}
}

// do sends a request from remote (default 127.0.0.1) with the cookie and
// headers given.
func (r *rig) do(method, path, body string, cookie *http.Cookie, headers map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://admin.example"+path, strings.NewReader(body))
	req.Host = "admin.example"
	req.RemoteAddr = "127.0.0.1:5555"
	for k, v := range headers {
		if k == "RemoteAddr" {
			req.RemoteAddr = v
			continue
		}
		req.Header.Set(k, v)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	w := httptest.NewRecorder()
	r.c.ServeHTTP(w, req)
	return w
}

// login logs in with body and returns the cookie and the CSRF token.
func (r *rig) login(body string) (*http.Cookie, string) {
	r.t.Helper()
	w := r.do("POST", "/console/login", body, nil, nil)
	if w.Code != http.StatusOK {
		r.t.Fatalf("login %s: %d %s", body, w.Code, w.Body)
	}
	var info struct{ CSRF string }
	_ = json.Unmarshal(w.Body.Bytes(), &info)
	res := w.Result()
	for _, ck := range res.Cookies() {
		if ck.Name == cookieName {
			if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/console/" {
				r.t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/console/", ck)
			}
			return ck, info.CSRF
		}
	}
	r.t.Fatal("no session cookie")
	return nil, ""
}

func body(w *httptest.ResponseRecorder) map[string]any {
	var m map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &m)
	return m
}

func TestLoginAndAPI(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	if w := r.do("GET", "/console/api/v1/tenants", "", nil, nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("API without a session: %d", w.Code)
	}
	if w := r.do("POST", "/console/login", `{"token":"wrong"}`, nil, nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", w.Code)
	}
	ck, csrf := r.login(`{"token":"s3cret"}`)
	w := r.do("GET", "/console/api/v1/tenants?x=1", "", ck, nil)
	if w.Code != http.StatusOK {
		t.Fatalf("API with a session: %d %s", w.Code, w.Body)
	}
	want := map[string]any{"method": "GET", "path": "/api/v1/tenants?x=1", "cookie": "", "user": "admin"}
	if d := cmp.Diff(want, body(w)); d != "" {
		t.Errorf("what the API got (-want +got):\n%s", d)
	}
	// A change needs the CSRF token.
	if w := r.do("DELETE", "/console/api/v1/tenants/t/sessions/c", "", ck, nil); w.Code != http.StatusForbidden {
		t.Errorf("DELETE without the CSRF token: %d", w.Code)
	}
	if w := r.do("DELETE", "/console/api/v1/tenants/t/sessions/c", "", ck, map[string]string{"X-CSRF-Token": "nope"}); w.Code != http.StatusForbidden {
		t.Errorf("DELETE with a wrong CSRF token: %d", w.Code)
	}
	if w := r.do("DELETE", "/console/api/v1/tenants/t/sessions/c", "", ck, map[string]string{"X-CSRF-Token": csrf,
		"Origin": "https://evil.example"}); w.Code != http.StatusForbidden {
		t.Errorf("DELETE from another origin: %d", w.Code)
	}
	if w := r.do("DELETE", "/console/api/v1/tenants/t/sessions/c", "", ck, map[string]string{"X-CSRF-Token": csrf,
		"Origin": "http://admin.example", "Sec-Fetch-Site": "same-origin"}); w.Code != http.StatusOK {
		t.Errorf("DELETE with the CSRF token: %d %s", w.Code, w.Body)
	}
	if n := r.c.Stats().RefusedCSRF; n != 3 {
		t.Errorf("refused CSRF = %d, want 3", n)
	}
	// Logout ends the session.
	if w := r.do("POST", "/console/logout", "", ck, map[string]string{"X-CSRF-Token": csrf}); w.Code != http.StatusNoContent {
		t.Fatalf("logout: %d", w.Code)
	}
	if w := r.do("GET", "/console/api/v1/tenants", "", ck, nil); w.Code != http.StatusUnauthorized {
		t.Errorf("API after logout: %d", w.Code)
	}
}

// A login form posted from another site is refused (login CSRF).
func TestLoginFromAnotherSiteRefused(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	for _, h := range []map[string]string{{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}} {
		if w := r.do("POST", "/console/login", `{"token":"s3cret"}`, nil, h); w.Code != http.StatusForbidden {
			t.Errorf("login with %v: %d, want 403", h, w.Code)
		}
	}
}

func TestUsers(t *testing.T) {
	t.Parallel()
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	users, err := ParseUsers([]byte("# console users\nalice:" + string(hash) + "\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, func(c *Config) { c.Users = users })
	if w := r.do("POST", "/console/login", `{"user":"alice","password":"nope"}`, nil, nil); w.Code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d", w.Code)
	}
	if w := r.do("POST", "/console/login", `{"user":"bob","password":"pw"}`, nil, nil); w.Code != http.StatusUnauthorized {
		t.Errorf("unknown user: %d", w.Code)
	}
	ck, _ := r.login(`{"user":"alice","password":"pw"}`)
	if got := body(r.do("GET", "/console/session", "", ck, nil))["user"]; got != "alice" {
		t.Errorf("session user %v", got)
	}
	for _, bad := range []string{"alice", "alice:notahash", ":x", "a:" + string(hash) + "\na:" + string(hash)} {
		if _, err := ParseUsers([]byte(bad)); err == nil {
			t.Errorf("ParseUsers(%q) accepted", bad)
		}
	}
}

// After five failures an address waits, longer with each failure; another
// address does not; a success clears the record.
func TestLoginThrottle(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	from := map[string]string{"RemoteAddr": "10.0.0.9:4000"}
	for i := range freeFails {
		if w := r.do("POST", "/console/login", `{"token":"x"}`, nil, from); w.Code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, w.Code)
		}
	}
	if w := r.do("POST", "/console/login", `{"token":"x"}`, nil, from); w.Code != http.StatusUnauthorized {
		t.Fatalf("sixth attempt (the first over): %d", w.Code)
	}
	w := r.do("POST", "/console/login", `{"token":"s3cret"}`, nil, from)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("attempt within the window: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	if w := r.do("POST", "/console/login", `{"token":"s3cret"}`, nil, map[string]string{"RemoteAddr": "10.0.0.10:4000"}); w.Code != http.StatusOK {
		t.Fatalf("another address: %d", w.Code)
	}
	r.clock.Advance(time.Second)
	if w := r.do("POST", "/console/login", `{"token":"x"}`, nil, from); w.Code != http.StatusUnauthorized {
		t.Fatalf("after the window: %d", w.Code)
	}
	if w := r.do("POST", "/console/login", `{"token":"s3cret"}`, nil, from); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "2" {
		t.Fatalf("the window doubled: %d %q", w.Code, w.Header().Get("Retry-After"))
	}
	r.clock.Advance(2 * time.Second)
	if w := r.do("POST", "/console/login", `{"token":"s3cret"}`, nil, from); w.Code != http.StatusOK {
		t.Fatalf("the right token after the window: %d", w.Code)
	}
	if w := r.do("POST", "/console/login", `{"token":"x"}`, nil, from); w.Code != http.StatusUnauthorized {
		t.Fatalf("after a success the count starts again: %d", w.Code)
	}
}

func TestSessionExpiryAndBound(t *testing.T) {
	t.Parallel()
	r := newRig(t, func(c *Config) { c.SessionTTL, c.MaxSessions = time.Hour, 2 })
	ck, _ := r.login(`{"token":"s3cret"}`)
	r.clock.Advance(59 * time.Minute)
	if w := r.do("GET", "/console/session", "", ck, nil); w.Code != http.StatusOK {
		t.Fatalf("within the TTL: %d", w.Code)
	}
	r.clock.Advance(59 * time.Minute) // the last request extended it
	if w := r.do("GET", "/console/session", "", ck, nil); w.Code != http.StatusOK {
		t.Fatalf("within the extended TTL: %d", w.Code)
	}
	r.clock.Advance(time.Hour)
	if w := r.do("GET", "/console/session", "", ck, nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("after the TTL: %d", w.Code)
	}
	a, _ := r.login(`{"token":"s3cret"}`)
	r.clock.Advance(time.Second)
	b, _ := r.login(`{"token":"s3cret"}`)
	r.clock.Advance(time.Second)
	r.do("GET", "/console/session", "", a, nil) // a is used more recently than b
	r.clock.Advance(time.Second)
	r.login(`{"token":"s3cret"}`) // a third: the least recently used goes
	if w := r.do("GET", "/console/session", "", b, nil); w.Code != http.StatusUnauthorized {
		t.Errorf("the least recently used session survived the bound: %d", w.Code)
	}
	if w := r.do("GET", "/console/session", "", a, nil); w.Code != http.StatusOK {
		t.Errorf("a recently used session was evicted: %d", w.Code)
	}
	if s := r.c.Stats(); s.Sessions != 2 || s.Evicted != 1 {
		t.Errorf("stats %+v", s)
	}
}

// With neither token nor users, loopback clients get in without
// credentials, others never.
func TestOpenOnLoopbackOnly(t *testing.T) {
	t.Parallel()
	r := newRig(t, func(c *Config) { c.Token = "" })
	if w := r.do("GET", "/console/session", "", nil, nil); w.Code != http.StatusUnauthorized || body(w)["open"] != true {
		t.Fatalf("session info: %d %s", w.Code, w.Body)
	}
	r.login(`{}`)
	if w := r.do("POST", "/console/login", `{}`, nil, map[string]string{"RemoteAddr": "192.0.2.1:1"}); w.Code != http.StatusUnauthorized {
		t.Errorf("a remote client without credentials: %d", w.Code)
	}
}

func TestPagesAndHeaders(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	if w := r.do("GET", "/console", "", nil, nil); w.Code != http.StatusFound || w.Header().Get("Location") != "/console/" {
		t.Errorf("/console: %d %q", w.Code, w.Header().Get("Location"))
	}
	w := r.do("GET", "/console/", "", nil, nil)
	if w.Code != http.StatusOK || !bytes.Contains(w.Body.Bytes(), []byte("/console/assets/app.js")) {
		t.Fatalf("index: %d", w.Code)
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options"} {
		if w.Header().Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}
	if bytes.Contains(w.Body.Bytes(), []byte("<script>")) {
		t.Error("the page holds an inline script (the policy forbids it)")
	}
	for _, f := range []string{"app.js", "broker.js", "chart.js", "style.css"} {
		w := r.do("GET", "/console/assets/"+f, "", nil, nil)
		b, _ := io.ReadAll(w.Body)
		if w.Code != http.StatusOK || len(b) == 0 {
			t.Errorf("%s: %d", f, w.Code)
		}
	}
	if w := r.do("POST", "/console/assets/app.js", "", nil, nil); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST to an asset: %d", w.Code)
	}
}
