// Package topic holds the MQTT topic rules (MQTT 5.0 and 3.1.1 section 4.7,
// shared subscriptions 4.8.2), the subscription index the broker matches
// every PUBLISH against, and shared-subscription groups.
//
// # Contract
//
// The package is pure: no I/O, no clock, no goroutines, no global mutable
// state, and no panic on any input. Random picks draw from the caller's
// source; the only other randomness is the seed of each edge table's hash
// (hash/maphash), which, like a Go map's, never shows in a result.
//
// # What is validated where
//
// The codec (impl/packet) checks that topic strings are well-formed UTF-8
// without U+0000 and fit the two-byte length. ValidName and ValidFilter check
// the topic rules on top of that and check U+0000 and the length again,
// cheaply; their errors are *Error carrying packet.TopicNameInvalid (0x90)
// or packet.TopicFilterInvalid (0x8F). The broker validates before it calls
// the Trie: Subscribe, Unsubscribe and Match accept any bytes without
// panicking, but what an invalid filter or topic matches is unspecified.
// Policy on valid input (may a client publish to "$SYS/...", maximum levels
// per tenant with Levels) is the broker's.
//
// # Matching
//
// '+' matches exactly one level, empty levels included ("a/+" matches "a/");
// '#' matches its parent level and any number of levels below ("a/#"
// matches "a" and "a/b/c"); filters whose first level is a wildcard do not
// match topics starting with '$'. Comparison is byte-exact, with no
// normalisation. A shared subscription "$share/{name}/{filter}" lives in the
// Trie at its filter and is reported as its Group, once, with all its
// members; choosing the member that gets the message is Group.Pick's job.
//
// # Concurrency
//
// A Trie is not safe for concurrent use, with one exception: Match, and the
// methods of the Groups it returns (Len, AppendMembers, Pick), may run
// concurrently with each other. The broker holds a write lock for Subscribe
// and Unsubscribe and a read lock for Match and Pick. The only state those
// readers change is a group's round-robin cursor, which is atomic.
//
// # Determinism
//
// No Go map iteration order, and no hash seed, reaches a result.
// Subscriptions of a node and members of a group are kept in slices in
// insertion order, a removal moving the last entry into the hole; maps serve
// only to find a position when a list is long, and edge tables only to find
// an edge. So the order of Matches.Subs and Matches.Groups, and the member
// each policy picks, depend only on the sequence of calls (and on the
// caller's source for Random picks; on the interleaving of concurrent
// round-robin picks).
//
// # Ownership
//
// The Trie copies what it keeps of a filter (its levels, and a group's name
// and filter) and keeps no reference to the caller's bytes; Match results
// are values (Subscription) or trie-owned Groups, never aliases of the topic
// passed in. ParseShared returns sub-slices of its argument.
//
// # Cost
//
// On a large trie Match is bound by memory latency, not instructions, so
// the layout minimises the pointers it follows: an edge carries a run of
// exact levels (path compression), holds a label of up to 19 bytes inline
// and, for a leaf with one subscription, the subscription itself, in one
// 64-byte cache line; a node with many edges keeps them in an
// open-addressing table of edges; a node holds its first subscription
// inline. Match walks the topic's levels once and appends to the caller's
// reused Matches: no allocation in steady state. Filters are never stored
// whole, and Unsubscribe frees what is left empty and joins edges again,
// so churn does not grow the trie. bench_test.go measures all this.
package topic
