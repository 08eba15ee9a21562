package packet

import (
	"bufio"
	"errors"
	"io"
)

// Reader reads whole packets from a byte stream.
//
// The body returned by ReadPacket aliases memory owned by the Reader and is
// valid until the next call to ReadPacket.
type Reader struct {
	br *bufio.Reader
	// MaxPacketSize bounds the whole packet (fixed header included). A packet
	// that claims more is refused with PacketTooLarge before its body is read.
	// Zero means MaxPacketSize.
	MaxPacketSize int
	buf           []byte // holds bodies that do not fit in br's buffer
}

// NewReader returns a Reader over r. If r is already a *bufio.Reader it is
// used as is; otherwise it is wrapped with a buffer of bufSize bytes
// (4096 if bufSize <= 0).
func NewReader(r io.Reader, bufSize int) *Reader {
	if br, ok := r.(*bufio.Reader); ok {
		return &Reader{br: br}
	}
	if bufSize <= 0 {
		bufSize = 4096
	}
	return &Reader{br: bufio.NewReaderSize(r, bufSize)}
}

// Reset makes the Reader read from r, keeping its buffers.
func (r *Reader) Reset(rd io.Reader) { r.br.Reset(rd) }

// Buffered returns the number of bytes already read from the stream but not
// yet consumed.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// chunk is how much of a large body is buffered at a time, so that a client
// that announces a large packet and then sends it slowly does not make the
// Reader allocate the whole claim up front.
const chunk = 64 << 10

// ReadHeader reads a fixed header and checks its length against the limit.
// io.EOF means the stream ended cleanly between packets.
func (r *Reader) ReadHeader() (FixedHeader, error) {
	b0, err := r.br.ReadByte()
	if err != nil {
		return FixedHeader{}, err
	}
	h := FixedHeader{Type: Type(b0 >> 4), Flags: b0 & 0x0f}
	if h.Type == 0 {
		return h, malformed(0, "", "reserved packet type 0")
	}
	var v uint32
	var i int
	for i = 0; ; i++ {
		if i == 4 {
			return h, malformed(h.Type, "", "remaining length longer than four bytes")
		}
		d, err := r.br.ReadByte()
		if err != nil {
			return h, unexpected(err)
		}
		v |= uint32(d&0x7f) << (7 * i)
		if d&0x80 == 0 {
			if i > 0 && d == 0 {
				return h, malformed(h.Type, "MQTT-1.5.5-1", "remaining length not minimally encoded")
			}
			break
		}
	}
	h.Remaining = int(v)
	max := r.MaxPacketSize
	if max <= 0 {
		max = MaxPacketSize
	}
	if total := 1 + i + 1 + h.Remaining; total > max {
		return h, &Error{Code: PacketTooLarge, Packet: h.Type,
			Reason: "packet of " + itoa(total) + " bytes exceeds the maximum of " + itoa(max)}
	}
	return h, nil
}

// ReadBody reads the body announced by h. The result aliases the Reader's
// memory until the next read.
func (r *Reader) ReadBody(h FixedHeader) ([]byte, error) {
	n := h.Remaining
	if n == 0 {
		return nil, nil
	}
	if n <= r.br.Size() {
		// Zero-copy: the body lies in the bufio buffer until the next read.
		b, err := r.br.Peek(n)
		if err != nil {
			return nil, unexpected(err)
		}
		_, _ = r.br.Discard(n)
		return b, nil
	}
	buf := r.buf[:0]
	for len(buf) < n {
		step := min(n-len(buf), chunk)
		if cap(buf)-len(buf) < step {
			nb := make([]byte, len(buf), min(n, max(2*cap(buf), len(buf)+step)))
			copy(nb, buf)
			buf = nb
		}
		m, err := io.ReadFull(r.br, buf[len(buf):len(buf)+step])
		buf = buf[:len(buf)+m]
		if err != nil {
			r.buf = buf
			return nil, unexpected(err)
		}
	}
	r.buf = buf
	return buf, nil
}

