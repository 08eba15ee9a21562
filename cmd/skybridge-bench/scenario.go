package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// A scenario name says what runs, in the field's pubs-subs-qos-payload
// style:
//
//	p2p-P-P-qQ-SIZE      P publishers, each to its own subscriber (t/%i → t/%i)
//	fanin-P-1-qQ-SIZE    P publishers → one subscriber (t/%i → t/+)
//	share-P-S-qQ-SIZE    P publishers → one shared group of S ($share/g/t/+)
//	fanout-1-S-qQ-SIZE   one publisher → S subscribers of the same topic
//	persist-P-P-qQ-SIZE-nM  persistent subscribers offline while each
//	                     publisher sends M messages, then reconnect and drain
//	connstorm-N          N connections as fast as possible: connects/s
//	idle-N[-kaS]         N idle connections: broker RSS per connection; with
//	                     -kaS the connections announce keep alive S seconds
//	                     and, while they are held, each sends one PINGREQ
//	                     in a window of S seconds, spread evenly: the
//	                     broker's CPU time over that window is reported;
//	                     -piP: every P seconds instead (P <= S), so that
//	                     fewer connections make the PINGREQ rate of more
//	retained-N[-SIZE]    N retained topics, then one wildcard subscribe
//
// Throughput kinds take optional suffixes: -ifN (QoS 1/2 window, default
// 100), -rRATE (fixed total rate, e.g. r50k; the headline becomes p99
// latency instead of throughput), -v5 (MQTT 5.0 instead of 3.1.1).
// SIZE is bytes with an optional B, KB or MB suffix (16B, 1KB).
type Scenario struct {
	Name     string
	Kind     string // p2p, fanin, share, fanout, persist, connstorm, idle, retained
	Pubs     int
	Subs     int
	QoS      packet.QoS
	Size     int
	Inflight int
	Rate     float64
	Messages int64 // persist: per publisher
	N        int   // connstorm, idle, retained
	Version  packet.Version
	// KeepAlive (idle only, -kaS) is the keep alive the connections
	// announce, in seconds, and the length of the PINGREQ window; 0: keep
	// alive 300 s and no window.
	KeepAlive int
	// PingEvery (idle with -kaS, -piP): each connection pings every P
	// seconds during the S-second window (0: once, P = S).
	PingEvery int
}

// ParseScenario parses a scenario name.
func ParseScenario(name string) (Scenario, error) {
	s := Scenario{Name: name, Inflight: 100, Version: packet.V311, Size: 16}
	parts := strings.Split(name, "-")
	bad := func(format string, args ...any) (Scenario, error) {
		return Scenario{}, fmt.Errorf("scenario %q: %s", name, fmt.Sprintf(format, args...))
	}
	if len(parts) < 2 {
		return bad("want KIND-..., see skybridge-bench list")
	}
	s.Kind = parts[0]
	switch s.Kind {
	case "connstorm", "idle", "retained":
		n, err := strconv.Atoi(parts[1])
		if err != nil || n <= 0 {
			return bad("count %q", parts[1])
		}
		s.N = n
		rest := parts[2:]
		if s.Kind == "retained" && len(rest) > 0 {
			if s.Size, err = parseSize(rest[0]); err != nil {
				return bad("%v", err)
			}
			rest = rest[1:]
		}
		return s, suffixes(&s, rest, bad)
	case "p2p", "fanin", "share", "fanout", "persist":
	default:
		return bad("unknown kind %q", s.Kind)
	}
	if len(parts) < 5 {
		return bad("want %s-PUBS-SUBS-qQOS-SIZE", s.Kind)
	}
	var err error
	if s.Pubs, err = strconv.Atoi(parts[1]); err != nil || s.Pubs <= 0 {
		return bad("publishers %q", parts[1])
	}
	if s.Subs, err = strconv.Atoi(parts[2]); err != nil || s.Subs <= 0 {
		return bad("subscribers %q", parts[2])
	}
	if len(parts[3]) != 2 || parts[3][0] != 'q' || parts[3][1] < '0' || parts[3][1] > '2' {
		return bad("QoS %q (want q0, q1 or q2)", parts[3])
	}
	s.QoS = packet.QoS(parts[3][1] - '0')
	if s.Size, err = parseSize(parts[4]); err != nil {
		return bad("%v", err)
	}
	switch s.Kind {
	case "p2p", "persist":
		if s.Pubs != s.Subs {
			return bad("%s needs as many subscribers as publishers", s.Kind)
		}
	case "fanin":
		if s.Subs != 1 {
			return bad("fanin has one subscriber")
		}
	case "fanout":
		if s.Pubs != 1 {
			return bad("fanout has one publisher")
		}
	}
	if err := suffixes(&s, parts[5:], bad); err != nil {
		return Scenario{}, err
	}
	if s.Kind == "persist" && s.Messages == 0 {
		return bad("persist needs -nMESSAGES")
	}
	return s, nil
}

