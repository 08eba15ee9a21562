package forward

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// The wire (version 2). A link is a stream of frames:
//
//	frame   = length (uint32, big endian: the bytes that follow) type (1 byte) body
//	hello   (1, sender → receiver) = "SKYF" version(1) from(str) to(str) incarnation(uv) link(uv) firstUnacked(uv)
//	welcome (2, receiver → sender) = version(1) node(str) incarnation(uv) acked(uv) limit(uv) maxFrame(uv)
//	data    (3, sender → receiver) = seq(uint64 BE) count(uint32 BE) record*
//	ack     (4, receiver → sender) = acked(uv) limit(uv)
//	goaway  (5, either way)        = code(1) reason(str)
//
//	record  = tenant(str) flags(1) [expiry(varint, Unix ns) if flags&1]
//	          [groups: count(uv) name(str)* if flags&4] publisherKey(uv) publish
//	flags   = bit 0 expiry, bit 1 not for plain subscriptions, bit 2 groups
//	publish = an MQTT 5.0 PUBLISH packet, fixed header included (packet id 1 when QoS > 0)
//
// str is a uvarint length and the bytes; uv a uvarint. A data frame's
// header has a fixed width so that the sender can fill it in when it seals
// a frame whose messages were appended first. A message is an MQTT 5.0
// PUBLISH so that the codec that already checks every client's packets
// (UTF-8, property placement, duplicates) checks these too; it carries the
// forwarded properties only (no expiry interval: the absolute instant
// travels instead, so time spent queued counts; no subscription
// identifier or topic alias: the receiver computes its own).

// Version is the protocol version a hello announces. Version 2 added the
// hello's link number (version 1 had none: a sender that started over in
// the same process could not be told from a reconnection).
const Version = 2

// Frame types.
const (
	frameHello   = 1
	frameWelcome = 2
	frameData    = 3
	frameAck     = 4
	frameGoAway  = 5
)

var magic = [4]byte{'S', 'K', 'Y', 'F'}

// LenSize is the size of a frame's length prefix.
const LenSize = 4

// dataHeader is the size of a data frame before its records: length,
// type, sequence number, count.
const dataHeader = LenSize + 1 + 8 + 4

// Record flags.
const (
	flagExpiry  = 1
	flagNoPlain = 2
	flagGroups  = 4
)

// MaxGroups bounds the shared groups one record names.
const MaxGroups = 1024

// Audience says which of the receiving node's subscriptions a message is
// for: its plain (not shared) ones when Plain, and one member of each
// shared group in Groups (each named $share/group/filter).
type Audience struct {
	Plain  bool
	Groups []string
}

// Everyone is the audience of a message for every plain subscription and
// no shared group.
var Everyone = Audience{Plain: true}

// maxNodeID bounds a node id on the wire.
const maxNodeID = 255

// forwardedProps are the properties a forwarded message may carry: those a
// subscriber receives (message.Message keeps no others), user properties
// apart.
const forwardedProps = 1<<packet.PropPayloadFormat | 1<<packet.PropContentType |
	1<<packet.PropResponseTopic | 1<<packet.PropCorrelationData

// Error is a failure of a link: a frame that cannot be decoded, a protocol
// violation, a refused message. Code is the MQTT reason code that says the
// same (0x81 malformed, 0x82 protocol error, 0x95 too large, 0x97 quota
// exceeded, 0x84 unsupported version...).
type Error struct {
	Code   packet.ReasonCode
	Reason string
}

func (e *Error) Error() string { return "forward: " + e.Code.String() + ": " + e.Reason }

