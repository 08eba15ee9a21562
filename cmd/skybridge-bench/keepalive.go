package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// KeepAlive is what the keep-alive window of an idle-N-kaS run measured:
// the broker's CPU time while every held connection sent one PINGREQ,
// spread evenly over the window, and before that while they were silent.
type KeepAlive struct {
	KeepAliveS int `json:"keepalive_s"` // announced in CONNECT; also the window
	// PingEveryS is each connection's PINGREQ interval within the window.
	PingEveryS int `json:"ping_every_s"`
	// IdleS and IdleCPUPct: the silent window before the pings, broker CPU
	// in % of one core.
	IdleS      float64 `json:"idle_s,omitempty"`
	IdleCPUPct float64 `json:"idle_cpu_pct"`
	// Pings answered (PINGRESP) over WindowS, the time from the first
	// PINGREQ to the last PINGRESP.
	Pings    int64   `json:"pings"`
	Failed   int64   `json:"failed,omitempty"`
	WindowS  float64 `json:"window_s"`
	PingRate float64 `json:"ping_rate"` // PINGREQ/s
	// BrokerCPUS is the broker's utime+stime over the window,
	// BrokerCPUPct the same in % of one core, CPUPerPingUS divided by the
	// pings (idle CPU of the window included) and NetCPUPerPingUS with the
	// idle rate subtracted.
	BrokerCPUS      float64 `json:"broker_cpu_s"`
	BrokerCPUPct    float64 `json:"broker_cpu_pct"`
	CPUPerPingUS    float64 `json:"cpu_per_ping_us"`
	NetCPUPerPingUS float64 `json:"net_cpu_per_ping_us"`
	// BenchCPUPct is the harness's own CPU over the window (% of one core):
	// it shares the cores with the broker.
	BenchCPUPct float64 `json:"bench_cpu_pct"`
	// RSSAfter is the broker's VmRSS after the window.
	RSSAfter int64 `json:"rss_after_bytes"`
	// Latency is PINGREQ to PINGRESP.
	Latency *Latency `json:"latency,omitempty"`
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat.
// The kernel exports those fields in USER_HZ, which is 100 on every Linux
// architecture Go runs on (sysconf(_SC_CLK_TCK) returns the same constant;
// TestClockTicks compares it with `getconf CLK_TCK` where getconf exists).
const clockTicks = 100

// parseCPUTicks returns utime+stime (fields 14 and 15) of a /proc/PID/stat
// line, in clock ticks. The command name (field 2) is in parentheses and
// may hold spaces and parentheses itself, so fields are counted after the
// last ')'.
func parseCPUTicks(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no ')' in %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	u, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime %q: %w", f[11], err)
	}
	s, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime %q: %w", f[12], err)
	}
	return u + s, nil
}

