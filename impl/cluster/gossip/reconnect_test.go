package gossip

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/memberlist"

	"github.com/skybridge-mq/skybridge/impl/cluster"
)

func TestReconnectTargets(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_000_000, 0)
	view := func(states ...cluster.State) cluster.View {
		v := cluster.View{Members: []cluster.Member{{ID: "self", State: cluster.StateAlive, Local: true}}}
		for i, s := range states {
			v.Members = append(v.Members, cluster.Member{ID: fmt.Sprintf("n%d", i), State: s})
		}
		return v
	}
	var b reconnectBook
	b.init(6)
	b.setAddr("self", "10.0.0.9:7946")
	for i := range 4 {
		b.setAddr(fmt.Sprintf("n%d", i), fmt.Sprintf("10.0.0.%d:7946", i))
	}
	b.setAddr("gone", "10.0.0.99:7946") // not in the view: kept while 6 addresses at most
	seeds := []string{"10.0.0.0:7946", "seed.example:7946", "10.0.0.9:7946"}
	const timeout = time.Hour
	type got struct {
		Addrs  []string
		GaveUp int
	}
	try := func(v cluster.View, now time.Time, max int) got {
		a, g := b.targets(v, "10.0.0.9:7946", seeds, now, timeout, max)
		return got{a, g}
	}
	for _, step := range []struct {
		name string
		v    cluster.View
		now  time.Time
		max  int
		want got
	}{
		{"all alive: nobody, not even the seeds", view(cluster.StateAlive, cluster.StateAlive), t0, 8, got{}},
		{"left is not tried", view(cluster.StateAlive, cluster.StateLeft), t0, 8, got{}},
		{"a dead member, then the seeds (not itself, not twice)", view(cluster.StateAlive, cluster.StateDead, cluster.StateLeft), t0, 8,
			got{Addrs: []string{"10.0.0.1:7946", "10.0.0.0:7946", "seed.example:7946"}}},
		{"bounded", view(cluster.StateAlive, cluster.StateDead, cluster.StateLeft), t0, 1, got{Addrs: nil}},
		{"a second dead member, later", view(cluster.StateAlive, cluster.StateDead, cluster.StateLeft, cluster.StateDead), t0.Add(50 * time.Minute), 8,
			got{Addrs: []string{"10.0.0.1:7946", "10.0.0.3:7946", "10.0.0.0:7946", "seed.example:7946"}}},
		{"the first past the timeout: given up once", view(cluster.StateAlive, cluster.StateDead, cluster.StateLeft, cluster.StateDead), t0.Add(61 * time.Minute), 8,
			got{Addrs: []string{"10.0.0.3:7946", "10.0.0.0:7946", "seed.example:7946"}, GaveUp: 1}},
		{"given up is not counted again", view(cluster.StateAlive, cluster.StateDead, cluster.StateLeft, cluster.StateDead), t0.Add(62 * time.Minute), 8,
			got{Addrs: []string{"10.0.0.3:7946", "10.0.0.0:7946", "seed.example:7946"}}},
		{"both past it: nobody", view(cluster.StateAlive, cluster.StateDead, cluster.StateLeft, cluster.StateDead), t0.Add(200 * time.Minute), 8,
			got{GaveUp: 1}},
	} {
		g := try(step.v, step.now, step.max)
		if step.name == "bounded" {
			if len(g.Addrs) != 1 || g.GaveUp != 0 {
				t.Errorf("%s: %+v", step.name, g)
			}
			continue
		}
		if d := cmp.Diff(step.want, g); d != "" {
			t.Errorf("%s (-want +got):\n%s", step.name, d)
		}
	}
	if _, ok := b.addr["gone"]; !ok {
		t.Error("the address of a node not yet in the view is forgotten under the bound")
	}
	b.setAddr("gone2", "10.0.0.98:7946") // 7 > 6: those not in the view go
	try(view(cluster.StateAlive, cluster.StateDead, cluster.StateLeft, cluster.StateDead), t0, 8)
	if _, ok := b.addr["gone"]; ok || len(b.addr) != 5 {
		t.Errorf("over the bound, addresses kept: %v", b.addr)
	}
	// Alive again: the clock of its death starts over when it dies again.
	b.state(cluster.Member{ID: "n1", State: cluster.StateAlive}, t0)
	b.state(cluster.Member{ID: "n1", State: cluster.StateDead}, t0.Add(300*time.Minute))
	g := try(view(cluster.StateAlive, cluster.StateDead), t0.Add(301*time.Minute), 8)
	if d := cmp.Diff(got{Addrs: []string{"10.0.0.1:7946", "10.0.0.0:7946", "seed.example:7946"}}, g); d != "" {
		t.Errorf("dead again (-want +got):\n%s", d)
	}
}