func errorf(code packet.ReasonCode, format string, args ...any) *Error {
	return &Error{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// ReadLen returns the length of the frame whose prefix is hdr (the bytes
// after the prefix: type and body), refusing one longer than max (0x95) or
// empty (0x81).
func ReadLen(hdr []byte, max int) (int, error) {
	n := binary.BigEndian.Uint32(hdr[:LenSize])
	switch {
	case n == 0:
		return 0, errorf(packet.MalformedPacket, "empty frame")
	case uint64(n) > uint64(max):
		return 0, errorf(packet.PacketTooLarge, "frame of %d bytes, limit %d", n, max)
	}
	return int(n), nil
}

// beginFrame appends a length placeholder and the type; endFrame fills in
// the length of the frame started at start.
func beginFrame(dst []byte, typ byte) []byte { return append(dst, 0, 0, 0, 0, typ) }

func endFrame(dst []byte, start int) []byte {
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-LenSize))
	return dst
}

func appendStr(dst []byte, s string) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

// Hello is the sender's opening frame.
type Hello struct {
	Version     byte
	From, To    string // node ids: the sender's, and the receiver it meant to reach
	Incarnation uint64 // the sender process's
	// Link numbers the sender's link sessions within its incarnation: a
	// Sender made afresh in the same process (the old one abandoned) has a
	// higher one, so the receiver starts over instead of taking the new
	// frame 1 for a resend of the old one.
	Link uint64
	// FirstUnacked is the sequence number of the sender's oldest frame not
	// yet acknowledged (the next it will seal when none is held).
	FirstUnacked uint64
}

func appendHello(dst []byte, h *Hello) []byte {
	start := len(dst)
	dst = beginFrame(dst, frameHello)
	dst = append(dst, magic[:]...)
	dst = append(dst, h.Version)
	dst = appendStr(dst, h.From)
	dst = appendStr(dst, h.To)
	dst = binary.AppendUvarint(dst, h.Incarnation)
	dst = binary.AppendUvarint(dst, h.Link)
	dst = binary.AppendUvarint(dst, h.FirstUnacked)
	return endFrame(dst, start)
}

// ParseHello decodes a hello frame (type and body, as Handle takes it), so
// that a listener can tell which sender a connection comes from before it
// picks that sender's Receiver. It refuses another version (0x84).
func ParseHello(frame []byte) (Hello, error) {
	var h Hello
	if len(frame) == 0 || frame[0] != frameHello {
		return h, errorf(packet.ProtocolError, "first frame is not a hello")
	}
	r := rd{b: frame[1:]}
	m := r.take("magic", 4)
	if r.err == nil && [4]byte(m) != magic {
		return h, errorf(packet.MalformedPacket, "hello: bad magic %q", m)
	}
	h.Version = r.byte("version")
	if r.err == nil && h.Version != Version {
		return h, errorf(packet.UnsupportedProtocolVersion, "hello: version %d, this node speaks %d", h.Version, Version)
	}
	h.From = string(r.str("sender node id", maxNodeID))
	h.To = string(r.str("receiver node id", maxNodeID))
	h.Incarnation = r.uvarint("incarnation")
	h.Link = r.uvarint("link")
	h.FirstUnacked = r.uvarint("first unacknowledged")
	if r.err == nil && (h.FirstUnacked == 0 || h.Incarnation == 0) {
		r.fail(packet.ProtocolError, "hello: incarnation %d, first unacknowledged %d: both start at 1", h.Incarnation, h.FirstUnacked)
	}
	return h, r.end("hello")
}

// welcome is the receiver's answer to a hello.
type welcome struct {
	Version     byte
	Node        string
	Incarnation uint64
	Acked       uint64 // the sender's frames up to here are acknowledged
	Limit       uint64 // the sender may send frames up to here
	MaxFrame    uint64 // the largest frame the receiver takes
}

func appendWelcome(dst []byte, w *welcome) []byte {
	start := len(dst)
	dst = beginFrame(dst, frameWelcome)
	dst = append(dst, w.Version)
	dst = appendStr(dst, w.Node)
	dst = binary.AppendUvarint(dst, w.Incarnation)
	dst = binary.AppendUvarint(dst, w.Acked)
	dst = binary.AppendUvarint(dst, w.Limit)
	dst = binary.AppendUvarint(dst, w.MaxFrame)
	return endFrame(dst, start)
}

