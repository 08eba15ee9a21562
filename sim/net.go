package sim

import (
	"time"
)

// LinkSpec describes one direction of the path between two hosts.
type LinkSpec struct {
	// Latency is the base one-way delay; Jitter adds a uniform [0, Jitter].
	Latency, Jitter time.Duration
	// SpikeProb is the probability that a transmission is delayed further
	// by a uniform [0, Spike] (a lost segment retransmitted).
	SpikeProb float64
	Spike     time.Duration
	// Bandwidth in bytes per second; 0 is unlimited.
	Bandwidth int64
}

// MaxDelay is the largest one-way delay the spec can produce for a small
// message on an idle link (the bound used by timing invariants).
func (l LinkSpec) MaxDelay() time.Duration {
	d := l.Latency + l.Jitter
	if l.SpikeProb > 0 {
		d += l.Spike
	}
	return d
}

// Loopback is the link of a host to itself.
var Loopback = LinkSpec{Latency: 20 * time.Microsecond, Jitter: 20 * time.Microsecond}

// Network is a virtual network of byte-stream connections between hosts.
// Bytes of one connection arrive in order, each direction paced by its
// link's bandwidth and the receiver's window; different connections are
// delayed independently and may overtake each other. Partitions hold the
// bytes that cross them until healed, as TCP retransmission would.
type Network struct {
	s       *Sim
	hosts   []*Host
	links   map[[2]int]*link
	Default LinkSpec
	// Window is the receive window of every endpoint unless set per host.
	Window int
	// SendBuffer is how many unsent bytes Write accepts before reporting
	// that the writer should wait.
	SendBuffer int
	nextConn   uint64
	Stats      NetStats
}

// NetStats counts what the network did.
type NetStats struct {
	Conns, Bytes, Chunks, Held, Dropped, Resets, Refused uint64
}

type link struct {
	spec        LinkSpec
	busyUntil   time.Time
	partitioned bool
	held        []heldChunk
}

type heldChunk struct {
	to *Endpoint
	c  chunk
}

// Host is a machine on the network.
type Host struct {
	ID   int
	Name string
	n    *Network
	// Window overrides Network.Window for endpoints on this host (a slow
	// reader's small receive window); 0 keeps the default.
	Window    int
	listeners map[int]func(*Endpoint) Handler
	eps       []*Endpoint
	down      bool
}

// Handler receives an endpoint's events. Every call runs as a simulation
// event of its own (never inside another endpoint's call).
type Handler interface {
	// Opened: a dialled connection is established.
	Opened(ep *Endpoint)
	// Data: bytes arrived. b is valid during the call only. The handler
	// calls ep.Consume when it has read them, which opens the window.
	Data(ep *Endpoint, b []byte)
	// Closed: the peer closed (reset false) or the connection was reset or
	// could not be established (reset true). The endpoint is closed.
	Closed(ep *Endpoint, reset bool)
	// Writable: the send buffer has room again after Write said it was full.
	Writable(ep *Endpoint)
}

// Conn is a connection between two endpoints.
type Conn struct {
	ID        uint64
	ends      [2]*Endpoint
	blackhole bool
}

// Endpoint is one side of a connection.
type Endpoint struct {
	Conn *Conn
	side int
	Host *Host
	h    Handler

	open   bool // established
	closed bool // closed locally, or told the connection ended

	// The direction from this endpoint to its peer.
	sendQ        []byte
	finPending   bool
	inflight     int // bytes sent, not yet consumed by the peer
	owed         int // credit owed to the peer while the way back is cut
	lastArrival  time.Time
	wantWritable bool
	sndNext      uint64  // next sequence number sent
	rcvNext      uint64  // next sequence number to hand over
	ooo          []chunk // arrived ahead of a chunk held by a partition
}

type chunkKind uint8

const (
	chData chunkKind = iota
	chFin
	chRst
	chSyn
	chSynAck
)

type chunk struct {
	kind chunkKind
	data []byte
	port int
	seq  uint64 // position in its direction: the receiver reassembles in order
}

// NewNetwork returns an empty network on s.
func NewNetwork(s *Sim, def LinkSpec) *Network {
	return &Network{s: s, links: map[[2]int]*link{}, Default: def, Window: 64 << 10, SendBuffer: 64 << 10}
}

// AddHost adds a host.
func (n *Network) AddHost(name string) *Host {
	h := &Host{ID: len(n.hosts), Name: name, n: n, listeners: map[int]func(*Endpoint) Handler{}}
	n.hosts = append(n.hosts, h)
	return h
}

