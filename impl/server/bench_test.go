package server

import (
	"bytes"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// Benchmarks of the runtime around the broker, over loopback TCP; the
// clients run in the same process, so their cost is in the figures too.
//
//	go test -run XXX -bench . -benchmem ./impl/server/

func benchServer(b *testing.B) string {
	cfg := testConfig(ListenerConfig{Name: "tcp", Type: TCP, Addr: "127.0.0.1:0", DefaultTenant: "default"})
	s := New(cfg, broker.New(cfg.Broker, env.Real(), nil))
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	return s.Addr("tcp").String()
}

// BenchmarkConnect is a connection storm: each operation opens a
// connection, sends CONNECT, reads CONNACK and closes.
func BenchmarkConnect(b *testing.B) {
	addr := benchServer(b)
	var id atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			idleClient(b, addr, "storm"+strconv.FormatInt(id.Add(1), 10)).Close()
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conn/s")
}

func encode(t testing.TB, p packet.Packet, v packet.Version) []byte {
	t.Helper()
	b, err := packet.Encode(p, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// benchClient is a raw client for the publish benchmarks.
type benchClient struct {
	nc net.Conn
	r  *packet.Reader
}

func newBenchClient(b *testing.B, addr, id string) *benchClient {
	nc := idleClient(b, addr, id)
	b.Cleanup(func() { nc.Close() })
	return &benchClient{nc: nc, r: packet.NewReader(nc, 64<<10)}
}

func (c *benchClient) subscribe(b *testing.B, filter string, qos packet.QoS) {
	sub := &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte(filter), QoS: qos}}}
	if _, err := c.nc.Write(encode(b, sub, packet.V311)); err != nil {
		b.Fatal(err)
	}
	if h, _, err := c.r.ReadPacket(); err != nil || h.Type != packet.SUBACK {
		b.Fatalf("SUBACK: %v %v", h, err)
	}
}

// benchPublish sends b.N publishes of 16 bytes from one client to another
// through the server, in rounds of batch messages: a round is written at
// once and the next starts when the subscriber has received it (so that
// QoS 0 is never dropped for a full output buffer). At QoS 1 both sides
// acknowledge, and the publisher reads its PUBACKs each round.
func benchPublish(b *testing.B, qos packet.QoS, batch int) {
	addr := benchServer(b)
	sub := newBenchClient(b, addr, "sub")
	sub.subscribe(b, "bench/t", qos)
	pub := newBenchClient(b, addr, "pub")

	var round []byte
	for i := range batch {
		p := &packet.Publish{Topic: []byte("bench/t"), QoS: qos, Payload: bytes.Repeat([]byte{'x'}, 16)}
		if qos > 0 {
			p.PacketID = uint16(i + 1)
		}
		round = append(round, encode(b, p, packet.V311)...)
	}
	received := make(chan int, 1)
	go func() { // the subscriber
		var acks []byte
		got := 0
		for {
			h, body, err := sub.r.ReadPacket()
			if err != nil {
				return
			}
			if h.Type != packet.PUBLISH {
				continue
			}
			got++
			if qos > 0 {
				// The packet identifier follows the topic.
				n := int(body[0])<<8 | int(body[1])
				acks = append(acks, 0x40, 2, body[2+n], body[3+n])
				if sub.r.Buffered() == 0 {
					if _, err := sub.nc.Write(acks); err != nil {
						return
					}
					acks = acks[:0]
				}
			}
			if got == batch {
				received <- got
				got = 0
			}
		}
	}()
	b.SetBytes(16)
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += batch {
		if _, err := pub.nc.Write(round); err != nil {
			b.Fatal(err)
		}
		if qos > 0 {
			for range batch {
				if h, _, err := pub.r.ReadPacket(); err != nil || h.Type != packet.PUBACK {
					b.Fatalf("PUBACK: %v %v", h, err)
				}
			}
		}
		select {
		case <-received:
		case <-time.After(10 * time.Second):
			b.Fatal("the subscriber did not get a round in 10 s")
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

func BenchmarkPublishQoS0(b *testing.B) { benchPublish(b, 0, 1000) }
func BenchmarkPublishQoS1(b *testing.B) { benchPublish(b, 1, 100) }

// BenchmarkPing is a request and its answer on one connection: the cost of
// a round trip through a reader, the broker and a writer.
func BenchmarkPing(b *testing.B) {
	c := newBenchClient(b, benchServer(b), "ping")
	ping := []byte{0xc0, 0x00}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.nc.Write(ping); err != nil {
			b.Fatal(err)
		}
		if h, _, err := c.r.ReadPacket(); err != nil || h.Type != packet.PINGRESP {
			b.Fatalf("PINGRESP: %v %v", h, err)
		}
	}
}