func parseWelcome(body []byte) (welcome, error) {
	var w welcome
	r := rd{b: body}
	w.Version = r.byte("version")
	if r.err == nil && w.Version != Version {
		return w, errorf(packet.UnsupportedProtocolVersion, "welcome: version %d, this node speaks %d", w.Version, Version)
	}
	w.Node = string(r.str("receiver node id", maxNodeID))
	w.Incarnation = r.uvarint("incarnation")
	w.Acked = r.uvarint("acked")
	w.Limit = r.uvarint("limit")
	w.MaxFrame = r.uvarint("max frame")
	if r.err == nil && w.Limit < w.Acked {
		r.fail(packet.ProtocolError, "welcome: limit %d below acked %d", w.Limit, w.Acked)
	}
	return w, r.end("welcome")
}

func appendAck(dst []byte, acked, limit uint64) []byte {
	start := len(dst)
	dst = beginFrame(dst, frameAck)
	dst = binary.AppendUvarint(dst, acked)
	dst = binary.AppendUvarint(dst, limit)
	return endFrame(dst, start)
}

func parseAck(body []byte) (acked, limit uint64, err error) {
	r := rd{b: body}
	acked = r.uvarint("acked")
	limit = r.uvarint("limit")
	if r.err == nil && limit < acked {
		r.fail(packet.ProtocolError, "ack: limit %d below acked %d", limit, acked)
	}
	return acked, limit, r.end("ack")
}

// AppendGoAway appends the frame that tells the other side why the
// connection closes (a runtime refusing a connection before any link
// end exists uses it; the cores append their own).
func AppendGoAway(dst []byte, e *Error) []byte {
	start := len(dst)
	dst = beginFrame(dst, frameGoAway)
	dst = append(dst, byte(e.Code))
	reason := e.Reason
	if len(reason) > 1024 {
		reason = reason[:1024]
	}
	dst = appendStr(dst, reason)
	return endFrame(dst, start)
}

func parseGoAway(body []byte) *Error {
	r := rd{b: body}
	code := r.byte("code")
	reason := r.str("reason", 1024)
	if err := r.end("goaway"); err != nil {
		return err.(*Error)
	}
	return errorf(packet.ReasonCode(code), "peer closed the link: %s", reason)
}

// data is a decoded data frame's header; its records follow.
type data struct {
	Seq     uint64
	Count   uint32
	Records []byte
}

func parseData(body []byte) (data, error) {
	if len(body) < 12 {
		return data{}, errorf(packet.MalformedPacket, "data frame of %d bytes", len(body))
	}
	d := data{Seq: binary.BigEndian.Uint64(body), Count: binary.BigEndian.Uint32(body[8:]), Records: body[12:]}
	if d.Seq == 0 {
		return d, errorf(packet.ProtocolError, "data frame with sequence number 0")
	}
	// Every record takes more than 5 bytes, so a count the frame cannot
	// hold is refused before anything is delivered.
	if uint64(d.Count)*6 > uint64(len(d.Records)) {
		return d, errorf(packet.MalformedPacket, "data frame claims %d messages in %d bytes", d.Count, len(d.Records))
	}
	return d, nil
}

// sealData fills in the header of the data frame that starts at frame[0].
func sealData(frame []byte, seq uint64, count int) {
	binary.BigEndian.PutUint32(frame, uint32(len(frame)-LenSize))
	frame[LenSize] = frameData
	binary.BigEndian.PutUint64(frame[LenSize+1:], seq)
	binary.BigEndian.PutUint32(frame[LenSize+9:], uint32(count))
}

// encoder turns messages into records; its Publish is scratch space
// reused for every message.
type encoder struct{ pub packet.Publish }

