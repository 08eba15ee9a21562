package bridge

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/skybridge-mq/skybridge/impl/server"
)

// BenchmarkForwardQoS1 measures QoS 1 messages through the bridge, local
// Skybridge → bridge (queue on the real disk, synced) → mosquitto → a
// subscriber, with 8 publishers. "stream" publishes while the bridge
// forwards; "drain" fills the queue while the remote is down and times
// only the forwarding once it is back.
//
//	go test -run '^$' -bench ForwardQoS1 -benchtime 20000x ./impl/bridge
func BenchmarkForwardQoS1(b *testing.B) {
	for _, mode := range []string{"stream", "drain"} {
		b.Run(mode, func(b *testing.B) {
			n := b.N
			// The local broker holds what the bridge has not taken yet.
			local := startSkybridge(b, func(c *server.Config) { c.Broker.Session.MaxQueued = 60000 })
			remote := newMosquitto(b, "max_inflight_messages 1000\n")
			cfg := testBridge("bench", local.url(), remote.url())
			cfg.Out = []Rule{{Filter: "bench/#"}}
			cfg.Queue.Dir = b.TempDir()
			cfg.Queue.MaxMessages = n + 1
			if mode == "stream" {
				remote.start()
			}
			br := startBridge(b, vfs.Default, cfg)
			eventually(b, "local connection", func() bool { return br.Stats().Bridges[0].Local.Connected })
			var rsub *client
			if mode == "stream" {
				rsub = newClient(b, remote.url(), clientOpts{filters: []string{"bench/#"}})
				rsub.subscribed(b)
			}
			const pubs = 8
			clients := make([]*client, pubs)
			for i := range clients {
				clients[i] = newClient(b, local.url(), clientOpts{})
			}
			payload := string(make([]byte, 64))
			b.ResetTimer()
			began := time.Now()
			var wg sync.WaitGroup
			for i, c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := i; j < n; j += pubs {
						c.publish(b, fmt.Sprintf("bench/%d", i), payload, 1, nil)
					}
				}()
			}
			wg.Wait()
			if mode == "drain" {
				eventually(b, "everything queued", func() bool { return br.Stats().Bridges[0].Out.Queued == n })
				b.ReportMetric(float64(n)/time.Since(began).Seconds(), "in-msg/s")
				// A new bridge on the full queue, once the remote and its
				// subscriber are ready.
				b.StopTimer()
				br.Close()
				remote.start()
				rsub = newClient(b, remote.url(), clientOpts{filters: []string{"bench/#"}})
				rsub.subscribed(b)
				b.StartTimer()
				began = time.Now()
				br = startBridge(b, vfs.Default, cfg)
			}
			eventually(b, "every message at the remote", func() bool { return br.Stats().Bridges[0].Out.Forwarded >= uint64(n) })
			elapsed := time.Since(began)
			b.StopTimer()
			b.ReportMetric(float64(n)/elapsed.Seconds(), "msg/s")
			eventually(b, "the subscriber", func() bool { return len(rsub.matching("bench/")) >= n })
		})
	}
}
