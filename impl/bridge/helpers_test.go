package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/server"
	"github.com/skybridge-mq/skybridge/impl/store"
)

// waitFor bounds every wait for a condition in these tests.
const waitFor = 15 * time.Second

// eventually polls cond until it holds or waitFor passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitFor, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for the condition
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("BRIDGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// ---- the local broker: Skybridge in-process ----

type sky struct {
	addr  string // host:port of the TCP listener
	wsURL string
	srv   *server.Server
}

func startSkybridge(t testing.TB, edit ...func(*server.Config)) *sky {
	t.Helper()
	cfg := server.DefaultConfig()
	for _, e := range edit {
		e(&cfg)
	}
	cfg.Listeners = []server.ListenerConfig{
		{Name: "tcp", Type: server.TCP, Addr: "127.0.0.1:0", DefaultTenant: "default"},
		{Name: "ws", Type: server.WS, Addr: "127.0.0.1:0", Path: "/mqtt", DefaultTenant: "default"},
	}
	b := broker.New(cfg.Broker, env.Real(), store.Memory{})
	if err := b.Recover(); err != nil {
		t.Fatal(err)
	}
	srv := server.New(cfg, b)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return &sky{addr: srv.Addr("tcp").String(), wsURL: "ws://" + srv.Addr("ws").String() + "/mqtt", srv: srv}
}

func (s *sky) url() string { return "tcp://" + s.addr }

// durableSky is a Skybridge on a Pebble store that can crash and start
// again on the same port and what its store had synced (persistent
// sessions survive). The store is on a crashable in-memory file system:
// the local broker's own durability is not under test here, and real
// syncs would only slow the tests down.
type durableSky struct {
	t    testing.TB
	fs   *vfs.MemFS
	addr string
	srv  *server.Server
	st   *store.Pebble
}

func startDurableSkybridge(t testing.TB) *durableSky {
	t.Helper()
	d := &durableSky{t: t, fs: vfs.NewCrashableMem(), addr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	d.start()
	t.Cleanup(d.crash)
	return d
}

func (d *durableSky) url() string { return "tcp://" + d.addr }

func (d *durableSky) start() {
	d.t.Helper()
	e := env.Real()
	e.FS = d.fs
	st, err := store.Open(d.fs, "data", store.Options{MinFreeBytes: 1})
	if err != nil {
		d.t.Fatal(err)
	}
	go st.Run()
	cfg := server.DefaultConfig()
	cfg.Listeners = []server.ListenerConfig{{Name: "tcp", Type: server.TCP, Addr: d.addr, DefaultTenant: "default"}}
	b := broker.New(cfg.Broker, e, st)
	if err := b.Recover(); err != nil {
		d.t.Fatal(err)
	}
	srv := server.New(cfg, b)
	eventually(d.t, "the local broker's port", func() bool { return srv.Start() == nil })
	d.srv, d.st, d.addr = srv, st, srv.Addr("tcp").String()
}

// crash closes every connection and keeps only what the store synced.
// The old store is left to idle (closing it while its committer may be
// running is not safe) and closed when the test ends.
func (d *durableSky) crash() {
	if d.srv == nil {
		return
	}
	d.srv.Close()
	d.fs = d.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	old := d.st
	d.t.Cleanup(func() { old.Close() })
	d.srv, d.st = nil, nil
}

// ---- the remote broker: mosquitto ----

type mosquitto struct {
	t      testing.TB
	bin    string
	dir    string
	port   int
	extra  string
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	stderr *strings.Builder
}

func mosquittoBin(t testing.TB) string {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("mosquitto not installed (apt-get install mosquitto)")
	return ""
}

// freePort returns a free loopback port for a broker that will restart on
// it. It is chosen below the kernel's ephemeral range: a port from that
// range could meanwhile become the local port of one of the many client
// connections the tests open, and the restart would fail.
func freePort(t testing.TB) int {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var lo, hi int
		if _, err := fmt.Sscan(string(b), &lo, &hi); err == nil && lo > 2048 {
			low = lo
		}
	}
	for range 1000 {
		port := 1024 + int(portRand.Uint64()%uint64(low-1024))
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port below the ephemeral range")
	return 0
}

var portRand = env.NewLockedRand(env.SystemSeed())

// newMosquitto prepares a mosquitto on a free loopback port with
// persistence in its own directory; extra is appended to its
// configuration (the listener line included when extra starts one).
// It is not started.
func newMosquitto(t testing.TB, extra string) *mosquitto {
	t.Helper()
	dir := t.TempDir()
	// mosquitto started as root drops to its own user: let it write here.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	m := &mosquitto{t: t, bin: mosquittoBin(t), dir: dir, port: freePort(t), extra: extra}
	t.Cleanup(m.kill)
	return m
}

func (m *mosquitto) addr() string { return fmt.Sprintf("127.0.0.1:%d", m.port) }
func (m *mosquitto) url() string  { return "tcp://" + m.addr() }

// start runs mosquitto on its port and waits until it listens.
func (m *mosquitto) start() {
	m.t.Helper()
	conf := fmt.Sprintf(`# generated by impl/bridge tests
listener %d 127.0.0.1
allow_anonymous true
persistence true
persistence_location %s/
autosave_interval 1
max_queued_messages 100000
max_inflight_messages 100
log_dest stderr
log_type error
log_type warning
%s
`, m.port, m.dir, m.extra)
	path := filepath.Join(m.dir, "mosquitto.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		m.t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		err := m.tryStart(path)
		if err == nil {
			return
		}
		// The port may still be held for a moment by the process just
		// killed: try again a few times.
		if attempt == 20 {
			m.t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // back off before starting a process again
	}
}

func (m *mosquitto) tryStart(conf string) error {
	var stderr strings.Builder
	cmd := exec.Command(m.bin, "-c", conf)
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	m.mu.Lock()
	m.cmd, m.exited, m.stderr = cmd, exited, &stderr
	m.mu.Unlock()
	deadline := time.Now().Add(waitFor)
	for {
		select {
		case <-exited:
			m.mu.Lock()
			m.cmd = nil
			m.mu.Unlock()
			return fmt.Errorf("mosquitto exited: %s", stderr.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", m.addr(), time.Second); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mosquitto not listening on %s", m.addr())
		}
		time.Sleep(5 * time.Millisecond) // polling a socket that is coming up
	}
}

// kill stops mosquitto with SIGKILL, by its process id, and waits for it.
func (m *mosquitto) kill() {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	<-exited
}

// dbSaved reports whether mosquitto has written its persistence file.
func (m *mosquitto) dbSaved() bool {
	_, err := os.Stat(filepath.Join(m.dir, "mosquitto.db"))
	return err == nil
}

// ---- MQTT 5.0 test clients ----

type got struct {
	topic   string
	payload string
	qos     byte
	retain  bool
	props   *paho.PublishProperties
}

func (g got) user(key string) []string {
	if g.props == nil {
		return nil
	}
	return g.props.User.GetAll(key)
}

// client is a reconnecting paho client (autopaho) that records what it
// receives.
type client struct {
	cm    *autopaho.ConnectionManager
	probe string
	mu    sync.Mutex
	msgs  []got
	ups   int
}

type clientOpts struct {
	id         string
	filters    []string
	persistent bool // clean start 0 and a session that outlives the connection
}

func newClient(t testing.TB, serverURL string, o clientOpts) *client {
	t.Helper()
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	if o.id == "" {
		o.id = strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()) + fmt.Sprintf("-%d", time.Now().UnixNano())
	}
	c := &client{probe: "probe/" + o.id}
	if len(o.filters) > 0 {
		o.filters = append(o.filters, c.probe)
	}
	cfg := autopaho.ClientConfig{
		ServerUrls:       []*url.URL{u},
		KeepAlive:        30,
		ReconnectBackoff: autopaho.NewConstantBackoff(20 * time.Millisecond),
		ConnectTimeout:   5 * time.Second,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			c.mu.Lock()
			c.ups++
			c.mu.Unlock()
			if len(o.filters) == 0 {
				return
			}
			go func() {
				s := &paho.Subscribe{}
				for _, f := range o.filters {
					s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_, _ = cm.Subscribe(ctx, s)
			}()
		},
		ClientConfig: paho.ClientConfig{
			ClientID: o.id,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				p := pr.Packet
				c.mu.Lock()
				c.msgs = append(c.msgs, got{topic: p.Topic, payload: string(p.Payload), qos: p.QoS, retain: p.Retain, props: p.Properties})
				c.mu.Unlock()
				return true, nil
			}},
		},
	}
	if o.persistent {
		cfg.SessionExpiryInterval = 3600
	} else {
		cfg.CleanStartOnInitialConnection = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	c.cm = cm
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = cm.Disconnect(dctx)
		dcancel()
		cancel()
	})
	actx, acancel := context.WithTimeout(context.Background(), waitFor)
	defer acancel()
	if err := cm.AwaitConnection(actx); err != nil {
		t.Fatalf("test client %s: %v", o.id, err)
	}
	return c
}

