package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Profile is a set of scenarios and how long each is measured.
type Profile struct {
	Rounds   int
	Warmup   time.Duration
	Duration time.Duration
	Settle   time.Duration // idle: wait before reading the broker's RSS
	// IdleWindow (idle-N-kaS): the broker's CPU is sampled this long with
	// the connections silent, before the PINGREQ window.
	IdleWindow time.Duration
	// Brokers are the profile's brokers when -brokers is not given (empty:
	// all three).
	Brokers   string
	Scenarios []string
	// About says what the profile is for, in `list`.
	About string
}

var profiles = map[string]Profile{
	// quick: under 3 minutes for three brokers; one scenario per goal and a
	// few of each family.
	"quick": {Rounds: 3, Warmup: 500 * time.Millisecond, Duration: 1250 * time.Millisecond, Settle: time.Second,
		Scenarios: []string{
			"p2p-1-1-q0-16B",
			"p2p-1-1-q1-16B-if100",
			"fanin-50-1-q0-16B",
			"fanout-1-50-q0-16B",
			"p2p-10-10-q0-16B-r50k",
			"persist-1-1-q1-16B-n5k",
			"retained-2000",
			"connstorm-2000",
			"idle-5000",
		}},
	// full: every family with its QoS variants; under 20 minutes.
	"full": {Rounds: 3, Warmup: time.Second, Duration: 3 * time.Second, Settle: 2 * time.Second,
		Scenarios: []string{
			"p2p-1-1-q0-16B",
			"p2p-1-1-q1-16B-if100",
			"p2p-1-1-q2-16B-if100",
			"p2p-1-1-q0-1KB",
			"p2p-100-100-q0-16B",
			"p2p-100-100-q1-16B",
			"fanin-100-1-q0-16B",
			"fanin-100-1-q1-16B",
			"share-100-4-q1-16B",
			"fanout-1-100-q0-16B",
			"fanout-1-100-q1-16B",
			"p2p-10-10-q0-16B-r10k",
			"p2p-10-10-q0-16B-r50k",
			"p2p-10-10-q1-16B-r10k",
			"persist-10-10-q1-16B-n5k",
			"retained-10000",
			"connstorm-10000",
			"idle-15000",
		}},
	// scale (make bench-scale): 250,000 idle connections from 127.0.0.1 to
	// 127.0.0.16, broker RSS per connection, connect rate, then keep alive
	// 60 s with every connection pinging once in a 60 s window (~4,200
	// PINGREQ/s): broker CPU. One round; Skybridge and mosquitto (nats-server
	// needs about 25 KiB per connection, 6 GB for this).
	"scale": {Rounds: 1, Settle: 5 * time.Second, IdleWindow: 10 * time.Second, Brokers: "skybridge,mosquitto",
		About:     "250,000 idle connections (16 source addresses), RSS, connect rate and keep-alive CPU",
		Scenarios: []string{"idle-250000-ka60"}},
	// fanout (make bench-fanout): one publisher to 10,000 subscribers at
	// QoS 0 and 1, at 1, 10 and 50 msg/s: 10,000, 100,000 and 500,000
	// deliveries/s offered. Not saturating: a saturating publisher packs
	// up to 128 messages into one write, 1.28M deliveries, and every broker
	// stops reading it for longer than the write deadline (bench/README.md).
	"fanout": {Rounds: 3, Warmup: time.Second, Duration: 3 * time.Second, Settle: time.Second,
		About: "fan-out 1 -> 10,000 subscribers, QoS 0 and 1, 10k, 100k and 500k deliveries/s offered",
		Scenarios: []string{
			"fanout-1-10000-q0-16B-r1",
			"fanout-1-10000-q1-16B-r1",
			"fanout-1-10000-q0-16B-r10",
			"fanout-1-10000-q1-16B-r10",
			"fanout-1-10000-q0-16B-r50",
			"fanout-1-10000-q1-16B-r50",
		}},
}

// brokerProc is a broker process started by compare.
type brokerProc struct {
	name string
	cmd  *exec.Cmd
	addr string
	done chan struct{}
	out  *tailBuffer
}

func (p *brokerProc) pid() int { return p.cmd.Process.Pid }

