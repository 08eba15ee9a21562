package clustersim

import (
	"encoding/binary"
	"maps"
	"slices"
	"time"

	"github.com/skybridge-mq/skybridge/impl/cluster"
	"github.com/skybridge-mq/skybridge/sim"
)

// node is one process: its Membership, its failure detector, its links.
type node struct {
	w        *world
	id       string
	host     *sim.Host
	up, left bool
	leaving  bool
	gen      uint64 // bumped at each start and stop: timers of an old life do nothing
	inc      uint64
	m        *cluster.Membership
	version  uint64
	peers    map[string]*peer
	leftSet  map[string]uint64 // peers known to have left, at which incarnation
}

// peer is what a node knows of another: the link it writes on, and what
// its detector last reported.
type peer struct {
	out      *sim.Endpoint
	heard    time.Time
	meta     cluster.Meta
	known    bool
	reported cluster.Kind
	seq      uint64
	tried    time.Time // last heartbeat written while reported dead
}

func (n *node) meta() cluster.Meta {
	return cluster.Meta{Cluster: "sim", Incarnation: n.inc, Roles: cluster.Roles(0), Leaving: n.leaving}
}

// start runs a new incarnation: a fresh Membership (a process remembers
// nothing), links to every other node, heartbeats, the detector.
func (n *node) start() {
	w := n.w
	n.host.Up()
	n.up, n.leaving = true, false
	n.gen++
	w.incs[n.id]++
	n.inc = w.incs[n.id]
	m, err := cluster.NewMembership(n.id, n.meta(), cluster.Options{})
	if err != nil {
		w.fail("%s: NewMembership: %v", n.id, err)
		return
	}
	n.m, n.version = m, 0
	n.peers, n.leftSet = map[string]*peer{}, map[string]uint64{}
	w.note("start", n.id)
	n.host.Listen(port, func(ep *sim.Endpoint) sim.Handler { return &inbound{n: n, gen: n.gen} })
	for _, o := range w.nodes {
		if o != n {
			n.peers[o.id] = &peer{}
			n.dial(o.id)
		}
	}
	n.every(w.o.HeartbeatEvery, n.heartbeat)
	n.every(w.o.HeartbeatEvery/2, n.detect)
}

// every runs fn each period while this life lasts.
func (n *node) every(period time.Duration, fn func()) {
	gen := n.gen
	var tick func()
	tick = func() {
		if n.gen != gen {
			return
		}
		fn()
		n.w.s.After(period, tick)
	}
	n.w.s.After(n.w.s.Uniform(0, period), tick)
}

func (n *node) dial(to string) {
	gen := n.gen
	p := n.peers[to]
	p.out = n.host.Dial(to, port, &outbound{n: n, gen: gen, to: to})
	// A SYN lost in a partition is never answered: give up and dial again.
	n.w.s.After(2*time.Second, func() {
		if n.gen == gen && p.out != nil && !p.out.Open() && !p.out.IsClosed() {
			p.out.Abort()
			p.out = nil
			n.dial(to)
		}
	})
}

func (n *node) crash() {
	n.w.note("crash", n.id)
	n.up = false
	n.gen++
	n.host.Crash()
}

// leave says so in every heartbeat for a while, then stops.
func (n *node) leave() {
	n.w.note("leave", n.id)
	n.leaving = true
	n.heartbeat()
	gen := n.gen
	n.w.s.After(time.Second, func() {
		if n.gen == gen {
			n.left = true
			n.crash()
		}
	})
}

// heartbeat: | len(id) | id | uvarint len(meta) | meta | uvarint count | (len(id) id uvarint inc)... |
func (n *node) heartbeat() {
	meta, err := n.meta().Encode()
	if err != nil {
		n.w.fail("%s: Encode: %v", n.id, err)
		return
	}
	var b []byte
	b = append(b, byte(len(n.id)))
	b = append(b, n.id...)
	b = binary.AppendUvarint(b, uint64(len(meta)))
	b = append(b, meta...)
	ids := slices.Sorted(maps.Keys(n.leftSet))
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = append(b, byte(len(id)))
		b = append(b, id...)
		b = binary.AppendUvarint(b, n.leftSet[id])
	}
	frame := binary.AppendUvarint(nil, uint64(len(b)))
	frame = append(frame, b...)
	now := n.w.s.Now()
	for _, id := range slices.Sorted(maps.Keys(n.peers)) {
		p := n.peers[id]
		if p.out == nil || !p.out.Open() {
			continue
		}
		switch p.reported {
		case cluster.Left:
			continue
		case cluster.Dead:
			if now.Sub(p.tried) < n.w.o.ReconnectEvery {
				continue
			}
			p.tried = now
		}
		p.out.Write(frame)
	}
}

