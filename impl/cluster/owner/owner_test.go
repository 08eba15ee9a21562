package owner

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

func TestRecordCodec(t *testing.T) {
	t.Parallel()
	for _, r := range []Record{{Node: "n1", Incarnation: 7, Epoch: 1}, {Node: "a-long-node-name", Incarnation: 1 << 40, Epoch: 1 << 62}} {
		got, err := Decode(r.Encode())
		if err != nil || got != r {
			t.Errorf("Decode(Encode(%+v)) = %+v, %v", r, got, err)
		}
	}
	for _, b := range [][]byte{nil, {0x80}, {1}, {1, 2}} {
		if r, err := Decode(b); err == nil {
			t.Errorf("Decode(%x) = %+v, want an error", b, r)
		}
	}
	if string(Key("t", "c")) == string(Key("tc", "")) {
		t.Error("keys of (t, c) and (tc, \"\") collide")
	}
}

func rec(node string, inc, epoch uint64) *Record {
	return &Record{Node: node, Incarnation: inc, Epoch: epoch}
}

// The claim's steps, table by table.
func TestClaimSteps(t *testing.T) {
	t.Parallel()
	aliveAll := func(string, uint64) bool { return true }
	aliveNone := func(string, uint64) bool { return false }
	type step struct {
		do   func(c *Claim) Action
		want Action
	}
	for _, tc := range []struct {
		name  string
		alive func(string, uint64) bool
		steps []step
	}{
		{"no owner", aliveAll, []step{
			{func(c *Claim) Action { return c.ReadDone(nil, nil) }, Action{Kind: CAS, New: Record{"a", 1, 1}}},
			{func(c *Claim) Action { return c.CASDone(true, nil, nil) }, Action{Kind: Done, Owned: true, Epoch: 1}},
		}},
		{"owner alive elsewhere: asked first", aliveAll, []step{
			{func(c *Claim) Action { return c.ReadDone(rec("b", 3, 5), nil) }, Action{Kind: Release, Owner: Record{"b", 3, 5}}},
			{func(c *Claim) Action { return c.Released(true) }, Action{Kind: CAS, Expect: rec("b", 3, 5), New: Record{"a", 1, 6}}},
			{func(c *Claim) Action { return c.CASDone(true, nil, nil) }, Action{Kind: Done, Owned: true, Epoch: 6}},
		}},
		{"owner gone: taken", aliveNone, []step{
			{func(c *Claim) Action { return c.ReadDone(rec("b", 3, 5), nil) }, Action{Kind: CAS, Expect: rec("b", 3, 5), New: Record{"a", 1, 6}}},
		}},
		{"ours already: a new epoch", aliveAll, []step{
			{func(c *Claim) Action { return c.ReadDone(rec("a", 1, 2), nil) }, Action{Kind: CAS, Expect: rec("a", 1, 2), New: Record{"a", 1, 3}}},
		}},
		{"lost a race: starts from the winner", aliveAll, []step{
			{func(c *Claim) Action { return c.ReadDone(nil, nil) }, Action{Kind: CAS, New: Record{"a", 1, 1}}},
			{func(c *Claim) Action { return c.CASDone(false, rec("c", 2, 1), nil) }, Action{Kind: Release, Owner: Record{"c", 2, 1}}},
		}},
		{"owner silent and alive: 0x88", aliveAll, []step{
			{func(c *Claim) Action { return c.ReadDone(rec("b", 3, 5), nil) }, Action{Kind: Release, Owner: Record{"b", 3, 5}}},
			{func(c *Claim) Action { return c.Timeout() }, Action{Kind: Done, Code: packet.ServerUnavailable}},
		}},
		{"store error: 0x88", aliveAll, []step{
			{func(c *Claim) Action { return c.ReadDone(nil, fmt.Errorf("no leader")) }, Action{Kind: Done, Code: packet.ServerUnavailable}},
		}},
		{"out of turn", aliveAll, []step{
			{func(c *Claim) Action { return c.Released(true) }, Action{Kind: Done, Code: packet.ImplementationSpecificError}},
			{func(c *Claim) Action { return c.ReadDone(nil, nil) }, Action{Kind: Done, Code: packet.ImplementationSpecificError}},
		}},
	} {
		c, first := NewClaim("a", 1, tc.alive, 0)
		if first.Kind != Read {
			t.Fatalf("%s: first action %+v", tc.name, first)
		}
		for i, s := range tc.steps {
			if d := cmp.Diff(s.want, s.do(c)); d != "" {
				t.Errorf("%s, step %d (-want +got):\n%s", tc.name, i, d)
			}
		}
	}
	// Losing every race ends in 0x89.
	c, _ := NewClaim("a", 1, func(string, uint64) bool { return false }, 3)
	c.ReadDone(nil, nil)
	var a Action
	for i := range 3 {
		a = c.CASDone(false, rec("c", 2, uint64(i+1)), nil)
	}
	if a.Kind != Done || a.Code != packet.ServerBusy {
		t.Errorf("after 3 lost races: %+v", a)
	}
}

