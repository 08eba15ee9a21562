package console

import (
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/skybridge-mq/skybridge/impl/auth"
	"github.com/skybridge-mq/skybridge/impl/env"
)

//go:embed assets
var assets embed.FS

// Section names a part of the shell. The broker serves "broker" (and
// "cluster" when clustered), skybridge-cloud "fleet".
type Section string

// Sections of the shell.
const (
	SectionBroker  Section = "broker"
	SectionCluster Section = "cluster"
	SectionFleet   Section = "fleet"
)

// Config configures a Console.
type Config struct {
	// Title is the product name the shell shows.
	Title string
	// Sections are the parts of the shell to show, in order.
	Sections []Section
	// API serves the JSON API (paths /api/...), without authentication of
	// its own: the console authorises what it hands over.
	API http.Handler
	// Token, when set, logs in as user "admin".
	Token string
	// Users are user names with their bcrypt password hashes.
	Users map[string][]byte
	// Clock and Rand are the console's doors: session expiry and random
	// session identifiers (crypto/rand in production).
	Clock env.Clock
	Rand  io.Reader
	// SessionTTL is how long a session lives without a request (0: 8 h);
	// MaxSessions bounds them (0: 1024).
	SessionTTL  time.Duration
	MaxSessions int
	// Secure marks the cookie Secure (the listener is TLS).
	Secure bool
	Log    *slog.Logger
}

// Console is the web console's HTTP handler.
type Console struct {
	cfg   Config
	files http.Handler
	index []byte
	mu    sync.Mutex
	// sessions by identifier; evicted when expired or, over MaxSessions,
	// the least recently used.
	sessions map[string]*session
	throttle limiter
	// Stats.
	logins, failures, evicted, refusedCSRF uint64
}

type session struct {
	user    string
	csrf    string
	expires time.Time
	used    time.Time
}

const cookieName = "skybridge_console"

// New returns a console.
func New(cfg Config) *Console {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 1024
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Title == "" {
		cfg.Title = "Skybridge"
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is part of the binary
	}
	index, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		panic(err)
	}
	return &Console{cfg: cfg, files: http.FileServerFS(sub), index: index, sessions: map[string]*session{},
		throttle: limiter{entries: map[netip.Addr]*strikes{}}}
}

// Stats are the console's counters.
type Stats struct {
	Sessions    int    `json:"sessions"`
	Logins      uint64 `json:"logins"`
	Failures    uint64 `json:"login_failures"`
	Evicted     uint64 `json:"sessions_evicted"`
	RefusedCSRF uint64 `json:"refused_csrf"`
}

// Stats returns the console's counters.
func (c *Console) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Sessions: len(c.sessions), Logins: c.logins, Failures: c.failures, Evicted: c.evicted, RefusedCSRF: c.refusedCSRF}
}