// prepare loads m into the scratch PUBLISH and returns the record's size.
func (e *encoder) prepare(tenant string, m *message.Message, to *Audience) int {
	p := &e.pub
	p.Dup, p.QoS, p.Retain, p.Topic, p.Payload = false, m.QoS, m.Retain, m.Topic, m.Payload
	p.PacketID = 0
	if p.QoS > packet.QoS0 {
		p.PacketID = 1
	}
	p.Properties = m.Properties
	p.Properties.Present &= forwardedProps
	p.Properties.SubscriptionIDs = nil
	n := uvarintLen(uint64(len(tenant))) + len(tenant) + 1 + uvarintLen(m.PublisherKey) + p.Size(packet.V5)
	if !m.Expiry.IsZero() {
		n += varintLen(m.Expiry.UnixNano())
	}
	if len(to.Groups) > 0 {
		n += uvarintLen(uint64(len(to.Groups)))
		for _, g := range to.Groups {
			n += uvarintLen(uint64(len(g))) + len(g)
		}
	}
	return n
}

// append appends the record of the message last prepared.
func (e *encoder) append(dst []byte, tenant string, m *message.Message, to *Audience) ([]byte, error) {
	start := len(dst)
	dst = appendStr(dst, tenant)
	var flags byte
	if !m.Expiry.IsZero() {
		flags |= flagExpiry
	}
	if !to.Plain {
		flags |= flagNoPlain
	}
	if len(to.Groups) > 0 {
		flags |= flagGroups
	}
	dst = append(dst, flags)
	if flags&flagExpiry != 0 {
		dst = binary.AppendVarint(dst, m.Expiry.UnixNano())
	}
	if flags&flagGroups != 0 {
		dst = binary.AppendUvarint(dst, uint64(len(to.Groups)))
		for _, g := range to.Groups {
			dst = appendStr(dst, g)
		}
	}
	dst = binary.AppendUvarint(dst, m.PublisherKey)
	dst, err := e.pub.Append(dst, packet.V5)
	if err != nil {
		return dst[:start], errorf(packet.MalformedPacket, "message cannot be encoded: %v", err)
	}
	return dst, nil
}

// AppendRecord appends one message's record, as a data frame carries it,
// for tests and tools.
func AppendRecord(dst []byte, tenant string, m *message.Message, to Audience) ([]byte, error) {
	var e encoder
	e.prepare(tenant, m, &to)
	return e.append(dst, tenant, m, &to)
}

