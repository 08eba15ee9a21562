package forward

import (
	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// ReceiverConfig configures one link's receiving end.
type ReceiverConfig struct {
	Node        string // this node's id
	Incarnation uint64 // this process's; grows with every start
	// Window is how many frames the sender may have beyond the last
	// acknowledged one: what this end buffers before it has made them
	// durable.
	Window int
	// MaxFrame is the largest frame taken (0x95 beyond it).
	MaxFrame int
	// WaitDurable holds acknowledgements until Durable covers them;
	// without it a delivered message counts as durable.
	WaitDurable bool
}

func (c *ReceiverConfig) fill() {
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = DefaultMaxFrame
	}
}

// ReceiverState is what a receiving node persists with the messages it
// made durable, to recognise a resend after its own restart.
type ReceiverState struct {
	PeerIncarnation uint64 // the sender's, 0 when none is known
	PeerLink        uint64 // the sender's link number in that incarnation
	Durable         uint64 // that sender's frames up to here are durable
}

// ReceiverStats counts what a Receiver did.
type ReceiverStats struct {
	Frames      uint64 // data frames taken
	Messages    uint64 // messages delivered
	Duplicates  uint64 // messages received again and not delivered
	Acks        uint64 // acknowledgements written
	Connects    uint64 // handshakes completed
	PeerRestart uint64 // hellos from a new sender incarnation
	NewLinks    uint64 // hellos of a new link (higher link number) in the same incarnation
	Gaps        uint64 // frames a sender had dropped (Abandon, or this node lost its state)
}

// Delivery is one message handed to the receiving node.
type Delivery struct {
	Incarnation uint64 // the sender's
	Seq         uint64 // the frame's, for Durable
	Tenant      []byte
	Message     *message.Message // borrows the frame: valid during the call
	// The subscriptions it is for (Audience): plain ones when Plain, and
	// one member of each group (names borrowed like Message).
	Plain  bool
	Groups [][]byte
}

// Receiver is one link's receiving end (see the package contract).
type Receiver struct {
	cfg   ReceiverConfig
	state linkState
	dec   decoder

	peer      string
	peerInc   uint64
	peerLink  uint64
	delivered uint64 // frames delivered whole
	partial   int    // messages of frame delivered+1 already delivered
	durable   uint64
	acked     uint64 // last acknowledged on this connection
	limit     uint64 // last granted on this connection
	out       []byte
	dv        Delivery // handed to deliver; a field so that it does not escape per frame
	stats     ReceiverStats
}

// NewReceiver returns a receiving end, with the state the node persisted
// (zero when none).
func NewReceiver(cfg ReceiverConfig, st ReceiverState) *Receiver {
	cfg.fill()
	return &Receiver{cfg: cfg, peerInc: st.PeerIncarnation, peerLink: st.PeerLink, delivered: st.Durable, durable: st.Durable}
}

// State returns what to persist (see ReceiverState).
func (r *Receiver) State() ReceiverState {
	return ReceiverState{PeerIncarnation: r.peerInc, PeerLink: r.peerLink, Durable: r.durable}
}

// Peer returns the sending node's id, once a hello came.
func (r *Receiver) Peer() string { return r.peer }

// Connected expects a hello on a new connection.
func (r *Receiver) Connected() {
	r.state = handshaking
	r.out = r.out[:0]
}

// Disconnected records the loss of the connection.
func (r *Receiver) Disconnected() {
	r.state = down
	r.out = r.out[:0]
}

// Handle takes a frame from the sender (the bytes after the length
// prefix) and calls deliver for each message not delivered before, in
// order. An error means the connection must be closed; Output then holds a
// goaway that tells the sender why, when the protocol allows one.
func (r *Receiver) Handle(frame []byte, deliver func(*Delivery)) error {
	if err := r.handle(frame, deliver); err != nil {
		r.out = AppendGoAway(r.out, err)
		return err
	}
	return nil
}

