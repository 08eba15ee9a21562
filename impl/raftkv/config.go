package raftkv

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/skybridge-mq/skybridge/impl/env"
)

// Config configures a Node. Zero fields take the defaults of
// (*Config).withDefaults; Validate says what is wrong with the rest.
type Config struct {
	ID   NodeID
	FS   env.FS
	Dir  string
	Rand env.Rand
	// Addr is this node's address for the others (recorded in meta).
	Addr string
	// Peers are the nodes of the initial cluster, this one included, when
	// it is bootstrapped; for a node that joins (Join), the nodes to ask.
	Peers []NodeID
	Join  bool

	// Replicas is the number of voters per range (1 to 5; fewer while
	// fewer nodes are live). The meta range has that many voters and a
	// learner on every other live node, so that every node can route.
	Replicas int
	// Learners is the number of non-voting replicas per range besides
	// (they apply everything and serve Stale reads; they never vote).
	Learners int

	// Time, in ticks (the runtime ticks every TickInterval of its own).
	ElectionTicks  int // a follower campaigns after [E, 2E) ticks without a leader
	HeartbeatTicks int
	RequestTicks   int // a request not answered by then fails (Timeout)
	PlacementTicks int // how often a leader looks at its range's placement, split and merge
	// DeadAfterTicks: the meta leader declares a node dead when it has not
	// heard from it for this long (0: only an explicit declaration).
	DeadAfterTicks int

	// Bounds.
	MaxInflightProposals int    // per range: requests proposed and not yet applied
	MaxPendingReads      int    // per range: linearizable reads waiting
	MaxPendingRequests   int    // per node: requests being routed or executed
	MaxProposalBytes     int    // one raft entry batches requests up to this size
	MaxReadyBytes        int    // one Ready persists about this much at most
	MaxApplyBytes        uint64 // committed entries applied per Ready
	MaxUncommittedBytes  uint64 // per range: proposals beyond this are refused (Busy)
	MaxSnapshotsOut      int    // snapshots being sent at once
	MaxSnapshotsIn       int    // snapshots received and not yet applied
	MaxSnapshotBytes     int64  // a snapshot larger than this is not sent
	MaxUninitialized     int    // replicas created by messages and not yet given a range
	MaxWatches           int    // client watches at this node, and watch parts at its replicas

	// Ranges split above SplitBytes of data or SplitWrites writes per
	// PlacementTicks, and merge with their right neighbour when both are
	// under MergeBytes (0 disables merges) and quiet.
	SplitBytes  int64
	SplitWrites int
	MergeBytes  int64

	// LogKeep entries stay behind the applied index after a truncation,
	// for followers slightly behind; past LogMax entries the log is cut
	// even if a follower still needs them (it gets a snapshot).
	LogKeep int
	LogMax  int

	// Log, when set, hears about the changes of the node's replicas
	// (splits, merges, snapshots, replicas created and destroyed).
	Log func(msg string)

	// CacheBytes is Pebble's block cache. Every write reads its key's old
	// value (exact range sizes): with Pebble's 8 MiB default these reads
	// went to the disk and the write path ran at a third of the rate.
	CacheBytes int64

	// MemTableBytes is the size of Pebble's memtables (Pebble's default is
	// 4 MiB). The raft log and the data both pass through them; with small
	// memtables the store flushed many small L0 tables and rewrote its
	// base level for each few of them: compactions took half of the CPU of
	// the batched write benchmark (docs/RAFTKV.md).
	MemTableBytes int64

	// Knobs plants bugs, for the simulator's checks to find (never in production).
	Knobs Knobs
}

// Knobs are planted bugs.
type Knobs struct {
	AckBeforeApply       bool // answer a write once proposed locally, before it commits
	ReadWithoutReadIndex bool // leaders serve linearizable reads from local state directly
	SnapshotNoClear      bool // applying a snapshot keeps the data the replica had
	SnapshotLiveData     bool // a snapshot's data is read when it is sent, not at its index
	NoSync               bool // the raft log is written without sync
	MergeDropsData       bool // a merge forgets the right-hand range's data
	WatchKeepsSplit      bool // a split does not end the watch parts of the range that split
}

// Any reports whether a bug is planted.
func (k Knobs) Any() bool { return k != Knobs{} }

