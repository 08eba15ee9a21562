package raftkv

import (
	"fmt"
	"reflect"
	"strings"
)

// Stats counts what a node did, including everything a bound refused or
// dropped. Counters only grow.
type Stats struct {
	Readies       uint64 // Ready rounds
	Syncs         uint64 // Ready rounds whose batch had to be synced (one fsync each)
	ReadyDeferred uint64 // replicas left for the next Ready by MaxReadyBytes

	Requests          uint64 // requests routed (client, forwarded, internal)
	RequestsForwarded uint64 // attempts sent to another node
	RequestsRefused   uint64 // refused: MaxPendingRequests
	Proposals         uint64 // raft entries proposed (each batches requests)
	ProposalsRefused  uint64 // refused: MaxInflightProposals
	ProposalsDropped  uint64 // raft refused a proposal (not leader, uncommitted bytes)
	ProposalsLost     uint64 // a proposal's log index went to another entry
	WritesApplied     uint64
	Reads             uint64
	ReadsRefused      uint64 // refused: MaxPendingReads

	RaftSent     uint64
	RaftReceived uint64
	RaftDropped  uint64 // messages for replicas that cannot exist here (tombstoned, bound)

	SnapshotsMade       uint64
	SnapshotsSent       uint64
	SnapshotsThrottled  uint64 // not sent: MaxSnapshotsOut
	SnapshotsFailed     uint64
	SnapshotsApplied    uint64
	SnapshotsRefused    uint64 // not taken: MaxSnapshotsIn, overlap with a newer local replica
	SnapshotKeysOutside uint64 // snapshot data outside its span, ignored

	Truncations uint64
	Splits      uint64
	Merges      uint64

	ConfProposed      uint64
	ConfChanges       uint64
	LeaderChanges     uint64
	LeaderTransfers   uint64
	DescsPublished    uint64
	NodesDeclaredDead uint64

	WatchesRefused uint64 // refused: MaxWatches
	WatchResets    uint64 // watch generations ended (a part lost events or went away)

	ReplicasRemoved      uint64
	ReplicasCollected    uint64
	UninitializedRefused uint64 // refused: MaxUninitialized
	StoreErrors          uint64
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats { return n.stats }

// Fields lists the counters as name=value, in declaration order.
func (s Stats) Fields() []string {
	v := reflect.ValueOf(s)
	t := v.Type()
	out := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		out = append(out, fmt.Sprintf("%s=%d", t.Field(i).Name, v.Field(i).Uint()))
	}
	return out
}

func (s Stats) String() string { return strings.Join(s.Fields(), " ") }

// Add adds o's counters into s (for cluster totals).
func (s *Stats) Add(o Stats) {
	v, w := reflect.ValueOf(s).Elem(), reflect.ValueOf(o)
	for i := range v.NumField() {
		v.Field(i).SetUint(v.Field(i).Uint() + w.Field(i).Uint())
	}
}