func (r *Receiver) handle(frame []byte, deliver func(*Delivery)) *Error {
	if len(frame) == 0 {
		return errorf(packet.MalformedPacket, "empty frame")
	}
	if len(frame) > r.cfg.MaxFrame {
		return errorf(packet.PacketTooLarge, "frame of %d bytes, limit %d", len(frame), r.cfg.MaxFrame)
	}
	switch r.state {
	case down:
		return errorf(packet.ProtocolError, "frame while disconnected")
	case handshaking:
		h, err := ParseHello(frame)
		if err != nil {
			return err.(*Error)
		}
		return r.hello(&h)
	}
	if frame[0] == frameGoAway {
		return parseGoAway(frame[1:])
	}
	if frame[0] != frameData {
		return errorf(packet.ProtocolError, "unexpected frame type %d from a sender", frame[0])
	}
	d, err := parseData(frame[1:])
	if err != nil {
		return err.(*Error)
	}
	switch {
	case d.Seq > r.delivered+1:
		return errorf(packet.ProtocolError, "frame %d after frame %d", d.Seq, r.delivered)
	case d.Seq > r.limit:
		return errorf(packet.ReceiveMaximumExceeded, "frame %d beyond the window (up to %d)", d.Seq, r.limit)
	case d.Seq <= r.delivered:
		r.stats.Duplicates += uint64(d.Count)
		return nil
	}
	r.stats.Frames++
	dv := &r.dv
	*dv = Delivery{Incarnation: r.peerInc, Seq: d.Seq}
	rest := d.Records
	for i := range int(d.Count) {
		tenant, m, next, err := r.dec.next(rest)
		if err != nil {
			return err.(*Error)
		}
		rest = next
		if i < r.partial { // delivered before the connection broke
			r.stats.Duplicates++
			continue
		}
		dv.Tenant, dv.Message, dv.Plain, dv.Groups = tenant, m, r.dec.plain, r.dec.groups
		deliver(dv)
		r.partial = i + 1
		r.stats.Messages++
	}
	if len(rest) != 0 {
		return errorf(packet.MalformedPacket, "frame %d: %d bytes after its %d messages", d.Seq, len(rest), d.Count)
	}
	r.delivered, r.partial = d.Seq, 0
	if !r.cfg.WaitDurable {
		r.durable = d.Seq
	}
	return nil
}

// hello starts a session: the sender's incarnation and link number decide
// whether what this end delivered before still counts. The same pair is a
// reconnection of the same link session: frames the sender writes again
// are recognised by their sequence numbers. A higher incarnation (the
// sender restarted) or a higher link in the same incarnation (the sender's
// node abandoned the old link, e.g. while it held this node dead, and made
// a new one, whose frames start again at 1) starts afresh: what the old
// session did not get acknowledged was failed to its publishers by the
// sending node, never acknowledged. A lower pair is stale and refused.
func (r *Receiver) hello(h *Hello) *Error {
	if h.To != r.cfg.Node {
		return errorf(packet.ProtocolError, "hello for node %q reached %q", h.To, r.cfg.Node)
	}
	if r.peer != "" && h.From != r.peer {
		return errorf(packet.ProtocolError, "link of %q used by %q", r.peer, h.From)
	}
	switch {
	case h.Incarnation < r.peerInc:
		return errorf(packet.ProtocolError, "sender incarnation %d older than %d", h.Incarnation, r.peerInc)
	case h.Incarnation > r.peerInc:
		if r.peerInc != 0 {
			r.stats.PeerRestart++
		}
		r.peerInc, r.peerLink = h.Incarnation, h.Link
		r.delivered, r.partial, r.durable = h.FirstUnacked-1, 0, h.FirstUnacked-1
	case h.Link < r.peerLink:
		return errorf(packet.ProtocolError, "sender link %d older than %d (incarnation %d)", h.Link, r.peerLink, h.Incarnation)
	case h.Link > r.peerLink:
		r.stats.NewLinks++
		r.peerLink = h.Link
		r.delivered, r.partial, r.durable = h.FirstUnacked-1, 0, h.FirstUnacked-1
	case h.FirstUnacked > r.durable+1:
		// The sender dropped frames this end never made durable.
		r.stats.Gaps += h.FirstUnacked - 1 - r.durable
		r.delivered, r.partial, r.durable = h.FirstUnacked-1, 0, h.FirstUnacked-1
	}
	r.peer = h.From
	r.state = up
	r.stats.Connects++
	r.acked, r.limit = r.ackable(), r.ackable()+uint64(r.cfg.Window)
	r.out = appendWelcome(r.out, &welcome{Version: Version, Node: r.cfg.Node, Incarnation: r.cfg.Incarnation,
		Acked: r.acked, Limit: r.limit, MaxFrame: uint64(r.cfg.MaxFrame)})
	return nil
}

func (r *Receiver) ackable() uint64 { return min(r.durable, r.delivered) }

// Durable reports that the messages of the sender's incarnation inc up to
// frame seq are durable on this node (only with WaitDurable; a report for
// another incarnation is stale and ignored).
func (r *Receiver) Durable(inc, seq uint64) {
	if inc == r.peerInc && seq > r.durable {
		r.durable = min(seq, r.delivered)
	}
}

// Output appends what is to be written on the connection to dst: the
// welcome, an acknowledgement when more is acknowledgeable, a goaway.
func (r *Receiver) Output(dst []byte) []byte {
	if r.state == up {
		if a := r.ackable(); a > r.acked {
			r.acked, r.limit = a, a+uint64(r.cfg.Window)
			r.out = appendAck(r.out, r.acked, r.limit)
			r.stats.Acks++
		}
	}
	dst = append(dst, r.out...)
	r.out = r.out[:0]
	return dst
}

// Stats returns the counters.
func (r *Receiver) Stats() ReceiverStats { return r.stats }
