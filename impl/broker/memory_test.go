package broker

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	tenantpkg "github.com/skybridge-mq/skybridge/impl/tenant"
)

// userProps returns n user properties, each key and value of size bytes.
func userProps(n, size int) packet.Properties {
	var p packet.Properties
	kv := bytes.Repeat([]byte("k"), size)
	for range n {
		p.User = append(p.User, packet.UserProperty{Key: kv, Value: kv})
	}
	return p
}

// The tenant's caps on user properties (count and bytes) refuse a PUBLISH
// with 0x97 and a will's CONNECT with CONNACK 0x97, counted as a quota
// drop and a user_properties throttle.
func TestUserPropertyCaps(t *testing.T) {
	t.Parallel()
	h := newLimited(t, func(s *tenantpkg.Settings) { s.MaxUserProperties, s.MaxUserPropertyBytes = 4, 32 })
	p := h.dial("p", packet.V5, "small")
	p.connect("p", true, packet.Properties{})
	p.expect(connack5)
	for i, tt := range []struct {
		props packet.Properties
		want  string
	}{
		{userProps(4, 4), "PUBACK id=1 code=0x10"}, // 4 properties, 32 bytes: allowed (no subscriber)
		{userProps(5, 0), "PUBACK id=2 code=0x97"}, // 5 properties
		{userProps(2, 9), "PUBACK id=3 code=0x97"}, // 36 bytes
	} {
		m := pub("a", "x", 1, uint16(i+1))
		m.Properties = tt.props
		p.send(m)
		p.expect(tt.want)
	}
	w := h.dial("w", packet.V5, "small")
	c := &packet.Connect{Version: packet.V5, ClientID: []byte("w"), CleanStart: true, KeepAlive: 30,
		WillFlag: true, WillTopic: []byte("w"), WillPayload: []byte("gone"), WillProperties: userProps(5, 0)}
	w.send(c)
	refused(t, w, "CONNACK code=0x97")
	st := h.b.Stats()
	if n := st.Throttled[ThrottleUserProperties].Load(); n != 3 {
		t.Errorf("user_properties throttles = %d, want 3", n)
	}
	if n, na := st.DroppedBy[DropQuota].Load(), st.DroppedBy[DropNotAuthorized].Load(); n != 2 || na != 0 {
		t.Errorf("drops: quota_exceeded %d, not_authorized %d; want 2, 0", n, na)
	}
}

// max_will_size counts the whole will, as the broker keeps it: topic,
// payload and properties (the hardening issue: 1 MB wills of 200,000 empty
// user properties passed a payload-only check).
func TestWillSizeCountsProperties(t *testing.T) {
	t.Parallel()
	h := newLimited(t, func(s *tenantpkg.Settings) {
		s.MaxWillSize, s.MaxUserProperties, s.MaxUserPropertyBytes = 1000, 0, 0
	})
	for _, tt := range []struct {
		props packet.Properties
		want  string
	}{
		{userProps(10, 10), connack5},                                            // 200 bytes + overhead: within
		{userProps(100, 0), "CONNACK code=0x95"},                                 // empty, but 100 slice headers
		{userProps(1, 600), "CONNACK code=0x95"},                                 // 1200 bytes of properties
		{packet.Properties{}, connack5},                                          // a plain will
		{correlation(2000), "CONNACK code=0x95"},                                 // correlation data counts too
		{userProps(1, 10), connack5},                                             // small
		{userProps(1000/message.UserPropertyOverhead+1, 0), "CONNACK code=0x95"}, // just over
	} {
		w := h.dial("w", packet.V5, "small")
		w.send(&packet.Connect{Version: packet.V5, ClientID: []byte("w"), CleanStart: true, KeepAlive: 30,
			WillFlag: true, WillTopic: []byte("w"), WillPayload: []byte("gone"), WillProperties: tt.props})
		if got, _ := w.recv(); len(got) != 1 || got[0] != tt.want {
			t.Errorf("will with %d user properties: %v, want %s", len(tt.props.User), got, tt.want)
		}
		w.c.Closed()
	}
}

func correlation(n int) packet.Properties {
	var p packet.Properties
	p.CorrelationData = make([]byte, n)
	p.Set(packet.PropCorrelationData)
	return p
}

// inbox_bytes counts what queued messages cost in memory, user properties
// included: an offline session cannot be made to hold hundreds of
// megabytes with messages of empty user properties.
func TestInboxBytesCountUserProperties(t *testing.T) {
	t.Parallel()
	const inbox = 1 << 20
	h := newLimited(t, func(s *tenantpkg.Settings) {
		s.InboxBytes, s.MaxUserProperties, s.MaxUserPropertyBytes = inbox, 0, 0
	})
	s := h.dial("s", packet.V5, "small")
	s.connect("s", false, expiry(600))
	s.expect(connack5)
	s.send(sub(1, "big", 1))
	s.expect("SUBACK id=1 codes=[0x01]")
	s.send(&packet.Disconnect{})
	s.c.Closed()
	p := h.dial("p", packet.V5, "small")
	p.connect("p", true, packet.Properties{})
	p.expect(connack5)
	props := userProps(5000, 0) // 25 KB on the wire
	per := message.SizeOf([]byte("big"), []byte("x"), &props)
	if per < 5000*message.UserPropertyOverhead {
		t.Fatalf("a message of 5000 empty user properties counts %d bytes", per)
	}
	for i := range 10 {
		m := pub("big", "x", 1, uint16(i+1))
		m.Properties = props
		p.send(m)
		p.expect(fmt.Sprintf("PUBACK id=%d", i+1))
	}
	held := inbox / per
	if n := h.b.Stats().DroppedBy[DropQueueFull].Load(); n != uint64(10-held) {
		t.Errorf("%d messages dropped for the full inbox, want %d (%d of %d bytes fit in %d)", n, 10-held, held, per, inbox)
	}
}