// subscribed waits until the client's subscriptions are in place, by
// publishing a probe to its own probe topic (subscribed together with its
// filters, and matched by no bridge rule) until it comes back.
func (c *client) subscribed(t testing.TB) {
	t.Helper()
	eventually(t, "subscription of the test client", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, _ = c.cm.Publish(ctx, &paho.Publish{Topic: c.probe, QoS: 1, Payload: []byte("probe")})
		for _, m := range c.received() {
			if m.topic == c.probe {
				return true
			}
		}
		return false
	})
}

func (c *client) received() []got {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]got(nil), c.msgs...)
}

// matching returns what was received on topics with the prefix.
func (c *client) matching(prefix string) []got {
	var out []got
	for _, m := range c.received() {
		if strings.HasPrefix(m.topic, prefix) {
			out = append(out, m)
		}
	}
	return out
}

func (c *client) publish(t testing.TB, topic, payload string, qos byte, props *paho.PublishProperties) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := c.cm.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload), Properties: props}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// ---- bridges ----

// testBridge returns a bridge configuration with the fast reconnection
// the tests want.
func testBridge(name, local, remote string) BridgeConfig {
	fast := func(addr string) Endpoint {
		return Endpoint{Address: addr, ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond, ConnectTimeout: 3 * time.Second}
	}
	return BridgeConfig{Name: name, Local: fast(local), Remote: fast(remote), Queue: Queue{Dir: "q-" + name}}
}

