// Package runner is skybridge-edge's native app runner (a runtime
// package): it starts an app's artifact as a process in its working
// directory with its files, environment and resource limits, captures its
// output into rotated log files, probes its health, and tells the agent
// core what happened. Restart policy and backoff are the core's decision
// (edge/agent); the runner only does what it is told, in order, per app.
//
// Each app has one worker goroutine and one pending operation: a newer
// Start or Stop replaces a pending one (it would undo it anyway), so the
// queue per app is bounded by one.
//
// Processes run in their own process group and get SIGKILL when the agent
// dies (Pdeathsig), so that an agent restarted from its local state never
// finds an orphan of its previous run holding the app's port. Limits:
// RLIMIT_NOFILE and RLIMIT_AS (memory) through a re-exec shim (Config.Shim:
// the agent's own binary sets them and execs the app, so they hold from
// the first instruction), and, where a writable cgroup v2 hierarchy
// exists, memory.max, cpu.max and pids.max in a cgroup per app.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/cloud/blob"
)

// Events hears what happened to the apps (from the runner's goroutines).
type Events interface {
	Started(name string, gen uint64, pid int)
	Exited(name string, gen uint64, code int)
	Failed(name string, gen uint64, reason string)
	Health(name string, gen uint64, ok bool)
}

// Config configures a Runner.
type Config struct {
	// Dir holds the apps' working directories (Dir/<app>); LogDir their
	// logs (default Dir/../logs).
	Dir, LogDir string
	// LogMaxBytes is the size at which a log is rotated (1 MiB); LogKeep
	// how many rotated files are kept (3).
	LogMaxBytes int64
	LogKeep     int
	Artifacts   *blob.Store
	// Shim is the command prefix that applies rlimits and execs the app
	// (the agent's binary and "exec-limited"; see ExecLimited). Without
	// it, rlimits are not applied.
	Shim []string
	// CgroupRoot is the cgroup v2 mount (default /sys/fs/cgroup when it
	// is v2; "-" disables cgroups).
	CgroupRoot string
	// StopGrace is how long a process gets after SIGTERM (default 10s).
	StopGrace time.Duration
	// Env is the base environment of every app.
	Env    []string
	Events Events
	Logger *slog.Logger
}

// Runner runs apps.
type Runner struct {
	cfg    Config
	log    *slog.Logger
	cg     *cgroups
	mu     sync.Mutex
	apps   map[string]*app
	wg     sync.WaitGroup
	closed bool
}

type opKind uint8

const (
	opStart opKind = iota + 1
	opStop
)

type op struct {
	kind opKind
	gen  uint64
	spec api.AppSpec
}

type app struct {
	name    string
	mu      sync.Mutex // guards pending, proc
	pending *op
	signal  chan struct{}
	proc    *process
	// usage sampling
	lastCPU  uint64
	lastAt   time.Time
	rss      int64
	cpuShare float64
}

type process struct {
	gen    uint64
	cmd    *exec.Cmd
	done   chan struct{} // closed when it exited
	cancel context.CancelFunc
	log    *rotating
}