// stop ends the process by its pid: SIGTERM, then SIGKILL after 5 s.
func (p *brokerProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// procs tracks every broker process compare started, so that each is
// stopped by its pid however compare ends.
type procs struct {
	mu  sync.Mutex
	set map[*brokerProc]struct{}
}

func (ps *procs) add(p *brokerProc) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.set[p] = struct{}{}
}

func (ps *procs) stop(p *brokerProc) {
	p.stop()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	delete(ps.set, p)
}

func (ps *procs) stopAll() {
	ps.mu.Lock()
	list := make([]*brokerProc, 0, len(ps.set))
	for p := range ps.set {
		list = append(list, p)
	}
	ps.mu.Unlock()
	for _, p := range list {
		ps.stop(p)
	}
}

// tailBuffer keeps the last 8 KiB written to it.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 8<<10 {
		t.b = append(t.b[:0], t.b[len(t.b)-8<<10:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// brokerKind knows how to start one broker on a port.
type brokerKind struct {
	Name    string
	Bin     string
	Version string
	Config  string // what was configured, for the report
	// args returns the command line for a broker on port, with dir a
	// private temporary directory.
	args func(dir string, port int) ([]string, error)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// launch starts a broker on a fresh port and waits until it answers an MQTT
// CONNECT.
func launch(ctx context.Context, ps *procs, k *brokerKind, tmp string) (*brokerProc, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp(tmp, k.Name+"-")
		if err != nil {
			return nil, err
		}
		args, err := k.args(dir, port)
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(k.Bin, args...)
		cmd.Dir = dir // whatever a broker writes by default stays in its own directory
		out := &tailBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		// Should this process die without stopping the broker, the kernel
		// kills it.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start %s: %w", k.Name, err)
		}
		p := &brokerProc{name: k.Name, cmd: cmd, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), done: make(chan struct{}), out: out}
		ps.add(p)
		go func() { _ = cmd.Wait(); close(p.done) }()
		if lastErr = waitReady(ctx, p, 15*time.Second); lastErr == nil {
			return p, nil
		}
		ps.stop(p)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return nil, lastErr
}

func waitReady(ctx context.Context, p *brokerProc, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited at start: %s", p.name, p.out.String())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		c, err := dial(dialConfig{Addr: p.addr, ClientID: "bench-ready", Clean: true, KeepAlive: 30, Timeout: time.Second})
		if err == nil {
			c.disconnect()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready on %s after %v: %v; output: %s", p.name, p.addr, limit, err, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ensureInstalled finds bin, installing pkg with apt-get when it is missing.
func ensureInstalled(bin, pkg string, log io.Writer) (string, error) {
	find := func() (string, error) {
		if p, err := exec.LookPath(bin); err == nil {
			return p, nil
		}
		for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
			if p := filepath.Join(dir, bin); isExecutable(p) {
				return p, nil
			}
		}
		return "", fmt.Errorf("%s not found", bin)
	}
	if p, err := find(); err == nil {
		return p, nil
	}
	fmt.Fprintf(log, "%s is missing: apt-get install %s\n", bin, pkg)
	var prefix []string
	if os.Geteuid() != 0 {
		prefix = []string{"sudo", "-n"}
	}
	run := func(args ...string) error {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return nil
	}
	install := append(slices.Clone(prefix), "apt-get", "install", "-y", "-qq", "--no-install-recommends", pkg)
	if err := run(install...); err != nil {
		// The package lists may be missing on a fresh machine.
		if err2 := run(append(slices.Clone(prefix), "apt-get", "update", "-qq")...); err2 != nil {
			return "", err2
		}
		if err := run(install...); err != nil {
			return "", err
		}
	}
	return find()
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// moduleRoot finds the directory of the Skybridge go.mod from the working
// directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(firstLine(b), "github.com/skybridge-mq/skybridge") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run compare inside the Skybridge repository (no go.mod of github.com/skybridge-mq/skybridge above the working directory)")
		}
		dir = parent
	}
}

// tmpfsDir returns a new directory on /dev/shm (tmpfs) when there is one,
// linked from dir so that cleanTmp removes it, or a directory under dir.
func tmpfsDir(dir, name string) (string, error) {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "skybridge-bench-store-")
		if err != nil {
			return "", err
		}
		return d, os.Symlink(d, filepath.Join(dir, name+"-store"))
	}
	d := filepath.Join(dir, name)
	return d, os.MkdirAll(d, 0o755)
}

