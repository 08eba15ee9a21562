package raftkv

import (
	"bytes"
	"slices"
)

// Watches: a client asks its node to watch a key prefix (Watch) and gets
// WatchEvents: first a Reset, then every change of a key under the prefix,
// in the order the changes were applied. A Reset means "events may have
// been missed: read the prefix again". The guarantee is what a cache needs:
// a client that, on each Reset, buffers the events that follow, reads the
// prefix (linearizably), then applies the buffered events and every later
// one, holds the prefix's current content whenever it has heard everything.
// Events after a Reset may begin with changes committed before the watch
// was asked for (the part's replica may lag behind what the client saw).
//
// How: the node (the origin) registers a watch part at a replica of each
// range the prefix covers (any replica: every replica applies every
// committed entry in order), which sends the origin an event, numbered,
// for each change it applies there. The origin pings each part; a missing
// number, a part that no longer knows the watch (its node restarted, its
// range split, merged or moved), or a silent part ends in a Reset and a
// new registration (a new generation, so that late events of the old one
// are ignored). Parts not pinged for a while are dropped by their replica.

// WatchEvent is what a watcher hears.
type WatchEvent struct {
	ID      uint64
	Reset   bool   // (re)read the prefix now: events before this one may be missing
	Key     []byte // the key that changed
	End     []byte // non-nil: every key in [Key, End) was deleted
	Value   []byte
	Deleted bool
}

// WatchOp says what a WatchMsg is.
type WatchOp uint8

// Watch message kinds between nodes.
const (
	WatchChange WatchOp = iota + 1 // a change applied at a registered part
	WatchReset                     // the part ended (split, merge, snapshot, removal)
	WatchPing                      // origin → part: still there?
	WatchPong                      // part → origin: Alive, and its last Seq
)

// WatchMsg is one watch message between nodes.
type WatchMsg struct {
	Op              WatchOp
	ID              uint64
	Part            int
	Gen             uint64
	Seq             uint64
	Key, End, Value []byte
	Deleted, Alive  bool
}

func (m *WatchMsg) encode(e *enc) {
	e.byte1(byte(m.Op))
	e.u64(m.ID)
	e.u64(uint64(m.Part))
	e.u64(m.Gen)
	e.u64(m.Seq)
	e.optBytes(m.Key)
	e.optBytes(m.End)
	e.optBytes(m.Value)
	e.bool(m.Deleted)
	e.bool(m.Alive)
}

func decodeWatchMsg(d *dec) WatchMsg {
	return WatchMsg{Op: WatchOp(d.byte1()), ID: d.u64(), Part: int(d.u64()), Gen: d.u64(), Seq: d.u64(),
		Key: d.optBytes(), End: d.optBytes(), Value: d.optBytes(), Deleted: d.bool(), Alive: d.bool()}
}

// watchPingTicks is how often the origin pings its parts; a part unpinged
// for three periods is dropped, an origin without a pong for three resets.
const watchPingTicks = 10

// watcher is a registered watch part at a replica.
type watcher struct {
	origin     NodeID
	id         uint64
	part       int
	gen        uint64
	start, end []byte
	seq        uint64
	lastPing   int64
}

// watch is a client's watch at its node.
type watch struct {
	id         uint64
	start, end []byte // the logical span of the prefix
	gen        uint64
	parts      []*watchPart
	expect     map[int]uint64 // next event number per part; lookup only
	ready      bool           // every part registered, Reset delivered
	busy       bool           // a registration in flight
	retryAt    int64
}

type watchPart struct {
	start, end []byte
	node       NodeID
	lastPong   int64
}

// PrefixEnd is the first key after every key with the prefix (nil: none):
// the end of a Scan of the prefix.
func PrefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// Watch starts watching the keys with a prefix; events come in
// Output.Watch with id, starting with a Reset.
func (n *Node) Watch(id uint64, prefix []byte) {
	if n.closed {
		return
	}
	start := userKey(prefix)
	end := PrefixEnd(start)
	if n.watches == nil {
		n.watches = map[uint64]*watch{}
	}
	if len(n.watches) >= n.cfg.MaxWatches {
		n.stats.WatchesRefused++
		n.watchOut = append(n.watchOut, WatchEvent{ID: id, Reset: true})
		return
	}
	w := &watch{id: id, start: start, end: end}
	n.watches[id] = w
	n.watchOrder = append(n.watchOrder, id)
	n.registerWatch(w)
}

