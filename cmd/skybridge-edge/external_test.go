package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/cloud/api"
)

// TestExternalBrokerEndToEnd runs the fleet through a skybridge broker
// process the cloud does not run, set up as docs/EDGE.md ("An external
// broker") tells an operator: its TLS files from ctl broker-cert, its
// webhook pointed at the cloud with the hook token from the environment,
// its admin API given to the cloud. A node activates, runs an app by
// label, is revoked: its connection is closed through the admin API and
// its reconnections are refused.
func TestExternalBrokerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	build(t)
	started := time.Now()
	dir := t.TempDir()
	brokerAddr, adminAddr := freePort(t), freePort(t)
	const adminToken = "broker-admin-token"

	data := filepath.Join(dir, "cloud")
	cloud := startEnv(t, []string{"SKYBRIDGE_BROKER_ADMIN_TOKEN=" + adminToken}, filepath.Join(dir, "cloud.log"), bins.cloud,
		"serve", "--data", data, "--api", "127.0.0.1:0", "--host", "127.0.0.1", "--external-broker", brokerAddr,
		"--external-broker-admin", "http://"+adminAddr, "--lease", "6s", "--log-level", "debug")
	ready := regexp.MustCompile(`msg=ready api=(\S+) broker=(\S+)`)
	var m []string
	eventually(t, 30*time.Second, "the cloud to start", func() bool {
		m = ready.FindStringSubmatch(cloud.output())
		return m != nil
	}, cloud)
	if m[2] != brokerAddr {
		t.Fatalf("the cloud names broker %s, want %s", m[2], brokerAddr)
	}
	tok, _ := os.ReadFile(filepath.Join(data, "admin.token"))
	caPEM, _ := os.ReadFile(filepath.Join(data, "tls", "ca.crt"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &cloudAPI{t: t, base: "https://" + m[1], token: strings.TrimSpace(string(tok)),
		hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
	ctl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bins.cloud, append([]string{"ctl", "--data", data, "--api", c.base}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ctl %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}

	// The broker, as the operator sets it up.
	tlsDir := filepath.Join(dir, "broker-tls")
	ctl("broker-cert", "--out", tlsDir, "127.0.0.1")
	hook, err := os.ReadFile(filepath.Join(data, "broker-hook.token"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`listeners:
  - name: fleet
    type: tls
    addr: %s
    cert_file: %s
    key_file: %s
    client_ca_file: %s
    require_client_cert: true
auth:
  http:
    url: %s/v1/broker/auth
    headers: {Authorization: "Bearer ${FLEET_HOOK_TOKEN}"}
    ca_file: %s
    cache: {size: -1}
admin:
  addr: %s
  token: %s
storage:
  type: memory
`, brokerAddr, filepath.Join(tlsDir, "server.crt"), filepath.Join(tlsDir, "server.key"), filepath.Join(tlsDir, "ca.crt"),
		c.base, filepath.Join(tlsDir, "ca.crt"), adminAddr, adminToken)
	cfgPath := filepath.Join(dir, "broker.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	broker := startEnv(t, []string{"FLEET_HOOK_TOKEN=" + strings.TrimSpace(string(hook))}, filepath.Join(dir, "broker.log"), bins.broker, "serve", "--config", cfgPath)
	eventually(t, 30*time.Second, "the cloud's link to the broker", func() bool {
		var h struct{ Link bool }
		c.get("/healthz", &h)
		return h.Link
	}, cloud, broker)
	t.Logf("%v: cloud and broker up, the cloud connected through the webhook", time.Since(started).Round(time.Millisecond))

	// A node: activated, online, running an app by label.
	nodeDir := filepath.Join(dir, "n1")
	edge := start(t, filepath.Join(dir, "n1.log"), bins.edge, "run", "--data", nodeDir, "--local-broker", freePort(t),
		"--report-every", "1s", "--resync-jitter", "300ms", "--log-level", "debug", "--join", ctl("token", "n1", "role=worker"))
	eventually(t, 30*time.Second, "n1 online", func() bool {
		n := c.node("n1")
		return n.State == api.NodeActive && n.Online
	}, edge, cloud, broker)
	sha := ctl("push", bins.heartbeat, "--name", "heartbeat")
	app := writeJSON(t, dir, "app.json", fmt.Sprintf(`{"name": "hello", "selector": "role=worker", "artifact": {"sha256": %q}, "args": ["--rev", "x1"]}`, sha))
	ctl("deploy", app)
	if _, args := alive(t, nodeDir, "hello", edge); args != "--rev x1" {
		t.Fatalf("n1 runs %q, want --rev x1", args)
	}
	eventually(t, 30*time.Second, "n1 to report the app applied", func() bool {
		n := c.node("n1")
		return n.Status != nil && n.Status.AppliedVersion == n.DesiredVersion
	}, edge, cloud)
	t.Logf("%v: n1 online through the external broker, hello runs", time.Since(started).Round(time.Millisecond))

	// Revoked: the cloud closes its connection through the broker's admin
	// API, and the webhook refuses it from then on.
	ctl("revoke", "n1")
	eventually(t, 30*time.Second, "n1's connection closed on the broker", func() bool {
		return strings.Contains(cloud.output(), `node's connection closed on the external broker" node=n1 status=204`)
	}, cloud, broker)
	refused := regexp.MustCompile(`refused a broker client" subject="SERIALNUMBER=[0-9A-Fa-f]+,CN=n1" clientid=n1`)
	eventually(t, 30*time.Second, "n1's reconnection refused", func() bool {
		return refused.MatchString(cloud.output())
	}, cloud, broker, edge)
	t.Logf("external broker end to end in %v", time.Since(started).Round(time.Millisecond))
}