// New returns a runner.
func New(cfg Config) (*Runner, error) {
	if cfg.LogDir == "" {
		cfg.LogDir = filepath.Join(filepath.Dir(cfg.Dir), "logs")
	}
	if cfg.LogMaxBytes <= 0 {
		cfg.LogMaxBytes = 1 << 20
	}
	if cfg.LogKeep <= 0 {
		cfg.LogKeep = 3
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{cfg.Dir, cfg.LogDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	r := &Runner{cfg: cfg, log: log, apps: map[string]*app{}}
	r.cg = newCgroups(cfg.CgroupRoot, log)
	return r, nil
}

// Cgroups reports whether apps get cgroup v2 limits on this machine.
func (r *Runner) Cgroups() bool { return r.cg != nil }

// app returns an app's worker (r.mu held).
func (r *Runner) app(name string) *app {
	a := r.apps[name]
	if a == nil {
		a = &app{name: name, signal: make(chan struct{}, 1)}
		r.apps[name] = a
		r.wg.Add(1)
		go r.work(a)
	}
	return a
}

func (r *Runner) submit(name string, o op) {
	r.mu.Lock()
	defer r.mu.Unlock() // held while signalling: Close closes the channels
	if r.closed {
		return
	}
	a := r.app(name)
	a.mu.Lock()
	a.pending = &o // a newer operation replaces a pending one
	a.mu.Unlock()
	select {
	case a.signal <- struct{}{}:
	default:
	}
}

// Start starts generation gen of an app (stopping the one that runs).
func (r *Runner) Start(name string, gen uint64, spec api.AppSpec) {
	r.submit(name, op{kind: opStart, gen: gen, spec: spec})
}

// Stop stops generation gen of an app (if it is the one that runs).
func (r *Runner) Stop(name string, gen uint64) { r.submit(name, op{kind: opStop, gen: gen}) }

// Close stops every app and waits.
func (r *Runner) Close() {
	r.mu.Lock()
	r.closed = true
	apps := make([]*app, 0, len(r.apps))
	for _, a := range r.apps {
		apps = append(apps, a)
	}
	r.mu.Unlock()
	for _, a := range apps {
		close(a.signal)
	}
	r.wg.Wait()
}

func (r *Runner) work(a *app) {
	defer r.wg.Done()
	for range a.signal {
		a.mu.Lock()
		o := a.pending
		a.pending = nil
		a.mu.Unlock()
		if o == nil {
			continue
		}
		switch o.kind {
		case opStop:
			if p := a.current(); p != nil && p.gen == o.gen {
				r.kill(a, p)
			}
		case opStart:
			if p := a.current(); p != nil {
				r.kill(a, p)
			}
			r.start(a, o.gen, o.spec)
		}
	}
	if p := a.current(); p != nil {
		r.kill(a, p)
	}
}

func (a *app) current() *process {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.proc
}

// kill stops a process: SIGTERM to its group, SIGKILL after the grace.
func (r *Runner) kill(a *app, p *process) {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(r.cfg.StopGrace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	a.mu.Lock()
	if a.proc == p {
		a.proc = nil
	}
	a.mu.Unlock()
}

// start prepares the working directory and starts the process.
func (r *Runner) start(a *app, gen uint64, spec api.AppSpec) {
	fail := func(reason string) {
		r.log.Warn("runner: app not started", "app", a.name, "gen", gen, "reason", reason)
		r.cfg.Events.Failed(a.name, gen, reason)
	}
	exe := r.cfg.Artifacts.Path(spec.Artifact.SHA256)
	if err := r.cfg.Artifacts.Verify(spec.Artifact.SHA256); err != nil {
		fail("artifact: " + err.Error())
		return
	}
	if err := os.Chmod(exe, 0o755); err != nil {
		fail(err.Error())
		return
	}
	dir := filepath.Join(r.cfg.Dir, a.name)
	if err := writeFiles(dir, spec.Files); err != nil {
		fail("files: " + err.Error())
		return
	}
	lw, err := newRotating(filepath.Join(r.cfg.LogDir, a.name+".log"), r.cfg.LogMaxBytes, r.cfg.LogKeep)
	if err != nil {
		fail("log: " + err.Error())
		return
	}
	argv0 := spec.Artifact.Name
	if argv0 == "" {
		argv0 = a.name
	}
	args := append([]string{exe}, spec.Args...)
	if shim := limitArgs(spec.Limits, r.cg != nil); len(shim) > 0 && len(r.cfg.Shim) > 0 {
		args = append(append(append([]string{}, r.cfg.Shim...), shim...), append([]string{"--"}, args...)...)
	}
	newCmd := func() *exec.Cmd {
		cmd := exec.Command(args[0], args[1:]...)
		if len(args) == len(spec.Args)+1 {
			cmd.Args[0] = argv0
		}
		cmd.Dir = dir
		cmd.Env = append(append([]string{}, r.cfg.Env...), "SKYBRIDGE_APP="+a.name, "SKYBRIDGE_APP_REVISION="+strconv.FormatUint(spec.Revision, 10))
		for _, e := range spec.Env {
			cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
		}
		cmd.Stdout, cmd.Stderr = lw, lw
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		return cmd
	}
	cgFD := -1
	if r.cg != nil {
		if fd, err := r.cg.prepare(a.name, spec.Limits); err == nil {
			cgFD = fd
			defer syscall.Close(cgFD) // the child has joined the cgroup once started
		} else {
			r.log.Warn("runner: no cgroup for the app, rlimits only", "app", a.name, "err", err)
		}
	}
	var cmd *exec.Cmd
	// ETXTBSY: a process forked elsewhere in this one (another app's
	// start) may briefly hold a just-written artifact open for writing,
	// until its exec closes it; the exec succeeds a moment later.
	for attempt := 0; ; attempt++ {
		cmd = newCmd()
		if cgFD >= 0 {
			setCgroup(cmd.SysProcAttr, cgFD)
		}
		if err = cmd.Start(); err == nil {
			break
		}
		if errors.Is(err, syscall.ETXTBSY) && attempt < 8 {
			time.Sleep(time.Duration(5<<attempt) * time.Millisecond)
			continue
		}
		_ = lw.Close()
		fail("exec: " + err.Error())
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &process{gen: gen, cmd: cmd, done: make(chan struct{}), cancel: cancel, log: lw}
	a.mu.Lock()
	a.proc = p
	a.lastCPU, a.lastAt = 0, time.Time{}
	a.mu.Unlock()
	r.cfg.Events.Started(a.name, gen, cmd.Process.Pid)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		err := cmd.Wait()
		cancel()
		_ = lw.Close()
		close(p.done)
		a.mu.Lock()
		if a.proc == p {
			a.proc = nil
		}
		a.mu.Unlock()
		r.cfg.Events.Exited(a.name, gen, exitCode(err))
	}()
	if spec.Health != nil {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.probe(ctx, a.name, gen, dir, spec.Health)
		}()
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -1
		}
		return ee.ExitCode()
	}
	return -1
}

// writeFiles writes an app's files (secrets readable by the owner only)
// and removes the files a previous revision had that this one has not.
func writeFiles(dir string, files []api.File) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if !strings.HasPrefix(p, filepath.Clean(dir)+string(filepath.Separator)) {
			return fmt.Errorf("path %q leaves the working directory", f.Path)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if f.Secret {
			mode = 0o600
		}
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, f.Data, mode); err != nil {
			return err
		}
		if err := os.Chmod(tmp, mode); err != nil {
			return err
		}
		if err := os.Rename(tmp, p); err != nil {
			return err
		}
		keep[p] = true
	}
	// Files the agent wrote before are listed in .skybridge-files.
	list := filepath.Join(dir, ".skybridge-files")
	if old, err := os.ReadFile(list); err == nil {
		for _, p := range strings.Split(string(old), "\n") {
			if p != "" && !keep[p] && strings.HasPrefix(p, dir) {
				_ = os.Remove(p)
			}
		}
	}
	var b strings.Builder
	for p := range keep {
		b.WriteString(p + "\n")
	}
	return os.WriteFile(list, []byte(b.String()), 0o644)
}

