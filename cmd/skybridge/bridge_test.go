package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// startMosquitto runs Debian's mosquitto on a free loopback port.
func startMosquitto(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
		if _, err := os.Stat(bin); err != nil {
			t.Skip("mosquitto not installed (apt-get install mosquitto); CI installs it")
		}
	}
	for attempt := 0; attempt < 3; attempt++ {
		addr := freeAddr(t)
		_, port, _ := net.SplitHostPort(addr)
		conf := filepath.Join(t.TempDir(), "mosquitto.conf")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n", port)), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-c", conf)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		var stderr syncBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-done
		})
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				return addr
			}
			select {
			case <-done:
				t.Logf("mosquitto exited: %s", stderr.String())
				deadline = time.Time{}
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	t.Fatal("mosquitto did not start")
	return ""
}

// TestBridgeOfTheBinary configures a bridge between the binary and
// mosquitto and checks both directions, the topic mapping, and the
// bridge's metrics.
func TestBridgeOfTheBinary(t *testing.T) {
	need(t, "mosquitto_pub", "mosquitto_sub")
	remote := startMosquitto(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "skybridge.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
listeners:
  - {name: tcp, type: tcp, addr: %q}
bridges:
  - name: cloud
    remote: {address: "tcp://%s", reconnect_min: 100ms}
    local: {address: "tcp://%s", reconnect_min: 100ms}
    out: [{filter: "sensors/#", prefix: "site-1/"}]
    in: [{filter: "site-1/cmd/#", strip: "site-1/"}]
    queue: {dir: %q}
`, addr, remote, addr, filepath.Join(dir, "bridge-queue"))), 0o600); err != nil {
		t.Fatal(err)
	}
	b := startWithConfig(t, cfg, addr, filepath.Join(dir, "data"))

	// Out: published here, received on mosquitto under the prefix. The
	// bridge connects in the background, so publish until it arrives.
	up := startSub(t, remote, "-t", "site-1/#", "-q", "1")
	polled(t, up, b.addr, "sensors/t1", "21.5", "site-1/sensors/t1 21.5")
	// In: published on mosquitto, received here without the prefix.
	down := startSub(t, b.addr, "-t", "cmd/#", "-q", "1")
	polled(t, down, remote, "site-1/cmd/reboot", "now", "cmd/reboot now")

	for _, m := range []string{`skybridge_bridge_connected{bridge="cloud",side="local"}`,
		`skybridge_bridge_connected{bridge="cloud",side="remote"}`} {
		if v := metric(t, b, m); v != 1 {
			t.Errorf("%s = %v, want 1", m, v)
		}
	}
	if v := metric(t, b, `skybridge_bridge_messages_forwarded_total{bridge="cloud",direction="out"}`); v < 1 {
		t.Errorf("forwarded out = %v, want at least 1", v)
	}
}

// polled publishes topic/payload on addr every 100 ms until s prints want
// (the bridge or the subscription may not be in place yet), then drains
// the repeats.
func polled(t *testing.T, s *subscriber, addr, topic, payload, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		pubCmd(t, addr, "-q", "1", "-t", topic, "-m", payload)
		select {
		case got := <-s.lines:
			if got != want {
				t.Fatalf("subscriber printed %q, want %q", got, want)
			}
			for {
				select {
				case got := <-s.lines:
					if got != want {
						t.Fatalf("subscriber printed %q, want %q", got, want)
					}
				case <-time.After(300 * time.Millisecond):
					return
				}
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("%q never arrived", want)
}
