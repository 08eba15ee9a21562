package broker

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// benchPublish measures the broker core's publish path: decode-free
// handling of one PUBLISH from a publisher and its delivery into the
// sessions of subs subscribers, whose output is drained as a writer would.
func benchPublish(b *testing.B, qos packet.QoS, subs int) {
	step, _ := publishLoop(qos, subs)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		step(i, i == b.N-1)
	}
}

// publishLoop sets up a publisher and subs subscribers and returns the
// step of benchPublish: step i publishes one message and, every 64th (or
// when last), drains everyone's output as their writers would, with the
// clients' side of the QoS 1 and 2 flows: subscribers acknowledge what
// they receive (PUBACK, or PUBREC then PUBCOMP) and the publisher
// releases its QoS 2 messages (PUBREL). received counts the messages the
// subscribers have received and (at QoS 1 and 2) completed.
func publishLoop(qos packet.QoS, subs int) (step func(i int, last bool), received *int) {
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
	const payload = "0123456789abcdef"
	msg := pub("bench/1/data", payload, qos, 1)
	enc, _ := packet.Encode(msg, packet.V311)
	hdr := packet.FixedHeader{Type: packet.PUBLISH, Flags: enc[0] & 0x0f, Remaining: len(enc) - 2}
	body := enc[2:]
	pidAt := len(body) - len(payload) - 2 // the packet id precedes the payload
	// The harness allocates nothing of its own, so that allocs/op is the
	// broker's.
	ackHdr := [16]packet.FixedHeader{
		packet.PUBLISH: {Type: packet.PUBACK, Remaining: 2},
		packet.PUBREC:  {Type: packet.PUBREL, Flags: 2, Remaining: 2},
		packet.PUBREL:  {Type: packet.PUBCOMP, Remaining: 2},
	}
	if qos == packet.QoS2 {
		ackHdr[packet.PUBLISH].Type = packet.PUBREC
	}
	ack := make([]byte, 2)
	var c *client
	answered := false
	done := 0
	answer := func(typ byte, body []byte) {
		if t := packet.Type(typ); t == packet.PUBLISH && qos < 2 || t == packet.PUBREL && c != p {
			done++
		}
		switch packet.Type(typ) {
		case packet.PUBLISH:
			copy(ack, body[len(body)-len(payload)-2:])
		case packet.PUBREC, packet.PUBREL:
			copy(ack, body[:2])
		default:
			return
		}
		c.c.Handle(ackHdr[typ], ack)
		answered = true
	}
	// drain takes c's output until the client has nothing more to answer.
	drain := func(cl *client) {
		c = cl
		for {
			out, _ := c.c.Output(c.spare)
			if out == nil {
				return // nothing more; the spare buffer stays ours
			}
			c.spare = out[:0]
			answered = false
			walkPackets(out, answer)
			if !answered || qos == 0 {
				return
			}
		}
	}
	step = func(i int, last bool) {
		if qos == packet.QoS2 {
			// A QoS 2 packet id stays taken until PUBREL: each message has
			// its own.
			id := uint16(i%60000 + 1)
			body[pidAt], body[pidAt+1] = byte(id>>8), byte(id)
		}
		p.c.Handle(hdr, body)
		if i%64 == 63 || last {
			for _, s := range subscribers {
				drain(s)
			}
			drain(p)
		}
	}
	return step, &done
}

func BenchmarkPublishQoS0To1(b *testing.B)   { benchPublish(b, 0, 1) }
func BenchmarkPublishQoS0To100(b *testing.B) { benchPublish(b, 0, 100) }
func BenchmarkPublishQoS1To1(b *testing.B)   { benchPublish(b, 1, 1) }
func BenchmarkPublishQoS1To100(b *testing.B) { benchPublish(b, 1, 100) }
func BenchmarkPublishQoS2To1(b *testing.B)   { benchPublish(b, 2, 1) }