// probe runs an app's health check until ctx ends.
func (r *Runner) probe(ctx context.Context, name string, gen uint64, dir string, h *api.Health) {
	period, timeout := h.Period.D(), h.Timeout.D()
	if period <= 0 {
		period = 10 * time.Second
	}
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		ok := check(pctx, dir, h)
		cancel()
		if ctx.Err() != nil {
			return
		}
		r.cfg.Events.Health(name, gen, ok)
	}
}

func check(ctx context.Context, dir string, h *api.Health) bool {
	switch {
	case len(h.Exec) > 0:
		cmd := exec.CommandContext(ctx, h.Exec[0], h.Exec[1:]...)
		cmd.Dir = dir
		return cmd.Run() == nil
	case h.HTTP != "":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.HTTP, nil)
		if err != nil {
			return false
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		return resp.StatusCode < 400
	case h.TCP != "":
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", h.TCP)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}
	return false
}

// Usage samples each running app's memory and CPU (Linux /proc; zero
// elsewhere).
func (r *Runner) Usage() map[string]api.AppStatus {
	r.mu.Lock()
	apps := make([]*app, 0, len(r.apps))
	for _, a := range r.apps {
		apps = append(apps, a)
	}
	r.mu.Unlock()
	out := map[string]api.AppStatus{}
	now := time.Now()
	for _, a := range apps {
		p := a.current()
		if p == nil {
			continue
		}
		pid := p.cmd.Process.Pid
		rss, cpu, ok := procUsage(pid)
		if !ok {
			continue
		}
		a.mu.Lock()
		if !a.lastAt.IsZero() && cpu >= a.lastCPU {
			secs := now.Sub(a.lastAt).Seconds()
			if secs > 0 {
				a.cpuShare = float64(cpu-a.lastCPU) / clockTicks / secs * 100
			}
		}
		a.lastCPU, a.lastAt, a.rss = cpu, now, rss
		out[a.name] = api.AppStatus{Name: a.name, PID: pid, RSSBytes: rss, CPUPercent: a.cpuShare}
		a.mu.Unlock()
	}
	return out
}

// clockTicks is USER_HZ, 100 on every Linux the agent targets.
const clockTicks = 100

// procUsage reads a process's resident memory and CPU ticks.
func procUsage(pid int) (rss int64, ticks uint64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 22 {
		return 0, 0, false
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	pages, _ := strconv.ParseInt(f[21], 10, 64)
	return pages * int64(os.Getpagesize()), ut + st, true
}
