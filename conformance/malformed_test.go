package conformance

// Malformed packets and protocol errors: the broker must close the
// connection; a 5.0 broker that says why first (CONNACK in the CONNECT
// phase, DISCONNECT afterwards) must use the reason code the specification
// gives. The same bytes on a 3.1.1 connection must just close it.

import (
	"fmt"
	"slices"
	"testing"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

var (
	wireV5          = []packet.Version{packet.V5}
	wireV5V311      = []packet.Version{packet.V5, packet.V311}
	wireAllVersions = []packet.Version{packet.V5, packet.V311, packet.V31}
)

// Reason codes a 5.0 broker may close with. Where the specification names
// the code (Malformed Packet for what cannot be parsed, Protocol Error for
// what it calls one) the set has that code alone; where it only forbids the
// input, both are accepted.
var (
	wireMalformedRC = []packet.ReasonCode{packet.MalformedPacket}
	wireProtocolRC  = []packet.ReasonCode{packet.ProtocolError}
	wireEitherRC    = []packet.ReasonCode{packet.MalformedPacket, packet.ProtocolError}
)

// wireBadInput is bytes a broker must answer by closing the connection.
type wireBadInput struct {
	name     string
	versions []packet.Version
	// connect: the bytes are sent in place of the CONNECT; otherwise after
	// a successful CONNECT.
	connect bool
	bytes   func(t *testing.T, r *Raw, topic string) []byte
	codes   []packet.ReasonCode // acceptable 5.0 reason codes
	cite    string
}

func wireV(v packet.Version) string {
	if v == packet.V5 {
		return "v5"
	}
	return "v" + v.String()
}

// wireRunBadInput sends each case on a fresh connection of each of its versions
// and checks that the broker closes it [v5 MQTT-4.13.1-1] [v3.1.1 MQTT-4.8.0-1],
// with an allowed reason code if it sends one; a CONNACK or DISCONNECT with
// a code of 0x80 or more is followed by the close [v5 MQTT-4.13.2-1].
func wireRunBadInput(t *testing.T, cases []wireBadInput) {
	for _, c := range cases {
		for _, v := range c.versions {
			t.Run(fmt.Sprintf("%s/%s", c.name, wireV(v)), func(t *testing.T) {
				t.Parallel()
				t.Cleanup(func() {
					if t.Failed() && c.cite != "" {
						t.Logf("statements: %s", c.cite)
					}
				})
				r := DialRaw(t, v)
				if !c.connect {
					r.Connect(ConnectOpts{})
				}
				r.SendBytes(c.bytes(t, r, Topic(t)))
				wireExpectDropped(t, r, c.connect, c.codes...)
			})
		}
	}
}

// Ill-formed strings: invalid UTF-8, an encoded surrogate, U+0000.
var wireBadStrings = []struct {
	name, s, cite string
}{
	{"ill-formed", "a\xffb", "[v5 MQTT-1.5.4-1] [v3.1.1 MQTT-1.5.3-1]"},
	{"overlong", "a\xc0\xafb", "[v5 MQTT-1.5.4-1] [v3.1.1 MQTT-1.5.3-1]"},
	{"surrogate", "a\xed\xa0\x80b", "[v5 MQTT-1.5.4-1] [v3.1.1 MQTT-1.5.3-1]"},
	{"U+0000", "a\x00b", "[v5 MQTT-1.5.4-2] [v3.1.1 MQTT-1.5.3-2]"},
}

// wireStringField puts a string into one UTF-8 string field of some packet.
type wireStringField struct {
	name     string
	versions []packet.Version
	connect  bool
	cite     string
	build    func(t *testing.T, r *Raw, topic, s string) packet.Packet
}

func wireWill(s string, set func(p *packet.Properties)) *packet.Publish {
	w := &packet.Publish{Topic: []byte("will/" + s), Payload: []byte("w")}
	if set != nil {
		w.Topic = []byte("will")
		set(&w.Properties)
	}
	return w
}

func wirePublish(topic string, set func(p *packet.Properties)) *packet.Publish {
	p := &packet.Publish{QoS: packet.QoS1, PacketID: 1, Topic: []byte(topic), Payload: []byte("x")}
	if set != nil {
		set(&p.Properties)
	}
	return p
}

func wireWithUser(k, v string) func(p *packet.Properties) {
	return func(p *packet.Properties) { p.User = []packet.UserProperty{{Key: []byte(k), Value: []byte(v)}} }
}

func wireWithString(id packet.PropertyID, s string) func(p *packet.Properties) {
	return func(p *packet.Properties) {
		switch id {
		case packet.PropContentType:
			p.ContentType = []byte(s)
		case packet.PropResponseTopic:
			p.ResponseTopic = []byte(s)
		case packet.PropReasonString:
			p.ReasonString = []byte(s)
		case packet.PropAuthMethod:
			p.AuthMethod = []byte(s)
		}
		p.Set(id)
	}
}

var wireStringFields = []wireStringField{
	{name: "CONNECT client id", versions: wireV5V311, connect: true,
		cite: "[v5 MQTT-3.1.3-4] [v3.1.1 MQTT-3.1.3-4] [v5 MQTT-3.1.4-1] [v3.1.1 MQTT-3.1.4-1]",
		build: func(t *testing.T, r *Raw, _, s string) packet.Packet {
			return r.ConnectPacket(ConnectOpts{ClientID: "c" + s})
		}},
	{name: "CONNECT will topic", versions: wireV5V311, connect: true,
		cite: "[v5 MQTT-3.1.3-11] [v3.1.1 MQTT-3.1.3-10] [v5 MQTT-3.1.4-1] [v3.1.1 MQTT-3.1.4-1]",
		build: func(t *testing.T, r *Raw, _, s string) packet.Packet {
			return r.ConnectPacket(ConnectOpts{Will: wireWill(s, nil)})
		}},
	{name: "CONNECT user name", versions: wireV5V311, connect: true,
		cite: "[v5 MQTT-3.1.3-12] [v3.1.1 MQTT-3.1.3-11] [v5 MQTT-3.1.4-1] [v3.1.1 MQTT-3.1.4-1]",
		build: func(t *testing.T, r *Raw, _, s string) packet.Packet {
			c := r.ConnectPacket(ConnectOpts{})
			c.UsernameFlag, c.Username = true, []byte("u"+s)
			return c
		}},
	{name: "CONNECT user property name", versions: wireV5, connect: true, cite: "[v5 MQTT-1.5.7-1]",
		build: func(t *testing.T, r *Raw, _, s string) packet.Packet {
			var p packet.Properties
			wireWithUser(s, "v")(&p)
			return r.ConnectPacket(ConnectOpts{Properties: p})
		}},
	{name: "CONNECT user property value", versions: wireV5, connect: true, cite: "[v5 MQTT-1.5.7-1]",
		build: func(t *testing.T, r *Raw, _, s string) packet.Packet {
			var p packet.Properties
			wireWithUser("k", s)(&p)
			return r.ConnectPacket(ConnectOpts{Properties: p})
		}},
	{name: "CONNECT authentication method", versions: wireV5, connect: true,
		build: func(t *testing.T, r *Raw, _, s string) packet.Packet {
			var p packet.Properties
			wireWithString(packet.PropAuthMethod, s)(&p)
			return r.ConnectPacket(ConnectOpts{Properties: p})
		}},
	{name: "will content type", versions: wireV5, connect: true, cite: "[v5 MQTT-3.1.4-1]",
		build: func(t *testing.T, r *Raw, _, s string) packet.Packet {
			return r.ConnectPacket(ConnectOpts{Will: wireWill(s, wireWithString(packet.PropContentType, s))})
		}},
	{name: "will response topic", versions: wireV5, connect: true, cite: "[v5 MQTT-3.1.4-1]",
		build: func(t *testing.T, r *Raw, _, s string) packet.Packet {
			return r.ConnectPacket(ConnectOpts{Will: wireWill(s, wireWithString(packet.PropResponseTopic, "r/"+s))})
		}},
	{name: "will user property name", versions: wireV5, connect: true, cite: "[v5 MQTT-1.5.7-1]",
		build: func(t *testing.T, r *Raw, _, s string) packet.Packet {
			return r.ConnectPacket(ConnectOpts{Will: wireWill(s, wireWithUser(s, "v"))})
		}},
	{name: "will user property value", versions: wireV5, connect: true, cite: "[v5 MQTT-1.5.7-1]",
		build: func(t *testing.T, r *Raw, _, s string) packet.Packet {
			return r.ConnectPacket(ConnectOpts{Will: wireWill(s, wireWithUser("k", s))})
		}},
	{name: "PUBLISH topic", versions: wireV5V311, cite: "[v5 MQTT-3.3.2-1] [v3.1.1 MQTT-3.3.2-1]",
		build: func(t *testing.T, r *Raw, topic, s string) packet.Packet {
			return wirePublish(topic+"/"+s, nil)
		}},
	{name: "PUBLISH content type", versions: wireV5, cite: "[v5 MQTT-3.3.2-19]",
		build: func(t *testing.T, r *Raw, topic, s string) packet.Packet {
			return wirePublish(topic, wireWithString(packet.PropContentType, s))
		}},
	{name: "PUBLISH response topic", versions: wireV5, cite: "[v5 MQTT-3.3.2-13]",
		build: func(t *testing.T, r *Raw, topic, s string) packet.Packet {
			return wirePublish(topic, wireWithString(packet.PropResponseTopic, topic+"/"+s))
		}},
	{name: "PUBLISH user property name", versions: wireV5, cite: "[v5 MQTT-1.5.7-1]",
		build: func(t *testing.T, r *Raw, topic, s string) packet.Packet {
			return wirePublish(topic, wireWithUser(s, "v"))
		}},
	{name: "PUBLISH user property value", versions: wireV5, cite: "[v5 MQTT-1.5.7-1]",
		build: func(t *testing.T, r *Raw, topic, s string) packet.Packet {
			return wirePublish(topic, wireWithUser("k", s))
		}},
	{name: "SUBSCRIBE filter", versions: wireV5V311,
		build: func(t *testing.T, r *Raw, topic, s string) packet.Packet {
			return &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte(topic + "/" + s)}}}
		}},
	{name: "SUBSCRIBE user property", versions: wireV5, cite: "[v5 MQTT-1.5.7-1]",
		build: func(t *testing.T, r *Raw, topic, s string) packet.Packet {
			p := &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte(topic)}}}
			wireWithUser("k", s)(&p.Properties)
			return p
		}},
	{name: "UNSUBSCRIBE filter", versions: wireV5V311,
		build: func(t *testing.T, r *Raw, topic, s string) packet.Packet {
			return &packet.Unsubscribe{PacketID: 1, Filters: [][]byte{[]byte(topic + "/" + s)}}
		}},
	{name: "UNSUBSCRIBE user property", versions: wireV5, cite: "[v5 MQTT-1.5.7-1]",
		build: func(t *testing.T, r *Raw, topic, s string) packet.Packet {
			p := &packet.Unsubscribe{PacketID: 1, Filters: [][]byte{[]byte(topic)}}
			wireWithUser(s, "v")(&p.Properties)
			return p
		}},
	{name: "PUBACK reason string", versions: wireV5,
		build: func(t *testing.T, r *Raw, topic, s string) packet.Packet {
			id := wireInFlightToClient(t, r, topic, packet.QoS1)
			p := &packet.Ack{PacketType: packet.PUBACK, PacketID: id, ReasonCode: packet.UnspecifiedError}
			wireWithString(packet.PropReasonString, s)(&p.Properties)
			return p
		}},
	{name: "PUBREL user property", versions: wireV5, cite: "[v5 MQTT-1.5.7-1]",
		build: func(t *testing.T, r *Raw, topic, s string) packet.Packet {
			p := &packet.Ack{PacketType: packet.PUBREL, PacketID: wireInFlightToServer(t, r, topic)}
			wireWithUser("k", s)(&p.Properties)
			return p
		}},
}

