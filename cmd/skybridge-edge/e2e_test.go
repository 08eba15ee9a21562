package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/skybridge-mq/skybridge/cloud/api"
)

// bins holds the binaries the end-to-end test builds once.
var bins struct {
	once                   sync.Once
	dir                    string
	cloud, edge, heartbeat string
	broker                 string // the skybridge broker
	err                    error
}

func build(t *testing.T) {
	t.Helper()
	bins.once.Do(func() {
		bins.dir, bins.err = os.MkdirTemp("", "skybridge-e2e-")
		if bins.err != nil {
			return
		}
		for _, b := range []struct {
			out *string
			pkg string
		}{{&bins.cloud, "../skybridge-cloud"}, {&bins.edge, "."}, {&bins.heartbeat, "../../edge/demo/heartbeat"}, {&bins.broker, "../skybridge"}} {
			*b.out = filepath.Join(bins.dir, filepath.Base(filepath.Clean(b.pkg)))
			if b.pkg == "." {
				*b.out = filepath.Join(bins.dir, "skybridge-edge")
			}
			cmd := exec.Command("go", "build", "-o", *b.out, b.pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				bins.err = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		_ = os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// proc is a process the test started (and alone ends, by its group).
type proc struct {
	cmd *exec.Cmd
	log string
}

func start(t *testing.T, logPath string, name string, args ...string) *proc {
	t.Helper()
	return startEnv(t, nil, logPath, name, args...)
}

// startEnv starts a process with env added to the test's environment.
func startEnv(t *testing.T, env []string, logPath string, name string, args ...string) *proc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	// Its own group (kill takes its apps too), and it dies with the test
	// process even when that is killed before its cleanups run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p := &proc{cmd: cmd, log: logPath}
	t.Cleanup(func() { p.kill(syscall.SIGKILL) })
	return p
}

// kill signals the process's group (its apps too) and waits for it.
func (p *proc) kill(sig syscall.Signal) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	_ = p.cmd.Wait()
}

func (p *proc) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool, logs ...*proc) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			for _, p := range logs {
				out := p.output()
				t.Logf("--- %s (last 3000 bytes)\n%s", p.log, out[max(0, len(out)-3000):])
			}
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
}

// proxy stands between the nodes and the cloud; cut closes every
// connection through it and refuses new ones.
type proxy struct {
	ln     net.Listener
	target atomic.Value // string
	cutOff atomic.Bool
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

func newProxy(t *testing.T) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() { _ = ln.Close(); p.cut(true) })
	go p.serve()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		target, _ := p.target.Load().(string)
		if p.cutOff.Load() || target == "" {
			_ = c.Close()
			continue
		}
		u, err := net.Dial("tcp", target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[u] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(a, b net.Conn) {
			_, _ = io.Copy(a, b)
			_ = a.Close()
			_ = b.Close()
			p.mu.Lock()
			delete(p.conns, a)
			delete(p.conns, b)
			p.mu.Unlock()
		}
		go pipe(c, u)
		go pipe(u, c)
	}
}

