package forward

import (
	"github.com/skybridge-mq/skybridge/impl/fifo"
	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// SenderConfig configures one link's sending end.
type SenderConfig struct {
	Node        string // this node's id
	Peer        string // the receiving node's id
	Incarnation uint64 // this process's; grows with every start
	// Link numbers this Sender among the Senders this process made for
	// Peer: a runtime that abandons a link and makes a new Sender for the
	// same peer (the peer was held dead, then alive again in the same
	// incarnation) gives the new one a higher Link, so that the receiver
	// starts the new session's frames afresh. 0 is fine for the first.
	Link uint64
	// MaxMessages and MaxBytes bound what the link holds: messages waiting
	// for a frame and frames not yet acknowledged (record bytes).
	MaxMessages int
	MaxBytes    int
	// FrameBytes is the size at which a frame is sealed; a single larger
	// message travels alone, up to MaxFrame.
	FrameBytes int
	// MaxFrame is the largest frame (and so message) the link carries; the
	// receiver must take at least as much.
	MaxFrame int
}

// Defaults of SenderConfig and ReceiverConfig.
const (
	DefaultMaxMessages = 100_000
	DefaultMaxBytes    = 64 << 20
	DefaultFrameBytes  = 64 << 10
	DefaultMaxFrame    = 16 << 20
	DefaultWindow      = 64
)

func (c *SenderConfig) fill() {
	if c.MaxMessages <= 0 {
		c.MaxMessages = DefaultMaxMessages
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.FrameBytes <= 0 {
		c.FrameBytes = DefaultFrameBytes
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = DefaultMaxFrame
	}
	c.FrameBytes = min(c.FrameBytes, c.MaxFrame)
}

// SenderStats counts what a Sender did.
type SenderStats struct {
	Enqueued    uint64 // messages accepted
	Dropped     uint64 // QoS 0 messages dropped: queue full
	Refused     uint64 // QoS 1/2 messages refused: queue full (or too large to carry)
	Frames      uint64 // frames sealed
	Sent        uint64 // frames written, resends included
	Resent      uint64 // frames written again after a reconnection
	Acked       uint64 // frames acknowledged
	Connects    uint64 // handshakes completed
	PeerRestart uint64 // welcomes from a new receiver incarnation
	Queued      int    // messages held now
	QueuedBytes int    // record bytes held now
}

type linkState uint8

const (
	down linkState = iota
	handshaking
	up
)

// sealed is a frame waiting for its acknowledgement.
type sealed struct {
	seq    uint64
	buf    []byte // the whole frame, length prefix included
	msgs   int
	tokens int // its tokens, in order at the head of Sender.tokens
}

// Sender is one link's sending end (see the package contract).
type Sender struct {
	cfg   SenderConfig
	state linkState
	enc   encoder

	open        []byte // the frame being filled: a data header, then records
	openMsgs    int
	openTokens  int
	frames      fifo.Queue[sealed] // sealed, not acknowledged, ascending seq
	tokens      fifo.Queue[uint64] // of the QoS 1/2 messages held, in order
	unsent      int                // index in frames of the next frame to write
	nextSeq     uint64             // of the next frame sealed
	acked       uint64
	limit       uint64 // frames up to here may be written
	peerInc     uint64
	ctl         []byte // control frames to write first (hello)
	released    []uint64
	free        [][]byte // frame buffers for reuse, bounded by maxFree
	stats       SenderStats
	welcomed    bool   // a welcome came once: peerInc is known
	highestSent uint64 // to tell a resend from a first write
}

// maxFree bounds the frame buffers kept for reuse: the frames one
// cumulative acknowledgement frees at the default window, so a busy link
// allocates no buffer (at most 64 × FrameBytes idle per link).
const maxFree = DefaultWindow

// firstBuf is the capacity of a new frame buffer; it grows by appending,
// so a frame sealed with a few messages does not hold FrameBytes.
const firstBuf = 4 << 10

// NewSender returns the sending end of the link from cfg.Node to cfg.Peer.
func NewSender(cfg SenderConfig) *Sender {
	cfg.fill()
	s := &Sender{cfg: cfg, nextSeq: 1}
	s.open = s.newBuf(false)
	return s
}

func (s *Sender) newBuf(full bool) []byte {
	if n := len(s.free); n > 0 {
		b := s.free[n-1]
		s.free[n-1] = nil
		s.free = s.free[:n-1]
		return b[:dataHeader]
	}
	if full { // the last frame filled up: this one likely will too
		return make([]byte, dataHeader, s.cfg.FrameBytes+dataHeader)
	}
	return make([]byte, dataHeader, min(firstBuf, s.cfg.FrameBytes+dataHeader))
}

// FrameBytes returns the size at which frames are sealed.
func (s *Sender) FrameBytes() int { return s.cfg.FrameBytes }

// Enqueue adds a message for the peer. qos is the guarantee the link owes
// it (the message's own QoS, or less when the peer's subscribers want
// less); token is given back by TakeReleased once the peer acknowledged a
// QoS 1/2 message. m may be borrowed: its bytes are copied before Enqueue
// returns. A full queue drops a QoS 0 message and refuses a QoS 1/2 one,
// both with an *Error of code 0x97; a message larger than MaxFrame is
// refused with 0x95, one that cannot be encoded with 0x81.
func (s *Sender) Enqueue(tenant string, m *message.Message, qos packet.QoS, token uint64) error {
	return s.EnqueueFor(tenant, m, qos, token, &Everyone)
}

// EnqueueFor is Enqueue for the subscriptions of the audience given: the
// receiving node delivers to those only. An audience of neither plain
// subscriptions nor groups, or of more than MaxGroups groups, is refused
// with 0x82.
func (s *Sender) EnqueueFor(tenant string, m *message.Message, qos packet.QoS, token uint64, to *Audience) error {
	if (!to.Plain && len(to.Groups) == 0) || len(to.Groups) > MaxGroups {
		s.refuse(qos)
		return errorf(packet.ProtocolError, "audience of %d groups, plain %v", len(to.Groups), to.Plain)
	}
	size := s.enc.prepare(tenant, m, to)
	if dataHeader+size > s.cfg.MaxFrame || len(tenant) > 65535 {
		s.refuse(qos)
		return errorf(packet.PacketTooLarge, "message of %d bytes, link limit %d", size, s.cfg.MaxFrame-dataHeader)
	}
	if s.stats.Queued+1 > s.cfg.MaxMessages || s.stats.QueuedBytes+size > s.cfg.MaxBytes {
		s.refuse(qos)
		return errorf(packet.QuotaExceeded, "link to %s full: %d messages, %d bytes", s.cfg.Peer, s.stats.Queued, s.stats.QueuedBytes)
	}
	if s.openMsgs > 0 && len(s.open)+size > dataHeader+s.cfg.FrameBytes {
		s.seal(true)
	}
	if cap(s.open)-len(s.open) < size {
		// Doubling, but not past a full frame, so the buffer can be reused.
		n := max(len(s.open)+size, min(2*cap(s.open), dataHeader+s.cfg.FrameBytes))
		s.open = append(make([]byte, 0, n), s.open...)
	}
	var err error
	if s.open, err = s.enc.append(s.open, tenant, m, to); err != nil {
		s.refuse(qos)
		return err
	}
	s.openMsgs++
	if qos > packet.QoS0 {
		s.tokens.Push(token)
		s.openTokens++
	}
	s.stats.Enqueued++
	s.stats.Queued++
	s.stats.QueuedBytes += size
	return nil
}

func (s *Sender) refuse(qos packet.QoS) {
	if qos == packet.QoS0 {
		s.stats.Dropped++
	} else {
		s.stats.Refused++
	}
}

// seal closes the open frame and queues it for sending; full says it
// was sealed for want of room.
func (s *Sender) seal(full bool) {
	sealData(s.open, s.nextSeq, s.openMsgs)
	s.frames.Push(sealed{seq: s.nextSeq, buf: s.open, msgs: s.openMsgs, tokens: s.openTokens})
	s.nextSeq++
	s.stats.Frames++
	s.open, s.openMsgs, s.openTokens = s.newBuf(full), 0, 0
}

// Connected starts the handshake on a new connection.
func (s *Sender) Connected() {
	s.state = handshaking
	s.unsent = 0
	first := s.nextSeq
	if f := s.frames.Peek(); f != nil {
		first = f.seq
	}
	s.ctl = appendHello(s.ctl[:0], &Hello{Version: Version, From: s.cfg.Node, To: s.cfg.Peer,
		Incarnation: s.cfg.Incarnation, Link: s.cfg.Link, FirstUnacked: first})
}

// Disconnected records the loss of the connection: what it did not
// acknowledge is written again on the next one.
func (s *Sender) Disconnected() {
	s.state = down
	s.ctl = s.ctl[:0]
	s.unsent = 0
}

// Up reports whether the handshake of the current connection completed.
func (s *Sender) Up() bool { return s.state == up }

// Waiting reports whether frames written on the current connection await
// their acknowledgement (a runtime bounds that wait).
func (s *Sender) Waiting() bool { return s.state == up && s.unsent > 0 }

// Handle takes a frame from the receiver (the bytes after the length
// prefix). An error means the connection must be closed.
func (s *Sender) Handle(frame []byte) error {
	if s.state == down {
		return errorf(packet.ProtocolError, "frame while disconnected")
	}
	if len(frame) == 0 {
		return errorf(packet.MalformedPacket, "empty frame")
	}
	body := frame[1:]
	switch frame[0] {
	case frameWelcome:
		if s.state != handshaking {
			return errorf(packet.ProtocolError, "second welcome")
		}
		w, err := parseWelcome(body)
		if err != nil {
			return err
		}
		if w.Node != s.cfg.Peer {
			return errorf(packet.ProtocolError, "dialled node %q, reached %q", s.cfg.Peer, w.Node)
		}
		if w.MaxFrame < uint64(s.cfg.MaxFrame) {
			return errorf(packet.PacketTooLarge, "peer takes frames up to %d bytes, this link sends up to %d", w.MaxFrame, s.cfg.MaxFrame)
		}
		if s.welcomed && w.Incarnation != s.peerInc {
			s.stats.PeerRestart++
		}
		s.welcomed, s.peerInc = true, w.Incarnation
		if err := s.ack(w.Acked, w.Limit); err != nil {
			return err
		}
		s.limit = w.Limit // a restarted receiver may grant less than before
		s.state = up
		s.stats.Connects++
		return nil
	case frameAck:
		if s.state != up {
			return errorf(packet.ProtocolError, "ack before welcome")
		}
		acked, limit, err := parseAck(body)
		if err != nil {
			return err
		}
		return s.ack(acked, limit)
	case frameGoAway:
		return parseGoAway(body)
	}
	return errorf(packet.ProtocolError, "unexpected frame type %d from a receiver", frame[0])
}

// ack releases the frames up to acked and opens the window up to limit.
func (s *Sender) ack(acked, limit uint64) error {
	if acked >= s.nextSeq {
		return errorf(packet.ProtocolError, "ack of frame %d, last sealed %d", acked, s.nextSeq-1)
	}
	if acked < s.acked {
		// A receiver that restarted without its state acknowledges less:
		// what it has not got is still held and sent again.
		acked = s.acked
	}
	for f := s.frames.Peek(); f != nil && f.seq <= acked; f = s.frames.Peek() {
		if s.unsent > 0 {
			s.unsent--
		}
		for range f.tokens {
			s.released = append(s.released, s.tokens.Pop())
		}
		s.stats.Queued -= f.msgs
		s.stats.QueuedBytes -= len(f.buf) - dataHeader
		s.stats.Acked++
		if len(s.free) < maxFree && cap(f.buf) <= dataHeader+s.cfg.FrameBytes {
			s.free = append(s.free, f.buf)
		}
		s.frames.Pop()
	}
	s.acked = acked
	s.limit = max(s.limit, limit)
	return nil
}

// Output appends what is to be written on the connection to dst: whole
// frames, while dst stays under max bytes (at least one frame if any is
// due). It seals the open frame when the window allows it to go at once,
// so messages batch while the window is closed or the writer busy.
func (s *Sender) Output(dst []byte, max int) []byte {
	if s.state == down {
		return dst
	}
	if len(s.ctl) > 0 {
		dst = append(dst, s.ctl...)
		s.ctl = s.ctl[:0]
	}
	if s.state != up {
		return dst
	}
	for {
		if s.unsent == s.frames.Len() {
			if s.openMsgs == 0 || s.nextSeq > s.limit {
				return dst
			}
			s.seal(false)
		}
		f := s.frames.At(s.unsent)
		if f.seq > s.limit || len(dst) > 0 && len(dst)+len(f.buf) > max {
			return dst
		}
		dst = append(dst, f.buf...)
		s.unsent++
		s.stats.Sent++
		if f.seq <= s.highestSent {
			s.stats.Resent++
		} else {
			s.highestSent = f.seq
		}
	}
}

// TakeReleased appends to dst the tokens of the QoS 1/2 messages
// acknowledged since the last call, in the order they were enqueued.
func (s *Sender) TakeReleased(dst []uint64) []uint64 {
	dst = append(dst, s.released...)
	s.released = s.released[:0]
	return dst
}

// Abandon empties the link (the peer left the cluster for good; call it
// while disconnected) and
// appends the tokens of the QoS 1/2 messages it held, never acknowledged,
// to dst: the broker decides what their publishers are told.
func (s *Sender) Abandon(dst []uint64) []uint64 {
	for s.tokens.Len() > 0 {
		dst = append(dst, s.tokens.Pop())
	}
	for s.frames.Len() > 0 {
		s.frames.Pop()
	}
	s.open, s.openMsgs, s.openTokens, s.unsent = s.open[:dataHeader], 0, 0, 0
	s.acked = s.nextSeq - 1
	s.stats.Queued, s.stats.QueuedBytes = 0, 0
	return dst
}

// Stats returns the counters.
func (s *Sender) Stats() SenderStats { return s.stats }
