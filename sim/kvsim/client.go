package kvsim

import (
	"fmt"
	"math"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/skybridge-mq/skybridge/impl/raftkv"
	"github.com/skybridge-mq/skybridge/sim"
)

// opKind is what a client operation does.
type opKind uint8

const (
	opGet opKind = iota + 1
	opPut
	opDel
	opCAS
	opScan
	opStale // a stale read: checked against the values ever written, not linearized
)

var opNames = [...]string{"?", "get", "put", "del", "cas", "scan", "stale-get"}

// kvIn is an operation as the history records it.
type kvIn struct {
	kind         opKind
	key          string
	val          string // put, cas: the value written
	expect       string // cas
	expectAbsent bool
	start, end   string // scan
}

// kvOut is what the operation returned. unknown: no answer, or an answer
// saying the outcome is unknown (the operation may take effect at any
// time after its call, or never).
type kvOut struct {
	unknown bool
	ok      bool // cas succeeded
	val     string
	found   bool
	kvs     []raftkv.KV
	resume  string // scan: the end of what it covered ("" = its end)
}

// client is a simulated application: one connection to a node at a time,
// one operation at a time, recording every call and answer.
type client struct {
	w      *world
	id     int
	host   *sim.Host
	ep     *sim.Endpoint
	node   *nodeProc // the node ep leads to
	in     raftkv.Framer
	cur    *pendingOp
	nextID uint64
	seq    int
	timer  *sim.Event
	thinkE *sim.Event
	final  []string // keys still to read in the final phase
}

type pendingOp struct {
	id   uint64
	in   kvIn
	call time.Time
}

func (w *world) newClient(id int) *client {
	c := &client{w: w, id: id}
	c.host = w.net.AddHost(fmt.Sprintf("c%d", id))
	w.clients = append(w.clients, c)
	c.think()
	return c
}

func (c *client) think() {
	c.thinkE = c.w.s.After(c.w.s.Exp(c.w.opts.Think), c.next)
}

// connect dials a node that is not known to be gone.
func (c *client) connect() bool {
	cands := c.w.active()
	if len(cands) == 0 {
		return false
	}
	p := cands[c.w.s.Rand.IntN(len(cands))]
	c.ep = c.host.Dial(p.host.Name, portClient, c)
	c.node = p
	c.in = raftkv.Framer{}
	return true
}

// failover moves the client to node p now (an operation in flight there
// is left with an unknown outcome).
func (c *client) failover(p *nodeProc) {
	if c.ep != nil {
		c.ep.Abort()
	}
	if c.cur != nil {
		c.w.s.Cancel(c.timer)
		c.timer = nil
		c.unknown()
		if c.thinkE == nil {
			c.think()
		}
	}
	c.ep = c.host.Dial(p.host.Name, portClient, c)
	c.node = p
	c.in = raftkv.Framer{}
}

func (c *client) next() {
	c.thinkE = nil
	w := c.w
	if w.stopping && len(c.final) == 0 {
		return
	}
	if c.ep == nil || c.ep.IsClosed() {
		if !c.connect() {
			c.think()
			return
		}
	}
	var in kvIn
	if w.stopping {
		in = kvIn{kind: opGet, key: c.final[0]}
	} else {
		in = c.w.workload.pick(c)
	}
	c.nextID++
	op := &pendingOp{id: c.nextID, in: in, call: w.s.Now()}
	c.cur = op
	c.ep.Write(raftkv.AppendIDFrame(nil, raftkv.FrameRequest, op.id, raftkv.EncodeRequest(toRequest(in))))
	c.timer = w.s.After(w.opts.ClientTimeout, c.timeout)
	w.s.Note(sim.KindAction, c.host.ID, 0, fmt.Sprintf("c%d %s %s", c.id, opNames[in.kind], in.key))
}

