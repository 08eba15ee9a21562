package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/edge/modbustcp/modbustest"
)

// target is a CPU the edge agent is released for, and the qemu-user
// binary that runs it here.
type target struct {
	name, goarch, goarm, gomips, qemu string
}

var targets = []target{
	{"amd64", "amd64", "", "", "qemu-x86_64-static"},
	{"arm64", "arm64", "", "", "qemu-aarch64-static"},
	{"armv7", "arm", "7", "", "qemu-arm-static"},
	{"mips", "mips", "", "softfloat", "qemu-mips-static"},
	{"mipsle", "mipsle", "", "softfloat", "qemu-mipsel-static"},
}

func targetNamed(name string) (target, bool) {
	for _, tg := range targets {
		if tg.name == name {
			return tg, true
		}
	}
	return target{}, false
}

// crossArches: SKYBRIDGE_CROSS_ARCHES (space or comma separated), by
// default armv7 and mips (make test); make cross-e2e runs all five.
func crossArches(t *testing.T) []target {
	t.Helper()
	list := os.Getenv("SKYBRIDGE_CROSS_ARCHES")
	if list == "" {
		list = "armv7 mips"
	}
	var out []target
	for _, n := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' }) {
		tg, ok := targetNamed(n)
		if !ok {
			t.Fatalf("SKYBRIDGE_CROSS_ARCHES: unknown %q (amd64, arm64, armv7, mips, mipsle)", n)
		}
		out = append(out, tg)
	}
	return out
}

// needQemu skips without the emulator, unless SKYBRIDGE_REQUIRE_QEMU=1.
func needQemu(t *testing.T, tgs []target) {
	t.Helper()
	for _, tg := range tgs {
		if _, err := exec.LookPath(tg.qemu); err != nil {
			if os.Getenv("SKYBRIDGE_REQUIRE_QEMU") == "1" {
				t.Fatalf("%s not found (apt-get install qemu-user-static) and SKYBRIDGE_REQUIRE_QEMU=1", tg.qemu)
			}
			t.Skipf("%s not found: apt-get install qemu-user-static (SKYBRIDGE_REQUIRE_QEMU=1 makes this a failure)", tg.qemu)
		}
	}
}

var crossBins struct {
	mu   sync.Mutex
	path map[string]string
}

// crossEdge returns the edge agent for a target: the release binary of
// SKYBRIDGE_RELEASE_DIR (make cross-e2e tests what make release wrote),
// or one built here (static, stripped).
func crossEdge(t *testing.T, tg target) string {
	t.Helper()
	if dir := os.Getenv("SKYBRIDGE_RELEASE_DIR"); dir != "" {
		p := filepath.Join(dir, "skybridge-edge-linux-"+tg.name)
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("SKYBRIDGE_RELEASE_DIR: %v (make release)", err)
		}
		return p
	}
	crossBins.mu.Lock()
	defer crossBins.mu.Unlock()
	if p, ok := crossBins.path[tg.name]; ok {
		return p
	}
	p := filepath.Join(bins.dir, "skybridge-edge-linux-"+tg.name)
	// Stripped as released; without -trimpath, so that the packages
	// compiled for the target are shared with make cross-test's.
	cmd := exec.Command("go", "build", "-ldflags=-s -w", "-o", p, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+tg.goarch, "GOARM="+tg.goarm, "GOMIPS="+tg.gomips)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build for %s: %v\n%s", tg.name, err, out)
	}
	if crossBins.path == nil {
		crossBins.path = map[string]string{}
	}
	crossBins.path[tg.name] = p
	return p
}

// procStatus reads a field of /proc/PID/status in kB ("VmRSS", "VmHWM").
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == field+":" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return -1
}

