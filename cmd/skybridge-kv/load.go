package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skybridge-mq/skybridge/impl/raftkv"
	"github.com/skybridge-mq/skybridge/impl/raftkv/kvclient"
)

// loadOpts shape a write load.
type loadOpts struct {
	addrs    []string
	tls      *tls.Config // nil: plain TCP
	duration time.Duration
	workers  int
	conns    int
	batch    int // puts per request
	prefix   string
}

// loadResult is what a load did and what reading it back found.
type loadResult struct {
	requests, acked, unknown, failed uint64 // requests; acked counts puts
	elapsed                          time.Duration
	lat                              []time.Duration // per acknowledged request
	lost                             []string        // acknowledged, not found
	wrong                            []string        // acknowledged, another value found
	lastErr                          atomic.Value
}

func (r *loadResult) String() string {
	slices.Sort(r.lat)
	pct := func(p float64) time.Duration {
		if len(r.lat) == 0 {
			return 0
		}
		return r.lat[min(len(r.lat)-1, int(p*float64(len(r.lat))))]
	}
	s := fmt.Sprintf("%d puts acknowledged in %v (%.0f/s, %d requests), p50 %v p99 %v; %d with unknown outcome, %d refused; read back: %d lost, %d wrong",
		r.acked, r.elapsed.Round(time.Millisecond), float64(r.acked)/r.elapsed.Seconds(), r.requests,
		pct(0.5).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), r.unknown, r.failed, len(r.lost), len(r.wrong))
	if e, ok := r.lastErr.Load().(string); ok && e != "" {
		s += "; last error: " + e
	}
	return s
}

// runLoad writes unique keys for o.duration (or until ctx ends), then reads
// every worker's keys back: an acknowledged put must be there, with its value.
func runLoad(ctx context.Context, o loadOpts, kill func(time.Duration)) (*loadResult, error) {
	clients := make([]*kvclient.Client, max(1, o.conns))
	for i := range clients {
		addrs := slices.Clone(o.addrs)
		k := i % len(addrs)
		clients[i] = kvclient.New(append(addrs[k:], addrs[:k]...), o.tls)
		defer clients[i].Close()
	}
	res := &loadResult{}
	acked := make([][]int, o.workers)
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(o.duration)
	val := func(w, i int) []byte { return []byte(fmt.Sprintf("v%d-%d", w, i)) }
	key := func(w, i int) []byte { return []byte(fmt.Sprintf("%sw%03d/%08d", o.prefix, w, i)) }
	for w := range o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[w%len(clients)]
			for i := 0; time.Now().Before(stop) && ctx.Err() == nil; i += o.batch {
				req := &raftkv.Request{Kind: raftkv.ReqWrite}
				for j := range o.batch {
					req.Ops = append(req.Ops, raftkv.Op{Kind: raftkv.OpPut, Key: key(w, i+j), Value: val(w, i+j)})
				}
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				t0 := time.Now()
				_, err := c.Do(rctx, req)
				d := time.Since(t0)
				cancel()
				atomic.AddUint64(&res.requests, 1)
				switch {
				case err == nil:
					mu.Lock()
					for j := range o.batch {
						acked[w] = append(acked[w], i+j)
					}
					res.lat = append(res.lat, d)
					mu.Unlock()
					atomic.AddUint64(&res.acked, uint64(o.batch))
				case errors.Is(err, kvclient.ErrUnknown):
					atomic.AddUint64(&res.unknown, 1)
					res.lastErr.Store(err.Error())
				default:
					atomic.AddUint64(&res.failed, 1)
					res.lastErr.Store(err.Error())
				}
			}
		}()
	}
	if kill != nil {
		go kill(o.duration)
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	// Read back, worker by worker, range by range (a scan stops at a range
	// boundary and says where to go on).
	c := clients[0]
	for w := range o.workers {
		found := map[string]string{}
		lo, hi := key(w, 0), []byte(fmt.Sprintf("%sw%03d0", o.prefix, w))
		for k := lo; k != nil; {
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			kvs, resume, err := c.Scan(rctx, k, hi, 0)
			cancel()
			if err != nil {
				return res, fmt.Errorf("reading back worker %d: %w", w, err)
			}
			for _, kv := range kvs {
				found[string(kv.Key)] = string(kv.Value)
			}
			k = resume
		}
		for _, i := range acked[w] {
			v, ok := found[string(key(w, i))]
			switch {
			case !ok:
				res.lost = append(res.lost, string(key(w, i)))
			case v != string(val(w, i)):
				res.wrong = append(res.wrong, string(key(w, i)))
			}
		}
	}
	return res, nil
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	addrs := fs.String("addrs", "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103", "client addresses of nodes")
	o := loadOpts{}
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to write")
	fs.IntVar(&o.workers, "workers", 64, "concurrent writers")
	fs.IntVar(&o.conns, "conns", 3, "connections (spread over the nodes)")
	fs.IntVar(&o.batch, "batch", 1, "puts per request")
	fs.StringVar(&o.prefix, "prefix", fmt.Sprintf("load/%d/", time.Now().UnixNano()), "key prefix")
	tlsFlags := addClientTLSFlags(fs)
	fs.Parse(args)
	o.addrs = strings.Split(*addrs, ",")
	var err error
	if o.tls, err = tlsFlags.config(); err != nil {
		return err
	}
	r, err := runLoad(context.Background(), o, nil)
	if err != nil {
		return err
	}
	fmt.Println(r)
	if len(r.lost)+len(r.wrong) > 0 {
		return fmt.Errorf("acknowledged writes missing: %v", r.lost[:min(10, len(r.lost))])
	}
	return nil
}
