// Package cluster is the membership core of a Skybridge cluster: who is in
// the cluster, in which state, running which roles, reachable where.
// docs/CLUSTER.md describes the event model and the metadata format.
//
// # Contract
//
// Membership is a sans-I/O state machine. It never reads a clock, never
// starts a goroutine and never touches the network: a runtime turns what
// its failure detector learns into Events and calls Apply, one call at a
// time (it is not safe for concurrent use). The production runtime is
// impl/cluster/gossip (hashicorp/memberlist); a simulator can drive the same
// core on virtual time.
//
// Every Event is about one node and carries that node's Meta, whose
// Incarnation the node chose when it started: strictly higher on every
// restart of the same node id. Events about a node are ordered by
// (Incarnation, Seq), where Seq is the reporter's order of its reports
// about the node (the gossip runtime numbers them as memberlist emits them,
// after memberlist has resolved gossip's own precedence). Apply keeps, per
// node, the greatest report it has seen, so the final view does not depend
// on the order in which a set of reports arrives or on duplicates:
//
//   - a report older than the one kept (lower Incarnation, or the same
//     Incarnation and a lower Seq) is stale and ignored;
//   - the same report again changes nothing;
//   - two different reports with the same (Incarnation, Seq) are settled by
//     a fixed order (alive < suspect < dead < left, then the metadata), so
//     even a confused reporter converges;
//   - a higher Incarnation than the one kept is a restart: the Change says
//     Restarted, because the node lost everything it held in memory, whether
//     or not this observer saw it die;
//   - Left (the node said it was leaving) and Dead (it stopped answering)
//     are different states, and a dead node that answers again within the
//     same Incarnation (a healed partition) is alive again, not restarted.
//
// The local node is in the view from the start (NewMembership) and never
// leaves it; reports about it with another Incarnation (a second process
// with the same id) or saying it is suspect or dead are refused, since the
// process applying them is evidently running. Reports whose metadata names
// another cluster are refused. The number of members is bounded
// (Options.MaxMembers): when full, the longest-dead member is forgotten to
// make room, and if none is dead the report is refused and counted.
//
// View returns members sorted by id; its Version counts the changes this
// Membership applied, so it says "something changed since", and is not
// comparable between observers.
package cluster
