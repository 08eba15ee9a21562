package router

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/skybridge-mq/skybridge/impl/cluster"
	"github.com/skybridge-mq/skybridge/impl/cluster/owner"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// Session ownership (docs/CLUSTER.md, "Session ownership"): a CONNECT
// claims its (tenant, client id) in raftkv by compare-and-set
// (impl/cluster/owner); a live owner on another node is asked to let go
// first, and ends its connection and its session before it answers. The
// question and the answer are control records on the forward links, like
// the SUBACK guarantee's.
var (
	topicRelease  = []byte("release")
	topicReleased = []byte("released")
)

// An owner's answers to a release request.
const (
	answerNotMine  = 0 // it holds the session at a newer epoch
	answerReleased = 1 // it ended the session (or had none)
	answerRefused  = 2 // the session is another user's, and stays
)

// releaseWait bounds how long a claim waits for an owner's answer.
const releaseWait = 3 * time.Second

// ClaimSession implements broker.Cluster: it makes this node the owner of
// the session, ending it on the node that owned it. It returns 0 when
// owned, else the CONNACK's reason code.
func (r *Router) ClaimSession(tenant, clientID, user string) packet.ReasonCode {
	key := owner.Key(tenant, clientID)
	ctx, cancel := context.WithTimeout(r.ctx, 3*releaseWait)
	defer cancel()
	claim, act := owner.NewClaim(r.cfg.Self, r.cfg.Incarnation, r.aliveAt, 0)
	for {
		switch act.Kind {
		case owner.Read:
			v, found, err := r.cfg.KV.Get(ctx, key)
			act = claim.ReadDone(decodeRecord(v, found, &err), err)
		case owner.CAS:
			var expect []byte
			if act.Expect != nil {
				expect = act.Expect.Encode()
			}
			ok, cur, err := r.cfg.KV.CompareAndSet(ctx, key, expect, act.New.Encode())
			act = claim.CASDone(ok, decodeRecord(cur, cur != nil, &err), err)
		case owner.Release:
			answer, err := r.askRelease(ctx, act.Owner, tenant, clientID, user)
			switch {
			case err != nil:
				act = claim.Timeout()
			case answer == answerRefused:
				// Another user's session, which the owner keeps.
				r.claimsRefused.Add(1)
				return packet.NotAuthorized
			default:
				act = claim.Released(answer == answerReleased)
			}
		case owner.Done:
			if !act.Owned {
				r.claimsRefused.Add(1)
				return act.Code
			}
			r.mu.Lock()
			r.holder.Hold(key, act.Epoch)
			r.mu.Unlock()
			r.claims.Add(1)
			return packet.Success
		default:
			return packet.ImplementationSpecificError
		}
	}
}

func decodeRecord(b []byte, found bool, err *error) *owner.Record {
	if !found || *err != nil {
		return nil
	}
	rec, derr := owner.Decode(b)
	if derr != nil {
		*err = derr
		return nil
	}
	return &rec
}

// aliveAt reports whether node runs at incarnation, as far as this node
// knows.
func (r *Router) aliveAt(node string, incarnation uint64) bool {
	if node == r.cfg.Self {
		return incarnation == r.cfg.Incarnation
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.members[node]
	return ok && m.State == cluster.StateAlive && m.Incarnation == incarnation
}

var errNoAnswer = errors.New("router: the owner did not answer")

// askRelease asks the owner to let go of the session for user and waits
// for its answer.
func (r *Router) askRelease(ctx context.Context, o owner.Record, tenant, clientID, user string) (byte, error) {
	r.mu.Lock()
	p := r.peerLocked(o.Node)
	if p == nil {
		r.mu.Unlock()
		return 0, errNoAnswer
	}
	r.nextRelease++
	id := r.nextRelease
	answer := make(chan byte, 1)
	r.releases[id] = answer
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.releases, id)
		r.mu.Unlock()
	}()
	payload := binary.AppendUvarint(nil, id)
	payload = binary.AppendUvarint(payload, o.Epoch)
	for _, f := range []string{tenant, user} {
		payload = binary.AppendUvarint(payload, uint64(len(f)))
		payload = append(payload, f...)
	}
	payload = append(payload, clientID...)
	if err := sendControl(p, topicRelease, payload); err != nil {
		return 0, err
	}
	t := time.NewTimer(releaseWait)
	defer t.Stop()
	select {
	case a := <-answer:
		return a, nil
	case <-t.C:
		return 0, errNoAnswer
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// parseRelease reads a release request's payload.
func parseRelease(payload []byte) (id, epoch uint64, tenant, user, clientID string, ok bool) {
	b := payload
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	str := func() (string, bool) {
		l, ok := next()
		if !ok || uint64(len(b)) < l {
			return "", false
		}
		s := string(b[:l])
		b = b[l:]
		return s, true
	}
	var ok1, ok2, ok3, ok4 bool
	id, ok1 = next()
	epoch, ok2 = next()
	tenant, ok3 = str()
	user, ok4 = str()
	return id, epoch, tenant, user, string(b), ok1 && ok2 && ok3 && ok4
}

// releaseAsked handles another node's request to let go of a session: if
// this node does not hold it at a newer epoch, it ends the session here
// (Config.EndSession), then answers. It runs on its own goroutine: ending
// a session takes the broker's locks.
func (r *Router) releaseAsked(from string, payload []byte) {
	defer r.wg.Done()
	id, epoch, tenant, user, clientID, ok := parseRelease(payload)
	if !ok {
		r.log.Warn("bad release request", "from", from)
		return
	}
	key := owner.Key(tenant, clientID)
	r.mu.Lock()
	held, holds := r.holder.Holds(key)
	r.mu.Unlock()
	answer := byte(answerNotMine)
	if !holds || held == epoch {
		answer = answerReleased
		if r.cfg.EndSession != nil && !r.cfg.EndSession(tenant, clientID, user) {
			answer = answerRefused
		} else {
			r.mu.Lock()
			r.holder.Drop(key)
			r.mu.Unlock()
			r.released.Add(1)
		}
	}
	ans := append(binary.AppendUvarint(nil, id), answer)
	r.mu.Lock()
	p := r.peerLocked(from)
	r.mu.Unlock()
	if p != nil {
		_ = sendControl(p, topicReleased, ans)
	}
}

// releaseAnswered takes an owner's answer (r.mu held).
func (r *Router) releaseAnswered(payload []byte) {
	id, n := binary.Uvarint(payload)
	if n <= 0 || len(payload) != n+1 {
		return
	}
	if ch := r.releases[id]; ch != nil {
		select {
		case ch <- payload[n]:
		default:
		}
	}
}

// SessionEnded implements broker.Cluster: the session ended on this node
// (its holder entry goes; the record stays until another node claims it,
// and this node, asked, lets go at once).
func (r *Router) SessionEnded(tenant, clientID string) {
	r.mu.Lock()
	r.holder.Drop(owner.Key(tenant, clientID))
	r.mu.Unlock()
}