// benchFanIn measures many publishers into one subscriber, the fan-in of
// skybridge-bench's fanin-N-1 scenarios, in the core: b.RunParallel runs
// 50 publishers per CPU, each on its own connection and topic
// (fanin/ID/data), all matching the one subscription fanin/+/data. A
// drain goroutine plays the subscriber's writer and reader: it takes the
// output when woken and, at QoS 1, acknowledges every PUBLISH. QoS 1
// publishers keep at most 100 messages unacknowledged, as clients do, so
// with back-pressure they go at the subscriber's pace. The real clock is
// used (a manual clock's lock would be a contention point of its own).
// It reports the subscriber's rate and what was delivered per publish
// (QoS 0 beyond the subscriber's 1 MiB output buffer is dropped).
func benchFanIn(b *testing.B, qos packet.QoS) {
	br := New(DefaultConfig(), env.Env{Clock: env.RealClock{}, Rand: env.NewLockedRand(1)}, nil)
	h := &harness{t: &testing.T{}, b: br}
	subWake := make(chan struct{}, 1)
	sub := &client{h: h, v: packet.V311, name: "sub"}
	sub.c = br.NewConn(ConnInfo{DefaultTenant: "t"}, func() {
		select {
		case subWake <- struct{}{}:
		default:
		}
	})
	sub.connect("sub", true, packet.Properties{})
	sub.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("fanin/+/data"), QoS: qos}}})
	sub.recv()

	var received atomic.Int64
	stop := make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		var spare []byte
		ack := []byte{0, 0}
		for {
			select {
			case <-subWake:
			case <-stop:
				return
			}
			for {
				out, _ := sub.c.Output(spare)
				if len(out) == 0 {
					break
				}
				n := 0
				walkPackets(out, func(typ byte, body []byte) {
					if typ != byte(packet.PUBLISH) {
						return
					}
					n++
					if qos > 0 {
						tl := int(body[0])<<8 | int(body[1])
						ack[0], ack[1] = body[2+tl], body[3+tl]
						sub.c.Handle(packet.FixedHeader{Type: packet.PUBACK, Remaining: 2}, ack)
					}
				})
				received.Add(int64(n))
				spare = out[:0]
			}
		}
	}()

	var ids atomic.Int64
	payload := "0123456789abcdef"
	b.SetParallelism(50)
	b.ReportAllocs()
	b.ResetTimer()
	began := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		id := ids.Add(1)
		wake := make(chan struct{}, 1)
		p := &client{h: h, v: packet.V311, name: fmt.Sprint("p", id)}
		p.c = br.NewConn(ConnInfo{DefaultTenant: "t"}, func() {
			select {
			case wake <- struct{}{}:
			default:
			}
		})
		p.c.Handle(connectPacket(fmt.Sprint("p", id)))
		var spare []byte
		out, _ := p.c.Output(spare)
		spare = out[:0]
		msg := pub(fmt.Sprintf("fanin/%d/data", id), payload, qos, 1)
		enc, _ := packet.Encode(msg, packet.V311)
		hdr := packet.FixedHeader{Type: packet.PUBLISH, Flags: enc[0] & 0x0f, Remaining: len(enc) - 2}
		body := enc[2:]
		const window = 100
		outstanding, pid := 0, uint16(0)
		acks := func() {
			for {
				out, _ := p.c.Output(spare)
				if len(out) == 0 {
					return
				}
				walkPackets(out, func(typ byte, _ []byte) {
					if typ == byte(packet.PUBACK) {
						outstanding--
					}
				})
				spare = out[:0]
			}
		}
		for pb.Next() {
			if qos > 0 {
				for outstanding >= window {
					acks()
					if outstanding >= window {
						<-wake
					}
				}
				pid = pid%60000 + 1
				body[len(body)-len(payload)-2] = byte(pid >> 8)
				body[len(body)-len(payload)-1] = byte(pid)
				outstanding++
			}
			p.c.Handle(hdr, body)
			if qos > 0 && outstanding%16 == 0 {
				acks()
			}
		}
	})
	elapsed := time.Since(began)
	b.StopTimer()
	close(stop)
	<-drained
	b.ReportMetric(float64(received.Load())/elapsed.Seconds(), "delivered/s")
	b.ReportMetric(float64(received.Load())/float64(b.N), "delivered/op")
}

// connectPacket returns a 3.1.1 clean-session CONNECT, as Handle takes it.
func connectPacket(id string) (packet.FixedHeader, []byte) {
	enc, _ := packet.Encode(&packet.Connect{Version: packet.V311, ClientID: []byte(id), CleanStart: true, KeepAlive: 60}, packet.V311)
	r := packet.NewReader(bytesReader(enc), 0)
	h, body, _ := r.ReadPacket()
	return h, body
}

// walkPackets calls f with the type and body of each packet in buf.
func walkPackets(buf []byte, f func(typ byte, body []byte)) {
	for len(buf) >= 2 {
		size, i := 0, 1
		for shift := 0; i < len(buf); shift += 7 {
			c := buf[i]
			i++
			size |= int(c&0x7f) << shift
			if c&0x80 == 0 {
				break
			}
		}
		if i+size > len(buf) {
			return
		}
		f(buf[0]>>4, buf[i:i+size])
		buf = buf[i+size:]
	}
}

func BenchmarkFanInQoS0(b *testing.B) { benchFanIn(b, 0) }
func BenchmarkFanInQoS1(b *testing.B) { benchFanIn(b, 1) }

// BenchmarkConnect measures the broker core's part of a connection's life,
// as a runtime drives it: NewConn, a 3.1.1 CONNECT (clean session, keep
// alive 60 s, client id "c<i>") handled and answered (Output), the batch's
// end (Idle), then a DISCONNECT and Closed. No network: allocs/op are the
// core's, with the per-connection state an idle connection keeps
// (Conn, entry, session) among them.
func BenchmarkConnect(b *testing.B) {
	clock := env.NewManualClock(time.Unix(0, 0))
	br := New(DefaultConfig(), env.Env{Clock: clock, Rand: env.NewRand(1)}, nil)
	info := ConnInfo{Listener: "tcp", Remote: "127.0.0.1:1234", IdleEndsBatch: true}
	type frame struct {
		h    packet.FixedHeader
		body []byte
	}
	split := func(enc []byte) frame {
		// Remaining lengths below 128 take one byte.
		return frame{packet.FixedHeader{Type: packet.Type(enc[0] >> 4), Flags: enc[0] & 0x0f, Remaining: len(enc) - 2}, enc[2:]}
	}
	const ids = 4096 // distinct client ids, encoded ahead
	connects := make([]frame, ids)
	for i := range connects {
		enc, err := packet.Encode(&packet.Connect{Version: packet.V311, ClientID: []byte(fmt.Sprintf("c%05d", i)), CleanStart: true, KeepAlive: 60}, packet.V311)
		if err != nil {
			b.Fatal(err)
		}
		connects[i] = split(enc)
	}
	disc := frame{packet.FixedHeader{Type: packet.DISCONNECT}, nil}
	var spare []byte
	wake := func() {}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c := br.NewConn(info, wake)
		f := connects[i%ids]
		c.Handle(f.h, f.body)
		out, _ := c.Output(spare)
		if len(out) != 4 || out[0] != 0x20 || out[3] != 0 {
			b.Fatalf("CONNACK % x", out)
		}
		spare = out[:0]
		c.Idle()
		c.Handle(disc.h, disc.body)
		c.Idle()
		c.Closed()
	}
}
