package raftkv

import (
	"encoding/binary"
	"errors"
)

// The binary forms of everything raftkv writes to disk or sends: uvarints
// and length-prefixed byte strings, appended to a caller's buffer. A decoder
// never panics on bad input: the first malformed field sets err and every
// later read returns zero values.

// errCorrupt reports bytes that do not decode.
var errCorrupt = errors.New("raftkv: malformed encoding")

type enc struct{ b []byte }

func (e *enc) u64(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) i64(v int64)  { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) byte1(v byte) { e.b = append(e.b, v) }
func (e *enc) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}
func (e *enc) bytes(v []byte) { e.u64(uint64(len(v))); e.b = append(e.b, v...) }

// optBytes distinguishes nil (absent) from empty.
func (e *enc) optBytes(v []byte) {
	if v == nil {
		e.byte1(0)
		return
	}
	e.byte1(1)
	e.bytes(v)
}

type dec struct {
	b   []byte
	err error
	// alias: bytes returns slices of b itself (capacity clipped) rather
	// than copies; only for a buffer that is never modified and values
	// that are copied before they are kept (a committed entry's writes,
	// which go into a Pebble batch, which copies them).
	alias bool
}

func (d *dec) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

func (d *dec) u64() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) i64() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) byte1() byte {
	if d.err != nil || len(d.b) == 0 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) bool() bool { return d.byte1() != 0 }

// bytes returns a copy (decoded values outlive the buffer they came from),
// unless alias is set.
func (d *dec) bytes() []byte {
	n := d.u64()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	if d.alias {
		v := d.b[:n:n]
		d.b = d.b[n:]
		return v
	}
	v := make([]byte, n)
	copy(v, d.b[:n])
	d.b = d.b[n:]
	return v
}

func (d *dec) optBytes() []byte {
	if d.byte1() == 0 {
		return nil
	}
	return d.bytes()
}

// count reads a length that must be plausible for the bytes left (each
// element takes at least one byte), so a hostile count cannot make the
// decoder allocate without bound.
func (d *dec) count() int {
	n := d.u64()
	if n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *dec) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = errCorrupt
	}
	return d.err
}
