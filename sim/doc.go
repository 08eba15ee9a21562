// Package sim is Skybridge's deterministic simulator: it runs the real
// broker core (impl/broker, not a model) through hostile histories on one
// thread, a virtual clock and a virtual network, and checks invariants
// during and at the end of every run. Same scenario and seed, same run,
// event for event (Result.Hash); a failure prints the command that replays it.
//
// # Contract
//
// sim is core code (impl/env/purity_test.go scans it): no wall clock, no
// global randomness, no os or net calls, no goroutines in non-test files.
// Everything random derives from one seeded PCG (Sim.Rand, env.NewRand);
// processes get sources derived from it. Go map order never reaches the
// trace or a result: maps serve lookups only, iteration is over slices.
// Porcupine's checker runs goroutines inside the library and joins them;
// its verdict depends only on the history.
//
//   - Sim: events ordered by virtual time, then scheduling sequence; the
//     clock jumps to the next event. Clock is a process's env.Clock: its
//     AfterFunc timers are simulation events, and Kill cancels them all when
//     the process crashes.
//   - Network: hosts, per-link latency (base, jitter, spikes), bandwidth,
//     receive windows, connection resets, half-open connections and
//     partitions (bytes held until heal, as TCP retransmission would). Bytes
//     of one connection arrive in order (sequence numbers, reassembly);
//     different connections are delayed independently.
//   - BrokerProc: the runtime impl/server is, on the virtual network:
//     packet.Reader framing, Conn.Handle per packet, a flush after each batch
//     or wake (wake only schedules an event), Output drained while the send
//     buffer takes it, the read deadline (connect timeout, then 1.5x keep
//     alive), the write timeout, Fail on *packet.Error, Closed exactly once.
//     Crash resets its connections and drops the in-memory broker; Restart
//     starts a fresh one.
//   - Client: a good MQTT 3.1.1 / 5.0 client on impl/packet (acks,
//     retransmission with DUP, QoS 2 dedup by packet id, keep alive).
//     Workloads drive clients; monitors (one per tenant, on the broker host)
//     watch wills and probe the retained store.
//   - Oracle: records what clients did and saw and what the runtime saw, and
//     checks the invariants (see Invariant). Histories of the retained store
//     and of each session's subscriptions are checked with Porcupine.
//   - Scenario: hosts, processes, links, workloads, faults, checks, as a Go
//     value; Run(scenario, seed) → Result.
//
// # What an in-memory broker may lose
//
// A crash of the in-memory broker loses its sessions, queues and retained
// messages. The oracle models the broker-side session: a CONNECT that finds
// no session starts a new incarnation even when the client never hears of
// it (its CONNACK lost with the connection, a later CONNECT then finds the
// new, empty session present). Messages of an ended incarnation are not
// required; a QoS 2 message resent into a new session may be routed twice.
// Once storage lands, a crash of a durable broker must lose nothing
// acknowledged: the process kind will say which rule applies.
//
// # Later: disk, cluster, edge
//
// Processes are named in the scenario (ProcessSpec); a host crash is
// Host.Crash, a process crash BrokerProc.Crash. Two traps are known:
//
// etcd raft (go.etcd.io/raft/v3 v3.7.0) draws its randomized election
// timeout from crypto/rand (raft.go, globalRand). testing/cryptotest.
// SetGlobalRandom makes that deterministic, but only inside a test binary
// (raft_test.go does it, seeded from the simulation seed, and checks that
// the same seed elects the same leader at the same virtual time in the
// same term). skybridge-sim is not a test binary, so the raft processes of
// the cluster work must not depend on raft's jitter: raftkv will run its
// RawNodes with a large ElectionTick and call Campaign itself after a
// randomized number of ticks drawn from the process's env.Rand (raft's own
// jitter then only delays elections that our timer already started), or
// raft gets a PreVote-style patch point for the jitter upstream. The
// fallback that needs no change is to run sweeps as `go test ./sim -run
// TestSweep -seeds ...` (a test binary, where SetGlobalRandom is allowed);
// skybridge-sim refuses scenarios with raft processes until one of these
// is in place.
//
// Pebble runs background goroutines (flushes, compactions, table stats).
// The simulated store keeps them out of the trace: Pebble on
// vfs.NewCrashableMem, automatic compactions disabled (impl/store
// Options.DisableCompactions), commits applied by the store's Step as a
// simulation event, and only the logical, synced state (what a reader sees
// after a sync) feeds the broker, the oracle and the trace: never file
// sizes, LSM shapes, timings or background-job counters. A crash takes
// CrashClone of the synced state; power loss drops unsynced writes.
package sim
