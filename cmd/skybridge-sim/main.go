// Command skybridge-sim runs the deterministic simulator (package sim):
// the real broker core through hostile histories on a virtual clock and
// network. A failure prints the one command that replays it.
//
//	skybridge-sim run --seed 7 --duration 10m --faults network,crash
//	skybridge-sim sweep --seeds 1000 --parallel 2 --duration 1m
//	skybridge-sim run --seed 7 --storage memory   # the in-memory broker
//
// The broker is durable by default: its Pebble store lives on a crashable
// in-memory disk and a crash is a power loss (see package sim).
//
// This command is a runtime, outside the core: it reads the wall clock (to
// report the simulated-to-real time ratio) and runs seeds on goroutines.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/skybridge-mq/skybridge/sim"
)

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  skybridge-sim run   --seed S [--duration 10m] [--faults network,crash] [options]
  skybridge-sim sweep --seeds N [--from 1] [--parallel K] [--duration 1m] [options]

options (both):
`)
}

// opts are the flags that define a scenario; the replay command repeats them.
type opts struct {
	duration, quiesce, every time.Duration
	faults, bugs, storage    string
	clients                  int
	porcupine                bool
	tail                     int
}

func (o *opts) register(fs *flag.FlagSet) {
	fs.DurationVar(&o.duration, "duration", time.Minute, "virtual time of the workload phase")
	fs.DurationVar(&o.quiesce, "quiesce", 90*time.Second, "virtual time to settle before the final checks")
	fs.DurationVar(&o.every, "every", 8*time.Second, "mean virtual time between faults")
	fs.StringVar(&o.faults, "faults", "network,crash,disk", "faults to inject: network, crash, disk, none")
	fs.StringVar(&o.bugs, "bugs", "", "planted bugs ("+bugNames()+")")
	fs.StringVar(&o.storage, "storage", "durable", "the broker's storage: durable (Pebble on a crashable disk; a crash is a power loss) or memory")
	fs.IntVar(&o.clients, "clients", 50, "simulated clients (over two client hosts; a monitor per tenant besides)")
	fs.BoolVar(&o.porcupine, "porcupine", true, "check retained and subscription histories with Porcupine")
	fs.IntVar(&o.tail, "tail", 40, "events shown before a failure")
}

func (o *opts) scenario() (sim.Scenario, error) {
	f, err := sim.ParseFaults(o.faults)
	if err != nil {
		return sim.Scenario{}, err
	}
	f.Every = o.every
	sc := sim.Standard(o.duration, o.clients, f)
	switch o.storage {
	case "durable":
	case "memory":
		sc.Broker.Durable = false
	default:
		return sc, fmt.Errorf("unknown storage %q (want durable, memory)", o.storage)
	}
	sc.Quiesce = o.quiesce
	sc.Checks.Porcupine = o.porcupine
	sc.TraceTail = o.tail
	b, ok := sim.ParseBugs(o.bugs)
	if !ok {
		return sc, fmt.Errorf("unknown bug in %q", o.bugs)
	}
	sc.Bugs = b
	return sc, nil
}

// replay is the command that reruns one seed with the same scenario.
func (o *opts) replay(seed uint64) string {
	cmd := fmt.Sprintf("go run ./cmd/skybridge-sim run --seed %d --duration %s --faults %s --clients %d --every %s --quiesce %s",
		seed, o.duration, o.faults, o.clients, o.every, o.quiesce)
	if o.bugs != "" {
		cmd += " --bugs " + o.bugs
	}
	if o.storage != "durable" {
		cmd += " --storage " + o.storage
	}
	if !o.porcupine {
		cmd += " --porcupine=false"
	}
	return cmd
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	switch os.Args[1] {
	case "run":
		os.Exit(run(os.Args[2:], os.Stdout))
	case "sweep":
		os.Exit(sweep(os.Args[2:], os.Stdout, os.Stderr))
	default:
		usage()
		os.Exit(2)
	}
}

func run(args []string, w io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	var o opts
	o.register(fs)
	seed := fs.Uint64("seed", 1, "the seed: every random choice derives from it")
	html := fs.String("html", "sim-failure.html", "where to write Porcupine's visualisation of a non-linearizable history")
	_ = fs.Parse(args)
	sc, err := o.scenario()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	start := time.Now()
	r := sim.Run(sc, *seed)
	real := time.Since(start)
	fmt.Fprintf(w, "seed %d: %s virtual in %s real (%.0fx real time)\n", r.Seed, r.Virtual, real.Round(time.Millisecond), r.Virtual.Seconds()/real.Seconds())
	fmt.Fprintf(w, "  events %d (scheduler steps %d), trace %016x\n", r.Events, r.Steps, r.Hash)
	fmt.Fprintf(w, "  messages %d, deliveries %d; broker in %d, out %d, dropped %d\n", r.Messages, r.Deliveries, r.BrokerIn, r.BrokerOut, r.BrokerDropped)
	if r.Firehose {
		fmt.Fprintln(w, "  with a firehose (a session's packet identifiers wrap)")
	}
	fmt.Fprintf(w, "  faults %d: partitions %d, resets %d, half-open %d, crashes %d, disk stalls %d\n", r.Faults.Total(), r.Faults.Partitions, r.Faults.Resets, r.Faults.HalfOpen, r.Faults.Crashes, r.Faults.DiskStalls)
	fmt.Fprintf(w, "  network: %d connections, %d bytes, %d held by partitions; runtime: %d keep-alive and %d connect timeouts, %d write timeouts\n",
		r.Net.Conns, r.Net.Bytes, r.Net.Held, r.Runtime.Timeouts, r.Runtime.ConnectTimeouts, r.Runtime.WriteTimeouts)
	if rt := r.Runtime; rt.Commits > 0 {
		fmt.Fprintf(w, "  store: %d group commits of %d batches; %d power losses (%d keeping some unsynced data), %d compacting restarts\n",
			rt.Commits, rt.Batches, rt.PowerLosses, rt.Unsynced, rt.Compactions)
	}
	fmt.Fprintf(w, "  invariants checked %d; excused: %d dropped by the broker for a full queue, %d still queued at the end, "+
		"%d taken for duplicates (stale packet id), %d sessions a crash brought back\n",
		r.ChecksTotal(), r.Excused.Queue, r.Excused.Held, r.Excused.Stale, r.Excused.Crash)
	for i, name := range sim.InvariantNames() {
		if r.Checked[i] > 0 {
			fmt.Fprintf(w, "    %-28s %d\n", name, r.Checked[i])
		}
	}
	if f := r.Failure; f != nil {
		fmt.Fprintf(w, "\nFAIL seed %d: invariant %s broken at %s\n  %s\n", r.Seed, f.Invariant, f.At, f.Detail)
		fmt.Fprintf(w, "\nlast %d events:\n", len(r.Tail))
		for _, l := range r.Tail {
			fmt.Fprintln(w, "  "+l)
		}
		if f.HTML != nil {
			if err := os.WriteFile(*html, f.HTML, 0o644); err == nil {
				fmt.Fprintf(w, "\nPorcupine visualisation: %s\n", *html)
			}
		}
		fmt.Fprintf(w, "\nreplay:\n  %s\n", o.replay(r.Seed))
		return 1
	}
	fmt.Fprintln(w, "PASS")
	return 0
}

func sweep(args []string, w, progress io.Writer) int {
	fs := flag.NewFlagSet("sweep", flag.ExitOnError)
	var o opts
	o.register(fs)
	seeds := fs.Uint64("seeds", 100, "number of seeds")
	from := fs.Uint64("from", 1, "first seed")
	parallel := fs.Int("parallel", runtime.GOMAXPROCS(0), "seeds run at once")
	_ = fs.Parse(args)
	sc, err := o.scenario()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	start := time.Now()
	results := make([]*sim.Result, *seeds)
	var mu sync.Mutex
	done, failed := 0, 0
	next := *from
	var wg sync.WaitGroup
	for range max(1, *parallel) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				seed := next
				next++
				mu.Unlock()
				if seed >= *from+*seeds {
					return
				}
				r := sim.Run(sc, seed)
				mu.Lock()
				results[seed-*from] = r
				done++
				if r.Failure != nil {
					failed++
				}
				bar(progress, done, int(*seeds), failed, time.Since(start))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	fmt.Fprintln(progress)
	real := time.Since(start)

	var virtual time.Duration
	var events, deliveries, checks, faults uint64
	var msgs int
	byInv := map[string][]uint64{}
	for _, r := range results {
		virtual += r.Virtual
		events += r.Events
		deliveries += r.Deliveries
		checks += r.ChecksTotal()
		faults += r.Faults.Total()
		msgs += r.Messages
		if r.Failure != nil {
			byInv[r.Failure.Invariant.String()] = append(byInv[r.Failure.Invariant.String()], r.Seed)
		}
	}
	fmt.Fprintf(w, "%d seeds (%d..%d), %d failed, in %s real: %s virtual (%.0fx real time, %d at once)\n",
		*seeds, *from, *from+*seeds-1, failed, real.Round(time.Millisecond), virtual, virtual.Seconds()/real.Seconds(), *parallel)
	fmt.Fprintf(w, "events %d, messages %d, deliveries %d, faults %d, invariants checked %d\n\n", events, msgs, deliveries, faults, checks)
	fmt.Fprintf(w, "%-28s %8s  %s\n", "invariant", "failures", "seeds")
	names := sim.InvariantNames()
	for _, name := range names {
		s := byInv[name]
		list := ""
		for i, seed := range s {
			if i == 10 {
				list += " ..."
				break
			}
			list += fmt.Sprintf(" %d", seed)
		}
		fmt.Fprintf(w, "%-28s %8d %s\n", name, len(s), list)
	}
	if failed > 0 {
		var first []uint64
		for _, s := range byInv {
			first = append(first, s[0])
		}
		sort.Slice(first, func(i, j int) bool { return first[i] < first[j] })
		fmt.Fprintln(w, "\nreplay:")
		for _, seed := range first {
			fmt.Fprintln(w, "  "+o.replay(seed))
		}
		return 1
	}
	return 0
}

// bugNames lists the planted bugs.
func bugNames() string {
	var names []string
	for _, b := range sim.BugNames {
		names = append(names, b.Name)
	}
	return strings.Join(names, ", ")
}

// bar draws a progress bar on one terminal line.
func bar(w io.Writer, done, total, failed int, elapsed time.Duration) {
	const width = 40
	n := done * width / max(total, 1)
	eta := time.Duration(0)
	if done > 0 {
		eta = elapsed * time.Duration(total-done) / time.Duration(done)
	}
	fmt.Fprintf(w, "\r[%s%s] %d/%d seeds, %d failed, eta %s ", strings.Repeat("#", n), strings.Repeat(".", width-n),
		done, total, failed, eta.Round(time.Second))
}
