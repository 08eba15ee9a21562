package cluster

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const testCluster = "test"

func meta(inc uint64) Meta {
	return Meta{Cluster: testCluster, Incarnation: inc, Roles: AllRoles, MQTT: "h:1883"}
}

func ev(k Kind, node string, inc, seq uint64) Event {
	return Event{Kind: k, Node: node, Seq: seq, Meta: meta(inc)}
}

func newTestMembership(t *testing.T, opts Options) *Membership {
	t.Helper()
	m, err := NewMembership("a", meta(10), opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// step is what one Apply should return, summarised.
type step struct {
	Outcome   Outcome
	Reason    string
	State     State
	Inc       uint64
	Restarted bool
}

func summary(c Change) step {
	return step{Outcome: c.Outcome, Reason: c.Reason, State: c.Member.State, Inc: c.Member.Incarnation, Restarted: c.Restarted}
}

func TestApply(t *testing.T) {
	t.Parallel()
	other := meta(1)
	other.Cluster = "other"
	leaving := meta(1)
	leaving.Leaving = true
	for _, tc := range []struct {
		name   string
		events []Event
		want   []step
	}{{
		name:   "join, update, duplicate",
		events: []Event{ev(Joined, "b", 1, 1), {Kind: Updated, Node: "b", Seq: 2, Meta: leaving}, {Kind: Updated, Node: "b", Seq: 2, Meta: leaving}},
		want:   []step{{Outcome: Applied, State: StateAlive, Inc: 1}, {Outcome: Applied, State: StateAlive, Inc: 1}, {Outcome: Unchanged, State: StateAlive, Inc: 1}},
	}, {
		name:   "a newer report that changes nothing visible",
		events: []Event{ev(Joined, "b", 1, 1), ev(Updated, "b", 1, 2)},
		want:   []step{{Outcome: Applied, State: StateAlive, Inc: 1}, {Outcome: Unchanged, State: StateAlive, Inc: 1}},
	}, {
		name:   "suspect, dead, then a late alive of the same incarnation is stale",
		events: []Event{ev(Joined, "b", 1, 1), ev(Suspect, "b", 1, 2), ev(Dead, "b", 1, 3), ev(Updated, "b", 1, 2)},
		want: []step{{Outcome: Applied, State: StateAlive, Inc: 1}, {Outcome: Applied, State: StateSuspect, Inc: 1},
			{Outcome: Applied, State: StateDead, Inc: 1}, {Outcome: Stale, State: StateDead, Inc: 1}},
	}, {
		name:   "dead then alive again in the same incarnation (healed partition) is not a restart",
		events: []Event{ev(Joined, "b", 1, 1), ev(Dead, "b", 1, 2), ev(Joined, "b", 1, 3)},
		want: []step{{Outcome: Applied, State: StateAlive, Inc: 1}, {Outcome: Applied, State: StateDead, Inc: 1},
			{Outcome: Applied, State: StateAlive, Inc: 1}},
	}, {
		name:   "restart after dead: a higher incarnation",
		events: []Event{ev(Joined, "b", 1, 5), ev(Dead, "b", 1, 6), ev(Joined, "b", 2, 1)},
		want: []step{{Outcome: Applied, State: StateAlive, Inc: 1}, {Outcome: Applied, State: StateDead, Inc: 1},
			{Outcome: Applied, State: StateAlive, Inc: 2, Restarted: true}},
	}, {
		name:   "restart never seen dead is still a restart; the old incarnation is stale after it",
		events: []Event{ev(Joined, "b", 1, 1), ev(Updated, "b", 2, 2), ev(Dead, "b", 1, 9)},
		want: []step{{Outcome: Applied, State: StateAlive, Inc: 1}, {Outcome: Applied, State: StateAlive, Inc: 2, Restarted: true},
			{Outcome: Stale, State: StateAlive, Inc: 2}},
	}, {
		name:   "left is not dead",
		events: []Event{ev(Joined, "b", 1, 1), ev(Left, "b", 1, 2), ev(Joined, "c", 1, 1), ev(Dead, "c", 1, 2)},
		want: []step{{Outcome: Applied, State: StateAlive, Inc: 1}, {Outcome: Applied, State: StateLeft, Inc: 1},
			{Outcome: Applied, State: StateAlive, Inc: 1}, {Outcome: Applied, State: StateDead, Inc: 1}},
	}, {
		name:   "same (incarnation, seq): left beats dead in either order",
		events: []Event{ev(Left, "b", 1, 1), ev(Dead, "b", 1, 1), ev(Dead, "c", 1, 1), ev(Left, "c", 1, 1)},
		want: []step{{Outcome: Applied, State: StateLeft, Inc: 1}, {Outcome: Stale, State: StateLeft, Inc: 1},
			{Outcome: Applied, State: StateDead, Inc: 1}, {Outcome: Applied, State: StateLeft, Inc: 1}},
	}, {
		name:   "first report is dead: kept, so a late alive is stale",
		events: []Event{ev(Dead, "b", 1, 2), ev(Joined, "b", 1, 1)},
		want:   []step{{Outcome: Applied, State: StateDead, Inc: 1}, {Outcome: Stale, State: StateDead, Inc: 1}},
	}, {
		name:   "another cluster is refused",
		events: []Event{{Kind: Joined, Node: "b", Seq: 1, Meta: other}},
		want:   []step{{Outcome: Refused, Reason: ReasonWrongCluster}},
	}, {
		name: "invalid reports are refused",
		events: []Event{{Kind: Joined, Seq: 1, Meta: meta(1)}, {Kind: 0, Node: "b", Meta: meta(1)},
			{Kind: Joined, Node: "b", Meta: Meta{Cluster: testCluster, MQTT: "no port"}}},
		want: []step{{Outcome: Refused, Reason: ReasonInvalid}, {Outcome: Refused, Reason: ReasonInvalid}, {Outcome: Refused, Reason: ReasonInvalid}},
	}, {
		name: "the local node: updates and its own leave apply; suspicion, death and other incarnations do not",
		events: []Event{ev(Joined, "a", 10, 1), ev(Suspect, "a", 10, 2), ev(Dead, "a", 10, 3), ev(Joined, "a", 11, 4), ev(Joined, "a", 9, 5),
			{Kind: Updated, Node: "a", Seq: 6, Meta: Meta{Cluster: testCluster, Incarnation: 10, Roles: AllRoles, MQTT: "h:1883", Leaving: true}}, ev(Left, "a", 10, 7)},
		want: []step{{Outcome: Unchanged, State: StateAlive, Inc: 10}, {Outcome: Refused, Reason: ReasonLocal}, {Outcome: Refused, Reason: ReasonLocal},
			{Outcome: Refused, Reason: ReasonLocal}, {Outcome: Refused, Reason: ReasonLocal},
			{Outcome: Applied, State: StateAlive, Inc: 10}, {Outcome: Applied, State: StateLeft, Inc: 10}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := newTestMembership(t, Options{})
			var got []step
			for _, e := range tc.events {
				got = append(got, summary(m.Apply(e)))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
		})
	}
}

func TestViewIsSortedAndHasTheLocalNode(t *testing.T) {
	t.Parallel()
	m := newTestMembership(t, Options{})
	if diff := cmp.Diff(View{Members: []Member{{ID: "a", State: StateAlive, Local: true, Meta: meta(10)}}}, m.View()); diff != "" {
		t.Errorf("initial view (-want +got):\n%s", diff)
	}
	for _, e := range []Event{ev(Joined, "d", 1, 1), ev(Joined, "b", 3, 1), ev(Left, "c", 2, 1), ev(Suspect, "b", 3, 2)} {
		m.Apply(e)
	}
	want := View{Version: 4, Members: []Member{
		{ID: "a", State: StateAlive, Local: true, Meta: meta(10)},
		{ID: "b", State: StateSuspect, Meta: meta(3)},
		{ID: "c", State: StateLeft, Meta: meta(2)},
		{ID: "d", State: StateAlive, Meta: meta(1)},
	}}
	if diff := cmp.Diff(want, m.View()); diff != "" {
		t.Errorf("view (-want +got):\n%s", diff)
	}
	s := m.Stats()
	if s.Alive != 2 || s.Suspect != 1 || s.Left != 1 || s.Applied != 4 {
		t.Errorf("stats %+v", s)
	}
}

func TestMaxMembersForgetsTheLongestDown(t *testing.T) {
	t.Parallel()
	m := newTestMembership(t, Options{MaxMembers: 3})
	m.Apply(ev(Joined, "b", 1, 1))
	m.Apply(ev(Joined, "c", 1, 1))
	if c := m.Apply(ev(Joined, "d", 1, 1)); c.Outcome != Refused || c.Reason != ReasonFull {
		t.Fatalf("over the bound with nobody down: %+v", c)
	}
	m.Apply(ev(Dead, "c", 1, 2))
	m.Apply(ev(Left, "b", 1, 2))
	if c := m.Apply(ev(Joined, "d", 1, 1)); c.Outcome != Applied {
		t.Fatalf("with two down: %+v", c)
	}
	var ids []string
	for _, mb := range m.View().Members {
		ids = append(ids, mb.ID)
	}
	if diff := cmp.Diff([]string{"a", "b", "d"}, ids); diff != "" {
		t.Errorf("c died first and should be forgotten first (-want +got):\n%s", diff)
	}
	if s := m.Stats(); s.Full != 1 || s.Forgotten != 1 {
		t.Errorf("stats %+v", s)
	}
}

// Any order of the same reports, with any duplicates, gives the same final
// members: what the gossip runtime's coalescing queue and a simulator's
// reordering network rely on.
func TestAnyOrderSameView(t *testing.T) {
	t.Parallel()
	kinds := []Kind{Joined, Updated, Suspect, Dead, Left}
	for seed := uint64(0); seed < 200; seed++ {
		r := rand.New(rand.NewPCG(seed, 0))
		var events []Event
		for i := 0; i < 40; i++ {
			mt := meta(uint64(1 + r.IntN(3)))
			node := fmt.Sprintf("n%d", r.IntN(5))
			switch r.IntN(10) {
			case 0:
				node = "a" // the local node: mostly refused
				mt.Incarnation = uint64(9 + r.IntN(3))
			case 1:
				mt.Cluster = "other"
			}
			mt.Leaving = r.IntN(4) == 0
			mt.Roles = Roles(r.IntN(int(AllRoles) + 1))
			events = append(events, Event{Kind: kinds[r.IntN(len(kinds))], Node: node, Seq: uint64(r.IntN(4)), Meta: mt})
		}
		var first []Member
		for trial := 0; trial < 20; trial++ {
			order := append([]Event(nil), events...)
			for i := 0; i < 10; i++ { // duplicates
				order = append(order, events[r.IntN(len(events))])
			}
			r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			m := newTestMembership(t, Options{})
			for _, e := range order {
				m.Apply(e)
			}
			got := m.View().Members
			if trial == 0 {
				first = got
				continue
			}
			if diff := cmp.Diff(first, got); diff != "" {
				t.Fatalf("seed %d trial %d: another order gave another view (-first +got):\n%s", seed, trial, diff)
			}
		}
	}
}
