package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// Result is what one run reports, as JSON. Fields that do not apply to the
// run are omitted.
type Result struct {
	Scenario string `json:"scenario,omitempty"`
	Broker   string `json:"broker,omitempty"`
	Round    int    `json:"round,omitempty"`
	Command  string `json:"command"` // conn, pub, sub, pubsub, persist, retained, idle
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
	// Warning flags a run that completed but lost QoS 1/2 messages (a
	// broker may drop beyond its queue bounds; the table shows it).
	Warning string `json:"warning,omitempty"`

	// Primary is the scenario's headline figure; Metric names it and
	// Better says whether higher or lower is better.
	Metric  string  `json:"metric,omitempty"`
	Unit    string  `json:"unit,omitempty"`
	Better  string  `json:"better,omitempty"`
	Primary float64 `json:"primary"`

	Config map[string]any `json:"config,omitempty"`

	Publishers  int     `json:"publishers,omitempty"`
	Subscribers int     `json:"subscribers,omitempty"`
	Connections int     `json:"connections,omitempty"`
	DurationS   float64 `json:"duration_s"` // measured window
	Sent        int64   `json:"sent"`       // whole run, warm-up included
	Acked       int64   `json:"acked,omitempty"`
	Received    int64   `json:"received"`
	Expected    int64   `json:"expected,omitempty"`
	Lost        int64   `json:"lost,omitempty"` // expected - received (QoS 0 may legitimately drop)
	SendRate    float64 `json:"send_rate"`      // msg/s in the measured window
	// PubSentMin and PubSentMax are the fewest and most messages one
	// publisher sent: how fairly the broker read its publishers.
	PubSentMin int64   `json:"pub_sent_min,omitempty"`
	PubSentMax int64   `json:"pub_sent_max,omitempty"`
	RecvRate   float64 `json:"recv_rate"` // msg/s in the measured window

	Latency *Latency `json:"latency,omitempty"` // end-to-end (pub/sub) or connect (conn)

	ConnectRate   float64 `json:"connect_rate,omitempty"` // CONNACKs per second
	ConnectFailed int64   `json:"connect_failed,omitempty"`
	Alive         int     `json:"alive,omitempty"` // idle connections answering PINGREQ at the end
	RSSBefore     int64   `json:"rss_before_bytes,omitempty"`
	RSSAfter      int64   `json:"rss_after_bytes,omitempty"`
	RSSPerConn    float64 `json:"rss_per_conn_bytes,omitempty"`
	DrainS        float64 `json:"drain_s,omitempty"` // time to receive what was waiting (persist, retained)
	// KeepAlive is the keep-alive window of idle-N-kaS runs.
	KeepAlive *KeepAlive `json:"keepalive,omitempty"`

	// WallS is the whole run in compare, broker start and stop included.
	WallS float64 `json:"wall_s,omitempty"`

	Errors     int64            `json:"errors"`
	ErrorKinds map[string]int64 `json:"error_kinds,omitempty"`
}

// Workload is a publish/subscribe run: Subs subscribers on SubFilter, Pubs
// publishers on PubTopic (%i is the client index), for Warmup+Duration or
// until each publisher has sent Messages.
type Workload struct {
	Client    ClientOptions
	Pubs      int
	Subs      int
	PubTopic  string
	SubFilter string
	QoS       packet.QoS
	Size      int
	Retain    bool
	Rate      float64 // total msg/s over all publishers; 0 saturates
	Messages  int64   // per publisher; 0: run for the duration
	Warmup    time.Duration
	Duration  time.Duration
	// Fan is how many subscribers receive each message (1 for point to
	// point, fan-in and shared; Subs for fan-out); 0 disables the loss
	// check.
	Fan int
	// Drain bounds the wait for in-flight messages after publishing ends.
	Drain    time.Duration
	Progress io.Writer
	Label    string
	// Recorder receives the counters when set (tests watch it); nil: a
	// fresh one.
	Recorder *Recorder
}