// Many claims on three nodes race for one session over a linearizable
// store, their steps interleaved at random, while nodes crash and
// restart (membership knows at once). At no point do two nodes hold the
// session; every owner's epoch is the store's when it starts holding;
// epochs only grow; every claim ends.
func TestClaimsRace(t *testing.T) {
	t.Parallel()
	key := Key("t", "c")
	for seed := range uint64(300) {
		rnd := rand.New(rand.NewPCG(seed, 11))
		type nodeState struct {
			inc uint64
			up  bool
			h   *Holder
		}
		nodes := map[string]*nodeState{}
		names := []string{"a", "b", "c"}
		for _, n := range names {
			nodes[n] = &nodeState{inc: 1, up: true, h: NewHolder()}
		}
		alive := func(n string, inc uint64) bool { s := nodes[n]; return s.up && s.inc == inc }
		var store *Record
		type claim struct {
			node string
			inc  uint64
			c    *Claim
			a    Action
		}
		var live []*claim
		started, ended, owned := 0, 0, 0
		for step := 0; step < 400 || len(live) > 0; step++ {
			if step > 2000 {
				t.Fatalf("seed %d: claims never end: %d live", seed, len(live))
			}
			switch r := rnd.IntN(10); {
			case r < 2 && step < 400: // a CONNECT somewhere
				n := names[rnd.IntN(len(names))]
				if s := nodes[n]; s.up {
					c, a := NewClaim(n, s.inc, alive, 4)
					live = append(live, &claim{node: n, inc: s.inc, c: c, a: a})
					started++
				}
			case r < 3 && step < 400: // a crash, or a restart
				n := names[rnd.IntN(len(names))]
				s := nodes[n]
				if s.up {
					s.up, s.h = false, NewHolder()
				} else {
					s.up, s.inc = true, s.inc+1
				}
			case len(live) > 0: // one claim's step
				i := rnd.IntN(len(live))
				cl := live[i]
				if s := nodes[cl.node]; !s.up || s.inc != cl.inc {
					live = append(live[:i], live[i+1:]...) // its process died
					ended++
					continue
				}
				var next Action
				switch cl.a.Kind {
				case Read:
					var cur *Record
					if store != nil {
						cp := *store
						cur = &cp
					}
					next = cl.c.ReadDone(cur, nil)
				case CAS:
					match := (cl.a.Expect == nil && store == nil) || (cl.a.Expect != nil && store != nil && *cl.a.Expect == *store)
					if match {
						if store != nil && cl.a.New.Epoch <= store.Epoch {
							t.Fatalf("seed %d: epoch %d after %d", seed, cl.a.New.Epoch, store.Epoch)
						}
						nw := cl.a.New
						store = &nw
						next = cl.c.CASDone(true, nil, nil)
					} else {
						var cur *Record
						if store != nil {
							cp := *store
							cur = &cp
						}
						next = cl.c.CASDone(false, cur, nil)
					}
				case Release:
					o := nodes[cl.a.Owner.Node]
					if !o.up || o.inc != cl.a.Owner.Incarnation {
						next = cl.c.Timeout()
					} else {
						next = cl.c.Released(o.h.Release(key, cl.a.Owner.Epoch))
					}
				}
				cl.a = next
				if next.Kind == Done {
					live = append(live[:i], live[i+1:]...)
					ended++
					if next.Owned {
						owned++
						if store == nil || store.Node != cl.node || store.Epoch != next.Epoch {
							t.Fatalf("seed %d: %s owns at epoch %d, the store says %+v", seed, cl.node, next.Epoch, store)
						}
						// Another claim of this node held it: the broker
						// ends that connection (a takeover on one node).
						nodes[cl.node].h.Hold(key, next.Epoch)
					}
				}
			}
			holding := 0
			for _, n := range names {
				if s := nodes[n]; s.up {
					if _, ok := s.h.Holds(key); ok {
						holding++
					}
				}
			}
			if holding > 1 {
				t.Fatalf("seed %d step %d: %d nodes hold the session", seed, step, holding)
			}
		}
		if started == 0 || owned == 0 {
			t.Fatalf("seed %d: %d claims, %d owned: nothing tested", seed, started, owned)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Record{Node: "n1", Incarnation: 3, Epoch: 9}.Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		if r2, err := Decode(r.Encode()); err != nil || r2 != r {
			t.Fatalf("Decode(%x) = %+v, which does not survive Encode: %+v, %v", b, r, r2, err)
		}
	})
}