// cpuTime reads the CPU time (user + system, all threads) of a process;
// pid 0 is this process.
func cpuTime(pid int) (time.Duration, error) {
	path := "/proc/self/stat"
	if pid > 0 {
		path = fmt.Sprintf("/proc/%d/stat", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("CPU time: %w", err)
	}
	t, err := parseCPUTicks(string(b))
	if err != nil {
		return 0, fmt.Errorf("CPU time from %s: %w", path, err)
	}
	return time.Duration(t) * (time.Second / clockTicks), nil
}

// cpuPct is CPU time over wall time in % of one core.
func cpuPct(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return math.Round(float64(cpu)/float64(wall)*1000) / 10
}

// pingSchedule returns when ping k (connection k%n, its (k/n+1)-th ping)
// is due, n connections pinging every interval from start: evenly spread,
// one every interval/n.
func pingSchedule(start time.Time, interval time.Duration, k, n int) time.Time {
	if n <= 0 {
		return start
	}
	return start.Add(time.Duration(float64(interval) * float64(k) / float64(n)))
}

// keepAliveWindow samples the broker's CPU over cs.IdleWindow with the
// connections silent, then has each connection send one PINGREQ (and wait
// for PINGRESP) at its slot of cs.PingWindow, and samples the broker's CPU
// over that window. Every connection must answer.
func keepAliveWindow(ctx context.Context, conns []*mqttConn, timeout time.Duration, cs ConnSpec, res *Result) error {
	every := cs.PingEvery
	if every <= 0 || every > cs.PingWindow {
		every = cs.PingWindow
	}
	ka := &KeepAlive{KeepAliveS: int(cs.PingWindow / time.Second), PingEveryS: int(every / time.Second)}
	res.KeepAlive = ka
	var live []*mqttConn
	for _, c := range conns {
		if c != nil {
			live = append(live, c)
		}
	}
	if cs.IdleWindow > 0 {
		c0, err := cpuTime(cs.BrokerPID)
		if err != nil {
			return err
		}
		t0 := time.Now()
		if !sleepCtx(ctx, cs.IdleWindow) {
			return ctx.Err()
		}
		c1, err := cpuTime(cs.BrokerPID)
		if err != nil {
			return err
		}
		wall := time.Since(t0)
		ka.IdleS = round3(wall.Seconds())
		ka.IdleCPUPct = cpuPct(c1-c0, wall)
	}
	rec := NewRecorder()
	var pings, failed atomic.Int64
	idx := make(chan int, 1024)
	var wg sync.WaitGroup
	// Enough pingers that a PINGRESP slow by a few milliseconds does not
	// hold the schedule back: 64 in flight at 4,000/s leave each 15 ms.
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]int64, 0, 1)
			for k := range idx {
				i := k % len(live)
				t := time.Now()
				if err := live[i].ping(timeout); err != nil {
					failed.Add(1)
					rec.Error("ping", describe(err))
					continue
				}
				pings.Add(1)
				lat = append(lat[:0], int64(time.Since(t)))
				rec.Record(i, lat)
			}
		}()
	}
	bc0, err := cpuTime(cs.BrokerPID)
	if err != nil {
		close(idx)
		wg.Wait()
		return err
	}
	sc0, _ := cpuTime(0)
	start := time.Now()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	total := len(live) * int(cs.PingWindow/every)
feed:
	for k := 0; k < total; k++ {
		if d := time.Until(pingSchedule(start, every, k, len(live))); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				break feed
			}
		}
		idx <- k
	}
	close(idx)
	wg.Wait()
	bc1, err := cpuTime(cs.BrokerPID)
	if err != nil {
		return err
	}
	sc1, _ := cpuTime(0)
	wall := time.Since(start)
	ka.Pings, ka.Failed = pings.Load(), failed.Load()
	ka.WindowS = round3(wall.Seconds())
	ka.PingRate = math.Round(float64(ka.Pings) / wall.Seconds())
	ka.BrokerCPUS = round3((bc1 - bc0).Seconds())
	ka.BrokerCPUPct = cpuPct(bc1-bc0, wall)
	ka.BenchCPUPct = cpuPct(sc1-sc0, wall)
	if ka.Pings > 0 {
		perPing := float64(bc1-bc0) / float64(time.Microsecond) / float64(ka.Pings)
		ka.CPUPerPingUS = math.Round(perPing*100) / 100
		idleUS := ka.IdleCPUPct / 100 * float64(wall) / float64(time.Microsecond)
		ka.NetCPUPerPingUS = math.Round((float64(bc1-bc0)/float64(time.Microsecond)-idleUS)/float64(ka.Pings)*100) / 100
	}
	ka.Latency = rec.LatencySummary()
	if rss, err := vmRSS(cs.BrokerPID); err == nil {
		ka.RSSAfter = rss
	}
	res.Alive = int(min(ka.Pings, int64(len(live))))
	if err := ctx.Err(); err != nil {
		return err
	}
	if ka.Failed > 0 {
		return fmt.Errorf("%d of %d PINGREQ of %d connections not answered in the keep-alive window (first: %s)",
			ka.Failed, total, len(live), rec.FirstError())
	}
	return nil
}
