package service

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/skybridge-mq/skybridge/cloud/api"
)

// sampler reads the machine's description and usage from Linux's /proc
// and statfs (zeros where they are missing).
type sampler struct {
	dir string
	mu  sync.Mutex
	// The previous CPU sample, for a rate.
	busy, total uint64
	at          time.Time
}

func newSampler(dir string) *sampler { return &sampler{dir: dir} }

func (s *sampler) info(version string) api.NodeInfo {
	host, _ := os.Hostname()
	return api.NodeInfo{Hostname: host, OS: runtime.GOOS, Arch: runtime.GOARCH, Kernel: kernel(), CPUs: runtime.NumCPU(), Agent: version}
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (s *sampler) usage() api.Usage {
	var u api.Usage
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		var busy, total uint64
		for i, x := range f[1:] {
			v, _ := strconv.ParseUint(x, 10, 64)
			total += v
			if i != 3 && i != 4 { // idle, iowait
				busy += v
			}
		}
		s.mu.Lock()
		if total > s.total && busy >= s.busy {
			u.CPUPercent = float64(busy-s.busy) / float64(total-s.total) * 100
		}
		s.busy, s.total, s.at = busy, total, time.Now()
		s.mu.Unlock()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var total, avail int64
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			v, _ := strconv.ParseInt(f[1], 10, 64)
			switch f[0] {
			case "MemTotal:":
				total = v << 10
			case "MemAvailable:":
				avail = v << 10
			}
		}
		u.MemTotalBytes, u.MemUsedBytes = total, total-avail
	}
	var st syscall.Statfs_t
	if syscall.Statfs(s.dir, &st) == nil {
		bs := int64(st.Bsize)
		u.DiskTotalBytes = int64(st.Blocks) * bs
		u.DiskUsedBytes = (int64(st.Blocks) - int64(st.Bavail)) * bs
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			u.Load1, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	return u
}
