package kvsim

import (
	"flag"
	"fmt"
	"strings"
	"testing"
)

var (
	seedFlag  = flag.Uint64("kv.seed", 0, "run this seed only")
	nodesFlag = flag.Int("kv.nodes", 3, "nodes of -kv.seed")
)

func report(t *testing.T, o Options, r *Result) {
	t.Helper()
	if !r.Failed() {
		return
	}
	t.Errorf("seed %d (%d nodes) failed:\n  %s\n  replay: %s\n  last events:\n    %s", r.Seed, r.Nodes,
		strings.Join(r.Failures, "\n  "), r.Replay(o), strings.Join(r.Tail[max(0, len(r.Tail)-20):], "\n    "))
}

func TestOneSeed(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = 1
	}
	o := DefaultOptions(*nodesFlag)
	r := Run(o, seed)
	t.Logf("seed %d: %d events, virtual %v, ops ok=%d failed=%d unknown=%d timeouts=%d, faults: %d partitions %d crashes %d stalls %d replaced; raft dropped %d dup %d; linearized %d inconclusive %d",
		seed, r.Events, r.Virtual, r.Stats.OpsOK, r.Stats.OpsFailed, r.Stats.OpsUnknown, r.Stats.ClientTimeouts,
		r.Stats.Partitions, r.Stats.Crashes, r.Stats.Stalls, r.Stats.Replacements, r.Stats.RaftDropped, r.Stats.RaftDuplicated,
		r.Stats.Linearized, r.Stats.Inconclusive)
	t.Logf("node stats: %s", r.Stats.Node)
	report(t, o, r)
	_ = fmt.Sprint
}
