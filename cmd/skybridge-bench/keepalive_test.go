package main

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseCPUTicks(t *testing.T) {
	t.Parallel()
	// Fields 14 (utime) and 15 (stime) of /proc/PID/stat, after a command
	// name that may hold spaces and parentheses.
	tail := " S 1 2742 2742 0 -1 4194560 2816 0 0 0 1234 567 0 0 20 0 9 0 3617045 1945935872 8316 18446744073709551615"
	cases := []struct {
		name, stat string
		want       int64
		err        string
	}{
		{"plain", "2739 (skybridge)" + tail, 1234 + 567, ""},
		{"spaces and parens in the name", "2739 (sky (b) ridge)" + tail, 1801, ""},
		{"zero", "1 (init) S 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0", 0, ""},
		{"no name", "2739 skybridge S 1", 0, "no ')'"},
		{"short", "2739 (skybridge) S 1 2 3", 0, "fields after the command name"},
		{"not a number", "2739 (x) S 1 2742 2742 0 -1 4194560 2816 0 0 0 12x4 567 0", 0, "utime"},
		{"bad stime", "2739 (x) S 1 2742 2742 0 -1 4194560 2816 0 0 0 1 -", 0, "stime"},
	}
	for _, c := range cases {
		got, err := parseCPUTicks(c.stat)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.err == "" && got != c.want:
			t.Errorf("%s: %d ticks, want %d", c.name, got, c.want)
		}
	}
}

// TestClockTicks checks the 100 Hz that cpuTime assumes against the
// system's CLK_TCK, and that this process's CPU time grows as it spins.
func TestClockTicks(t *testing.T) {
	t.Parallel()
	if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err != nil || n != clockTicks {
			t.Errorf("getconf CLK_TCK = %q, cpuTime assumes %d", out, clockTicks)
		}
	}
	c0, err := cpuTime(0)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := cpuTime(os.Getpid()); err != nil || p < c0 {
		t.Errorf("cpuTime(own pid) = %v, %v; self %v", p, err, c0)
	}
	for end := time.Now().Add(150 * time.Millisecond); time.Now().Before(end); {
	}
	c1, _ := cpuTime(0)
	if c1-c0 < 50*time.Millisecond {
		t.Errorf("spun 150 ms, CPU time grew by %v", c1-c0)
	}
	if _, err := cpuTime(1 << 30); err == nil {
		t.Error("no error for a pid that does not exist")
	}
}

func TestCPUPctAndSchedule(t *testing.T) {
	t.Parallel()
	pct := []struct {
		cpu, wall time.Duration
		want      float64
	}{
		{time.Second, 10 * time.Second, 10},
		{1500 * time.Millisecond, time.Second, 150},
		{0, time.Second, 0},
		{time.Second, 0, 0},
		{333 * time.Millisecond, time.Second, 33.3},
	}
	for _, c := range pct {
		if got := cpuPct(c.cpu, c.wall); got != c.want {
			t.Errorf("cpuPct(%v, %v) = %v, want %v", c.cpu, c.wall, got, c.want)
		}
	}
	start := time.Unix(1000, 0)
	sched := []struct {
		interval time.Duration
		k, n     int
		want     time.Duration
	}{
		{60 * time.Second, 0, 250000, 0},
		{60 * time.Second, 125000, 250000, 30 * time.Second},
		{60 * time.Second, 249999, 250000, 60*time.Second - 240*time.Microsecond},
		// -pi5: the second round of pings starts one interval later.
		{5 * time.Second, 19500, 19500, 5 * time.Second},
		{5 * time.Second, 19500 + 9750, 19500, 7500 * time.Millisecond},
		{time.Second, 3, 0, 0},
	}
	for _, c := range sched {
		if got := pingSchedule(start, c.interval, c.k, c.n).Sub(start); got != c.want {
			t.Errorf("pingSchedule(%v, %d of %d) = +%v, want +%v", c.interval, c.k, c.n, got, c.want)
		}
	}
}
