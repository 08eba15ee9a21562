package gossip

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/memberlist"

	"github.com/skybridge-mq/skybridge/impl/cluster"
)

func TestLeftSetRoundTripAndBound(t *testing.T) {
	t.Parallel()
	var s leftSet
	s.init(3)
	for i, id := range []string{"d", "b", "c"} {
		s.add(id, uint64(10+i))
	}
	if s.add("b", 5) {
		t.Error("an older incarnation of b was news")
	}
	s.add("a", 20) // full: d (incarnation 10) goes
	got, err := decodeLeftRecords(s.encode())
	if err != nil {
		t.Fatal(err)
	}
	want := []leftRecord{{"a", 20}, {"b", 11}, {"c", 12}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(leftRecord{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if n, ev := s.counters(); n != 3 || ev != 1 {
		t.Errorf("records %d evicted %d", n, ev)
	}
}

func FuzzDecodeLeftRecords(f *testing.F) {
	var s leftSet
	s.init(maxLeftRecords)
	s.add("node-1", 1733450000123)
	s.add("b", 1)
	f.Add(s.encode())
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := decodeLeftRecords(b)
		if err != nil {
			return
		}
		if len(recs) > maxLeftRecords {
			t.Fatalf("%d records", len(recs))
		}
		for _, r := range recs {
			if r.node == "" || len(r.node) > cluster.MaxNodeID {
				t.Fatalf("node id %q", r.node)
			}
		}
	})
}

// An observer that missed a node's leaving metadata reports it dead, then
// learns from a peer's push/pull that it left. Driven through the
// delegate, as memberlist would, since a lost UDP packet cannot be
// arranged on loopback.
func TestLeftRecordTurnsDeadIntoLeft(t *testing.T) {
	t.Parallel()
	a := start(t, testConfig("a", cluster.AllRoles, 1000))
	d := &delegate{a.Node}
	mc := cluster.Meta{Cluster: "test", Incarnation: 7, Roles: cluster.Roles(cluster.RoleKV), KV: "127.0.0.1:3002"}
	enc, err := mc.Encode()
	if err != nil {
		t.Fatal(err)
	}
	c := &memberlist.Node{Name: "c", Meta: enc}
	d.NotifyJoin(c)
	sees(t, a, "c", cluster.StateAlive) // else the queue coalesces the two
	d.NotifyLeave(c)                    // no leaving flag seen: dead
	sees(t, a, "c", cluster.StateDead)

	var peer leftSet
	peer.init(maxLeftRecords)
	peer.add("c", 6) // an older incarnation: not this one
	d.MergeRemoteState(peer.encode(), false)
	peer.add("c", 7)
	d.MergeRemoteState(peer.encode(), false)
	m := sees(t, a, "c", cluster.StateLeft)
	if !m.Leaving || m.Incarnation != 7 {
		t.Errorf("c: %+v", m)
	}
	waitChange(t, a, "c", "left", func(ch cluster.Change) bool { return ch.Member.State == cluster.StateLeft })
	var states []string
	for _, ch := range a.changes.about("c") {
		states = append(states, fmt.Sprint(ch.Member.State))
	}
	if diff := cmp.Diff([]string{"alive", "dead", "left"}, states); diff != "" {
		t.Errorf("OnChange about c (-want +got):\n%s", diff)
	}
	d.MergeRemoteState([]byte{0xff, 0xff}, false)
	if s := a.Stats(); s.BadLeftData != 1 || s.LeftRecords != 1 {
		t.Errorf("stats %+v", s)
	}
}

// A slow OnChange holds the apply loop; memberlist's callbacks meanwhile
// never wait, and the view ends with the latest report of each node.
func TestSlowOnChangeLosesNothing(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	cfg := testConfig("a", cluster.AllRoles, 1000)
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.OnChange = func(cluster.Change) { once.Do(func() { <-release }) }
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown() })
	d := &delegate{n}
	node := func(id string, inc uint64, port int) *memberlist.Node {
		b, err := cluster.Meta{Cluster: "test", Incarnation: inc, MQTT: fmt.Sprintf("h:%d", port)}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return &memberlist.Node{Name: id, Meta: b}
	}
	d.NotifyJoin(node("b", 1, 1)) // the apply loop blocks in OnChange on this one
	for p := 2; p <= 1000; p++ {
		d.NotifyUpdate(node("b", 1, p))
		d.NotifyUpdate(node("c", 5, p))
	}
	d.NotifyLeave(node("c", 5, 1000))
	close(release)
	tn := testNode{Node: n}
	eventually(t, "b's last metadata and c dead", func() string {
		b, _ := member(tn, "b")
		c, _ := member(tn, "c")
		if b.State != cluster.StateAlive || b.MQTT != "h:1000" || c.State != cluster.StateDead {
			return fmt.Sprintf("b %s %s, c %s", b.State, b.MQTT, c.State)
		}
		return ""
	})
	if s := n.Stats(); s.Coalesced == 0 || s.Dropped != 0 {
		t.Errorf("stats %+v", s)
	}
}
