package topic

import (
	"strconv"
	"sync/atomic"
)

// Group is a shared subscription group "$share/{name}/{filter}". A group is
// identified by its name and its filter: $share/g/a and $share/g/b are two
// groups. It exists while it has members; the Trie frees it when the last
// one unsubscribes, and a later subscription makes a new Group.
//
// Name and Filter are safe at any time. Len, AppendMembers and Pick read the
// membership and follow the rule of Match: concurrently with each other and
// with Match, not with Subscribe or Unsubscribe.
type Group struct {
	name, filter string
	members      subList
	cursor       atomic.Uint64 // round-robin position; Pick runs under a read lock
}

// Name returns the share name.
func (g *Group) Name() string { return g.name }

// Filter returns the topic filter after the share name ("a/b" for
// "$share/g/a/b").
func (g *Group) Filter() string { return g.filter }

// Len returns the number of members.
func (g *Group) Len() int { return g.members.len() }

// AppendMembers appends the members to dst, in the order Pick indexes them.
func (g *Group) AppendMembers(dst []Subscription) []Subscription {
	return append(dst, g.members.s...)
}

// Policy chooses which member of a shared group receives a message.
type Policy uint8

const (
	// RoundRobin cycles through the members with an atomic cursor. When
	// ok skips members, the cursor moves past the one chosen, so acceptable
	// members still take turns evenly.
	RoundRobin Policy = iota
	// Random starts from r.IntN(members).
	Random
	// Sticky starts from a member chosen by key (e.g. a hash of the
	// publisher's client identifier) with jump consistent hashing: the same
	// key picks the same member while membership is unchanged, and a join
	// or leave moves only about 1/n (join) or 2/n (leave) of the keys.
	Sticky
)

// String returns the policy's name.
func (p Policy) String() string {
	switch p {
	case RoundRobin:
		return "round-robin"
	case Random:
		return "random"
	case Sticky:
		return "sticky"
	}
	return "Policy(" + strconv.Itoa(int(p)) + ")"
}

// Pick chooses one member. The policy gives a starting member; Pick returns
// the first member from there on (wrapping around) that ok accepts, or false
// when ok accepts none or the group is empty. ok nil accepts every member.
// key is used by Sticky only, r by Random only; a Random pick with r nil,
// and an unknown policy, behave as RoundRobin.
func (g *Group) Pick(p Policy, key uint64, r interface{ IntN(int) int }, ok func(SubscriberID) bool) (Subscription, bool) {
	members := g.members.s
	n := len(members)
	if n == 0 {
		return Subscription{}, false
	}
	var start int
	var cur uint64 // the cursor value this pick took, for RoundRobin
	switch {
	case p == Sticky:
		start = jumpHash(key, n)
	case p == Random && r != nil:
		start = int(uint(r.IntN(n)) % uint(n)) // a misbehaving r cannot index out of range
	default:
		p = RoundRobin
		cur = g.cursor.Add(1) - 1
		start = int(cur % uint64(n))
	}
	if ok == nil {
		return members[start], true
	}
	for i := range n {
		j := start + i
		if j >= n {
			j -= n
		}
		if ok(members[j].Subscriber) {
			if p == RoundRobin && i > 0 {
				// Continue after the member chosen, unless another Pick
				// has moved the cursor meanwhile.
				g.cursor.CompareAndSwap(cur+1, cur+1+uint64(i))
			}
			return members[j], true
		}
	}
	return Subscription{}, false
}

// jumpHash maps key to a bucket in [0, n) (Lamping and Veach, "A Fast,
// Minimal Memory, Consistent Hash Algorithm", 2014), in integer arithmetic
// so that every architecture computes the same bucket.
func jumpHash(key uint64, n int) int {
	var b, j uint64 = 0, 0
	for j < uint64(n) {
		b = j
		key = key*2862933555777941757 + 1
		j = (b + 1) << 31 / ((key >> 33) + 1)
	}
	return int(b)
}
