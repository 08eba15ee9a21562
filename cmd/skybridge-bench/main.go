// Command skybridge-bench is an MQTT load generator and broker comparison
// harness in the spirit of emqtt-bench.
//
//	skybridge-bench conn     [flags]        open many connections (connect rate, idle RSS)
//	skybridge-bench pub      [flags]        publish (fixed rate or saturating)
//	skybridge-bench sub      [flags]        subscribe and measure latency
//	skybridge-bench scenario [flags] NAME   one named scenario (pubs and subs together)
//	skybridge-bench list                    the scenarios of each profile
//	skybridge-bench compare  [flags]        Skybridge vs mosquitto vs nats-server
//	skybridge-bench nullsink [flags]        the generator's own ceiling against fake brokers
//
// Every command prints a progress line per second on stderr and its result
// as JSON on stdout (or -o FILE). See bench/README.md.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

func main() {
	raiseFileLimit()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "skybridge-bench:", err)
		os.Exit(1)
	}
}

// raiseFileLimit lifts the soft (and, for root, the hard) limit on open
// files: tens of thousands of connections need as many descriptors. The
// explicit Setrlimit also makes brokers started by compare inherit it.
func raiseFileLimit() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil {
		return
	}
	want := lim
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		var n uint64
		if _, err := fmt.Sscan(string(b), &n); err == nil && n > want.Max {
			want.Max = min(n, 1<<20)
		}
	}
	want.Cur = want.Max
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) != nil {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

const usageText = `usage: skybridge-bench COMMAND [flags]

  conn      open -c connections (at -R per second), hold them, report connect rate
  pub       -c publishers on topic -t (%i = client index), QoS -q, payload -s,
            rate -r msg/s in total (0 = saturate)
  sub       -c subscribers on filter -t, report rate and latency
  scenario  run one named scenario, e.g. p2p-1-1-q0-16B, fanin-100-1-q1-16B,
            connstorm-5000, idle-10000 -pid BROKERPID, retained-10000
  list      print the scenarios of the quick and full profiles
  compare   start mosquitto, nats-server and Skybridge, run a profile against
            each in alternation, write bench/results/
  nullsink  measure the generator alone against in-process fake brokers

Run 'skybridge-bench COMMAND -h' for the flags of a command.`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usageText)
		return errors.New("no command")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "conn", "pub", "sub", "scenario":
		return runLoad(ctx, cmd, args, stdout, stderr)
	case "list":
		return listScenarios(stdout)
	case "compare":
		return runCompare(ctx, args, stdout, stderr)
	case "nullsink":
		return runNullSink(ctx, args, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, usageText)
		return nil
	}
	fmt.Fprintln(stderr, usageText)
	return fmt.Errorf("unknown command %q", cmd)
}

// commonFlags are the connection flags of conn, pub, sub and scenario.
type commonFlags struct {
	host        string
	subHost     string
	version     int
	clean       bool
	keepAlive   int
	inflight    int
	srcIPs      int
	timeout     time.Duration
	connectRate float64
	concurrency int
	prefix      string
	out         string
	quiet       bool
	sendBuf     int
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.host, "h", "127.0.0.1:1883", "broker host:port")
	fs.StringVar(&c.subHost, "sub-h", "", "subscribers connect here instead of -h (another node of a cluster)")
	fs.IntVar(&c.version, "V", 4, "MQTT protocol level: 4 (3.1.1) or 5 (5.0)")
	fs.BoolVar(&c.clean, "C", true, "clean session (false: persistent sessions)")
	fs.IntVar(&c.keepAlive, "k", 300, "keep alive (seconds)")
	fs.IntVar(&c.inflight, "F", 100, "inflight window for QoS 1/2 publishing (and 5.0 receive maximum)")
	fs.IntVar(&c.srcIPs, "src", 16, "spread connections over source addresses 127.0.0.1..127.0.0.N (loopback brokers only; <=1 disables)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "deadline for connect, CONNACK, SUBACK, acknowledgements, and silence from the broker")
	fs.Float64Var(&c.connectRate, "R", 0, "connections per second (0: as fast as -concurrency dialers go)")
	fs.IntVar(&c.concurrency, "concurrency", 32, "parallel connection attempts")
	fs.StringVar(&c.prefix, "prefix", "", "client identifier prefix (default: random)")
	fs.StringVar(&c.out, "o", "", "write the JSON result to this file instead of stdout")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress line")
	fs.IntVar(&c.sendBuf, "sndbuf", 64<<10, "SO_SNDBUF of each connection in bytes (0: kernel autotuning, which lets a flood park megabytes in the kernel)")
}

