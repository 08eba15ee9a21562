// Package acl decides what an authenticated client may publish and
// subscribe to: ordered allow/deny rules per tenant, global rules, rules a
// client brings with it (a JWT's "acl" claim, a webhook answer), and a
// default.
//
// # Contract
//
// The package is pure: no I/O, no clock, no goroutines, no global mutable
// state, and no panic on any input (topics, filters and patterns are
// arbitrary bytes; invalid ones simply do not match). A *Rules is immutable
// once compiled and safe for concurrent use. A *Set is safe for concurrent
// use; Replace swaps its whole configuration atomically, so a check sees
// either the old rules or the new ones, never a mix.
//
// The broker calls CanPublish for every PUBLISH it accepts from a client
// (and for a will before storing it), and CanSubscribe for every topic
// filter of a SUBSCRIBE. Checks do not allocate (see BenchmarkSetPublish).
// The broker validates topics and filters (topic.ValidName, ValidFilter)
// before asking; what an invalid one matches here is unspecified but safe.
//
// # Rules
//
// A rule is {allow|deny, actions, topic patterns, optional users and client
// ids}. Actions are publish, subscribe and retain; retain is a publish with
// RETAIN 1, so a retained publish is checked against rules whose action is
// publish or retain, a plain publish only against publish rules. To forbid
// retained messages while allowing publishes, put "deny retain #" before
// the publish rules. A rule naming users (or client ids) applies only to
// clients whose user name (client id) is in its list.
//
// Evaluation: the client's own rules (Client.Extra) first, then its
// tenant's rules, then the global rules, in order; the first rule that
// applies decides. When none applies the Set's default decides (allow,
// or deny with DefaultDeny). Client.Extra comes first because it was issued
// for this one client by a trusted party (the signer of its token, the
// webhook); a token can be made exclusive (see Claim) so that what it does
// not grant is denied rather than left to the tenant rules.
//
// # Patterns
//
// A pattern is an MQTT topic filter ('+' one level, '#' the parent level
// and every level below, as the last level only) that may contain the
// substitutions %u (user name), %c (client id) and %t (tenant) anywhere in
// a level, and %% for a literal '%'. Matching follows MQTT: byte-exact, and
// a pattern whose first level is '+' or '#' does not match a topic that
// begins with '$' (so "#" does not cover "$SYS/..."; name "$SYS/#" to grant
// or deny it).
//
// Substituted values must not widen a rule. A value that is empty or
// contains '+', '#' or '/' (or U+0000) is unsafe: "users/%u/#" with user
// "a/b" would otherwise reach into user "a"'s tree, and user "#" would
// reach everyone's. An allow rule with an unsafe value never applies (it
// grants nothing). A deny rule with an unsafe value fails closed, since
// skipping it could let a later allow rule grant what it was written to
// forbid: it applies to the whole tree below its levels before the first
// substitution ("cmd/+/%c/x" denies "cmd/+/#"; "%u/x" denies everything).
// Anonymous clients have an empty user name, so %u rules grant them
// nothing.
//
// # Subscriptions
//
// A subscription is a filter, not a topic, so a rule applies to it by set
// reasoning over the topics each can match: an allow rule applies when
// every topic the filter can match is matched by the pattern ("a/+" is
// inside "a/#", "a/#" is not inside "a/+"); a deny rule applies when some
// topic could be matched by both ("#" meets "secret/#"). Together with
// first-match evaluation this is sound: a granted filter can only ever
// deliver topics that the same rules would have allowed one by one, so
// "deny subscribe secret/#" followed by "allow subscribe #" refuses a
// subscription to "#". A shared subscription "$share/g/f" is checked as f.
package acl
