package sim

import (
	"strconv"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// FirehoseSpec is a stream of small QoS 1 messages from one client to
// another, fast enough that the subscriber's session allocates more than
// 65535 packet identifiers: the broker's identifiers wrap (65535 → 1,
// never 0, never one in use). Both clients run on the broker's host, in a
// tenant of their own (nobody else sees the stream), the subscriber on a
// clean session, so that only a crash restarts its count.
type FirehoseSpec struct {
	// Prob is the share of runs that have one (drawn from the seed).
	Prob   float64
	Tenant string
	// Messages is how many the publisher sends, in bursts of Burst every
	// Every, starting at a random instant of the workload phase's first
	// half.
	Messages, Burst int
	Every           time.Duration
}

// DefaultFirehose runs in a third of the runs: 70000 messages in bursts of
// 500 every 5 ms (under a second of virtual time at full speed, so that a
// crash seldom cuts it short).
func DefaultFirehose() FirehoseSpec {
	return FirehoseSpec{Prob: 1.0 / 3, Tenant: "initech", Messages: 70000, Burst: 500, Every: 5 * time.Millisecond}
}

// firehose drives the pair.
type firehose struct {
	spec     *FirehoseSpec
	pub, sub *Client
	sent     int
	next     *Event // the next burst
}

// newFirehose creates the pair (the caller decided that this run has one).
func (w *World) newFirehose(spec *FirehoseSpec) {
	f := &firehose{spec: spec}
	w.firehose = f
	mk := func(id string) *Client {
		cs := ClientSpec{ClientID: id, Tenant: spec.Tenant, Version: packet.V5, KeepAlive: 30}
		c := newClient(w, w.BrokerHost, cs, len(w.Clients))
		c.fh = f
		w.Clients = append(w.Clients, c)
		return c
	}
	f.sub, f.pub = mk("firehose-sub"), mk("firehose-pub")
	s := w.Sim
	s.After(0, func() { f.sub.Connect(false) })
	start := s.Uniform(time.Second, max(time.Second, w.Scenario.Duration/2))
	s.After(start, func() { f.pub.Connect(false) })
}

// connected runs at each CONNACK of either client.
func (f *firehose) connected(c *Client) {
	if c == f.sub {
		c.Subscribe("f/#", packet.QoS1)
		return
	}
	if f.next == nil || f.next.done {
		f.burst()
	}
}

// burst publishes the next burst, as far as the broker's Receive Maximum
// lets it, and schedules the next.
func (f *firehose) burst() {
	c := f.pub
	if !c.Up() || f.sent >= f.spec.Messages || c.w.stopping {
		return
	}
	for i := 0; i < f.spec.Burst && f.sent < f.spec.Messages && len(c.outq) < int(c.srvRecvMax); i++ {
		c.Publish("f/"+strconv.Itoa(f.sent%4), packet.QoS1, false, 8, false)
		f.sent++
	}
	f.next = c.w.Sim.After(f.spec.Every, f.burst)
}

// disconnected runs when either client lost its connection: it comes back.
func (f *firehose) disconnected(c *Client) {
	c.w.Sim.After(100*time.Millisecond, func() {
		if c.state == cDown {
			c.Connect(false)
		}
	})
}
