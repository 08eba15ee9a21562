package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// fakeBroker is the least MQTT server the generator can talk to, so that
// the generator's own ceiling can be measured: it answers CONNECT,
// SUBSCRIBE, PINGREQ and QoS 1/2 flows and otherwise discards what it
// reads. With flood set, every subscription is answered by PUBLISH packets
// (QoS 0, timestamped, 16-byte payload) written as fast as the socket takes
// them.
type fakeBroker struct {
	ln       net.Listener
	flood    bool
	floodQoS packet.QoS
	received atomic.Int64 // PUBLISH packets read
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

func startFakeBroker(flood bool) (*fakeBroker, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &fakeBroker{ln: ln, flood: flood, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

func (f *fakeBroker) Addr() string { return f.ln.Addr().String() }

func (f *fakeBroker) Close() {
	f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *fakeBroker) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns[c] = struct{}{}
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.serve(c)
			c.Close()
			f.mu.Lock()
			delete(f.conns, c)
			f.mu.Unlock()
		}()
	}
}

func (f *fakeBroker) serve(c net.Conn) {
	r := packet.NewReader(c, 64<<10)
	v := packet.V311
	var out []byte
	var wmu sync.Mutex
	write := func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		_, err := c.Write(b)
		return err
	}
	var n int64
	var ack packet.Ack
	var stopFlood chan struct{}
	defer func() {
		if stopFlood != nil {
			close(stopFlood)
		}
	}()
	for {
		if r.Buffered() == 0 {
			f.received.Add(n)
			n = 0
			if len(out) > 0 {
				if write(out) != nil {
					return
				}
				out = out[:0]
			}
		}
		h, body, err := r.ReadPacket()
		if err != nil {
			return
		}
		switch h.Type {
		case packet.CONNECT:
			var cp packet.Connect
			if cp.Decode(h, body, 0) != nil {
				return
			}
			v = cp.Version
			out, _ = (&packet.Connack{}).Append(out, v)
		case packet.PUBLISH:
			n++
			if qos := h.Flags >> 1 & 3; qos > 0 {
				// The packet identifier follows the topic.
				tl := int(binary.BigEndian.Uint16(body))
				id := binary.BigEndian.Uint16(body[2+tl:])
				t := packet.PUBACK
				if qos == 2 {
					t = packet.PUBREC
				}
				out, _ = (&packet.Ack{PacketType: t, PacketID: id}).Append(out, v)
			}
		case packet.PUBREL:
			if ack.Decode(h, body, v) != nil {
				return
			}
			out, _ = (&packet.Ack{PacketType: packet.PUBCOMP, PacketID: ack.PacketID}).Append(out, v)
		case packet.SUBSCRIBE:
			var sp packet.Subscribe
			if sp.Decode(h, body, v) != nil {
				return
			}
			sa := packet.Suback{PacketID: sp.PacketID}
			for _, s := range sp.Subscriptions {
				sa.ReasonCodes = append(sa.ReasonCodes, packet.ReasonCode(s.QoS))
			}
			out, _ = sa.Append(out, v)
			if f.flood && stopFlood == nil && len(sp.Subscriptions) > 0 {
				stopFlood = make(chan struct{})
				topic := append([]byte(nil), sp.Subscriptions[0].Filter...)
				if err := write(out); err != nil {
					return
				}
				out = out[:0]
				go f.floodTo(write, topic, v, stopFlood)
			}
		case packet.PINGREQ:
			out, _ = (&packet.Pingresp{}).Append(out, v)
		case packet.DISCONNECT:
			return
		}
	}
}

// floodTo writes batches of QoS 0 PUBLISH packets, each stamped with the
// time of its batch, until stop is closed or a write fails.
func (f *fakeBroker) floodTo(write func([]byte) error, topic []byte, v packet.Version, stop <-chan struct{}) {
	payload := make([]byte, 16)
	pk := packet.Publish{Topic: topic, Payload: payload}
	var buf []byte
	for {
		select {
		case <-stop:
			return
		default:
		}
		buf = buf[:0]
		binary.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
		for range 1024 {
			buf, _ = pk.Append(buf, v)
		}
		if write(buf) != nil {
			return
		}
	}
}

// NullSinkReport is the result of the nullsink command.
type NullSinkReport struct {
	Note    string    `json:"note"`
	Results []*Result `json:"results"`
}

func runNullSink(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("nullsink", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dur := fs.Duration("d", 3*time.Second, "measured duration of each case")
	out := fs.String("o", "", "write the JSON report to this file instead of stdout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	type tc struct {
		name  string
		flood bool
		w     Workload
	}
	cases := []tc{
		{"pub 1 conn QoS 0 16B → null sink", false, Workload{Pubs: 1, PubTopic: "t", QoS: 0, Size: 16}},
		{"pub 10 conns QoS 0 16B → null sink", false, Workload{Pubs: 10, PubTopic: "t/%i", QoS: 0, Size: 16}},
		{"pub 1 conn QoS 1 16B 100 in flight → acking sink", false, Workload{Pubs: 1, PubTopic: "t", QoS: 1, Size: 16}},
		{"pub 1 conn QoS 2 16B 100 in flight → acking sink", false, Workload{Pubs: 1, PubTopic: "t", QoS: 2, Size: 16}},
		{"sub 1 conn QoS 0 16B ← flooding fake broker", true, Workload{Subs: 1, SubFilter: "t", QoS: 0}},
		{"sub 10 conns QoS 0 16B ← flooding fake broker", true, Workload{Subs: 10, SubFilter: "t/%i", QoS: 0}},
	}
	rep := NullSinkReport{Note: "the generator against in-process fake brokers that discard (pub) or flood (sub); generator and fake broker share the machine's cores"}
	for _, c := range cases {
		fb, err := startFakeBroker(c.flood)
		if err != nil {
			return err
		}
		w := c.w
		w.Client = ClientOptions{Addr: fb.Addr(), Inflight: 100, Clean: true, SrcIPs: 16, SendBuf: 64 << 10}
		w.Warmup, w.Duration, w.Progress, w.Label = 500*time.Millisecond, *dur, stderr, c.name
		res := w.Run(ctx)
		fb.Close()
		res.Scenario = c.name
		if w.Pubs > 0 {
			res.Metric, res.Unit, res.Primary = "send rate", "msg/s", res.SendRate
			// The sink's count is the truth for what crossed the socket.
			res.Received = fb.received.Load()
		} else {
			res.Metric, res.Unit, res.Primary = "receive rate", "msg/s", res.RecvRate
		}
		fmt.Fprintf(stderr, "%-52s %12.0f msg/s\n", c.name, res.Primary)
		rep.Results = append(rep.Results, res)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return writeJSON(rep, *out, stdout)
}