// received handles one heartbeat.
func (n *node) received(b []byte) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		n.w.fail("%s: short heartbeat", n.id)
		return
	}
	from := string(b[1 : 1+int(b[0])])
	b = b[1+int(b[0]):]
	ml, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < ml {
		n.w.fail("%s: bad heartbeat from %s", n.id, from)
		return
	}
	meta, err := cluster.DecodeMeta(b[k : k+int(ml)])
	if err != nil {
		n.w.fail("%s: DecodeMeta: %v", n.id, err)
		return
	}
	b = b[k+int(ml):]
	p := n.peers[from]
	if p == nil {
		return
	}
	if p.known && meta.Incarnation < p.meta.Incarnation {
		return // a late heartbeat of an earlier life
	}
	newInc := !p.known || meta.Incarnation > p.meta.Incarnation
	p.heard, p.known = n.w.s.Now(), true
	switch {
	case meta.Leaving:
		p.meta = meta
		if p.reported != cluster.Left || newInc {
			n.report(from, p, cluster.Left)
		}
		n.leftSet[from] = meta.Incarnation
	case newInc || p.reported != cluster.Joined && p.reported != cluster.Updated:
		p.meta = meta
		delete(n.leftSet, from)
		n.report(from, p, cluster.Joined)
	}
	// The sender's left set: nodes it saw leave.
	cnt, k := binary.Uvarint(b)
	if k <= 0 {
		return
	}
	b = b[k:]
	for range cnt {
		if len(b) < 1 || len(b) < 1+int(b[0]) {
			return
		}
		id := string(b[1 : 1+int(b[0])])
		b = b[1+int(b[0]):]
		inc, k := binary.Uvarint(b)
		if k <= 0 {
			return
		}
		b = b[k:]
		q := n.peers[id]
		if q == nil || !q.known || q.meta.Incarnation != inc || q.reported == cluster.Left {
			continue // not known at that incarnation (never heard of, or back since)
		}
		q.meta.Leaving = true
		n.leftSet[id] = inc
		n.report(id, q, cluster.Left)
	}
}

// detect reports peers unheard for too long.
func (n *node) detect() {
	now := n.w.s.Now()
	for _, id := range slices.Sorted(maps.Keys(n.peers)) {
		p := n.peers[id]
		if !p.known {
			continue
		}
		silent := now.Sub(p.heard)
		switch p.reported {
		case cluster.Joined, cluster.Updated:
			if silent > n.w.o.SuspectAfter {
				n.report(id, p, cluster.Suspect)
			}
		case cluster.Suspect:
			if silent > n.w.o.DeadAfter {
				n.report(id, p, cluster.Dead)
			}
		}
	}
}

// report applies one report to the node's Membership, as the gossip
// runtime does with memberlist's, and checks what Apply says.
func (n *node) report(id string, p *peer, k cluster.Kind) {
	p.seq++
	p.reported = k
	before, had := n.m.Member(id)
	ch := n.m.Apply(cluster.Event{Kind: k, Node: id, Seq: p.seq, Meta: p.meta})
	w := n.w
	w.note("report", n.id, id, k.String(), ch.Outcome.String())
	switch ch.Outcome {
	case cluster.Refused:
		w.fail("%s refused a report about %s (%v incarnation %d): %s", n.id, id, k, p.meta.Incarnation, ch.Reason)
	case cluster.Stale:
		w.fail("%s took its own report about %s (%v, seq %d) as stale", n.id, id, k, p.seq)
	}
	if ch.Version < n.version {
		w.fail("%s's view went back from version %d to %d", n.id, n.version, ch.Version)
	}
	n.version = ch.Version
	if had && p.meta.Incarnation > before.Incarnation && !ch.Restarted {
		w.fail("%s: %s came back at incarnation %d (was %d) without Restarted", n.id, id, p.meta.Incarnation, before.Incarnation)
	}
	if ch.Restarted {
		w.res.Restarted++
	}
	switch k {
	case cluster.Suspect:
		w.res.Suspects++
	case cluster.Dead:
		w.res.Deaths++
	}
	if self, _ := n.m.Member(n.id); self.State != cluster.StateAlive || !self.Local {
		w.fail("%s's view of itself: %+v", n.id, self)
	}
}

// outbound is the connection a node writes its heartbeats on.
type outbound struct {
	n   *node
	gen uint64
	to  string
}

func (o *outbound) Opened(ep *sim.Endpoint)         {}
func (o *outbound) Writable(ep *sim.Endpoint)       {}
func (o *outbound) Data(ep *sim.Endpoint, b []byte) { ep.Consume(len(b)) }
func (o *outbound) Closed(ep *sim.Endpoint, _ bool) {
	n := o.n
	if n.gen != o.gen {
		return
	}
	p := n.peers[o.to]
	if p.out != ep {
		return
	}
	p.out = nil
	gen := n.gen
	n.w.s.After(300*time.Millisecond, func() {
		if n.gen == gen && p.out == nil {
			n.dial(o.to)
		}
	})
}

// inbound reads heartbeats.
type inbound struct {
	n   *node
	gen uint64
	buf []byte
}

func (in *inbound) Opened(ep *sim.Endpoint)    {}
func (in *inbound) Writable(ep *sim.Endpoint)  {}
func (in *inbound) Closed(*sim.Endpoint, bool) {}
func (in *inbound) Data(ep *sim.Endpoint, b []byte) {
	ep.Consume(len(b))
	if in.n.gen != in.gen {
		return
	}
	in.buf = append(in.buf, b...)
	for {
		l, k := binary.Uvarint(in.buf)
		if k <= 0 || uint64(len(in.buf)-k) < l {
			return
		}
		in.n.received(in.buf[k : k+int(l)])
		in.buf = in.buf[k+int(l):]
	}
}
