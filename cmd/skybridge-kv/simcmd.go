package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/skybridge-mq/skybridge/sim/kvsim"
)

// simulate runs one seed (--seed) or a sweep (--seeds N from --from):
// seeds run on every core; odd seeds use 3 nodes, even seeds 5, unless
// --nodes says otherwise.
func simulate(args []string) error {
	fs := flag.NewFlagSet("sim", flag.ExitOnError)
	seed := fs.Uint64("seed", 0, "run this seed")
	seeds := fs.Int("seeds", 0, "run this many seeds")
	from := fs.Uint64("from", 1, "first seed of a sweep")
	nodes := fs.Int("nodes", 0, "nodes (0: 3 for odd seeds, 5 for even ones)")
	duration := fs.Duration("duration", 20*time.Second, "virtual time of load and faults")
	faults := fs.String("faults", "all", "faults: all, none, or partition,loss,crash,stall,replace")
	bug := fs.String("bug", "", "plant a bug: "+strings.Join(kvsim.BugNames(), ", "))
	clients := fs.Int("clients", 4, "clients")
	workers := fs.Int("workers", runtime.GOMAXPROCS(0), "seeds run at once")
	verbose := fs.Bool("v", false, "print every seed")
	splitBytes := fs.Int64("split-bytes", 0, "ranges split above this many bytes (0: the simulator's default, 6 KiB; merges below half)")
	keys := fs.Int("keys", 0, "single-key registers the clients use (0: the default, 8)")
	fs.Parse(args)
	f, err := kvsim.ParseFaults(*faults)
	if err != nil {
		return err
	}
	opts := func(seed uint64) kvsim.Options {
		n := *nodes
		if n == 0 {
			n = 5
			if seed%2 == 1 {
				n = 3
			}
		}
		o := kvsim.DefaultOptions(n)
		o.Duration, o.Faults, o.Bug, o.Clients = *duration, f, *bug, *clients
		if *splitBytes > 0 {
			o.Config.SplitBytes, o.Config.MergeBytes = *splitBytes, *splitBytes/2
		}
		if *keys > 0 {
			o.Keys = *keys
		}
		return o
	}
	if *seed != 0 {
		*from, *seeds = *seed, 1
		*verbose = true
	}
	if *seeds <= 0 {
		return errors.New("sim needs --seed or --seeds")
	}
	start := time.Now()
	var mu sync.Mutex
	var wg sync.WaitGroup
	next, failed := 0, 0
	var st kvsim.Stats
	for range max(1, *workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= *seeds {
					return
				}
				s := *from + uint64(i)
				o := opts(s)
				r := kvsim.Run(o, s)
				mu.Lock()
				st.Add(r.Stats)
				if *verbose {
					fmt.Printf("seed %d (%d nodes): %d events, %v virtual, hash %016x, %d ops answered, %d failures\n",
						s, r.Nodes, r.Events, r.Virtual, r.Hash, r.Stats.OpsOK, len(r.Failures))
				}
				if r.Failed() {
					failed++
					fmt.Printf("FAIL seed %d (%d nodes):\n  %s\n  replay: %s\n", s, r.Nodes, strings.Join(r.Failures, "\n  "), r.Replay(o))
					if *verbose {
						fmt.Printf("  last events:\n    %s\n", strings.Join(r.Tail, "\n    "))
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	fmt.Printf("%d seeds from %d in %v: %d failed; %d operations answered; %d partitions, %d power losses, %d nodes replaced; %d splits, %d merges, %d snapshots applied, %d membership changes; %d Porcupine checks inconclusive\n",
		*seeds, *from, time.Since(start).Round(time.Millisecond), failed, st.OpsOK, st.Partitions, st.Crashes, st.Replacements,
		st.Node.Splits, st.Node.Merges, st.Node.SnapshotsApplied, st.Node.ConfChanges, st.Inconclusive)
	if st.Writes > 0 {
		fmt.Printf("per acknowledged write, over every node (background work included): %.1f raft messages, %.2f synced batches (fsyncs), %.2f raft entries proposed\n",
			float64(st.Node.RaftSent)/float64(st.Writes), float64(st.Node.Syncs)/float64(st.Writes), float64(st.Node.Proposals)/float64(st.Writes))
	}
	if st.Seconds > 0 {
		fmt.Printf("user ranges: %.1f on average over the runs' seconds\n", float64(st.RangeSeconds)/float64(st.Seconds))
	}
	if failed > 0 {
		os.Exit(1)
	}
	return nil
}
