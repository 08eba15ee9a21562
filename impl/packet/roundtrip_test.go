package packet

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// gen builds random valid packets.
type gen struct{ r *rand.Rand }

func (g gen) str(max int) []byte {
	const alphabet = "abcXYZ019/+#$ _-é日\U0001F600"
	runes := []rune(alphabet)
	n := g.r.IntN(max + 1)
	var b []byte
	for len(b) < n {
		b = append(b, string(runes[g.r.IntN(len(runes))])...)
	}
	return b
}

func (g gen) bin(max int) []byte {
	b := make([]byte, g.r.IntN(max+1))
	for i := range b {
		b[i] = byte(g.r.Uint32())
	}
	return b
}

func (g gen) bit() bool { return g.r.IntN(2) == 0 }

// props fills random properties allowed in context t.
func (g gen) props(t Type) Properties {
	var p Properties
	for id := PropertyID(1); id <= maxPropertyID; id++ {
		if propTable[id].kind == 0 || !id.AllowedIn(t) || g.r.IntN(3) != 0 {
			continue
		}
		switch id {
		case PropUser:
			for range g.r.IntN(3) + 1 {
				p.User = append(p.User, UserProperty{g.str(8), g.str(8)})
			}
			continue
		case PropSubscriptionID:
			n := 1
			if t == PUBLISH {
				n = g.r.IntN(3) + 1
			}
			for range n {
				p.SubscriptionIDs = append(p.SubscriptionIDs, 1+g.r.Uint32N(MaxRemaining))
			}
			continue
		}
		p.Set(id)
		switch propTable[id].kind {
		case kindByte:
			v := byte(g.r.IntN(2))
			switch id {
			case PropPayloadFormat:
				p.PayloadFormat = v
			case PropRequestProblemInfo:
				p.RequestProblemInfo = v
			case PropRequestResponseInfo:
				p.RequestResponseInfo = v
			case PropMaximumQoS:
				p.MaximumQoS = v
			case PropRetainAvailable:
				p.RetainAvailable = v
			case PropWildcardSubAvailable:
				p.WildcardSubAvail = v
			case PropSubIDAvailable:
				p.SubIDAvail = v
			case PropSharedSubAvailable:
				p.SharedSubAvail = v
			}
		case kindUint16:
			v := uint16(1 + g.r.IntN(65535))
			switch id {
			case PropServerKeepAlive:
				p.ServerKeepAlive = v
			case PropReceiveMaximum:
				p.ReceiveMaximum = v
			case PropTopicAliasMaximum:
				p.TopicAliasMaximum = v
			case PropTopicAlias:
				p.TopicAlias = v
			}
		case kindUint32:
			v := 1 + g.r.Uint32N(1<<31)
			switch id {
			case PropMessageExpiry:
				p.MessageExpiry = v
			case PropSessionExpiry:
				p.SessionExpiry = v
			case PropWillDelay:
				p.WillDelay = v
			case PropMaximumPacketSize:
				p.MaximumPacketSize = v
			}
		case kindString, kindBinary:
			var v []byte
			if propTable[id].kind == kindString {
				v = g.str(12)
			} else {
				v = g.bin(12)
			}
			switch id {
			case PropContentType:
				p.ContentType = v
			case PropResponseTopic:
				p.ResponseTopic = v
			case PropCorrelationData:
				p.CorrelationData = v
			case PropAssignedClientID:
				p.AssignedClientID = v
			case PropAuthMethod:
				p.AuthMethod = v
			case PropAuthData:
				p.AuthData = v
			case PropResponseInfo:
				p.ResponseInfo = v
			case PropServerReference:
				p.ServerReference = v
			case PropReasonString:
				p.ReasonString = v
			}
		}
	}
	return p
}

func (g gen) reason(t Type, v Version) ReasonCode {
	if v != V5 {
		return 0
	}
	for {
		r := ReasonCode(g.r.IntN(256))
		if r.ValidFor(t) {
			return r
		}
	}
}