func skybridgeKind(root, prebuilt, storage, tmp string, log io.Writer) (*brokerKind, error) {
	bin := filepath.Join(tmp, "skybridge")
	version := "skybridge built from " + root
	if prebuilt != "" {
		bin, version = prebuilt, "skybridge binary "+prebuilt
	} else {
		fmt.Fprintln(log, "building skybridge from", root)
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/skybridge")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build ./cmd/skybridge: %v\n%s", err, out)
		}
		if out, err := exec.Command("git", "-C", root, "describe", "--always", "--dirty").Output(); err == nil {
			version = "skybridge " + firstLine(out)
		}
	}
	// Binaries from before the Pebble store have no -storage flag.
	help, _ := exec.Command(bin, "serve", "-h").CombinedOutput()
	hasStorage := strings.Contains(string(help), "-storage")
	conf := "skybridge serve --listen, defaults (1024 in flight and 10000 queued per session)"
	switch {
	case !hasStorage:
		conf += "; in-memory state (this build has no store)"
	case storage == "memory":
		conf += "; --storage memory"
	default:
		conf += "; --storage pebble with a fresh --data directory on tmpfs per run"
	}
	return &brokerKind{Name: "skybridge", Bin: bin, Version: version, Config: conf,
		args: func(dir string, port int) ([]string, error) {
			args := []string{"serve", "--listen", "127.0.0.1:" + strconv.Itoa(port), "--log-level", "warn"}
			if !hasStorage {
				return args, nil
			}
			if storage == "memory" {
				return append(args, "--storage", "memory"), nil
			}
			data, err := tmpfsDir(dir, "data")
			if err != nil {
				return nil, err
			}
			return append(args, "--storage", "pebble", "--data", data), nil
		}}, nil
}

