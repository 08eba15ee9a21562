package main

import (
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// These benchmarks decided the load generator's client: the same null sink,
// the same 16-byte QoS 0 / QoS 1 (100 in flight) publishes, once through
// paho.mqtt.golang and once through the lean client on impl/packet. Run:
//
//	go test -run '^$' -bench Publish -benchtime 2000000x ./cmd/skybridge-bench

func waitSink(b *testing.B, fb *fakeBroker, want int64) {
	deadline := time.Now().Add(30 * time.Second)
	for fb.received.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("sink got %d of %d", fb.received.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func benchLean(b *testing.B, qos packet.QoS) {
	fb, err := startFakeBroker(false)
	if err != nil {
		b.Fatal(err)
	}
	defer fb.Close()
	c, err := dial(dialConfig{Addr: fb.Addr(), ClientID: "lean", Clean: true, KeepAlive: 60})
	if err != nil {
		b.Fatal(err)
	}
	stopping := newFlag()
	defer func() { stopping.Store(true); c.nc.Close() }()
	p := newPublisher(c, 0, NewRecorder(), qos, "bench/t", 16, 100, 0, int64(b.N), 10*time.Second, stopping)
	go p.read()
	b.ReportAllocs()
	b.ResetTimer()
	p.run(make(chan struct{}))
	waitSink(b, fb, int64(b.N))
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

func benchPaho(b *testing.B, qos byte) {
	fb, err := startFakeBroker(false)
	if err != nil {
		b.Fatal(err)
	}
	defer fb.Close()
	opts := paho.NewClientOptions().AddBroker("tcp://" + fb.Addr()).SetClientID("paho").
		SetAutoReconnect(false).SetOrderMatters(false).SetCleanSession(true).SetKeepAlive(60 * time.Second)
	c := paho.NewClient(opts)
	if t := c.Connect(); !t.WaitTimeout(5*time.Second) || t.Error() != nil {
		b.Fatalf("connect: %v", t.Error())
	}
	defer c.Disconnect(0)
	payload := make([]byte, 16)
	window := make(chan paho.Token, 100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := c.Publish("bench/t", qos, false, payload)
		if qos > 0 {
			if len(window) == cap(window) {
				(<-window).Wait()
			}
			window <- t
		}
	}
	waitSink(b, fb, int64(b.N))
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

func BenchmarkPublishQoS0(b *testing.B) {
	b.Run("lean", func(b *testing.B) { benchLean(b, packet.QoS0) })
	b.Run("paho.mqtt.golang", func(b *testing.B) { benchPaho(b, 0) })
}

func BenchmarkPublishQoS1(b *testing.B) {
	b.Run("lean", func(b *testing.B) { benchLean(b, packet.QoS1) })
	b.Run("paho.mqtt.golang", func(b *testing.B) { benchPaho(b, 1) })
}