// Run runs the workload. The error is also in the result; a result is
// always returned.
func (w *Workload) Run(ctx context.Context) *Result {
	w.Client.defaults()
	if w.Size < 8 {
		w.Size = 8 // room for the timestamp
	}
	if w.Drain <= 0 {
		w.Drain = 5 * time.Second
	}
	rec := w.Recorder
	if rec == nil {
		rec = NewRecorder()
	}
	res := &Result{Command: "pubsub", Publishers: w.Pubs, Subscribers: w.Subs}
	switch {
	case w.Subs == 0:
		res.Command = "pub"
	case w.Pubs == 0:
		res.Command = "sub"
	}
	res.Config = map[string]any{"qos": int(w.QoS), "payload": w.Size, "rate": w.Rate, "inflight": w.Client.Inflight,
		"mqtt": w.Client.Version.String(), "clean": w.Client.Clean, "pub_topic": w.PubTopic, "sub_filter": w.SubFilter}
	err := w.run(ctx, rec, res)
	finish(res, rec, err)
	return res
}

// finish fills the common fields of a result.
func finish(res *Result, rec *Recorder, err error) {
	res.Sent, res.Acked, res.Received = rec.Sent.Load(), rec.Acked.Load(), rec.Received.Load()
	res.Errors = rec.Errors.Load()
	if res.Errors > 0 {
		res.ErrorKinds = rec.ErrorKinds()
	}
	if err == nil && res.Errors > 0 {
		err = errors.New(rec.FirstError())
	}
	if err != nil {
		res.Error = err.Error()
	}
	res.OK = res.Error == ""
}