func startBridge(t testing.TB, fs vfs.FS, cfg ...BridgeConfig) *Bridge {
	t.Helper()
	b, err := New(Config{Bridges: cfg}, fs, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func qos(q int) *int { return &q }

// distinct returns the payloads in order of first arrival, and how many
// arrivals were repeats (QoS 1 allows them after a reconnection).
func distinct(ms []got) (order []string, dups int) {
	seen := map[string]bool{}
	for _, m := range ms {
		if seen[m.payload] {
			dups++
			continue
		}
		seen[m.payload] = true
		order = append(order, m.payload)
	}
	return order, dups
}

func seqPayloads(from, to int) []string {
	var s []string
	for i := from; i < to; i++ {
		s = append(s, fmt.Sprintf("m%05d", i))
	}
	return s
}

// slowSyncFS gives every sync a disk's latency: what is written stays
// undurable for that long, as on a real disk, so that a test can catch
// an acknowledgement that does not wait for durability.
type slowSyncFS struct {
	vfs.FS
	delay time.Duration
}

type slowSyncFile struct {
	vfs.File
	delay time.Duration
}

func (f slowSyncFile) Sync() error {
	time.Sleep(f.delay) // simulated disk latency
	return f.File.Sync()
}

func (f slowSyncFile) SyncData() error {
	time.Sleep(f.delay) // simulated disk latency
	return f.File.SyncData()
}

func (f slowSyncFile) SyncTo(n int64) (bool, error) {
	time.Sleep(f.delay) // simulated disk latency
	return f.File.SyncTo(n)
}

func (fs slowSyncFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return slowSyncFile{f, fs.delay}, nil
}

func (fs slowSyncFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.wrap(fs.FS.Create(name, c))
}

func (fs slowSyncFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, o ...vfs.OpenOption) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenReadWrite(name, c, o...))
}

func (fs slowSyncFS) ReuseForWrite(old, name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.wrap(fs.FS.ReuseForWrite(old, name, c))
}
