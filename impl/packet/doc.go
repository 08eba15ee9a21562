// Package packet is the MQTT wire codec for protocol versions 3.1 (level 3,
// protocol name "MQIsdp"), 3.1.1 (level 4) and 5.0 (level 5).
//
// # Contract
//
// The package is pure: it does no I/O of its own beyond reading from the
// io.Reader handed to a Reader, keeps no global mutable state, and never
// panics on any input. It checks what can be checked from the bytes of one
// packet (fixed-header flags, lengths, UTF-8 rules, property identifiers and
// their placement, duplicate properties, value ranges); everything that needs
// session state (packet identifiers in use, topic aliases, the first packet
// being CONNECT) belongs to the session state machine.
//
// # Decoding and ownership
//
// A Reader reads one packet at a time: the fixed header first, then the body.
// The size the header claims is compared with the Reader's maximum packet size
// before a single byte of the body is buffered, so a hostile length costs
// nothing. The body returned by ReadPacket, and every []byte field of a
// packet decoded from it (topic, payload, client identifier, property values,
// ...), alias the Reader's buffer: they stay valid only until the next call to
// ReadPacket. A caller that keeps a value beyond that copies it.
//
// Decode methods fill a caller-owned value and reuse the capacity of its
// slices, so decoding into the same value again allocates nothing in steady
// state.
//
// # Encoding
//
// Size reports the encoded size of a packet (fixed header included) without
// allocating; Append appends the encoding to a caller's buffer and allocates
// only when that buffer is too small.
//
// # Errors
//
// Every decoding error is an *Error whose Code is the MQTT 5.0 reason code a
// server answers with: MalformedPacket (0x81), ProtocolError (0x82),
// UnsupportedProtocolVersion (0x84) or PacketTooLarge (0x95). For a 3.1.1
// connection the server closes the connection instead.
package packet