// TestCrossEndToEnd runs the edge agent built for other CPUs under
// qemu-user (no binfmt: the test starts qemu-<arch>-static itself)
// against a cloud on the host, one node per target: activation, an app
// deployed by label and started, a Modbus TCP device (a server of the
// test) read and reported to its shadow and a desired value written to
// it, the link cut (a value read while offline) and restored, the outbox
// drained with no gap.
//
// The app is a host executable: qemu-user hands an emulated process's
// execve to the host kernel, so without binfmt an app built for the
// target could not start here. What is emulated is the agent — its
// store, TLS, MQTT, broker, gateway and process management.
func TestCrossEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent for other CPUs and runs it under QEMU")
	}
	tgs := crossArches(t)
	needQemu(t, tgs)
	build(t)
	started := time.Now()
	dir := t.TempDir()
	dev, err := modbustest.Start(2 * len(tgs))
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Stop()
	cl := startCloud(t, dir)
	c := cl.api
	var bin = map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, tg := range tgs { // built concurrently: the go command shares the work
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := crossEdge(t, tg)
			mu.Lock()
			bin[tg.name] = p
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%v: cloud up, agents built for %d targets", time.Since(started).Round(time.Millisecond), len(tgs))

	type node struct {
		tg   target
		name string
		dir  string
		unit uint8
		p    *proc
	}
	var nodes []*node
	var logs []*proc
	for i, tg := range tgs {
		n := &node{tg: tg, name: "q-" + tg.name, dir: filepath.Join(dir, "q-"+tg.name), unit: uint8(i + 1)}
		join := cl.ctl(t, "token", n.name, "role=qemu", "arch="+tg.name)
		n.p = start(t, filepath.Join(dir, n.name+".log"), tg.qemu, bin[tg.name], "run", "--data", n.dir, "--join", join,
			"--local-broker", freePort(t), "--cgroup-root", "-", "--report-every", "1s", "--resync-jitter", "300ms",
			"--ack-timeout", "3s", "--log-level", "debug")
		nodes = append(nodes, n)
		logs = append(logs, n.p)
		dev.SetInput(n.unit, 0, 200+uint16(i)) // temp 20.0, 20.1, ...
	}
	logs = append(logs, cl.p)
	for _, n := range nodes {
		eventually(t, 90*time.Second, n.name+" activated and online", func() bool {
			nd := c.node(n.name)
			return nd.State == api.NodeActive && nd.Online && nd.Status != nil && nd.Status.Info.Arch == n.tg.goarch
		}, logs...)
	}
	t.Logf("%v: %d emulated nodes activated and online", time.Since(started).Round(time.Millisecond), len(nodes))

	// An app by label (the host's heartbeat binary, see above).
	sha := cl.ctl(t, "push", bins.heartbeat, "--name", "heartbeat")
	app := fmt.Sprintf(`{"name": "hello", "selector": "role=qemu", "artifact": {"sha256": %q}, "args": ["--rev", "q1"],
		"restart": {"policy": "always", "backoff_min": "200ms", "backoff_max": "2s"}}`, sha)
	cl.ctl(t, "deploy", writeJSON(t, dir, "app.json", app))
	// The Modbus model, and one device per node (its own unit id).
	cl.ctl(t, "put", "/v1/devicemodels/meter", writeJSON(t, dir, "meter.json", `{"name": "meter", "properties": [
		{"name": "temp", "type": "float", "unit": "°C", "modbus": {"table": "input", "address": 0, "type": "int16", "scale": 0.1}},
		{"name": "setpoint", "type": "int", "writable": true, "modbus": {"table": "holding", "address": 10, "type": "uint16"}}]}`))
	for _, n := range nodes {
		cl.ctl(t, "put", "/v1/devices/m-"+n.tg.name, writeJSON(t, dir, "dev-"+n.name+".json",
			fmt.Sprintf(`{"name": "m-%s", "model": "meter", "node": %q, "modbus": {"address": %q, "unit": %d, "poll": "200ms", "timeout": "2s"}}`,
				n.tg.name, n.name, dev.Addr(), n.unit)))
		cl.ctl(t, "put", "/v1/devices/m-"+n.tg.name+"/shadow/desired", writeJSON(t, dir, "want-"+n.name+".json", fmt.Sprintf(`{"setpoint": %d}`, 500+int(n.unit))))
	}
	shadow := func(n *node) api.Shadow {
		var sh api.Shadow
		c.get("/v1/devices/m-"+n.tg.name+"/shadow", &sh)
		return sh
	}
	for i, n := range nodes {
		if _, args := alive(t, n.dir, "hello", n.p); args != "--rev q1" {
			t.Fatalf("%s runs %q, want --rev q1", n.name, args)
		}
		want := fmt.Sprintf("20.%d", i)
		if i == 0 {
			want = "20"
		}
		eventually(t, 60*time.Second, n.name+"'s Modbus device in its shadow, its desired value written", func() bool {
			sh := shadow(n)
			return string(sh.Reported["temp"]) == want && dev.Holding(n.unit, 10) == uint16(500+int(n.unit)) &&
				string(sh.Reported["setpoint"]) == strconv.Itoa(500+int(n.unit))
		}, logs...)
	}
	for _, n := range nodes {
		eventually(t, 60*time.Second, n.name+" applied its desired state", func() bool {
			nd := c.node(n.name)
			return nd.Status != nil && nd.Status.AppliedVersion == nd.DesiredVersion && len(nd.Status.Apps) == 1 && nd.Status.Apps[0].State == api.AppRunning
		}, logs...)
	}
	t.Logf("%v: the app runs on every node, every Modbus device reported and written", time.Since(started).Round(time.Millisecond))

	// Cut the link; a new value is read while offline.
	before := map[string]uint64{}
	for _, n := range nodes {
		before[n.name] = c.node(n.name).Outbox.Applied
	}
	cl.apiProxy.cut(true)
	cl.brokerProxy.cut(true)
	eventually(t, 30*time.Second, "the cloud to see the nodes offline", func() bool {
		for _, n := range nodes {
			if c.node(n.name).Online {
				return false
			}
		}
		return true
	}, logs...)
	for _, n := range nodes {
		dev.SetInput(n.unit, 0, 0xfffb) // -0.5
	}
	// The agents go on polling offline (five polls a node, about a
	// second; status reports pile up in the outboxes meanwhile). Counted
	// per node, by its unit id: a total over the nodes could be reached
	// by the faster emulation alone while the other had not yet read
	// -0.5, which it would then report after the link came back.
	r0 := map[uint8]int{}
	for _, n := range nodes {
		r0[n.unit] = dev.UnitReads(n.unit)
	}
	eventually(t, 60*time.Second, "five polls of each node while offline", func() bool {
		for _, n := range nodes {
			if dev.UnitReads(n.unit) < r0[n.unit]+5*2 {
				return false
			}
		}
		return true
	}, logs...)
	restored := time.Now()
	cl.apiProxy.cut(false)
	cl.brokerProxy.cut(false)
	t.Logf("%v: link restored", time.Since(started).Round(time.Millisecond))
	for _, n := range nodes {
		eventually(t, 90*time.Second, n.name+"'s offline reading in its shadow, its outbox drained", func() bool {
			sh := shadow(n)
			nd := c.node(n.name)
			return string(sh.Reported["temp"]) == "-0.5" && nd.Online && nd.Status != nil && nd.Status.Outbox.Pending <= 1
		}, logs...)
		nd := c.node(n.name)
		sh := shadow(n)
		if !sh.ReportedAt.Before(restored) {
			// A change is reported once, at the poll that sees it: the
			// -0.5 came from a record made offline.
			t.Errorf("%s: the device's last report was made at %v, after the link came back (%v)", n.name, sh.ReportedAt, restored)
		}
		if nd.Outbox.Gaps != 0 || nd.Outbox.Applied <= before[n.name] {
			t.Errorf("%s: outbox cursor %+v (before the cut: %d applied)", n.name, nd.Outbox, before[n.name])
		}
		pid := n.p.cmd.Process.Pid
		t.Logf("%s (%s under %s): outbox cursor %+v; RSS %d kB with qemu (peak %d kB), the guest's own %d kB (-1: a 64-bit guest, not told apart)",
			n.name, n.tg.name, n.tg.qemu, nd.Outbox, procStatus(pid, "VmRSS"), procStatus(pid, "VmHWM"), guestRSS(pid, bin[n.tg.name]))
	}
	t.Logf("cross end to end in %v", time.Since(started).Round(time.Millisecond))
}