// wireInFlightToClient subscribes r to topic, publishes a message to it from r
// and returns the packet identifier of the delivery, left unacknowledged.
func wireInFlightToClient(t *testing.T, r *Raw, topic string, qos packet.QoS) uint16 {
	t.Helper()
	Require(t, features.MaximumQoS >= qos, fmt.Sprintf("QoS %d", qos))
	if ack := r.Subscribe(packet.Subscription{Filter: []byte(topic), QoS: qos}); ack.ReasonCodes[0] != packet.ReasonCode(qos) {
		t.Fatalf("subscription at QoS %d answered %s", qos, Describe(ack))
	}
	r.Publish(&packet.Publish{QoS: qos, Topic: []byte(topic), Payload: []byte("x")})
	return r.ExpectPublish().PacketID
}

// wireInFlightToServer publishes at QoS 2 from r, leaving the exchange at the
// PUBREL, and returns its packet identifier.
func wireInFlightToServer(t *testing.T, r *Raw, topic string) uint16 {
	t.Helper()
	Require(t, features.MaximumQoS >= packet.QoS2, "QoS 2")
	id := r.NextID()
	r.Send(&packet.Publish{QoS: packet.QoS2, PacketID: id, Topic: []byte(topic), Payload: []byte("x")})
	if rec := r.Expect(packet.PUBREC).(*packet.Ack); rec.PacketID != id || rec.ReasonCode.IsError() {
		t.Fatalf("QoS 2 PUBLISH id %d answered %s", id, Describe(rec))
	}
	return id
}

