package store

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// Key schema (docs/STORAGE.md). 0x00 ends the tenant and the client
// identifier. Topics and filters are MQTT strings, which never contain
// U+0000, and come last. Tenant names and client identifiers are escaped
// (esc) so that no name, whatever an authenticator let through, can hold
// a 0x00 and reach into another key range; names that are valid UTF-8
// without U+0000 escape to themselves, so keys written before escaping
// read the same.
//
//	"\x00format"                                format version
//	"s" esc(tenant) 00 esc(clientID) 00 01      session record
//	"s" esc(tenant) 00 esc(clientID) 00 02 pid  QoS 2 packet id awaiting PUBREL
//	"s" esc(tenant) 00 esc(clientID) 00 03 seq  queued / in-flight delivery
//	"s" esc(tenant) 00 esc(clientID) 00 04 filter  subscription
//	"r" esc(tenant) 00 topic                    retained message
//	"q" key                                     a quarantined record (Load)
const (
	kindSession  = 0x01
	kindInbound  = 0x02
	kindDelivery = 0x03
	kindSub      = 0x04
)

var formatKey = []byte("\x00format")

// formatVersion is written in new stores and checked on open.
const formatVersion = "skybridge-store/1"

// The key builders append to dst, so that the committer reuses one buffer.

// Escaping: 0x00 becomes FF 01 and 0xFF becomes FF 02. 0xFF never
// occurs in UTF-8, so an escaped name holds no 0x00 and valid UTF-8 is
// unchanged.
const escByte = 0xFF

func appendEscaped(dst []byte, name string) []byte {
	for i := 0; i < len(name); i++ {
		switch c := name[i]; c {
		case 0:
			dst = append(dst, escByte, 1)
		case escByte:
			dst = append(dst, escByte, 2)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// unescape reverses appendEscaped; ok is false for a byte sequence it
// cannot have written.
func unescape(b []byte) (string, bool) {
	if indexByte(b, escByte) < 0 {
		return string(b), true
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != escByte {
			out = append(out, b[i])
			continue
		}
		if i+1 == len(b) {
			return "", false
		}
		i++
		switch b[i] {
		case 1:
			out = append(out, 0)
		case 2:
			out = append(out, escByte)
		default:
			return "", false
		}
	}
	return string(out), true
}

func sessionPrefix(dst []byte, tenant, clientID string) []byte {
	dst = append(dst, 's')
	dst = appendEscaped(dst, tenant)
	dst = append(dst, 0)
	dst = appendEscaped(dst, clientID)
	return append(dst, 0)
}

func sessionKey(dst []byte, tenant, clientID string) []byte {
	return append(sessionPrefix(dst, tenant, clientID), kindSession)
}

func inboundKey(dst []byte, tenant, clientID string, pid uint16) []byte {
	return binary.BigEndian.AppendUint16(append(sessionPrefix(dst, tenant, clientID), kindInbound), pid)
}

func deliveryKey(dst []byte, tenant, clientID string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(sessionPrefix(dst, tenant, clientID), kindDelivery), seq)
}

func subKey(dst []byte, tenant, clientID, filter string) []byte {
	return append(append(sessionPrefix(dst, tenant, clientID), kindSub), filter...)
}

func retainedKey(dst []byte, tenant string, t []byte) []byte {
	dst = append(dst, 'r')
	dst = appendEscaped(dst, tenant)
	dst = append(dst, 0)
	return append(dst, t...)
}

// decoded key.
type key struct {
	retained bool
	tenant   string
	clientID string
	kind     byte
	rest     []byte // pid, seq, filter or topic
}

func parseKey(k []byte) (key, error) {
	if len(k) < 2 {
		return key{}, fmt.Errorf("%w: short key %q", ErrCorrupt, k)
	}
	body := k[1:]
	i := indexByte(body, 0)
	if i < 0 {
		return key{}, fmt.Errorf("%w: key %q", ErrCorrupt, k)
	}
	tenant, ok := unescape(body[:i])
	if !ok {
		return key{}, fmt.Errorf("%w: key %q: bad escape in the tenant", ErrCorrupt, k)
	}
	switch k[0] {
	case 'r':
		return key{retained: true, tenant: tenant, rest: body[i+1:]}, nil
	case 's':
		tail := body[i+1:]
		j := indexByte(tail, 0)
		if j < 0 || j+1 >= len(tail) {
			return key{}, fmt.Errorf("%w: key %q", ErrCorrupt, k)
		}
		clientID, ok := unescape(tail[:j])
		if !ok {
			return key{}, fmt.Errorf("%w: key %q: bad escape in the client id", ErrCorrupt, k)
		}
		return key{tenant: tenant, clientID: clientID, kind: tail[j+1], rest: tail[j+2:]}, nil
	}
	return key{}, fmt.Errorf("%w: key %q", ErrCorrupt, k)
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// enc appends the binary encoding of values.
type enc struct{ b []byte }

func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) bytes(v []byte)   { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) str(v string)     { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) byte(v byte)      { e.b = append(e.b, v) }
func (e *enc) time(t time.Time) {
	if t.IsZero() {
		e.uvarint(0)
		return
	}
	e.uvarint(uint64(t.UnixNano()))
}

// dec reads what enc wrote; the first error sticks.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: value ends early or is too long", ErrCorrupt)
	}
}

func (d *dec) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		d.b = nil
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) time() time.Time {
	v := d.uvarint()
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(v))
}

