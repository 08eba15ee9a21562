package packet

import "strconv"

// PropertyID identifies an MQTT 5.0 property (section 2.2.2.2).
type PropertyID byte

// MQTT 5.0 property identifiers.
const (
	PropPayloadFormat        PropertyID = 0x01
	PropMessageExpiry        PropertyID = 0x02
	PropContentType          PropertyID = 0x03
	PropResponseTopic        PropertyID = 0x08
	PropCorrelationData      PropertyID = 0x09
	PropSubscriptionID       PropertyID = 0x0B
	PropSessionExpiry        PropertyID = 0x11
	PropAssignedClientID     PropertyID = 0x12
	PropServerKeepAlive      PropertyID = 0x13
	PropAuthMethod           PropertyID = 0x15
	PropAuthData             PropertyID = 0x16
	PropRequestProblemInfo   PropertyID = 0x17
	PropWillDelay            PropertyID = 0x18
	PropRequestResponseInfo  PropertyID = 0x19
	PropResponseInfo         PropertyID = 0x1A
	PropServerReference      PropertyID = 0x1C
	PropReasonString         PropertyID = 0x1F
	PropReceiveMaximum       PropertyID = 0x21
	PropTopicAliasMaximum    PropertyID = 0x22
	PropTopicAlias           PropertyID = 0x23
	PropMaximumQoS           PropertyID = 0x24
	PropRetainAvailable      PropertyID = 0x25
	PropUser                 PropertyID = 0x26
	PropMaximumPacketSize    PropertyID = 0x27
	PropWildcardSubAvailable PropertyID = 0x28
	PropSubIDAvailable       PropertyID = 0x29
	PropSharedSubAvailable   PropertyID = 0x2A
	maxPropertyID                       = 0x2A
)

type propKind byte

const (
	kindByte propKind = iota + 1
	kindUint16
	kindUint32
	kindVarint
	kindString
	kindBinary
	kindPair
)

// willContext stands in for a packet type in the placement table: the will
// properties of CONNECT are a context of their own.
const willContext = 0

type propInfo struct {
	name   string
	kind   propKind
	places uint16 // bit t: allowed in packet type t; bit 0: in will properties
}

func places(ts ...Type) uint16 {
	var m uint16
	for _, t := range ts {
		m |= 1 << t
	}
	return m
}

var propTable = [maxPropertyID + 1]propInfo{
	PropPayloadFormat:        {"Payload Format Indicator", kindByte, places(PUBLISH, willContext)},
	PropMessageExpiry:        {"Message Expiry Interval", kindUint32, places(PUBLISH, willContext)},
	PropContentType:          {"Content Type", kindString, places(PUBLISH, willContext)},
	PropResponseTopic:        {"Response Topic", kindString, places(PUBLISH, willContext)},
	PropCorrelationData:      {"Correlation Data", kindBinary, places(PUBLISH, willContext)},
	PropSubscriptionID:       {"Subscription Identifier", kindVarint, places(PUBLISH, SUBSCRIBE)},
	PropSessionExpiry:        {"Session Expiry Interval", kindUint32, places(CONNECT, CONNACK, DISCONNECT)},
	PropAssignedClientID:     {"Assigned Client Identifier", kindString, places(CONNACK)},
	PropServerKeepAlive:      {"Server Keep Alive", kindUint16, places(CONNACK)},
	PropAuthMethod:           {"Authentication Method", kindString, places(CONNECT, CONNACK, AUTH)},
	PropAuthData:             {"Authentication Data", kindBinary, places(CONNECT, CONNACK, AUTH)},
	PropRequestProblemInfo:   {"Request Problem Information", kindByte, places(CONNECT)},
	PropWillDelay:            {"Will Delay Interval", kindUint32, places(willContext)},
	PropRequestResponseInfo:  {"Request Response Information", kindByte, places(CONNECT)},
	PropResponseInfo:         {"Response Information", kindString, places(CONNACK)},
	PropServerReference:      {"Server Reference", kindString, places(CONNACK, DISCONNECT)},
	PropReasonString:         {"Reason String", kindString, places(CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, DISCONNECT, AUTH)},
	PropReceiveMaximum:       {"Receive Maximum", kindUint16, places(CONNECT, CONNACK)},
	PropTopicAliasMaximum:    {"Topic Alias Maximum", kindUint16, places(CONNECT, CONNACK)},
	PropTopicAlias:           {"Topic Alias", kindUint16, places(PUBLISH)},
	PropMaximumQoS:           {"Maximum QoS", kindByte, places(CONNACK)},
	PropRetainAvailable:      {"Retain Available", kindByte, places(CONNACK)},
	PropUser:                 {"User Property", kindPair, places(willContext, CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH)},
	PropMaximumPacketSize:    {"Maximum Packet Size", kindUint32, places(CONNECT, CONNACK)},
	PropWildcardSubAvailable: {"Wildcard Subscription Available", kindByte, places(CONNACK)},
	PropSubIDAvailable:       {"Subscription Identifier Available", kindByte, places(CONNACK)},
	PropSharedSubAvailable:   {"Shared Subscription Available", kindByte, places(CONNACK)},
}