// DefaultConfig returns the defaults for a node on a 100 ms tick.
func DefaultConfig() Config {
	return Config{
		Replicas:       3,
		ElectionTicks:  10,
		HeartbeatTicks: 1,
		RequestTicks:   50,
		PlacementTicks: 10,
		DeadAfterTicks: 0,

		MaxInflightProposals: 4096,
		MaxPendingReads:      4096,
		MaxPendingRequests:   16384,
		MaxProposalBytes:     1 << 20,
		MaxReadyBytes:        8 << 20,
		MaxApplyBytes:        8 << 20,
		MaxUncommittedBytes:  64 << 20,
		MaxSnapshotsOut:      2,
		MaxSnapshotsIn:       2,
		MaxSnapshotBytes:     256 << 20,
		MaxUninitialized:     1024,
		MaxWatches:           4096,

		SplitBytes:  64 << 20,
		SplitWrites: 0,
		MergeBytes:  8 << 20,

		LogKeep: 1000,
		LogMax:  20000,

		CacheBytes:    64 << 20,
		MemTableBytes: 16 << 20,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	set(&c.Replicas, d.Replicas)
	set(&c.ElectionTicks, d.ElectionTicks)
	set(&c.HeartbeatTicks, d.HeartbeatTicks)
	set(&c.RequestTicks, d.RequestTicks)
	set(&c.PlacementTicks, d.PlacementTicks)
	set(&c.MaxInflightProposals, d.MaxInflightProposals)
	set(&c.MaxPendingReads, d.MaxPendingReads)
	set(&c.MaxPendingRequests, d.MaxPendingRequests)
	set(&c.MaxProposalBytes, d.MaxProposalBytes)
	set(&c.MaxReadyBytes, d.MaxReadyBytes)
	set(&c.MaxSnapshotsOut, d.MaxSnapshotsOut)
	set(&c.MaxSnapshotsIn, d.MaxSnapshotsIn)
	set(&c.MaxUninitialized, d.MaxUninitialized)
	set(&c.MaxWatches, d.MaxWatches)
	set(&c.LogKeep, d.LogKeep)
	set(&c.LogMax, d.LogMax)
	if c.MaxApplyBytes == 0 {
		c.MaxApplyBytes = d.MaxApplyBytes
	}
	if c.MaxUncommittedBytes == 0 {
		c.MaxUncommittedBytes = d.MaxUncommittedBytes
	}
	if c.MaxSnapshotBytes == 0 {
		c.MaxSnapshotBytes = d.MaxSnapshotBytes
	}
	if c.SplitBytes == 0 {
		c.SplitBytes = d.SplitBytes
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = d.CacheBytes
	}
	if c.MemTableBytes == 0 {
		c.MemTableBytes = d.MemTableBytes
	}
	return c
}

// Validate reports the first field that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.ID == 0:
		return errors.New("raftkv: ID must not be 0")
	case c.FS == nil:
		return errors.New("raftkv: FS is required")
	case c.Rand == nil:
		return errors.New("raftkv: Rand is required")
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("raftkv: Replicas is %d, must be 1 to 5", c.Replicas)
	case c.Learners < 0 || c.Learners > 5:
		return fmt.Errorf("raftkv: Learners is %d, must be 0 to 5", c.Learners)
	case c.HeartbeatTicks < 1 || c.ElectionTicks <= c.HeartbeatTicks:
		return fmt.Errorf("raftkv: ElectionTicks (%d) must exceed HeartbeatTicks (%d) >= 1", c.ElectionTicks, c.HeartbeatTicks)
	case c.RequestTicks <= c.ElectionTicks:
		return fmt.Errorf("raftkv: RequestTicks (%d) must exceed ElectionTicks (%d)", c.RequestTicks, c.ElectionTicks)
	case c.LogKeep < 1 || c.LogMax <= c.LogKeep:
		return fmt.Errorf("raftkv: LogMax (%d) must exceed LogKeep (%d) >= 1", c.LogMax, c.LogKeep)
	case c.MemTableBytes < 1<<20 || c.MemTableBytes >= 4<<30:
		return fmt.Errorf("raftkv: MemTableBytes is %d, must be 1 MiB to 4 GiB", c.MemTableBytes)
	case c.MergeBytes < 0 || c.MergeBytes >= c.SplitBytes:
		return fmt.Errorf("raftkv: MergeBytes (%d) must be below SplitBytes (%d)", c.MergeBytes, c.SplitBytes)
	case c.Join && len(c.Peers) == 0:
		return errors.New("raftkv: a joining node needs Peers to ask")
	case !c.Join && !slices.Contains(c.Peers, c.ID):
		return fmt.Errorf("raftkv: bootstrap Peers %v must include the node's own ID %d", c.Peers, c.ID)
	}
	return nil
}

// String lists the settings, one per line, for logs and reports.
func (c Config) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "id=%d addr=%q peers=%v join=%v replicas=%d learners=%d\n", c.ID, c.Addr, c.Peers, c.Join, c.Replicas, c.Learners)
	fmt.Fprintf(&b, "ticks: election=%d heartbeat=%d request=%d placement=%d dead-after=%d\n",
		c.ElectionTicks, c.HeartbeatTicks, c.RequestTicks, c.PlacementTicks, c.DeadAfterTicks)
	fmt.Fprintf(&b, "bounds: proposals=%d reads=%d requests=%d proposal-bytes=%d ready-bytes=%d apply-bytes=%d uncommitted=%d snapshots=%d/%d snapshot-bytes=%d uninitialized=%d\n",
		c.MaxInflightProposals, c.MaxPendingReads, c.MaxPendingRequests, c.MaxProposalBytes, c.MaxReadyBytes,
		c.MaxApplyBytes, c.MaxUncommittedBytes, c.MaxSnapshotsOut, c.MaxSnapshotsIn, c.MaxSnapshotBytes, c.MaxUninitialized)
	fmt.Fprintf(&b, "ranges: split-bytes=%d split-writes=%d merge-bytes=%d log-keep=%d log-max=%d cache-bytes=%d memtable-bytes=%d",
		c.SplitBytes, c.SplitWrites, c.MergeBytes, c.LogKeep, c.LogMax, c.CacheBytes, c.MemTableBytes)
	if c.Knobs.Any() {
		fmt.Fprintf(&b, "\nPLANTED BUGS: %+v", c.Knobs)
	}
	return b.String()
}

// ParsePeers reads a cluster's nodes given as "id=host:port" (ids above
// 0, each once): their addresses, and their ids in the order given.
func ParsePeers(list []string) (map[NodeID]string, []NodeID, error) {
	addrs := map[NodeID]string{}
	var ids []NodeID
	for _, p := range list {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		n, err := strconv.ParseUint(k, 10, 64)
		if !ok || err != nil || n == 0 || v == "" {
			return nil, nil, fmt.Errorf("bad peer %q (want id=host:port)", p)
		}
		if _, dup := addrs[NodeID(n)]; dup {
			return nil, nil, fmt.Errorf("peer %d named twice", n)
		}
		addrs[NodeID(n)] = v
		ids = append(ids, NodeID(n))
	}
	return addrs, ids, nil
}
