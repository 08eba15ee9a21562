// Package owner decides which node owns a session, (tenant, client id),
// in a cluster: the record lives in the replicated store (impl/raftkv)
// and changes only by compare-and-set. It is a sans-I/O core: Claim says
// what to read, what to compare-and-set and whom to ask to let go; the
// runtime does it and reports back. docs/CLUSTER.md ("Session
// ownership") has the design.
//
// # Contract
//
// A Record names the owning node, that node's incarnation and an epoch
// that grows with every change of owner: a fencing token. Whatever the
// owner writes for the session (its inbox, its in-flight state) carries
// the epoch, and the store takes it only while the record still has it,
// so an owner that lost the session (it was declared dead while merely
// cut off) cannot overwrite its successor's state.
//
// A node that accepts a CONNECT makes a Claim and carries out its
// Actions one at a time:
//
//   - Read: get the record (linearizably), then ReadDone.
//   - CAS: compare-and-set the record from Expect (nil: absent) to New,
//     then CASDone with the outcome and the record found.
//   - Release: ask the owning node to end its connection to the session
//     and hand it over ("a takeover on another node ends the old
//     connection first"), then Released when it answers, or Timeout.
//   - Done: the claim ended: Owned with the epoch to fence with, or
//     refused with the reason code for the CONNACK.
//
// A record whose node is not alive at that incarnation (alive is the
// caller's view of membership: dead, left, or restarted since) is taken
// without asking: that process is gone, and so is its connection. A
// claim that loses MaxAttempts compare-and-sets to other claims gives up
// with 0x89 Server busy; a store error ends it with 0x88 Server
// unavailable.
//
// Holder is the owning side: asked to release a session at an epoch, it
// says whether it still holds it there, so that the caller ends the
// local connection before answering.
package owner
