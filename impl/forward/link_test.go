package forward

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// link joins a Sender and a Receiver in memory; the test decides when
// bytes move and when the connection breaks.
type link struct {
	t        *testing.T
	s        *Sender
	r        *Receiver
	scfg     SenderConfig
	rcfg     ReceiverConfig
	got      []string // payloads delivered, in order
	released []uint64
	errs     []string // errors from Handle, either side
	seqs     map[string]uint64
}

func newLink(t *testing.T, scfg SenderConfig, rcfg ReceiverConfig) *link {
	scfg.Node, scfg.Peer, rcfg.Node = "a", "b", "b"
	if scfg.Incarnation == 0 {
		scfg.Incarnation = 1
	}
	if rcfg.Incarnation == 0 {
		rcfg.Incarnation = 1
	}
	return &link{t: t, s: NewSender(scfg), r: NewReceiver(rcfg, ReceiverState{}), scfg: scfg, rcfg: rcfg, seqs: map[string]uint64{}}
}

func testMsg(payload string, qos packet.QoS) *message.Message {
	return &message.Message{Topic: []byte("t/1"), Payload: []byte(payload), QoS: qos}
}

// enqueue enqueues messages p1..pn (named from first) and returns the
// reason codes of the refusals, 0 for accepted.
func (l *link) enqueue(first, n int, qos packet.QoS) []packet.ReasonCode {
	var codes []packet.ReasonCode
	for i := first; i < first+n; i++ {
		err := l.s.Enqueue("ten", testMsg(fmt.Sprintf("p%d", i), qos), qos, uint64(i))
		var e *Error
		switch {
		case err == nil:
			codes = append(codes, 0)
		case errors.As(err, &e):
			codes = append(codes, e.Code)
		default:
			l.t.Fatalf("enqueue: %v", err)
		}
	}
	return codes
}

func (l *link) connect() {
	l.s.Connected()
	l.r.Connected()
}

func (l *link) cut() {
	l.s.Disconnected()
	l.r.Disconnected()
}

// frames splits a byte stream into frames (the bytes after each prefix).
func frames(t testing.TB, b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n, err := ReadLen(b, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b[LenSize:LenSize+n])
		b = b[LenSize+n:]
	}
	return out
}

// toReceiver moves what the sender has to write; it reports whether
// anything moved.
func (l *link) toReceiver() bool {
	b := l.s.Output(nil, 1<<20)
	for _, f := range frames(l.t, b) {
		if err := l.r.Handle(f, func(d *Delivery) {
			l.got = append(l.got, string(d.Message.Payload))
			l.seqs[string(d.Message.Payload)] = d.Seq
		}); err != nil {
			l.errs = append(l.errs, "receiver: "+err.Error())
		}
	}
	return len(b) > 0
}

func (l *link) toSender() bool {
	b := l.r.Output(nil)
	for _, f := range frames(l.t, b) {
		if err := l.s.Handle(f); err != nil {
			l.errs = append(l.errs, "sender: "+err.Error())
		}
	}
	l.released = l.s.TakeReleased(l.released)
	return len(b) > 0
}

// pump moves bytes both ways until neither side has anything to say.
func (l *link) pump() {
	for i := 0; ; i++ {
		if i > 1000 {
			l.t.Fatal("link does not settle")
		}
		a := l.toReceiver()
		b := l.toSender()
		if !a && !b {
			return
		}
	}
}

func names(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("p%d", i))
	}
	return out
}

func tokens(from, to int) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, uint64(i))
	}
	return out
}

// outcome is what a case checks.
type outcome struct {
	Got      []string
	Released []uint64
	Errs     []string
	Sender   SenderStats
	Receiver ReceiverStats
}

