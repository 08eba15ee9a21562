package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// These tests drive the built skybridge binary with Debian's mosquitto
// clients, so that the broker is checked against an independent MQTT
// implementation, in both protocol versions.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// TestMain removes the binary skybridgeBinary built (30 MB a run, once
// left behind in the temporary directory by every run of the package).
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func skybridgeBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "skybridge-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "skybridge")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// broker is a running skybridge process.
type brokerProc struct {
	cmd    *exec.Cmd
	addr   string
	admin  string
	stderr *syncBuffer
	done   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startBroker(t *testing.T) *brokerProc {
	t.Helper()
	return startBrokerOn(t, t.TempDir())
}

// startBrokerOn starts skybridge with its pebble store in dataDir.
func startBrokerOn(t *testing.T, dataDir string, extra ...string) *brokerProc {
	t.Helper()
	for attempt := 0; ; attempt++ {
		addr := freeAddr(t)
		args := append([]string{"serve", "--listen", addr, "--data", dataDir}, extra...)
		bp, busy := startProc(t, addr, args...)
		if bp != nil {
			return bp
		}
		if !busy || attempt >= 3 {
			t.Fatal("skybridge did not start")
		}
	}
}

// startProc starts the binary with args plus an admin listener and waits
// until it accepts connections on addr and on the admin address (which
// opens after the MQTT listeners). busy reports a port taken in the
// meantime (the caller may try another).
func startProc(t *testing.T, addr string, args ...string) (bp *brokerProc, busy bool) {
	t.Helper()
	admin := freeAddr(t)
	bp = &brokerProc{addr: addr, admin: admin, stderr: &syncBuffer{}, done: make(chan error, 1)}
	bp.cmd = exec.Command(skybridgeBinary(t), append(args, "--admin", admin, "--log-level", "debug")...)
	bp.cmd.Stderr = bp.stderr
	if err := bp.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { bp.done <- bp.cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if listening(addr) && listening(admin) {
			t.Cleanup(func() {
				_ = bp.cmd.Process.Kill()
				<-bp.done
				if t.Failed() {
					t.Logf("broker log:\n%s", bp.stderr.String())
				}
			})
			return bp, false
		}
		select {
		case err := <-bp.done:
			if strings.Contains(bp.stderr.String(), "address already in use") {
				return nil, true
			}
			t.Fatalf("skybridge exited: %v\n%s", err, bp.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("skybridge did not listen on %s\n%s", addr, bp.stderr.String())
	return nil, false
}

// listening reports whether addr accepts a TCP connection now.
func listening(addr string) bool {
	c, err := net.Dial("tcp", addr)
	if err == nil {
		c.Close()
	}
	return err == nil
}

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install mosquitto-clients); CI installs it", tool)
		}
	}
}

// subscriber runs mosquitto_sub and collects its output lines.
type subscriber struct {
	cmd   *exec.Cmd
	lines chan string
}

func startSub(t *testing.T, addr string, args ...string) *subscriber {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, "mosquitto_sub", append([]string{"-h", host, "-p", port, "-v"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &subscriber{cmd: cmd, lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mosquitto_sub %v stderr: %s", args, stderr.String())
		}
	})
	return s
}

