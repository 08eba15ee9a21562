package bridge

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho/log"
	"github.com/eclipse/paho.golang/paho/session"
)

// session5 is the paho session state of one MQTT 5.0 connection.
//
// paho's default state (session/state) keeps unacknowledged PUBLISHes and
// sends them again on the next connection, and a blocking Publish learns
// nothing when the connection drops until its timeout. The bridge already
// has a durable queue that is its real session: it sends again from the
// queue after a reconnection, in order. So this state lives exactly as
// long as one connection: it allocates packet identifiers, reports each
// PUBACK to the forwarder (with the queue sequence number the forwarder
// attached to the publish's context), reports the connection's end once,
// and writes the acknowledgements of received messages when the bridge
// asks (manual acknowledgement: after the message is durably queued).
//
// Received QoS 2 messages (never expected: the bridge subscribes at QoS 1
// at most) are handled minimally: PUBREC on Ack, PUBCOMP on PUBREL.
type session5 struct {
	mu      sync.Mutex
	conn    io.Writer // nil before CONNACK and after the connection ended
	ended   bool
	lastID  uint16
	pending map[uint16]pendingPacket
	qos2    map[uint16]bool // received QoS 2 ids whose PUBREC was sent
	// received and acked count QoS 1/2 PUBLISHes received and
	// acknowledged on this connection, for a clean close to wait for.
	received, acked uint64

	// onAck is told the outcome of a forwarded QoS 1 message: the
	// reason code of its PUBACK.
	onAck func(seq uint64, code byte)
	// onEnd is called once when the connection ends.
	onEnd func()
}

type pendingPacket struct {
	typ  byte
	seq  uint64 // PUBLISH: the queue sequence number
	resp chan<- packets.ControlPacket
}

// seqKey carries a forwarded message's queue sequence number from
// PublishWithOptions to AddToSession through the context.
type seqKey struct{}

func withSeq(ctx context.Context, seq uint64) context.Context {
	return context.WithValue(ctx, seqKey{}, seq)
}

var errNoSeq = errors.New("bridge: publish without a queue sequence number")

func newSession5(onAck func(seq uint64, code byte), onEnd func()) *session5 {
	return &session5{pending: map[uint16]pendingPacket{}, qos2: map[uint16]bool{}, onAck: onAck, onEnd: onEnd}
}

// ConAckReceived implements session.SessionManager.
func (s *session5) ConAckReceived(conn io.Writer, _ *packets.Connect, _ *packets.Connack) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return session.ErrNoConnection
	}
	s.conn = conn
	return nil
}

// ConnectionLost implements session.SessionManager.
func (s *session5) ConnectionLost(*packets.Disconnect) error {
	s.end()
	return nil
}

// end forgets everything in flight; waiting Subscribe calls return at
// once, the forwarder is told once.
func (s *session5) end() {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.conn = nil
	pending := s.pending
	s.pending = map[uint16]pendingPacket{}
	s.mu.Unlock()
	for _, p := range pending {
		select {
		case p.resp <- packets.ControlPacket{}: // "shutting down" for paho
		default:
		}
	}
	if s.onEnd != nil {
		s.onEnd()
	}
}

// AddToSession implements session.SessionManager.
func (s *session5) AddToSession(ctx context.Context, p session.Packet, resp chan<- packets.ControlPacket) error {
	var seq uint64
	if p.Type() == packets.PUBLISH {
		v, ok := ctx.Value(seqKey{}).(uint64)
		if !ok {
			return errNoSeq
		}
		seq = v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return session.ErrNoConnection
	}
	if len(s.pending) >= 65535 {
		return session.ErrPacketIdentifiersExhausted
	}
	id := s.lastID
	for {
		id++
		if id == 0 {
			id = 1
		}
		if _, used := s.pending[id]; !used {
			break
		}
	}
	s.lastID = id
	s.pending[id] = pendingPacket{typ: p.Type(), seq: seq, resp: resp}
	p.SetIdentifier(id)
	return nil
}

// PacketReceived implements session.SessionManager.
func (s *session5) PacketReceived(recv *packets.ControlPacket, pubChan chan<- *packets.Publish) error {
	switch rp := recv.Content.(type) {
	case *packets.Puback:
		if p, ok := s.take(rp.PacketID, packets.PUBLISH); ok {
			if s.onAck != nil {
				s.onAck(p.seq, rp.ReasonCode)
			}
			select {
			case p.resp <- *recv:
			default:
			}
		}
	case *packets.Pubrec:
		// The bridge never publishes at QoS 2; a PUBREC here is a
		// server's error reply or a protocol violation. Treat it as the
		// end of that publish.
		if p, ok := s.take(rp.PacketID, packets.PUBLISH); ok && s.onAck != nil {
			code := rp.ReasonCode
			if code < 0x80 {
				code = 0x80
			}
			s.onAck(p.seq, code)
		}
	case *packets.Suback:
		s.respond(rp.PacketID, packets.SUBSCRIBE, recv)
	case *packets.Unsuback:
		s.respond(rp.PacketID, packets.UNSUBSCRIBE, recv)
	case *packets.Publish:
		if rp.QoS == 2 {
			s.mu.Lock()
			dup := s.qos2[rp.PacketID]
			conn := s.conn
			s.mu.Unlock()
			if dup { // already handed over; repeat the PUBREC
				if conn != nil {
					_, err := (&packets.Pubrec{PacketID: rp.PacketID, Properties: &packets.Properties{}}).WriteTo(conn)
					return err
				}
				return nil
			}
		}
		s.mu.Lock()
		s.received++
		s.mu.Unlock()
		pubChan <- rp
	case *packets.Pubrel:
		s.mu.Lock()
		delete(s.qos2, rp.PacketID)
		conn := s.conn
		s.mu.Unlock()
		if conn != nil {
			_, err := (&packets.Pubcomp{PacketID: rp.PacketID, Properties: &packets.Properties{}}).WriteTo(conn)
			return err
		}
	case *packets.Pubcomp:
		// Never expected (no QoS 2 publishes).
	}
	return nil
}

func (s *session5) take(id uint16, typ byte) (pendingPacket, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pending[id]
	if !ok || p.typ != typ {
		return pendingPacket{}, false
	}
	delete(s.pending, id)
	return p, true
}

func (s *session5) respond(id uint16, typ byte, recv *packets.ControlPacket) {
	if p, ok := s.take(id, typ); ok {
		select {
		case p.resp <- *recv:
		default:
		}
	}
}

// Ack implements session.SessionManager: paho's acknowledgement tracker
// calls it, in the order the messages were received, once the bridge
// acknowledged them (Client.Ack).
func (s *session5) Ack(pb *packets.Publish) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil // the server sends the message again on the next connection
	}
	s.acked++
	switch pb.QoS {
	case 1:
		_, err := (&packets.Puback{PacketID: pb.PacketID, Properties: &packets.Properties{}}).WriteTo(s.conn)
		return err
	case 2:
		s.qos2[pb.PacketID] = true
		_, err := (&packets.Pubrec{PacketID: pb.PacketID, Properties: &packets.Properties{}}).WriteTo(s.conn)
		return err
	}
	return nil
}

// unacknowledged returns how many received messages still wait for their
// acknowledgement.
func (s *session5) unacknowledged() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received - s.acked
}

// Close implements session.SessionManager.
func (s *session5) Close() error {
	s.end()
	return nil
}

// SetErrorLogger implements session.SessionManager.
func (s *session5) SetErrorLogger(log.Logger) {}

// SetDebugLogger implements session.SessionManager.
func (s *session5) SetDebugLogger(log.Logger) {}
