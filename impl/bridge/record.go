package bridge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// record is a message as the queue keeps it: already mapped to the topic
// it gets on the other side, with the loop marker added.
type record struct {
	seq    uint64 // the queue position (the key), not encoded
	qos    byte
	retain bool
	topic  string
	// expiry is the absolute Message Expiry instant (Unix nanoseconds), 0
	// for none: the time the message waits in the queue counts.
	expiry          int64
	payloadFormat   byte // 0 or 1
	hasFormat       bool
	contentType     string
	responseTopic   string
	correlationData []byte
	user            []userProp
	payload         []byte
}

type userProp struct{ key, value string }

// Loop marker User Properties.
const (
	markerKey = "skybridge-bridge"
	hopsKey   = "skybridge-hops"
)

// hops returns how many bridges a message has crossed: the larger of its
// hop count and the number of markers it carries.
func hops(user []userProp) int {
	n, marks := 0, 0
	for _, p := range user {
		switch p.key {
		case hopsKey:
			if v, err := strconv.Atoi(p.value); err == nil && v > n {
				n = v
			}
		case markerKey:
			marks++
		}
	}
	return max(n, marks)
}

// crossed reports whether the message already crossed the bridge name.
func crossed(user []userProp, name string) bool {
	for _, p := range user {
		if p.key == markerKey && p.value == name {
			return true
		}
	}
	return false
}

// mark returns the User Properties of a message crossing bridge name: the
// originals in order, without the old hop count, then the marker and the
// new count.
func mark(user []userProp, name string, h int) []userProp {
	out := make([]userProp, 0, len(user)+2)
	for _, p := range user {
		if p.key != hopsKey {
			out = append(out, p)
		}
	}
	return append(out, userProp{markerKey, name}, userProp{hopsKey, strconv.Itoa(h + 1)})
}

const recordVersion = 1

const (
	flagRetain    = 1 << 2
	flagHasFormat = 1 << 3
	flagFormat    = 1 << 4
	flagExpiry    = 1 << 5
)

// encode appends the record's stored form to dst.
func (r *record) encode(dst []byte) []byte {
	flags := r.qos & 3
	if r.retain {
		flags |= flagRetain
	}
	if r.hasFormat {
		flags |= flagHasFormat
		if r.payloadFormat == 1 {
			flags |= flagFormat
		}
	}
	if r.expiry != 0 {
		flags |= flagExpiry
	}
	dst = append(dst, recordVersion, flags)
	dst = appendString(dst, r.topic)
	if r.expiry != 0 {
		dst = binary.AppendVarint(dst, r.expiry)
	}
	dst = appendString(dst, r.contentType)
	dst = appendString(dst, r.responseTopic)
	dst = appendBytes(dst, r.correlationData)
	dst = binary.AppendUvarint(dst, uint64(len(r.user)))
	for _, p := range r.user {
		dst = appendString(dst, p.key)
		dst = appendString(dst, p.value)
	}
	return appendBytes(dst, r.payload)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

var errCorrupt = errors.New("damaged queue record")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errCorrupt
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// decodeRecord parses a stored record. The result aliases v.
func decodeRecord(seq uint64, v []byte) (*record, error) {
	if len(v) < 2 || v[0] != recordVersion {
		return nil, fmt.Errorf("%w (seq %d): unknown format", errCorrupt, seq)
	}
	flags := v[1]
	if flags&^(3|flagRetain|flagHasFormat|flagFormat|flagExpiry) != 0 || flags&3 == 3 || flags&flagFormat != 0 && flags&flagHasFormat == 0 {
		return nil, fmt.Errorf("%w (seq %d): bad flags %#x", errCorrupt, seq, flags)
	}
	r := &record{seq: seq, qos: flags & 3, retain: flags&flagRetain != 0, hasFormat: flags&flagHasFormat != 0}
	if flags&flagFormat != 0 {
		r.payloadFormat = 1
	}
	d := decoder{b: v[2:]}
	r.topic = string(d.bytes())
	if flags&flagExpiry != 0 {
		if r.expiry = d.varint(); r.expiry == 0 {
			d.err = errCorrupt
		}
	}
	r.contentType = string(d.bytes())
	r.responseTopic = string(d.bytes())
	if cd := d.bytes(); len(cd) > 0 {
		r.correlationData = cd
	}
	n := d.uvarint()
	if n > uint64(len(d.b)) { // each property takes at least two bytes
		d.err = errCorrupt
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		k := string(d.bytes())
		r.user = append(r.user, userProp{k, string(d.bytes())})
	}
	r.payload = d.bytes()
	if d.err == nil && len(d.b) != 0 {
		d.err = errCorrupt
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w (seq %d)", d.err, seq)
	}
	return r, nil
}
