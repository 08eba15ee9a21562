package raftkv

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// BenchmarkProposeApply measures the core's write path: requests submitted
// at the leader's node, proposed in batched raft entries, replicated,
// committed, applied and answered, with every message through the wire
// codec and every batch committed to Pebble on an in-memory file system
// (so this is CPU, not fsync). One op is one acknowledged put; inflight
// puts are outstanding at a time.
func BenchmarkProposeApply(b *testing.B) {
	for _, bc := range []struct{ nodes, inflight, ops int }{{1, 256, 1}, {3, 1, 1}, {3, 256, 1}, {3, 16, 100}} {
		b.Run(fmt.Sprintf("replicas=%d/inflight=%d/ops=%d", bc.nodes, bc.inflight, bc.ops), func(b *testing.B) {
			c := newClusterFS(b, bc.nodes, nil, vfs.NewMem)
			c.must(1, put("warm", "up"))
			lead := c.leaders()[firstUserRangeID]
			val := make([]byte, 64)
			b.ReportAllocs()
			b.ResetTimer()
			sent, done := 0, 0
			for done < b.N {
				for sent-done < bc.inflight && sent < b.N {
					c.nextID++
					req := &Request{Kind: ReqWrite}
					for j := range bc.ops {
						req.Ops = append(req.Ops, Op{Kind: OpPut, Key: []byte(fmt.Sprintf("k%09d-%03d", sent, j)), Value: val})
					}
					c.nodes[lead].Submit(c.nextID, req)
					sent++
				}
				c.step()
				for id, r := range c.replies[lead] {
					if r.Err != nil {
						b.Fatalf("put: %v", r.Err)
					}
					delete(c.replies[lead], id)
					done++
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*bc.ops)/b.Elapsed().Seconds(), "puts/s")
		})
	}
}
