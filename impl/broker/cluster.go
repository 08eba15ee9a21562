package broker

import (
	"bytes"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/session"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// Cluster connects the broker to the other nodes of a cluster
// (docs/CLUSTER.md); nil in Config is a standalone broker. Its
// implementation is a runtime (impl/cluster/router): the broker calls it
// and never waits on the network itself, and it must not call back into
// the broker from within these calls.
type Cluster interface {
	// RouteAdded says this node now holds a first subscription to filter
	// (a $share/group/filter name for a shared group) in tenant;
	// RouteRemoved that it holds none any more. They come in the order of
	// the changes, with the tenant's routes locked: they must not block.
	RouteAdded(tenant, filter string)
	RouteRemoved(tenant, filter string)
	// AwaitRoutes returns once every node has confirmed it will forward
	// what matches filters (routes of this node in tenant) to this node,
	// or after a bound: a SUBACK waits for it, so that a message
	// published anywhere after the SUBACK reaches the subscription.
	AwaitRoutes(tenant string, filters [][]byte)
	// Forward sends m, published on this node (by a client or as a will),
	// to the other nodes whose subscriptions match, and says which shared
	// groups this node serves itself. done, when not nil, is called once,
	// from any goroutine, when every node it went to took it (err nil) or
	// when one could not; it is called only if Forwarded.Pending. Forward
	// may wait for the routes it needs, bounded.
	Forward(tenant string, m *message.Message, done func(error)) Forwarded
	// RetainedSet makes m (owned) the retained message of its topic on
	// every node (an empty payload deletes it); the nodes apply it with
	// ApplyRetained, this one included. It must not block.
	RetainedSet(tenant string, m *message.Message)
	// ClaimSession makes this node the owner of a session for user before
	// a CONNECT goes on, ending it on another node that owned it (which
	// refuses, 0x87, when the session is another user's and the tenant
	// does not allow takeovers: EndTakenOver); it returns 0, or the
	// CONNACK's reason code. It may wait, bounded.
	ClaimSession(tenant, clientID, user string) packet.ReasonCode
	// SessionEnded says a session is gone from this node.
	SessionEnded(tenant, clientID string)
	// ConnectionsChanged says this node's number of connected clients of
	// tenant moved by delta (+1 at an accepted CONNECT, -1 when its
	// connection ends). It must not block.
	ConnectionsChanged(tenant string, delta int)
	// ConnectionsElsewhere returns the connected clients of tenant on the
	// other live nodes, as last heard of: a CONNECT adds it to this
	// node's own against the tenant's max_connections. It must not block.
	ConnectionsElsewhere(tenant string) int64
}

// Forwarded is what Cluster.Forward did with a message.
type Forwarded struct {
	Nodes   int  // the other nodes it went to
	Pending bool // done will be called
	// AllGroups: serve every local shared group (the routes were not
	// known: the node behaves as a standalone one for this message).
	// Otherwise Groups names the groups this node was picked for.
	AllGroups bool
	Groups    []string
}

// audience is which of a tenant's matching subscriptions a routing
// serves, when a cluster node chose for this node: plain ones unless
// noPlain, and one member of each group named ($share/group/filter).
type audience struct {
	noPlain bool
	groups  []string
}

// serves reports whether group g is in the audience.
func (a *audience) serves(g *topic.Group) bool {
	name, filter := g.Name(), g.Filter()
	for _, full := range a.groups {
		// "$share/" name "/" filter, compared without building it.
		if len(full) == 7+len(name)+1+len(filter) && isShared(full) &&
			full[7:7+len(name)] == name && full[7+len(name)] == '/' && full[8+len(name):] == filter {
			return true
		}
	}
	return false
}

// routeAdded and routeRemoved keep the tenant's count of local
// subscriptions per filter (localSubs) and tell the cluster of a filter's
// first and last one; the caller holds t.routesMu for writing.
func (b *Broker) routeAdded(t *tenant, filter string) {
	cl := b.cfg.Cluster
	if cl == nil && !isShared(filter) {
		return
	}
	t.localSubs[filter]++
	if cl != nil && t.localSubs[filter] == 1 {
		cl.RouteAdded(t.name, filter)
	}
}

func (b *Broker) routeRemoved(t *tenant, filter string) {
	n, ok := t.localSubs[filter]
	switch {
	case !ok:
	case n > 1:
		t.localSubs[filter] = n - 1
	default:
		delete(t.localSubs, filter)
		if cl := b.cfg.Cluster; cl != nil {
			cl.RouteRemoved(t.name, filter)
		}
	}
}

// connectedAdd moves the tenant's count of connected clients by d and
// tells the cluster.
func (b *Broker) connectedAdd(t *tenant, d int64) {
	t.connected.Add(d)
	if cl := b.cfg.Cluster; cl != nil {
		cl.ConnectionsChanged(t.name, int(d))
	}
}

func isShared(filter string) bool { return len(filter) > 7 && filter[:7] == "$share/" }

// forward hands a message published on this node to the cluster and
// returns the audience its local routing serves (nil: all).
func (b *Broker) forward(t *tenant, m *message.Message, done func(error)) (Forwarded, *audience) {
	cl := b.cfg.Cluster
	if cl == nil || isSys(m.Topic) {
		return Forwarded{AllGroups: true}, nil
	}
	f := cl.Forward(t.name, m, done)
	switch {
	case f.AllGroups:
		return f, nil
	case len(f.Groups) == 0:
		return f, &noGroups // the common case allocates nothing
	}
	return f, &audience{groups: f.Groups}
}

// noGroups is the audience of every plain subscription and no group.
var noGroups = audience{}

func isSys(topicName []byte) bool { return bytes.HasPrefix(topicName, []byte("$SYS")) }

// DeliverForwarded routes a message another node forwarded to this node's
// sessions of tenant: those with plain subscriptions when plain, and one
// member of each shared group in groups. It is never forwarded again. It
// returns how many sessions it reached; m may be borrowed (it is copied
// for what keeps it). Retained messages are not stored here: the
// publisher's node keeps them.
func (b *Broker) DeliverForwarded(tenant []byte, m *message.Message, plain bool, groups [][]byte) int {
	b.mu.Lock()
	t := b.tenants[string(tenant)]
	b.mu.Unlock()
	if t == nil {
		return 0 // no session of the tenant here: nothing subscribes
	}
	var rs routeScratch
	a := &audience{noPlain: !plain}
	for _, g := range groups {
		a.groups = append(a.groups, string(g))
	}
	n := b.routeFor(t, m, &rs, &instant{t: b.env.Clock.Now()}, nil, a)
	b.commitRoute(&rs)
	return n
}

// ApplyRetained makes m the retained message of its topic in tenant on
// this node (an empty payload deletes it), as the cluster's retained
// messages say, without telling the cluster again. m may be borrowed.
func (b *Broker) ApplyRetained(tenant []byte, m *message.Message) {
	t := b.acquireTenant(string(tenant))
	defer b.releaseTenant(t)
	m = m.Own()
	m.Retain = true
	var rs routeScratch
	b.storeRetained(t, m, &rs)
	b.commitRoute(&rs)
}

// Drain makes this node send clients elsewhere: every connected 5.0
// client gets DISCONNECT 0x9C (use another server) with ref's Server
// Reference (3.1.1 clients are closed), and every CONNECT until Undrain
// is refused the same way (CONNACK 0x9C with the reference; 3.1.1: server
// unavailable). ref is asked once per client; "" sends no reference.
// conns lists the connections to move (the runtime knows them).
func (b *Broker) Drain(ref func() string, conns []*Conn) {
	b.draining.Store(&ref)
	for _, c := range conns {
		c.KickTo(packet.UseAnotherServer, ref())
	}
}

// Undrain ends Drain: CONNECTs are accepted again.
func (b *Broker) Undrain() { b.draining.Store(nil) }

// Draining reports whether the node sends clients elsewhere.
func (b *Broker) Draining() bool { return b.draining.Load() != nil }

// awaitRoutes holds a SUBSCRIBE's acknowledgement until the cluster's
// nodes know its new routes (Cluster.AwaitRoutes). No lock is held: only
// this client's packets wait.
func (b *Broker) awaitRoutes(t *tenant, reqs []session.SubRequest) {
	cl := b.cfg.Cluster
	if cl == nil {
		return
	}
	var filters [][]byte
	for i := range reqs {
		if !reqs[i].Reason.IsError() {
			filters = append(filters, reqs[i].Filter)
		}
	}
	if len(filters) > 0 {
		cl.AwaitRoutes(t.name, filters)
	}
}

// forwardDone returns the callback that releases a held acknowledgement
// once the cluster's nodes took the message.
func forwardDone(a *heldAck) func(error) {
	return func(err error) {
		if err != nil {
			a.fail(err)
		}
		a.release()
	}
}