// Unwatch stops a watch.
func (n *Node) Unwatch(id uint64) {
	if _, ok := n.watches[id]; !ok {
		return
	}
	delete(n.watches, id)
	n.watchOrder = slices.DeleteFunc(n.watchOrder, func(x uint64) bool { return x == id })
}

// registerWatch starts a new generation of w: its parts, range by range.
func (n *Node) registerWatch(w *watch) {
	w.gen++
	w.parts, w.ready, w.busy = nil, false, true
	w.expect = map[int]uint64{}
	n.registerPart(w, w.start)
}

func (n *Node) registerPart(w *watch, start []byte) {
	gen, part := w.gen, len(w.parts)
	req := &Request{Kind: reqWatch, Key: start, End: w.end, Read: Stale, WatchID: w.id, Origin: n.cfg.ID, Gen: gen, Limit: part}
	n.router.start(req, 0, func(resp *Response) {
		if n.watches[w.id] != w || w.gen != gen {
			return
		}
		if resp.Err != nil || resp.Desc == nil || resp.Node == 0 {
			w.busy, w.retryAt = false, n.tick+1
			return
		}
		end := w.end
		if resp.Desc.End != nil && (end == nil || bytes.Compare(resp.Desc.End, end) < 0) {
			end = resp.Desc.End
		}
		w.parts = append(w.parts, &watchPart{start: start, end: end, node: resp.Node, lastPong: n.tick})
		if bytes.Equal(end, w.end) {
			w.busy, w.ready = false, true
			n.watchOut = append(n.watchOut, WatchEvent{ID: w.id, Reset: true})
			return
		}
		n.registerPart(w, end)
	})
}

// resetWatch ends the current generation and registers again.
func (n *Node) resetWatch(w *watch) {
	n.stats.WatchResets++
	n.registerWatch(w)
}

// watchTick pings parts, resets silent watches, retries registrations.
func (n *Node) watchTick() {
	for _, id := range n.watchOrder {
		w := n.watches[id]
		switch {
		case w.busy:
		case !w.ready && w.retryAt <= n.tick:
			n.registerWatch(w)
		case w.ready && n.tick%watchPingTicks == 0:
			for i, p := range w.parts {
				if n.tick-p.lastPong > 3*watchPingTicks {
					n.resetWatch(w)
					break
				}
				n.out = append(n.out, &Message{Kind: MsgWatch, From: n.cfg.ID, To: p.node,
					Watch: []WatchMsg{{Op: WatchPing, ID: id, Part: i, Gen: w.gen}}})
			}
		}
	}
	// Parts whose origin stopped pinging go.
	for _, r := range n.order {
		r.watchers = slices.DeleteFunc(r.watchers, func(x *watcher) bool {
			if n.tick-x.lastPing > 3*watchPingTicks {
				n.watcherCount--
				return true
			}
			return false
		})
	}
}

// receiveWatch handles watch messages, at either end.
func (n *Node) receiveWatch(m *Message) {
	for _, wm := range m.Watch {
		switch wm.Op {
		case WatchPing:
			alive, seq := false, uint64(0)
			for _, r := range n.order {
				for _, x := range r.watchers {
					if x.origin == m.From && x.id == wm.ID && x.part == wm.Part && x.gen == wm.Gen {
						x.lastPing, alive, seq = n.tick, true, x.seq
					}
				}
			}
			n.out = append(n.out, &Message{Kind: MsgWatch, From: n.cfg.ID, To: m.From,
				Watch: []WatchMsg{{Op: WatchPong, ID: wm.ID, Part: wm.Part, Gen: wm.Gen, Seq: seq, Alive: alive}}})
		case WatchPong:
			w := n.watches[wm.ID]
			if w == nil || w.gen != wm.Gen || wm.Part >= len(w.parts) {
				continue
			}
			// Events and pongs of a part travel in order: a pong that
			// counts more events than arrived means some were lost.
			heard := max(w.expect[wm.Part], 1) - 1
			if !wm.Alive || wm.Seq > heard {
				n.resetWatch(w) // the part is gone, or events were lost
				continue
			}
			w.parts[wm.Part].lastPong = n.tick
		case WatchChange, WatchReset:
			w := n.watches[wm.ID]
			if w == nil || w.gen != wm.Gen {
				continue
			}
			next := w.expect[wm.Part]
			if next == 0 {
				next = 1
			}
			if wm.Op == WatchReset || wm.Seq != next {
				if !w.busy {
					n.resetWatch(w)
				}
				continue
			}
			w.expect[wm.Part] = next + 1
			if !w.ready {
				continue // before the Reset: the client's read after it covers this
			}
			ev := WatchEvent{ID: wm.ID, Key: fromUserKey(wm.Key), Value: wm.Value, Deleted: wm.Deleted}
			if wm.End != nil {
				ev.End = fromUserKey(wm.End)
			}
			n.watchOut = append(n.watchOut, ev)
		}
	}
}

