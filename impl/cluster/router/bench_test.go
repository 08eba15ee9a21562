package router

import (
	"testing"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// BenchmarkForward is the router's part of a publish on a node with the
// routes loaded: matching them and, for "remote", enqueueing the message
// on the link to the other node (which receives and acknowledges it).
func BenchmarkForward(b *testing.B) {
	for _, tc := range []struct {
		name   string
		remote bool
	}{{"local", false}, {"remote", true}} {
		b.Run(tc.name, func(b *testing.B) {
			nodes := newNodes(b, newMemKV(), "a", "b")
			a := nodes[0]
			nodes[1].discard.Store(true)
			if tc.remote {
				nodes[1].RouteAdded("t", "x/#")
				nodes[1].AwaitRoutes("t", [][]byte{[]byte("x/#")})
			}
			m := msg("x/1", packet.QoS0)
			a.Forward("t", m, nil) // loads the prefixes
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				a.Forward("t", m, nil)
			}
			b.StopTimer()
			b.ReportMetric(float64(a.Stats().Dropped)/float64(b.N), "dropped/op")
		})
	}
}
