package main

import (
	"bufio"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestAuthenticationAndACLOfTheBinary configures the binary with a
// password file (SCRAM too) and ACL rules, and checks with mosquitto's
// clients that only a known user gets in, in its tenant, within its rules.
func TestAuthenticationAndACLOfTheBinary(t *testing.T) {
	need(t, "mosquitto_pub", "mosquitto_sub")
	dir := t.TempDir()
	var lines strings.Builder
	for _, u := range []string{"acme/alice", "acme/bob"} {
		cmd := exec.Command(skybridgeBinary(t), "passwd", "--scram", "--cost", "4", u)
		cmd.Stdin = strings.NewReader("pw-" + u[5:] + "\n")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("skybridge passwd: %v", err)
		}
		lines.Write(out)
	}
	pwFile := filepath.Join(dir, "passwd")
	if err := os.WriteFile(pwFile, []byte(lines.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "skybridge.yaml")
	if err := os.WriteFile(cfg, []byte(`
auth:
  password_file: `+pwFile+`
  scram: true
acl:
  tenants:
    acme:
      - permission: deny
        action: publish
        topics: ["secret/#"]
      - permission: allow
        action: all
        topics: ["#"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	// --listen replaces the listeners; allow_anonymous defaults to true on
	// loopback, so the test listener is made strict through the config's
	// own listener instead.
	addr := freeAddr(t)
	if err := os.WriteFile(cfg, append(mustRead(t, cfg), []byte(`
listeners:
  - name: tcp
    type: tcp
    addr: `+addr+`
    allow_anonymous: false
`)...), 0o600); err != nil {
		t.Fatal(err)
	}
	b := startWithConfig(t, cfg, addr, filepath.Join(dir, "data")) // the store wants a directory of its own
	host, port, _ := net.SplitHostPort(b.addr)
	pub := func(args ...string) error {
		return exec.Command("mosquitto_pub", append([]string{"-h", host, "-p", port, "-q", "1"}, args...)...).Run()
	}
	if err := pub("-t", "x", "-m", "anon"); err == nil {
		t.Fatal("an anonymous client was accepted on a listener that refuses them")
	}
	if err := pub("-u", "acme/alice", "-P", "wrong", "-t", "x", "-m", "bad"); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	s := startSub(t, b.addr, "-u", "acme/bob", "-P", "pw-bob", "-t", "#", "-V", "mqttv5")
	waitSubscribed(t, b.addr, s, "probe", "mqttv5", "-u", "acme/alice", "-P", "pw-alice")
	if err := pub("-u", "acme/alice", "-P", "pw-alice", "-t", "ok/1", "-m", "hello", "-V", "mqttv5"); err != nil {
		t.Fatalf("alice could not publish: %v", err)
	}
	s.expect(t, "ok/1 hello")
	// A denied publish: 5.0 gets 0x87 (mosquitto_pub reports an error) and
	// nothing reaches bob.
	_ = pub("-u", "acme/alice", "-P", "pw-alice", "-t", "secret/1", "-m", "nope", "-V", "mqttv5")
	if err := pub("-u", "acme/alice", "-P", "pw-alice", "-t", "ok/2", "-m", "after", "-V", "mqttv5"); err != nil {
		t.Fatal(err)
	}
	s.expect(t, "ok/2 after") // and not secret/1 before it

	// The refusals are events, counted in /metrics.
	if n := metricSum(t, b, "skybridge_events_total", `type="auth_failed"`); n < 2 {
		t.Errorf("auth_failed events = %v, want at least 2 (anonymous, wrong password)", n)
	}
	if n := metricSum(t, b, "skybridge_events_total", `type="publish_refused"`); n < 1 {
		t.Errorf("publish_refused events = %v, want at least 1", n)
	}
}

// metricSum adds up the series of a metric whose labels contain match.
func metricSum(t *testing.T, b *brokerProc, name, match string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + b.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && strings.HasPrefix(f[0], name+"{") && strings.Contains(f[0], match) {
			v, _ := strconv.ParseFloat(f[1], 64)
			sum += v
		}
	}
	return sum
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startWithConfig starts skybridge with a configuration file whose TCP
// listener is on addr.
func startWithConfig(t *testing.T, cfg, addr, dataDir string) *brokerProc {
	t.Helper()
	bp, _ := startProc(t, addr, "serve", "--config", cfg, "--data", dataDir)
	if bp == nil {
		t.Fatalf("skybridge could not listen on %s", addr)
	}
	return bp
}