func suffixes(s *Scenario, rest []string, bad func(string, ...any) (Scenario, error)) error {
	for _, p := range rest {
		var err error
		switch {
		case p == "v5":
			s.Version = packet.V5
		case p == "v3":
			s.Version = packet.V311
		case strings.HasPrefix(p, "ka"):
			var ka int
			if ka, err = strconv.Atoi(p[2:]); err != nil || ka <= 0 || ka > 65535 {
				_, err = bad("keep alive %q", p)
				return err
			}
			if s.Kind != "idle" {
				_, err = bad("-kaS (keep-alive window) is for idle-N only")
				return err
			}
			s.KeepAlive = ka
		case strings.HasPrefix(p, "pi"):
			var pi int
			if pi, err = strconv.Atoi(p[2:]); err != nil || pi <= 0 {
				_, err = bad("ping interval %q", p)
				return err
			}
			s.PingEvery = pi
		case strings.HasPrefix(p, "if"):
			if s.Inflight, err = strconv.Atoi(p[2:]); err != nil || s.Inflight <= 0 || s.Inflight > 65535 {
				_, err = bad("inflight %q", p)
				return err
			}
		case strings.HasPrefix(p, "r"):
			var r float64
			if r, err = parseCount(p[1:]); err != nil || r <= 0 {
				_, err = bad("rate %q", p)
				return err
			}
			s.Rate = r
		case strings.HasPrefix(p, "n"):
			var n float64
			if n, err = parseCount(p[1:]); err != nil || n <= 0 {
				_, err = bad("message count %q", p)
				return err
			}
			s.Messages = int64(n)
		default:
			_, err = bad("unknown suffix %q", p)
			return err
		}
	}
	if s.PingEvery > 0 && (s.KeepAlive == 0 || s.PingEvery > s.KeepAlive) {
		_, err := bad("-piP needs -kaS with P <= S")
		return err
	}
	return nil
}

// parseCount reads 500, 10k, 2M.
func parseCount(s string) (float64, error) {
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1e3, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1e6, s[:len(s)-1]
	}
	v, err := strconv.ParseFloat(s, 64)
	return v * mult, err
}

// parseSize reads 16, 16B, 1KB, 1MB.
func parseSize(s string) (int, error) {
	mult := 1
	t := s
	switch {
	case strings.HasSuffix(t, "KB"):
		mult, t = 1024, t[:len(t)-2]
	case strings.HasSuffix(t, "MB"):
		mult, t = 1<<20, t[:len(t)-2]
	case strings.HasSuffix(t, "B"):
		t = t[:len(t)-1]
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("payload size %q", s)
	}
	return n * mult, nil
}

// Metric returns the headline figure of the scenario: its name, unit and
// whether higher is better.
func (s Scenario) Metric() (name, unit string, higher bool) {
	switch s.Kind {
	case "connstorm":
		return "connect rate", "conn/s", true
	case "idle":
		return "broker RSS per idle connection", "bytes", false
	case "retained":
		return "time to receive all retained", "ms", false
	case "persist":
		return "offline queue drain rate", "msg/s", true
	}
	if s.Rate > 0 {
		return "p99 latency at " + si(s.Rate) + " msg/s", "µs", false
	}
	return "throughput (received)", "msg/s", true
}