func (p *proxy) cut(off bool) {
	p.cutOff.Store(off)
	if !off {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// cloudAPI is the operator's client.
type cloudAPI struct {
	t     *testing.T
	base  string
	token string
	hc    *http.Client
}

func (c *cloudAPI) get(path string, out any) {
	c.t.Helper()
	req, _ := http.NewRequest("GET", c.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		c.t.Fatalf("GET %s: %s %s", path, resp.Status, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cloudAPI) node(name string) api.Node {
	var n api.Node
	c.get("/v1/nodes/"+name, &n)
	return n
}

// heartbeat reads an app's heartbeat file: its pid, its arguments and its
// counter.
func heartbeat(dir, app string) (pid int, args string, n int, ok bool) {
	b, err := os.ReadFile(filepath.Join(dir, "apps", app, "heartbeat"))
	if err != nil {
		return 0, "", 0, false
	}
	f := strings.Fields(strings.TrimSpace(string(b)))
	if len(f) < 2 {
		return 0, "", 0, false
	}
	pid, _ = strconv.Atoi(f[0])
	n, _ = strconv.Atoi(f[len(f)-1])
	return pid, strings.Join(f[1:len(f)-1], " "), n, true
}

// alive waits until the app's heartbeat moves, and returns its pid and
// arguments.
func alive(t *testing.T, dir, app string, logs ...*proc) (int, string) {
	t.Helper()
	var pid0, n0 int
	var pid int
	var args string
	eventually(t, 30*time.Second, app+" beating in "+dir, func() bool {
		p, a, n, ok := heartbeat(dir, app)
		if !ok {
			return false
		}
		if p != pid0 {
			pid0, n0 = p, n
			return false
		}
		pid, args = p, a
		return n > n0+1
	}, logs...)
	return pid, args
}

func processGone(pid int) bool { return syscall.Kill(pid, 0) != nil }

// cloudRig is a skybridge-cloud process with its nodes' way to it
// through two proxies the test can cut.
type cloudRig struct {
	p                     *proc
	api                   *cloudAPI
	data                  string
	apiProxy, brokerProxy *proxy
}

// ctl runs skybridge-cloud ctl against the rig's cloud.
func (r *cloudRig) ctl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(bins.cloud, append([]string{"ctl", "--data", r.data, "--api", r.api.base}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ctl %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// startCloud starts a cloud (lease 6s) in dir/cloud.
func startCloud(t *testing.T, dir string) *cloudRig {
	t.Helper()
	r := &cloudRig{data: filepath.Join(dir, "cloud"), apiProxy: newProxy(t), brokerProxy: newProxy(t)}
	r.p = start(t, filepath.Join(dir, "cloud.log"), bins.cloud, "serve", "--data", r.data,
		"--api", "127.0.0.1:0", "--broker", "127.0.0.1:0", "--host", "127.0.0.1",
		"--public-api", "https://"+r.apiProxy.addr(), "--public-broker", r.brokerProxy.addr(), "--lease", "6s", "--log-level", "debug")
	ready := regexp.MustCompile(`msg=ready api=(\S+) broker=(\S+)`)
	var m []string
	eventually(t, 30*time.Second, "the cloud to start", func() bool {
		m = ready.FindStringSubmatch(r.p.output())
		return m != nil
	}, r.p)
	r.apiProxy.target.Store(m[1])
	r.brokerProxy.target.Store(m[2])
	tok, _ := os.ReadFile(filepath.Join(r.data, "admin.token"))
	caPEM, _ := os.ReadFile(filepath.Join(r.data, "tls", "ca.crt"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	r.api = &cloudAPI{t: t, base: "https://" + m[1], token: strings.TrimSpace(string(tok)),
		hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
	return r
}

// TestEndToEnd runs the real binaries: a cloud, two edge agents behind a
// proxy that the test can cut; an app deployed by label; the link cut; an
// agent killed and restarted while offline (its app runs again from local
// state); a desired state changed and device data produced while offline;
// the link restored; convergence and the outbox checked.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	build(t)
	started := time.Now()
	dir := t.TempDir()
	cl := startCloud(t, dir)
	cloud, c, apiProxy, brokerProxy := cl.p, cl.api, cl.apiProxy, cl.brokerProxy
	ctl := func(args ...string) string { t.Helper(); return cl.ctl(t, args...) }

	// Two nodes, activated through the proxy.
	type edgeNode struct {
		name, dir, local string
		p                *proc
		args             []string
	}
	nodes := []*edgeNode{{name: "n1"}, {name: "n2"}}
	for i, n := range nodes {
		join := ctl("token", n.name, "role=worker", "site="+string(rune('a'+i)))
		n.dir, n.local = filepath.Join(dir, n.name), freePort(t)
		n.args = []string{"run", "--data", n.dir, "--local-broker", n.local, "--report-every", "1s",
			"--resync-jitter", "300ms", "--ack-timeout", "3s", "--log-level", "debug"}
		n.p = start(t, filepath.Join(dir, n.name+".log"), bins.edge, append(n.args, "--join", join)...)
	}
	for _, n := range nodes {
		eventually(t, 30*time.Second, n.name+" online", func() bool {
			nd := c.node(n.name)
			return nd.State == api.NodeActive && nd.Online
		}, nodes[0].p, nodes[1].p, cloud)
	}
	t.Logf("%v: cloud up, two nodes activated and online", time.Since(started).Round(time.Millisecond))

	// The app, by label: a native binary.
	sha := ctl("push", bins.heartbeat, "--name", "heartbeat")
	deploy := func(rev string) {
		t.Helper()
		app := fmt.Sprintf(`{"name": "hello", "selector": "role=worker", "artifact": {"sha256": %q}, "args": ["--rev", %q],
			"restart": {"policy": "always", "backoff_min": "200ms", "backoff_max": "2s"}}`, sha, rev)
		f := filepath.Join(dir, "app-"+rev+".json")
		if err := os.WriteFile(f, []byte(app), 0o644); err != nil {
			t.Fatal(err)
		}
		ctl("deploy", f)
	}
	deploy("v1")
	for _, n := range nodes {
		if _, args := alive(t, n.dir, "hello", n.p); args != "--rev v1" {
			t.Fatalf("%s runs %q, want --rev v1", n.name, args)
		}
	}
	converged := func(rev string) {
		t.Helper()
		for _, n := range nodes {
			eventually(t, 60*time.Second, n.name+" converged on "+rev, func() bool {
				nd := c.node(n.name)
				_, args, _, ok := heartbeat(n.dir, "hello")
				return ok && args == "--rev "+rev && nd.Status != nil && nd.Status.AppliedVersion == nd.DesiredVersion
			}, n.p, cloud)
		}
	}
	converged("v1")
	t.Logf("%v: hello v1 runs on both nodes", time.Since(started).Round(time.Millisecond))

	// Cut the link. Both nodes keep running their app.
	before := map[string]uint64{}
	for _, n := range nodes {
		before[n.name] = c.node(n.name).Outbox.Applied
	}
	cutAt := time.Now()
	apiProxy.cut(true)
	brokerProxy.cut(true)
	eventually(t, 30*time.Second, "the cloud to see both nodes offline", func() bool {
		return !c.node("n1").Online && !c.node("n2").Online
	}, cloud)
	t.Logf("%v: link cut, both nodes offline", time.Since(started).Round(time.Millisecond))
	// The desired state changes while they are offline.
	deploy("v2")
	// Device data produced offline, through n2's local broker.
	ctl("put", "/v1/devicemodels/thermo", writeJSON(t, dir, "model.json", `{"name":"thermo","properties":[{"name":"temp","type":"int"}]}`))
	ctl("put", "/v1/devices/d2", writeJSON(t, dir, "device.json", `{"name":"d2","model":"thermo","node":"n2"}`))
	publishLocal(t, nodes[1].local, "devices/d2/reported", `{"temp":42}`)
	// Kill n1's agent (its app dies with it) and start it again: offline,
	// from its local state alone.
	n1 := nodes[0]
	oldPid, _ := alive(t, n1.dir, "hello", n1.p)
	n1.p.kill(syscall.SIGKILL)
	eventually(t, 10*time.Second, "n1's app to die with its agent", func() bool { return processGone(oldPid) })
	n1.p = start(t, filepath.Join(dir, "n1-2.log"), bins.edge, n1.args...)
	pid, args := alive(t, n1.dir, "hello", n1.p)
	if pid == oldPid || args != "--rev v1" {
		t.Fatalf("after an offline restart n1 runs pid %d %q; want a new process of --rev v1", pid, args)
	}
	if _, args := alive(t, nodes[1].dir, "hello", nodes[1].p); args != "--rev v1" {
		t.Fatalf("n2 runs %q offline, want --rev v1", args)
	}
	t.Logf("%v: n1 killed and restarted offline: hello v1 runs again (pid %d)", time.Since(started).Round(time.Millisecond), pid)

	// Restore the link: the nodes converge on v2; the outbox drains.
	outage := time.Since(cutAt)
	apiProxy.cut(false)
	brokerProxy.cut(false)
	converged("v2")
	t.Logf("%v: link restored, both nodes run hello v2", time.Since(started).Round(time.Millisecond))
	eventually(t, 30*time.Second, "the device report made offline in its shadow", func() bool {
		var sh api.Shadow
		c.get("/v1/devices/d2/shadow", &sh)
		return string(sh.Reported["temp"]) == "42"
	}, nodes[1].p, cloud)
	for _, n := range nodes {
		eventually(t, 30*time.Second, n.name+"'s outbox drained", func() bool {
			nd := c.node(n.name)
			return nd.Status != nil && nd.Status.Outbox.Pending <= 1 && nd.Outbox.Applied > 0
		}, n.p, cloud)
		nd := c.node(n.name)
		// A status report a second, kept through the outage (n1's before
		// and after its restart), reached the cloud.
		if got, want := nd.Outbox.Applied-before[n.name], uint64(outage/time.Second)/2; got < want {
			t.Errorf("%s: %d records applied since the cut, want at least %d (%v offline, a report a second)", n.name, got, want, outage.Round(time.Second))
		}
		if nd.Outbox.Gaps != 0 {
			t.Errorf("%s: the cloud counted %d records the node dropped", n.name, nd.Outbox.Gaps)
		}
		t.Logf("%s: outbox cursor %+v (every record 1..%d applied once; %d duplicates ignored)", n.name, nd.Outbox, nd.Outbox.Applied, nd.Outbox.Duplicates)
	}
	t.Logf("end to end in %v", time.Since(started).Round(time.Millisecond))
}

func writeJSON(t *testing.T, dir, name, body string) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// publishLocal publishes on a node's local broker, as a device does.
func publishLocal(t *testing.T, addr, topic, payload string) {
	t.Helper()
	u, _ := url.Parse("mqtt://" + addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{ServerUrls: []*url.URL{u}, KeepAlive: 30,
		ClientConfig: paho.ClientConfig{ClientID: "device"}})
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Disconnect(context.Background())
	if err := cm.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cm.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}); err != nil {
		t.Fatal(err)
	}
}