// TestMalformedUTF8 sends an ill-formed UTF-8 string, an encoded surrogate
// and U+0000 in every UTF-8 string field a client sends; the broker must
// treat each as a Malformed Packet and close the connection.
func TestMalformedUTF8(t *testing.T) {
	t.Parallel()
	var cases []wireBadInput
	for _, f := range wireStringFields {
		for _, s := range wireBadStrings {
			cases = append(cases, wireBadInput{
				name: f.name + "/" + s.name, versions: f.versions, connect: f.connect,
				codes: wireMalformedRC, cite: s.cite + " " + f.cite,
				bytes: func(t *testing.T, r *Raw, topic string) []byte {
					return wire.encode(t, f.build(t, r, topic, s.s), r.V)
				},
			})
		}
	}
	wireRunBadInput(t, cases)
}

// TestMalformedFixedHeader covers the fixed header: reserved flag bits of
// every packet type [v5 MQTT-2.1.3-1] [v3.1.1 MQTT-2.2.2-1]
// [v3.1.1 MQTT-2.2.2-2], the reserved packet types, and bad Remaining
// Lengths.
func TestMalformedFixedHeader(t *testing.T) {
	t.Parallel()
	id := wire.u16(1)
	noProps := func(v packet.Version) []byte {
		if v == packet.V5 {
			return []byte{0}
		}
		return nil
	}
	wireRunBadInput(t, []wireBadInput{
		// Reserved flags: every type but PUBLISH has a fixed nibble.
		{name: "CONNECT flags 0001", versions: wireV5V311, connect: true, codes: wireMalformedRC,
			cite: "[v5 MQTT-2.1.3-1] [v3.1.1 MQTT-2.2.2-2] [v5 MQTT-3.1.4-1] [v3.1.1 MQTT-3.1.4-1]",
			bytes: func(t *testing.T, r *Raw, _ string) []byte {
				b := wire.encode(t, r.ConnectPacket(ConnectOpts{}), r.V)
				b[0] |= 0x01
				return b
			}},
		// The acknowledgements answer a real message in flight.
		{name: "PUBACK flags 0001", versions: wireV5V311, codes: wireMalformedRC, cite: "[v5 MQTT-2.1.3-1] [v3.1.1 MQTT-2.2.2-2]",
			bytes: func(t *testing.T, r *Raw, topic string) []byte {
				return wire.pkt(0x41, wire.u16(wireInFlightToClient(t, r, topic, packet.QoS1)))
			}},
		{name: "PUBREC flags 0100", versions: wireV5V311, codes: wireMalformedRC, cite: "[v5 MQTT-2.1.3-1] [v3.1.1 MQTT-2.2.2-2]",
			bytes: func(t *testing.T, r *Raw, topic string) []byte {
				return wire.pkt(0x54, wire.u16(wireInFlightToClient(t, r, topic, packet.QoS2)))
			}},
		{name: "PUBREL flags 0000", versions: wireV5V311, codes: wireMalformedRC,
			cite: "[v5 MQTT-2.1.3-1] [v3.1.1 MQTT-2.2.2-2] [v3.1.1 MQTT-3.6.1-1]",
			bytes: func(t *testing.T, r *Raw, topic string) []byte {
				return wire.pkt(0x60, wire.u16(wireInFlightToServer(t, r, topic)))
			}},
		{name: "PUBCOMP flags 1000", versions: wireV5V311, codes: wireMalformedRC, cite: "[v5 MQTT-2.1.3-1] [v3.1.1 MQTT-2.2.2-2]",
			bytes: func(t *testing.T, r *Raw, topic string) []byte {
				id := wireInFlightToClient(t, r, topic, packet.QoS2)
				r.Send(&packet.Ack{PacketType: packet.PUBREC, PacketID: id})
				r.Expect(packet.PUBREL)
				return wire.pkt(0x78, wire.u16(id))
			}},
		{name: "SUBSCRIBE flags 0000", versions: wireV5V311, codes: wireMalformedRC,
			cite: "[v5 MQTT-2.1.3-1] [v3.1.1 MQTT-2.2.2-2] [v3.1.1 MQTT-3.8.1-1]",
			bytes: func(t *testing.T, r *Raw, topic string) []byte {
				return wire.pkt(0x80, id, noProps(r.V), wire.str(topic), []byte{0})
			}},
		{name: "UNSUBSCRIBE flags 0011", versions: wireV5V311, codes: wireMalformedRC,
			cite: "[v5 MQTT-2.1.3-1] [v3.1.1 MQTT-2.2.2-2] [v3.1.1 MQTT-3.10.1-1]",
			bytes: func(t *testing.T, r *Raw, topic string) []byte {
				return wire.pkt(0xA3, id, noProps(r.V), wire.str(topic))
			}},
		{name: "PINGREQ flags 0001", versions: wireV5V311, codes: wireMalformedRC, cite: "[v5 MQTT-2.1.3-1] [v3.1.1 MQTT-2.2.2-2]",
			bytes: func(t *testing.T, r *Raw, _ string) []byte { return wire.pkt(0xC1) }},
		{name: "DISCONNECT flags 0010", versions: wireV5V311, codes: wireMalformedRC,
			cite:  "[v5 MQTT-2.1.3-1] [v3.1.1 MQTT-2.2.2-2] [v3.1.1 MQTT-3.14.1-1]",
			bytes: func(t *testing.T, r *Raw, _ string) []byte { return wire.pkt(0xE2) }},
		{name: "AUTH flags 0001", versions: wireV5, codes: wireMalformedRC, cite: "[v5 MQTT-2.1.3-1] [v5 MQTT-3.15.1-1]",
			bytes: func(t *testing.T, r *Raw, _ string) []byte {
				return wire.pkt(0xF1, []byte{byte(packet.ContinueAuthentication)},
					wire.props(wire.prop(packet.PropAuthMethod, wire.str("x"))))
			}},

		// Reserved packet types: 0 always, 15 before 5.0 (AUTH).
		{name: "packet type 0", versions: wireAllVersions, codes: wireEitherRC,
			bytes: func(t *testing.T, r *Raw, _ string) []byte { return []byte{0x00, 0x00} }},
		{name: "packet type 15 before 5.0", versions: []packet.Version{packet.V311, packet.V31},
			bytes: func(t *testing.T, r *Raw, _ string) []byte { return []byte{0xF0, 0x00} }},

		// Remaining Length.
		{name: "remaining length of five bytes", versions: wireAllVersions, codes: wireMalformedRC,
			bytes: func(t *testing.T, r *Raw, _ string) []byte { return []byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01} }},
		{name: "remaining length not minimal", versions: wireV5, codes: wireMalformedRC, cite: "[v5 MQTT-1.5.5-1]",
			bytes: func(t *testing.T, r *Raw, _ string) []byte { return []byte{0xC0, 0x80, 0x00} }},
		{name: "PINGREQ with a body", versions: wireV5V311, codes: wireMalformedRC,
			bytes: func(t *testing.T, r *Raw, _ string) []byte { return wire.pkt(0xC0, []byte{0}) }},
		{name: "PUBACK shorter than its packet identifier", versions: wireAllVersions, codes: wireMalformedRC,
			bytes: func(t *testing.T, r *Raw, _ string) []byte { return wire.pkt(0x40, []byte{0}) }},
		{name: "PUBLISH ending inside its topic", versions: wireAllVersions, codes: wireMalformedRC,
			bytes: func(t *testing.T, r *Raw, topic string) []byte {
				return wire.pkt(0x30, wire.str(topic)[:5])
			}},
		{name: "PUBLISH QoS 1 ending before its packet identifier", versions: wireAllVersions, codes: wireMalformedRC,
			bytes: func(t *testing.T, r *Raw, topic string) []byte { return wire.pkt(0x32, wire.str(topic), []byte{0}) }},
		{name: "SUBSCRIBE without subscription options", versions: wireAllVersions, codes: wireMalformedRC,
			bytes: func(t *testing.T, r *Raw, topic string) []byte {
				return wire.pkt(0x82, id, noProps(r.V), wire.str(topic))
			}},
		{name: "CONNECT ending inside its last field", versions: wireAllVersions, connect: true, codes: wireMalformedRC,
			cite: "[v5 MQTT-3.1.4-1] [v3.1.1 MQTT-3.1.4-1]",
			bytes: func(t *testing.T, r *Raw, _ string) []byte {
				b := wire.encode(t, r.ConnectPacket(ConnectOpts{}), r.V)
				b[1] -= 2 // cut the last field (client id, or password) short
				return b[:len(b)-2]
			}},
	})
}