func (w *Workload) run(ctx context.Context, rec *Recorder, res *Result) error {
	o := &w.Client
	var stopping atomic.Bool
	stopProgress := make(chan struct{})
	defer close(stopProgress)
	go rec.Progress(w.Progress, w.Label, stopProgress)

	so := o
	if o.SubAddr != "" {
		so = new(ClientOptions)
		*so = *o
		so.Addr = o.SubAddr
	}
	subConns, err := connectMany(ctx, so, rec, "sub", w.Subs, o.Clean, true, func(i int, c *mqttConn) error {
		return c.subscribe([]string{expand(w.SubFilter, i)}, w.QoS, o.Timeout, nil)
	})
	if err != nil {
		return fmt.Errorf("subscribers: %w", err)
	}
	var all []*mqttConn
	defer func() {
		stopping.Store(true)
		closeAll(all, rec)
	}()
	all = append(all, subConns...)
	for i, c := range subConns {
		go (&subscriber{c: c, idx: i, rec: rec, timeout: o.Timeout, stopping: &stopping}).run()
	}
	pubConns, err := connectMany(ctx, o, rec, "pub", w.Pubs, true, true, nil)
	if err != nil {
		return fmt.Errorf("publishers: %w", err)
	}
	all = append(all, pubConns...)
	rec.ResetLatency() // connect latencies are not message latencies

	stop := make(chan struct{})
	pubs := make([]*publisher, w.Pubs)
	var writers sync.WaitGroup
	perPub := 0.0
	if w.Rate > 0 && w.Pubs > 0 {
		perPub = w.Rate / float64(w.Pubs)
	}
	for i, c := range pubConns {
		p := newPublisher(c, i, rec, w.QoS, expand(w.PubTopic, i), w.Size, o.Inflight, perPub, w.Messages, o.Timeout, &stopping)
		p.retain = w.Retain
		p.writeTimeout = o.Timeout + w.Warmup + w.Duration
		pubs[i] = p
		go p.read()
	}
	for _, p := range pubs {
		writers.Add(1)
		go func() { defer writers.Done(); p.run(stop) }()
	}
	allDone := make(chan struct{})
	if w.Pubs > 0 {
		go func() { writers.Wait(); close(allDone) }()
	}
	// A subscriber-only run bound by a message count ends when every
	// subscriber has them.
	subsDone := func() bool {
		return w.Pubs == 0 && w.Messages > 0 && rec.Received.Load() >= w.Messages*int64(w.Subs)
	}

	// Measure: counters at the end of the warm-up and of the window.
	failed := func() bool { return rec.Errors.Load() > 0 }
	sleep := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-t.C:
				return true
			case <-allDone:
				return false
			case <-ctx.Done():
				return false
			case <-tick.C:
				if failed() || subsDone() {
					return false
				}
			}
		}
	}
	if w.Warmup > 0 && w.Messages == 0 && sleep(w.Warmup) {
		rec.ResetLatency()
	}
	s0, r0, t0 := rec.Sent.Load(), rec.Received.Load(), time.Now()
	if w.Messages == 0 {
		sleep(w.Duration)
	} else {
		// Count-bound: publish until each publisher is done (bounded by
		// Duration when set).
		limit := w.Duration
		if limit <= 0 {
			limit = 24 * time.Hour
		}
		sleep(limit)
	}
	s1, r1, t1 := rec.Sent.Load(), rec.Received.Load(), time.Now()
	close(stop)
	writers.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}

	// Drain: wait for acknowledgements and deliveries of what was sent.
	expected := func() int64 {
		if w.Fan <= 0 {
			return -1
		}
		return rec.Sent.Load() * int64(w.Fan)
	}
	if w.Pubs == 0 && w.Messages > 0 {
		expected = func() int64 { return w.Messages * int64(w.Subs) }
	}
	drain := w.Drain
	if w.QoS == 0 && w.Rate == 0 && w.Messages == 0 {
		// Saturating QoS 0: what is still buffered only serves the loss
		// count, and a broker with unbounded buffers can take long.
		drain = min(drain, time.Second)
	}
	deadline := time.Now().Add(drain)
	lastRecv, lastChange := rec.Received.Load(), time.Now()
	quiet := 500 * time.Millisecond
	if w.QoS > 0 {
		quiet = 2 * time.Second
	}
	if w.Pubs == 0 && w.Messages == 0 {
		deadline = time.Now() // subscribers only, for a duration: nothing to wait for
	}
	for time.Now().Before(deadline) && !failed() && ctx.Err() == nil {
		inflight := 0
		for _, p := range pubs {
			inflight += p.inflight()
		}
		got := rec.Received.Load()
		if inflight == 0 && (expected() < 0 || got >= expected()) {
			break
		}
		if got != lastRecv {
			lastRecv, lastChange = got, time.Now()
		} else if inflight == 0 && time.Since(lastChange) > quiet {
			break // nothing more is coming
		}
		time.Sleep(5 * time.Millisecond)
	}
	if w.Messages > 0 {
		// Count-bound runs: the window is the whole run.
		t1, s1, r1 = time.Now(), rec.Sent.Load(), rec.Received.Load()
	}

	for i, p := range pubs {
		n := p.sent.Load()
		if i == 0 || n < res.PubSentMin {
			res.PubSentMin = n
		}
		res.PubSentMax = max(res.PubSentMax, n)
	}
	res.DurationS = round3(t1.Sub(t0).Seconds())
	if d := t1.Sub(t0).Seconds(); d > 0 {
		res.SendRate = math.Round(float64(s1-s0) / d)
		res.RecvRate = math.Round(float64(r1-r0) / d)
	}
	if e := expected(); e >= 0 {
		res.Expected = e
		res.Lost = max(e-rec.Received.Load(), 0)
	}
	res.Latency = rec.LatencySummary()
	if err := ctx.Err(); err != nil {
		return err
	}
	if w.Subs > 0 && w.Pubs > 0 && rec.Received.Load() == 0 && rec.Errors.Load() == 0 {
		return errors.New("no message reached any subscriber")
	}
	if w.QoS > 0 && res.Lost > 0 {
		res.Warning = fmt.Sprintf("lost %d of %d QoS %d messages", res.Lost, res.Expected, w.QoS)
	}
	return nil
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
