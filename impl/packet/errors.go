package packet

import (
	"errors"
	"fmt"
)

// Error is a decoding failure. Code is the reason code a 5.0 server sends in
// its DISCONNECT (or CONNACK, for a bad CONNECT) before it closes the
// connection.
type Error struct {
	Code ReasonCode
	// Packet is the type of the packet being decoded, 0 if the fixed header
	// itself was bad.
	Packet Type
	// Version is the protocol level a failing CONNECT announced, so that a
	// server can answer in the client's dialect; 0 when unknown.
	Version Version
	// Statement names the normative statement broken, when there is one
	// (e.g. "MQTT-3.1.2-3").
	Statement string
	Reason    string
}

func (e *Error) Error() string {
	s := "mqtt: " + e.Code.String()
	if e.Packet != 0 {
		s += " in " + e.Packet.String()
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	if e.Statement != "" {
		s += " [" + e.Statement + "]"
	}
	return s
}

// CodeOf returns the reason code carried by err when it is (or wraps) an
// *Error, and UnspecifiedError otherwise.
func CodeOf(err error) ReasonCode {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return UnspecifiedError
}

func malformed(t Type, stmt, format string, args ...any) *Error {
	return &Error{Code: MalformedPacket, Packet: t, Statement: stmt, Reason: fmt.Sprintf(format, args...)}
}

func protocolErr(t Type, stmt, format string, args ...any) *Error {
	return &Error{Code: ProtocolError, Packet: t, Statement: stmt, Reason: fmt.Sprintf(format, args...)}
}

// ErrEncode is returned by Append when a packet cannot be encoded as given
// (a string longer than 65,535 bytes, a body over MaxRemaining, a field out
// of range).
var ErrEncode = errors.New("mqtt: packet cannot be encoded")

func encodeErr(t Type, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrEncode, t, fmt.Sprintf(format, args...))
}
