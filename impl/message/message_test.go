package message

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// borrowed returns a message whose bytes alias buf, as FromPublish makes
// them from a connection's read buffer.
func borrowed(buf []byte, payload int) *Message {
	p := &packet.Publish{QoS: packet.QoS1, Retain: true, Topic: buf[:5], Payload: bytes.Repeat([]byte{'p'}, payload)}
	p.Properties.ContentType = buf[5:9]
	p.Properties.Set(packet.PropContentType)
	p.Properties.User = []packet.UserProperty{{Key: buf[9:10], Value: buf[10:12]}}
	p.Properties.MessageExpiry = 30
	p.Properties.Set(packet.PropMessageExpiry)
	var m Message
	m.FromPublish(p, time.Unix(100, 0))
	m.Publisher, m.PublisherKey = 7, 99
	return &m
}

// content compares what a message carries, not how it is kept.
var content = cmpopts.IgnoreUnexported(Message{})

func TestOwnAndShareCopyBorrowedBytes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload int
		counted bool
	}{
		{"small", 16, true},
		{"class boundary", 128 - 5 - 4 - 3, true},
		{"large", 1 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := []byte("a/b/ctextkvv")
			m := borrowed(buf, tc.payload)
			want := *borrowed(bytes.Clone(buf), tc.payload)
			want.Owned = true
			for _, c := range []*Message{m.Own(), m.Share()} {
				copy(buf, "XXXXXXXXXXXX") // the read buffer is reused
				if diff := cmp.Diff(&want, c, content); diff != "" {
					t.Errorf("copy differs (-want +got):\n%s", diff)
				}
				copy(buf, "a/b/ctextkvv")
			}
			if got := m.Share().class != 0; got != tc.counted {
				t.Errorf("Share counted = %v, want %v", got, tc.counted)
			}
		})
	}
}

func TestOwnedMessageIsNotCopied(t *testing.T) {
	o := borrowed([]byte("a/b/ctextkvv"), 4).Own()
	if o.Own() != o || o.Share() != o || o.Ref() != o {
		t.Fatal("an owned message was copied")
	}
	o.Release() // not counted: nothing happens, however often
	o.Release()
	if string(o.Topic) != "a/b/c" {
		t.Fatalf("topic = %q after Release of an uncounted message", o.Topic)
	}
}

func TestShareCountsReferences(t *testing.T) {
	c := borrowed([]byte("a/b/ctextkvv"), 16).Share()
	if c.Share() != c || c.Ref() != c {
		t.Fatal("Share or Ref of a counted message made a copy")
	}
	for i := range 2 {
		c.Release()
		if string(c.Topic) != "a/b/c" || len(c.Payload) != 16 {
			t.Fatalf("after %d of 3 releases the message reads %q/%d bytes", i+1, c.Topic, len(c.Payload))
		}
	}
	c.Release()
	if raceEnabled {
		// The race build poisons a released message's bytes, so that a
		// reader that kept it too long reads garbage a test notices.
		if a := c.arena[:cap(c.arena)]; len(a) == 0 || a[0] != 0xEE {
			t.Fatalf("released arena not poisoned: % x", a[:min(len(a), 8)])
		}
	}
}

func TestReleaseTooOftenPanics(t *testing.T) {
	c := borrowed([]byte("a/b/ctextkvv"), 16).Share()
	c.Release()
	defer func() {
		if recover() == nil {
			t.Fatal("a second Release of the last reference did not panic")
		}
	}()
	c.Release()
}

func TestShareReleaseAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	m := borrowed([]byte("a/b/ctextkvv"), 300)
	m.Share().Release() // the pool's first message
	if n := testing.AllocsPerRun(1000, func() {
		c := m.Share()
		c.Ref().Release()
		c.Release()
	}); n != 0 {
		t.Fatalf("Share/Release allocated %.1f times per run", n)
	}
}

func BenchmarkShareRelease(b *testing.B) {
	m := borrowed([]byte("a/b/ctextkvv"), 16)
	b.ReportAllocs()
	for b.Loop() {
		m.Share().Release()
	}
}

func BenchmarkOwn(b *testing.B) {
	m := borrowed([]byte("a/b/ctextkvv"), 16)
	b.ReportAllocs()
	for b.Loop() {
		_ = m.Own()
	}
}