// WatchReady reports whether a watch is registered everywhere it must be
// (its Reset delivered, its events flowing).
func (n *Node) WatchReady(id uint64) bool {
	w := n.watches[id]
	return w != nil && w.ready
}

// registerWatcher is reqWatch at a replica.
func (r *replica) registerWatcher(req *Request) *Response {
	n := r.n
	if n.watcherCount >= n.cfg.MaxWatches {
		n.stats.WatchesRefused++
		return &Response{Err: errf(ErrBusy, "n%d: %d watch parts", n.cfg.ID, n.cfg.MaxWatches)}
	}
	d := r.state.Desc
	end := req.End
	if d.End != nil && (end == nil || bytes.Compare(d.End, end) < 0) {
		end = d.End
	}
	r.watchers = slices.DeleteFunc(r.watchers, func(x *watcher) bool {
		if x.origin == req.Origin && x.id == req.WatchID && x.part == req.Limit {
			n.watcherCount--
			return true
		}
		return false
	})
	r.watchers = append(r.watchers, &watcher{origin: req.Origin, id: req.WatchID, part: req.Limit, gen: req.Gen,
		start: bytes.Clone(req.Key), end: bytes.Clone(end), lastPing: n.tick})
	n.watcherCount++
	return &Response{Succeeded: true, Desc: d.Clone(), Node: n.cfg.ID, Int: int64(r.state.Index)}
}

// notify records a change for the watchers it concerns; the events go out
// once the apply batch is committed (in apply order).
func (r *replica) notify(fx *effects, key, end, value []byte, deleted bool) {
	for _, x := range r.watchers {
		hit := false
		if end == nil {
			hit = bytes.Compare(key, x.start) >= 0 && (x.end == nil || bytes.Compare(key, x.end) < 0)
		} else {
			hit = spansOverlap(key, end, x.start, x.end)
		}
		if !hit {
			continue
		}
		x.seq++
		m := &Message{Kind: MsgWatch, From: r.n.cfg.ID, To: x.origin, Watch: []WatchMsg{{Op: WatchChange, ID: x.id, Part: x.part,
			Gen: x.gen, Seq: x.seq, Key: bytes.Clone(key), End: bytes.Clone(end), Value: bytes.Clone(value), Deleted: deleted}}}
		fx.then(func() { r.n.out = append(r.n.out, m) })
	}
}

// resetWatchers ends every part registered at this replica (its span
// changed, or it is going away).
func (r *replica) resetWatchers() {
	for _, x := range r.watchers {
		r.n.out = append(r.n.out, &Message{Kind: MsgWatch, From: r.n.cfg.ID, To: x.origin,
			Watch: []WatchMsg{{Op: WatchReset, ID: x.id, Part: x.part, Gen: x.gen}}})
		r.n.watcherCount--
	}
	r.watchers = nil
}

// EncodeWatchEvent returns the binary form of an event (its ID travels in
// the frame).
func EncodeWatchEvent(ev *WatchEvent) []byte {
	var e enc
	e.bool(ev.Reset)
	e.optBytes(ev.Key)
	e.optBytes(ev.End)
	e.optBytes(ev.Value)
	e.bool(ev.Deleted)
	return e.b
}

// DecodeWatchEvent parses EncodeWatchEvent's output.
func DecodeWatchEvent(id uint64, b []byte) (WatchEvent, error) {
	d := dec{b: b}
	ev := WatchEvent{ID: id, Reset: d.bool(), Key: d.optBytes(), End: d.optBytes(), Value: d.optBytes(), Deleted: d.bool()}
	return ev, d.done()
}