func TestLink(t *testing.T) {
	t.Parallel()
	oneMsgFrames := SenderConfig{FrameBytes: 1} // every frame holds one message
	cases := []struct {
		name string
		scfg SenderConfig
		rcfg ReceiverConfig
		run  func(l *link) any // returns extra observations, compared too
		want outcome
		also any
	}{{
		name: "batches into one frame, acks release tokens in order",
		run: func(l *link) any {
			l.enqueue(1, 3, packet.QoS1)
			l.enqueue(4, 2, packet.QoS0)
			l.enqueue(6, 1, packet.QoS2)
			l.connect()
			l.pump()
			return nil
		},
		want: outcome{Got: names(1, 6), Released: []uint64{1, 2, 3, 6},
			Sender:   SenderStats{Enqueued: 6, Frames: 1, Sent: 1, Acked: 1, Connects: 1},
			Receiver: ReceiverStats{Frames: 1, Messages: 6, Acks: 1, Connects: 1}},
	}, {
		name: "window of two frames; acks wait for durability",
		scfg: oneMsgFrames,
		rcfg: ReceiverConfig{Window: 2, WaitDurable: true},
		run: func(l *link) any {
			l.enqueue(1, 5, packet.QoS1)
			l.connect()
			l.pump()
			step1 := []any{l.got, l.released}
			l.r.Durable(1, 1)
			l.pump()
			step2 := []any{l.got, l.released}
			l.r.Durable(1, 2)
			l.r.Durable(7, 5) // for another incarnation: stale, ignored
			l.pump()
			step3 := []any{l.got, l.released}
			l.r.Durable(1, 5) // only 4 delivered: covers 4
			l.pump()
			l.r.Durable(1, 5)
			l.pump()
			return [][]any{step1, step2, step3}
		},
		also: [][]any{
			{names(1, 2), []uint64(nil)},
			{names(1, 3), tokens(1, 1)},
			{names(1, 4), tokens(1, 2)},
		},
		want: outcome{Got: names(1, 5), Released: tokens(1, 5),
			Sender:   SenderStats{Enqueued: 5, Frames: 5, Sent: 5, Acked: 5, Connects: 1},
			Receiver: ReceiverStats{Frames: 5, Messages: 5, Acks: 4, Connects: 1}},
	}, {
		name: "count bound: QoS 0 dropped, QoS 1/2 refused, room again after acks",
		scfg: SenderConfig{MaxMessages: 3},
		run: func(l *link) any {
			codes := l.enqueue(1, 3, packet.QoS1)
			codes = append(codes, l.enqueue(4, 1, packet.QoS0)...)
			codes = append(codes, l.enqueue(5, 1, packet.QoS2)...)
			l.connect()
			l.pump()
			codes = append(codes, l.enqueue(6, 1, packet.QoS1)...)
			l.pump()
			return codes
		},
		also: []packet.ReasonCode{0, 0, 0, packet.QuotaExceeded, packet.QuotaExceeded, 0},
		want: outcome{Got: []string{"p1", "p2", "p3", "p6"}, Released: []uint64{1, 2, 3, 6},
			Sender:   SenderStats{Enqueued: 4, Dropped: 1, Refused: 1, Frames: 2, Sent: 2, Acked: 2, Connects: 1},
			Receiver: ReceiverStats{Frames: 2, Messages: 4, Acks: 2, Connects: 1}},
	}, {
		name: "byte bound counts unacknowledged frames",
		scfg: SenderConfig{MaxBytes: 3 * recordSize(1)},
		run: func(l *link) any {
			codes := l.enqueue(1, 4, packet.QoS1)
			l.connect()
			l.toReceiver() // sent, not acknowledged: still held
			codes = append(codes, l.enqueue(5, 1, packet.QoS0)...)
			st := l.s.Stats()
			l.pump()
			codes = append(codes, l.enqueue(6, 1, packet.QoS1)...)
			l.pump()
			return []any{codes, st.Queued, st.QueuedBytes}
		},
		also: []any{[]packet.ReasonCode{0, 0, 0, packet.QuotaExceeded, packet.QuotaExceeded, 0}, 3, 3 * recordSize(1)},
		want: outcome{Got: []string{"p1", "p2", "p3", "p6"}, Released: []uint64{1, 2, 3, 6},
			Sender:   SenderStats{Enqueued: 4, Dropped: 1, Refused: 1, Frames: 2, Sent: 2, Acked: 2, Connects: 1},
			Receiver: ReceiverStats{Frames: 2, Messages: 4, Acks: 2, Connects: 1}},
	}, {
		name: "too large for the link: refused with 0x95",
		scfg: SenderConfig{MaxFrame: 64},
		run: func(l *link) any {
			err := l.s.Enqueue("ten", testMsg(string(make([]byte, 100)), packet.QoS1), packet.QoS1, 1)
			var e *Error
			errors.As(err, &e)
			return e.Code
		},
		also: packet.PacketTooLarge,
		want: outcome{Sender: SenderStats{Refused: 1}},
	}, {
		name: "reconnection: the welcome acknowledges what arrived, nothing is sent twice",
		scfg: oneMsgFrames,
		run: func(l *link) any {
			l.enqueue(1, 4, packet.QoS1)
			l.connect()
			l.toReceiver() // hello
			l.toSender()   // welcome
			l.toReceiver() // four frames delivered; their ack is lost with the connection
			l.cut()
			l.enqueue(5, 1, packet.QoS1)
			l.connect()
			l.pump()
			return nil
		},
		want: outcome{Got: names(1, 5), Released: tokens(1, 5),
			Sender:   SenderStats{Enqueued: 5, Frames: 5, Sent: 5, Acked: 5, Connects: 2},
			Receiver: ReceiverStats{Frames: 5, Messages: 5, Acks: 1, Connects: 2}},
	}, {
		name: "resend of frames never received, and of frames received but not durable",
		scfg: oneMsgFrames,
		rcfg: ReceiverConfig{WaitDurable: true},
		run: func(l *link) any {
			l.enqueue(1, 4, packet.QoS1)
			l.connect()
			l.toReceiver()
			l.toSender()
			l.s.Output(nil, 1<<20) // written, lost in the network
			l.cut()
			l.connect()
			l.toReceiver()
			l.toSender()
			l.toReceiver() // now delivered, not durable
			l.cut()
			l.connect()
			l.pump()
			before := append([]uint64(nil), l.released...)
			l.r.Durable(1, 4)
			l.pump()
			return before
		},
		also: []uint64(nil),
		want: outcome{Got: names(1, 4), Released: tokens(1, 4),
			Sender:   SenderStats{Enqueued: 4, Frames: 4, Sent: 12, Resent: 8, Acked: 4, Connects: 3},
			Receiver: ReceiverStats{Frames: 4, Messages: 4, Duplicates: 4, Acks: 1, Connects: 3}},
	}, {
		name: "restarted sender detected by its incarnation",
		run: func(l *link) any {
			l.enqueue(1, 2, packet.QoS1)
			l.connect()
			l.pump()
			l.cut()
			l.s = NewSender(SenderConfig{Node: "a", Peer: "b", Incarnation: 2})
			l.enqueue(3, 1, packet.QoS1)
			l.connect()
			l.pump()
			return l.r.State()
		},
		also: ReceiverState{PeerIncarnation: 2, Durable: 1},
		want: outcome{Got: names(1, 3), Released: tokens(1, 3),
			Sender:   SenderStats{Enqueued: 1, Frames: 1, Sent: 1, Acked: 1, Connects: 1},
			Receiver: ReceiverStats{Frames: 2, Messages: 3, Acks: 2, Connects: 2, PeerRestart: 1}},
	}, {
		name: "stale sender incarnation refused",
		scfg: SenderConfig{Incarnation: 5},
		run: func(l *link) any {
			l.connect()
			l.pump()
			l.cut()
			l.s = NewSender(SenderConfig{Node: "a", Peer: "b", Incarnation: 4})
			l.connect()
			l.pump()
			return l.s.Up()
		},
		also: false,
		want: outcome{
			Errs: []string{
				"receiver: forward: Protocol Error (0x82): sender incarnation 4 older than 5",
				"sender: forward: Protocol Error (0x82): peer closed the link: sender incarnation 4 older than 5",
			},
			Receiver: ReceiverStats{Connects: 1}},
	}, {
		name: "restarted receiver detected; everything unacknowledged sent again",
		scfg: oneMsgFrames,
		rcfg: ReceiverConfig{WaitDurable: true},
		run: func(l *link) any {
			l.enqueue(1, 3, packet.QoS1)
			l.connect()
			l.pump()
			l.r.Durable(1, 1)
			l.pump()
			l.cut()
			l.r = NewReceiver(ReceiverConfig{Node: "b", Incarnation: 2}, ReceiverState{})
			l.got = nil
			l.connect()
			l.pump()
			return nil
		},
		// The new receiver gets p2 and p3 (not durable before), not p1.
		want: outcome{Got: names(2, 3), Released: tokens(1, 3),
			Sender:   SenderStats{Enqueued: 3, Frames: 3, Sent: 5, Resent: 2, Acked: 3, Connects: 2, PeerRestart: 1},
			Receiver: ReceiverStats{Frames: 2, Messages: 2, Acks: 1, Connects: 1}},
	}, {
		name: "receiver restored from its persisted state drops a resend",
		scfg: oneMsgFrames,
		rcfg: ReceiverConfig{WaitDurable: true},
		run: func(l *link) any {
			l.enqueue(1, 3, packet.QoS1)
			l.connect()
			l.toReceiver()
			l.toSender()
			l.toReceiver()
			l.r.Durable(1, 3) // durable, then the node stops before its ack goes out
			st := l.r.State()
			l.cut()
			l.r = NewReceiver(ReceiverConfig{Node: "b", Incarnation: 2, WaitDurable: true}, st)
			l.connect()
			l.pump()
			return st
		},
		also: ReceiverState{PeerIncarnation: 1, Durable: 3},
		want: outcome{Got: names(1, 3), Released: tokens(1, 3),
			Sender:   SenderStats{Enqueued: 3, Frames: 3, Sent: 3, Acked: 3, Connects: 2, PeerRestart: 1},
			Receiver: ReceiverStats{Connects: 1}},
	}, {
		// The stuck state TestClusterPartition found: a node held its peer
		// dead, abandoned the link (its tokens failed to their publishers)
		// and, the peer alive again in the same incarnation, made a new
		// Sender, whose frames start at 1; the receiver still holds the
		// old session's 3 frames. Without a new link number the receiver
		// takes the new frame 1 for a resend and welcomes it with the ack
		// of frame 3, which the new sender refuses: on every redial.
		name: "new Sender in the same incarnation and link: refused as the old link",
		scfg: oneMsgFrames,
		run: func(l *link) any {
			l.enqueue(1, 3, packet.QoS1)
			l.connect()
			l.pump()
			l.cut()
			l.s = NewSender(SenderConfig{Node: "a", Peer: "b", Incarnation: 1, FrameBytes: 1})
			l.enqueue(4, 1, packet.QoS1)
			for range 2 { // a redial changes nothing
				l.connect()
				l.pump()
				l.cut()
			}
			return l.r.State()
		},
		also: ReceiverState{PeerIncarnation: 1, Durable: 3},
		want: outcome{Got: names(1, 3), Released: tokens(1, 3),
			Errs: []string{
				"sender: forward: Protocol Error (0x82): ack of frame 3, last sealed 0",
				"sender: forward: Protocol Error (0x82): ack of frame 3, last sealed 0",
			},
			Sender:   SenderStats{Enqueued: 1},
			Receiver: ReceiverStats{Frames: 3, Messages: 3, Acks: 1, Connects: 3}},
	}, {
		name: "new Sender in the same incarnation with a higher link starts a new session",
		scfg: oneMsgFrames,
		run: func(l *link) any {
			l.enqueue(1, 3, packet.QoS1)
			l.connect()
			l.pump()
			l.toReceiver() // nothing left: the old session is all acknowledged
			l.cut()
			l.s = NewSender(SenderConfig{Node: "a", Peer: "b", Incarnation: 1, Link: 1, FrameBytes: 1})
			l.enqueue(4, 2, packet.QoS1)
			l.connect()
			l.toReceiver()
			l.toSender()
			l.toReceiver() // frames 1 and 2 of the new link: p4 and p5, not acknowledged
			l.cut()        // then a reconnection within the new session: its welcome acknowledges them
			l.connect()
			l.pump()
			return l.r.State()
		},
		also: ReceiverState{PeerIncarnation: 1, PeerLink: 1, Durable: 2},
		want: outcome{Got: names(1, 5), Released: tokens(1, 5),
			Sender:   SenderStats{Enqueued: 2, Frames: 2, Sent: 2, Acked: 2, Connects: 2},
			Receiver: ReceiverStats{Frames: 5, Messages: 5, Acks: 1, Connects: 3, NewLinks: 1}},
	}, {
		name: "new Sender with a higher link after an old session's frames were lost",
		scfg: oneMsgFrames,
		run: func(l *link) any {
			l.enqueue(1, 3, packet.QoS1)
			l.connect()
			l.toReceiver()
			l.toSender()
			l.toReceiver() // p1..p3 delivered, their acks never reach the sender
			l.cut()
			abandoned := l.s.Abandon(nil) // the node fails them to their publishers
			l.s = NewSender(SenderConfig{Node: "a", Peer: "b", Incarnation: 1, Link: 2, FrameBytes: 1})
			l.enqueue(4, 1, packet.QoS1)
			l.connect()
			l.pump()
			return []any{abandoned, l.r.State()}
		},
		// p4 is the new link's frame 1: delivered, not taken for the old p1.
		also: []any{tokens(1, 3), ReceiverState{PeerIncarnation: 1, PeerLink: 2, Durable: 1}},
		want: outcome{Got: names(1, 4), Released: tokens(4, 4),
			Sender:   SenderStats{Enqueued: 1, Frames: 1, Sent: 1, Acked: 1, Connects: 1},
			Receiver: ReceiverStats{Frames: 4, Messages: 4, Acks: 1, Connects: 2, NewLinks: 1}},
	}, {
		name: "stale link refused",
		scfg: SenderConfig{Link: 3},
		run: func(l *link) any {
			l.connect()
			l.pump()
			l.cut()
			l.s = NewSender(SenderConfig{Node: "a", Peer: "b", Incarnation: 1, Link: 2})
			l.connect()
			l.pump()
			return l.s.Up()
		},
		also: false,
		want: outcome{
			Errs: []string{
				"receiver: forward: Protocol Error (0x82): sender link 2 older than 3 (incarnation 1)",
				"sender: forward: Protocol Error (0x82): peer closed the link: sender link 2 older than 3 (incarnation 1)",
			},
			Receiver: ReceiverStats{Connects: 1}},
	}, {
		name: "wrong node refused both ways",
		run: func(l *link) any {
			l.s = NewSender(SenderConfig{Node: "a", Peer: "c", Incarnation: 1})
			l.connect()
			l.pump()
			return nil
		},
		want: outcome{Errs: []string{
			`receiver: forward: Protocol Error (0x82): hello for node "c" reached "b"`,
			`sender: forward: Protocol Error (0x82): peer closed the link: hello for node "c" reached "b"`,
		}},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newLink(t, tc.scfg, tc.rcfg)
			also := tc.run(l)
			got := outcome{Got: l.got, Released: l.released, Errs: l.errs, Sender: l.s.Stats(), Receiver: l.r.Stats()}
			got.Sender.Queued, got.Sender.QueuedBytes = 0, 0
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("outcome (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.also, also); d != "" {
				t.Errorf("observations (-want +got):\n%s", d)
			}
			if l.s.Up() && len(l.errs) == 0 {
				if st := l.s.Stats(); st.Queued != 0 || st.QueuedBytes != 0 {
					t.Errorf("sender still holds %d messages, %d bytes after every ack", st.Queued, st.QueuedBytes)
				}
			}
		})
	}
}