// closedLoop reports whether the scenario's end-to-end latency means
// something: a fixed rate, or QoS 1/2 within a window. A saturating QoS 0
// flood measures time spent in buffers instead.
func (s Scenario) closedLoop() bool {
	switch s.Kind {
	case "p2p", "fanin", "share", "fanout":
		return s.Rate > 0 || s.QoS > 0
	}
	return false
}

// Describe says in words what the scenario does.
func (s Scenario) Describe() string {
	q := fmt.Sprintf("QoS %d, %d-byte payload", s.QoS, s.Size)
	if s.QoS > 0 {
		q += fmt.Sprintf(", %d in flight", s.Inflight)
	}
	rate := "saturating"
	if s.Rate > 0 {
		rate = "at " + si(s.Rate) + " msg/s"
	}
	switch s.Kind {
	case "p2p":
		if s.Pubs == 1 {
			return fmt.Sprintf("one publisher to one subscriber, %s, %s", rate, q)
		}
		return fmt.Sprintf("%d publishers each to its own subscriber, %s, %s", s.Pubs, rate, q)
	case "fanin":
		return fmt.Sprintf("%d publishers to one subscriber (t/+), %s, %s", s.Pubs, rate, q)
	case "share":
		return fmt.Sprintf("%d publishers to one shared group of %d ($share/g/t/+), %s, %s", s.Pubs, s.Subs, rate, q)
	case "fanout":
		return fmt.Sprintf("one publisher to %d subscribers of one topic, %s, %s", s.Subs, rate, q)
	case "persist":
		return fmt.Sprintf("%d persistent subscriber(s) offline while %d publisher(s) send %d messages each, then reconnect and drain; %s", s.Subs, s.Pubs, s.Messages, q)
	case "connstorm":
		return fmt.Sprintf("%d clean-session connections opened as fast as possible (CONNECT to CONNACK)", s.N)
	case "idle":
		d := fmt.Sprintf("%d idle connections; broker VmRSS after minus before, divided by %d", s.N, s.N)
		if s.KeepAlive > 0 {
			every := s.KeepAlive
			if s.PingEvery > 0 {
				every = s.PingEvery
			}
			d += fmt.Sprintf("; keep alive %d s, then for %d s one PINGREQ per connection every %d s, spread evenly (%.0f/s): broker CPU per PINGREQ",
				s.KeepAlive, s.KeepAlive, every, float64(s.N)/float64(every))
		}
		return d
	case "retained":
		return fmt.Sprintf("%d retained topics (%d-byte payload), then one subscriber to '#' of them: time until all arrive", s.N, s.Size)
	}
	return s.Name
}

// RunSettings are what a run of a scenario needs besides its name.
type RunSettings struct {
	Client    ClientOptions
	Warmup    time.Duration
	Duration  time.Duration
	BrokerPID int // for idle: the broker whose RSS is read (0: not measured)
	Settle    time.Duration
	// IdleWindow (idle with -kaS): how long the broker's CPU is sampled
	// with the connections held and silent, before the PINGREQ window.
	IdleWindow time.Duration
	Progress   io.Writer
	Label      string
	Prefix     string // topic prefix (unique per run)
}

// TimeBound is how long a run of the scenario may take beyond its warm-up
// and window: two minutes, plus, for connection scenarios, a connect rate
// as low as 1,000/s, their closing and the keep-alive window.
func (s Scenario) TimeBound() time.Duration {
	d := 2 * time.Minute
	if s.N > 0 && (s.Kind == "idle" || s.Kind == "connstorm") {
		d += 2 * time.Duration(s.N) * time.Millisecond
	}
	if s.Subs > 10000 || s.Pubs > 10000 {
		d += 2 * time.Duration(s.Subs+s.Pubs) * time.Millisecond
	}
	d += 2 * time.Duration(s.KeepAlive) * time.Second
	return d
}

