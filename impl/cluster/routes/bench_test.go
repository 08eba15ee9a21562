package routes

import (
	"fmt"
	"testing"
)

// BenchmarkMatch matches a publish against a ready cache of 10,000 routes
// (1,000 device topics on 10 nodes, and a '#' per node).
//
//	go test -run '^$' -bench Match -benchmem ./impl/cluster/routes
func BenchmarkMatch(b *testing.B) {
	c := NewCache(Options{Self: "n0"})
	c.Match("t", []byte("dev/1/up"), nil, nil)
	readyAll(c)
	p := prefixOf(b, "t", "dev")
	for n := range 10 {
		node := fmt.Sprint("n", n)
		for d := range 1000 {
			c.Event(p, put(b, Route{Tenant: "t", Filter: fmt.Sprintf("dev/%d/up", d*10+n), Node: node, Count: 1}))
		}
		c.Event(prefixOf(b, "t", "#"), put(b, Route{Tenant: "t", Filter: "#", Node: node, Count: 1}))
	}
	topics := make([][]byte, 10000)
	for i := range topics {
		topics[i] = fmt.Appendf(nil, "dev/%d/up", i)
	}
	var dst []Destination
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		dst, _ = c.Match("t", topics[i%len(topics)], nil, dst[:0])
		if len(dst) != 10 {
			b.Fatalf("%d destinations", len(dst))
		}
	}
}
