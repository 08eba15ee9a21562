package runner

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/cloud/blob"
)

// The test binary is its own shim: with RUNNER_TEST_SHIM set it is
// "skybridge-edge exec-limited".
func TestMain(m *testing.M) {
	if os.Getenv("RUNNER_TEST_SHIM") == "1" {
		if err := ExecLimited(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(111)
		}
	}
	os.Exit(m.Run())
}

type event struct {
	kind string
	name string
	gen  uint64
	code int
	ok   bool
	why  string
}

type recorder struct {
	mu     sync.Mutex
	events []event
	ch     chan event
}

func newRecorder() *recorder { return &recorder{ch: make(chan event, 1000)} }

func (r *recorder) add(e event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	r.ch <- e
}
func (r *recorder) Started(n string, g uint64, pid int) {
	r.add(event{kind: "started", name: n, gen: g})
}
func (r *recorder) Exited(n string, g uint64, code int) {
	r.add(event{kind: "exited", name: n, gen: g, code: code})
}
func (r *recorder) Failed(n string, g uint64, why string) {
	r.add(event{kind: "failed", name: n, gen: g, why: why})
}
func (r *recorder) Health(n string, g uint64, ok bool) {
	r.add(event{kind: "health", name: n, gen: g, ok: ok})
}

// wait returns the next event of kind for name, or fails after 10s, or
// at once when the app failed to start while another event was awaited.
func (r *recorder) wait(t *testing.T, kind, name string) event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-r.ch:
			if e.kind == kind && e.name == name {
				return e
			}
			if e.kind == "failed" && e.name == name {
				t.Fatalf("waiting for %s of %s: it failed to start: %s", kind, name, e.why)
			}
		case <-deadline:
			t.Fatalf("no %s event for %s", kind, name)
		}
	}
}

type fixture struct {
	t    *testing.T
	dir  string
	arts *blob.Store
	rec  *recorder
	r    *Runner
}

func newFixture(t *testing.T, shim bool) *fixture {
	t.Helper()
	dir := t.TempDir()
	arts, err := blob.Open(vfs.Default, filepath.Join(dir, "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, dir: dir, arts: arts, rec: newRecorder()}
	cfg := Config{Dir: filepath.Join(dir, "apps"), Artifacts: arts, Events: f.rec, StopGrace: 2 * time.Second,
		LogMaxBytes: 4096, CgroupRoot: "-", Env: []string{"PATH=/usr/bin:/bin"}}
	if shim {
		exe, _ := os.Executable()
		cfg.Shim = []string{exe}
		cfg.Env = append(cfg.Env, "RUNNER_TEST_SHIM=1")
	}
	if f.r, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.r.Close)
	return f
}

// script stores a shell script as an artifact.
func (f *fixture) script(body string) api.Artifact {
	f.t.Helper()
	data := []byte("#!/bin/sh\n" + body + "\n")
	sha, n, err := f.arts.Put(bytes.NewReader(data), "")
	if err != nil {
		f.t.Fatal(err)
	}
	return api.Artifact{SHA256: sha, Size: n, Name: "app"}
}

func (f *fixture) log(name string) string {
	b, _ := os.ReadFile(filepath.Join(f.dir, "logs", name+".log"))
	return string(b)
}

// waitLog waits until the app's log contains want.
func (f *fixture) waitLog(name, want string) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(f.log(name), want) {
		if time.Now().After(deadline) {
			f.t.Fatalf("log of %s never contained %q; it holds %q", name, want, f.log(name))
		}
		time.Sleep(20 * time.Millisecond) // polling a file with a deadline
	}
}

const sleeper = `trap 'echo bye; exit 0' TERM; echo "up $SKYBRIDGE_APP $GREETING"; cat etc/app.conf; while :; do sleep 0.05; done`