// Run runs the scenario and returns its result with the headline filled in.
func (s Scenario) Run(ctx context.Context, rs RunSettings) *Result {
	rs.Client.Version = s.Version
	rs.Client.Inflight = s.Inflight
	rs.Client.defaults()
	if rs.Prefix == "" {
		rs.Prefix = "bench/" + rs.Client.IDPrefix
	}
	t := rs.Prefix + "/t/"
	var res *Result
	switch s.Kind {
	case "p2p", "fanin", "share", "fanout":
		w := Workload{Client: rs.Client, Pubs: s.Pubs, Subs: s.Subs, QoS: s.QoS, Size: s.Size, Rate: s.Rate,
			Warmup: rs.Warmup, Duration: rs.Duration, Fan: 1, Progress: rs.Progress, Label: rs.Label}
		w.Client.Clean = true
		switch s.Kind {
		case "p2p":
			w.PubTopic, w.SubFilter = t+"%i", t+"%i"
		case "fanin":
			w.PubTopic, w.SubFilter = t+"%i", t+"+"
		case "share":
			w.PubTopic, w.SubFilter = t+"%i", "$share/g/"+t+"+"
		case "fanout":
			w.PubTopic, w.SubFilter, w.Fan = t+"x", t+"x", s.Subs
		}
		res = w.Run(ctx)
	case "persist":
		res = runPersist(ctx, s, rs)
	case "connstorm", "idle":
		o := rs.Client
		o.Clean = true // both measure clean-session connections
		cs := ConnSpec{N: s.N, Hold: 0, Idle: s.Kind == "idle", BrokerPID: rs.BrokerPID,
			Settle: rs.Settle, Progress: rs.Progress, Label: rs.Label}
		if s.KeepAlive > 0 {
			o.KeepAlive = uint16(s.KeepAlive)
			cs.PingWindow = time.Duration(s.KeepAlive) * time.Second
			cs.PingEvery = cs.PingWindow
			if s.PingEvery > 0 {
				cs.PingEvery = time.Duration(s.PingEvery) * time.Second
			}
			cs.IdleWindow = rs.IdleWindow
		}
		res = runConn(ctx, o, cs)
	case "retained":
		res = runRetained(ctx, s, rs)
	default:
		res = &Result{Error: "unknown scenario kind " + s.Kind}
	}
	res.Scenario = s.Name
	name, unit, higher := s.Metric()
	res.Metric, res.Unit, res.Better = name, unit, "lower"
	if higher {
		res.Better = "higher"
	}
	switch {
	case s.Kind == "connstorm":
		res.Primary = res.ConnectRate
	case s.Kind == "idle":
		res.Primary = res.RSSPerConn
	case s.Kind == "retained":
		res.Primary = round3(res.DrainS * 1000)
	case s.Kind == "persist":
		if res.DrainS > 0 {
			res.Primary = float64(int64(float64(res.Received) / res.DrainS))
		}
	case s.Rate > 0:
		if res.Latency != nil {
			res.Primary = res.Latency.P99
		}
	default:
		res.Primary = res.RecvRate
	}
	if s.Kind == "idle" && rs.BrokerPID == 0 && res.OK {
		res.Error, res.OK = "no broker pid: RSS not measured", false
	}
	return res
}

// ConnSpec configures a conn run.
type ConnSpec struct {
	N         int
	Hold      time.Duration // keep the connections open this long (conn command)
	Idle      bool          // measure the broker's RSS and check liveness
	BrokerPID int
	Settle    time.Duration // wait before reading RSS after the last connect
	// PingWindow > 0 (idle): after the RSS is read, every connection sends
	// one PINGREQ, spread evenly over this window, and the broker's CPU
	// time over the window is reported. IdleWindow > 0 samples it first
	// over that long with the connections silent.
	PingWindow time.Duration
	PingEvery  time.Duration // each connection's interval within the window (0: PingWindow)
	IdleWindow time.Duration
	Progress   io.Writer
	Label      string
}

