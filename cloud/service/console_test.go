package service

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/skybridge-mq/skybridge/cloud/api"
)

// consoleClient is a browser-like client of the console: a cookie jar and
// the CSRF token of its session.
type consoleClient struct {
	*client
	csrf string
}

func newConsoleClient(t *testing.T, s *Service) *consoleClient {
	c := newClient(t, s)
	c.token = "" // the console's session, not the bearer token
	jar, _ := cookiejar.New(nil)
	c.hc.Jar = jar
	return &consoleClient{client: c}
}

// send makes a console request (JSON body) with the given headers.
func (c *consoleClient) send(method, path string, body any, hdr map[string]string) (int, []byte, *http.Response) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		r = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, c.base+path, r)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data, resp
}

// The cloud serves the console on its API listener: the session cookie is
// Secure, the API behind /console/api/ needs a session and, for changes,
// the CSRF token; tokens are listed without secrets and revoked; the
// newest events are asked for with last.
func TestConsoleOnTheAPIListener(t *testing.T) {
	t.Parallel()
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	s, err := Start(Config{DataDir: t.TempDir(), APIAddr: "127.0.0.1:0", BrokerAddr: "127.0.0.1:0", PublicHosts: []string{"127.0.0.1"},
		Console: true, ConsoleUsers: map[string][]byte{"ops": hash}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	c := newConsoleClient(t, s)

	st, page, resp := c.send("GET", "/console/", nil, nil)
	if st != 200 || !bytes.Contains(page, []byte("fleet.js")) || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("GET /console/: %d, CSP %q", st, resp.Header.Get("Content-Security-Policy"))
	}
	if st, _, _ := c.send("GET", "/console/api/v1/nodes", nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("the API through the console without a session: %d", st)
	}
	if st, _, _ := c.send("POST", "/console/login", map[string]string{"user": "ops", "password": "wrong"}, nil); st != http.StatusUnauthorized {
		t.Fatalf("a wrong password: %d", st)
	}
	st, body, resp := c.send("POST", "/console/login", map[string]string{"user": "ops", "password": "s3cret"}, nil)
	if st != 200 {
		t.Fatalf("login: %d %s", st, body)
	}
	var info struct {
		User, CSRF string
		Sections   []string
	}
	_ = json.Unmarshal(body, &info)
	c.csrf = info.CSRF
	if info.User != "ops" || c.csrf == "" || len(info.Sections) != 1 || info.Sections[0] != "fleet" {
		t.Fatalf("session %+v", info)
	}
	if ck := resp.Cookies(); len(ck) != 1 || !ck[0].Secure || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie %+v", ck)
	}
	if st, body, _ := c.send("GET", "/console/api/v1/nodes", nil, nil); st != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("nodes through the console: %d %s", st, body)
	}
	tok := tokenBody{Node: "edge-9", Labels: map[string]string{"site": "a"}}
	if st, _, _ := c.send("POST", "/console/api/v1/tokens", tok, nil); st != http.StatusForbidden {
		t.Fatalf("a change without the CSRF token: %d", st)
	}
	if st, _, _ := c.send("POST", "/console/api/v1/tokens", tok, map[string]string{"X-CSRF-Token": c.csrf, "Origin": "https://evil.example"}); st != http.StatusForbidden {
		t.Fatalf("a change from another origin: %d", st)
	}
	st, body, _ = c.send("POST", "/console/api/v1/tokens", tok, map[string]string{"X-CSRF-Token": c.csrf})
	var made tokenReply
	if st != 200 || json.Unmarshal(body, &made) != nil || made.Join == "" {
		t.Fatalf("a token through the console: %d %s", st, body)
	}
	id, secret, _ := strings.Cut(made.Token, ".")

	// The operator API lists it without its secret.
	admin := newClient(t, s)
	var list []api.TokenInfo
	admin.must("GET", "/v1/tokens", nil, &list)
	if len(list) != 1 || list[0].ID != id || list[0].Node != "edge-9" || list[0].Labels["site"] != "a" {
		t.Fatalf("tokens %+v", list)
	}
	if _, raw, _ := c.send("GET", "/console/api/v1/tokens", nil, nil); bytes.Contains(raw, []byte(secret)) {
		t.Fatalf("the token list shows the secret: %s", raw)
	}
	if st, _, _ := c.send("DELETE", "/console/api/v1/tokens/"+id, nil, map[string]string{"X-CSRF-Token": c.csrf}); st != http.StatusNoContent {
		t.Fatalf("revoking through the console: %d", st)
	}
	admin.must("GET", "/v1/tokens", nil, &list)
	if len(list) != 0 {
		t.Fatalf("tokens after revocation %+v", list)
	}
	if st := admin.do("DELETE", "/v1/tokens/"+id, nil, nil); st != http.StatusNotFound {
		t.Errorf("revoking twice: %d", st)
	}
	var last []api.Event
	admin.must("GET", "/v1/events?last=2", nil, &last)
	if len(last) != 2 || last[0].Type != "token.created" || last[1].Type != "token.revoked" {
		t.Errorf("the last two events: %+v", last)
	}
	if st := admin.do("GET", "/v1/events?last=0", nil, nil); st != http.StatusBadRequest {
		t.Errorf("last=0: %d", st)
	}
	// The session does not open the API to a bearer-less request.
	anon := newClient(t, s)
	anon.token = ""
	if st := anon.do("GET", "/v1/nodes", nil, nil); st != http.StatusUnauthorized {
		t.Errorf("anonymous /v1/nodes: %d", st)
	}
}

