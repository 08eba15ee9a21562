package packet

import "strconv"

// Type is the MQTT control packet type, the high nibble of the first byte.
type Type byte

// Control packet types.
const (
	CONNECT     Type = 1
	CONNACK     Type = 2
	PUBLISH     Type = 3
	PUBACK      Type = 4
	PUBREC      Type = 5
	PUBREL      Type = 6
	PUBCOMP     Type = 7
	SUBSCRIBE   Type = 8
	SUBACK      Type = 9
	UNSUBSCRIBE Type = 10
	UNSUBACK    Type = 11
	PINGREQ     Type = 12
	PINGRESP    Type = 13
	DISCONNECT  Type = 14
	AUTH        Type = 15 // MQTT 5.0 only
)

var typeNames = [...]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC",
	"PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ",
	"PINGRESP", "DISCONNECT", "AUTH"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// requiredFlags returns the fixed-header flag nibble a packet type must carry,
// and false for PUBLISH whose flags carry DUP, QoS and RETAIN.
func (t Type) requiredFlags() (byte, bool) {
	switch t {
	case PUBLISH:
		return 0, false
	case PUBREL, SUBSCRIBE, UNSUBSCRIBE:
		return 0x02, true
	default:
		return 0, true
	}
}

// Version is the protocol level carried in CONNECT.
type Version byte

// Protocol levels.
const (
	V31  Version = 3 // MQTT 3.1, protocol name "MQIsdp"
	V311 Version = 4 // MQTT 3.1.1, protocol name "MQTT"
	V5   Version = 5 // MQTT 5.0, protocol name "MQTT"
)

func (v Version) String() string {
	switch v {
	case V31:
		return "3.1"
	case V311:
		return "3.1.1"
	case V5:
		return "5.0"
	}
	return "Version(" + strconv.Itoa(int(v)) + ")"
}

// Valid reports whether v is a protocol level this codec speaks.
func (v Version) Valid() bool { return v == V31 || v == V311 || v == V5 }

// QoS is a quality-of-service level.
type QoS byte

// Quality-of-service levels.
const (
	QoS0 QoS = 0
	QoS1 QoS = 1
	QoS2 QoS = 2
)

// FixedHeader is the first part of every packet.
type FixedHeader struct {
	Type  Type
	Flags byte // low nibble of the first byte
	// Remaining is the remaining length: the size of the body that follows.
	Remaining int
}

// MaxRemaining is the largest remaining length a four-byte variable byte
// integer can carry (268,435,455).
const MaxRemaining = 268_435_455

// MaxPacketSize is the largest possible packet: one type byte, four length
// bytes and MaxRemaining bytes of body.
const MaxPacketSize = 1 + 4 + MaxRemaining

// Size returns the size of the encoded fixed header.
func (h FixedHeader) Size() int { return 1 + varintSize(uint32(h.Remaining)) }

// Packet is implemented by a pointer to each packet struct.
type Packet interface {
	// Type returns the control packet type.
	Type() Type
	// Size returns the encoded size of the whole packet for version v.
	Size(v Version) int
	// Append appends the encoding of the packet for version v to dst.
	Append(dst []byte, v Version) ([]byte, error)
	// Decode fills the packet from a fixed header and the body it announced,
	// for version v. Slices of the packet alias body afterwards.
	Decode(h FixedHeader, body []byte, v Version) error
}

// New returns a fresh, empty packet of type t, or nil for a reserved type.
func New(t Type) Packet {
	switch t {
	case CONNECT:
		return &Connect{}
	case CONNACK:
		return &Connack{}
	case PUBLISH:
		return &Publish{}
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		return &Ack{PacketType: t}
	case SUBSCRIBE:
		return &Subscribe{}
	case SUBACK:
		return &Suback{}
	case UNSUBSCRIBE:
		return &Unsubscribe{}
	case UNSUBACK:
		return &Unsuback{}
	case PINGREQ:
		return &Pingreq{}
	case PINGRESP:
		return &Pingresp{}
	case DISCONNECT:
		return &Disconnect{}
	case AUTH:
		return &Auth{}
	}
	return nil
}
