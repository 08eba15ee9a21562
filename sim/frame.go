package sim

import "github.com/skybridge-mq/skybridge/impl/packet"

// frameStatus says what the front of a byte buffer holds.
type frameStatus uint8

const (
	frameShort frameStatus = iota // not enough bytes yet
	frameWhole                    // a whole packet
	frameBad                      // a header the reader will refuse (hand it over to get the error)
)

// nextFrame looks at the packet at the front of b: its fixed header and
// total size. maxSize is the reader's limit (0: the protocol's).
func nextFrame(b []byte, maxSize int) (h packet.FixedHeader, hdr, total int, st frameStatus) {
	if len(b) < 2 {
		return h, 0, 0, frameShort
	}
	h.Type, h.Flags = packet.Type(b[0]>>4), b[0]&0x0f
	if h.Type == 0 {
		return h, 1, 1, frameBad
	}
	var v int
	i := 1
	for {
		if i == 5 {
			return h, 5, 5, frameBad // remaining length longer than four bytes
		}
		if i >= len(b) {
			return h, 0, 0, frameShort
		}
		d := b[i]
		v |= int(d&0x7f) << (7 * (i - 1))
		i++
		if d&0x80 == 0 {
			if i > 2 && d == 0 {
				return h, i, i, frameBad // not minimally encoded
			}
			break
		}
	}
	h.Remaining = v
	if maxSize <= 0 {
		maxSize = packet.MaxPacketSize
	}
	if i+v > maxSize {
		return h, i, i, frameBad
	}
	if len(b) < i+v {
		return h, i, i + v, frameShort
	}
	return h, i, i + v, frameWhole
}

// completePrefix returns how many bytes at the front of b form whole
// packets, plus a trailing header the reader will refuse, if any.
func completePrefix(b []byte, maxSize int) int {
	off := 0
	for {
		_, _, total, st := nextFrame(b[off:], maxSize)
		switch st {
		case frameShort:
			return off
		case frameBad:
			return off + total
		}
		off += total
	}
}