// Without Console, /console/ is not served.
func TestConsoleOff(t *testing.T) {
	t.Parallel()
	s := startCloud(t)
	c := newConsoleClient(t, s)
	if st, _, _ := c.send("GET", "/console/", nil, nil); st != http.StatusNotFound {
		t.Fatalf("GET /console/ with the console off: %d", st)
	}
}

// Browsers verify no Ed25519 signature: with the console on, the API
// listener also holds an ECDSA certificate, which a client without
// Ed25519 gets, while Go clients (nodes, ctl) still get the cloud CA's
// chain. The certificate is kept across restarts, and made again for new
// public hosts.
func TestConsoleCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func(hosts ...string) *Service {
		s, err := Start(Config{DataDir: dir, APIAddr: "127.0.0.1:0", BrokerAddr: "127.0.0.1:0", PublicHosts: hosts, Console: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := start("127.0.0.1")
	first := s.ConsoleCert()
	leaf, err := x509.ParseCertificate(first)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || leaf.VerifyHostname("127.0.0.1") != nil {
		t.Fatalf("console certificate: key %T, names %v %v", leaf.PublicKey, leaf.DNSNames, leaf.IPAddresses)
	}
	certs := s.api.TLSConfig.Certificates
	browser := &tls.ClientHelloInfo{SupportedVersions: []uint16{tls.VersionTLS13}, ServerName: "127.0.0.1",
		SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.PSSWithSHA256, tls.PKCS1WithSHA256}}
	goClient := &tls.ClientHelloInfo{SupportedVersions: []uint16{tls.VersionTLS13}, ServerName: "127.0.0.1",
		SignatureSchemes: []tls.SignatureScheme{tls.Ed25519, tls.ECDSAWithP256AndSHA256}}
	if len(certs) != 2 || browser.SupportsCertificate(&certs[0]) == nil || browser.SupportsCertificate(&certs[1]) != nil ||
		goClient.SupportsCertificate(&certs[0]) != nil {
		t.Fatalf("%d certificates: a browser must skip the first (Ed25519) and take the second; a Go client takes the first", len(certs))
	}
	// Go clients verify the cloud CA's chain (the operator API works).
	var nodes []api.Node
	newClient(t, s).must("GET", "/v1/nodes", nil, &nodes)
	s.Close()
	s = start("127.0.0.1")
	if !bytes.Equal(first, s.ConsoleCert()) {
		t.Error("the console certificate changed across a restart")
	}
	s.Close()
	s = start("cloud.example.net", "127.0.0.1")
	defer s.Close()
	if leaf, _ := x509.ParseCertificate(s.ConsoleCert()); leaf == nil || leaf.VerifyHostname("cloud.example.net") != nil {
		t.Error("a new public host is not named by the console certificate")
	}
}

// The API server's complaints: a browser's dropped TLS handshake is
// debug noise, anything else a warning.
func TestServerLogLevels(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := log.New(serverLog{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}, "", 0)
	l.Printf("http: TLS handshake error from 127.0.0.1:5: EOF")
	l.Printf("http: panic serving 127.0.0.1:6: boom")
	out := buf.String()
	if !strings.Contains(out, `level=DEBUG msg="cloud api: http: TLS handshake error`) || !strings.Contains(out, `level=WARN msg="cloud api: http: panic serving`) {
		t.Fatalf("log:\n%s", out)
	}
}