// runConn opens N connections (rate and concurrency from o), optionally
// holds them, measures the broker's RSS, checks they are alive and closes
// them.
func runConn(ctx context.Context, o ClientOptions, cs ConnSpec) *Result {
	o.defaults()
	if o.ReadBuf == 0 {
		// Held connections read only CONNACK and PINGRESP: a small buffer
		// keeps 250,000 of them at tens of MB instead of 1 GB of 4 KiB
		// buffers.
		o.ReadBuf = 256
	}
	rec := NewRecorder()
	res := &Result{Command: "conn", Connections: cs.N}
	res.Config = map[string]any{"mqtt": o.Version.String(), "clean": o.Clean, "keepalive": o.KeepAlive,
		"connect_rate": o.ConnectRate, "concurrency": o.Concurrency, "src_ips": o.SrcIPs}
	stop := make(chan struct{})
	go rec.Progress(cs.Progress, cs.Label, stop)
	err := func() error {
		defer close(stop)
		if err := checkFileLimit(cs.N); err != nil {
			return err
		}
		if cs.Idle && cs.BrokerPID > 0 {
			rss, err := vmRSS(cs.BrokerPID)
			if err != nil {
				return err
			}
			res.RSSBefore = rss
		}
		t0 := time.Now()
		conns, err := connectMany(ctx, &o, rec, "conn", cs.N, o.Clean, false, nil)
		elapsed := time.Since(t0)
		res.DurationS = round3(elapsed.Seconds())
		res.ConnectFailed = int64(cs.N) - rec.Connects.Load()
		if ok := rec.Connects.Load(); elapsed > 0 {
			res.ConnectRate = float64(int64(float64(ok) / elapsed.Seconds()))
		}
		res.Latency = rec.LatencySummary()
		if err != nil {
			return err
		}
		defer closeAll(conns, rec)
		if cs.Hold > 0 || cs.Idle {
			if !sleepCtx(ctx, max(cs.Hold, cs.Settle)) {
				return ctx.Err()
			}
		}
		if cs.Idle && cs.BrokerPID > 0 {
			rss, err := vmRSS(cs.BrokerPID)
			if err != nil {
				return err
			}
			res.RSSAfter = rss
			res.RSSPerConn = float64(int64(float64(res.RSSAfter-res.RSSBefore) / float64(cs.N)))
		}
		if cs.Idle && cs.BrokerPID > 0 && cs.PingWindow > 0 {
			// Every connection pings within the window: that is the
			// liveness check too.
			return keepAliveWindow(ctx, conns, o.Timeout, cs, res)
		}
		if cs.Idle || cs.Hold > 0 {
			res.Alive = pingAll(conns, o.Timeout, rec)
			if res.Alive < cs.N {
				return fmt.Errorf("%d of %d connections did not answer PINGREQ", cs.N-res.Alive, cs.N)
			}
		}
		return nil
	}()
	finish(res, rec, err)
	if err == nil && res.ConnectFailed > 0 {
		res.Error = fmt.Sprintf("%d of %d connections failed (first: %s)", res.ConnectFailed, cs.N, rec.FirstError())
		res.OK = false
	}
	return res
}

// checkFileLimit fails when n connections cannot fit in this process's
// open-file limit (which a broker started by compare inherits).
func checkFileLimit(n int) error {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil {
		return nil
	}
	if uint64(n)+200 > lim.Cur {
		return fmt.Errorf("%d connections need as many file descriptors (and the broker as many), and the open-file limit is %d, hard %d: "+
			"raise the hard limit before running (ulimit -Hn; for root it takes CAP_SYS_RESOURCE, up to fs.nr_open)", n, lim.Cur, lim.Max)
	}
	return nil
}

// pingAll checks, 32 at a time, that every connection answers PINGREQ.
func pingAll(conns []*mqttConn, timeout time.Duration, rec *Recorder) int {
	ch := make(chan *mqttConn)
	alive := make(chan int, 32)
	for w := 0; w < 32; w++ {
		go func() {
			n := 0
			for c := range ch {
				if err := c.ping(timeout); err != nil {
					rec.Error("ping", describe(err))
				} else {
					n++
				}
			}
			alive <- n
		}()
	}
	for _, c := range conns {
		if c != nil {
			ch <- c
		}
	}
	close(ch)
	n := 0
	for w := 0; w < 32; w++ {
		n += <-alive
	}
	return n
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// vmRSS reads VmRSS of a process from /proc/PID/status, in bytes.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("broker RSS: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					break
				}
				return kb * 1024, nil
			}
		}
	}
	return 0, fmt.Errorf("broker RSS: no VmRSS in /proc/%d/status", pid)
}