// ServeHTTP implements http.Handler for the paths under /console/.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	path := r.URL.Path
	switch {
	case path == "/console" || path == "/console/":
		if path == "/console" {
			http.Redirect(w, r, "/console/", http.StatusFound)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(c.index)
	case strings.HasPrefix(path, "/console/assets/"):
		c.serveFile(w, r, strings.TrimPrefix(path, "/console/assets"))
	case path == "/console/login":
		c.login(w, r)
	case path == "/console/logout":
		c.logout(w, r)
	case path == "/console/session":
		c.sessionInfo(w, r)
	case strings.HasPrefix(path, "/console/api/"):
		c.api(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (c *Console) serveFile(w http.ResponseWriter, r *http.Request, name string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = name
	c.files.ServeHTTP(w, r2)
}

// login checks the credentials of a POST {"token"} or {"user","password"}
// and starts a session.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "POST only")
		return
	}
	if !sameOrigin(r) {
		c.countCSRF()
		writeError(w, http.StatusForbidden, "cross-site request refused")
		return
	}
	var body struct {
		Token    string `json:"token"`
		User     string `json:"user"`
		Password string `json:"password"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "a JSON body with token, or user and password, is required")
		return
	}
	now := c.cfg.Clock.Now()
	src := sourceOf(r)
	c.mu.Lock()
	wait := c.throttle.wait(src, now)
	c.mu.Unlock()
	if wait > 0 {
		w.Header().Set("Retry-After", retryAfter(wait))
		writeError(w, http.StatusTooManyRequests, "too many failed logins from this address: try again later")
		return
	}
	user, ok := c.check(body.Token, body.User, body.Password, src)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !ok {
		c.failures++
		c.throttle.fail(src, now)
		c.cfg.Log.Warn("console: login failed", "remote", r.RemoteAddr, "user", body.User)
		writeError(w, http.StatusUnauthorized, "wrong token, user name or password")
		return
	}
	c.throttle.forget(src)
	s := &session{user: user, csrf: c.random(), expires: now.Add(c.cfg.SessionTTL), used: now}
	id := c.random()
	c.sessions[id] = s
	c.logins++
	c.evictLocked(now)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/console/", HttpOnly: true,
		Secure: c.cfg.Secure, SameSite: http.SameSiteStrictMode})
	c.cfg.Log.Info("console: login", "remote", r.RemoteAddr, "user", user)
	writeJSON(w, http.StatusOK, c.infoLocked(s))
}

// check returns the user the credentials log in, if any.
func (c *Console) check(token, user, password string, src netip.Addr) (string, bool) {
	if c.cfg.Token == "" && len(c.cfg.Users) == 0 {
		// Nothing configured: loopback clients only, as for the admin API.
		return "admin", src.IsLoopback()
	}
	if token != "" {
		return "admin", c.cfg.Token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(c.cfg.Token)) == 1
	}
	hash, known := c.cfg.Users[user]
	if !known {
		hash = dummyHash // as long for an unknown user as for a wrong password
	}
	ok := bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
	return user, ok && known
}

// dummyHash is a bcrypt hash of nothing anyone types, compared against for
// unknown users.
var dummyHash = []byte("$2a$10$C6UzMDM.H6dfI/f/IKcEeO5qJ8m8i6r1H3ki5j8hYSEBv3QG/dhDS")

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "POST only")
		return
	}
	id, s := c.current(r)
	if s == nil || !c.csrfOK(r, s) {
		writeError(w, http.StatusForbidden, "no session or a missing CSRF token")
		return
	}
	c.mu.Lock()
	delete(c.sessions, id)
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/console/", MaxAge: -1, HttpOnly: true,
		Secure: c.cfg.Secure, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}

// sessionInfo tells the shell who is logged in, the CSRF token and what to
// show; 401 without a session.
func (c *Console) sessionInfo(w http.ResponseWriter, r *http.Request) {
	_, s := c.current(r)
	if s == nil {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "not logged in", "title": c.cfg.Title,
			"open": c.cfg.Token == "" && len(c.cfg.Users) == 0, "users": len(c.cfg.Users) > 0})
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	writeJSON(w, http.StatusOK, c.infoLocked(s))
}

func (c *Console) infoLocked(s *session) map[string]any {
	return map[string]any{"user": s.user, "csrf": s.csrf, "title": c.cfg.Title, "sections": c.cfg.Sections}
}

// api hands an authorised request to the API as /api/...
func (c *Console) api(w http.ResponseWriter, r *http.Request) {
	_, s := c.current(r)
	if s == nil {
		writeError(w, http.StatusUnauthorized, "not logged in")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !c.csrfOK(r, s) {
		c.countCSRF()
		writeError(w, http.StatusForbidden, "missing or wrong CSRF token")
		return
	}
	if c.cfg.API == nil {
		writeError(w, http.StatusNotFound, "no API")
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = strings.TrimPrefix(r.URL.Path, "/console")
	r2.URL.RawPath = ""
	r2.RequestURI = r2.URL.RequestURI()
	r2.Header.Del("Cookie") // the API needs none of the console's
	r2.Header.Set("X-Skybridge-Console-User", s.user)
	w.Header().Set("Cache-Control", "no-store")
	c.cfg.API.ServeHTTP(w, r2)
}

// current returns the request's live session, extending it.
func (c *Console) current(r *http.Request) (string, *session) {
	ck, err := r.Cookie(cookieName)
	if err != nil || ck.Value == "" {
		return "", nil
	}
	now := c.cfg.Clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[ck.Value]
	if s == nil {
		return "", nil
	}
	if !now.Before(s.expires) {
		delete(c.sessions, ck.Value)
		return "", nil
	}
	s.expires, s.used = now.Add(c.cfg.SessionTTL), now
	return ck.Value, s
}

// csrfOK checks a changing request: the session's token in X-CSRF-Token,
// and no sign of another site (Origin, Sec-Fetch-Site).
func (c *Console) csrfOK(r *http.Request, s *session) bool {
	got := r.Header.Get("X-CSRF-Token")
	c.mu.Lock()
	want := s.csrf
	c.mu.Unlock()
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1 && sameOrigin(r)
}

func (c *Console) countCSRF() {
	c.mu.Lock()
	c.refusedCSRF++
	c.mu.Unlock()
}

// sameOrigin reports whether the browser's headers, when present, say the
// request comes from a page of this host.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || !strings.EqualFold(u.Host, r.Host) {
			return false
		}
	}
	return true
}

// evictLocked drops expired sessions and, over the bound, the least
// recently used.
func (c *Console) evictLocked(now time.Time) {
	for id, s := range c.sessions {
		if !now.Before(s.expires) {
			delete(c.sessions, id)
		}
	}
	for len(c.sessions) > c.cfg.MaxSessions {
		var oldest string
		var at time.Time
		for id, s := range c.sessions {
			if oldest == "" || s.used.Before(at) || s.used.Equal(at) && id < oldest {
				oldest, at = id, s.used
			}
		}
		delete(c.sessions, oldest)
		c.evicted++
	}
}

// random returns 32 random bytes in hex.
func (c *Console) random() string {
	var b [32]byte
	if _, err := io.ReadFull(c.cfg.Rand, b[:]); err != nil {
		panic("console: no randomness: " + err.Error()) // crypto/rand does not fail
	}
	return hex.EncodeToString(b[:])
}

// sourceOf returns the client's address.
func sourceOf(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

func retryAfter(d time.Duration) string {
	s := int(d / time.Second)
	if d%time.Second != 0 {
		s++
	}
	return strconv.Itoa(s)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// UserLine returns a users file line for user with password (bcrypt, cost
// 0: the default), as `skybridge passwd --console` and `skybridge-cloud
// passwd` print it.
func UserLine(user string, password []byte, cost int) (string, error) {
	if user == "" || strings.ContainsAny(user, ":\n\r") || strings.TrimSpace(user) != user {
		return "", fmt.Errorf("%q: a console user name holds no ':' and no surrounding spaces", user)
	}
	hash, err := auth.HashPassword(password, cost)
	if err != nil {
		return "", err
	}
	return user + ":" + string(hash), nil
}

// ParseUsers reads a users file: "user:bcrypt-hash" lines; blank lines and
// lines starting with '#' are skipped. Errors name the line.
func ParseUsers(data []byte) (map[string][]byte, error) {
	users := map[string][]byte{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("console users: line %d: want user:bcrypt-hash", i+1)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("console users: line %d: %s: not a bcrypt hash", i+1, name)
		}
		if _, dup := users[name]; dup {
			return nil, fmt.Errorf("console users: line %d: %s listed twice", i+1, name)
		}
		users[name] = []byte(hash)
	}
	return users, nil
}
