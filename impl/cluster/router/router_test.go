package router

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/cluster"
	"github.com/skybridge-mq/skybridge/impl/cluster/owner"
	"github.com/skybridge-mq/skybridge/impl/cluster/routes"
	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/raftkv"
)

// memKV is a linearizable store in memory whose watch events can be held
// back, as a slow watch would deliver them late.
type memKV struct {
	mu      sync.Mutex
	data    map[string][]byte
	watches []*memWatch
	hold    bool
	held    []func()
	fail    bool // writes fail
}

type memWatch struct {
	prefix []byte
	ch     chan raftkv.WatchEvent
	ctx    context.Context
}

func newMemKV() *memKV { return &memKV{data: map[string][]byte{}} }

var errDown = errors.New("memkv: down")

func (s *memKV) write(key, value []byte, del bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errDown
	}
	if del {
		delete(s.data, string(key))
	} else {
		s.data[string(key)] = bytes.Clone(value)
	}
	ev := raftkv.WatchEvent{Key: bytes.Clone(key), Value: bytes.Clone(value), Deleted: del}
	for _, w := range s.watches {
		if bytes.HasPrefix(key, w.prefix) {
			send := func() {
				select {
				case w.ch <- ev:
				case <-w.ctx.Done():
				}
			}
			if s.hold {
				s.held = append(s.held, send)
			} else {
				send()
			}
		}
	}
	return nil
}

func (s *memKV) Put(_ context.Context, key, value []byte) error { return s.write(key, value, false) }
func (s *memKV) Delete(_ context.Context, key []byte) error     { return s.write(key, nil, true) }

func (s *memKV) Get(_ context.Context, key []byte) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return nil, false, errDown
	}
	v, ok := s.data[string(key)]
	return bytes.Clone(v), ok, nil
}

func (s *memKV) CompareAndSet(_ context.Context, key, expect, value []byte) (bool, []byte, error) {
	s.mu.Lock()
	if s.fail {
		s.mu.Unlock()
		return false, nil, errDown
	}
	cur, ok := s.data[string(key)]
	if (expect == nil && ok) || (expect != nil && (!ok || !bytes.Equal(cur, expect))) {
		s.mu.Unlock()
		return false, bytes.Clone(cur), nil
	}
	s.mu.Unlock()
	return true, nil, s.write(key, value, false)
}

func (s *memKV) Scan(_ context.Context, start, end []byte, limit int) ([]raftkv.KV, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []raftkv.KV
	for k, v := range s.data {
		if k >= string(start) && (end == nil || k < string(end)) {
			out = append(out, raftkv.KV{Key: []byte(k), Value: bytes.Clone(v)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].Key, out[j].Key) < 0 })
	return out, nil, nil
}

func (s *memKV) Watch(ctx context.Context, prefix []byte, buffer int) (<-chan raftkv.WatchEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := &memWatch{prefix: bytes.Clone(prefix), ch: make(chan raftkv.WatchEvent, buffer), ctx: ctx}
	w.ch <- raftkv.WatchEvent{Reset: true}
	s.watches = append(s.watches, w)
	return w.ch, nil
}

// holdEvents holds watch events back until releaseEvents.
func (s *memKV) holdEvents() {
	s.mu.Lock()
	s.hold = true
	s.mu.Unlock()
}

func (s *memKV) releaseEvents() {
	s.mu.Lock()
	s.hold = false
	held := s.held
	s.held = nil
	s.mu.Unlock()
	for _, f := range held {
		f()
	}
}

// delivered is what a router's Deliver received.
type delivered struct {
	Tenant, Topic string
	Plain         bool
	Groups        []string
}

type testNode struct {
	*Router
	mu      sync.Mutex
	got     []delivered
	discard atomic.Bool // benchmarks: count nothing
}

func (n *testNode) received() []delivered {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.got)
}