// netGate cuts the network between the nodes whose transports share it:
// while closed, packets are dropped and dials fail.
type netGate struct{ closed atomic.Bool }

type gatedTransport struct {
	*memberlist.NetTransport
	g *netGate
}

var errCut = errors.New("test: network cut")

func (t gatedTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.g.closed.Load() {
		return time.Now(), nil
	}
	return t.NetTransport.WriteTo(b, addr)
}

func (t gatedTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.g.closed.Load() {
		return time.Now(), nil
	}
	return t.NetTransport.WriteToAddress(b, a)
}

func (t gatedTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.g.closed.Load() {
		return nil, errCut
	}
	return t.NetTransport.DialTimeout(addr, timeout)
}

func (t gatedTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.g.closed.Load() {
		return nil, errCut
	}
	return t.NetTransport.DialAddressTimeout(a, timeout)
}

// A partition that heals: both sides held each other dead (memberlist then
// neither probes nor syncs with the other), and the reconnect loop brings
// them together again, each alive at the same incarnation, not restarted.
func TestPartitionHeals(t *testing.T) {
	t.Parallel()
	g := &netGate{}
	wrap := func(nt *memberlist.NetTransport) memberlist.Transport { return gatedTransport{nt, g} }
	// memberlist gossips to a node it holds dead for GossipToTheDeadTime
	// (30 s by default) when it has news queued, which can heal a short
	// cut by itself; the cut below lasts longer than that.
	tune := func(mc *memberlist.Config) { mc.GossipToTheDeadTime = 100 * time.Millisecond }
	ca := testConfig("a", cluster.AllRoles, 1000)
	ca.wrapTransport, ca.tune, ca.ReconnectInterval = wrap, tune, 100*time.Millisecond
	a := start(t, ca)
	cb := testConfig("b", cluster.AllRoles, 2000)
	cb.Seeds = nil // neither holds a seed: each tries the address it knew
	cb.wrapTransport, cb.tune, cb.ReconnectInterval = wrap, tune, 100*time.Millisecond
	b := start(t, cb)
	if _, err := b.ml.Join([]string{a.GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	sees(t, a, "b", cluster.StateAlive)
	sees(t, b, "a", cluster.StateAlive)

	g.closed.Store(true)
	sees(t, a, "b", cluster.StateDead)
	sees(t, b, "a", cluster.StateDead)
	// Five rounds each (about 0.5 s): past GossipToTheDeadTime, and the
	// dead reports' retransmissions (a few gossip intervals) are over.
	eventually(t, "reconnect attempts fail while cut", func() string {
		sa, sb := a.Stats(), b.Stats()
		if sa.ReconnectFailures < 5 || sb.ReconnectFailures < 5 {
			return fmt.Sprintf("a %d/%d, b %d/%d", sa.ReconnectAttempts, sa.ReconnectFailures, sb.ReconnectAttempts, sb.ReconnectFailures)
		}
		return ""
	})

	g.closed.Store(false)
	for _, x := range []struct {
		n  testNode
		id string
		in uint64
	}{{a, "b", b.Incarnation()}, {b, "a", a.Incarnation()}} {
		m := sees(t, x.n, x.id, cluster.StateAlive)
		if m.Incarnation != x.in {
			t.Errorf("%s sees %s at incarnation %d, want %d", x.n.cfg.NodeID, x.id, m.Incarnation, x.in)
		}
		back := waitChange(t, x.n, x.id, "alive after dead", func(ch cluster.Change) bool {
			return ch.Member.State == cluster.StateAlive && ch.Previous.State == cluster.StateDead
		})
		if back.Restarted {
			t.Errorf("%s: a healed partition reported as a restart: %+v", x.n.cfg.NodeID, back)
		}
	}
	sa, sb := a.Stats(), b.Stats()
	if sa.ReconnectAttempts-sa.ReconnectFailures+sb.ReconnectAttempts-sb.ReconnectFailures == 0 {
		t.Errorf("no reconnect succeeded: a %+v, b %+v", sa, sb)
	}
}