func (c *commonFlags) options() (ClientOptions, error) {
	if c.version != 4 && c.version != 5 {
		return ClientOptions{}, fmt.Errorf("-V %d: want 4 (3.1.1) or 5 (5.0)", c.version)
	}
	if c.keepAlive < 0 || c.keepAlive > 65535 {
		return ClientOptions{}, fmt.Errorf("-k %d out of range", c.keepAlive)
	}
	return ClientOptions{Addr: c.host, SubAddr: c.subHost, SrcIPs: c.srcIPs, Version: packet.Version(c.version), Clean: c.clean,
		KeepAlive: uint16(c.keepAlive), Inflight: c.inflight, Timeout: c.timeout, ConnectRate: c.connectRate,
		Concurrency: c.concurrency, IDPrefix: c.prefix, SendBuf: c.sendBuf}, nil
}

func runLoad(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	count := fs.Int("c", 1, "number of clients (connections, publishers or subscribers)")
	topic := fs.String("t", "bench/%i", "topic (pub) or filter (sub); %i is the client index")
	qos := fs.Int("q", 0, "QoS 0, 1 or 2")
	size := fs.Int("s", 16, "payload size in bytes (at least 8: the send timestamp)")
	rate := fs.Float64("r", 0, "pub: total messages per second over all publishers (0: saturate)")
	msgs := fs.Int64("n", 0, "pub: messages per publisher; sub: messages per subscriber to wait for (0: run for -d)")
	dur := fs.Duration("d", 10*time.Second, "measured duration (pub, sub, scenario; conn: how long to hold)")
	warm := fs.Duration("w", time.Second, "warm-up before measuring (pub, scenario)")
	retain := fs.Bool("retain", false, "pub: set RETAIN")
	pid := fs.Int("pid", 0, "conn, idle scenarios: broker process id whose VmRSS is read before and after")
	settle := fs.Duration("settle", 2*time.Second, "conn -pid: wait after the last connect before reading RSS")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o, err := cf.options()
	if err != nil {
		return err
	}
	if *qos < 0 || *qos > 2 {
		return fmt.Errorf("-q %d: want 0, 1 or 2", *qos)
	}
	var progress io.Writer = stderr
	if cf.quiet {
		progress = nil
	}
	var res *Result
	switch cmd {
	case "conn":
		res = runConn(ctx, o, ConnSpec{N: *count, Hold: *dur, Idle: *pid > 0, BrokerPID: *pid, Settle: *settle,
			Progress: progress, Label: "conn"})
	case "pub", "sub":
		w := Workload{Client: o, QoS: packet.QoS(*qos), Size: *size, Retain: *retain, Rate: *rate, Messages: *msgs,
			Warmup: *warm, Duration: *dur, Progress: progress, Label: cmd}
		if cmd == "pub" {
			w.Pubs, w.PubTopic = *count, *topic
		} else {
			w.Subs, w.SubFilter = *count, *topic
			if *msgs > 0 {
				w.Drain = *dur
			}
		}
		res = w.Run(ctx)
	case "scenario":
		if fs.NArg() != 1 {
			return errors.New("scenario: want one scenario name (skybridge-bench list shows some)")
		}
		s, err := ParseScenario(fs.Arg(0))
		if err != nil {
			return err
		}
		if cf.version == 5 {
			s.Version = packet.V5
		}
		res = s.Run(ctx, RunSettings{Client: o, Warmup: *warm, Duration: *dur, BrokerPID: *pid, Settle: *settle,
			Progress: progress, Label: s.Name})
	}
	if err := writeJSON(res, cf.out, stdout); err != nil {
		return err
	}
	if !res.OK {
		return errors.New(res.Error)
	}
	return nil
}

func writeJSON(v any, path string, stdout io.Writer) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "" {
		_, err = stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func listScenarios(w io.Writer) error {
	for _, p := range []string{"quick", "full", "scale", "fanout"} {
		prof := profiles[p]
		fmt.Fprintf(w, "%s profile (%d rounds, warm-up %v, window %v):\n", p, prof.Rounds, prof.Warmup, prof.Duration)
		if prof.About != "" || prof.Brokers != "" {
			fmt.Fprintf(w, "  %s; brokers %s\n", prof.About, cmp.Or(prof.Brokers, "skybridge,mosquitto,nats"))
		}
		for _, name := range prof.Scenarios {
			s, err := ParseScenario(name)
			if err != nil {
				return err
			}
			m, unit, _ := s.Metric()
			fmt.Fprintf(w, "  %-28s %s [%s, %s]\n", name, s.Describe(), m, unit)
		}
	}
	return nil
}
