// Package transport is the production runtime of impl/forward: the links
// between broker nodes on TCP (TLS optional). A Peer is the sending end of
// the link to one node: it dials that node, reconnects with backoff, and
// drives a forward.Sender. A Listener takes the links of every node that
// sends to this one and drives a forward.Receiver per sending node, which
// outlives its connections so that deduplication survives a reconnection.
//
// Goroutines: a Peer has one goroutine that dials and then writes, and one
// reader per connection; a Listener has one accept loop and, per
// connection, one reader and one writer. Nothing starts a goroutine per
// message and no channel carries messages: the cores' queues are the
// bounded buffers, and a wake channel of capacity one tells a writer that
// its core has output. Writes go through a bufio.Writer flushed when the
// core has nothing more to say.
package transport

import (
	"bufio"
	"io"
	"log/slog"
	"time"

	"github.com/skybridge-mq/skybridge/impl/forward"
)

// Defaults of the timeouts.
const (
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultMinBackoff       = 50 * time.Millisecond
	DefaultMaxBackoff       = 2 * time.Second
)

// Common is what both ends of a link are configured with.
type Common struct {
	HandshakeTimeout time.Duration // for the TLS handshake and the hello or welcome
	WriteTimeout     time.Duration // a write that takes longer breaks the connection
	Logger           *slog.Logger
}

func (c *Common) fill() {
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// bufSize is the size of the read and write buffers of a connection: a
// frame of forward.DefaultFrameBytes fits, so reading one copies nothing.
const bufSize = forward.DefaultFrameBytes + 4<<10

// readFrame reads one frame and returns the bytes after its length
// prefix. They alias r's buffer (or *buf for a frame larger than it) and
// are valid until the next read.
func readFrame(r *bufio.Reader, buf *[]byte, max int) ([]byte, error) {
	hdr, err := r.Peek(forward.LenSize)
	if err != nil {
		return nil, err
	}
	n, err := forward.ReadLen(hdr, max)
	if err != nil {
		return nil, err
	}
	r.Discard(forward.LenSize)
	if n <= r.Size() {
		b, err := r.Peek(n)
		if err != nil {
			return nil, unexpected(err)
		}
		r.Discard(n)
		return b, nil
	}
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	b := (*buf)[:n]
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, unexpected(err)
	}
	return b, nil
}

// unexpected turns an end of stream inside a frame into an error.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// wake tells a writer it has output; it never blocks.
func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// deadline returns the instant d from now, for a socket deadline.
func deadline(d time.Duration) time.Time { return time.Now().Add(d) }
