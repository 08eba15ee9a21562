package packet

import (
	"bytes"
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// cursor reads the primitive data types of section 1.5 from a packet body.
type cursor struct {
	b   []byte
	off int
	t   Type // packet being decoded, for error messages
}

func (c *cursor) remaining() int { return len(c.b) - c.off }

func (c *cursor) short(what string) *Error {
	return malformed(c.t, "", "%s: packet ends early", what)
}

func (c *cursor) readByte(what string) (byte, error) {
	if c.off >= len(c.b) {
		return 0, c.short(what)
	}
	v := c.b[c.off]
	c.off++
	return v, nil
}

func (c *cursor) readUint16(what string) (uint16, error) {
	if c.remaining() < 2 {
		return 0, c.short(what)
	}
	v := uint16(c.b[c.off])<<8 | uint16(c.b[c.off+1])
	c.off += 2
	return v, nil
}

func (c *cursor) readUint32(what string) (uint32, error) {
	if c.remaining() < 4 {
		return 0, c.short(what)
	}
	b := c.b[c.off:]
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	c.off += 4
	return v, nil
}

// readVarint reads a variable byte integer: at most four bytes, minimal
// encoding [MQTT-1.5.5-1].
func (c *cursor) readVarint(what string) (uint32, error) {
	v, n, err := decodeVarint(c.b[c.off:])
	if err != nil {
		err.Packet = c.t
		err.Reason = what + ": " + err.Reason
		return 0, err
	}
	c.off += n
	return v, nil
}

// decodeVarint decodes a variable byte integer from b, returning its value
// and length.
func decodeVarint(b []byte) (uint32, int, *Error) {
	var v uint32
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0, malformed(0, "", "variable byte integer ends early")
		}
		d := b[i]
		v |= uint32(d&0x7f) << (7 * i)
		if d&0x80 == 0 {
			if i > 0 && d == 0 {
				return 0, 0, malformed(0, "MQTT-1.5.5-1", "variable byte integer not minimally encoded")
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, malformed(0, "", "variable byte integer longer than four bytes")
}

// readBinary reads Binary Data: a two-byte length and that many bytes. The
// result aliases the body.
func (c *cursor) readBinary(what string) ([]byte, error) {
	n, err := c.readUint16(what)
	if err != nil {
		return nil, err
	}
	if c.remaining() < int(n) {
		return nil, c.short(what)
	}
	v := c.b[c.off : c.off+int(n) : c.off+int(n)]
	c.off += int(n)
	return v, nil
}

// readString reads a UTF-8 Encoded String and checks it.
func (c *cursor) readString(what string) ([]byte, error) {
	v, err := c.readBinary(what)
	if err != nil {
		return nil, err
	}
	if err := checkUTF8(v); err != nil {
		return nil, malformed(c.t, err.Statement, "%s: %s", what, err.Reason)
	}
	return v, nil
}

// checkUTF8 applies the rules of section 1.5.4 (5.0) and 1.5.3 (3.1.1):
// well-formed UTF-8, no surrogate code points, no U+0000. A byte order mark
// is kept as the character U+FEFF [MQTT-1.5.4-3].
func checkUTF8(b []byte) *Error {
	// Fast path: pure ASCII without NUL is the common case.
	ascii := true
	for _, x := range b {
		if x == 0 {
			return &Error{Code: MalformedPacket, Statement: "MQTT-1.5.4-2", Reason: "string contains U+0000"}
		}
		if x >= utf8.RuneSelf {
			ascii = false
		}
	}
	if !ascii && !utf8.Valid(b) { // utf8.Valid also rejects encoded surrogates
		return &Error{Code: MalformedPacket, Statement: "MQTT-1.5.4-1", Reason: "string is not well-formed UTF-8"}
	}
	return nil
}

// ValidUTF8 reports whether b is a valid MQTT UTF-8 Encoded String body.
func ValidUTF8(b []byte) bool { return checkUTF8(b) == nil }

func varintSize(v uint32) int {
	switch {
	case v < 1<<7:
		return 1
	case v < 1<<14:
		return 2
	case v < 1<<21:
		return 3
	default:
		return 4
	}
}

func appendVarint(dst []byte, v uint32) []byte {
	for {
		d := byte(v & 0x7f)
		v >>= 7
		if v > 0 {
			d |= 0x80
		}
		dst = append(dst, d)
		if v == 0 {
			return dst
		}
	}
}

// AppendVarint appends v as a variable byte integer. v must not exceed MaxRemaining.
func AppendVarint(dst []byte, v uint32) []byte { return appendVarint(dst, v) }

// DecodeVarint decodes a variable byte integer at the start of b and
// returns its value and length; the error (0x81) carries the reason.
func DecodeVarint(b []byte) (uint32, int, error) {
	v, n, err := decodeVarint(b)
	if err != nil {
		return 0, 0, err
	}
	return v, n, nil
}

func appendUint16(dst []byte, v uint16) []byte { return append(dst, byte(v>>8), byte(v)) }

func appendUint32(dst []byte, v uint32) []byte {
	return append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendBinary(dst []byte, v []byte) []byte {
	dst = appendUint16(dst, uint16(len(v)))
	return append(dst, v...)
}

// appendHeader appends a fixed header.
func appendHeader(dst []byte, t Type, flags byte, remaining int) []byte {
	dst = append(dst, byte(t)<<4|flags&0x0f)
	return appendVarint(dst, uint32(remaining))
}

// grow makes room for n more bytes in dst with one allocation at most. The
// capacity at least doubles, so that appending packet after packet to one
// buffer costs amortised constant time.
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) >= n {
		return dst
	}
	nd := make([]byte, len(dst), max(len(dst)+n, 2*cap(dst)))
	copy(nd, dst)
	return nd
}

func containsByte(b []byte, c byte) bool { return bytes.IndexByte(b, c) >= 0 }

func trailingZeros(x uint64) int { return bits.TrailingZeros64(x) }

func itoa(n int) string { return strconv.Itoa(n) }

func quote(b []byte) string {
	if len(b) > 32 {
		b = b[:32]
	}
	return strconv.Quote(string(b))
}

// checkFlags enforces the fixed-header flag nibble of packet types other
// than PUBLISH [MQTT-2.1.3-1].
func checkFlags(h FixedHeader) *Error {
	if want, fixed := h.Type.requiredFlags(); fixed && h.Flags != want {
		return malformed(h.Type, "MQTT-2.1.3-1", "fixed header flags 0x%x, want 0x%x", h.Flags, want)
	}
	return nil
}
