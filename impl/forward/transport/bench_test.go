package transport

import (
	"fmt"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/forward"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// BenchmarkLoopback measures one sender to one receiver on 127.0.0.1:
// b.N messages enqueued (waiting for room when the link is full, so
// nothing is dropped) until the receiver has delivered them all.
func BenchmarkLoopback(b *testing.B) {
	for _, size := range []int{16, 1024} {
		for _, qos := range []packet.QoS{packet.QoS0, packet.QoS1} {
			b.Run(fmt.Sprintf("%dB/qos%d", size, qos), func(b *testing.B) {
				pr := startPair(b, b.N, forward.ReceiverConfig{}, forward.SenderConfig{}, nil, nil)
				payload := make([]byte, size)
				end := time.Now().Add(5 * time.Minute)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				for i := range b.N {
					if !pr.trySend(i, qos, payload, end) {
						b.Fatalf("enqueue %d: link still full at the deadline", i)
					}
				}
				waitFor(b, end, "every message", func() bool { return pr.sink.count() >= b.N })
				elapsed := time.Since(start)
				b.StopTimer()
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			})
		}
	}
}
