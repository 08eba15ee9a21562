package broker

import (
	"fmt"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// benchPublish measures the broker core's publish path: decode-free
// handling of one PUBLISH from a publisher and its delivery into the
// sessions of subs subscribers, whose output is drained as a writer would.
func benchPublish(b *testing.B, qos packet.QoS, subs int) {
	clock := env.NewManualClock(time.Unix(0, 0))
	cfg := DefaultConfig()
	br := New(cfg, env.Env{Clock: clock, Rand: env.NewRand(1)}, nil)
	h := &harness{t: &testing.T{}, b: br, clock: clock}
	var subscribers []*client
	for i := range subs {
		c := h.dial(fmt.Sprint("s", i), packet.V311, "t")
		c.connect(fmt.Sprint("s", i), true, packet.Properties{})
		c.send(sub(1, "bench/+/data", qos))
		c.recv()
		subscribers = append(subscribers, c)
	}
	p := h.dial("p", packet.V311, "t")
	p.connect("p", true, packet.Properties{})
	p.recv()
	msg := pub("bench/1/data", "0123456789abcdef", qos, 1)
	enc, _ := packet.Encode(msg, packet.V311)
	hdr := packet.FixedHeader{Type: packet.PUBLISH, Flags: enc[0] & 0x0f, Remaining: len(enc) - 2}
	body := enc[2:]
	acks := make([][]byte, subs)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		p.c.Handle(hdr, body)
		if i%64 == 63 || i == b.N-1 {
			out, _ := p.c.Output(p.spare)
			p.spare = out[:0]
			for j, s := range subscribers {
				out, _ := s.c.Output(s.spare)
				s.spare = out[:0]
				if qos == packet.QoS1 {
					// Acknowledge everything received, as a client would.
					acks[j] = acks[j][:0]
					r := packet.NewReader(bytesReader(out), 0)
					for {
						hd, bd, err := r.ReadPacket()
						if err != nil {
							break
						}
						if hd.Type == packet.PUBLISH {
							id := uint16(bd[len(bd)-16-2])<<8 | uint16(bd[len(bd)-16-1])
							s.c.Handle(packet.FixedHeader{Type: packet.PUBACK, Remaining: 2}, []byte{byte(id >> 8), byte(id)})
						}
					}
				}
			}
		}
	}
}

func BenchmarkPublishQoS0To1(b *testing.B)   { benchPublish(b, 0, 1) }
func BenchmarkPublishQoS0To100(b *testing.B) { benchPublish(b, 0, 100) }
func BenchmarkPublishQoS1To1(b *testing.B)   { benchPublish(b, 1, 1) }
func BenchmarkPublishQoS1To100(b *testing.B) { benchPublish(b, 1, 100) }
