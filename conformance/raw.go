package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// Timing of the suite. Positive waits end as soon as the event happens;
// only negative checks ("nothing arrives") wait their whole interval.
const (
	// waitFor bounds how long a test waits for something that must happen.
	waitFor = 5 * time.Second
	// quietPeriod is how long a negative check listens before it concludes
	// that nothing is coming.
	quietPeriod = 300 * time.Millisecond
)

// event is what the raw client's reader saw: a packet, or the end of the
// connection (err set).
type event struct {
	p   packet.Packet
	raw []byte
	err error
}

// Raw is a client that speaks MQTT through impl/packet with no library in
// between, for exact bytes, protocol violations and timing.
type Raw struct {
	t      testing.TB
	conn   net.Conn
	V      packet.Version
	events chan event
	mu     sync.Mutex
	closed bool
	ended  *event          // the terminal event once seen
	held   []packet.Packet // received but passed over by Expect, in order
	nextID uint16
}

// DialRaw connects a raw client for protocol version v. The connection is
// closed when the test ends.
func DialRaw(t testing.TB, v packet.Version) *Raw {
	t.Helper()
	checkDeviation(t)
	c, err := target.Dial()
	if err != nil {
		t.Fatalf("dial %s: %v", target.Addr, err)
	}
	r := &Raw{t: t, conn: c, V: v, events: make(chan event, 4096)}
	go r.readLoop()
	t.Cleanup(r.Close)
	return r
}

func (r *Raw) readLoop() {
	br := packet.NewReader(r.conn, 64<<10)
	for {
		h, body, err := br.ReadPacket()
		if err != nil {
			r.events <- event{err: err}
			close(r.events)
			return
		}
		raw := packet.AppendVarint([]byte{byte(h.Type)<<4 | h.Flags}, uint32(h.Remaining))
		raw = append(raw, body...)
		p := packet.New(h.Type)
		if p == nil {
			r.events <- event{raw: raw, err: fmt.Errorf("reserved packet type %d", h.Type)}
			continue
		}
		// Decode a private copy: the reader's buffer is reused.
		if err := p.Decode(h, bytes.Clone(body), r.V); err != nil {
			r.events <- event{raw: raw, err: fmt.Errorf("broker sent an undecodable %s: %w", h.Type, err)}
			continue
		}
		r.events <- event{p: p, raw: raw}
	}
}

// Close closes the connection.
func (r *Raw) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		r.conn.Close()
	}
}

// NextID returns a fresh packet identifier.
func (r *Raw) NextID() uint16 {
	r.nextID++
	if r.nextID == 0 {
		r.nextID = 1
	}
	return r.nextID
}

// Send encodes p for the client's version and writes it.
func (r *Raw) Send(p packet.Packet) {
	r.t.Helper()
	b, err := p.Append(nil, r.V)
	if err != nil {
		r.t.Fatalf("encode %s: %v", p.Type(), err)
	}
	r.SendBytes(b)
}

// SendBytes writes b as is. A write error is not fatal: the broker may
// already have closed the connection, which the test then checks.
func (r *Raw) SendBytes(b []byte) {
	r.t.Helper()
	_ = r.conn.SetWriteDeadline(time.Now().Add(waitFor))
	_, _ = r.conn.Write(b)
}

// next returns the next event within d; ok is false on timeout.
func (r *Raw) next(d time.Duration) (event, bool) {
	if len(r.held) > 0 {
		p := r.held[0]
		r.held = r.held[1:]
		return event{p: p}, true
	}
	if r.ended != nil {
		return *r.ended, true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case ev, open := <-r.events:
		if !open {
			return *r.ended, true
		}
		if ev.p == nil && ev.raw == nil {
			r.ended = &ev
		}
		return ev, true
	case <-timer.C:
		return event{}, false
	}
}

// Next returns the next packet from the broker within waitFor, or fails
// the test if none comes or the connection ends.
func (r *Raw) Next() packet.Packet {
	r.t.Helper()
	ev, ok := r.next(waitFor)
	if !ok {
		r.t.Fatalf("no packet from the broker within %v", waitFor)
	}
	if ev.p == nil {
		r.t.Fatalf("waiting for a packet: %v", describeEnd(ev.err))
	}
	return ev.p
}

// ExpectNext returns the next packet, failing the test unless it has type
// want. Use it where the order of packets is what the test checks.
func (r *Raw) ExpectNext(want packet.Type) packet.Packet {
	r.t.Helper()
	p := r.Next()
	if p.Type() != want {
		r.t.Fatalf("got %s, want %s", Describe(p), want)
	}
	return p
}