func (g gen) packet(t Type, v Version) Packet {
	switch t {
	case CONNECT:
		p := &Connect{Version: v, CleanStart: g.bit(), KeepAlive: uint16(g.r.IntN(65536)), ClientID: g.str(23)}
		if v == V5 {
			p.Properties = g.props(CONNECT)
			if p.Properties.Has(PropAuthData) && !p.Properties.Has(PropAuthMethod) {
				p.Properties.Clear(PropAuthData)
			}
		}
		if g.bit() {
			p.WillFlag, p.WillQoS, p.WillRetain = true, QoS(g.r.IntN(3)), g.bit()
			p.WillTopic, p.WillPayload = g.str(20), g.bin(40)
			if v == V5 {
				p.WillProperties = g.props(willContext)
			}
		}
		if g.bit() {
			p.UsernameFlag, p.Username = true, g.str(10)
		}
		if (v == V5 || p.UsernameFlag) && g.bit() {
			p.PasswordFlag, p.Password = true, g.bin(10)
		}
		return p
	case CONNACK:
		p := &Connack{ReasonCode: g.reason(CONNACK, v)}
		if v != V5 {
			p.ReasonCode = ReasonCode(g.r.IntN(6))
		}
		p.SessionPresent = p.ReasonCode == 0 && g.bit()
		if v == V5 {
			p.Properties = g.props(CONNACK)
		}
		return p
	case PUBLISH:
		p := &Publish{QoS: QoS(g.r.IntN(3)), Retain: g.bit(), Topic: g.str(30), Payload: g.bin(100)}
		if p.QoS > 0 {
			p.Dup, p.PacketID = g.bit(), uint16(1+g.r.IntN(65535))
		}
		if v == V5 {
			p.Properties = g.props(PUBLISH)
		}
		return p
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		p := &Ack{PacketType: t, PacketID: uint16(1 + g.r.IntN(65535)), ReasonCode: g.reason(t, v)}
		if v == V5 && g.bit() {
			p.Properties = g.props(t)
		}
		return p
	case SUBSCRIBE:
		p := &Subscribe{PacketID: uint16(1 + g.r.IntN(65535))}
		if v == V5 {
			p.Properties = g.props(SUBSCRIBE)
		}
		for range 1 + g.r.IntN(4) {
			s := Subscription{Filter: g.str(20), QoS: QoS(g.r.IntN(3))}
			if v == V5 {
				s.NoLocal, s.RetainAsPublished, s.RetainHandling = g.bit(), g.bit(), byte(g.r.IntN(3))
			}
			p.Subscriptions = append(p.Subscriptions, s)
		}
		return p
	case SUBACK:
		p := &Suback{PacketID: uint16(1 + g.r.IntN(65535))}
		if v == V5 {
			p.Properties = g.props(SUBACK)
		}
		for range 1 + g.r.IntN(4) {
			if v == V5 {
				p.ReasonCodes = append(p.ReasonCodes, g.reason(SUBACK, v))
			} else {
				p.ReasonCodes = append(p.ReasonCodes, []ReasonCode{0, 1, 2, 0x80}[g.r.IntN(4)])
			}
		}
		return p
	case UNSUBSCRIBE:
		p := &Unsubscribe{PacketID: uint16(1 + g.r.IntN(65535))}
		if v == V5 {
			p.Properties = g.props(UNSUBSCRIBE)
		}
		for range 1 + g.r.IntN(4) {
			p.Filters = append(p.Filters, g.str(20))
		}
		return p
	case UNSUBACK:
		p := &Unsuback{PacketID: uint16(1 + g.r.IntN(65535))}
		if v == V5 {
			p.Properties = g.props(UNSUBACK)
			for range 1 + g.r.IntN(4) {
				p.ReasonCodes = append(p.ReasonCodes, g.reason(UNSUBACK, v))
			}
		}
		return p
	case PINGREQ:
		return &Pingreq{}
	case PINGRESP:
		return &Pingresp{}
	case DISCONNECT:
		p := &Disconnect{ReasonCode: g.reason(DISCONNECT, v)}
		if v == V5 && g.bit() {
			p.Properties = g.props(DISCONNECT)
		}
		return p
	case AUTH:
		p := &Auth{ReasonCode: g.reason(AUTH, v), Properties: g.props(AUTH)}
		p.Properties.AuthMethod = g.str(8)
		p.Properties.Set(PropAuthMethod)
		return p
	}
	return nil
}

func TestRoundTripRandom(t *testing.T) {
	t.Parallel()
	for _, v := range []Version{V31, V311, V5} {
		g := gen{rand.New(rand.NewPCG(uint64(v), 42))}
		var stream bytes.Buffer
		var sent []Packet
		for i := 0; i < 3000; i++ {
			typ := Type(1 + g.r.IntN(15))
			if typ == AUTH && v != V5 {
				continue
			}
			p := g.packet(typ, v)
			b, err := p.Append(nil, v)
			if err != nil {
				t.Fatalf("v%s %s: encode: %v", v, typ, err)
			}
			if len(b) != p.Size(v) {
				t.Fatalf("v%s %s: %d bytes, Size %d", v, typ, len(b), p.Size(v))
			}
			stream.Write(b)
			sent = append(sent, p)
		}
		// Decode the whole stream with one Decoder: values are reused
		// from packet to packet, which must not leak state between them.
		d := NewDecoder(&stream, v)
		for i, want := range sent {
			got, err := d.Next()
			if err != nil {
				t.Fatalf("v%s packet %d (%s): decode: %v", v, i, want.Type(), err)
			}
			if diff := diff(want, got); diff != "" {
				t.Fatalf("v%s packet %d (%s) (-sent +decoded):\n%s", v, i, want.Type(), diff)
			}
		}
		if _, err := d.Next(); err == nil {
			t.Fatalf("v%s: data after the last packet", v)
		}
	}
}