func (id PropertyID) String() string {
	if int(id) < len(propTable) && propTable[id].kind != 0 {
		return propTable[id].name
	}
	return "Property(0x" + strconv.FormatUint(uint64(id), 16) + ")"
}

// AllowedIn reports whether property id may appear in packet type t
// (t == 0 asks about CONNECT's will properties).
func (id PropertyID) AllowedIn(t Type) bool {
	return int(id) < len(propTable) && propTable[id].places&(1<<t) != 0
}

// UserProperty is one User Property name/value pair.
type UserProperty struct {
	Key, Value []byte
}

// Properties holds the MQTT 5.0 properties of one packet (or of a will).
//
// A single-valued property is present when its bit is set in Present (use
// Set and Has); its field holds the value. User properties and subscription
// identifiers are present when their slice is non-empty. Zero values of the
// struct mean "no properties".
type Properties struct {
	Present uint64 // bit n set: property n present

	PayloadFormat       byte
	MessageExpiry       uint32
	ContentType         []byte
	ResponseTopic       []byte
	CorrelationData     []byte
	SubscriptionIDs     []uint32
	SessionExpiry       uint32
	AssignedClientID    []byte
	ServerKeepAlive     uint16
	AuthMethod          []byte
	AuthData            []byte
	RequestProblemInfo  byte
	WillDelay           uint32
	RequestResponseInfo byte
	ResponseInfo        []byte
	ServerReference     []byte
	ReasonString        []byte
	ReceiveMaximum      uint16
	TopicAliasMaximum   uint16
	TopicAlias          uint16
	MaximumQoS          byte
	RetainAvailable     byte
	User                []UserProperty
	MaximumPacketSize   uint32
	WildcardSubAvail    byte
	SubIDAvail          byte
	SharedSubAvail      byte
}

// Has reports whether property id is present.
func (p *Properties) Has(id PropertyID) bool {
	switch id {
	case PropUser:
		return len(p.User) > 0
	case PropSubscriptionID:
		return len(p.SubscriptionIDs) > 0
	}
	return p.Present&(1<<id) != 0
}

// Set marks property id present; its field must hold the value.
func (p *Properties) Set(id PropertyID) { p.Present |= 1 << id }

// Clear removes property id and zeroes its field.
func (p *Properties) Clear(id PropertyID) {
	p.Present &^= 1 << id
	switch id {
	case PropUser:
		p.User = p.User[:0]
		return
	case PropSubscriptionID:
		p.SubscriptionIDs = p.SubscriptionIDs[:0]
		return
	}
	switch f := p.field(id); {
	case f.u8 != nil:
		*f.u8 = 0
	case f.u16 != nil:
		*f.u16 = 0
	case f.u32 != nil:
		*f.u32 = 0
	case f.bytes != nil:
		*f.bytes = nil
	}
}

// Reset empties p and keeps the capacity of its slices.
func (p *Properties) Reset() {
	*p = Properties{User: p.User[:0], SubscriptionIDs: p.SubscriptionIDs[:0]}
}

// Empty reports whether no property is present.
func (p *Properties) Empty() bool {
	return p.Present == 0 && len(p.User) == 0 && len(p.SubscriptionIDs) == 0
}