// TestMalformedProperties covers the 5.0 property block: a property the
// packet type does not allow is a Malformed Packet, a property given twice
// that may appear only once is a Protocol Error, and a block that is
// missing or overruns the packet is Malformed.
func TestMalformedProperties(t *testing.T) {
	t.Parallel()
	pub := func(block []byte) func(t *testing.T, r *Raw, topic string) []byte {
		return func(t *testing.T, r *Raw, topic string) []byte {
			return wire.publish(0x02, topic, 1, block, "x")
		}
	}
	conn := func(block []byte) func(t *testing.T, r *Raw, topic string) []byte {
		return func(t *testing.T, r *Raw, _ string) []byte {
			return wire.connectWithProps(t, r, ConnectOpts{}, block)
		}
	}
	id := wire.u16(1)
	w := wire
	pfi := w.prop(packet.PropPayloadFormat, []byte{1})
	expiry := w.prop(packet.PropMessageExpiry, w.u32(60))
	ct := w.prop(packet.PropContentType, w.str("text/plain"))
	rt := w.prop(packet.PropResponseTopic, w.str("r"))
	cd := w.prop(packet.PropCorrelationData, w.str("c"))
	alias := w.prop(packet.PropTopicAlias, w.u16(1))
	sessExp := w.prop(packet.PropSessionExpiry, w.u32(10))
	recvMax := w.prop(packet.PropReceiveMaximum, w.u16(10))
	maxPkt := w.prop(packet.PropMaximumPacketSize, w.u32(1000))
	aliasMax := w.prop(packet.PropTopicAliasMaximum, w.u16(5))
	reqResp := w.prop(packet.PropRequestResponseInfo, []byte{1})
	reqProb := w.prop(packet.PropRequestProblemInfo, []byte{1})
	reason := w.prop(packet.PropReasonString, w.str("why"))
	subID := w.prop(packet.PropSubscriptionID, []byte{7})
	wireRunBadInput(t, []wireBadInput{
		// Twice what may appear once: Protocol Error.
		{name: "PUBLISH payload format indicator twice", versions: wireV5, codes: wireProtocolRC, bytes: pub(w.props(pfi, pfi))},
		{name: "PUBLISH message expiry twice", versions: wireV5, codes: wireProtocolRC, bytes: pub(w.props(expiry, expiry))},
		{name: "PUBLISH content type twice", versions: wireV5, codes: wireProtocolRC, bytes: pub(w.props(ct, ct))},
		{name: "PUBLISH response topic twice", versions: wireV5, codes: wireProtocolRC, bytes: pub(w.props(rt, rt))},
		{name: "PUBLISH correlation data twice", versions: wireV5, codes: wireProtocolRC, bytes: pub(w.props(cd, cd))},
		{name: "PUBLISH topic alias twice", versions: wireV5, codes: wireProtocolRC, bytes: pub(w.props(alias, alias))},
		{name: "CONNECT session expiry twice", versions: wireV5, connect: true, codes: wireProtocolRC, bytes: conn(w.props(sessExp, sessExp))},
		{name: "CONNECT receive maximum twice", versions: wireV5, connect: true, codes: wireProtocolRC, bytes: conn(w.props(recvMax, recvMax))},
		{name: "CONNECT maximum packet size twice", versions: wireV5, connect: true, codes: wireProtocolRC, bytes: conn(w.props(maxPkt, maxPkt))},
		{name: "CONNECT topic alias maximum twice", versions: wireV5, connect: true, codes: wireProtocolRC, bytes: conn(w.props(aliasMax, aliasMax))},
		{name: "CONNECT request response information twice", versions: wireV5, connect: true, codes: wireProtocolRC, bytes: conn(w.props(reqResp, reqResp))},
		{name: "CONNECT request problem information twice", versions: wireV5, connect: true, codes: wireProtocolRC, bytes: conn(w.props(reqProb, reqProb))},
		{name: "SUBSCRIBE subscription identifier twice", versions: wireV5, codes: wireProtocolRC,
			bytes: func(t *testing.T, r *Raw, topic string) []byte {
				return w.pkt(0x82, id, w.props(subID, subID), w.str(topic), []byte{0})
			}},
		{name: "PUBACK reason string twice", versions: wireV5, codes: wireProtocolRC,
			bytes: func(t *testing.T, r *Raw, topic string) []byte {
				return w.pkt(0x40, w.u16(wireInFlightToClient(t, r, topic, packet.QoS1)), []byte{byte(packet.UnspecifiedError)}, w.props(reason, reason))
			}},

		// Not allowed in the packet type: Malformed Packet.
		{name: "PUBLISH with session expiry", versions: wireV5, codes: wireMalformedRC, bytes: pub(w.props(sessExp))},
		{name: "PUBLISH with receive maximum", versions: wireV5, codes: wireMalformedRC, bytes: pub(w.props(recvMax))},
		{name: "PUBLISH with unknown property 0x7f", versions: wireV5, codes: wireMalformedRC, bytes: pub(w.props([]byte{0x7f, 0}))},
		{name: "CONNECT with topic alias", versions: wireV5, connect: true, codes: wireMalformedRC, bytes: conn(w.props(alias))},
		{name: "CONNECT with will delay interval", versions: wireV5, connect: true, codes: wireMalformedRC,
			bytes: conn(w.props(w.prop(packet.PropWillDelay, w.u32(5))))},
		{name: "CONNECT with server keep alive", versions: wireV5, connect: true, codes: wireMalformedRC,
			bytes: conn(w.props(w.prop(packet.PropServerKeepAlive, w.u16(5))))},
		{name: "SUBSCRIBE with message expiry", versions: wireV5, codes: wireMalformedRC,
			bytes: func(t *testing.T, r *Raw, topic string) []byte {
				return w.pkt(0x82, id, w.props(expiry), w.str(topic), []byte{0})
			}},
		{name: "UNSUBSCRIBE with subscription identifier", versions: wireV5, codes: wireMalformedRC,
			bytes: func(t *testing.T, r *Raw, topic string) []byte {
				return w.pkt(0xA2, id, w.props(subID), w.str(topic))
			}},
		{name: "PUBACK with topic alias", versions: wireV5, codes: wireMalformedRC,
			bytes: func(t *testing.T, r *Raw, topic string) []byte {
				return w.pkt(0x40, w.u16(wireInFlightToClient(t, r, topic, packet.QoS1)), []byte{byte(packet.UnspecifiedError)}, w.props(alias))
			}},
		// Values the specification forbids: Protocol Error.
		{name: "CONNECT receive maximum 0", versions: wireV5, connect: true, codes: wireProtocolRC,
			bytes: conn(w.props(w.prop(packet.PropReceiveMaximum, w.u16(0))))},
		{name: "CONNECT maximum packet size 0", versions: wireV5, connect: true, codes: wireProtocolRC,
			bytes: conn(w.props(w.prop(packet.PropMaximumPacketSize, w.u32(0))))},
		{name: "PUBLISH response topic with wildcard", versions: wireV5, codes: wireEitherRC, cite: "[v5 MQTT-3.3.2-14]",
			bytes: func(t *testing.T, r *Raw, topic string) []byte {
				return w.publish(0x02, topic, 1, w.props(w.prop(packet.PropResponseTopic, w.str(topic+"/+/reply"))), "x")
			}},

		// Blocks that are missing or do not fit: Malformed Packet. With
		// its Property Length left out [v5 MQTT-2.2.2-1], an UNSUBSCRIBE's
		// filter length is read from the wrong bytes and overruns it.
		{name: "UNSUBSCRIBE without property length", versions: wireV5, codes: wireMalformedRC, cite: "[v5 MQTT-2.2.2-1]",
			bytes: func(t *testing.T, r *Raw, topic string) []byte {
				return w.pkt(0xA2, id, w.str(topic))
			}},
		{name: "PUBLISH property length of five bytes", versions: wireV5, codes: wireMalformedRC,
			bytes: pub([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0x01})},
		{name: "PUBLISH property length beyond the packet", versions: wireV5, codes: wireMalformedRC,
			bytes: pub([]byte{20, byte(packet.PropPayloadFormat), 1})},
		{name: "PUBLISH message expiry cut short", versions: wireV5, codes: wireMalformedRC,
			bytes: pub([]byte{3, byte(packet.PropMessageExpiry), 0, 0})},
		{name: "PUBLISH user property without value", versions: wireV5, codes: wireMalformedRC,
			bytes: pub(w.props(w.prop(packet.PropUser, w.str("k"))))},
		{name: "CONNECT property length beyond the packet", versions: wireV5, connect: true, codes: wireMalformedRC,
			bytes: func(t *testing.T, r *Raw, _ string) []byte {
				b := wire.connectWithProps(t, r, ConnectOpts{}, []byte{0})
				b[12] = 0x7f // the property length, after the fixed header and 10 bytes
				return b
			}},
	})
}

