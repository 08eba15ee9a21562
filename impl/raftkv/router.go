package raftkv

import (
	"fmt"
	"slices"
)

// router takes every request a node must get answered (from a local
// client, from another node, or from the node's own background work),
// finds the replica that can execute it (a local leader, or a node found
// through the local meta replica and leader hints) and retries on errors
// that prove the request was not executed (not leader, range moved, busy,
// dropped). A write whose outcome became unknown is never retried: the
// caller gets an ambiguous error.
type router struct {
	n       *Node
	active  []*call            // creation order: the order ticks visit them
	byID    map[uint64]*call   // attempt ID → call; lookup only
	leaders map[RangeID]NodeID // leader hints; lookup only
	open    int                // calls not finished (active keeps finished ones until the next tick)
}

type call struct {
	req      *Request
	done     func(*Response)
	deadline int64
	hops     uint8

	attempt   uint64 // the current remote attempt's ID (0: none in flight)
	target    NodeID
	retryAt   int64
	tries     int
	ambiguous bool
	lastErr   *Error
	hint      *Descriptor // a newer descriptor learned from RangeMoved
	spread    int         // where to start among nodes tried in turn
	local     bool        // executing on a local replica now
	sentAt    int64       // when the current remote attempt was sent
	sentTerm  uint64      // the local replica's term then (0: no local replica)
	finished  bool
}

// maxHops bounds forwarding: a node that got a request from a node that
// got it from a client executes it or answers why it cannot.
const maxHops = 2

func (rt *router) init(n *Node) {
	rt.n = n
	rt.byID = map[uint64]*call{}
	rt.leaders = map[RangeID]NodeID{}
}

// start routes a request; done runs exactly once.
func (rt *router) start(req *Request, hops uint8, done func(*Response)) {
	if rt.open >= rt.n.cfg.MaxPendingRequests {
		rt.n.stats.RequestsRefused++
		done(&Response{Err: errf(ErrBusy, "n%d: %d requests pending", rt.n.cfg.ID, rt.open)})
		return
	}
	c := &call{req: req, done: done, deadline: rt.n.tick + int64(rt.n.cfg.RequestTicks), hops: hops}
	rt.active = append(rt.active, c)
	rt.open++
	rt.n.stats.Requests++
	rt.try(c)
}

func (rt *router) finish(c *call, resp *Response) {
	if c.finished {
		return
	}
	c.finished = true
	rt.open--
	if c.attempt != 0 {
		delete(rt.byID, c.attempt)
		c.attempt = 0
	}
	if resp.Err != nil && c.ambiguous && c.req.isWrite() && !resp.Err.Ambiguous {
		e := *resp.Err
		e.Ambiguous = true
		resp = &Response{Err: &e}
	}
	c.done(resp)
}

// try makes one attempt.
func (rt *router) try(c *call) {
	n := rt.n
	c.retryAt = 0
	c.tries++
	key := c.req.routingKey()
	r := n.replicaFor(key)
	if r != nil && (r.isLeader() || (!c.req.isWrite() && c.req.Read == Stale)) {
		c.local = true
		r.exec(c.req, func(resp *Response) { c.local = false; rt.result(c, resp) })
		return
	}
	target := NodeID(0)
	switch {
	case r != nil:
		target = r.leaderNode()
		if target == 0 || target == n.cfg.ID {
			rt.wait(c, &Error{Code: ErrNotLeader, Desc: r.state.Desc.Clone(), Msg: "no leader yet"})
			return
		}
	default:
		d := c.hint
		if d == nil || !d.Contains(key) {
			d = n.meta().lookup(key)
		}
		if d != nil {
			if c.tries == 1 {
				c.spread = rt.n.cfg.Rand.IntN(8)
			}
			target = rt.pick(d, c.spread+c.tries)
		} else if others := rt.others(); len(others) > 0 {
			if c.tries == 1 {
				c.spread = rt.n.cfg.Rand.IntN(len(others))
			}
			target = others[(c.spread+c.tries)%len(others)]
		}
	}
	if target == 0 || target == n.cfg.ID || c.hops >= maxHops {
		e := c.lastErr
		if e == nil {
			e = &Error{Code: ErrUnavailable, Msg: "no route"}
		}
		if c.hops >= maxHops {
			rt.finish(c, &Response{Err: e})
			return
		}
		rt.wait(c, e)
		return
	}
	id := n.nextSeq()
	c.attempt, c.target, c.sentAt, c.sentTerm = id, target, n.tick, 0
	if r != nil {
		c.sentTerm = r.rn.BasicStatus().GetTerm()
	}
	rt.byID[id] = c
	n.stats.RequestsForwarded++
	n.out = append(n.out, &Message{Kind: MsgRequest, From: n.cfg.ID, To: target, ID: id, Hops: c.hops + 1, Req: c.req})
}

// pick chooses the node to ask for a range: the leader hint, else its
// voters in turn.
func (rt *router) pick(d *Descriptor, tries int) NodeID {
	if h := rt.leaders[d.RangeID]; h != 0 {
		if _, ok := d.OnNode(h); ok && tries%4 != 3 {
			return h
		}
	}
	var voters []NodeID
	for _, rd := range d.Replicas {
		if d.IsVoter(rd.ID) && rd.Node != rt.n.cfg.ID {
			voters = append(voters, rd.Node)
		}
	}
	if len(voters) == 0 {
		return 0
	}
	return voters[tries%len(voters)]
}

