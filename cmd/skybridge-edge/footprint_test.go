package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/edge/modbustcp/modbustest"
)

// put sends an operator's PUT.
func (c *cloudAPI) put(path, body string) {
	c.t.Helper()
	req, _ := http.NewRequest("PUT", c.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		c.t.Fatalf("PUT %s: %s", path, resp.Status)
	}
}

// cpuTicks returns a process's user+system time in clock ticks.
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // after "pid (comm) "
	if len(f) < 13 {
		return -1
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return u + k
}

func clockTicks() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if v, perr := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && perr == nil && v > 0 {
		return v
	}
	return 100
}

// guestRSS returns the resident kB of an emulated 32-bit process's own
// memory: qemu-user maps the guest's 4 GiB address space at one host
// offset, found from where it mapped the guest binary's first segment;
// what lies outside (qemu's code, heap, translation cache) is qemu's.
func guestRSS(pid int, bin string) int64 {
	f, err := elf.Open(bin)
	if err != nil {
		return -1
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS32 {
		return -1
	}
	var vaddr uint64 = 1 << 63
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Vaddr < vaddr {
			vaddr = p.Vaddr &^ 0xfff
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return -1
	}
	abs, _ := filepath.Abs(bin)
	type mapping struct{ lo, hi, rss uint64 }
	var maps []mapping
	var low uint64 = 1 << 63
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		fs := strings.Fields(line)
		if len(fs) >= 5 && strings.Contains(fs[0], "-") && !strings.HasSuffix(fs[0], ":") {
			r := strings.SplitN(fs[0], "-", 2)
			lo, err1 := strconv.ParseUint(r[0], 16, 64)
			hi, err2 := strconv.ParseUint(r[1], 16, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			maps = append(maps, mapping{lo: lo, hi: hi})
			if len(fs) >= 6 && fs[5] == abs && lo < low {
				low = lo
			}
			continue
		}
		if len(fs) >= 2 && fs[0] == "Rss:" && len(maps) > 0 {
			v, _ := strconv.ParseUint(fs[1], 10, 64)
			maps[len(maps)-1].rss = v
		}
	}
	if low == 1<<63 || low < vaddr {
		return -1
	}
	base := low - vaddr
	var sum uint64
	for _, m := range maps {
		if m.lo >= base && m.hi <= base+1<<32 {
			sum += m.rss
		}
	}
	return int64(sum)
}

// sample is what a measurement window saw.
type sample struct {
	rss, peak, guest int64 // kB at the end; VmHWM; the guest's own (32-bit emulated only)
	cpu              float64
}

// measure watches a process for d: RSS at the end, CPU over the window.
func measure(pid int, bin string, d time.Duration) sample {
	t0, c0 := time.Now(), cpuTicks(pid)
	deadline := t0.Add(d)
	for time.Now().Before(deadline) {
		time.Sleep(time.Second) // a measurement window, not a wait for a condition
	}
	c1 := cpuTicks(pid)
	return sample{rss: procStatus(pid, "VmRSS"), peak: procStatus(pid, "VmHWM"), guest: guestRSS(pid, bin),
		cpu: 100 * float64(c1-c0) / clockTicks() / time.Since(t0).Seconds()}
}

// TestFootprint measures the edge agent with its local broker: idle
// (activated, online, no app, no device) and with 100 Modbus TCP devices
// polled every second. SKYBRIDGE_FOOTPRINT lists the targets: "native"
// (this machine's CPU, no emulation) and any of cross's (under qemu-user).
// make footprint prints the table of docs/EDGE.md.
func TestFootprint(t *testing.T) {
	list := os.Getenv("SKYBRIDGE_FOOTPRINT")
	if list == "" {
		t.Skip("a measurement of minutes: make footprint (SKYBRIDGE_FOOTPRINT=\"native armv7\")")
	}
	window := 30 * time.Second
	if w, err := time.ParseDuration(os.Getenv("SKYBRIDGE_FOOTPRINT_WINDOW")); err == nil {
		window = w
	}
	const devices = 100
	build(t)
	dir := t.TempDir()
	cl := startCloud(t, dir)
	c := cl.api
	srv, err := modbustest.Start(devices + 10)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	c.put("/v1/devicemodels/meter", `{"name": "meter", "properties": [
		{"name": "temp", "type": "float", "modbus": {"table": "input", "address": 0, "type": "int16", "scale": 0.1}},
		{"name": "energy", "type": "int", "modbus": {"table": "input", "address": 1, "type": "uint32"}},
		{"name": "setpoint", "type": "int", "writable": true, "modbus": {"table": "holding", "address": 10, "type": "uint16"}}]}`)
	for u := 1; u <= devices; u++ {
		srv.SetInput(uint8(u), 0, uint16(200+u), 0, uint16(1000*u))
	}
	var rows []string
	for _, name := range strings.Fields(list) {
		var cmd []string
		var bin string
		label := name
		if name == "native" {
			tg, ok := targetNamed(runtime.GOARCH)
			if !ok {
				t.Fatalf("no release target for this machine's %s", runtime.GOARCH)
			}
			bin = crossEdge(t, tg) // built as released: static, stripped
			cmd = []string{bin}
			label = "native (" + tg.name + ")"
		} else {
			tg, ok := targetNamed(name)
			if !ok {
				t.Fatalf("SKYBRIDGE_FOOTPRINT: unknown target %q", name)
			}
			needQemu(t, []target{tg})
			bin = crossEdge(t, tg)
			cmd = []string{tg.qemu, bin}
			label = tg.name + " under " + tg.qemu
		}
		node := "fp-" + name
		join := cl.ctl(t, "token", node, "role=footprint")
		var env []string
		if lim := os.Getenv("SKYBRIDGE_FOOTPRINT_GOMEMLIMIT"); lim != "" {
			env = []string{"GOMEMLIMIT=" + lim}
			label += ", GOMEMLIMIT=" + lim
		}
		p := startEnv(t, env, filepath.Join(dir, node+".log"), cmd[0], append(cmd[1:], "run", "--data", filepath.Join(dir, node),
			"--join", join, "--local-broker", freePort(t), "--cgroup-root", "-", "--resync-jitter", "1s", "--log-level", "warn")...)
		eventually(t, 90*time.Second, node+" online", func() bool {
			nd := c.node(node)
			return nd.Online && nd.Status != nil
		}, p, cl.p)
		pid := p.cmd.Process.Pid
		idle := measure(pid, bin, window)
		for u := 1; u <= devices; u++ {
			c.put(fmt.Sprintf("/v1/devices/%s-%d", node, u), fmt.Sprintf(`{"name": "%s-%d", "model": "meter", "node": %q,
				"modbus": {"address": %q, "unit": %d, "poll": "1s", "timeout": "2s"}}`, node, u, node, srv.Addr(), u))
		}
		loadStart := time.Now()
		eventually(t, 5*time.Minute, "every device of "+node+" in its shadow", func() bool {
			for u := devices; u >= 1; u-- {
				var sh api.Shadow
				c.get(fmt.Sprintf("/v1/devices/%s-%d/shadow", node, u), &sh)
				if len(sh.Reported) == 0 {
					return false
				}
			}
			return true
		}, p, cl.p)
		reach := time.Since(loadStart)
		r0, _ := srv.Counts()
		loaded := measure(pid, bin, window)
		r1, _ := srv.Counts()
		p.kill(syscall.SIGTERM)
		row := fmt.Sprintf("| %s | idle: RSS %.1f MB%s, CPU %.2f%% | %d devices: RSS %.1f MB%s (peak %.1f MB), CPU %.2f%%, %.0f reads/s; all in the shadows %v after binding |",
			label, mb(idle.rss), guestNote(idle), idle.cpu, devices, mb(loaded.rss), guestNote(loaded), mb(loaded.peak), loaded.cpu,
			float64(r1-r0)/window.Seconds(), reach.Round(time.Second))
		t.Log(row)
		rows = append(rows, row)
	}
	t.Logf("window %v each:\n%s", window, strings.Join(rows, "\n"))
}

func mb(kb int64) float64 { return float64(kb) / 1024 }

func guestNote(s sample) string {
	if s.guest <= 0 {
		return ""
	}
	return fmt.Sprintf(" (qemu included; the guest's own %.1f MB)", mb(s.guest))
}