// TestProtocolErrors covers packets that are well formed but not allowed
// where they arrive.
func TestProtocolErrors(t *testing.T) {
	t.Parallel()
	noProps := func(v packet.Version) []byte {
		if v == packet.V5 {
			return []byte{0}
		}
		return nil
	}
	pub := func(flags byte, id uint16, topic func(string) string) func(t *testing.T, r *Raw, topic string) []byte {
		return func(t *testing.T, r *Raw, p string) []byte {
			return wire.publish(flags, topic(p), id, noProps(r.V), "x")
		}
	}
	same := func(p string) string { return p }
	// A QoS 2 PUBLISH to a broker whose Maximum QoS is lower breaks two
	// rules at once; either answer is right [v5 MQTT-3.2.2-11].
	qos2RC := wireEitherRC
	if features.MaximumQoS < packet.QoS2 {
		qos2RC = append(slices.Clip(wireEitherRC), packet.QoSNotSupported)
	}
	wireRunBadInput(t, []wireBadInput{
		{name: "second CONNECT", versions: wireAllVersions, codes: wireProtocolRC, cite: "[v5 MQTT-3.1.0-2] [v3.1.1 MQTT-3.1.0-2]",
			bytes: func(t *testing.T, r *Raw, _ string) []byte {
				return wire.encode(t, r.ConnectPacket(ConnectOpts{}), r.V)
			}},
		{name: "PINGREQ before CONNECT", versions: wireAllVersions, connect: true, cite: "[v5 MQTT-3.1.0-1] [v3.1.1 MQTT-3.1.0-1]",
			bytes: func(t *testing.T, r *Raw, _ string) []byte { return []byte{0xC0, 0x00} }},
		{name: "PUBLISH before CONNECT", versions: wireAllVersions, connect: true, cite: "[v5 MQTT-3.1.0-1] [v3.1.1 MQTT-3.1.0-1]",
			bytes: pub(0x00, 0, same)},
		{name: "SUBSCRIBE before CONNECT", versions: wireAllVersions, connect: true, cite: "[v5 MQTT-3.1.0-1] [v3.1.1 MQTT-3.1.0-1]",
			bytes: func(t *testing.T, r *Raw, topic string) []byte {
				return wire.pkt(0x82, wire.u16(1), noProps(r.V), wire.str(topic), []byte{0})
			}},
		{name: "PUBLISH QoS 3", versions: wireAllVersions, codes: wireMalformedRC, cite: "[v5 MQTT-3.3.1-4] [v3.1.1 MQTT-3.3.1-4]",
			bytes: pub(0x06, 1, same)},
		{name: "PUBLISH QoS 1 packet identifier 0", versions: wireAllVersions, codes: wireEitherRC, cite: "[v3.1.1 MQTT-2.3.1-1]",
			bytes: pub(0x02, 0, same)},
		{name: "PUBLISH QoS 2 packet identifier 0", versions: wireAllVersions, codes: qos2RC, cite: "[v3.1.1 MQTT-2.3.1-1]",
			bytes: pub(0x04, 0, same)},
		{name: "SUBSCRIBE packet identifier 0", versions: wireV5V311, codes: wireEitherRC, cite: "[v3.1.1 MQTT-2.3.1-1]",
			bytes: func(t *testing.T, r *Raw, topic string) []byte {
				return wire.pkt(0x82, wire.u16(0), noProps(r.V), wire.str(topic), []byte{0})
			}},
		{name: "UNSUBSCRIBE packet identifier 0", versions: wireV5V311, codes: wireEitherRC, cite: "[v3.1.1 MQTT-2.3.1-1]",
			bytes: func(t *testing.T, r *Raw, topic string) []byte {
				return wire.pkt(0xA2, wire.u16(0), noProps(r.V), wire.str(topic))
			}},
		// Topic Name invalid (0x90) is also a fitting answer to a wildcard.
		{name: "PUBLISH topic with +", versions: wireV5V311,
			codes: []packet.ReasonCode{packet.MalformedPacket, packet.ProtocolError, packet.TopicNameInvalid},
			cite:  "[v5 MQTT-3.3.2-2] [v3.1.1 MQTT-3.3.2-2] [v5 MQTT-4.7.0-1] [v3.1.1 MQTT-4.7.1-1]",
			bytes: pub(0x02, 1, func(p string) string { return p + "/+/x" })},
		{name: "PUBLISH topic with #", versions: wireV5V311,
			codes: []packet.ReasonCode{packet.MalformedPacket, packet.ProtocolError, packet.TopicNameInvalid},
			cite:  "[v5 MQTT-3.3.2-2] [v3.1.1 MQTT-3.3.2-2] [v5 MQTT-4.7.0-1] [v3.1.1 MQTT-4.7.1-1]",
			bytes: pub(0x02, 1, func(p string) string { return p + "/#" })},
		// Packets only a server sends.
		{name: "CONNACK from the client", versions: wireV5V311, codes: wireEitherRC,
			bytes: func(t *testing.T, r *Raw, _ string) []byte { return wire.encode(t, &packet.Connack{}, r.V) }},
		{name: "SUBACK from the client", versions: wireV5V311, codes: wireEitherRC,
			bytes: func(t *testing.T, r *Raw, _ string) []byte {
				return wire.encode(t, &packet.Suback{PacketID: 1, ReasonCodes: []packet.ReasonCode{0}}, r.V)
			}},
		{name: "UNSUBACK from the client", versions: wireV5V311, codes: wireEitherRC,
			bytes: func(t *testing.T, r *Raw, _ string) []byte {
				return wire.encode(t, &packet.Unsuback{PacketID: 1, ReasonCodes: []packet.ReasonCode{0}}, r.V)
			}},
		{name: "PINGRESP from the client", versions: wireV5V311, codes: wireEitherRC,
			bytes: func(t *testing.T, r *Raw, _ string) []byte { return []byte{0xD0, 0x00} }},
	})
}

