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
//     or wake (wake only schedules an event), Conn.Idle as an event of its
//     own up to 1 ms after a batch (other connections' events fall inside
//     it, as goroutines do on the server), Output drained while the send
//     buffer takes it, the read deadline (connect timeout, then 1.5x keep
//     alive), the write timeout, Fail on *packet.Error, Closed exactly once.
//     It also watches the broker's outbound flow on each connection: no
//     more QoS 1/2 PUBLISHes in flight than the client's Receive Maximum,
//     never packet id 0 or one still in flight (flow-control).
//     Crash resets its connections and drops the broker; Restart starts a
//     fresh one. The durable broker (BrokerSpec.Durable, the default) keeps
//     its Pebble store on a crashable in-memory disk of its host, and the
//     simulator is the store's committer (below); a crash is a power loss
//     and the restarted broker Recovers from the disk. A panic of the broker
//     core is a failure (no-panic), not the end of the sweep.
//   - Client: a good MQTT 3.1.1 / 5.0 client on impl/packet (acks,
//     retransmission with DUP, QoS 2 dedup by packet id, keep alive). It
//     keeps to what the broker announced (Receive Maximum, Maximum QoS; a
//     3.1.1 client knows its tenant's maximum, as a configured device
//     does), and allocates packet ids counting up, from just below the
//     wrap, or reusing the lowest free one. A DISCONNECT from the broker
//     other than a takeover is a protocol failure.
//   - Workloads drive clients over the whole topic space: parent levels
//     ("t/1", which "t/1/#" matches), '$' topics ("$d/1", which no filter
//     starting with a wildcard matches, some retained), topics under the
//     ACL's rules, four-level topics beyond a tight tenant's limit, '#';
//     pipelined UNSUBSCRIBE and SUBSCRIBE of one filter; long absences
//     (sessions expire, delayed wills go, some delayed beyond their
//     session's end); slow readers; small Receive Maximums. In a third of
//     the runs a firehose (firehose.go) makes one session's packet ids
//     wrap. Monitors (one per tenant, on the broker host) watch wills and
//     probe the retained store.
//   - Tenants (tenants.go): the standard scenario's acme has deny rules
//     (an ACL), globex tight settings (QoS 1, three topic levels, sessions
//     of at most 20 s, Receive Maximum 8), served by a settings provider.
//     The oracle derives what they require from the spec, not from the
//     broker: its own filter overlap for the deny rules.
//   - Oracle: records what clients did and saw and what the runtime saw, and
//     checks the invariants (see Invariant). Histories of the retained store
//     and of each session's subscriptions are checked with Porcupine. Among
//     them (oracle_rules.go): no delivery, live or retained, above the QoS
//     granted to a matching subscription (granted-qos); what the ACL denies
//     is refused (0x87 to a 5.0 publisher) and delivered to nobody, what it
//     allows is never refused (authorization); the CONNACK announces the
//     tenant's Maximum QoS, Receive Maximum and capped Session Expiry, a
//     SUBSCRIBE is granted min(asked, tenant maximum) and refused beyond
//     the topic limits, a PUBLISH beyond them refused (tenant-settings).
//   - Scenario: hosts, processes, links, workloads, faults, checks, as a Go
//     value; Run(scenario, seed) → Result.
//
// # Checking the checker
//
// Planted bugs (bugs.go) are faults of the runtime or hooks the broker
// offers for the purpose; mutants (mutants.go) are real source mutations
// of the broker core. TestMutants builds skybridge-sim once per mutant with
// the mutated file laid over the original (go build -overlay: the file is
// never touched; the build cache keeps each build), runs seeds until one
// fails, and requires an invariant the mutant expects on a seed that
// passes unmutated. A mutant whose original snippet no longer occurs once
// in its file fails the test, so the list follows the code. The
// regression list (TestRegressions) keeps the seeds that found bugs; a
// seed's history changes with any change to the simulator's draws, so a
// bug also gets a test in the package it was fixed in.
//
// # What a crash may lose
//
// A crash of the in-memory broker loses its sessions, queues and retained
// messages. The oracle models the broker-side session: a CONNECT that finds
// no session starts a new incarnation even when the client never hears of
// it (its CONNACK lost with the connection, a later CONNECT then finds the
// new, empty session present). Messages of an ended incarnation are not
// required; a QoS 2 message resent into a new session may be routed twice.
//
// A durable broker loses only what was not synced. The disk keeps exactly
// the batches whose group commit completed, and the oracle keeps their
// logical content as the shadow (durable.go). At a restart it checks the
// broker's promises against it (durable-state): a client holding a CONNACK
// of a persistent session finds that session on disk, not an older one;
// acknowledged subscription changes are there; and the restarted broker
// holds exactly the shadow (sessions, subscriptions, queue lengths,
// retained messages). The model then goes on from the disk: a persistent
// session on disk keeps its incarnation, and with it every requirement
// (an acknowledged QoS 1/2 message reaches every persistent session that
// matched it, at least once, QoS 2 exactly once, in order, across any
// number of crashes); its subscription history gets the disk's state at
// the crash; wills on disk are armed as Recover does (from the session's
// offline instant, or from the restart for a session that was connected);
// the retained history gets the disk's value, which must be one the
// publishes allow (acknowledged ones are durable; see regState). Sessions
// not on disk are gone, legitimately for clean sessions (expiry 0).
//
// The excuses are few and each is counted (Result.Excused):
//
//   - Queue: a message the broker itself counted as dropped for that
//     session's full queue (SessionInfo.Dropped.QueueFull, read before each
//     packet the runtime hands over and after each PUBLISH is routed; a
//     drop counted outside a PUBLISH, such as deliveries parked on a slow
//     subscriber dropped when their wait ends, takes the session's most
//     recent deliveries that the client never received live, matched at
//     the end of the run: oracle_durable.go).
//   - Held: at the end, a message still queued for the session on disk
//     (a slow reader still draining). The end of a run first waits, up to
//     two minutes, until no connected client's session holds messages.
//   - Stale: a message the good client took for a QoS 2 duplicate because
//     it held the packet id from another session (a CONNACK with Session
//     Present 0 was lost, the next CONNECT found the new session present).
//     Within one session that is the broker reusing a packet id in use, a
//     protocol failure.
//   - Crash: a session a crash brought back although the client's state
//     belongs to another one (its clean start was not yet durable, or it
//     discarded its state): that incarnation is lenient. What the crashed
//     broker wrote on the client's old connection and a partition held
//     until after the restart is judged against the old session.
//
// A transmission the broker may never have read is an operation that may
// not have happened (Porcupine's nondeterministic models): a retained
// publish whose connection ended before its acknowledgement, an
// unacknowledged SUBSCRIBE or UNSUBSCRIBE. A retransmitted QoS 1 retained
// publish may take effect twice.
//
// # Later: cluster, edge
//
// Processes are named in the scenario (ProcessSpec); a host crash is
// Host.Crash, a process crash BrokerProc.Crash. One trap is known (Pebble's
// are in the next section):
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
// # Pebble in a deterministic simulation
//
// Pebble runs goroutines of its own (the WAL writer, memtable flushes,
// obsolete-file deletion). Determinism holds because nothing of theirs
// reaches the trace; only the logical, synced state does:
//
//   - Pebble runs on vfs.NewCrashableMem with automatic compactions off
//     (impl/store Options.DisableCompactions); the disk's free space is
//     never consulted (MemFS reports it unsupported, so the store never
//     refuses a commit).
//   - The store's committer is the simulator: after a broker call submits a
//     batch, a commit event is scheduled one fsync latency later (0.5 to
//     5 ms, drawn from the seed); it calls Step, never Run. Step returns
//     once the group is synced, so the broker's callbacks run inside that
//     event, in submission order. Batches still waiting at a power loss are
//     lost; the process's callbacks die with it.
//   - The disk fault (--faults disk) stalls the disk for 0.1 to 3 s: every
//     fsync of the window, including one already under way, completes
//     only when it ends, while the broker keeps taking batches (they join
//     the group commit that ends the stall). What waits for durability
//     (acknowledgements, output gated on a commit, wills to persistent
//     sessions) waits with it; the will-timing check allows for the stall.
//   - A crash is a power loss: CrashClone of the disk. Half the crashes keep
//     no unsynced data, the others keep each unsynced block or directory
//     entry with a probability drawn from the seed, from an RNG seeded from
//     the run. Whatever the clone keeps of unsynced data, Pebble's recovery
//     yields the synced state, which is all the broker reads (Load).
//   - The broker, the oracle and the trace see only that logical state:
//     never file names or sizes, LSM shapes, timings or Pebble's metrics.
//     TestDeterminism runs seeds with power losses of both kinds twice at
//     the same time and requires identical traces.
//
// Two facts found on the way. First, CrashClone is not a function of its
// RNG: it draws for unsynced children and blocks while ranging over Go maps
// (pebble v2.1.7 vfs/mem_fs.go, memNode.CrashClone), so with unsynced data
// two clones with the same seed differ physically. It does not matter here
// (at the simulator's crash points the disk normally holds no unsynced
// data at all: the WAL is synced by every Step; only a background flush in
// progress leaves some), and the logical state is the same either way.
// Second, with compactions off every open flushes the replayed WAL into
// one more level-0 table over the same keys, and at L0StopWritesThreshold
// (12) read amplification Pebble stops every write until a compaction that
// never comes: Step blocks inside Batch.Commit (maybeInduceWriteStall) and
// the simulation hangs, after about 17 power losses in one run. Until
// impl/store offers a compaction the simulator can run as an event, a
// restart that finds maxTables tables compacts logically: it reads the
// recovered store and writes its content into a store on a fresh disk
// (durable.go compactDisk).
package sim
