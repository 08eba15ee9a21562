package raftkv

import (
	"fmt"
	"testing"
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
