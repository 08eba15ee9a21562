package owner

import (
	"encoding/binary"
	"errors"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// keyTag starts every ownership key.
const keyTag = 'o'

// Key is the store key of a session's ownership record.
func Key(tenant, clientID string) []byte {
	k := make([]byte, 0, 2+len(tenant)+len(clientID)+binary.MaxVarintLen64)
	k = append(k, keyTag)
	k = binary.AppendUvarint(k, uint64(len(tenant)))
	k = append(k, tenant...)
	return append(k, clientID...)
}

// Record is a session's owner.
type Record struct {
	Node        string
	Incarnation uint64
	Epoch       uint64
}

var errRecord = errors.New("owner: bad record")

// Encode returns the record's stored form.
func (r Record) Encode() []byte {
	b := binary.AppendUvarint(nil, r.Incarnation)
	b = binary.AppendUvarint(b, r.Epoch)
	return append(b, r.Node...)
}

// Decode reads a stored record.
func Decode(b []byte) (Record, error) {
	inc, n := binary.Uvarint(b)
	if n <= 0 {
		return Record{}, errRecord
	}
	ep, m := binary.Uvarint(b[n:])
	if m <= 0 || len(b) == n+m {
		return Record{}, errRecord
	}
	return Record{Node: string(b[n+m:]), Incarnation: inc, Epoch: ep}, nil
}

// Kind is what an Action asks for.
type Kind uint8

const (
	Read Kind = iota + 1
	CAS
	Release
	Done
)

// Action is the next step of a claim.
type Action struct {
	Kind Kind
	// CAS: from Expect (nil: no record) to New.
	Expect *Record
	New    Record
	// Release: the owner to ask, and the epoch it owns at.
	Owner Record
	// Done: Owned, with Epoch, or refused with Code.
	Owned bool
	Epoch uint64
	Code  packet.ReasonCode
}

// DefaultMaxAttempts bounds the compare-and-sets one claim loses.
const DefaultMaxAttempts = 8

// Claim is one node's attempt to own a session (see the package
// contract). Its methods take the outcome of the last Action and return
// the next; calls out of turn return Done with 0x83 Implementation
// specific error.
type Claim struct {
	self     Record // node and incarnation (Epoch unused)
	alive    func(node string, incarnation uint64) bool
	max      int
	lost     int
	want     Kind
	cur      *Record
	pending  Record // the record the last CAS writes
	finished bool
}

// NewClaim starts a claim by node (at incarnation) and returns it with
// its first Action (a Read). alive says whether a node is alive at an
// incarnation (the caller's membership); maxAttempts 0 is the default.
func NewClaim(node string, incarnation uint64, alive func(node string, incarnation uint64) bool, maxAttempts int) (*Claim, Action) {
	if maxAttempts <= 0 {
		maxAttempts = DefaultMaxAttempts
	}
	c := &Claim{self: Record{Node: node, Incarnation: incarnation}, alive: alive, max: maxAttempts}
	return c, c.next(Read)
}

func (c *Claim) next(k Kind) Action {
	c.want = k
	return Action{Kind: k}
}

func (c *Claim) done(a Action) Action {
	c.finished, c.want = true, 0
	a.Kind = Done
	return a
}

func (c *Claim) outOfTurn(k Kind) (Action, bool) {
	if c.finished || c.want != k {
		return c.done(Action{Code: packet.ImplementationSpecificError}), true
	}
	return Action{}, false
}

// ReadDone takes the record read (nil: none) or the store's error.
func (c *Claim) ReadDone(cur *Record, err error) Action {
	if a, bad := c.outOfTurn(Read); bad {
		return a
	}
	if err != nil {
		return c.done(Action{Code: packet.ServerUnavailable})
	}
	return c.decide(cur)
}

// decide takes the record as it is now.
func (c *Claim) decide(cur *Record) Action {
	c.cur = cur
	switch {
	case cur == nil:
		return c.cas(nil, 1)
	case cur.Node == c.self.Node && cur.Incarnation == c.self.Incarnation:
		// Ours already (a takeover on this node): the broker ends the
		// old connection itself; a new epoch fences what it still writes.
		return c.cas(cur, cur.Epoch+1)
	case c.alive == nil || !c.alive(cur.Node, cur.Incarnation):
		// That process is gone, and its connection with it.
		return c.cas(cur, cur.Epoch+1)
	default:
		c.want = Release
		return Action{Kind: Release, Owner: *cur}
	}
}

func (c *Claim) cas(expect *Record, epoch uint64) Action {
	c.want = CAS
	n := c.self
	n.Epoch = epoch
	c.pending = n
	var e *Record
	if expect != nil {
		cp := *expect
		e = &cp
	}
	return Action{Kind: CAS, Expect: e, New: n}
}

// CASDone takes the compare-and-set's outcome: ok, or the record found
// instead (nil: none); or the store's error.
func (c *Claim) CASDone(ok bool, found *Record, err error) Action {
	if a, bad := c.outOfTurn(CAS); bad {
		return a
	}
	if err != nil {
		return c.done(Action{Code: packet.ServerUnavailable})
	}
	if ok {
		return c.done(Action{Owned: true, Epoch: c.pending.Epoch})
	}
	// Another claim got there first: start over from what it wrote.
	c.lost++
	if c.lost >= c.max {
		return c.done(Action{Code: packet.ServerBusy})
	}
	return c.decide(found)
}

// Released takes the owner's answer: it ended its connection and let go
// (ok), or it no longer owns the session at that epoch (the record moved
// on: read it again; this counts as a lost attempt).
func (c *Claim) Released(ok bool) Action {
	if a, bad := c.outOfTurn(Release); bad {
		return a
	}
	if !ok {
		c.lost++
		if c.lost >= c.max {
			return c.done(Action{Code: packet.ServerBusy})
		}
		return c.next(Read)
	}
	return c.cas(c.cur, c.cur.Epoch+1)
}

// Timeout: the owner did not answer. If it is no longer alive at its
// incarnation the session is taken; otherwise the claim gives up (0x88:
// the client tries again, by then the owner has answered or been
// declared dead).
func (c *Claim) Timeout() Action {
	if a, bad := c.outOfTurn(Release); bad {
		return a
	}
	if c.alive == nil || !c.alive(c.cur.Node, c.cur.Incarnation) {
		return c.cas(c.cur, c.cur.Epoch+1)
	}
	return c.done(Action{Code: packet.ServerUnavailable})
}

// Holder is a node's side: the sessions it owns, by key, at which epoch.
// Not safe for concurrent use.
type Holder struct {
	held map[string]uint64
}

// NewHolder returns an empty Holder.
func NewHolder() *Holder { return &Holder{held: map[string]uint64{}} }

// Hold records that this node owns key at epoch (a claim's Done).
func (h *Holder) Hold(key []byte, epoch uint64) { h.held[string(key)] = epoch }

// Drop forgets key (the session ended here).
func (h *Holder) Drop(key []byte) { delete(h.held, string(key)) }

// Release answers a Release for key at epoch: true when this node held it
// there, in which case it no longer does, and the caller must end the
// local connection before it answers.
func (h *Holder) Release(key []byte, epoch uint64) bool {
	if e, ok := h.held[string(key)]; ok && e == epoch {
		delete(h.held, string(key))
		return true
	}
	return false
}

// Holds reports the epoch at which this node owns key.
func (h *Holder) Holds(key []byte) (uint64, bool) {
	e, ok := h.held[string(key)]
	return e, ok
}
