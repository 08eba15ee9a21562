package raftkv

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSingleNode(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, nil)
	c.must(1, put("a", "1"))
	resp := c.must(1, get("a"))
	if !resp.Found || string(resp.Value) != "1" {
		t.Fatalf("get a: %+v", resp)
	}
	resp = c.must(1, get("b"))
	if resp.Found {
		t.Fatalf("get b: %+v", resp)
	}
}

func TestThreeNodesReplicate(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	for i := range 20 {
		c.must(NodeID(i%3+1), put(fmt.Sprintf("k%02d", i), fmt.Sprint(i)))
	}
	for i := range 20 {
		resp := c.must(NodeID((i+1)%3+1), get(fmt.Sprintf("k%02d", i)))
		if string(resp.Value) != fmt.Sprint(i) {
			t.Fatalf("k%02d: %+v", i, resp)
		}
	}
	resp := c.must(2, &Request{Kind: ReqScan, Key: []byte("k05"), End: []byte("k10")})
	if len(resp.KVs) != 5 || string(resp.KVs[0].Key) != "k05" {
		t.Fatalf("scan: %+v", resp)
	}
	t.Log(c.dump())
}

func TestSplitMergeAndPlacement(t *testing.T) {
	t.Parallel()
	for _, nodes := range []int{3, 5} {
		t.Run(fmt.Sprint(nodes), func(t *testing.T) {
			c := newCluster(t, nodes, func(cfg *Config) {
				cfg.SplitBytes, cfg.MergeBytes = 2000, 600
				cfg.LogKeep, cfg.LogMax = 5, 50
			})
			val := string(make([]byte, 50))
			for i := range 200 {
				c.must(NodeID(i%nodes+1), put(fmt.Sprintf("k%03d", i), val))
			}
			c.run(300, func() bool { return false })
			ranges := map[RangeID]bool{}
			for _, n := range c.nodes {
				for _, lr := range n.Ranges() {
					ranges[lr.Desc.RangeID] = true
				}
			}
			if len(ranges) < 4 {
				t.Fatalf("expected splits, have ranges %v\n%s", ranges, c.dump())
			}
			for i := range 200 {
				resp := c.must(NodeID(i%nodes+1), get(fmt.Sprintf("k%03d", i)))
				if !resp.Found {
					t.Fatalf("k%03d lost\n%s", i, c.dump())
				}
			}
			st := Stats{}
			for _, n := range c.nodes {
				st.Add(n.Stats())
			}
			t.Logf("after splits: %d ranges; %s", len(ranges), st)
			// Delete most keys: ranges merge back.
			c.deleteAll("k", "k190")
			c.run(600, func() bool { return false })
			t.Log(c.dump())
		})
	}
}

func TestPowerLossKeepsAcknowledgedWrites(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, func(cfg *Config) { cfg.LogKeep, cfg.LogMax = 5, 40 })
	for i := range 60 {
		c.must(NodeID(i%3+1), put(fmt.Sprintf("k%02d", i), fmt.Sprint(i)))
		if i%20 == 10 {
			id := NodeID(i/20%3 + 1)
			c.crash(id, true)
			c.run(30, func() bool { return false })
			c.start(id)
		}
	}
	// Every node down at once, then back.
	for _, id := range c.ids {
		c.crash(id, true)
	}
	for _, id := range c.ids {
		c.start(id)
	}
	for i := range 60 {
		resp := c.must(NodeID(i%3+1), get(fmt.Sprintf("k%02d", i)))
		if string(resp.Value) != fmt.Sprint(i) {
			t.Fatalf("k%02d = %q after power losses\n%s", i, resp.Value, c.dump())
		}
	}
}

func TestDeadNodeIsReplaced(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 4, func(cfg *Config) { cfg.SplitBytes = 1500; cfg.DeadAfterTicks = 50 })
	for i := range 100 {
		c.must(NodeID(i%4+1), put(fmt.Sprintf("k%03d", i), "0123456789012345678901234567890123456789"))
	}
	c.run(200, func() bool { return false })
	victim := NodeID(2)
	c.crash(victim, false)
	onVictim := func() int {
		k := 0
		for _, id := range c.ids {
			if n := c.nodes[id]; n != nil {
				for _, lr := range n.Ranges() {
					if _, ok := lr.Desc.OnNode(victim); ok && lr.Leader {
						k++
					}
				}
			}
		}
		return k
	}
	if !c.run(2000, func() bool { return onVictim() == 0 }) {
		t.Fatalf("ranges still on the dead node\n%s", c.dump())
	}
	// A new node joins and takes replicas.
	c.add(5)
	hasReplicas := func() bool {
		k := 0
		for _, lr := range c.nodes[5].Ranges() {
			if lr.Desc.Initialized() && lr.Desc.RangeID != MetaRangeID {
				k++
			}
		}
		return k > 0
	}
	if !c.run(2000, hasReplicas) {
		t.Fatalf("new node got nothing\n%s", c.dump())
	}
	for i := range 100 {
		resp := c.must(NodeID(i%2*2+1), get(fmt.Sprintf("k%03d", i)))
		if !resp.Found {
			t.Fatalf("k%03d lost\n%s", i, c.dump())
		}
	}
	var st Stats
	for _, n := range c.nodes {
		st.Add(n.Stats())
	}
	t.Logf("%s", st)
}