// runPersist: persistent subscribers subscribe and go offline; publishers
// send Messages each at QoS; the subscribers reconnect and the time until
// everything queued has arrived is measured.
func runPersist(ctx context.Context, s Scenario, rs RunSettings) *Result {
	o := rs.Client
	o.Clean = false
	o.defaults()
	rec := NewRecorder()
	res := &Result{Command: "persist", Publishers: s.Pubs, Subscribers: s.Subs}
	res.Config = map[string]any{"qos": int(s.QoS), "payload": s.Size, "messages_per_publisher": s.Messages,
		"inflight": o.Inflight, "mqtt": o.Version.String()}
	t := rs.Prefix + "/p/%i"
	stopProgress := make(chan struct{})
	go rec.Progress(rs.Progress, rs.Label, stopProgress)
	err := func() error {
		defer close(stopProgress)
		// 1. Subscribe with a persistent session, then leave.
		subs, err := connectMany(ctx, &o, rec, "psub", s.Subs, false, true, func(i int, c *mqttConn) error {
			return c.subscribe([]string{expand(t, i)}, s.QoS, o.Timeout, nil)
		})
		if err != nil {
			return fmt.Errorf("subscribers: %w", err)
		}
		closeAll(subs, rec)
		// 2. Publish while they are away, and wait for every acknowledgement.
		w := Workload{Client: o, Pubs: s.Pubs, QoS: s.QoS, Size: s.Size, PubTopic: t, Messages: s.Messages,
			Duration: 5 * time.Minute}
		w.Client.Clean = true
		pr := w.Run(ctx)
		if !pr.OK {
			return fmt.Errorf("publishing while subscribers are offline: %s", pr.Error)
		}
		rec.Sent.Store(pr.Sent)
		rec.Acked.Store(pr.Acked)
		// 3. Come back and drain.
		want := s.Messages * int64(s.Pubs)
		var stopping = newFlag()
		t0 := time.Now()
		conns, err := connectMany(ctx, &o, rec, "psub", s.Subs, false, true, func(i int, c *mqttConn) error {
			if !c.present {
				return errors.New("session not present after reconnecting: the broker lost the persistent session")
			}
			go (&subscriber{c: c, idx: i, rec: rec, timeout: o.Timeout, stopping: stopping}).run()
			return nil
		})
		if err != nil {
			return fmt.Errorf("reconnect: %w", err)
		}
		defer func() { stopping.Store(true); closeAll(conns, rec) }()
		res.Expected = want
		last, lastChange := int64(-1), time.Now()
		for ctx.Err() == nil && rec.Errors.Load() == 0 {
			got := rec.Received.Load()
			if got >= want {
				break
			}
			if got != last {
				last, lastChange = got, time.Now()
			} else if time.Since(lastChange) > o.Timeout {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		res.DrainS = round3(time.Since(t0).Seconds())
		res.DurationS = res.DrainS
		got := rec.Received.Load()
		res.Lost = max(want-got, 0)
		if res.DrainS > 0 {
			res.RecvRate = float64(int64(float64(got) / res.DrainS))
		}
		res.Latency = rec.LatencySummary()
		if err := ctx.Err(); err != nil {
			return err
		}
		if got < want && rec.Errors.Load() == 0 {
			res.Warning = fmt.Sprintf("received %d of %d queued QoS %d messages", got, want, s.QoS)
		}
		return nil
	}()
	finish(res, rec, err)
	return res
}

// runRetained: one publisher stores N retained messages (QoS 1, topics
// t/0..t/N-1); then a subscriber to t/# measures the time from SUBSCRIBE
// until all N have arrived; then the retained messages are cleared.
func runRetained(ctx context.Context, s Scenario, rs RunSettings) *Result {
	o := rs.Client
	o.Clean = true
	o.defaults()
	rec := NewRecorder()
	res := &Result{Command: "retained", Publishers: 1, Subscribers: 1}
	res.Config = map[string]any{"retained": s.N, "payload": s.Size, "mqtt": o.Version.String()}
	base := rs.Prefix + "/r/"
	topics := make([][]byte, s.N)
	for i := range topics {
		topics[i] = []byte(base + strconv.Itoa(i))
	}
	err := func() error {
		if err := publishRetained(ctx, &o, rec, topics, s.Size); err != nil {
			return fmt.Errorf("storing retained messages: %w", err)
		}
		defer func() {
			// Clear them (a zero-length retained message deletes), best effort.
			_ = publishRetained(context.Background(), &o, NewRecorder(), topics, -1)
		}()
		c, err := dial(o.dialConfig("rsub", 0, true))
		if err != nil {
			return fmt.Errorf("subscriber: %w", err)
		}
		stopping := newFlag()
		defer func() { stopping.Store(true); c.disconnect() }()
		var early int64
		t0 := time.Now()
		err = c.subscribe([]string{base + "#"}, packet.QoS1, o.Timeout, func(h packet.FixedHeader, body []byte) error {
			if h.Type == packet.PUBLISH {
				early++
				if h.Flags&0x06 != 0 { // QoS 1: acknowledge
					var p packet.Publish
					if err := p.Decode(h, body, c.v); err == nil {
						b, _ := (&packet.Ack{PacketType: packet.PUBACK, PacketID: p.PacketID}).Append(nil, c.v)
						return c.write(b, o.Timeout)
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		rec.Received.Add(early)
		sub := &subscriber{c: c, rec: rec, timeout: o.Timeout, stopping: stopping}
		go sub.run()
		want := int64(s.N)
		last, lastChange := int64(-1), time.Now()
		for ctx.Err() == nil && rec.Errors.Load() == 0 {
			got := rec.Received.Load()
			if got >= want {
				break
			}
			if got != last {
				last, lastChange = got, time.Now()
			} else if time.Since(lastChange) > o.Timeout {
				break
			}
			time.Sleep(time.Millisecond)
		}
		res.DrainS = round3(time.Since(t0).Seconds())
		res.DurationS = res.DrainS
		got := rec.Received.Load()
		res.Expected, res.Lost = want, max(want-got, 0)
		if res.DrainS > 0 {
			res.RecvRate = float64(int64(float64(got) / res.DrainS))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if got < want && rec.Errors.Load() == 0 {
			res.Warning = fmt.Sprintf("received %d of %d retained messages", got, want)
		}
		return nil
	}()
	finish(res, rec, err)
	res.Sent = int64(s.N)
	return res
}

// publishRetained publishes one retained QoS 1 message per topic from one
// connection, size bytes each (size < 0: empty, which clears), and waits for
// every PUBACK.
func publishRetained(ctx context.Context, o *ClientOptions, rec *Recorder, topics [][]byte, size int) error {
	c, err := dial(o.dialConfig("rpub", 0, true))
	if err != nil {
		return err
	}
	stopping := newFlag()
	defer func() { stopping.Store(true); c.disconnect() }()
	p := newPublisher(c, 0, rec, packet.QoS1, "", max(size, 8), o.Inflight, 0, int64(len(topics)), o.Timeout, stopping)
	p.retain, p.topics = true, topics
	if size < 0 {
		p.payload = nil
	}
	go p.read()
	p.run(ctx.Done())
	deadline := time.Now().Add(o.Timeout)
	for p.inflight() > 0 && time.Now().Before(deadline) && rec.Errors.Load() == 0 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	if e := rec.FirstError(); e != "" {
		return errors.New(e)
	}
	if n := p.inflight(); n > 0 {
		return fmt.Errorf("%d retained messages not acknowledged within %v", n, o.Timeout)
	}
	return ctx.Err()
}