// TestMalformedDisconnect sends a DISCONNECT whose reason string or user
// property is not valid UTF-8. The broker closes the connection either way,
// but a malformed DISCONNECT is not a normal disconnection: the broker must
// treat it as a Malformed Packet and so publish the will, which a
// well-formed DISCONNECT (the control case) discards.
func TestMalformedDisconnect(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		set     func(p *packet.Properties)
		willDue bool
	}{
		{"well-formed reason string", wireWithString(packet.PropReasonString, "bye"), false},
		{"reason string ill-formed", wireWithString(packet.PropReasonString, "a\xffb"), true},        // [v5 MQTT-1.5.4-1]
		{"reason string surrogate", wireWithString(packet.PropReasonString, "a\xed\xbf\xbfb"), true}, // [v5 MQTT-1.5.4-1]
		{"reason string U+0000", wireWithString(packet.PropReasonString, "a\x00b"), true},            // [v5 MQTT-1.5.4-2]
		{"user property name ill-formed", wireWithUser("a\xffb", "v"), true},                         // [v5 MQTT-1.5.7-1]
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			topic := Topic(t)
			sub := wireConnect(t, packet.V5, ConnectOpts{})
			sub.Subscribe(packet.Subscription{Filter: []byte(topic)})
			r := wireConnect(t, packet.V5, ConnectOpts{Will: &packet.Publish{Topic: []byte(topic), Payload: []byte("will")}})
			d := &packet.Disconnect{}
			c.set(&d.Properties)
			r.Send(d)
			if !c.willDue {
				r.ExpectClosed()
				sub.ExpectNothing()
				return
			}
			wireExpectDropped(t, r, false, wireMalformedRC...)
			if p := sub.ExpectPublish(); string(p.Payload) != "will" {
				t.Fatalf("subscriber got %s, want the will", Describe(p))
			}
		})
	}
}
