// Package kvsim runs raftkv (impl/raftkv, the real core) on the
// deterministic simulator (package sim): its scheduler, its virtual
// network and a crashable in-memory disk per node. Same options and seed,
// same run, event for event (Result.Hash); a failure prints the command
// that replays it.
//
// # Contract
//
// kvsim is core code (impl/env/purity_test.go scans it): no wall clock, no
// global randomness, no goroutines, no os or net calls. Every choice draws
// from the run's seeded PCG; each node gets a Rand derived from it (raftkv
// campaigns from that Rand, never from raft's crypto/rand jitter, so the
// run is deterministic outside a test binary too). Pebble's own goroutines
// never reach the trace: only the logical, synced state does.
//
// A run: Nodes raftkv nodes (3 or 5) bootstrap a cluster; Clients clients
// on hosts of their own connect to random nodes and run a closed loop of
// gets, puts, deletes, compare-and-sets, scans of a small region, stale
// reads and bulk writes that make ranges split (and merge when deleted),
// recording every call and answer. Faults, drawn from the seed: message
// loss and duplication of raft messages (rates drawn per run) and
// reordering (two connections per peer, delayed independently); partitions
// of a minority; power loss of a node (unsynced writes may vanish) and its
// restart; disk stalls (fsyncs hang); one node replaced (gone for good,
// declared dead by an operator, a new node joins). Then the faults stop,
// every node comes back, each key is read once more, and the cluster must
// converge.
//
// Checks: the history of every single key is linearizable (Porcupine;
// get, put, delete, compare-and-set; an operation whose outcome the
// client never learned may take effect at any time after its call or
// never); the scanned region is linearizable as one map (every scan sees
// one instant of it); a stale read returns a value that was written; after
// the faults every range's replicas reach the leader's applied index with
// identical data; every key can be read within a minute; nothing panics.
package kvsim
