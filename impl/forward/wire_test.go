package forward

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// view is what a message carries across the link, without the message's
// private fields.
type view struct {
	Tenant       string
	Topic        string
	Payload      []byte
	QoS          packet.QoS
	Retain       bool
	Properties   packet.Properties
	Expiry       time.Time
	PublisherKey uint64
}

func viewOf(tenant []byte, m *message.Message) view {
	return view{Tenant: string(tenant), Topic: string(m.Topic), Payload: m.Payload, QoS: m.QoS, Retain: m.Retain,
		Properties: m.Properties, Expiry: m.Expiry, PublisherKey: m.PublisherKey}
}

func fullMessage() *message.Message {
	m := &message.Message{Topic: []byte("a/b/ü"), Payload: []byte{0, 1, 2, 0xff}, QoS: packet.QoS2, Retain: true,
		Expiry: time.Unix(1_800_000_000, 123), PublisherKey: 0xdeadbeefcafe, Publisher: 7}
	p := &m.Properties
	p.PayloadFormat, p.ContentType, p.ResponseTopic, p.CorrelationData = 1, []byte("text/plain"), []byte("reply/x"), []byte{9, 8, 7}
	p.Set(packet.PropPayloadFormat)
	p.Set(packet.PropContentType)
	p.Set(packet.PropResponseTopic)
	p.Set(packet.PropCorrelationData)
	p.User = []packet.UserProperty{{Key: []byte("k"), Value: []byte("v")}, {Key: []byte("k"), Value: []byte("")}, {Key: []byte(""), Value: []byte("w")}}
	return m
}

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	full := fullMessage()
	// Not forwarded: a subscription identifier and an expiry interval a
	// message should not hold; the encoder leaves them out.
	stray := fullMessage()
	stray.Properties.SubscriptionIDs = []uint32{5}
	stray.Properties.MessageExpiry = 60
	stray.Properties.Set(packet.PropMessageExpiry)
	for _, tc := range []struct {
		name   string
		tenant string
		m      *message.Message
		to     Audience
		want   view
	}{
		{"minimal", "", &message.Message{Topic: []byte("t")}, Everyone, view{Topic: "t"}},
		{"qos1 negative expiry", "t1", &message.Message{Topic: []byte("t"), QoS: 1, Expiry: time.Unix(-5, 0)}, Everyone,
			view{Tenant: "t1", Topic: "t", QoS: 1, Expiry: time.Unix(-5, 0)}},
		{"every field", "acme", full, Everyone, viewOf([]byte("acme"), full)},
		{"stray properties dropped", "acme", stray, Everyone, viewOf([]byte("acme"), full)},
		{"groups only", "acme", full, Audience{Groups: []string{"$share/g/a/+", "$share/h/#"}}, viewOf([]byte("acme"), full)},
		{"plain and a group", "", &message.Message{Topic: []byte("t")}, Audience{Plain: true, Groups: []string{"$share/g/t"}}, view{Topic: "t"}},
	} {
		b, err := AppendRecord([]byte("prefix"), tc.tenant, tc.m, tc.to)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var e encoder
		if n := e.prepare(tc.tenant, tc.m, &tc.to); n != len(b)-len("prefix") {
			t.Errorf("%s: size %d, encoded %d", tc.name, n, len(b)-len("prefix"))
		}
		var d decoder
		tenant, m, rest, err := d.next(b[len("prefix"):])
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(rest) != 0 || m.Owned {
			t.Errorf("%s: %d bytes left, owned %v", tc.name, len(rest), m.Owned)
		}
		if diff := cmp.Diff(tc.want, viewOf(tenant, m), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
		if diff := cmp.Diff(tc.to, audienceOf(&d), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: audience (-want +got):\n%s", tc.name, diff)
		}
	}
}

