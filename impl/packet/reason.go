package packet

import "strconv"

// ReasonCode is a one-byte MQTT 5.0 reason code. In 3.1.1 the same type
// carries a CONNACK return code or a SUBACK return code.
type ReasonCode byte

// MQTT 5.0 reason codes (section 2.4). Several share a value; the name
// says which packet uses it.
const (
	Success                             ReasonCode = 0x00
	NormalDisconnection                 ReasonCode = 0x00
	GrantedQoS0                         ReasonCode = 0x00
	GrantedQoS1                         ReasonCode = 0x01
	GrantedQoS2                         ReasonCode = 0x02
	DisconnectWithWill                  ReasonCode = 0x04
	NoMatchingSubscribers               ReasonCode = 0x10
	NoSubscriptionExisted               ReasonCode = 0x11
	ContinueAuthentication              ReasonCode = 0x18
	ReAuthenticate                      ReasonCode = 0x19
	UnspecifiedError                    ReasonCode = 0x80
	MalformedPacket                     ReasonCode = 0x81
	ProtocolError                       ReasonCode = 0x82
	ImplementationSpecificError         ReasonCode = 0x83
	UnsupportedProtocolVersion          ReasonCode = 0x84
	ClientIdentifierNotValid            ReasonCode = 0x85
	BadUserNameOrPassword               ReasonCode = 0x86
	NotAuthorized                       ReasonCode = 0x87
	ServerUnavailable                   ReasonCode = 0x88
	ServerBusy                          ReasonCode = 0x89
	Banned                              ReasonCode = 0x8A
	ServerShuttingDown                  ReasonCode = 0x8B
	BadAuthenticationMethod             ReasonCode = 0x8C
	KeepAliveTimeout                    ReasonCode = 0x8D
	SessionTakenOver                    ReasonCode = 0x8E
	TopicFilterInvalid                  ReasonCode = 0x8F
	TopicNameInvalid                    ReasonCode = 0x90
	PacketIdentifierInUse               ReasonCode = 0x91
	PacketIdentifierNotFound            ReasonCode = 0x92
	ReceiveMaximumExceeded              ReasonCode = 0x93
	TopicAliasInvalid                   ReasonCode = 0x94
	PacketTooLarge                      ReasonCode = 0x95
	MessageRateTooHigh                  ReasonCode = 0x96
	QuotaExceeded                       ReasonCode = 0x97
	AdministrativeAction                ReasonCode = 0x98
	PayloadFormatInvalid                ReasonCode = 0x99
	RetainNotSupported                  ReasonCode = 0x9A
	QoSNotSupported                     ReasonCode = 0x9B
	UseAnotherServer                    ReasonCode = 0x9C
	ServerMoved                         ReasonCode = 0x9D
	SharedSubscriptionsNotSupported     ReasonCode = 0x9E
	ConnectionRateExceeded              ReasonCode = 0x9F
	MaximumConnectTime                  ReasonCode = 0xA0
	SubscriptionIdentifiersNotSupported ReasonCode = 0xA1
	WildcardSubscriptionsNotSupported   ReasonCode = 0xA2
)

// MQTT 3.1 and 3.1.1 CONNACK return codes (3.1.1 section 3.2.2.3).
const (
	ConnAccepted              ReasonCode = 0x00
	ConnRefusedProtocol       ReasonCode = 0x01 // unacceptable protocol version
	ConnRefusedIdentifier     ReasonCode = 0x02 // identifier rejected
	ConnRefusedUnavailable    ReasonCode = 0x03 // server unavailable
	ConnRefusedBadCredentials ReasonCode = 0x04 // bad user name or password
	ConnRefusedNotAuthorized  ReasonCode = 0x05 // not authorized
)

// SubackFailure is the 3.1.1 SUBACK return code for a refused subscription.
const SubackFailure ReasonCode = 0x80

var reasonNames = map[ReasonCode]string{
	0x00: "Success", 0x01: "Granted QoS 1", 0x02: "Granted QoS 2",
	0x04: "Disconnect with Will Message", 0x10: "No matching subscribers",
	0x11: "No subscription existed", 0x18: "Continue authentication", 0x19: "Re-authenticate",
	0x80: "Unspecified error", 0x81: "Malformed Packet", 0x82: "Protocol Error",
	0x83: "Implementation specific error", 0x84: "Unsupported Protocol Version",
	0x85: "Client Identifier not valid", 0x86: "Bad User Name or Password",
	0x87: "Not authorized", 0x88: "Server unavailable", 0x89: "Server busy", 0x8A: "Banned",
	0x8B: "Server shutting down", 0x8C: "Bad authentication method", 0x8D: "Keep Alive timeout",
	0x8E: "Session taken over", 0x8F: "Topic Filter invalid", 0x90: "Topic Name invalid",
	0x91: "Packet Identifier in use", 0x92: "Packet Identifier not found",
	0x93: "Receive Maximum exceeded", 0x94: "Topic Alias invalid", 0x95: "Packet too large",
	0x96: "Message rate too high", 0x97: "Quota exceeded", 0x98: "Administrative action",
	0x99: "Payload format invalid", 0x9A: "Retain not supported", 0x9B: "QoS not supported",
	0x9C: "Use another server", 0x9D: "Server moved", 0x9E: "Shared Subscriptions not supported",
	0x9F: "Connection rate exceeded", 0xA0: "Maximum connect time",
	0xA1: "Subscription Identifiers not supported", 0xA2: "Wildcard Subscriptions not supported",
}

func (r ReasonCode) String() string {
	if s, ok := reasonNames[r]; ok {
		return s + " (0x" + strconv.FormatUint(uint64(r), 16) + ")"
	}
	return "ReasonCode(0x" + strconv.FormatUint(uint64(r), 16) + ")"
}

// IsError reports whether r signals a failure (0x80 and above).
func (r ReasonCode) IsError() bool { return r >= 0x80 }

// reasonValid[code] has bit t set when packet type t may carry code in 5.0.
var reasonValid [256]uint16

func init() {
	allow := func(t Type, codes ...ReasonCode) {
		for _, c := range codes {
			reasonValid[c] |= 1 << t
		}
	}
	allow(CONNACK, 0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A,
		0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F)
	allow(PUBACK, 0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99)
	allow(PUBREC, 0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99)
	allow(PUBREL, 0x00, 0x92)
	allow(PUBCOMP, 0x00, 0x92)
	allow(SUBACK, 0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2)
	allow(UNSUBACK, 0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91)
	allow(DISCONNECT, 0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F,
		0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0,
		0xA1, 0xA2)
	allow(AUTH, 0x00, 0x18, 0x19)
}

// ValidFor reports whether an MQTT 5.0 packet of type t may carry reason code r.
func (r ReasonCode) ValidFor(t Type) bool { return reasonValid[r]&(1<<t) != 0 }

// ConnackCode311 maps a 5.0 CONNACK reason code to the closest 3.1/3.1.1
// return code, for refusing an older client for the same cause.
func ConnackCode311(r ReasonCode) ReasonCode {
	switch r {
	case Success:
		return ConnAccepted
	case UnsupportedProtocolVersion:
		return ConnRefusedProtocol
	case ClientIdentifierNotValid:
		return ConnRefusedIdentifier
	case BadUserNameOrPassword, BadAuthenticationMethod:
		return ConnRefusedBadCredentials
	case NotAuthorized, Banned:
		return ConnRefusedNotAuthorized
	default:
		return ConnRefusedUnavailable
	}
}