// recordSize is the size of testMsg("p<i>")'s record with i of one digit.
func recordSize(i int) int {
	var e encoder
	return e.prepare("ten", testMsg(fmt.Sprintf("p%d", i), packet.QoS1), &Everyone)
}

func TestReadLen(t *testing.T) {
	t.Parallel()
	var hdr [4]byte
	for _, tc := range []struct {
		n    uint32
		code packet.ReasonCode
	}{{0, packet.MalformedPacket}, {1, 0}, {100, 0}, {101, packet.PacketTooLarge}} {
		binary.BigEndian.PutUint32(hdr[:], tc.n)
		n, err := ReadLen(hdr[:], 100)
		var e *Error
		if errors.As(err, &e) {
			if e.Code != tc.code {
				t.Errorf("ReadLen(%d): code %v, want %v", tc.n, e.Code, tc.code)
			}
			continue
		}
		if tc.code != 0 || n != int(tc.n) {
			t.Errorf("ReadLen(%d) = %d, %v", tc.n, n, err)
		}
	}
}

// TestPartialFrame: a frame whose delivery an error interrupted is
// finished, not repeated, when it comes again.
func TestPartialFrame(t *testing.T) {
	t.Parallel()
	r := NewReceiver(ReceiverConfig{Node: "b", Incarnation: 1}, ReceiverState{})
	hello := appendHello(nil, &Hello{Version: Version, From: "a", To: "b", Incarnation: 1, FirstUnacked: 1})
	frame := func(payloads ...string) []byte {
		f := make([]byte, dataHeader)
		for _, p := range payloads {
			var err error
			if f, err = AppendRecord(f, "ten", testMsg(p, 1), Everyone); err != nil {
				t.Fatal(err)
			}
		}
		sealData(f, 1, len(payloads))
		return f[LenSize:]
	}
	var got []string
	deliver := func(d *Delivery) { got = append(got, string(d.Message.Payload)) }
	r.Connected()
	if err := r.Handle(hello[LenSize:], nil); err != nil {
		t.Fatal(err)
	}
	bad := frame("p1", "p2", "p3")
	bad = bad[:len(bad)-1] // the third record is cut short
	if err := r.Handle(bad, deliver); err == nil {
		t.Fatal("truncated frame accepted")
	}
	r.Disconnected()
	r.Connected()
	if err := r.Handle(hello[LenSize:], nil); err != nil {
		t.Fatal(err)
	}
	if err := r.Handle(frame("p1", "p2", "p3"), deliver); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"p1", "p2", "p3"}, got); d != "" {
		t.Errorf("delivered (-want +got):\n%s", d)
	}
	if st := r.Stats(); st.Duplicates != 2 || st.Messages != 3 {
		t.Errorf("stats %+v, want 2 duplicates and 3 messages", st)
	}
}

