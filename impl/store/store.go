// Package store is the broker's durable state: persistent sessions, their
// subscriptions, queued and in-flight messages, QoS 2 packet identifiers
// awaiting PUBREL, wills with their deadlines, and retained messages.
//
// # Contract
//
// The broker describes every change as an Op and hands a Batch of them to
// Store.Commit. Commit returns at once; done is called once the batch is
// durable (synced), in submission order, from the store's committer (a
// goroutine the runtime starts with Run, or the simulator's Step). Batches
// submitted while a sync is in progress are merged into the next one: this
// is the group commit that keeps durability from costing one fsync per
// message. The broker sends no acknowledgement that promises durability
// before done has been called.
//
// Load visits the whole state at start-up, in key order.
//
// Memory is a Store that keeps nothing (every Commit is done at once): the
// broker's state then lives only in its memory, as with `storage: memory`.
// Pebble keeps the state on disk through an env.FS; see docs/STORAGE.md for
// the key schema.
//
// Messages in Ops are owned (message.Message.Own) and never modified.
package store

import (
	"errors"
	"time"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// OpKind says what an Op does.
type OpKind uint8

// Op kinds.
const (
	PutSession     OpKind = iota + 1 // create or replace a session record
	DeleteSession                    // delete a session and everything under it
	PutSub                           // add or replace a subscription
	DeleteSub                        // remove a subscription
	PutDelivery                      // add or update a message in a session's queue
	DeleteDelivery                   // a delivery is complete (or dropped)
	PutInbound                       // a QoS 2 packet id received, PUBREL not yet
	DeleteInbound                    // its PUBREL arrived
	PutRetained                      // make a message the retained one of its topic
	DeleteRetained                   // remove the retained message of a topic
)

// Op is one change. Tenant and ClientID name the session (Tenant and the
// message's topic name a retained message).
type Op struct {
	Kind     OpKind
	Tenant   string
	ClientID string
	Session  *SessionRecord // PutSession
	Filter   string         // PutSub, DeleteSub
	Options  topic.Options  // PutSub
	// Delivery is the entry of a PutDelivery; a DeleteDelivery may carry
	// the record of the entry's last PutDelivery, so that the store can
	// tell the two belong together.
	Delivery *DeliveryRecord
	// Fresh marks the PutDelivery that creates an entry. A fresh entry
	// deleted within the same group commit is never written at all.
	Fresh   bool
	Seq     uint64 // DeleteDelivery
	PID     uint16 // PutInbound, DeleteInbound
	Message *message.Message

	// Epoch is the incarnation of the session whose journal the op comes
	// from (nil for ops of no session). A DeleteSession ends it, and the
	// store does not write the incarnation's ops that come after: ops
	// taken from a session's journal into a batch that commits late (the
	// batch of a publisher's PUBLISHes) could otherwise land after the
	// session was discarded, under the key prefix a new session of the
	// same client uses.
	Epoch *Epoch

	skip bool // the committer's mark: not written (see Pebble.findCancelled)
}

// Epoch is one incarnation of a session in the store (Op.Epoch).
type Epoch struct{ ended bool }

// Ended reports whether the store has written the DeleteSession that ends
// this incarnation (the simulator's model of the disk follows the store).
func (e *Epoch) Ended() bool { return e != nil && e.ended }

// SessionRecord is what survives of a session besides its queue and
// subscriptions.
type SessionRecord struct {
	Version byte
	// Expiry is the Session Expiry Interval in seconds (MaxUint32: never).
	Expiry uint32
	// OfflineSince is when the session lost its connection; zero while
	// connected. Expiry and will delay count from it, also across restarts.
	OfflineSince time.Time
	Will         *message.Message
	// WillDelay is the Will Delay Interval in seconds.
	WillDelay uint32
	// Owner is the user name of the identity the session belongs to;
	// OwnerKnown is false in records written before owners were kept.
	Owner      string
	OwnerKnown bool
}

// Delivery states that are stored. Whether a queued message was already
// sent is not: after a restart every unacknowledged message goes again,
// with DUP set.
const (
	Queued   = 0 // PUBLISH to send (again)
	Released = 2 // PUBREC received and PUBREL sent, PUBCOMP awaited
)

// DeliveryRecord is one message in a session's queue.
type DeliveryRecord struct {
	Seq    uint64 // order within the session's queue
	PID    uint16 // packet identifier, fixed when the message was queued
	QoS    byte
	Retain bool
	State  uint8
	SubIDs []uint32
	// Msg is the message, nil once released. A record the broker journals
	// holds a reference to it (message.Message.Ref) until the batch that
	// puts it has been committed (Batch.ReleaseMessages).
	Msg *message.Message

	// The committer's mark of the entry's fresh put in the group being
	// written (see Pebble.findCancelled).
	group uint64
	put   *Op
	// removed: a DeleteDelivery carrying this record has been written.
	// A queue entry's removal can reach the store before the entry: a
	// QoS 1 PUBLISH goes to a connected subscriber at once, and its
	// acknowledgement may be committed before the publisher's batch that
	// holds the entry. The entry is then not written at all (it would
	// come back after a restart and never be removed).
	removed bool
}

// Removed reports whether the store has written the removal of this
// entry, after which its put is not written (the simulator's model of the
// disk follows the store).
func (r *DeliveryRecord) Removed() bool { return r.removed }

// Batch is a set of Ops committed atomically.
type Batch struct {
	Ops []Op
}

// Add appends ops.
func (b *Batch) Add(ops ...Op) { b.Ops = append(b.Ops, ops...) }

// ReleaseMessages gives back the message references that the batch's queue
// entries hold, once the store is done with the batch (its done has run):
// a message shared with subscribers may then return to its pool.
func (b *Batch) ReleaseMessages() {
	for i := range b.Ops {
		if op := &b.Ops[i]; op.Kind == PutDelivery && op.Delivery != nil && op.Delivery.Msg != nil {
			op.Delivery.Msg.Release()
		}
	}
}

// Empty reports whether the batch holds nothing.
func (b *Batch) Empty() bool { return b == nil || len(b.Ops) == 0 }

// Store keeps the broker's durable state.
type Store interface {
	// Commit makes b durable and then calls done (with the error, if any),
	// never before; batches complete in submission order. The store keeps
	// nothing of b once done has run: the caller reuses it.
	Commit(b *Batch, done func(error))
	// Load visits the stored state in key order.
	Load(v Visitor) error
	// Close flushes and closes the store.
	Close() error
}

// Visitor receives the stored state from Load.
type Visitor interface {
	Session(tenant, clientID string, r *SessionRecord) error
	Sub(tenant, clientID, filter string, o topic.Options) error
	Delivery(tenant, clientID string, d *DeliveryRecord) error
	Inbound(tenant, clientID string, pid uint16) error
	Retained(tenant string, m *message.Message) error
}

// Memory is a Store that keeps nothing: Commit completes at once.
type Memory struct{}

// Commit implements Store.
func (Memory) Commit(_ *Batch, done func(error)) {
	if done != nil {
		done(nil)
	}
}

// Load implements Store.
func (Memory) Load(Visitor) error { return nil }

// Close implements Store.
func (Memory) Close() error { return nil }

// ErrFormat reports a data directory written by an incompatible version.
var ErrFormat = errors.New("store: incompatible data format")

// ErrCorrupt reports a record that cannot be decoded.
var ErrCorrupt = errors.New("store: corrupt record")