// others are the nodes to ask when the local meta knows nothing.
func (rt *router) others() []NodeID {
	var out []NodeID
	for _, p := range rt.n.cfg.Peers {
		if p != rt.n.cfg.ID {
			out = append(out, p)
		}
	}
	for _, rec := range rt.n.meta().nodes {
		if rec.ID != rt.n.cfg.ID && rec.State == NodeLive && !slices.Contains(out, rec.ID) {
			out = append(out, rec.ID)
		}
	}
	slices.Sort(out)
	return out
}

// wait retries at the next tick.
func (rt *router) wait(c *call, e *Error) {
	c.lastErr = e
	c.retryAt = rt.n.tick + 1
}

// result handles an attempt's answer.
func (rt *router) result(c *call, resp *Response) {
	if c.finished {
		return
	}
	e := resp.Err
	if e == nil {
		rt.finish(c, resp)
		return
	}
	if e.Ambiguous {
		c.ambiguous = true
	}
	if e.Desc != nil {
		if e.Code == ErrNotLeader && e.Leader != 0 {
			rt.leaders[e.Desc.RangeID] = e.Leader
		}
		if e.Code == ErrRangeMoved && (c.hint == nil || e.Desc.Gen > c.hint.Gen) {
			c.hint = e.Desc
		}
	}
	retry := false
	switch e.Code {
	case ErrNotLeader, ErrRangeMoved, ErrBusy, ErrUnavailable, ErrDropped:
		retry = true
	case ErrTimeout:
		retry = !c.req.isWrite()
	}
	if !retry || (c.ambiguous && c.req.isWrite()) || rt.n.tick >= c.deadline {
		rt.finish(c, resp)
		return
	}
	c.lastErr = e
	// A fresh leader hint is worth an immediate retry; otherwise wait a tick
	// (an election or a split may be under way).
	if e.Code == ErrNotLeader && e.Leader != 0 && e.Leader != c.target && c.tries < 4 {
		rt.try(c)
		return
	}
	c.retryAt = rt.n.tick + 1
}

// replaced reports that the local replica that named the leader the
// current attempt went to has since seen a later term with another leader.
func (rt *router) replaced(c *call) bool {
	if c.sentTerm == 0 {
		return false
	}
	r := rt.n.replicaFor(c.req.routingKey())
	if r == nil {
		return false
	}
	st := r.rn.BasicStatus()
	lead := r.leaderNode()
	return st.GetTerm() > c.sentTerm && lead != 0 && lead != c.target
}

// abandon gives up the current remote attempt.
func (rt *router) abandon(c *call, why string) {
	delete(rt.byID, c.attempt)
	c.attempt = 0
	if c.req.isWrite() {
		rt.finish(c, &Response{Err: &Error{Code: ErrTimeout, Ambiguous: true, Msg: why}})
		return
	}
	c.lastErr = &Error{Code: ErrTimeout, Msg: why}
	rt.try(c)
}

// remote takes a request forwarded by another node.
func (rt *router) remote(m *Message) {
	n := rt.n
	if m.Req == nil {
		return
	}
	from, id := m.From, m.ID
	rt.start(m.Req, m.Hops, func(resp *Response) {
		n.out = append(n.out, &Message{Kind: MsgResponse, From: n.cfg.ID, To: from, ID: id, Resp: resp})
	})
}

// response takes the answer to an attempt.
func (rt *router) response(m *Message) {
	c := rt.byID[m.ID]
	if c == nil || m.Resp == nil {
		return
	}
	delete(rt.byID, m.ID)
	c.attempt = 0
	rt.result(c, m.Resp)
}

// tick retries what waited and fails what ran out of time.
func (rt *router) tick() {
	now := rt.n.tick
	keep := rt.active[:0]
	// Calls started during this loop are appended to rt.active; visit them
	// next tick.
	active := rt.active
	rt.active = nil
	for _, c := range active {
		if c.finished {
			continue
		}
		switch {
		case now >= c.deadline:
			amb := c.ambiguous || ((c.attempt != 0 || c.local) && c.req.isWrite())
			e := &Error{Code: ErrTimeout, Ambiguous: amb && c.req.isWrite(), Msg: "no answer in time"}
			if c.lastErr != nil && !amb {
				e.Msg += " (last: " + c.lastErr.Error() + ")"
			}
			rt.finish(c, &Response{Err: e})
		case c.retryAt != 0 && now >= c.retryAt:
			rt.try(c)
		case c.attempt != 0 && now-c.sentAt >= int64(rt.n.cfg.ElectionTicks) && rt.replaced(c):
			// The node asked no longer leads (a local replica knows another
			// leader) and has not answered: a read goes to the new one, a
			// write's outcome is unknown (the old leader may have proposed
			// it) and its caller decides, rather than wait out the deadline.
			rt.abandon(c, fmt.Sprintf("n%d lost the leadership", c.target))
		case c.attempt != 0 && !c.req.isWrite() && now-c.sentAt >= int64(rt.n.cfg.ElectionTicks/2):
			// A read may be asked again elsewhere: the node may be cut off.
			rt.abandon(c, fmt.Sprintf("n%d did not answer", c.target))
		}
		if !c.finished {
			keep = append(keep, c)
		}
	}
	rt.active = append(keep, rt.active...)
}
