// Package raftkv is a range-sharded, replicated key-value store: the key
// space is split into ranges, each range is one etcd raft group
// (go.etcd.io/raft/v3 RawNode) with its replicas on Replicas nodes, and all
// ranges of a node share one Pebble store. docs/RAFTKV.md describes the
// design, the key layout, what is linearizable and the bounds.
//
// # Contract
//
// A Node is a sans-I/O state machine like raft's RawNode. It reads and
// writes its Pebble store (on the env.FS it is given), but it never reads
// a clock, never starts a goroutine, never touches the network, and draws
// every random choice from its env.Rand. A runtime drives it from one
// goroutine (or holds a lock around every call):
//
//   - Tick at a fixed interval (the runtime's; 100 ms in production).
//     Every timeout is a number of ticks.
//   - Receive every Message another node sent it (after decoding), Submit
//     every client request.
//   - When HasReady: take Ready, commit its Batch (synced when Sync: it
//     holds raft log entries and votes, which must be durable before the
//     messages that follow are sent), then call Advance. Messages, ticks
//     and requests may arrive between Ready and Advance; only one Ready is
//     outstanding. Commits of successive Readies merge every range's log
//     writes into one synced batch (group commit across ranges).
//   - After every call, TakeOutput: send its Messages to their nodes (raft
//     messages may be lost, duplicated or reordered; requests and responses
//     should travel on a reliable, ordered stream), deliver its Replies.
//   - A MsgRaft with Snap set carries a raft snapshot: stream Snap's data
//     after the message (Next until empty), deliver it to the other node as
//     SnapData with the message, and call SnapshotDone with the outcome.
//
// Advance applies committed entries in a batch that is not synced: a power
// loss may lose applied state, never the log, and the node re-applies from
// the log on restart. Everything a node promises a client (a write's
// success, a linearizable read) rests only on synced state.
//
// Elections: raft draws its randomized election timeout from crypto/rand.
// Followers therefore never run raft's own election timer: they get
// TickQuiesced (which still ages raft's leader lease) and the node
// campaigns itself after a timeout drawn from its env.Rand, so a seeded
// simulation replays the same elections.
package raftkv