func TestFiveVotersSurviveTwoFailures(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 5, func(cfg *Config) { cfg.Replicas = 5 })
	c.must(1, put("a", "1"))
	for _, lr := range c.nodes[1].Ranges() {
		if len(lr.Desc.Voters) != 5 {
			t.Fatalf("r%d has %d voters, want 5: %v", lr.Desc.RangeID, len(lr.Desc.Voters), lr.Desc)
		}
	}
	c.crash(4, true)
	c.crash(5, true)
	c.must(1, put("b", "2"))
	if resp := c.must(2, get("a")); string(resp.Value) != "1" {
		t.Fatalf("a: %+v", resp)
	}
	if resp := c.must(3, get("b")); string(resp.Value) != "2" {
		t.Fatalf("b: %+v", resp)
	}
}

// TestStatsExactWithBatchedWrites: writes of many ops read the values they
// replace through one iterator (prior.go). Writes submitted together apply
// in one Pebble batch, so a later write must see an earlier one's keys, and
// a write that names a key twice must count it once. Every replica's key
// and byte counts must equal its data's.
func TestStatsExactWithBatchedWrites(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.must(1, put("a/present", "12345"))
	c.must(1, put("a/gone", "x"))
	lead := c.leaders()[firstUserRangeID]
	op := func(kind OpKind, k, v string) Op { return Op{Kind: kind, Key: []byte(k), Value: []byte(v)} }
	reqs := [][]Op{
		{op(OpPut, "a/1", "one")},
		{op(OpPut, "a/1", "uno"), op(OpPut, "a/2", "two"), op(OpDelete, "a/absent", ""), op(OpPut, "a/present", "longer value"), op(OpDelete, "a/gone", "")},
		{op(OpPut, "a/3", "x"), op(OpPut, "a/3", "xyz"), op(OpDelete, "a/3", ""), op(OpPut, "a/4", "four"), op(OpPut, "a/2", "dos")},
		{op(OpPut, "a/5", "five"), op(OpPut, "a/6", "six"), op(OpPut, "a/7", "seven"), op(OpDelete, "a/5", ""), op(OpPut, "a/8", "")},
		{op(OpPut, "a/9", "nine"), op(OpPut, "a/4", "cuatro"), {Kind: OpCAS, Key: []byte("a/1"), Expect: []byte("uno"), Value: []byte("ein")}, op(OpPut, "a/10", "ten")},
	}
	var ids []uint64
	for _, ops := range reqs {
		c.nextID++
		ids = append(ids, c.nextID)
		c.nodes[lead].Submit(c.nextID, &Request{Kind: ReqWrite, Ops: ops})
	}
	c.run(200, func() bool {
		for _, id := range ids {
			if c.replies[lead][id] == nil {
				return false
			}
		}
		return true
	})
	for _, id := range ids {
		if r := c.replies[lead][id]; r == nil || r.Err != nil || !r.Succeeded {
			t.Fatalf("write %d: %+v", id, r)
		}
	}
	c.run(100, func() bool {
		for _, id := range c.ids {
			if c.nodes[id].Ranges()[len(c.nodes[id].Ranges())-1].Applied != c.nodes[lead].Ranges()[len(c.nodes[lead].Ranges())-1].Applied {
				return false
			}
		}
		return true
	})
	want := map[string]string{"a/1": "ein", "a/2": "dos", "a/4": "cuatro", "a/6": "six", "a/7": "seven", "a/8": "", "a/9": "nine", "a/10": "ten", "a/present": "longer value"}
	for _, id := range c.ids {
		if err := c.nodes[id].Verify(); err != nil {
			t.Errorf("n%d: %v", id, err)
		}
		data, err := c.nodes[id].RangeData(firstUserRangeID)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, kv := range data {
			got[string(fromUserKey(kv.Key))] = string(kv.Value)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("n%d data (-want +got):\n%s", id, diff)
		}
	}
}

func TestParsePeers(t *testing.T) {
	t.Parallel()
	addrs, ids, err := ParsePeers([]string{"2=b:1", " 1=a:1"})
	if err != nil || !slices.Equal(ids, []NodeID{2, 1}) || addrs[1] != "a:1" || addrs[2] != "b:1" {
		t.Fatalf("good list: %v %v %v", addrs, ids, err)
	}
	for _, bad := range [][]string{{"0=a:1"}, {"x=a:1"}, {"1="}, {"1"}, {"1=a:1", "1=b:1"}} {
		if _, _, err := ParsePeers(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