// ReadPacket reads one packet's fixed header and body.
func (r *Reader) ReadPacket() (FixedHeader, []byte, error) {
	h, err := r.ReadHeader()
	if err != nil {
		return h, nil, err
	}
	body, err := r.ReadBody(h)
	return h, body, err
}

// unexpected turns a clean EOF in the middle of a packet into
// io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Decoder reads packets and decodes them into values it owns, one per
// packet type, reused from call to call.
type Decoder struct {
	*Reader
	// Version selects the dialect of every packet but CONNECT. Decoding a
	// CONNECT sets it when it is still zero.
	Version Version

	connect     Connect
	connack     Connack
	publish     Publish
	ack         Ack
	subscribe   Subscribe
	suback      Suback
	unsubscribe Unsubscribe
	unsuback    Unsuback
	pingreq     Pingreq
	pingresp    Pingresp
	disconnect  Disconnect
	auth        Auth
}

// NewDecoder returns a Decoder reading from r.
func NewDecoder(r io.Reader, v Version) *Decoder {
	return &Decoder{Reader: NewReader(r, 0), Version: v}
}

// slot returns the Decoder's value for packet type t.
func (d *Decoder) slot(t Type) Packet {
	switch t {
	case CONNECT:
		return &d.connect
	case CONNACK:
		return &d.connack
	case PUBLISH:
		return &d.publish
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		return &d.ack
	case SUBSCRIBE:
		return &d.subscribe
	case SUBACK:
		return &d.suback
	case UNSUBSCRIBE:
		return &d.unsubscribe
	case UNSUBACK:
		return &d.unsuback
	case PINGREQ:
		return &d.pingreq
	case PINGRESP:
		return &d.pingresp
	case DISCONNECT:
		return &d.disconnect
	case AUTH:
		return &d.auth
	}
	return nil
}

// Next reads and decodes one packet. The packet returned is owned by the
// Decoder and, like every slice in it, is valid until the next call.
func (d *Decoder) Next() (Packet, error) {
	h, body, err := d.ReadPacket()
	if err != nil {
		return nil, err
	}
	return d.Decode(h, body)
}

// Decode decodes one already-read packet into the Decoder's value for its type.
func (d *Decoder) Decode(h FixedHeader, body []byte) (Packet, error) {
	p := d.slot(h.Type)
	if p == nil {
		return nil, malformed(h.Type, "", "reserved packet type")
	}
	v := d.Version
	if h.Type != CONNECT && v == 0 {
		v = V311
	}
	if err := p.Decode(h, body, v); err != nil {
		return nil, err
	}
	if h.Type == CONNECT && d.Version == 0 {
		d.Version = d.connect.Version
	}
	return p, nil
}

// Encode returns the encoding of p for version v in a new slice.
func Encode(p Packet, v Version) ([]byte, error) {
	return p.Append(make([]byte, 0, p.Size(v)), v)
}

// Shrink lets go of the slices an unusual packet grew beyond max entries
// (a PUBLISH with thousands of user properties, a SUBSCRIBE with thousands
// of filters), so that a decoder kept for reuse holds little. Decoding
// grows them again when needed.
func (d *Decoder) Shrink(max int) {
	for _, p := range [...]*Properties{&d.connect.Properties, &d.connect.WillProperties, &d.connack.Properties,
		&d.publish.Properties, &d.ack.Properties, &d.subscribe.Properties, &d.suback.Properties,
		&d.unsubscribe.Properties, &d.unsuback.Properties, &d.disconnect.Properties, &d.auth.Properties} {
		if cap(p.User) > max {
			p.User = nil
		}
		if cap(p.SubscriptionIDs) > max {
			p.SubscriptionIDs = nil
		}
	}
	if cap(d.subscribe.Subscriptions) > max {
		d.subscribe.Subscriptions = nil
	}
	if cap(d.unsubscribe.Filters) > max {
		d.unsubscribe.Filters = nil
	}
	if cap(d.suback.ReasonCodes) > max {
		d.suback.ReasonCodes = nil
	}
	if cap(d.unsuback.ReasonCodes) > max {
		d.unsuback.ReasonCodes = nil
	}
}
