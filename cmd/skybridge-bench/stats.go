package main

import (
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in nanoseconds, from 1 ns to one minute, with three
// significant digits.
const (
	histMin     = 1
	histMax     = int64(time.Minute)
	histSigFigs = 3
	// shards spreads the histograms so that subscribers rarely contend:
	// subscriber i records into shard i % shards, once per read batch.
	shards = 16
)

type shard struct {
	mu       sync.Mutex
	total    *hdr.Histogram // since the last reset (end of warm-up)
	interval *hdr.Histogram // since the last progress line
}

// Recorder collects the counters and latencies of one run. Counters are
// atomics; latencies go to sharded HDR histograms.
type Recorder struct {
	Sent     atomic.Int64 // PUBLISH written by publishers
	Acked    atomic.Int64 // PUBACK/PUBCOMP received by publishers
	Received atomic.Int64 // PUBLISH received by subscribers
	Errors   atomic.Int64
	Conns    atomic.Int64 // connections currently open
	Connects atomic.Int64 // successful CONNECT/CONNACK exchanges

	shards [shards]shard

	errMu    sync.Mutex
	firstErr string
	errKinds map[string]int64
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	r := &Recorder{errKinds: map[string]int64{}}
	for i := range r.shards {
		r.shards[i].total = hdr.New(histMin, histMax, histSigFigs)
		r.shards[i].interval = hdr.New(histMin, histMax, histSigFigs)
	}
	return r
}

// Record adds latencies (nanoseconds) to shard k.
func (r *Recorder) Record(k int, lat []int64) {
	if len(lat) == 0 {
		return
	}
	s := &r.shards[k%shards]
	s.mu.Lock()
	for _, v := range lat {
		v = min(max(v, histMin), histMax)
		_ = s.total.RecordValue(v)
		_ = s.interval.RecordValue(v)
	}
	s.mu.Unlock()
}

// Error counts an error; the first one is kept verbatim, the others by kind.
func (r *Recorder) Error(kind string, err error) {
	r.Errors.Add(1)
	r.errMu.Lock()
	defer r.errMu.Unlock()
	if r.firstErr == "" {
		r.firstErr = kind + ": " + err.Error()
	}
	r.errKinds[kind]++
}

// FirstError returns the first error recorded, or "".
func (r *Recorder) FirstError() string {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.firstErr
}

// ErrorKinds returns a copy of the error counts by kind.
func (r *Recorder) ErrorKinds() map[string]int64 {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	m := make(map[string]int64, len(r.errKinds))
	for k, v := range r.errKinds {
		m[k] = v
	}
	return m
}

// ResetLatency forgets every latency recorded so far (end of warm-up).
func (r *Recorder) ResetLatency() {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		s.total.Reset()
		s.mu.Unlock()
	}
}

// merged returns the union of the shards' total (interval=false) or
// interval histograms; taking the interval ones resets them.
func (r *Recorder) merged(interval bool) *hdr.Histogram {
	h := hdr.New(histMin, histMax, histSigFigs)
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		if interval {
			h.Merge(s.interval)
			s.interval.Reset()
		} else {
			h.Merge(s.total)
		}
		s.mu.Unlock()
	}
	return h
}

// Latency is a latency summary in microseconds.
type Latency struct {
	Count int64   `json:"count"`
	Min   float64 `json:"min_us"`
	Mean  float64 `json:"mean_us"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p999_us"`
	Max   float64 `json:"max_us"`
}

func us(ns int64) float64 { return math.Round(float64(ns)/10) / 100 }

func summarize(h *hdr.Histogram) *Latency {
	if h.TotalCount() == 0 {
		return nil
	}
	return &Latency{
		Count: h.TotalCount(),
		Min:   us(h.Min()),
		Mean:  math.Round(h.Mean()/10) / 100,
		P50:   us(h.ValueAtQuantile(50)),
		P90:   us(h.ValueAtQuantile(90)),
		P99:   us(h.ValueAtQuantile(99)),
		P999:  us(h.ValueAtQuantile(99.9)),
		Max:   us(h.Max()),
	}
}

// LatencySummary summarises every latency since the last reset.
func (r *Recorder) LatencySummary() *Latency { return summarize(r.merged(false)) }

// Progress prints one line per second on w until stop is closed: rates of
// the last second, latency percentiles of the last second, errors and open
// connections.
func (r *Recorder) Progress(w io.Writer, label string, stop <-chan struct{}) {
	if w == nil {
		return
	}
	start := time.Now()
	last := start
	var lastSent, lastRecv, lastConn int64
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			dt := now.Sub(last).Seconds()
			last = now
			sent, recv, conn := r.Sent.Load(), r.Received.Load(), r.Connects.Load()
			h := r.merged(true)
			lat := "p50 -       p99 -      "
			if h.TotalCount() > 0 {
				lat = fmt.Sprintf("p50 %-7s p99 %-7s", fmtDur(h.ValueAtQuantile(50)), fmtDur(h.ValueAtQuantile(99)))
			}
			fmt.Fprintf(w, "%s %4.0fs  pub %9s/s  recv %9s/s  %s  conn %6d (+%s/s)  err %d\n",
				label, now.Sub(start).Seconds(), si(float64(sent-lastSent)/dt), si(float64(recv-lastRecv)/dt),
				lat, r.Conns.Load(), si(float64(conn-lastConn)/dt), r.Errors.Load())
			lastSent, lastRecv, lastConn = sent, recv, conn
		}
	}
}

// fmtDur prints nanoseconds compactly (µs below 10 ms, else ms).
func fmtDur(ns int64) string {
	switch {
	case ns < 10_000_000:
		return fmt.Sprintf("%.0fµs", float64(ns)/1e3)
	default:
		return fmt.Sprintf("%.1fms", float64(ns)/1e6)
	}
}

// si prints a rate with a k/M suffix.
func si(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}
