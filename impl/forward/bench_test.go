package forward

import (
	"fmt"
	"testing"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

func benchMessage(size int) *message.Message {
	m := &message.Message{Topic: []byte("sensors/site-1/line-4/temperature"), Payload: make([]byte, size), QoS: packet.QoS1}
	m.Properties.User = []packet.UserProperty{{Key: []byte("origin"), Value: []byte("plc-7")}}
	return m
}

// BenchmarkEncodeFrame measures a sender turning n messages into one
// frame: Enqueue (copying each message into the frame), sealing, Output,
// and the acknowledgement that frees the frame.
func BenchmarkEncodeFrame(b *testing.B) {
	for _, n := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("msgs=%d", n), func(b *testing.B) {
			m := benchMessage(16)
			s := NewSender(SenderConfig{Node: "a", Peer: "b", Incarnation: 1})
			s.Connected()
			s.Output(nil, 1<<20)
			w := appendWelcome(nil, &welcome{Version: Version, Node: "b", Incarnation: 1, Limit: 1 << 62, MaxFrame: DefaultMaxFrame})
			if err := s.Handle(w[LenSize:]); err != nil {
				b.Fatal(err)
			}
			out := make([]byte, 0, 1<<20)
			var ack []byte
			var released []uint64
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				for j := range n {
					if err := s.Enqueue("acme", m, packet.QoS1, uint64(j)); err != nil {
						b.Fatal(err)
					}
				}
				out = s.Output(out[:0], 1<<20)
				ack = appendAck(ack[:0], uint64(i+1), 1<<62)
				if err := s.Handle(ack[LenSize:]); err != nil {
					b.Fatal(err)
				}
				released = s.TakeReleased(released[:0])
				b.SetBytes(int64(len(out)))
			}
		})
	}
}

// BenchmarkDecodeFrame measures a receiver decoding a frame of n messages
// and delivering each (borrowed, no copy).
func BenchmarkDecodeFrame(b *testing.B) {
	for _, n := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("msgs=%d", n), func(b *testing.B) {
			m := benchMessage(16)
			s := NewSender(SenderConfig{Node: "a", Peer: "b", Incarnation: 1})
			for j := range n {
				if err := s.Enqueue("acme", m, packet.QoS1, uint64(j)); err != nil {
					b.Fatal(err)
				}
			}
			s.seal(false)
			frame := s.frames.Peek().buf[LenSize:]
			r := NewReceiver(ReceiverConfig{Node: "b", Incarnation: 1, Window: 1 << 30}, ReceiverState{})
			r.Connected()
			hello := appendHello(nil, &Hello{Version: Version, From: "a", To: "b", Incarnation: 1, FirstUnacked: 1})
			if err := r.Handle(hello[LenSize:], nil); err != nil {
				b.Fatal(err)
			}
			got := 0
			deliver := func(d *Delivery) { got += len(d.Message.Payload) }
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				r.delivered = 0 // the same frame again, as new
				if err := r.Handle(frame, deliver); err != nil {
					b.Fatal(err)
				}
			}
			if got == 0 {
				b.Fatal("nothing delivered")
			}
		})
	}
}