// decode reads a property length and the properties that follow, for
// packet type t (willContext for will properties).
func (p *Properties) decode(c *cursor, t Type) error {
	p.Reset()
	n, err := c.readVarint("property length")
	if err != nil {
		return err
	}
	if int(n) > c.remaining() {
		return malformed(c.t, "", "property length %d exceeds the packet", n)
	}
	end := c.off + int(n)
	pc := cursor{b: c.b[:end], off: c.off, t: c.t}
	for pc.off < end {
		idv, err := pc.readVarint("property identifier")
		if err != nil {
			return err
		}
		if idv > maxPropertyID || propTable[idv].kind == 0 {
			return malformed(c.t, "", "unknown property identifier 0x%x", idv)
		}
		id := PropertyID(idv)
		info := &propTable[id]
		if info.places&(1<<t) == 0 {
			where := t.String()
			if t == willContext {
				where = "will properties"
			}
			return malformed(c.t, "", "%s not allowed in %s", info.name, where)
		}
		if id != PropUser && id != PropSubscriptionID && p.Present&(1<<id) != 0 {
			return protocolErr(c.t, "", "%s included more than once", info.name)
		}
		if err := p.decodeOne(&pc, id, t); err != nil {
			return err
		}
	}
	c.off = end
	return nil
}

func (p *Properties) decodeOne(c *cursor, id PropertyID, t Type) error {
	name := propTable[id].name
	var err error
	switch id {
	case PropUser:
		var k, v []byte
		if k, err = c.readString(name); err != nil {
			return err
		}
		if v, err = c.readString(name); err != nil {
			return err
		}
		p.User = append(p.User, UserProperty{Key: k, Value: v})
		return nil
	case PropSubscriptionID:
		var v uint32
		if v, err = c.readVarint(name); err != nil {
			return err
		}
		if v == 0 {
			return protocolErr(c.t, "", "Subscription Identifier is 0")
		}
		if t == SUBSCRIBE && len(p.SubscriptionIDs) > 0 {
			return protocolErr(c.t, "", "Subscription Identifier included more than once")
		}
		p.SubscriptionIDs = append(p.SubscriptionIDs, v)
		return nil
	}
	p.Present |= 1 << id
	f := p.field(id)
	switch propTable[id].kind {
	case kindByte:
		v, err := c.readByte(name)
		if err != nil {
			return err
		}
		if v > 1 { // every byte property is a 0/1 flag
			return protocolErr(c.t, "", "%s has value %d", name, v)
		}
		*f.u8 = v
	case kindUint16:
		v, err := c.readUint16(name)
		if err != nil {
			return err
		}
		if v == 0 && (id == PropReceiveMaximum || id == PropTopicAlias) {
			return protocolErr(c.t, "", "%s is 0", name)
		}
		*f.u16 = v
	case kindUint32:
		v, err := c.readUint32(name)
		if err != nil {
			return err
		}
		if v == 0 && id == PropMaximumPacketSize {
			return protocolErr(c.t, "", "%s is 0", name)
		}
		*f.u32 = v
	case kindString:
		if *f.bytes, err = c.readString(name); err != nil {
			return err
		}
	case kindBinary:
		if *f.bytes, err = c.readBinary(name); err != nil {
			return err
		}
	}
	return nil
}

// fieldRef points at the field holding a single-valued property.
type fieldRef struct {
	u8    *byte
	u16   *uint16
	u32   *uint32
	bytes *[]byte
}

func (p *Properties) field(id PropertyID) fieldRef {
	switch id {
	case PropPayloadFormat:
		return fieldRef{u8: &p.PayloadFormat}
	case PropMessageExpiry:
		return fieldRef{u32: &p.MessageExpiry}
	case PropContentType:
		return fieldRef{bytes: &p.ContentType}
	case PropResponseTopic:
		return fieldRef{bytes: &p.ResponseTopic}
	case PropCorrelationData:
		return fieldRef{bytes: &p.CorrelationData}
	case PropSessionExpiry:
		return fieldRef{u32: &p.SessionExpiry}
	case PropAssignedClientID:
		return fieldRef{bytes: &p.AssignedClientID}
	case PropServerKeepAlive:
		return fieldRef{u16: &p.ServerKeepAlive}
	case PropAuthMethod:
		return fieldRef{bytes: &p.AuthMethod}
	case PropAuthData:
		return fieldRef{bytes: &p.AuthData}
	case PropRequestProblemInfo:
		return fieldRef{u8: &p.RequestProblemInfo}
	case PropWillDelay:
		return fieldRef{u32: &p.WillDelay}
	case PropRequestResponseInfo:
		return fieldRef{u8: &p.RequestResponseInfo}
	case PropResponseInfo:
		return fieldRef{bytes: &p.ResponseInfo}
	case PropServerReference:
		return fieldRef{bytes: &p.ServerReference}
	case PropReasonString:
		return fieldRef{bytes: &p.ReasonString}
	case PropReceiveMaximum:
		return fieldRef{u16: &p.ReceiveMaximum}
	case PropTopicAliasMaximum:
		return fieldRef{u16: &p.TopicAliasMaximum}
	case PropTopicAlias:
		return fieldRef{u16: &p.TopicAlias}
	case PropMaximumQoS:
		return fieldRef{u8: &p.MaximumQoS}
	case PropRetainAvailable:
		return fieldRef{u8: &p.RetainAvailable}
	case PropMaximumPacketSize:
		return fieldRef{u32: &p.MaximumPacketSize}
	case PropWildcardSubAvailable:
		return fieldRef{u8: &p.WildcardSubAvail}
	case PropSubIDAvailable:
		return fieldRef{u8: &p.SubIDAvail}
	case PropSharedSubAvailable:
		return fieldRef{u8: &p.SharedSubAvail}
	}
	return fieldRef{}
}

