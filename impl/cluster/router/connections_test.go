package router

import (
	"context"
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/cluster"
	"github.com/skybridge-mq/skybridge/impl/message"
)

// A node's connection count per tenant reaches the other nodes, which
// add it up over the live nodes only: not their own, not a dead node's;
// a count back to 0 leaves no key, and a restarted node clears the counts
// its earlier run wrote.
func TestConnectionCountsReachTheOtherNodes(t *testing.T) {
	t.Parallel()
	kv := newMemKV()
	nodes := newNodes(t, kv, "a", "b", "c")
	a, b, c := nodes[0], nodes[1], nodes[2]
	a.ConnectionsChanged("t", 1)
	a.ConnectionsChanged("t", 1)
	b.ConnectionsChanged("t", 1)
	b.ConnectionsChanged("u", 1)
	waitFor(t, "c hears of a's 2 and b's 1", func() bool { return c.ConnectionsElsewhere("t") == 3 })
	waitFor(t, "a hears of b's 1", func() bool { return a.ConnectionsElsewhere("t") == 1 })
	waitFor(t, "b hears of a's 2", func() bool { return b.ConnectionsElsewhere("t") == 2 })
	if n := c.ConnectionsElsewhere("u"); n != 1 {
		t.Fatalf("c: tenant u elsewhere %d, want 1 (b's)", n)
	}
	// b dies: c no longer counts it; a suspect node still counts.
	c.MemberChanged(cluster.Change{Member: cluster.Member{ID: "b", State: cluster.StateDead, Meta: cluster.Meta{Incarnation: 1}}})
	if n := c.ConnectionsElsewhere("t"); n != 2 {
		t.Fatalf("c with b dead: %d, want a's 2", n)
	}
	c.MemberChanged(cluster.Change{Member: cluster.Member{ID: "a", State: cluster.StateSuspect, Meta: cluster.Meta{Incarnation: 1}}})
	if n := c.ConnectionsElsewhere("t"); n != 2 {
		t.Fatalf("c with a suspect: %d, want a's 2", n)
	}
	// Back to 0: the key goes.
	a.ConnectionsChanged("t", -1)
	a.ConnectionsChanged("t", -1)
	waitFor(t, "c hears a is at 0", func() bool { return c.ConnectionsElsewhere("t") == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.RoutesWritten(ctx); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := kv.Get(ctx, connKey("t", "a")); found {
		t.Fatal("a's count of 0 left a key")
	}
	// b restarts: its earlier run's counts go before it serves.
	b.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b2, err := New(Config{Self: "b", Incarnation: 2, KV: kv, Listener: ln,
		Deliver: func([]byte, *message.Message, bool, [][]byte) int { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if n, err := b2.ClearOwnKeys(ctx); err != nil || n != 2 {
		t.Fatalf("b cleared %d keys (%v), want its 2 counts", n, err)
	}
	a.MemberChanged(cluster.Change{Member: cluster.Member{ID: "b", State: cluster.StateAlive, Meta: cluster.Meta{Incarnation: 2}}})
	waitFor(t, "a hears b's counts are gone", func() bool { return a.ConnectionsElsewhere("t")+a.ConnectionsElsewhere("u") == 0 })
	if st := c.Stats(); st.BadCounts != 0 {
		t.Fatalf("c's stats %+v", st)
	}
}

// A storm of connections makes a few writes of the node's count, not one
// per CONNECT: while a write is in flight, the changes meanwhile become
// one write of the latest count.
func TestConnectionCountWritesCoalesce(t *testing.T) {
	t.Parallel()
	kv := &gatedKV{memKV: newMemKV(), gate: make(chan struct{})}
	a := newNodes(t, kv, "a")[0]
	a.ConnectionsChanged("t", 1)
	waitFor(t, "the first write in flight", func() bool { return kv.puts.Load() == 1 })
	for range 99 {
		a.ConnectionsChanged("t", 1)
	}
	for range 10 {
		a.ConnectionsChanged("t", -1)
	}
	close(kv.gate)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.RoutesWritten(ctx); err != nil {
		t.Fatal(err)
	}
	if n := kv.puts.Load(); n != 2 {
		t.Fatalf("%d writes of the count for 110 changes, want 2 (the first, then the latest)", n)
	}
	v, _, _ := kv.Get(ctx, connKey("t", "a"))
	if n, _ := binary.Uvarint(v); n != 90 {
		t.Fatalf("stored count %d, want 90", n)
	}
}

// gatedKV holds every write of a connection count until gate closes, and
// counts them.
type gatedKV struct {
	*memKV
	gate chan struct{}
	puts atomic.Int64
}

func (g *gatedKV) Put(ctx context.Context, key, value []byte) error {
	if len(key) > 0 && key[0] == connTag {
		g.puts.Add(1)
		<-g.gate
	}
	return g.memKV.Put(ctx, key, value)
}