// Message encoding: flags (QoS, retain, has-expiry), topic, payload,
// expiry, publisher key, forwarded properties.
func encodeMessage(e *enc, m *message.Message) {
	flags := byte(m.QoS)
	if m.Retain {
		flags |= 0x04
	}
	e.byte(flags)
	e.bytes(m.Topic)
	e.bytes(m.Payload)
	e.time(m.Expiry)
	e.uvarint(m.PublisherKey)
	p := &m.Properties
	e.uvarint(p.Present)
	e.byte(p.PayloadFormat)
	e.bytes(p.ContentType)
	e.bytes(p.ResponseTopic)
	e.bytes(p.CorrelationData)
	e.uvarint(uint64(len(p.User)))
	for _, u := range p.User {
		e.bytes(u.Key)
		e.bytes(u.Value)
	}
}

// decodeMessage decodes a message whose bytes alias the value; the caller
// passes a private copy of the value.
func decodeMessage(d *dec) *message.Message {
	m := &message.Message{Owned: true}
	flags := d.byte()
	m.QoS, m.Retain = packet.QoS(flags&0x03), flags&0x04 != 0
	m.Topic = d.bytes()
	m.Payload = d.bytes()
	m.Expiry = d.time()
	m.PublisherKey = d.uvarint()
	p := &m.Properties
	p.Present = d.uvarint()
	p.PayloadFormat = d.byte()
	p.ContentType = nilIfEmpty(d.bytes())
	p.ResponseTopic = nilIfEmpty(d.bytes())
	p.CorrelationData = nilIfEmpty(d.bytes())
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return m
	}
	for range n {
		k, v := d.bytes(), d.bytes()
		p.User = append(p.User, packet.UserProperty{Key: k, Value: v})
	}
	if d.err == nil && m.QoS > 2 {
		d.err = fmt.Errorf("%w: message QoS %d", ErrCorrupt, m.QoS)
	}
	return m
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

const recordVersion = 1

func encodeSession(dst []byte, r *SessionRecord) []byte {
	e := enc{b: dst}
	e.byte(recordVersion)
	e.byte(r.Version)
	e.uvarint(uint64(r.Expiry))
	e.time(r.OfflineSince)
	e.uvarint(uint64(r.WillDelay))
	if r.Will != nil {
		e.byte(1)
		encodeMessage(&e, r.Will)
	} else {
		e.byte(0)
	}
	// The owner came later: a record that ends before it has none.
	if r.OwnerKnown {
		e.byte(1)
		e.str(r.Owner)
	}
	return e.b
}

func decodeSession(v []byte) (*SessionRecord, error) {
	d := dec{b: v}
	if d.byte() != recordVersion {
		return nil, fmt.Errorf("%w: session record version", ErrCorrupt)
	}
	r := &SessionRecord{Version: d.byte(), Expiry: uint32(d.uvarint()), OfflineSince: d.time(), WillDelay: uint32(d.uvarint())}
	if d.byte() == 1 {
		r.Will = decodeMessage(&d)
	}
	if d.err == nil && len(d.b) > 0 {
		switch d.byte() {
		case 1:
			r.Owner, r.OwnerKnown = string(d.bytes()), true
		default:
			d.err = fmt.Errorf("%w: session record owner", ErrCorrupt)
		}
	}
	return r, d.err
}

func encodeDelivery(dst []byte, r *DeliveryRecord) []byte {
	e := enc{b: dst}
	e.byte(recordVersion)
	e.uvarint(uint64(r.PID))
	flags := r.QoS
	if r.Retain {
		flags |= 0x04
	}
	e.byte(flags)
	e.byte(r.State)
	e.uvarint(uint64(len(r.SubIDs)))
	for _, id := range r.SubIDs {
		e.uvarint(uint64(id))
	}
	if r.Msg != nil {
		e.byte(1)
		encodeMessage(&e, r.Msg)
	} else {
		e.byte(0)
	}
	return e.b
}

func decodeDelivery(seq uint64, v []byte) (*DeliveryRecord, error) {
	d := dec{b: v}
	if d.byte() != recordVersion {
		return nil, fmt.Errorf("%w: delivery record version", ErrCorrupt)
	}
	r := &DeliveryRecord{Seq: seq, PID: uint16(d.uvarint())}
	flags := d.byte()
	r.QoS, r.Retain = flags&0x03, flags&0x04 != 0
	r.State = d.byte()
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil, d.err
	}
	for range n {
		r.SubIDs = append(r.SubIDs, uint32(d.uvarint()))
	}
	if d.byte() == 1 {
		r.Msg = decodeMessage(&d)
	}
	return r, d.err
}

func encodeOptions(dst []byte, o topic.Options) []byte {
	e := enc{b: dst}
	e.byte(recordVersion)
	flags := o.QoS | o.RetainHandling<<2
	if o.NoLocal {
		flags |= 0x10
	}
	if o.RetainAsPublished {
		flags |= 0x20
	}
	e.byte(flags)
	e.uvarint(uint64(o.ID))
	return e.b
}

func decodeOptions(v []byte) (topic.Options, error) {
	d := dec{b: v}
	if d.byte() != recordVersion {
		return topic.Options{}, fmt.Errorf("%w: subscription record version", ErrCorrupt)
	}
	f := d.byte()
	o := topic.Options{QoS: f & 0x03, RetainHandling: f >> 2 & 0x03, NoLocal: f&0x10 != 0,
		RetainAsPublished: f&0x20 != 0, ID: uint32(d.uvarint())}
	return o, d.err
}

func encodeRetained(dst []byte, m *message.Message) []byte {
	e := enc{b: dst}
	e.byte(recordVersion)
	encodeMessage(&e, m)
	return e.b
}

func decodeRetained(v []byte) (*message.Message, error) {
	d := dec{b: v}
	if d.byte() != recordVersion {
		return nil, fmt.Errorf("%w: retained record version", ErrCorrupt)
	}
	m := decodeMessage(&d)
	return m, d.err
}
