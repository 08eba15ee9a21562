package server

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
)

// adminGet requests path from the admin server at addr with a Host header
// and a bearer token (each when not empty) and returns the status.
func adminGet(t *testing.T, addr, host, path, token string) int {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestAdminHostHeader: the admin server answers only requests addressed to
// it by a name it knows, so that a web page whose name was rebound to
// 127.0.0.1 cannot read it from a browser (DNS rebinding). Health checks
// answer whatever the Host.
func TestAdminHostHeader(t *testing.T) {
	t.Parallel()
	cfg := testConfig(ListenerConfig{Name: "tcp", Type: TCP, Addr: "127.0.0.1:0"})
	cfg.AdminAddr = "127.0.0.1:0"
	cfg.AdminHosts = []string{"Broker.LAN"}
	s := start(t, cfg)
	addr := s.Addr("admin").String()
	_, port, _ := net.SplitHostPort(addr)
	for _, tc := range []struct {
		host, path string
		want       int
	}{
		{"", "/api/v1/tenants", http.StatusOK}, // the client's own Host: 127.0.0.1:port
		{"localhost:" + port, "/api/v1/tenants", http.StatusOK},
		{"localhost", "/metrics", http.StatusOK},
		{"[::1]:" + port, "/api/v1/tenants", http.StatusOK},
		{"broker.lan:" + port, "/api/v1/tenants", http.StatusOK},
		{"evil.example:" + port, "/api/v1/tenants", http.StatusForbidden},
		{"evil.example", "/metrics", http.StatusForbidden},
		{"127.0.0.1.evil.example:" + port, "/api/v1/tenants", http.StatusForbidden},
		{"10.1.2.3:" + port, "/api/v1/tenants", http.StatusForbidden}, // not this listener's address
		{"evil.example", "/healthz", http.StatusOK},
		{"evil.example", "/readyz", http.StatusOK},
	} {
		if got := adminGet(t, addr, tc.host, tc.path, ""); got != tc.want {
			t.Errorf("GET %s with Host %q: %d, want %d", tc.path, tc.host, got, tc.want)
		}
	}
}

// TestMetricsToken: /metrics needs the admin token when one is set, or
// the metrics token when that is set (the admin token still works); the
// metrics token opens nothing else.
func TestMetricsToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		admin, metrics string
		token          string
		path           string
		want           int
	}{
		{"no tokens", "", "", "", "/metrics", http.StatusOK},
		{"admin token, none sent", "adm", "", "", "/metrics", http.StatusUnauthorized},
		{"admin token sent", "adm", "", "adm", "/metrics", http.StatusOK},
		{"wrong token", "adm", "", "nope", "/metrics", http.StatusUnauthorized},
		{"metrics token, none sent", "", "met", "", "/metrics", http.StatusUnauthorized},
		{"metrics token sent", "", "met", "met", "/metrics", http.StatusOK},
		{"both, metrics token sent", "adm", "met", "met", "/metrics", http.StatusOK},
		{"both, admin token sent", "adm", "met", "adm", "/metrics", http.StatusOK},
		{"metrics token opens no API", "adm", "met", "met", "/api/v1/tenants", http.StatusUnauthorized},
		{"health without a token", "adm", "met", "", "/healthz", http.StatusOK},
	} {
		cfg := testConfig(ListenerConfig{Name: "tcp", Type: TCP, Addr: "127.0.0.1:0"})
		cfg.AdminAddr = "127.0.0.1:0"
		cfg.AdminToken, cfg.MetricsToken = tc.admin, tc.metrics
		s := start(t, cfg)
		if got := adminGet(t, s.Addr("admin").String(), "", tc.path, tc.token); got != tc.want {
			t.Errorf("%s: GET %s: %d, want %d", tc.name, tc.path, got, tc.want)
		}
	}
}

// TestAdminOffLoopbackWarns: an admin listener reachable from the network
// is said at start, louder without a token.
func TestAdminOffLoopbackWarns(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr, token string
		want        string // "" no warning
	}{
		{"127.0.0.1:0", "", ""},
		{"0.0.0.0:0", "t", "admin listener is not on loopback"},
		{"0.0.0.0:0", "", "admin listener is not on loopback and has no token"},
	} {
		logs := &captured{}
		cfg := testConfig(ListenerConfig{Name: "tcp", Type: TCP, Addr: "127.0.0.1:0"})
		cfg.AdminAddr, cfg.AdminToken = tc.addr, tc.token
		cfg.Logger = slog.New(logs)
		start(t, cfg)
		var warns []string
		for _, r := range logs.matching("admin") {
			if r.Level == slog.LevelWarn {
				warns = append(warns, r.Msg)
			}
		}
		switch {
		case tc.want == "" && len(warns) > 0:
			t.Errorf("admin on %s: warned %q", tc.addr, warns)
		case tc.want != "" && (len(warns) != 1 || !strings.HasPrefix(warns[0], tc.want)):
			t.Errorf("admin on %s, token %q: warnings %q, want one starting %q", tc.addr, tc.token, warns, tc.want)
		}
		if tc.want != "" && tc.token == "" && len(warns) == 1 && !strings.Contains(warns[0], "metrics") {
			t.Errorf("the warning without a token should say what is open: %q", warns[0])
		}
	}
}
