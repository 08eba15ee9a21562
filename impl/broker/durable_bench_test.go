package broker

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/store"
)

// benchDurable publishes b.N QoS 1 messages from one publisher to one
// connected persistent subscriber that acknowledges them, with up to
// window messages unacknowledged, on a store on disk (pebble) or none
// (memory). The publisher's batches end every 64 messages (Conn.Idle), as
// a server's reader ends them when it has read all that came. It reports
// messages per second.
func benchDurable(b *testing.B, kind string) {
	e := env.Real()
	var st store.Store = store.Memory{}
	if kind == "pebble" {
		ps, err := store.Open(e.FS, b.TempDir(), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		go ps.Run()
		defer ps.Close()
		st = ps
	}
	br := New(DefaultConfig(), e, st)
	h := &harness{t: &testing.T{}, b: br}
	var mu sync.Mutex // the committer calls back on its own goroutine
	wakes := make(chan struct{}, 1)
	dial := func(name string) *client {
		cl := &client{h: h, v: packet.V311, name: name}
		cl.c = br.NewConn(ConnInfo{DefaultTenant: "t", IdleEndsBatch: true}, func() {
			select {
			case wakes <- struct{}{}:
			default:
			}
		})
		return cl
	}
	sub := dial("sub")
	sub.send(&packet.Connect{Version: packet.V311, ClientID: []byte("sub"), KeepAlive: 60}) // persistent
	sub.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("d/#"), QoS: 1}}})
	pub := dial("pub")
	pub.send(&packet.Connect{Version: packet.V311, ClientID: []byte("pub"), CleanStart: true, KeepAlive: 60})
	payload := []byte("0123456789abcdef")
	const window = 1000
	acked, received := 0, 0
	drain := func(wait bool) {
		if wait {
			select {
			case <-wakes:
			case <-time.After(time.Second):
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for {
			out, _ := pub.c.Output(nil)
			if len(out) == 0 {
				break
			}
			acked += countType(out, packet.PUBACK)
		}
		for {
			out, _ := sub.c.Output(nil)
			if len(out) == 0 {
				break
			}
			ids := publishIDs(out)
			received += len(ids)
			for _, id := range ids {
				sub.c.Handle(packet.FixedHeader{Type: packet.PUBACK, Remaining: 2}, []byte{byte(id >> 8), byte(id)})
			}
		}
	}
	drain(false)
	acked = 0
	b.ReportAllocs()
	b.ResetTimer()
	began := time.Now()
	for i := range b.N {
		for i-acked >= window {
			mu.Lock()
			pub.c.Idle() // the end of a batch, as the server's reader says it
			mu.Unlock()
			drain(true)
		}
		m := &packet.Publish{Topic: []byte("d/1"), QoS: 1, PacketID: uint16(i%60000 + 1), Payload: payload}
		enc, _ := packet.Encode(m, packet.V311)
		mu.Lock()
		pub.c.Handle(packet.FixedHeader{Type: packet.PUBLISH, Flags: enc[0] & 0x0f, Remaining: len(enc) - 2}, enc[2:])
		mu.Unlock()
		if i%64 == 0 {
			mu.Lock()
			pub.c.Idle()
			mu.Unlock()
			drain(false)
		}
	}
	mu.Lock()
	pub.c.Idle()
	mu.Unlock()
	for acked < b.N || received < b.N {
		drain(true)
	}
	b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "msg/s")
	if ps, ok := st.(*store.Pebble); ok {
		groups, batches, _, _ := ps.Stats()
		b.ReportMetric(float64(batches)/float64(max(groups, 1)), "batches/sync")
		b.ReportMetric(float64(ps.Cancelled())/float64(b.N), "cancelled-ops/msg")
	}
}

func countType(out []byte, t packet.Type) int {
	n := 0
	r := packet.NewReader(bytesReader(out), 0)
	for {
		h, _, err := r.ReadPacket()
		if err != nil {
			return n
		}
		if h.Type == t {
			n++
		}
	}
}

func publishIDs(out []byte) []uint16 {
	var ids []uint16
	r := packet.NewReader(bytesReader(out), 0)
	for {
		h, body, err := r.ReadPacket()
		if err != nil {
			return ids
		}
		if h.Type == packet.PUBLISH && h.Flags&0x06 != 0 {
			tl := int(body[0])<<8 | int(body[1])
			ids = append(ids, uint16(body[2+tl])<<8|uint16(body[3+tl]))
		}
	}
}

func BenchmarkQoS1PersistentMemory(b *testing.B) { benchDurable(b, "memory") }
func BenchmarkQoS1PersistentPebble(b *testing.B) { benchDurable(b, "pebble") }

// BenchmarkRestart1M measures Open + Recover of a store holding one
// offline persistent session with 1,000,000 queued messages. Run it with
// -benchtime=1x; the figure is in docs/STORAGE.md.
func BenchmarkRestart1M(b *testing.B) {
	dir := b.TempDir()
	e := env.Real()
	st, err := store.Open(e.FS, dir, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	const n = 1_000_000
	batch := &store.Batch{Ops: []store.Op{{Kind: store.PutSession, Tenant: "t", ClientID: "c",
		Session: &store.SessionRecord{Version: 5, Expiry: 1 << 30, OfflineSince: time.Now()}}}}
	for i := 0; i < n; i++ {
		m := &message.Message{Topic: []byte("d/1"), Payload: []byte(fmt.Sprintf("%016d", i)), QoS: 1, Owned: true}
		batch.Add(store.Op{Kind: store.PutDelivery, Tenant: "t", ClientID: "c",
			Delivery: &store.DeliveryRecord{Seq: uint64(i), PID: uint16(i%65535 + 1), QoS: 1, Msg: m}})
		if len(batch.Ops) == 10000 {
			st.Commit(batch, nil)
			st.Step()
			batch = &store.Batch{}
		}
	}
	st.Commit(batch, nil)
	st.Step()
	st.Close()
	b.ResetTimer()
	for range b.N {
		began := time.Now()
		st, err := store.Open(e.FS, dir, store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		br := New(DefaultConfig(), e, st)
		if err := br.Recover(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(began).Seconds(), "s/restart")
		st.Close()
	}
}