// DecodeRecord decodes one record made by AppendRecord, with the same
// checks as a data frame's; the message borrows b.
func DecodeRecord(b []byte) (tenant []byte, m *message.Message, err error) {
	var d decoder
	tenant, m, rest, err := d.next(b)
	if err == nil && len(rest) != 0 {
		err = errorf(packet.MalformedPacket, "%d bytes after the record", len(rest))
	}
	return tenant, m, err
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func varintLen(v int64) int {
	u := uint64(v) << 1
	if v < 0 {
		u = ^u
	}
	return uvarintLen(u)
}

// decoder turns records back into messages that borrow the frame's bytes;
// its values are scratch space reused for every message.
type decoder struct {
	pub    packet.Publish
	msg    message.Message
	plain  bool
	groups [][]byte
}

// next decodes the record at the start of b and returns the tenant, the
// message (valid until the next call; its audience in d.plain and
// d.groups) and the rest of b.
func (d *decoder) next(b []byte) (tenant []byte, m *message.Message, rest []byte, err error) {
	r := rd{b: b}
	tenant = r.str("tenant", 65535)
	flags := r.byte("flags")
	if r.err == nil && flags&^(flagExpiry|flagNoPlain|flagGroups) != 0 {
		r.fail(packet.MalformedPacket, "record flags 0x%x", flags)
	}
	var expiry int64
	if flags&flagExpiry != 0 {
		if expiry = r.varint("expiry"); r.err == nil && expiry == 0 {
			r.fail(packet.MalformedPacket, "expiry instant 0")
		}
	}
	d.plain, d.groups = flags&flagNoPlain == 0, d.groups[:0]
	if flags&flagGroups != 0 {
		n := r.uvarint("group count")
		if r.err == nil && (n == 0 || n > MaxGroups) {
			r.fail(packet.MalformedPacket, "%d groups", n)
		}
		for i := uint64(0); i < n && r.err == nil; i++ {
			g := r.str("group", 65535)
			if r.err == nil && !sharedName(g) {
				r.fail(packet.TopicFilterInvalid, "group %q is not a shared subscription", g)
			}
			d.groups = append(d.groups, g)
		}
	}
	if r.err == nil && !d.plain && len(d.groups) == 0 {
		r.fail(packet.ProtocolError, "a message for no subscription")
	}
	key := r.uvarint("publisher key")
	first := r.byte("publish header")
	if r.err != nil {
		return nil, nil, nil, r.err
	}
	if packet.Type(first>>4) != packet.PUBLISH {
		return nil, nil, nil, errorf(packet.MalformedPacket, "record holds packet type %d, not PUBLISH", first>>4)
	}
	size, n, verr := packet.DecodeVarint(r.b[r.off:])
	if verr != nil {
		return nil, nil, nil, errorf(packet.MalformedPacket, "publish length: %v", verr)
	}
	r.off += n
	body := r.take("publish", int(size))
	if r.err != nil {
		return nil, nil, nil, r.err
	}
	p := &d.pub
	if err := p.Decode(packet.FixedHeader{Type: packet.PUBLISH, Flags: first & 0x0f, Remaining: int(size)}, body, packet.V5); err != nil {
		return nil, nil, nil, errorf(packet.CodeOf(err), "message: %v", err)
	}
	switch {
	case p.Dup:
		return nil, nil, nil, errorf(packet.MalformedPacket, "message with DUP set")
	case p.Properties.Present&^forwardedProps != 0 || len(p.Properties.SubscriptionIDs) > 0:
		return nil, nil, nil, errorf(packet.ProtocolError, "message carries properties that are not forwarded (mask 0x%x)", p.Properties.Present&^forwardedProps)
	}
	if err := topic.ValidName(p.Topic); err != nil {
		return nil, nil, nil, errorf(packet.TopicNameInvalid, "message: %v", err)
	}
	m = &d.msg
	*m = message.Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain,
		Properties: p.Properties, PublisherKey: key}
	if expiry != 0 {
		m.Expiry = time.Unix(0, expiry)
	}
	return tenant, m, r.b[r.off:], nil
}

// sharedName reports whether g is a valid shared subscription's name.
func sharedName(g []byte) bool {
	_, _, ok := topic.ParseShared(g)
	return ok && topic.ValidFilter(g) == nil
}

// rd reads the fields of a control frame or a record; the first error
// sticks and every later read returns zero.
type rd struct {
	b   []byte
	off int
	err error
}

func (r *rd) fail(code packet.ReasonCode, format string, args ...any) {
	if r.err == nil {
		r.err = errorf(code, format, args...)
	}
}

func (r *rd) take(what string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.off < n {
		r.fail(packet.MalformedPacket, "%s: frame ends early", what)
		return nil
	}
	v := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return v
}

func (r *rd) byte(what string) byte {
	if v := r.take(what, 1); v != nil {
		return v[0]
	}
	return 0
}

func (r *rd) uvarint(what string) uint64 { return readInt(r, what, binary.Uvarint) }

func (r *rd) varint(what string) int64 { return readInt(r, what, binary.Varint) }

func readInt[T uint64 | int64](r *rd, what string, decode func([]byte) (T, int)) T {
	if r.err != nil {
		return 0
	}
	v, n := decode(r.b[r.off:])
	if n <= 0 {
		r.fail(packet.MalformedPacket, "%s: bad or truncated integer", what)
		return 0
	}
	r.off += n
	return v
}

func (r *rd) str(what string, max int) []byte {
	n := r.uvarint(what)
	if r.err == nil && n > uint64(max) {
		r.fail(packet.MalformedPacket, "%s: %d bytes, limit %d", what, n, max)
	}
	return r.take(what, int(n))
}

// end checks that a control frame held nothing more.
func (r *rd) end(what string) error {
	if r.err == nil && r.off != len(r.b) {
		r.fail(packet.MalformedPacket, "%s: %d bytes after the end", what, len(r.b)-r.off)
	}
	if r.err != nil {
		return r.err
	}
	return nil
}