// Expect returns the first packet of type want to arrive within waitFor.
// Packets of other types that come first are held, in order, for the next
// calls (a broker may deliver a PUBLISH before it acknowledges another).
func (r *Raw) Expect(want packet.Type) packet.Packet {
	r.t.Helper()
	for i, p := range r.held {
		if p.Type() == want {
			r.held = append(r.held[:i:i], r.held[i+1:]...)
			return p
		}
	}
	deadline := time.Now().Add(waitFor)
	var skipped []packet.Packet
	defer func() { r.held = append(r.held, skipped...) }()
	for {
		ev, ok := r.nextFromWire(time.Until(deadline))
		if !ok {
			r.t.Fatalf("no %s from the broker within %v (received %v)", want, waitFor, types(skipped))
		}
		if ev.p == nil {
			r.t.Fatalf("waiting for %s (received %v): %v", want, types(skipped), describeEnd(ev.err))
		}
		if ev.p.Type() == want {
			return ev.p
		}
		skipped = append(skipped, ev.p)
	}
}

// nextFromWire is next without the held packets.
func (r *Raw) nextFromWire(d time.Duration) (event, bool) {
	held := r.held
	r.held = nil
	defer func() { r.held = held }()
	return r.next(d)
}

// ExpectPublish returns the next packet as a PUBLISH.
func (r *Raw) ExpectPublish() *packet.Publish {
	r.t.Helper()
	return r.Expect(packet.PUBLISH).(*packet.Publish)
}

// ExpectNothing fails the test if any packet arrives, or the connection
// ends, within quietPeriod.
func (r *Raw) ExpectNothing() {
	r.t.Helper()
	ev, ok := r.next(quietPeriod)
	if !ok {
		return
	}
	if ev.p != nil {
		r.t.Fatalf("unexpected %s", Describe(ev.p))
	}
	r.t.Fatalf("connection ended unexpectedly: %v", describeEnd(ev.err))
}

// ExpectClosed waits until the broker closes the connection. Packets
// received before the close are returned (a 5.0 broker may send a
// DISCONNECT or CONNACK with a reason code first); any other packet type
// arriving fails the test unless allowed.
func (r *Raw) ExpectClosed(allowed ...packet.Type) []packet.Packet {
	r.t.Helper()
	var got []packet.Packet
	deadline := time.Now().Add(waitFor)
	for {
		ev, ok := r.next(time.Until(deadline))
		if !ok {
			r.t.Fatalf("broker did not close the connection within %v (received %v)", waitFor, types(got))
		}
		if ev.p == nil && ev.raw == nil {
			return got
		}
		if ev.p == nil {
			r.t.Fatalf("before close: %v", ev.err)
		}
		ok = false
		for _, a := range allowed {
			ok = ok || ev.p.Type() == a
		}
		if !ok {
			r.t.Fatalf("expected the connection to close, got %s", Describe(ev.p))
		}
		got = append(got, ev.p)
	}
}

// ExpectDisconnect waits for the broker to close the connection. For a 5.0
// client, a DISCONNECT (or, before CONNACK, a CONNACK) sent before closing
// must carry code. It reports whether a reason code was received.
func (r *Raw) ExpectDisconnect(code packet.ReasonCode) bool {
	r.t.Helper()
	got := r.ExpectClosed(packet.DISCONNECT, packet.CONNACK)
	for _, p := range got {
		var rc packet.ReasonCode
		switch p := p.(type) {
		case *packet.Disconnect:
			rc = p.ReasonCode
		case *packet.Connack:
			rc = p.ReasonCode
		}
		if r.V == packet.V5 && rc != code {
			r.t.Fatalf("%s with reason %v, want %v", p.Type(), rc, code)
		}
	}
	return len(got) > 0
}

func types(ps []packet.Packet) []packet.Type {
	var ts []packet.Type
	for _, p := range ps {
		ts = append(ts, p.Type())
	}
	return ts
}

func describeEnd(err error) string {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the broker"
	case err == nil:
		return "connection ended"
	}
	return err.Error()
}

// ConnectOpts is the CONNECT a helper sends; zero values mean sensible
// defaults (a unique client id, clean start, keep alive 60 s).
type ConnectOpts struct {
	ClientID   string
	Persistent bool // clean start / clean session 0
	KeepAlive  uint16
	Properties packet.Properties
	Will       *packet.Publish // topic, payload, QoS, retain and will properties
}

