// Package router is the runtime that joins a broker to the other nodes of
// its cluster (docs/CLUSTER.md): it implements broker.Cluster.
//
//   - Routes: the broker says when this node gains its first subscription
//     to a filter or loses its last; the router writes or deletes the
//     route key (impl/cluster/routes) in raftkv, in the background, the
//     latest state of each key winning.
//   - Matching: a publish is matched against routes.Cache, which holds the
//     key prefixes this node's publishes needed; the router watches each
//     prefix in raftkv, scans it on every Reset and feeds the cache. A
//     publish whose prefixes are not loaded yet waits for them, bounded by
//     Config.LoadTimeout.
//   - Forwarding: one forward link (impl/forward/transport) per destination
//     node, dialled at the address its gossip metadata advertises; a
//     message crosses the network once per node. A QoS 1/2 message's
//     done callback runs when every destination acknowledged it, or with
//     an error when one refused it, left or died.
//   - Receiving: a forward listener hands each message to Config.Deliver
//     (the broker's DeliverForwarded), with the audience its sender chose.
//   - Tenant connection counts: this node's count per tenant is written
//     to raftkv in the background, and the other nodes' are followed by a
//     watch, for the broker's max_connections check (connections.go).
//
// It is a runtime, not a core: goroutines, sockets and the wall clock
// live here (impl/env's purity check lists it). Its goroutines: one per
// route writer (Config.Writers), one per watched prefix, one following
// the retained messages, one following the connection counts, one per
// release request another node makes (sessions.go), the forward links'
// own. The broker's waits on it (a
// publish's routes, a SUBACK's confirmations, a CONNECT's claim) block
// only the connection that waits, each bounded.
package router
