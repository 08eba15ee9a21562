package session

import (
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// TestTakeOutputHeldAtEnd: a change that gates output journaled when
// nothing follows it yet (a QoS 2 message queued behind a full window)
// holds the output from the end of the buffer on. Taking everything before
// it must move the hold to the start of the next buffer: left at its old
// offset it pointed past the end of the new buffer (a panic, found by the
// simulator) or into the middle of a later packet.
func TestTakeOutputHeldAtEnd(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.MaxInflight = 1
	now := time.Unix(1000, 0)
	s := New(&cfg, 1, "t", "c", true)
	s.Attach(&packet.Connect{Version: packet.V311, ClientID: []byte("c"), KeepAlive: 30}, AttachInfo{}, now)
	_, seq := s.TakeOps()
	s.Committed(seq)
	if out := s.TakeOutput(nil, now); len(out) == 0 {
		t.Fatal("no CONNACK")
	}
	msg := func(p string, q packet.QoS) *message.Message {
		return &message.Message{Topic: []byte("a/b"), Payload: []byte(p), QoS: q, Owned: true}
	}
	if o := s.Deliver(msg("first", 1), Delivery{QoS: 1}, now); o != Sent {
		t.Fatalf("first: %v", o)
	}
	if o := s.Deliver(msg("second", 2), Delivery{QoS: 2}, now); o != Queued {
		t.Fatalf("second: %v", o)
	}
	_, seq = s.TakeOps() // not yet durable
	out := s.TakeOutput(nil, now)
	if n := countPackets(t, out); n != 1 {
		t.Fatalf("first batch has %d packets, want the first PUBLISH only", n)
	}
	// Output written after the hold waits for it too.
	s.Handle(&packet.Pingreq{}, now)
	if out := s.TakeOutput(nil, now); len(out) != 0 {
		t.Fatalf("output after the hold went early: % x", out)
	}
	s.Committed(seq)
	if n := countPackets(t, s.TakeOutput(nil, now)); n != 1 {
		t.Fatalf("after the commit: %d packets, want the PINGRESP", n)
	}
}

func countPackets(t *testing.T, out []byte) int {
	t.Helper()
	n := 0
	for len(out) > 0 {
		if len(out) < 2 {
			t.Fatalf("truncated packet: % x", out)
		}
		size, i := 0, 1
		for shift := 0; ; shift += 7 {
			b := out[i]
			i++
			size |= int(b&0x7f) << shift
			if b&0x80 == 0 {
				break
			}
		}
		if i+size > len(out) {
			t.Fatalf("truncated packet: % x", out)
		}
		out = out[i+size:]
		n++
	}
	return n
}

// TestCommitsOutOfOrder: ops taken first may be committed last (taken into
// a batch that commits later than the next ones'). Output held behind a
// change is released only once that change and every change before it are
// durable, not when a later span is.
func TestCommitsOutOfOrder(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	now := time.Unix(1000, 0)
	s := New(&cfg, 1, "t", "c", true)
	s.Attach(&packet.Connect{Version: packet.V311, ClientID: []byte("c"), KeepAlive: 30}, AttachInfo{}, now)
	_, sp := s.TakeOps()
	s.Committed(sp)
	if out := s.TakeOutput(nil, now); len(out) == 0 {
		t.Fatal("no CONNACK")
	}
	msg := func(p string) *message.Message {
		return &message.Message{Topic: []byte("a/b"), Payload: []byte(p), QoS: 2, Owned: true}
	}
	var spans []Span
	for _, p := range []string{"one", "two", "three"} {
		s.Deliver(msg(p), Delivery{QoS: 2}, now) // gating: held until durable
		_, sp := s.TakeOps()
		spans = append(spans, sp)
	}
	for i, want := range []struct {
		commit  int
		packets int
	}{
		{2, 0}, // the third alone: the first two are not durable
		{0, 1}, // the first: its PUBLISH goes; the second still holds the third
		{1, 2}, // the second: both go
	} {
		s.Committed(spans[want.commit])
		if n := countPackets(t, s.TakeOutput(nil, now)); n != want.packets {
			t.Fatalf("step %d (span %d committed): %d packets, want %d", i, want.commit, n, want.packets)
		}
	}
	s.Committed(Span{spans[0].Lo, spans[2].Hi}) // again, overlapping: nothing more, no panic
	if out := s.TakeOutput(nil, now); len(out) != 0 {
		t.Fatalf("output after everything was released: % x", out)
	}
}