// bodySize returns the size of the encoded properties without the length prefix.
func (p *Properties) bodySize() int {
	n := 0
	for set := p.Present; set != 0; set &= set - 1 {
		id := PropertyID(trailingZeros(set))
		if id > maxPropertyID || id == PropUser || id == PropSubscriptionID {
			continue
		}
		n++ // every identifier in use fits in one byte
		switch propTable[id].kind {
		case kindByte:
			n++
		case kindUint16:
			n += 2
		case kindUint32:
			n += 4
		case kindString, kindBinary:
			n += 2 + len(*p.field(id).bytes)
		}
	}
	for _, u := range p.User {
		n += 1 + 2 + len(u.Key) + 2 + len(u.Value)
	}
	for _, s := range p.SubscriptionIDs {
		n += 1 + varintSize(s)
	}
	return n
}

// size returns the size of the properties with their length prefix.
func (p *Properties) size() int {
	b := p.bodySize()
	return varintSize(uint32(b)) + b
}

// check verifies that p can be encoded in packet type t (willContext for a will).
func (p *Properties) check(t Type) error {
	for set := p.Present; set != 0; set &= set - 1 {
		id := PropertyID(trailingZeros(set))
		if id > maxPropertyID || propTable[id].kind == 0 {
			return encodeErr(t, "unknown property bit %d", id)
		}
		if id == PropUser || id == PropSubscriptionID {
			continue
		}
		if !id.AllowedIn(t) {
			return encodeErr(t, "%s not allowed here", id)
		}
		if k := propTable[id].kind; (k == kindString || k == kindBinary) && len(*p.field(id).bytes) > 65535 {
			return encodeErr(t, "%s longer than 65535 bytes", id)
		}
	}
	if len(p.User) > 0 && !PropUser.AllowedIn(t) {
		return encodeErr(t, "User Property not allowed here")
	}
	for _, u := range p.User {
		if len(u.Key) > 65535 || len(u.Value) > 65535 {
			return encodeErr(t, "User Property longer than 65535 bytes")
		}
	}
	if len(p.SubscriptionIDs) > 0 && !PropSubscriptionID.AllowedIn(t) {
		return encodeErr(t, "Subscription Identifier not allowed here")
	}
	for _, s := range p.SubscriptionIDs {
		if s == 0 || s > MaxRemaining {
			return encodeErr(t, "Subscription Identifier %d out of range", s)
		}
	}
	return nil
}

// append appends the property length and the properties, in identifier order.
func (p *Properties) append(dst []byte) []byte {
	dst = appendVarint(dst, uint32(p.bodySize()))
	for set := p.Present; set != 0; set &= set - 1 {
		id := PropertyID(trailingZeros(set))
		if id > maxPropertyID || id == PropUser || id == PropSubscriptionID {
			continue
		}
		dst = append(dst, byte(id))
		switch propTable[id].kind {
		case kindByte:
			dst = append(dst, *p.field(id).u8)
		case kindUint16:
			dst = appendUint16(dst, *p.field(id).u16)
		case kindUint32:
			dst = appendUint32(dst, *p.field(id).u32)
		case kindString, kindBinary:
			dst = appendBinary(dst, *p.field(id).bytes)
		}
	}
	for _, s := range p.SubscriptionIDs {
		dst = append(dst, byte(PropSubscriptionID))
		dst = appendVarint(dst, s)
	}
	for _, u := range p.User {
		dst = append(dst, byte(PropUser))
		dst = appendBinary(dst, u.Key)
		dst = appendBinary(dst, u.Value)
	}
	return dst
}