func audienceOf(d *decoder) Audience {
	a := Audience{Plain: d.plain}
	for _, g := range d.groups {
		a.Groups = append(a.Groups, string(g))
	}
	return a
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	rec := func(mutate func(p *packet.Publish)) []byte {
		p := packet.Publish{Topic: []byte("t"), QoS: 1, PacketID: 1}
		mutate(&p)
		b, err := p.Append([]byte{3, 't', 'e', 'n', 0, 0}, packet.V5)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	dataFrame := func(count uint32, recs ...[]byte) []byte {
		f := make([]byte, dataHeader)
		for _, r := range recs {
			f = append(f, r...)
		}
		sealData(f, 1, int(count))
		return f[LenSize:]
	}
	good := rec(func(*packet.Publish) {})
	for _, tc := range []struct {
		name  string
		frame []byte
		code  packet.ReasonCode
	}{
		{"good", dataFrame(1, good), 0},
		{"empty", nil, packet.MalformedPacket},
		{"unknown type", []byte{9}, packet.ProtocolError},
		{"short data", []byte{frameData, 0, 0}, packet.MalformedPacket},
		{"count beyond the frame", dataFrame(1000, good), packet.MalformedPacket},
		{"count below the records", dataFrame(0, good), packet.MalformedPacket},
		{"truncated record", dataFrame(1, good[:len(good)-1]), packet.MalformedPacket},
		{"DUP", dataFrame(1, rec(func(p *packet.Publish) { p.Dup = true })), packet.MalformedPacket},
		{"wildcard topic", dataFrame(1, rec(func(p *packet.Publish) { p.Topic = []byte("a/#") })), packet.TopicNameInvalid},
		{"empty topic", dataFrame(1, rec(func(p *packet.Publish) { p.Topic = nil })), packet.TopicNameInvalid},
		{"subscription id", dataFrame(1, rec(func(p *packet.Publish) { p.Properties.SubscriptionIDs = []uint32{3} })), packet.ProtocolError},
		{"topic alias", dataFrame(1, rec(func(p *packet.Publish) {
			p.Properties.TopicAlias = 3
			p.Properties.Set(packet.PropTopicAlias)
		})), packet.ProtocolError},
		{"bad flags", dataFrame(1, append([]byte{3, 't', 'e', 'n', 8, 0}, good[6:]...)), packet.MalformedPacket},
		{"for nobody", dataFrame(1, append([]byte{3, 't', 'e', 'n', flagNoPlain, 0}, good[6:]...)), packet.ProtocolError},
		{"no group", dataFrame(1, append([]byte{3, 't', 'e', 'n', flagGroups, 0, 0}, good[6:]...)), packet.MalformedPacket},
		{"a group not shared", dataFrame(1, append([]byte{3, 't', 'e', 'n', flagGroups, 1, 3, 'a', '/', 'b', 0}, good[6:]...)), packet.TopicFilterInvalid},
		{"a group", dataFrame(1, append([]byte{3, 't', 'e', 'n', flagGroups, 1, 11, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'a', 'b', 0}, good[6:]...)), 0},
		{"not a publish", dataFrame(1, []byte{3, 't', 'e', 'n', 0, 0, 0x40, 2, 0, 1}), packet.MalformedPacket},
		{"bad utf-8 topic", dataFrame(1, rec(func(p *packet.Publish) { p.Topic = []byte{0xff} })), packet.MalformedPacket},
	} {
		r := NewReceiver(ReceiverConfig{Node: "b", Incarnation: 1}, ReceiverState{})
		r.Connected()
		hello := appendHello(nil, &Hello{Version: Version, From: "a", To: "b", Incarnation: 1, FirstUnacked: 1})
		if err := r.Handle(hello[LenSize:], nil); err != nil {
			t.Fatal(err)
		}
		err := r.Handle(tc.frame, func(*Delivery) {})
		var e *Error
		switch {
		case tc.code == 0 && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.code != 0 && !errors.As(err, &e):
			t.Errorf("%s: error %v, want code %v", tc.name, err, tc.code)
		case tc.code != 0 && e.Code != tc.code:
			t.Errorf("%s: %v, want code %v", tc.name, err, tc.code)
		}
	}
}

func TestHelloErrors(t *testing.T) {
	t.Parallel()
	ok := Hello{Version: Version, From: "a", To: "b", Incarnation: 3, Link: 7, FirstUnacked: 9}
	for _, tc := range []struct {
		name string
		h    Hello
		code packet.ReasonCode
	}{
		{"good", ok, 0},
		{"other version", Hello{Version: Version + 1, From: "a", To: "b", Incarnation: 1, FirstUnacked: 1}, packet.UnsupportedProtocolVersion},
		{"incarnation 0", Hello{Version: Version, From: "a", To: "b", FirstUnacked: 1}, packet.ProtocolError},
		{"version 1 (no link number)", Hello{Version: 1, From: "a", To: "b", Incarnation: 1, FirstUnacked: 1}, packet.UnsupportedProtocolVersion},
	} {
		b := appendHello(nil, &tc.h)
		h, err := ParseHello(b[LenSize:])
		var e *Error
		switch {
		case tc.code == 0:
			if err != nil || h != tc.h {
				t.Errorf("%s: %+v, %v", tc.name, h, err)
			}
		case !errors.As(err, &e) || e.Code != tc.code:
			t.Errorf("%s: %v, want code %v", tc.name, err, tc.code)
		}
	}
	b := appendHello(nil, &ok)
	b[LenSize+1] = 'X'
	if _, err := ParseHello(b[LenSize:]); err == nil {
		t.Error("bad magic accepted")
	}
	if _, err := ParseHello(append(b[LenSize:len(b):len(b)], 0)); err == nil {
		t.Error("trailing byte accepted")
	}
}

// FuzzReceiver feeds arbitrary frames to a receiver past its handshake and
// to every control-frame parser: nothing may panic, and a message the
// decoder accepts encodes back to a record that decodes to the same.
func FuzzReceiver(f *testing.F) {
	s := NewSender(SenderConfig{Node: "a", Peer: "b", Incarnation: 1})
	for _, m := range []*message.Message{fullMessage(), testMsg("x", 0), testMsg("y", 1)} {
		if err := s.Enqueue("acme", m, m.QoS, 1); err != nil {
			f.Fatal(err)
		}
	}
	s.Connected()
	s.Output(nil, 1<<20)
	w := appendWelcome(nil, &welcome{Version: Version, Node: "b", Incarnation: 1, Limit: 10, MaxFrame: DefaultMaxFrame})
	if err := s.Handle(w[LenSize:]); err != nil {
		f.Fatal(err)
	}
	for _, fr := range frames(f, s.Output(nil, 1<<20)) {
		f.Add(fr)
	}
	f.Add(w[LenSize:])
	f.Add(appendAck(nil, 1, 5)[LenSize:])
	f.Add(AppendGoAway(nil, errorf(packet.ProtocolError, "x"))[LenSize:])
	f.Fuzz(func(t *testing.T, frame []byte) {
		r := NewReceiver(ReceiverConfig{Node: "b", Incarnation: 1, MaxFrame: 1 << 16}, ReceiverState{})
		r.Connected()
		hello := appendHello(nil, &Hello{Version: Version, From: "a", To: "b", Incarnation: 1, FirstUnacked: 1})
		if err := r.Handle(hello[LenSize:], nil); err != nil {
			t.Fatal(err)
		}
		var re []byte
		err := r.Handle(frame, func(d *Delivery) {
			var err error
			to := Audience{Plain: d.Plain}
			for _, g := range d.Groups {
				to.Groups = append(to.Groups, string(g))
			}
			if re, err = AppendRecord(re[:0], string(d.Tenant), d.Message, to); err != nil {
				t.Fatalf("accepted message does not encode: %v", err)
			}
			var dec decoder
			tenant, m, _, err := dec.next(re)
			if err != nil {
				t.Fatalf("re-encoded message does not decode: %v", err)
			}
			if diff := cmp.Diff(viewOf(d.Tenant, d.Message), viewOf(tenant, m), cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("round trip (-first +second):\n%s", diff)
			}
		})
		var e *Error
		if err != nil && (!errors.As(err, &e) || e.Reason == "") {
			t.Fatalf("error without a reason: %v", err)
		}
		r.Output(nil)
		ParseHello(frame)
		s := NewSender(SenderConfig{Node: "a", Peer: "b", Incarnation: 1})
		s.Connected()
		s.Handle(frame)
		s.Output(nil, 1<<20)
	})
}