func TestStartStopReplace(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	spec := api.AppSpec{Name: "web", Artifact: f.script(sleeper), Env: []api.EnvVar{{Name: "GREETING", Value: "hello"}},
		Files: []api.File{{Path: "etc/app.conf", Data: []byte("conf-v1\n")}, {Path: "sec/token", Data: []byte("s3"), Secret: true}}}
	f.r.Start("web", 1, spec)
	f.rec.wait(t, "started", "web")
	f.waitLog("web", "up web hello")
	f.waitLog("web", "conf-v1")
	st, err := os.Stat(filepath.Join(f.dir, "apps", "web", "sec", "token"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("secret file: %v %v", st.Mode(), err)
	}
	// A new generation replaces the process (the old one hears TERM).
	spec.Files = []api.File{{Path: "etc/app.conf", Data: []byte("conf-v2\n")}}
	f.r.Start("web", 2, spec)
	if e := f.rec.wait(t, "exited", "web"); e.gen != 1 || e.code != 0 {
		t.Errorf("old generation: %+v", e)
	}
	if e := f.rec.wait(t, "started", "web"); e.gen != 2 {
		t.Errorf("new generation: %+v", e)
	}
	f.waitLog("web", "conf-v2")
	if _, err := os.Stat(filepath.Join(f.dir, "apps", "web", "sec", "token")); !os.IsNotExist(err) {
		t.Error("a file of the previous revision was left behind")
	}
	// Stopping an older generation does nothing; the current one stops.
	f.r.Stop("web", 1)
	f.r.Stop("web", 2)
	if e := f.rec.wait(t, "exited", "web"); e.gen != 2 {
		t.Errorf("stop: %+v", e)
	}
	f.waitLog("web", "bye")
}

func TestExitCodeAndBadArtifact(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	f.r.Start("x", 1, api.AppSpec{Name: "x", Artifact: f.script("exit 3")})
	f.rec.wait(t, "started", "x")
	if e := f.rec.wait(t, "exited", "x"); e.code != 3 {
		t.Errorf("exit code %d, want 3", e.code)
	}
	// A damaged artifact is refused before it runs.
	art := f.script("echo hi")
	if err := os.WriteFile(f.arts.Path(art.SHA256), []byte("#!/bin/sh\necho evil\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.r.Start("y", 1, api.AppSpec{Name: "y", Artifact: art})
	f.rec.wait(t, "failed", "y")
}

func TestRlimitsThroughShim(t *testing.T) {
	t.Parallel()
	f := newFixture(t, true)
	f.r.Start("lim", 1, api.AppSpec{Name: "lim", Artifact: f.script("echo nofile=$(ulimit -n)"), Limits: api.Limits{NoFile: 77}})
	f.rec.wait(t, "exited", "lim")
	f.waitLog("lim", "nofile=77")
}

func TestHealthCheck(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	f.r.Start("h", 1, api.AppSpec{Name: "h", Artifact: f.script(sleeper),
		Health: &api.Health{Exec: []string{"test", "-f", "healthy"}, Period: api.Duration(50 * time.Millisecond)}})
	f.rec.wait(t, "started", "h")
	if e := f.rec.wait(t, "health", "h"); e.ok {
		t.Error("healthy without the file")
	}
	if err := os.WriteFile(filepath.Join(f.dir, "apps", "h", "healthy"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for e := f.rec.wait(t, "health", "h"); !e.ok; e = f.rec.wait(t, "health", "h") {
	}
	if u := f.r.Usage()["h"]; u.PID == 0 || u.RSSBytes <= 0 {
		t.Errorf("usage %+v", u)
	}
}

func TestLogRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	w, err := newRotating(p, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	line := []byte(strings.Repeat("x", 39) + "\n")
	for i := 0; i < 20; i++ {
		if _, err := w.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	_ = w.Close()
	var total int64
	for _, name := range []string{"a.log", "a.log.1", "a.log.2"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if st.Size() > 100 {
			t.Errorf("%s has %d bytes (max 100)", name, st.Size())
		}
		total += st.Size()
	}
	if _, err := os.Stat(filepath.Join(dir, "a.log.3")); !os.IsNotExist(err) {
		t.Error("more rotated files than kept")
	}
	if w.Rotations == 0 || total > 300 {
		t.Errorf("rotations %d, %d bytes kept", w.Rotations, total)
	}
}

func TestLimitArgs(t *testing.T) {
	t.Parallel()
	l := api.Limits{NoFile: 10, MemoryBytes: 1 << 30}
	if got := strings.Join(limitArgs(l, false), " "); got != "--nofile=10 --as=1073741824" {
		t.Errorf("without cgroups: %q", got)
	}
	if got := strings.Join(limitArgs(l, true), " "); got != "--nofile=10" {
		t.Errorf("with cgroups (memory.max instead of RLIMIT_AS): %q", got)
	}
}

// cgroup files are written as the limits say (a directory standing in for
// the hierarchy: the kernel's enforcement needs a cgroup v2 machine).
func TestCgroupFiles(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu memory pids"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCgroups(root, nopLogger())
	if c == nil {
		t.Fatal("no cgroups on a writable v2 hierarchy")
	}
	fd, err := c.prepare("web", api.Limits{MemoryBytes: 64 << 20, CPUMillis: 500, Procs: 32})
	if err != nil {
		t.Fatal(err)
	}
	defer closeFD(fd)
	for file, want := range map[string]string{"memory.max": "67108864", "cpu.max": "50000 100000", "pids.max": "32"} {
		b, _ := os.ReadFile(filepath.Join(root, "skybridge-edge", "web", file))
		if string(b) != want {
			t.Errorf("%s = %q, want %q", file, b, want)
		}
	}
	if newCgroups(t.TempDir(), nopLogger()) != nil {
		t.Error("cgroups without a v2 hierarchy")
	}
}

func nopLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func closeFD(fd int) { _ = syscall.Close(fd) }