func mosquittoKind(log io.Writer) (*brokerKind, error) {
	bin, err := ensureInstalled("mosquitto", "mosquitto", log)
	if err != nil {
		return nil, err
	}
	out, _ := exec.Command(bin, "-h").CombinedOutput()
	const conf = "allow_anonymous true, persistence false, max_inflight_messages 1024, max_queued_messages 10000, set_tcp_nodelay true"
	return &brokerKind{Name: "mosquitto", Bin: bin, Version: firstLine(out), Config: conf,
		args: func(dir string, port int) ([]string, error) {
			cfg := fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 1024
max_queued_messages 10000
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
`, port)
			path := filepath.Join(dir, "mosquitto.conf")
			return []string{"-c", path}, os.WriteFile(path, []byte(cfg), 0o644)
		}}, nil
}

func natsKind(log io.Writer) (*brokerKind, error) {
	bin, err := ensureInstalled("nats-server", "nats-server", log)
	if err != nil {
		return nil, err
	}
	out, _ := exec.Command(bin, "--version").CombinedOutput()
	// NATS MQTT needs JetStream; its store goes to tmpfs when there is one,
	// so that no broker waits on a disk.
	return &brokerKind{Name: "nats", Bin: bin, Version: firstLine(out),
		Config: "MQTT listener, JetStream store on a temporary directory (tmpfs /dev/shm when present), defaults otherwise",
		args: func(dir string, port int) ([]string, error) {
			store, err := tmpfsDir(dir, "js")
			if err != nil {
				return nil, err
			}
			client, err := freePort()
			if err != nil {
				return nil, err
			}
			cfg := fmt.Sprintf(`listen: "127.0.0.1:%d"
server_name: "skybridge_bench"
jetstream {
  store_dir: %q
}
mqtt {
  listen: "127.0.0.1:%d"
}
`, client, store, port)
			path := filepath.Join(dir, "nats.conf")
			return []string{"-c", path}, os.WriteFile(path, []byte(cfg), 0o644)
		}}, nil
}

// Machine describes where a comparison ran.
type Machine struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	MemoryGiB int    `json:"memory_gib"`
	Kernel    string `json:"kernel"`
	OS        string `json:"os"`
	Go        string `json:"go"`
	// LoadAvg is /proc/loadavg at the start and at the end: other work on
	// the machine shows there.
	LoadAvg []string `json:"loadavg,omitempty"`
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func machineInfo() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), LoadAvg: []string{loadAvg()}}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryGiB = int((kb + 1<<19) >> 20)
		}
	}
	return m
}

// Comparison is the JSON document compare writes.
type Comparison struct {
	Started  time.Time         `json:"started"`
	Elapsed  float64           `json:"elapsed_s"`
	Profile  string            `json:"profile"`
	Rounds   int               `json:"rounds"`
	Warmup   float64           `json:"warmup_s"`
	Window   float64           `json:"window_s"`
	Machine  Machine           `json:"machine"`
	Brokers  []BrokerInfo      `json:"brokers"`
	Note     string            `json:"note"`
	Runs     []*Result         `json:"runs"`
	Summary  []ScenarioSummary `json:"summary"`
	Goals    []Goal            `json:"goals"`
	Complete bool              `json:"complete"` // false when interrupted
}

// BrokerInfo names a broker and how it was configured.
type BrokerInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Config  string `json:"config"`
}

func runCompare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	profName := fs.String("profile", "quick", "quick (under 3 minutes), full (under 20), scale (250,000 idle connections) or fanout (1 -> 10,000)")
	outDir := fs.String("out", "", "directory for the results (default: bench/results of the repository)")
	only := fs.String("brokers", "", "brokers to compare, comma-separated (default: the profile's, else skybridge,mosquitto,nats)")
	scen := fs.String("scenarios", "", "comma-separated scenarios instead of the profile's")
	rounds := fs.Int("rounds", 0, "rounds instead of the profile's")
	progress := fs.Bool("progress", false, "per-second progress lines of each run")
	skyBin := fs.String("skybridge-bin", "", "use this skybridge binary instead of building one")
	skySrc := fs.String("skybridge-src", "", "build skybridge from this source tree (default: the repository)")
	skyStorage := fs.String("skybridge-storage", "pebble", "pebble (a fresh store on tmpfs per run) or memory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	prof, ok := profiles[*profName]
	if !ok {
		return fmt.Errorf("unknown profile %q (quick, full, scale or fanout)", *profName)
	}
	if *only == "" {
		*only = prof.Brokers
		if *only == "" {
			*only = "skybridge,mosquitto,nats"
		}
	}
	if *scen != "" {
		prof.Scenarios = strings.Split(*scen, ",")
	}
	if *rounds > 0 {
		prof.Rounds = *rounds
	}
	if *skyStorage != "pebble" && *skyStorage != "memory" {
		return fmt.Errorf("-skybridge-storage %q: pebble or memory", *skyStorage)
	}
	scenarios := make([]Scenario, 0, len(prof.Scenarios))
	for _, n := range prof.Scenarios {
		s, err := ParseScenario(strings.TrimSpace(n))
		if err != nil {
			return err
		}
		scenarios = append(scenarios, s)
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if *outDir == "" {
		*outDir = filepath.Join(root, "bench", "results")
	}
	tmp, err := os.MkdirTemp("", "skybridge-bench-")
	if err != nil {
		return err
	}
	ps := &procs{set: map[*brokerProc]struct{}{}}
	// However compare ends (error, Ctrl-C, panic), every broker it started
	// is stopped by its pid before the temporary directories go.
	defer func() {
		ps.stopAll()
		cleanTmp(tmp)
	}()

	var kinds []*brokerKind
	for _, name := range strings.Split(*only, ",") {
		var k *brokerKind
		var err error
		switch strings.TrimSpace(name) {
		case "skybridge":
			src := root
			if *skySrc != "" {
				src = *skySrc
			}
			k, err = skybridgeKind(src, *skyBin, *skyStorage, tmp, stderr)
		case "mosquitto":
			k, err = mosquittoKind(stderr)
		case "nats":
			k, err = natsKind(stderr)
		default:
			err = fmt.Errorf("unknown broker %q", name)
		}
		if err != nil {
			return err
		}
		kinds = append(kinds, k)
	}
	cmp := &Comparison{Started: time.Now().UTC(), Profile: *profName, Rounds: prof.Rounds, Machine: machineInfo(),
		Warmup: prof.Warmup.Seconds(), Window: prof.Duration.Seconds(),
		Note: "broker and load generator share the machine's cores; each run gets a freshly started broker"}
	for _, k := range kinds {
		cmp.Brokers = append(cmp.Brokers, BrokerInfo{Name: k.Name, Version: k.Version, Config: k.Config})
	}
	fmt.Fprintf(stderr, "compare %s: %d scenarios x %d brokers x %d rounds on %s (%d cores)\n",
		*profName, len(scenarios), len(kinds), prof.Rounds, cmp.Machine.CPU, cmp.Machine.Cores)

	total := len(scenarios) * len(kinds) * prof.Rounds
	n := 0
	start := time.Now()
	runID := strconv.FormatInt(time.Now().Unix()%1e6, 36)
	for r := 1; r <= prof.Rounds && ctx.Err() == nil; r++ {
		for _, s := range scenarios {
			for _, k := range kinds {
				if ctx.Err() != nil {
					break
				}
				n++
				res := runOne(ctx, ps, k, s, prof, r, tmp, fmt.Sprintf("%s-%d-%d", runID, r, n), *progress, stderr)
				cmp.Runs = append(cmp.Runs, res)
				status := "ok"
				if !res.OK {
					status = "FAILED: " + res.Error
				}
				fmt.Fprintf(stderr, "[%3.0fs] round %d/%d %3d/%d  %-28s %-10s %12s %-7s %s\n", time.Since(start).Seconds(),
					r, prof.Rounds, n, total, s.Name, k.Name, formatValue(res.Primary, res.Unit), res.Unit, status)
			}
		}
	}
	cmp.Elapsed = round3(time.Since(start).Seconds())
	cmp.Machine.LoadAvg = append(cmp.Machine.LoadAvg, loadAvg())
	cmp.Complete = ctx.Err() == nil
	cmp.Summary = summarize3(cmp, scenarios, kinds)
	cmp.Goals = evaluateGoals(cmp.Summary)
	paths, err := writeReport(cmp, *outDir)
	if err != nil {
		return err
	}
	md := markdownReport(cmp, "")
	fmt.Fprintln(stdout, md)
	for _, p := range paths {
		fmt.Fprintln(stderr, "wrote", p)
	}
	if !cmp.Complete {
		return errors.New("interrupted: partial results written")
	}
	return nil
}

// runOne starts a fresh broker, runs one scenario against it and stops it.
func runOne(ctx context.Context, ps *procs, k *brokerKind, s Scenario, prof Profile, round int, tmp, id string,
	progress bool, stderr io.Writer) *Result {
	t0 := time.Now()
	fail := func(err error) *Result {
		return &Result{Scenario: s.Name, Broker: k.Name, Round: round, Error: err.Error()}
	}
	p, err := launch(ctx, ps, k, tmp)
	if err != nil {
		return fail(err)
	}
	defer ps.stop(p)
	// A hard bound on the run, on top of every per-operation deadline.
	rctx, cancel := context.WithTimeout(ctx, prof.Warmup+prof.Duration+prof.Settle+prof.IdleWindow+s.TimeBound())
	defer cancel()
	rs := RunSettings{
		Client: ClientOptions{Addr: p.addr, SrcIPs: 16, Timeout: 5 * time.Second, Concurrency: 32, IDPrefix: "b" + id,
			SendBuf: 64 << 10, Clean: true},
		Warmup:     prof.Warmup,
		Duration:   prof.Duration,
		BrokerPID:  p.pid(),
		Settle:     prof.Settle,
		IdleWindow: prof.IdleWindow,
		Prefix:     "bench/" + id,
		Label:      fmt.Sprintf("%s %s", s.Name, k.Name),
	}
	if progress {
		rs.Progress = stderr
	}
	res := s.Run(rctx, rs)
	res.Broker, res.Round = k.Name, round
	defer func() { res.WallS = round3(time.Since(t0).Seconds()) }()
	select {
	case <-p.done:
		if res.OK {
			res.OK = false
		}
		res.Error = strings.TrimSpace(res.Error + "; broker exited during the run: " + p.out.String())
	default:
	}
	if errors.Is(rctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		res.OK, res.Error = false, "run exceeded its time bound"
	}
	return res
}

func cleanTmp(tmp string) {
	// The JetStream stores may live in /dev/shm behind symlinks.
	_ = filepath.WalkDir(tmp, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Type()&os.ModeSymlink != 0 {
			if target, err := os.Readlink(path); err == nil && strings.HasPrefix(target, "/dev/shm/skybridge-bench-store-") {
				_ = os.RemoveAll(target)
			}
		}
		return nil
	})
	_ = os.RemoveAll(tmp)
}
