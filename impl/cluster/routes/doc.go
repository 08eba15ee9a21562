// Package routes keeps a cluster's subscription routes in the replicated
// store (impl/raftkv) and the part of them a node needs in a local cache.
// It is a sans-I/O core: it encodes keys, says which key prefixes a
// publish must read, and applies what the store returns; the runtime does
// the reading and watching. docs/CLUSTER.md ("Routes") has the design.
//
// # Keys
//
// A route says "node N has subscriptions to filter F in tenant T" (for a
// shared subscription, "members of group G"): one key per (tenant, filter,
// group, node), whose value is how many of N's sessions hold it. The key
// starts with the tenant and the filter's first level:
//
//	'r' | uvarint(len(tenant)) | tenant | level0 | 0x00 | rest | 0x00 | group | 0x00 | node
//
// where level0 is the filter's first level and rest the remainder ("" or
// "/..."). MQTT forbids U+0000 in topics and filters [MQTT-4.7.3-2], and
// node ids and group names may not hold it either, so the separators are
// unambiguous. A publish to topic t can only match filters whose first
// level is t's own, '+' or '#' (neither for a topic starting with '$',
// [MQTT-4.7.2-1]): Prefixes gives those (at most three) key prefixes, so
// a publish reads the ranges that can hold matching filters and no
// others, and routes are never copied to every node.
//
// # Cache
//
// Cache holds the routes of the prefixes a node has asked for, each as
// the store's watch contract (impl/raftkv, watch.go) allows: after a
// Reset, events are buffered while the runtime scans the prefix; Loaded
// installs the scan and replays the buffer; later events apply in order.
// A prefix is Ready only then, and Match reports whether every prefix it
// needed was: the runtime waits (or scans) before it trusts an answer
// with a prefix not ready. The number of prefixes cached and of events
// buffered per prefix are bounded; what is evicted or overflows is
// counted, and an overflowing prefix goes back to loading.
//
// Match answers with nodes, not sessions: a message crosses the network
// once per destination node, which matches it against its own sessions.
// A shared group's message goes to one node holding members of the group,
// chosen round robin among the nodes the caller accepts (live ones).
//
// Not safe for concurrent use: the runtime serialises calls.
package routes
