package broker

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	tenantpkg "github.com/skybridge-mq/skybridge/impl/tenant"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// An audience serves the shared groups named for it, compared by group
// name and filter, nothing near them.
func TestAudienceServes(t *testing.T) {
	t.Parallel()
	tr := topic.NewTrie()
	for i, f := range []string{"$share/g/a/+", "$share/g/a/#", "$share/gg/a/+", "$share/h/a/b"} {
		tr.Subscribe([]byte(f), topic.Subscription{Subscriber: topic.SubscriberID(i + 1)})
	}
	var m topic.Matches
	tr.Match([]byte("a/b"), &m)
	a := &audience{groups: []string{"$share/g/a/+", "$share/h/a/b", "$share/g/a", "share/gg/a/+"}}
	got := map[string]bool{}
	for _, g := range m.Groups {
		got["$share/"+g.Name()+"/"+g.Filter()] = a.serves(g)
	}
	want := map[string]bool{"$share/g/a/+": true, "$share/g/a/#": false, "$share/gg/a/+": false, "$share/h/a/b": true}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}

// countingCluster is a Cluster of one node that knows of other nodes'
// connections only: elsewhere is what they hold; changes records what
// this node told of its own.
type countingCluster struct {
	elsewhere atomic.Int64
	mu        sync.Mutex
	changes   []int
	refuse    error // set: Forward refuses every QoS 1/2 publish at once
}

func (*countingCluster) RouteAdded(string, string)            {}
func (*countingCluster) RouteRemoved(string, string)          {}
func (*countingCluster) AwaitRoutes(string, [][]byte)         {}
func (*countingCluster) RetainedSet(string, *message.Message) {}
func (*countingCluster) SessionEnded(string, string)          {}
func (*countingCluster) ClaimSession(string, string, string) packet.ReasonCode {
	return packet.Success
}
func (c *countingCluster) Forward(_ string, m *message.Message, done func(error)) Forwarded {
	if c.refuse != nil && done != nil && m.QoS > 0 {
		done(c.refuse) // before Forward returns, as the router's refusals
		return Forwarded{AllGroups: true, Pending: true}
	}
	return Forwarded{AllGroups: true}
}
func (c *countingCluster) ConnectionsChanged(tenant string, delta int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.changes = append(c.changes, delta)
}
func (c *countingCluster) ConnectionsElsewhere(tenant string) int64 {
	if tenant != "small" {
		return 1000
	}
	return c.elsewhere.Load()
}

// A CONNECT counts the tenant's clients on the other nodes with this
// node's against max_connections: refused with 0x97 (3.1.1: 0x03) when
// together with it they would be over the limit, though this node alone
// is below it; and the node tells the cluster each change of its count.
func TestConnectionLimitCountsOtherNodes(t *testing.T) {
	t.Parallel()
	cl := &countingCluster{}
	cl.elsewhere.Store(2)
	h := newLimited(t, func(s *tenantpkg.Settings) { s.MaxConnections = 3 })
	h.b.cfg.Cluster = cl
	a := h.dial("a", packet.V5, "small")
	a.connect("a", true, packet.Properties{}) // 1 here + 2 elsewhere
	a.expect(connack5)
	b := h.dial("b", packet.V5, "small")
	b.connect("b", true, packet.Properties{}) // would be 4
	refused(t, b, "CONNACK code=0x97")
	old := h.dial("old", packet.V311, "small")
	old.connect("old", true, packet.Properties{})
	refused(t, old, "CONNACK code=0x03") // 3.1.1: server unavailable
	cl.elsewhere.Store(1)                // one left another node
	b2 := h.dial("b2", packet.V5, "small")
	b2.connect("b2", true, packet.Properties{})
	b2.expect(connack5)
	a.leave()
	st := h.b.Stats()
	if n := st.ClusterConnectionsRefused.Load(); n != 2 {
		t.Fatalf("refusals for other nodes' clients: %d, want 2", n)
	}
	if n := st.Throttled[ThrottleConnections].Load(); n != 2 {
		t.Fatalf("connection throttles: %d, want 2", n)
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if d := cmp.Diff([]int{1, 1, -1}, cl.changes); d != "" {
		t.Fatalf("changes told to the cluster (-want +got):\n%s", d)
	}
}

// CONNECTs admitted at once on one node cannot all take the tenant's last
// place: each holds its place from the check until it is counted or
// refused.
func TestConnectionLimitHoldsPlaces(t *testing.T) {
	t.Parallel()
	h := newLimited(t, func(s *tenantpkg.Settings) { s.MaxConnections = 2 })
	b := h.b
	tn := b.acquireTenant("small")
	defer b.releaseTenant(tn)
	l := b.tenantLimits(tn)
	c := &packet.Connect{Version: packet.V5, CleanStart: true}
	now := h.clock.Now()
	if b.admitConnect(tn, l, c, "", now) != packet.Success || b.admitConnect(tn, l, c, "", now) != packet.Success {
		t.Fatal("two places of two refused")
	}
	if code := b.admitConnect(tn, l, c, "", now); code != packet.QuotaExceeded {
		t.Fatalf("a third CONNECT while two are being accepted: 0x%x, want 0x97", code)
	}
	tn.admitting.Add(-1) // one is refused later (its place comes back)
	if code := b.admitConnect(tn, l, c, "", now); code != packet.Success {
		t.Fatalf("after a place came back: 0x%x", code)
	}
}

// A cluster that refuses a QoS 1 publish at once, inside Forward (the
// router's refusals of an unrouted publish, or on a node that sees no
// majority): a 5.0 publisher is answered 0x83 and stays connected; a 3.1.1
// one, which cannot be refused, is disconnected and sends it again.
func TestClusterRefusalAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.b.cfg.Cluster = &countingCluster{refuse: errors.New("no majority")}
	p := h.dial("p", packet.V5, "t")
	p.connect("p", true, packet.Properties{})
	p.expect(connack5)
	p.send(pub("x", "m", 1, 1))
	p.expect("PUBACK id=1 code=0x83")
	p.send(pub("x", "m", 1, 2))
	p.expect("PUBACK id=2 code=0x83") // still connected
	o := h.dial("o", packet.V311, "t")
	o.connect("o", true, packet.Properties{})
	o.expect("CONNACK code=0x00")
	o.send(pub("x", "m", 1, 1))
	if got, closing := o.recv(); len(got) != 0 || !closing {
		t.Fatalf("3.1.1 publisher refused by the cluster: got %v closing=%v, want no PUBACK and a close", got, closing)
	}
}
