package kvserver

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/raftkv"
	"github.com/skybridge-mq/skybridge/impl/raftkv/kvclient"
)

// BenchmarkRate measures the production runtime: three Servers in this
// process (each node on its own loop and committer goroutines, as three
// processes have them), stores on real files in tmpfs (/dev/shm, so this is
// CPU and not a disk's fsync; skipped where there is none), messages over
// loopback TCP (plain, or mutual TLS with tls=on), and one kvclient
// connected to the range's leader. It runs open-loop at a fixed offered
// rate: a request of ops puts is due every ops/rate seconds whether or not
// earlier ones were answered, workers send them as they come due, and a
// request's latency runs from when it was due until the client has its
// answer (so a stall is charged for every request it delays: no
// coordinated omission). A request that finds every worker busy waits, and
// that wait counts.
//
// It reports the achieved puts/s, p50, p99 and p99.9 latency, and
// cpu-us/put, the process's CPU time (the three nodes, Pebble's background
// work, the client and the GC) per put.
func BenchmarkRate(b *testing.B) {
	for _, bc := range []struct {
		rate, ops int
		tls       bool
	}{{100_000, 100, false}, {100_000, 100, true}, {50_000, 100, false}, {150_000, 100, false}} {
		tlsName := map[bool]string{false: "off", true: "on"}[bc.tls]
		b.Run(fmt.Sprintf("replicas=3/rate=%d/ops=%d/tls=%s", bc.rate, bc.ops, tlsName), func(b *testing.B) {
			benchRate(b, bc.rate, bc.ops, bc.tls)
		})
	}
}

func benchRate(b *testing.B, rate, ops int, mTLS bool) {
	base, err := os.MkdirTemp("/dev/shm", "kvserver-bench-")
	if err != nil {
		b.Skipf("no tmpfs: %v", err)
	}
	b.Cleanup(func() { os.RemoveAll(base) })
	servers, addrs := startClusterIn(b, 3, base, mTLS, 0) // the runtime's default tick, as deployed
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// Find the user range's leader after a first write, and talk to it.
	warm := kvclient.New(addrs, nil)
	if err := warm.Put(ctx, []byte("warm"), []byte("up")); err != nil {
		b.Fatal(err)
	}
	warm.Close()
	lead := -1
	for deadline := time.Now().Add(10 * time.Second); lead < 0 && time.Now().Before(deadline); {
		for i, s := range servers {
			var leads bool
			if err := s.Do(ctx, func(n *raftkv.Node) {
				for _, lr := range n.Ranges() {
					leads = leads || (lr.Leader && lr.Desc.RangeID == 2) // the first user range
				}
			}); err != nil {
				b.Fatal(err)
			}
			if leads {
				lead = i
			}
		}
	}
	if lead < 0 {
		b.Fatal("no leader for the user range")
	}
	c := kvclient.New([]string{addrs[lead]}, nil)
	defer c.Close()

	val := make([]byte, 64)
	every := time.Duration(float64(time.Second) * float64(ops) / float64(rate))
	const workers = 64
	due := make(chan int, b.N)
	lats := make([][]time.Duration, workers)
	var wg sync.WaitGroup
	var failed sync.Once
	var failure error
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	cpu0, flt0 := usage()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := &raftkv.Request{Kind: raftkv.ReqWrite, Ops: make([]raftkv.Op, ops)}
			for i := range due {
				at := start.Add(time.Duration(i) * every)
				if d := time.Until(at); d > 0 {
					time.Sleep(d)
				}
				for j := range req.Ops {
					req.Ops[j] = raftkv.Op{Kind: raftkv.OpPut, Key: fmt.Appendf(nil, "k%09d-%03d", i, j), Value: val}
				}
				if _, err := c.Do(ctx, req); err != nil {
					failed.Do(func() { failure = err })
					continue
				}
				lats[w] = append(lats[w], time.Since(at))
			}
		}()
	}
	for i := range b.N {
		due <- i
	}
	close(due)
	wg.Wait()
	b.StopTimer()
	if failure != nil {
		b.Fatalf("put: %v", failure)
	}
	cpu1, flt1 := usage()
	b.ReportMetric(float64(cpu1-cpu0)/float64(b.N*ops)/1e3, "cpu-us/put")
	b.ReportMetric(float64(flt1-flt0)/b.Elapsed().Seconds(), "faults/s")
	b.ReportMetric(float64(b.N*ops)/b.Elapsed().Seconds(), "puts/s")
	lat := slices.Concat(lats...)
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)*999/1000])/1e6, "p99.9-ms")
}

// usage is the process's user and system CPU time so far, and its minor
// page faults (those that needed no I/O: on a virtual machine each can
// cost tens of microseconds, a fresh page zeroed).
func usage() (time.Duration, int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Minflt
}