// Connect sends CONNECT and returns the CONNACK, failing the test unless
// it is a success.
func (r *Raw) Connect(o ConnectOpts) *packet.Connack {
	r.t.Helper()
	ack := r.ConnectRaw(o)
	if ack.ReasonCode != packet.Success {
		r.t.Fatalf("CONNACK %v", ack.ReasonCode)
	}
	return ack
}

// ConnectRaw sends CONNECT and returns whatever CONNACK comes back.
func (r *Raw) ConnectRaw(o ConnectOpts) *packet.Connack {
	r.t.Helper()
	r.Send(r.ConnectPacket(o))
	return r.Expect(packet.CONNACK).(*packet.Connack)
}

// ConnectPacket builds the CONNECT for o, with the suite's credentials.
func (r *Raw) ConnectPacket(o ConnectOpts) *packet.Connect {
	c := &packet.Connect{Version: r.V, CleanStart: !o.Persistent, KeepAlive: o.KeepAlive,
		ClientID: []byte(o.ClientID), Properties: o.Properties}
	if o.KeepAlive == 0 {
		c.KeepAlive = 60
	}
	if o.ClientID == "" {
		c.ClientID = []byte(uniqueID(r.t))
	}
	if o.Will != nil {
		c.WillFlag, c.WillQoS, c.WillRetain = true, o.Will.QoS, o.Will.Retain
		c.WillTopic, c.WillPayload, c.WillProperties = o.Will.Topic, o.Will.Payload, o.Will.Properties
	}
	if target.Username != "" {
		c.UsernameFlag, c.Username = true, []byte(target.Username)
	}
	if target.Password != "" {
		c.PasswordFlag, c.Password = true, []byte(target.Password)
	}
	return c
}

// Subscribe subscribes to filters with options subs and returns the SUBACK.
func (r *Raw) Subscribe(subs ...packet.Subscription) *packet.Suback {
	r.t.Helper()
	id := r.NextID()
	r.Send(&packet.Subscribe{PacketID: id, Subscriptions: subs})
	ack := r.Expect(packet.SUBACK).(*packet.Suback)
	if ack.PacketID != id {
		r.t.Fatalf("SUBACK for packet id %d, want %d", ack.PacketID, id)
	}
	return ack
}

// Publish sends a PUBLISH and completes its QoS flow as a well-behaved
// client (PUBACK, or PUBREC→PUBREL→PUBCOMP). It returns the
// acknowledgement's reason code (Success for QoS 0).
func (r *Raw) Publish(p *packet.Publish) packet.ReasonCode {
	r.t.Helper()
	if p.QoS > 0 && p.PacketID == 0 {
		p.PacketID = r.NextID()
	}
	r.Send(p)
	switch p.QoS {
	case packet.QoS1:
		ack := r.Expect(packet.PUBACK).(*packet.Ack)
		return ack.ReasonCode
	case packet.QoS2:
		rec := r.Expect(packet.PUBREC).(*packet.Ack)
		if rec.ReasonCode.IsError() {
			return rec.ReasonCode
		}
		r.Send(&packet.Ack{PacketType: packet.PUBREL, PacketID: p.PacketID})
		r.Expect(packet.PUBCOMP)
		return rec.ReasonCode
	}
	return packet.Success
}

// Ack acknowledges a PUBLISH received from the broker as a well-behaved
// client does.
func (r *Raw) Ack(p *packet.Publish) {
	r.t.Helper()
	switch p.QoS {
	case packet.QoS1:
		r.Send(&packet.Ack{PacketType: packet.PUBACK, PacketID: p.PacketID})
	case packet.QoS2:
		r.Send(&packet.Ack{PacketType: packet.PUBREC, PacketID: p.PacketID})
		r.Expect(packet.PUBREL)
		r.Send(&packet.Ack{PacketType: packet.PUBCOMP, PacketID: p.PacketID})
	}
}

// Disconnect sends a normal DISCONNECT, waits (up to waitFor) for the
// broker to close the connection, and closes it. Waiting makes the
// disconnection an event the test can order others after: a message
// published once Disconnect returns finds the session offline. Without it,
// a broker still reading the DISCONNECT may deliver that message to the
// closing connection, which then counts as sent and comes back with DUP
// on the next connection (the spec allows that), and a test that expects
// it queued while offline fails by chance. Whatever arrives meanwhile is
// discarded: the client has said it will read nothing more.
func (r *Raw) Disconnect() {
	r.Send(&packet.Disconnect{})
	deadline := time.Now().Add(waitFor)
	for {
		ev, ok := r.next(time.Until(deadline))
		if !ok || ev.p == nil && ev.raw == nil {
			break // closed by the broker, or it kept the connection open
		}
	}
	r.Close()
}