// newNodes starts routers named ids on one store, each told the others
// are alive.
func newNodes(t testing.TB, kv KV, ids ...string) []*testNode {
	t.Helper()
	nodes := make([]*testNode, len(ids))
	for i, id := range ids {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		n := &testNode{}
		n.Router, err = New(Config{Self: id, Incarnation: 1, KV: kv, Listener: ln, SyncTimeout: 10 * time.Second,
			Deliver: func(tenant []byte, m *message.Message, plain bool, groups [][]byte) int {
				if n.discard.Load() {
					return 1
				}
				d := delivered{Tenant: string(tenant), Topic: string(m.Topic), Plain: plain}
				for _, g := range groups {
					d.Groups = append(d.Groups, string(g))
				}
				n.mu.Lock()
				n.got = append(n.got, d)
				n.mu.Unlock()
				return 1
			}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Close)
		nodes[i] = n
	}
	for _, n := range nodes {
		for _, o := range nodes {
			n.MemberChanged(cluster.Change{Member: cluster.Member{ID: o.cfg.Self, State: cluster.StateAlive,
				Meta: cluster.Meta{Incarnation: 1, Forward: o.cfg.Listener.Addr().String()}}})
		}
	}
	return nodes
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

func msg(topic string, qos packet.QoS) *message.Message {
	return &message.Message{Topic: []byte(topic), Payload: []byte("p"), QoS: qos}
}

// A SUBACK waits (AwaitRoutes) until a node whose cache holds the prefix
// has applied the new route, however late its watch event comes; then a
// message published there reaches the subscriber's node.
func TestAwaitRoutesWaitsForOtherCaches(t *testing.T) {
	t.Parallel()
	kv := newMemKV()
	nodes := newNodes(t, kv, "a", "b")
	a, b := nodes[0], nodes[1]
	// a caches the prefixes of "x/1": nothing routes there yet.
	if f := a.Forward("t", msg("x/1", 0), nil); f.Nodes != 0 || f.AllGroups {
		t.Fatalf("before any route: %+v", f)
	}
	kv.holdEvents()
	b.RouteAdded("t", "x/#")
	returned := make(chan struct{})
	go func() {
		b.AwaitRoutes("t", [][]byte{[]byte("x/#")})
		close(returned)
	}()
	waitFor(t, "the route written", func() bool { return b.Stats().RouteWrites == 1 })
	select {
	case <-returned:
		t.Fatal("AwaitRoutes returned while a's cache had not heard of the route")
	case <-time.After(300 * time.Millisecond): // long enough for a round of questions over loopback
	}
	kv.releaseEvents()
	<-returned
	if f := a.Forward("t", msg("x/1", 1), nil); f.Nodes != 1 {
		t.Fatalf("after the SUBACK: %+v", f)
	}
	waitFor(t, "b receives", func() bool { return len(b.received()) == 1 })
	if d := cmp.Diff([]delivered{{Tenant: "t", Topic: "x/1", Plain: true}}, b.received()); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	if st := b.Stats(); st.Unconfirmed != 0 || st.Received != 1 {
		t.Fatalf("b's stats %+v", st)
	}
}

// Route writes keep the latest wish per key whatever fails meanwhile, and
// a node that cannot read the routes refuses QoS 1 and serves QoS 0
// locally only.
func TestRouteWritesAndUnroutedPublishes(t *testing.T) {
	t.Parallel()
	kv := newMemKV()
	nodes := newNodes(t, kv, "a")
	a := nodes[0]
	kv.mu.Lock()
	kv.fail = true
	kv.mu.Unlock()
	a.RouteAdded("t", "s/+")
	a.RouteRemoved("t", "s/+")
	a.RouteAdded("t", "s/+")
	a.RouteAdded("t", "$share/g/s/#")
	waitFor(t, "a failed write", func() bool { return a.Stats().RouteWriteErrors > 0 })
	kv.mu.Lock()
	kv.fail = false
	kv.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.RoutesWritten(ctx); err != nil {
		t.Fatal(err)
	}
	kvs, _, _ := kv.Scan(ctx, []byte{'r'}, []byte{'s'}, 0)
	var got []string
	for _, p := range kvs {
		got = append(got, string(bytes.ReplaceAll(p.Key, []byte{0}, []byte("|"))))
	}
	want := []string{"r\x01ts|/#|g|a", "r\x01ts|/+||a"}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("stored routes (-want +got):\n%s", d)
	}
	// The store stops answering scans: a new prefix cannot load.
	slow := &blockingKV{KV: kv}
	b := newNodes(t, slow, "b")[0]
	b.cfg.LoadTimeout = 50 * time.Millisecond
	var errs []error
	f := b.Forward("t", msg("q/1", 1), func(err error) { errs = append(errs, err) })
	if !f.Pending || !f.AllGroups || len(errs) != 1 || errs[0] == nil {
		t.Fatalf("QoS 1 without routes: %+v, errors %v", f, errs)
	}
	if f := b.Forward("t", msg("q/1", 0), nil); f.Pending || !f.AllGroups {
		t.Fatalf("QoS 0 without routes: %+v", f)
	}
	if st := b.Stats(); st.Unrouted != 2 {
		t.Fatalf("unrouted %d, want 2", st.Unrouted)
	}
}

// blockingKV never answers a scan.
type blockingKV struct{ KV }

func (b *blockingKV) Scan(ctx context.Context, _, _ []byte, _ int) ([]raftkv.KV, []byte, error) {
	<-ctx.Done()
	return nil, nil, ctx.Err()
}

// A node that dies with QoS 1 messages unacknowledged on its link fails
// their publishers' acknowledgements instead of holding them for ever.
func TestDeadNodeAbandonsItsMessages(t *testing.T) {
	t.Parallel()
	kv := newMemKV()
	// c's address is a listener that accepts and never answers.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	nodes := newNodes(t, kv, "a")
	a := nodes[0]
	a.MemberChanged(cluster.Change{Member: cluster.Member{ID: "c", State: cluster.StateAlive,
		Meta: cluster.Meta{Incarnation: 1, Forward: mute.Addr().String()}}})
	if err := kv.Put(context.Background(), mustRouteKey(t, "t", "d/#", "c"), []byte{1}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	f := a.Forward("t", msg("d/1", 1), func(err error) { done <- err })
	if f.Nodes != 1 || !f.Pending {
		t.Fatalf("forward to c: %+v", f)
	}
	select {
	case err := <-done:
		t.Fatalf("done before c answered: %v", err)
	default:
	}
	a.MemberChanged(cluster.Change{Member: cluster.Member{ID: "c", State: cluster.StateDead, Meta: cluster.Meta{Incarnation: 1}}})
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("abandoned message reported as taken")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the dead node's message was never settled")
	}
	if st := a.Stats(); st.Abandoned != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Dead: no longer a destination.
	if f := a.Forward("t", msg("d/2", 1), nil); f.Nodes != 0 {
		t.Fatalf("forward after c died: %+v", f)
	}
}

func mustRouteKey(t *testing.T, tenant, filter, node string) []byte {
	t.Helper()
	k, err := routes.Key(routes.Route{Tenant: tenant, Filter: filter, Node: node})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The retained messages of the store reach Config.Retained: all at first,
// then each change; a key deleted while the watch was down is deleted on
// the next load.
func TestRetainedFollowsTheStore(t *testing.T) {
	t.Parallel()
	kv := newMemKV()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	held := map[string]string{} // tenant/topic → payload
	r, err := New(Config{Self: "a", Incarnation: 1, KV: kv, Listener: ln,
		Deliver: func([]byte, *message.Message, bool, [][]byte) int { return 0 },
		Retained: func(tenant []byte, m *message.Message) {
			mu.Lock()
			defer mu.Unlock()
			if len(m.Payload) == 0 {
				delete(held, string(tenant)+"/"+string(m.Topic))
			} else {
				held[string(tenant)+"/"+string(m.Topic)] = string(m.Payload)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	state := func() map[string]string {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(held)
	}
	r.RetainedSet("t", &message.Message{Topic: []byte("s/1"), Payload: []byte("x"), QoS: 1})
	r.RetainedSet("u", &message.Message{Topic: []byte("s/1"), Payload: []byte("y")})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.RoutesWritten(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.FollowRetained():
	case <-ctx.Done():
		t.Fatal("first load")
	}
	if d := cmp.Diff(map[string]string{"t/s/1": "x", "u/s/1": "y"}, state()); d != "" {
		t.Fatalf("first load (-want +got):\n%s", d)
	}
	r.RetainedSet("t", &message.Message{Topic: []byte("s/1"), Payload: []byte("z")})
	r.RetainedSet("u", &message.Message{Topic: []byte("s/1")}) // deletes
	waitFor(t, "changes applied", func() bool { return cmp.Equal(map[string]string{"t/s/1": "z"}, state()) })
	// A deletion the watch does not report (it was down) is found by the
	// next load, after the watch ends.
	kv.mu.Lock()
	delete(kv.data, string(retainedKey("t", []byte("s/1"))))
	watches := kv.watches
	kv.watches = nil
	kv.mu.Unlock()
	for _, w := range watches {
		close(w.ch)
	}
	waitFor(t, "reload", func() bool { return len(state()) == 0 })
	if st := r.Stats(); st.BadRetained != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A session is owned by one node at a time: a claim on another node makes
// the owner end it first (EndSession), the owner's later claim takes it
// back the same way, and an owner that is gone is not asked.
func TestClaimSessionEndsItOnTheOwner(t *testing.T) {
	t.Parallel()
	kv := newMemKV()
	nodes := newNodes(t, kv, "a", "b")
	a, b := nodes[0], nodes[1]
	var mu sync.Mutex
	var ended []string
	for _, n := range nodes {
		n.cfg.EndSession = func(tenant, clientID, user string) bool {
			mu.Lock()
			defer mu.Unlock()
			if clientID == "alice-device" && user != "alice" {
				return false // alice's session: only alice takes it over
			}
			ended = append(ended, n.cfg.Self+":"+tenant+"/"+clientID)
			return true
		}
	}
	endedNow := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(ended)
	}
	if code := a.ClaimSession("t", "dev", "u"); code != 0 {
		t.Fatalf("a's first claim: 0x%x", code)
	}
	if code := a.ClaimSession("t", "dev", "u"); code != 0 || len(endedNow()) != 0 {
		t.Fatalf("a again (its own session: the broker takes it over itself): 0x%x, ended %v", code, endedNow())
	}
	if code := b.ClaimSession("t", "dev", "u"); code != 0 {
		t.Fatalf("b's claim: 0x%x", code)
	}
	if d := cmp.Diff([]string{"a:t/dev"}, endedNow()); d != "" {
		t.Fatalf("ended (-want +got):\n%s", d)
	}
	if code := a.ClaimSession("t", "dev", "u"); code != 0 {
		t.Fatalf("a takes it back: 0x%x", code)
	}
	if d := cmp.Diff([]string{"a:t/dev", "b:t/dev"}, endedNow()); d != "" {
		t.Fatalf("ended (-want +got):\n%s", d)
	}
	v, _, _ := kv.Get(context.Background(), owner.Key("t", "dev"))
	rec, err := owner.Decode(v)
	if err != nil || rec.Node != "a" || rec.Epoch != 4 {
		t.Fatalf("record %+v %v, want a at epoch 4", rec, err)
	}
	// Another user's session stays with its owner: the claim is refused
	// with 0x87 and nothing ends.
	if code := a.ClaimSession("t", "alice-device", "alice"); code != 0 {
		t.Fatal(code)
	}
	if code := b.ClaimSession("t", "alice-device", "mallory"); code != packet.NotAuthorized {
		t.Fatalf("mallory's claim of alice's session: 0x%x, want 0x87", code)
	}
	if code := b.ClaimSession("t", "alice-device", "alice"); code != 0 {
		t.Fatalf("alice's own claim: 0x%x", code)
	}
	if d := cmp.Diff([]string{"a:t/dev", "b:t/dev", "a:t/alice-device"}, endedNow()); d != "" {
		t.Fatalf("ended (-want +got):\n%s", d)
	}
	// b dies: a claim from a takes its sessions without asking.
	if code := b.ClaimSession("t", "other", "u"); code != 0 {
		t.Fatal(code)
	}
	a.MemberChanged(cluster.Change{Member: cluster.Member{ID: "b", State: cluster.StateDead, Meta: cluster.Meta{Incarnation: 1}}})
	b.Close()
	if code := a.ClaimSession("t", "other", "u"); code != 0 {
		t.Fatalf("claim from a dead owner: 0x%x", code)
	}
	if got := endedNow(); len(got) != 3 {
		t.Fatalf("a dead node was asked: %v", got)
	}
	// The store fails: the claim is refused with 0x88.
	kv.mu.Lock()
	kv.fail = true
	kv.mu.Unlock()
	if code := a.ClaimSession("t", "third", "u"); code != packet.ServerUnavailable {
		t.Fatalf("store down: 0x%x, want 0x88", code)
	}
	if st := a.Stats(); st.Claims != 5 || st.ClaimsRefused != 1 || st.Released != 2 {
		t.Fatalf("a's stats %+v", st)
	}
}

// A node that sees no majority of the members it knows of alive (those
// that left do not count, dead ones do) refuses QoS 1/2 publishes: it may be
// the minority side of a partition, whose subscribers on the other side
// it takes for gone. QoS 0 goes on.
func TestMinorityRefusesQoS1(t *testing.T) {
	t.Parallel()
	a := newNodes(t, newMemKV(), "a")[0]
	set := func(id string, st cluster.State) {
		a.MemberChanged(cluster.Change{Member: cluster.Member{ID: id, State: st, Meta: cluster.Meta{Incarnation: 1}}})
	}
	publish := func(qos packet.QoS) (refused bool) {
		var got error
		f := a.Forward("t", msg("x", qos), func(err error) { got = err })
		if f.Pending != (got != nil) {
			t.Fatalf("pending %v with done(%v)", f.Pending, got)
		}
		return got != nil
	}
	steps := []struct {
		id    string
		state cluster.State
		qos1  bool // QoS 1 refused after the step
	}{
		{"b", cluster.StateAlive, false},  // a, b: 2 of 2
		{"c", cluster.StateAlive, false},  // 3 of 3
		{"b", cluster.StateDead, false},   // 2 of 3
		{"c", cluster.StateSuspect, true}, // a suspect is not alive: 1 of 3
		{"c", cluster.StateDead, true},    // 1 of 3
		{"c", cluster.StateAlive, false},  // back: 2 of 3
		{"b", cluster.StateLeft, false},   // 2 of 2
		{"c", cluster.StateDead, true},    // 1 of 2
		{"d", cluster.StateAlive, false},  // 2 of 3
	}
	var got, want []bool
	refusals := 0
	for _, s := range steps {
		set(s.id, s.state)
		got = append(got, publish(1))
		want = append(want, s.qos1)
		if s.qos1 {
			refusals++
			if publish(0) {
				t.Fatalf("after %s %v: QoS 0 refused", s.id, s.state)
			}
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("QoS 1 refused per step (-want +got):\n%s", d)
	}
	if st := a.Stats(); st.Minority != uint64(refusals) {
		t.Fatalf("minority refusals %d, want %d", st.Minority, refusals)
	}
}