func toRequest(in kvIn) *raftkv.Request {
	k := []byte(in.key)
	switch in.kind {
	case opGet:
		return &raftkv.Request{Kind: raftkv.ReqGet, Key: k}
	case opStale:
		return &raftkv.Request{Kind: raftkv.ReqGet, Key: k, Read: raftkv.Stale}
	case opScan:
		return &raftkv.Request{Kind: raftkv.ReqScan, Key: []byte(in.start), End: []byte(in.end)}
	case opPut:
		return &raftkv.Request{Kind: raftkv.ReqWrite, Ops: []raftkv.Op{{Kind: raftkv.OpPut, Key: k, Value: []byte(in.val)}}}
	case opDel:
		return &raftkv.Request{Kind: raftkv.ReqWrite, Ops: []raftkv.Op{{Kind: raftkv.OpDelete, Key: k}}}
	case opCAS:
		op := raftkv.Op{Kind: raftkv.OpCAS, Key: k, Value: []byte(in.val), ExpectAbsent: in.expectAbsent}
		if !in.expectAbsent {
			op.Expect = []byte(in.expect)
		}
		return &raftkv.Request{Kind: raftkv.ReqWrite, Ops: []raftkv.Op{op}}
	}
	return nil
}

func isWrite(k opKind) bool { return k == opPut || k == opDel || k == opCAS }

// timeout: no answer in time. A write's outcome is unknown; the client
// gives up on the connection (its node may be gone) and goes on.
func (c *client) timeout() {
	c.timer = nil
	if c.cur == nil {
		return
	}
	c.w.stats.ClientTimeouts++
	c.unknown()
	if c.ep != nil {
		c.ep.Abort()
		c.ep = nil
	}
	c.think()
}

// unknown records the current operation as never answered.
func (c *client) unknown() {
	op := c.cur
	c.cur = nil
	if isWrite(op.in.kind) {
		c.w.record(c.id, op.in, kvOut{unknown: true}, op.call, time.Time{})
	}
}

func (c *client) Opened(ep *sim.Endpoint) { ep.Write(nil) }
func (c *client) Writable(*sim.Endpoint)  {}

func (c *client) Closed(ep *sim.Endpoint, reset bool) {
	if ep != c.ep {
		return
	}
	c.ep = nil
	if c.cur != nil {
		c.w.s.Cancel(c.timer)
		c.timer = nil
		c.unknown()
		c.think()
	}
}

func (c *client) Data(ep *sim.Endpoint, b []byte) {
	ep.Consume(len(b))
	if ep != c.ep {
		return
	}
	c.in.Feed(b, func(kind byte, body []byte) {
		id, rest, ok := raftkv.SplitID(body)
		if kind != raftkv.FrameResponse || !ok || c.cur == nil || id != c.cur.id {
			return
		}
		resp, err := raftkv.DecodeResponse(rest)
		if err != nil {
			c.w.fail("decode", err.Error())
			return
		}
		c.answer(resp)
	})
}

func (c *client) answer(resp *raftkv.Response) {
	op := c.cur
	c.cur = nil
	c.w.s.Cancel(c.timer)
	c.timer = nil
	w := c.w
	now := w.s.Now()
	switch {
	case resp.Err == nil:
		out := kvOut{ok: resp.Succeeded, val: string(resp.Value), found: resp.Found}
		switch op.in.kind {
		case opCAS:
			out.val, out.found = string(resp.Current), resp.CurrentFound
		case opScan:
			out.kvs = resp.KVs
			out.resume = string(resp.Resume)
		}
		w.stats.OpsOK++
		if isWrite(op.in.kind) {
			w.stats.Writes++
		}
		w.record(c.id, op.in, out, op.call, now)
		if w.stopping && op.in.kind == opGet && len(c.final) > 0 && c.final[0] == op.in.key {
			c.final = c.final[1:]
		}
	case resp.Err.Ambiguous && isWrite(op.in.kind):
		w.stats.OpsUnknown++
		w.record(c.id, op.in, kvOut{unknown: true}, op.call, time.Time{})
	default:
		w.stats.OpsFailed++ // refused: it did not happen (or it was a read)
	}
	c.think()
}

// record adds an operation to the history.
func (w *world) record(client int, in kvIn, out kvOut, call, ret time.Time) {
	r := int64(math.MaxInt64)
	if !ret.IsZero() {
		r = int64(ret.Sub(sim.Epoch))
	}
	op := porcupine.Operation{ClientId: client, Input: in, Output: out, Call: int64(call.Sub(sim.Epoch)), Return: r}
	if in.kind == opStale {
		w.stale = append(w.stale, op)
		return
	}
	w.history = append(w.history, op)
	if isWrite(in.kind) {
		w.written[in.key] = append(w.written[in.key], in.val)
	}
}