func (s *subscriber) expect(t *testing.T, want string) {
	t.Helper()
	select {
	case got, ok := <-s.lines:
		if !ok {
			t.Fatalf("mosquitto_sub ended; want %q", want)
		}
		if got != want {
			t.Fatalf("mosquitto_sub printed %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("mosquitto_sub printed nothing; want %q", want)
	}
}

func pubCmd(t *testing.T, addr string, args ...string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command("mosquitto_pub", append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub %v: %v\n%s", args, err, out)
	}
}

// waitSubscribed polls with a retained probe until mosquitto_sub's
// subscription is in place, so that no message is published too early.
func waitSubscribed(t *testing.T, addr string, s *subscriber, topic, version string, creds ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		pubCmd(t, addr, append([]string{"-V", version, "-t", topic, "-m", "probe"}, creds...)...)
		select {
		case got := <-s.lines:
			if got == topic+" probe" {
				// Drain further probes already on their way.
				for {
					select {
					case l := <-s.lines:
						if l != topic+" probe" {
							t.Fatalf("unexpected line %q", l)
						}
					case <-time.After(200 * time.Millisecond):
						return
					}
				}
			}
			t.Fatalf("unexpected line %q", got)
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatal("mosquitto_sub never subscribed")
}

func TestInteropMosquittoClients(t *testing.T) {
	need(t, "mosquitto_pub", "mosquitto_sub")
	b := startBroker(t)
	for _, v := range []string{"mqttv311", "mqttv5"} {
		for _, qos := range []string{"0", "1", "2"} {
			t.Run(v+"/qos"+qos, func(t *testing.T) {
				topic := "interop/" + v + "/" + qos
				s := startSub(t, b.addr, "-V", v, "-q", qos, "-t", topic+"/#")
				waitSubscribed(t, b.addr, s, topic+"/probe", v)
				for i := range 3 {
					pubCmd(t, b.addr, "-V", v, "-q", qos, "-t", fmt.Sprintf("%s/%d", topic, i), "-m", fmt.Sprintf("m%d", i))
				}
				for i := range 3 {
					s.expect(t, fmt.Sprintf("%s/%d m%d", topic, i, i))
				}
			})
		}
		t.Run(v+"/retained", func(t *testing.T) {
			topic := "interop/" + v + "/retained"
			pubCmd(t, b.addr, "-V", v, "-q", "1", "-r", "-t", topic, "-m", "kept")
			s := startSub(t, b.addr, "-V", v, "-t", topic, "-C", "1")
			s.expect(t, topic+" kept")
			pubCmd(t, b.addr, "-V", v, "-r", "-n", "-t", topic) // delete
			s2 := startSub(t, b.addr, "-V", v, "-t", topic, "-W", "1")
			select {
			case l, ok := <-s2.lines:
				if ok {
					t.Fatalf("deleted retained message still delivered: %q", l)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("mosquitto_sub -W 1 did not end")
			}
		})
		t.Run(v+"/will", func(t *testing.T) {
			topic := "interop/" + v + "/will"
			watcher := startSub(t, b.addr, "-V", v, "-t", topic)
			waitSubscribed(t, b.addr, watcher, topic, v)
			host, port, _ := net.SplitHostPort(b.addr)
			victim := exec.Command("mosquitto_sub", "-h", host, "-p", port, "-V", v, "-t", "interop/none",
				"--will-topic", topic, "--will-payload", "lost", "--will-qos", "1")
			if err := victim.Start(); err != nil {
				t.Fatal(err)
			}
			// Let it connect, then kill it without a DISCONNECT: the broker
			// must publish its will.
			deadline := time.Now().Add(10 * time.Second)
			for metric(t, b, "skybridge_connections") < 2 {
				if time.Now().After(deadline) {
					t.Fatal("the will client never connected")
				}
				time.Sleep(20 * time.Millisecond) // polling the broker's connection gauge
			}
			_ = victim.Process.Signal(syscall.SIGKILL)
			_ = victim.Wait()
			watcher.expect(t, topic+" lost")
		})
	}
}

// metric reads one value from the broker's Prometheus endpoint.
func metric(t *testing.T, b *brokerProc, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + b.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func TestGracefulShutdown(t *testing.T) {
	b := startBroker(t)
	c, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn, _ := packet.Encode(&packet.Connect{Version: packet.V5, ClientID: []byte("stay"), KeepAlive: 60}, packet.V5)
	if _, err := c.Write(conn); err != nil {
		t.Fatal(err)
	}
	d := packet.NewDecoder(c, packet.V5)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if p, err := d.Next(); err != nil || p.Type() != packet.CONNACK {
		t.Fatalf("CONNACK: %v %v", p, err)
	}
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p, err := d.Next()
	if err != nil {
		t.Fatalf("no DISCONNECT before close: %v", err)
	}
	if dc, ok := p.(*packet.Disconnect); !ok || dc.ReasonCode != packet.ServerShuttingDown {
		t.Fatalf("got %s, want DISCONNECT 0x8b", packet.Format(p))
	}
	select {
	case err := <-b.done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
		b.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("skybridge did not exit after SIGTERM")
	}
}

func TestCtlAgainstTheBinary(t *testing.T) {
	b := startBroker(t)
	c, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn, _ := packet.Encode(&packet.Connect{Version: packet.V311, ClientID: []byte("ctl-client"), CleanStart: true, KeepAlive: 60,
		UsernameFlag: true, Username: []byte("shop/bob")}, packet.V311)
	_, _ = c.Write(conn)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if p, err := packet.NewDecoder(c, packet.V311).Next(); err != nil || p.Type() != packet.CONNACK {
		t.Fatalf("CONNACK: %v %v", p, err)
	}
	// The broker runs without an auth section: the user name "shop/bob"
	// does not make the client a member of tenant shop (nobody vouched for
	// it); every anonymous client is in the listener's default tenant.
	var out, errOut bytes.Buffer
	if err := run([]string{"ctl", "--admin", "http://" + b.admin, "sessions", "shop"}, &out, &errOut); err != nil {
		t.Fatalf("ctl sessions: %v (%s)", err, errOut.String())
	}
	if strings.Contains(out.String(), `"client_id": "ctl-client"`) {
		t.Fatalf("an anonymous client picked tenant shop with its user name:\n%s", out.String())
	}
	out.Reset()
	if err := run([]string{"ctl", "--admin", "http://" + b.admin, "sessions", "default"}, &out, &errOut); err != nil {
		t.Fatalf("ctl sessions: %v (%s)", err, errOut.String())
	}
	if !strings.Contains(out.String(), `"client_id": "ctl-client"`) {
		t.Fatalf("ctl sessions printed:\n%s", out.String())
	}
	out.Reset()
	if err := run([]string{"ctl", "--admin", "http://" + b.admin, "kick", "default", "ctl-client"}, &out, &errOut); err != nil {
		t.Fatalf("ctl kick: %v", err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the kicked 3.1.1 client is still connected")
	}
	if err := run([]string{"ctl", "--admin", "http://" + b.admin, "session", "default", "nobody"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("ctl session of nobody = %v, want a 404 error", err)
	}
}
