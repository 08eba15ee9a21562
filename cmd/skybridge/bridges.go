package main

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skybridge-mq/skybridge/impl/bridge"
)

// startBridges starts the configured bridges (docs/BRIDGE.md) once the
// broker listens, since each joins it as a client. Close disconnects them
// cleanly and closes their queues.
func startBridges(cfgs []bridge.BridgeConfig, log *slog.Logger) (*bridge.Bridge, error) {
	b, err := bridge.New(bridge.Config{Bridges: cfgs}, vfs.Default, log.With("component", "bridge"))
	if err != nil {
		return nil, err
	}
	if err := b.Start(context.Background()); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// bridgeCollector exposes the bridges' counters in /metrics.
type bridgeCollector struct{ b atomic.Pointer[bridge.Bridge] } // nil until the bridges start

var (
	bridgeConnected = prometheus.NewDesc("skybridge_bridge_connected",
		"1 while the bridge's connection to that side is up.", []string{"bridge", "side"}, nil)
	bridgeReconnects = prometheus.NewDesc("skybridge_bridge_reconnects_total",
		"Connections re-established after the first.", []string{"bridge", "side"}, nil)
	bridgeConnectFailures = prometheus.NewDesc("skybridge_bridge_connect_failures_total",
		"Failed connection attempts.", []string{"bridge", "side"}, nil)
	bridgeReceived = prometheus.NewDesc("skybridge_bridge_messages_received_total",
		"Messages taken from the source side (out: local, in: remote).", []string{"bridge", "direction"}, nil)
	bridgeForwarded = prometheus.NewDesc("skybridge_bridge_messages_forwarded_total",
		"Messages the other side acknowledged (QoS 1) or was sent (QoS 0).", []string{"bridge", "direction"}, nil)
	bridgeQueued = prometheus.NewDesc("skybridge_bridge_queued_messages",
		"Messages waiting in the bridge's queue, in flight included.", []string{"bridge", "direction"}, nil)
	bridgeQueuedBytes = prometheus.NewDesc("skybridge_bridge_queued_bytes",
		"Bytes waiting in the bridge's queue.", []string{"bridge", "direction"}, nil)
	bridgeDropped = prometheus.NewDesc("skybridge_bridge_messages_dropped_total",
		"Messages the bridge dropped, by reason.", []string{"bridge", "direction", "reason"}, nil)
)

func (c *bridgeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{bridgeConnected, bridgeReconnects, bridgeConnectFailures,
		bridgeReceived, bridgeForwarded, bridgeQueued, bridgeQueuedBytes, bridgeDropped} {
		ch <- d
	}
}

func (c *bridgeCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.b.Load()
	if b == nil {
		return
	}
	for _, s := range b.Stats().Bridges {
		for _, side := range []struct {
			name string
			st   bridge.ConnState
		}{{"local", s.Local}, {"remote", s.Remote}} {
			up := 0.0
			if side.st.Connected {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(bridgeConnected, prometheus.GaugeValue, up, s.Name, side.name)
			ch <- prometheus.MustNewConstMetric(bridgeReconnects, prometheus.CounterValue, float64(side.st.Reconnects), s.Name, side.name)
			ch <- prometheus.MustNewConstMetric(bridgeConnectFailures, prometheus.CounterValue, float64(side.st.Failures), s.Name, side.name)
		}
		for _, dir := range []struct {
			name string
			st   bridge.DirStats
		}{{"out", s.Out}, {"in", s.In}} {
			ch <- prometheus.MustNewConstMetric(bridgeReceived, prometheus.CounterValue, float64(dir.st.Received), s.Name, dir.name)
			ch <- prometheus.MustNewConstMetric(bridgeForwarded, prometheus.CounterValue, float64(dir.st.Forwarded), s.Name, dir.name)
			ch <- prometheus.MustNewConstMetric(bridgeQueued, prometheus.GaugeValue, float64(dir.st.Queued), s.Name, dir.name)
			ch <- prometheus.MustNewConstMetric(bridgeQueuedBytes, prometheus.GaugeValue, float64(dir.st.QueuedBytes), s.Name, dir.name)
			dir.st.Dropped.Each(func(reason string, n uint64) {
				ch <- prometheus.MustNewConstMetric(bridgeDropped, prometheus.CounterValue, float64(n), s.Name, dir.name, reason)
			})
		}
	}
}