// Host returns the host called name, or nil.
func (n *Network) Host(name string) *Host {
	for _, h := range n.hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Hosts returns the hosts in the order they were added.
func (n *Network) Hosts() []*Host { return n.hosts }

func (n *Network) link(from, to int) *link {
	k := [2]int{from, to}
	l := n.links[k]
	if l == nil {
		spec := n.Default
		if from == to {
			spec = Loopback
		}
		l = &link{spec: spec}
		n.links[k] = l
	}
	return l
}

// SetLink sets the spec of both directions between two hosts.
func (n *Network) SetLink(a, b *Host, spec LinkSpec) {
	n.link(a.ID, b.ID).spec = spec
	n.link(b.ID, a.ID).spec = spec
}

// LinkSpec returns the spec of the direction from a to b.
func (n *Network) LinkSpec(a, b *Host) LinkSpec { return n.link(a.ID, b.ID).spec }

// Listen makes accept answer connections to port on h.
func (h *Host) Listen(port int, accept func(*Endpoint) Handler) { h.listeners[port] = accept }

// Unlisten stops accepting on port.
func (h *Host) Unlisten(port int) { delete(h.listeners, port) }

func (n *Network) delay(l *link) time.Duration {
	d := l.spec.Latency
	if l.spec.Jitter > 0 {
		d += time.Duration(n.s.Rand.Int64N(int64(l.spec.Jitter) + 1))
	}
	if l.spec.SpikeProb > 0 && n.s.Rand.Float64() < l.spec.SpikeProb {
		d += time.Duration(n.s.Rand.Int64N(int64(l.spec.Spike) + 1))
	}
	return d
}

// send schedules c from ep to its peer, after the bytes ahead of it.
func (n *Network) send(ep *Endpoint, c chunk) {
	to := ep.peer()
	l := n.link(ep.Host.ID, to.Host.ID)
	now := n.s.now
	start := now
	if l.spec.Bandwidth > 0 && len(c.data) > 0 {
		if l.busyUntil.After(start) {
			start = l.busyUntil
		}
		start = start.Add(time.Duration(int64(len(c.data)) * int64(time.Second) / l.spec.Bandwidth))
		l.busyUntil = start
	}
	at := start.Add(n.delay(l))
	if at.Before(ep.lastArrival) {
		at = ep.lastArrival // in order within the connection
	}
	ep.lastArrival = at
	c.seq = ep.sndNext
	ep.sndNext++
	n.Stats.Chunks++
	n.s.At(at, func() { n.arrive(l, to, c) })
}

func (n *Network) arrive(l *link, to *Endpoint, c chunk) {
	if l.partitioned {
		l.held = append(l.held, heldChunk{to, c})
		n.Stats.Held++
		n.s.Record(KindHeld, to.Host.ID, to.Conn.ID, nil)
		return
	}
	if to.Conn.blackhole {
		n.Stats.Dropped++
		return
	}
	if c.seq != to.rcvNext {
		// A chunk ahead of one a partition held: wait for it (TCP
		// reassembly), so bytes of a connection never overtake each other.
		i := len(to.ooo)
		for i > 0 && to.ooo[i-1].seq > c.seq {
			i--
		}
		to.ooo = append(to.ooo, chunk{})
		copy(to.ooo[i+1:], to.ooo[i:])
		to.ooo[i] = c
		return
	}
	to.rcvNext++
	n.deliver(to, c)
	for len(to.ooo) > 0 && to.ooo[0].seq == to.rcvNext {
		next := to.ooo[0]
		to.ooo = to.ooo[1:]
		to.rcvNext++
		n.deliver(to, next)
	}
}

// deliver hands one chunk, in sequence, to its endpoint.
func (n *Network) deliver(to *Endpoint, c chunk) {
	switch c.kind {
	case chSyn:
		n.accept(to, c.port)
		return
	case chSynAck:
		if to.closed || to.open {
			return
		}
		to.open = true
		n.s.Record(KindOpen, to.Host.ID, to.Conn.ID, nil)
		to.h.Opened(to)
		return
	}
	if to.closed {
		if c.kind == chData {
			n.Stats.Dropped++
		}
		return
	}
	switch c.kind {
	case chData:
		n.Stats.Bytes += uint64(len(c.data))
		n.s.Record(KindData, to.Host.ID, to.Conn.ID, c.data)
		to.h.Data(to, c.data)
	case chFin:
		to.markClosed()
		n.s.Record(KindClose, to.Host.ID, to.Conn.ID, nil)
		to.h.Closed(to, false)
	case chRst:
		to.markClosed()
		n.s.Record(KindReset, to.Host.ID, to.Conn.ID, nil)
		to.h.Closed(to, true)
	}
}

// Dial opens a connection from h to port on the host called to. The
// handler hears Opened, or Closed(reset) when the connection is refused;
// when the SYN is lost (a partition) nothing is heard, and the dialler's
// own timeout must give up (Abort).
func (h *Host) Dial(to string, port int, hd Handler) *Endpoint {
	n := h.n
	dst := n.Host(to)
	n.nextConn++
	c := &Conn{ID: n.nextConn}
	ep := &Endpoint{Conn: c, side: 0, Host: h, h: hd}
	c.ends[0] = ep
	if dst == nil || h.down {
		ep.closed = true
		n.s.After(0, func() { hd.Closed(ep, true) })
		return ep
	}
	srv := &Endpoint{Conn: c, side: 1, Host: dst}
	c.ends[1] = srv
	h.eps = append(h.eps, ep)
	n.Stats.Conns++
	n.send(ep, chunk{kind: chSyn, port: port})
	return ep
}

func (n *Network) accept(srv *Endpoint, port int) {
	cl := srv.peer()
	accept := srv.Host.listeners[port]
	if accept == nil || srv.Host.down || cl.closed {
		n.Stats.Refused++
		srv.closed = true
		n.send(srv, chunk{kind: chRst})
		return
	}
	srv.open = true
	srv.Host.eps = append(srv.Host.eps, srv)
	srv.h = accept(srv)
	n.s.Record(KindOpen, srv.Host.ID, srv.Conn.ID, nil)
	n.send(srv, chunk{kind: chSynAck})
}

func (ep *Endpoint) peer() *Endpoint { return ep.Conn.ends[1-ep.side] }

// Open reports whether the endpoint is established and not closed.
func (ep *Endpoint) Open() bool { return ep.open && !ep.closed }

// IsClosed reports whether the endpoint is closed.
func (ep *Endpoint) IsClosed() bool { return ep.closed }

func (ep *Endpoint) markClosed() {
	ep.closed = true
	ep.sendQ = ep.sendQ[:0]
	ep.Host.remove(ep)
}

func (h *Host) remove(ep *Endpoint) {
	for i, e := range h.eps {
		if e == ep {
			h.eps = append(h.eps[:i], h.eps[i+1:]...)
			return
		}
	}
}

func (ep *Endpoint) window() int {
	if w := ep.peer().Host.Window; w > 0 {
		return w
	}
	return ep.Host.n.Window
}

// Write queues b (copied) for the peer. It returns false when the send
// buffer is full: the writer should wait for Writable before writing more
// (what was given is still sent).
func (ep *Endpoint) Write(b []byte) bool {
	if ep.closed {
		return false
	}
	ep.sendQ = append(ep.sendQ, b...)
	ep.pump()
	if len(ep.sendQ) >= ep.Host.n.SendBuffer {
		ep.wantWritable = true
		return false
	}
	return true
}

// Buffered returns the bytes written and not yet sent (waiting for window).
func (ep *Endpoint) Buffered() int { return len(ep.sendQ) }

const mss = 16 << 10

func (ep *Endpoint) pump() {
	n := ep.Host.n
	if !ep.open {
		return
	}
	w := ep.window()
	for len(ep.sendQ) > 0 && ep.inflight < w {
		k := min(len(ep.sendQ), w-ep.inflight, mss)
		data := make([]byte, k)
		copy(data, ep.sendQ)
		rest := copy(ep.sendQ, ep.sendQ[k:])
		ep.sendQ = ep.sendQ[:rest]
		ep.inflight += k
		n.send(ep, chunk{kind: chData, data: data})
	}
	if len(ep.sendQ) == 0 && ep.finPending {
		ep.finPending = false
		n.send(ep, chunk{kind: chFin})
	}
	if ep.wantWritable && len(ep.sendQ) < n.SendBuffer/2 && !ep.closed {
		ep.wantWritable = false
		n.s.After(0, func() {
			if !ep.closed {
				ep.h.Writable(ep)
			}
		})
	}
}

// Consume tells the network the handler has read k bytes: the peer may
// send that many more.
func (ep *Endpoint) Consume(k int) {
	p := ep.peer()
	back := ep.Host.n.link(ep.Host.ID, p.Host.ID)
	if back.partitioned || ep.Conn.blackhole {
		ep.owed += k
		return
	}
	p.inflight -= k
	if p.inflight < 0 {
		p.inflight = 0
	}
	p.pump() // a closed endpoint may still drain what it wrote before Close
}

// Close closes the endpoint gracefully: what was written is still sent,
// then the peer hears Closed(false). The local handler hears nothing more.
func (ep *Endpoint) Close() {
	if ep.closed {
		return
	}
	ep.closed = true
	ep.Host.remove(ep)
	if !ep.open {
		return
	}
	ep.finPending = true // bytes already accepted by Write are still sent
	ep.pump()
}

// Abort resets the connection: unsent bytes are dropped and the peer hears
// Closed(true). The local handler hears nothing more.
func (ep *Endpoint) Abort() {
	if ep.closed {
		return
	}
	ep.markClosed()
	if ep.open || ep.side == 0 {
		ep.Host.n.send(ep, chunk{kind: chRst})
	}
}

// Partition cuts the hosts of a from those of b (both directions).
func (n *Network) Partition(a, b []*Host) {
	for _, x := range a {
		for _, y := range b {
			if x != y {
				n.link(x.ID, y.ID).partitioned = true
				n.link(y.ID, x.ID).partitioned = true
			}
		}
	}
}

// Partitioned reports whether a and b are cut off from each other.
func (n *Network) Partitioned(a, b *Host) bool { return n.link(a.ID, b.ID).partitioned }

// HealAll removes every partition. Held bytes are sent again, in order per
// connection, with fresh delays; credits owed are paid.
func (n *Network) HealAll() {
	for _, from := range n.hosts {
		for _, to := range n.hosts {
			l := n.links[[2]int{from.ID, to.ID}]
			if l == nil || !l.partitioned {
				continue
			}
			l.partitioned = false
			held := l.held
			l.held = nil
			for _, hc := range held {
				hc := hc
				at := n.s.now.Add(n.delay(l))
				sender := hc.to.peer()
				if at.Before(sender.lastArrival) {
					at = sender.lastArrival
				}
				sender.lastArrival = at
				n.s.At(at, func() { n.arrive(l, hc.to, hc.c) })
			}
		}
	}
	for _, h := range n.hosts {
		for _, ep := range append([]*Endpoint(nil), h.eps...) {
			if ep.owed > 0 && !ep.Conn.blackhole {
				k := ep.owed
				ep.owed = 0
				ep.Consume(k)
			}
		}
	}
}

// Reset resets a connection from the middle: both ends hear Closed(true)
// after their link's delay (or never, across a partition).
func (n *Network) Reset(c *Conn) {
	n.Stats.Resets++
	for _, ep := range c.ends {
		if ep == nil || ep.closed {
			continue
		}
		ep.sendQ = ep.sendQ[:0]
		ep.finPending = false
		// The reset reaches this end as if its peer had sent it.
		n.send(ep.peer(), chunk{kind: chRst})
	}
}

// HalfOpen makes a connection half-open: from now on nothing crosses it,
// the end on side (0 dialler, 1 acceptor) hears Closed(true) at once and
// the other end still believes it is connected until its own timeouts.
func (n *Network) HalfOpen(c *Conn, side int) {
	c.blackhole = true
	ep := c.ends[side]
	if ep == nil || ep.closed {
		return
	}
	ep.markClosed()
	n.s.Record(KindReset, ep.Host.ID, c.ID, nil)
	h := ep.h
	n.s.After(0, func() {
		if h != nil {
			h.Closed(ep, true)
		}
	})
}

// Crash takes a host down: every endpoint on it vanishes (its peers get a
// reset, as the kernel of a crashed process sends) and it accepts nothing
// until Up. Handlers on the host hear nothing.
func (h *Host) Crash() {
	h.down = true
	eps := append([]*Endpoint(nil), h.eps...)
	for _, ep := range eps {
		ep.Abort()
	}
	h.eps = h.eps[:0]
	clear(h.listeners)
}

// Up brings a crashed host back (its processes listen again themselves).
func (h *Host) Up() { h.down = false }

// Conns returns the open connections with an end on h, in opening order.
func (h *Host) Conns() []*Conn {
	var out []*Conn
	for _, ep := range h.eps {
		out = append(out, ep.Conn)
	}
	return out
}
