package raftkv

import (
	"encoding/binary"
	"errors"
	"io"
)

// Frames on a byte stream (between nodes, and between clients and nodes):
// a 4-byte big-endian length, then that many bytes: a kind byte and the
// body. The runtimes (kvserver, kvclient) and the simulator share them.

// Frame kinds.
const (
	FrameNode      = 1 // node to node: a Message (EncodeMessage)
	FrameRequest   = 2 // client to node: id (8 bytes), a Request (EncodeRequest)
	FrameResponse  = 3 // node to client: id (8 bytes), a Response (EncodeResponse)
	FrameAdmin     = 4 // client to node: id (8 bytes), the node to declare dead (8 bytes)
	FrameSnapChunk = 5 // node to node: a chunk of the snapshot after a MsgSnap (EncodeChunk)
	FrameSnapEnd   = 6 // node to node: the snapshot's data is complete
	FrameWatch     = 7 // client to node: id (8 bytes), the key prefix to watch
	FrameUnwatch   = 8 // client to node: id (8 bytes)
	FrameWatchEvt  = 9 // node to client: id (8 bytes), a WatchEvent (EncodeWatchEvent)
)

// MaxFrame bounds a frame (a snapshot travels in chunks well below it).
const MaxFrame = 64 << 20

// ErrFrameTooLarge reports a frame longer than MaxFrame.
var ErrFrameTooLarge = errors.New("raftkv: frame too large")

// AppendFrame appends a frame of kind with body to dst.
func AppendFrame(dst []byte, kind byte, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(1+len(body)))
	dst = append(dst, kind)
	return append(dst, body...)
}

// AppendIDFrame appends a frame whose body starts with an 8-byte id.
func AppendIDFrame(dst []byte, kind byte, id uint64, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(1+8+len(body)))
	dst = append(dst, kind)
	dst = binary.BigEndian.AppendUint64(dst, id)
	return append(dst, body...)
}

// SplitID splits an id frame's body.
func SplitID(body []byte) (uint64, []byte, bool) {
	if len(body) < 8 {
		return 0, nil, false
	}
	return binary.BigEndian.Uint64(body), body[8:], true
}

// ReadFrame reads one frame into buf (grown as needed) and returns its
// kind and body (aliasing buf).
func ReadFrame(r io.Reader, buf []byte) (byte, []byte, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, buf, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 1 || n > MaxFrame {
		return 0, nil, buf, ErrFrameTooLarge
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, buf, err
	}
	return buf[0], buf[1:], buf, nil
}

// Framer splits a byte stream fed in pieces into frames.
type Framer struct{ buf []byte }

// Feed adds b and calls each for every complete frame; it reports false
// on a frame that cannot be valid (the stream must be closed).
func (f *Framer) Feed(b []byte, each func(kind byte, body []byte)) bool {
	f.buf = append(f.buf, b...)
	for len(f.buf) >= 4 {
		k := binary.BigEndian.Uint32(f.buf)
		if k < 1 || k > MaxFrame {
			return false
		}
		if len(f.buf) < 4+int(k) {
			break
		}
		each(f.buf[4], f.buf[5:4+k])
		f.buf = f.buf[4+k:]
	}
	if len(f.buf) == 0 {
		f.buf = nil
	}
	return true
}
