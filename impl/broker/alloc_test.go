package broker

import (
	"runtime"
	"testing"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// TestPublishPathAllocatesNothing holds the publish path to its promise: in
// steady state, routing a message to subscribers that read and acknowledge
// it allocates nothing per message. The messages and deliveries of
// acknowledged QoS 1 and 2 messages are recycled; what remains is amortized
// (packet-id table pages, pools refilled after a GC), well under one
// allocation in a hundred messages.
func TestPublishPathAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	if testing.Short() {
		t.Skip("measures 20,000 messages per case")
	}
	for _, tc := range []struct {
		name string
		qos  packet.QoS
		subs int
	}{
		{"qos0 to 1", packet.QoS0, 1},
		{"qos0 to 10", packet.QoS0, 10},
		{"qos1 to 1", packet.QoS1, 1},
		{"qos1 to 10", packet.QoS1, 10},
		{"qos2 to 1", packet.QoS2, 1},
		{"qos2 to 10", packet.QoS2, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			step, received := publishLoop(tc.qos, tc.subs)
			const warm, n = 10_000, 20_000
			for i := range warm {
				step(i, i == warm-1)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			*received = 0
			for i := range n {
				step(i, i == n-1)
			}
			runtime.ReadMemStats(&after)
			if want := n * tc.subs; *received != want {
				t.Fatalf("the subscribers received and completed %d messages, want %d", *received, want)
			}
			allocs := after.Mallocs - before.Mallocs
			if perHundred := float64(allocs) * 100 / n; perHundred >= 1 {
				t.Fatalf("%d allocations for %d messages (%.2f per 100)", allocs, n, perHundred)
			}
			t.Logf("%d allocations for %d messages", allocs, n)
		})
	}
}
