package session

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/store"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// TestRestoreRedelivers rebuilds a session from stored records as a broker
// does after a restart and checks what the reconnecting client receives:
// PUBREL for the released QoS 2 message, the unacknowledged message again
// with DUP and its original packet id, then the rest of the queue.
func TestRestoreRedelivers(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	now := time.Unix(1000, 0)
	msg := func(p string) *message.Message {
		return &message.Message{Topic: []byte("a/b"), Payload: []byte(p), QoS: 2, Owned: true}
	}
	s := Restore(&cfg, 1, "t", "c", &store.SessionRecord{Version: 5, Expiry: 300, OfflineSince: now.Add(-time.Minute)})
	s.RestoreSub("a/+", topic.Options{QoS: 2})
	s.RestoreInbound(77)
	s.RestoreDelivery(&store.DeliveryRecord{Seq: 4, PID: 10, QoS: 1, Msg: msg("first")})
	s.RestoreDelivery(&store.DeliveryRecord{Seq: 5, PID: 11, QoS: 2, State: store.Released})
	s.RestoreDelivery(&store.DeliveryRecord{Seq: 6, PID: 12, QoS: 2, Msg: msg("third")})
	if !s.HasSubscription([]byte("a/+")) {
		t.Fatal("subscription not restored")
	}
	if off := s.Offline(); !off.Equal(now.Add(-time.Minute)) {
		t.Fatalf("Offline = %v", off)
	}

	c := &packet.Connect{Version: packet.V5, ClientID: []byte("c"), KeepAlive: 30}
	c.Properties.SessionExpiry = 300
	c.Properties.Set(packet.PropSessionExpiry)
	s.Attach(c, AttachInfo{Present: true}, now)
	if out := s.TakeOutput(nil, now); out != nil {
		t.Fatalf("output before the session record is durable: % x", out)
	}
	_, seq := s.TakeOps()
	s.Committed(seq)
	var got []string
	d := packet.NewDecoder(bytes.NewReader(s.TakeOutput(nil, now)), packet.V5)
	for {
		p, err := d.Next()
		if err != nil {
			break
		}
		got = append(got, packet.Format(p))
	}
	want := []string{
		"CONNACK present code=0x00 receive-max=1024 alias-max=64 max-packet=1048576",
		"PUBREL id=11",
		`PUBLISH topic="a/b" qos=1 id=10 dup payload="first"`,
		`PUBLISH topic="a/b" qos=2 id=12 dup payload="third"`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("after restore (-want +got):\n%s", diff)
	}
	// The restored inbound id still deduplicates a re-sent QoS 2 PUBLISH.
	r := s.Handle(&packet.Publish{QoS: 2, PacketID: 77, Topic: []byte("x"), Dup: true}, now)
	if r.Route != nil {
		t.Fatal("a re-sent QoS 2 message with a stored packet id was routed again")
	}
	// New deliveries take packet ids after the restored ones.
	if o := s.Deliver(msg("new"), Delivery{QoS: 1}, now); o != Sent {
		t.Fatalf("Deliver = %v", o)
	}
	if s.byPID.get(13) == nil {
		t.Fatal("new delivery did not get packet id 13")
	}
}