// TestAbandon: a sender that gives up on its peer returns the tokens it
// held; the receiver counts the frames it never got and goes on.
func TestAbandon(t *testing.T) {
	t.Parallel()
	l := newLink(t, SenderConfig{FrameBytes: 1}, ReceiverConfig{})
	l.enqueue(1, 2, packet.QoS1)
	l.connect()
	l.pump()
	l.enqueue(3, 3, packet.QoS1)
	l.connect()
	l.toReceiver()
	l.toSender()
	l.s.Output(nil, 1<<20) // lost
	l.cut()
	abandoned := l.s.Abandon(nil)
	l.enqueue(6, 1, packet.QoS1)
	l.connect()
	l.pump()
	got := outcome{Got: l.got, Released: l.released, Errs: l.errs}
	want := outcome{Got: []string{"p1", "p2", "p6"}, Released: []uint64{1, 2, 6}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("outcome (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]uint64{3, 4, 5}, abandoned); d != "" {
		t.Errorf("abandoned tokens (-want +got):\n%s", d)
	}
	if st := l.r.Stats(); st.Gaps != 3 {
		t.Errorf("receiver counted %d gaps, want 3", st.Gaps)
	}
	if st := l.s.Stats(); st.Queued != 0 || st.QueuedBytes != 0 {
		t.Errorf("sender holds %d messages, %d bytes", st.Queued, st.QueuedBytes)
	}
}
