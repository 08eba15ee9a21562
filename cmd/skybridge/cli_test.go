package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/config"
)

// TestSecondBrokerOnTheSameDataDir: a data directory in use by another
// broker process is reported as such (issue 13 item 14).
func TestSecondBrokerOnTheSameDataDir(t *testing.T) {
	dir := t.TempDir()
	startBrokerOn(t, dir)
	out, err := exec.Command(skybridgeBinary(t), "serve", "--listen", freeAddr(t), "--data", dir).CombinedOutput()
	if err == nil {
		t.Fatal("a second broker started on a data directory in use")
	}
	msg := string(out)
	if !strings.Contains(msg, "in use by another process") || !strings.Contains(msg, dir) || strings.Contains(msg, "move it aside") {
		t.Fatalf("second broker said:\n%s\nwant the directory and that another process holds it", msg)
	}
}

// TestHelpExitsZero: -h and --help print the usage on standard output and
// succeed, on every command and subcommand.
func TestHelpExitsZero(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-h"}, {"--help"}, {"help"},
		{"serve", "-h"}, {"serve", "--help"}, {"serve", "--config", "x.yaml", "-h"},
		{"ctl", "-h"}, {"ctl", "--help"}, {"ctl", "sessions", "-h"}, {"ctl", "kick", "acme", "c1", "--help"},
		{"passwd", "-h"}, {"passwd", "--help"}, {"version", "-h"},
	} {
		var out, errOut bytes.Buffer
		if err := run(args, &out, &errOut); err != nil {
			t.Errorf("%v: %v (stderr %q)", args, err, errOut.String())
			continue
		}
		if !strings.Contains(out.String(), "usage") {
			t.Errorf("%v printed %q on stdout, want the usage", args, out.String())
		}
	}
	// The binary exits 0.
	if out, err := exec.Command(skybridgeBinary(t), "serve", "-h").CombinedOutput(); err != nil {
		t.Errorf("skybridge serve -h: %v\n%s", err, out)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		var out, errOut bytes.Buffer
		if err := run(args, &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "skybridge ") {
			t.Errorf("%v: %v, printed %q", args, err, out.String())
		}
	}
}

// TestCtlFlagsAnywhere: ctl's flags work before or after the command and
// its arguments (issue 13 item 15).
func TestCtlFlagsAnywhere(t *testing.T) {
	type call struct{ Method, URI, Auth string }
	var mu sync.Mutex
	var got []call
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, call{r.Method, r.URL.RequestURI(), r.Header.Get("Authorization")})
		mu.Unlock()
		_, _ = w.Write([]byte("{}\n"))
	}))
	defer srv.Close()
	t.Setenv("SKYBRIDGE_ADMIN", "http://127.0.0.1:1") // flags must win over it
	t.Setenv("SKYBRIDGE_ADMIN_TOKEN", "")
	for _, tc := range []struct {
		args []string
		want call
	}{
		{[]string{"--admin", srv.URL, "sessions", "acme"}, call{"GET", "/api/v1/tenants/acme/sessions?", ""}},
		{[]string{"sessions", "acme", "--admin", srv.URL, "--token", "t0k"}, call{"GET", "/api/v1/tenants/acme/sessions?", "Bearer t0k"}},
		{[]string{"sessions", "--tenant", "x", "--admin", srv.URL}, call{"GET", "/api/v1/tenants/x/sessions?", ""}},
		{[]string{"sessions", "acme", "10", "5", "--admin=" + srv.URL}, call{"GET", "/api/v1/tenants/acme/sessions?limit=5&offset=10", ""}},
		{[]string{"kick", "acme", "dev-1", "--discard", "--admin", srv.URL}, call{"DELETE", "/api/v1/tenants/acme/sessions/dev-1?discard=true", ""}},
		{[]string{"--discard", "--admin", srv.URL, "kick", "acme", "dev-1"}, call{"DELETE", "/api/v1/tenants/acme/sessions/dev-1?discard=true", ""}},
		{[]string{"retained", "acme", "--admin", srv.URL, "--", "-odd/#"}, call{"GET", "/api/v1/tenants/acme/retained?filter=-odd%2F%23", ""}},
	} {
		mu.Lock()
		got = nil
		mu.Unlock()
		var out, errOut bytes.Buffer
		if err := run(append([]string{"ctl"}, tc.args...), &out, &errOut); err != nil {
			t.Errorf("ctl %v: %v (%s)", tc.args, err, errOut.String())
			continue
		}
		mu.Lock()
		if d := cmp.Diff([]call{tc.want}, got); d != "" {
			t.Errorf("ctl %v (-want +got):\n%s", tc.args, d)
		}
		mu.Unlock()
	}
	var out, errOut bytes.Buffer
	if err := run([]string{"ctl", "sessions", "acme", "--bogus", "--admin", srv.URL}, &out, &errOut); err == nil {
		t.Error("an unknown flag after the command was accepted")
	}
}

// TestServeListenerOverrides: -p sets the TCP listener's port (like
// mosquitto), --listen NAME=HOST:PORT moves one listener and keeps the
// others, --listen HOST:PORT replaces them all.
func TestServeListenerOverrides(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "skybridge.yaml")
	if err := os.WriteFile(cfg, []byte(`listeners:
  - {name: mqtt, type: tcp, addr: "0.0.0.0:1883"}
  - {name: ws, type: ws, addr: "127.0.0.1:8083"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs := func(f config.File) []string {
		var out []string
		for _, l := range f.Listeners {
			out = append(out, l.Name+"="+l.Addr)
		}
		return out
	}
	for _, tc := range []struct {
		args []string
		want []string
		err  string
	}{
		{[]string{"-p", "1884"}, []string{"tcp=127.0.0.1:1884"}, ""},
		{[]string{"--config", cfg, "-p", "1999"}, []string{"mqtt=0.0.0.0:1999", "ws=127.0.0.1:8083"}, ""},
		{[]string{"--config", cfg, "--listen", "ws=127.0.0.1:9001"}, []string{"mqtt=0.0.0.0:1883", "ws=127.0.0.1:9001"}, ""},
		{[]string{"--config", cfg, "--listen", "ws=127.0.0.1:9001", "--listen", "mqtt=127.0.0.1:1"}, []string{"mqtt=127.0.0.1:1", "ws=127.0.0.1:9001"}, ""},
		{[]string{"--config", cfg, "--listen", "127.0.0.1:7"}, []string{"tcp=127.0.0.1:7"}, ""},
		{[]string{"--config", cfg, "--listen", "nosuch=127.0.0.1:7"}, nil, `--listen nosuch=127.0.0.1:7: no listener "nosuch" (the listeners are mqtt, ws)`},
		{[]string{"-p", "http"}, nil, `-p "http": want a port number`},
	} {
		f, _, err := serveConfig(tc.args, io.Discard, io.Discard)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("serve %v: %v, want an error containing %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("serve %v: %v", tc.args, err)
			continue
		}
		if d := cmp.Diff(tc.want, addrs(f)); d != "" {
			t.Errorf("serve %v (-want +got):\n%s", tc.args, d)
		}
	}
}

// TestServePortFlag: the binary listens where -p says.
func TestServePortFlag(t *testing.T) {
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	if bp, _ := startProc(t, addr, "serve", "-p", port, "--data", t.TempDir()); bp == nil {
		t.Fatalf("skybridge serve -p %s did not listen on %s", port, addr)
	}
}
