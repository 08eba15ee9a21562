// Package clustersim runs the cluster's membership core (impl/cluster,
// the real Membership) on the deterministic simulator (package sim): its
// scheduler and its virtual network. Same seed, same run; a failure names
// the seed that replays it.
//
// # Contract
//
// clustersim is core code (impl/env/purity_test.go scans it): no wall
// clock, no global randomness, no goroutines, no os or net calls.
//
// A run: Nodes nodes; each keeps a connection to every other and sends a
// heartbeat (its id and its metadata: incarnation, roles, the leaving
// flag) every HeartbeatEvery, except to peers it reported dead (one every
// ReconnectEvery, as the gossip runtime's reconnect loop) or left (none:
// memberlist stops talking to dead members, and the runtime tries dead
// ones only, not left ones). A small failure detector per node stands in
// for memberlist: the first heartbeat of an incarnation is Joined, a peer
// unheard for SuspectAfter is Suspect and for DeadAfter Dead, a heartbeat
// with the leaving flag is Left, and a heartbeat after suspicion is
// Joined again; each report about a peer gets the next sequence number
// of this observer, as the gossip runtime numbers memberlist's reports.
// Faults, drawn from the seed: partitions of a minority (the network holds
// the bytes until healed, as TCP would), crashes and restarts (a new
// incarnation and a fresh Membership: a process forgets everything), and
// graceful leaves (some nodes come back later as a new incarnation). Then
// the faults stop, the network heals, every crashed node restarts, and
// the cluster is left quiet for Quiet.
//
// Checks (Result.Failures names each). During the run: no report the
// detector makes is refused or taken as stale (it numbers its own
// reports), a report of a higher incarnation applied says Restarted,
// versions never go back, a node's view of itself stays alive and local.
// At the end: every running node sees itself and every other running
// node alive at its current incarnation and no gone node alive; all
// running nodes see the same live members; for a node that left and did
// not return, every running node that knew it agrees on its state, and
// one whose detector reported the leave shows it left (heartbeats relay
// the leaves a node saw, as the gossip runtime's left set does).
package clustersim
