package sim

import (
	"encoding/binary"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// ClientSpec configures a simulated client.
type ClientSpec struct {
	ClientID string
	Tenant   string // sent as the user name "tenant/<client id>"
	Version  packet.Version
	// Persistent sessions survive the connection: clean session 0 (3.1.1)
	// or a Session Expiry Interval (5.0, Expiry seconds; MaxUint32 never).
	Persistent bool
	Expiry     uint32
	KeepAlive  uint16 // seconds
	// ReceiveMax is the 5.0 Receive Maximum (0: not sent).
	ReceiveMax uint16
	// Will, when set, is registered on every connection.
	Will *WillSpec
	// ReadRate is how many bytes per second the client reads (0: as fast
	// as they come): a slow reader.
	ReadRate int64
	// MaxQoS is the highest QoS the client publishes with: its tenant's
	// maximum (set by newClient), which a 3.1.1 client cannot be told (a
	// device configured for its tenant); a 5.0 client also takes the
	// CONNACK's.
	MaxQoS packet.QoS
	// Packet identifiers: counted up from FirstPID (0: from 1), wrapping
	// from 65535 to 1, or, with LowestFreePID, the lowest id not in use
	// (a client that reuses an id as soon as its flow is complete).
	FirstPID      uint16
	LowestFreePID bool
}

// WillSpec is a client's will.
type WillSpec struct {
	Topic string
	QoS   packet.QoS
	Delay uint32 // 5.0 Will Delay Interval, seconds
}

type cstate uint8

const (
	cDown cstate = iota
	cDialing
	cConnecting // CONNECT sent
	cUp
)

// Client is a simulated MQTT client written directly on impl/packet: the
// "good client" model. It acknowledges what it receives, retransmits
// unacknowledged QoS 1/2 messages with DUP on reconnect, deduplicates
// QoS 2 by packet id, pings on its keep alive and gives up on a silent
// connection. It runs on simulation events only.
type Client struct {
	w     *World
	Host  *Host
	Spec  ClientSpec
	Index int
	// Monitor clients live on the broker's host and probe retained state
	// and wills; they are never silenced.
	Monitor bool

	ep     *Endpoint
	state  cstate
	connN  int // connections attempted
	connID uint64
	in     []byte
	dec    packet.Decoder
	wbuf   []byte
	readAt time.Time // a slow reader is busy until then

	// Client session state.
	inc *Incarnation
	// deadInc is the incarnation of connection deadConn, opened before a
	// crash that gave the client another one (Oracle.resurrect).
	deadConn   uint64
	deadInc    *Incarnation
	hasSession bool // state the broker should also hold after a reconnect
	nextPID    uint16
	outq       []*outMsg // unacknowledged outgoing QoS 1/2, in send order
	outIdx     map[uint16]*outMsg
	qos2In     map[uint16]inbound2 // QoS 2 packet ids awaiting PUBREL
	pendSub    map[uint16]*SubOp
	pendUnsub  map[uint16]*SubOp
	subs       []clientSub // acknowledged filters, in subscription order
	// What the broker announced in the CONNACK (5.0): the Receive Maximum
	// the client keeps to, and the Maximum QoS.
	srvRecvMax uint16
	srvMaxQoS  packet.QoS

	// Connection state.
	sendSeq   uint64
	waits     []procWait // sent packets waiting for proof of processing
	pings     []uint64   // send sequence numbers of PINGREQs not answered
	lastSent  time.Time
	lastRecv  time.Time
	kaEv      *Event
	dialEv    *Event
	silent    bool // stops sending anything (keep-alive expiry)
	will      *Msg // the will of the current connection
	cleanNext bool

	b       *behaviour
	mb      *monitorBehaviour
	fh      *firehose
	probe   *probe
	upSince time.Time  // when the current connection was acknowledged
	connLog []*connRec // per connection attempt (1-based index - 1)
	Stats   ClientStats
}

// ClientStats counts what a client did.
type ClientStats struct {
	Connects, Connacks, Lost, Published, Received, Dups, Retransmits uint64
}

type outMsg struct {
	m     *Msg
	pid   uint16
	rec   bool   // QoS 2: PUBREC received, PUBREL sent
	seq   uint64 // send sequence number of the last transmission
	conn  int
	dup   bool
	pkt   []byte // the encoded PUBLISH without DUP
	topic []byte
}

// inbound2 is what a client remembers of a QoS 2 packet id until PUBREL:
// the message it carried, and the incarnation it arrived in.
type inbound2 struct {
	msg uint64
	inc *Incarnation
}

type procWait struct {
	seq uint64
	m   *Msg
	op  *SubOp
}

type clientSub struct {
	filter string
	qos    packet.QoS
}

func newClient(w *World, h *Host, spec ClientSpec, index int) *Client {
	c := &Client{w: w, Host: h, Spec: spec, Index: index,
		outIdx: map[uint16]*outMsg{}, qos2In: map[uint16]inbound2{},
		pendSub: map[uint16]*SubOp{}, pendUnsub: map[uint16]*SubOp{}}
	if spec.FirstPID > 0 {
		c.nextPID = spec.FirstPID - 1
	}
	c.Spec.MaxQoS = w.limits(spec.Tenant).maxQoS
	return c
}

// Up reports whether the client is connected (CONNACK received).
func (c *Client) Up() bool { return c.state == cUp }

// Connect dials the broker and sends CONNECT; clean asks for a clean start.
func (c *Client) Connect(clean bool) {
	if c.state != cDown {
		return
	}
	c.state = cDialing
	c.cleanNext = clean
	c.connN++
	c.Stats.Connects++
	c.ep = c.Host.Dial(c.w.BrokerHost.Name, c.w.Broker.Spec.Port, c)
	c.connID = c.ep.Conn.ID
	ep := c.ep
	c.dialEv = c.w.Sim.After(10*time.Second, func() {
		if c.ep == ep && c.state != cUp {
			ep.Abort()
			c.lost("connect timeout")
		}
	})
}

// Opened implements Handler.
func (c *Client) Opened(ep *Endpoint) {
	if ep != c.ep || c.state != cDialing {
		return
	}
	clean := c.cleanNext || !c.Spec.Persistent
	if clean {
		c.discardSession()
	}
	// A client that asks to resume holds a session from now on, even an
	// empty one: the broker may have created it with a CONNECT whose
	// CONNACK was lost.
	c.hasSession = c.Spec.Persistent
	v := c.Spec.Version
	cp := &packet.Connect{Version: v, CleanStart: clean, KeepAlive: c.Spec.KeepAlive,
		ClientID: []byte(c.Spec.ClientID), UsernameFlag: true, Username: []byte(c.Spec.Tenant + "/" + c.Spec.ClientID)}
	if v == packet.V5 {
		if c.Spec.Persistent {
			cp.Properties.SessionExpiry = c.Spec.Expiry
			cp.Properties.Set(packet.PropSessionExpiry)
		}
		if c.Spec.ReceiveMax > 0 {
			cp.Properties.ReceiveMaximum = c.Spec.ReceiveMax
			cp.Properties.Set(packet.PropReceiveMaximum)
		}
	}
	c.will = nil
	if ws := c.Spec.Will; ws != nil {
		m := c.w.Oracle.newWill(c, ws)
		c.will = m
		cp.WillFlag, cp.WillQoS, cp.WillTopic = true, ws.QoS, []byte(ws.Topic)
		cp.WillPayload = payloadFor(m.ID, 0)
		if v == packet.V5 && ws.Delay > 0 {
			cp.WillProperties.WillDelay = ws.Delay
			cp.WillProperties.Set(packet.PropWillDelay)
		}
	}
	c.state = cConnecting
	c.dec = packet.Decoder{Version: v}
	c.in = c.in[:0]
	c.sendSeq = 0
	c.waits = c.waits[:0]
	c.pings = c.pings[:0]
	c.silent = false
	c.send(cp)
	c.w.Oracle.clientConnectSent(c, clean)
}

// send encodes p and writes it, unless the client has gone silent.
func (c *Client) send(p packet.Packet) uint64 {
	if c.ep == nil || c.silent {
		return 0
	}
	var err error
	c.wbuf, err = p.Append(c.wbuf[:0], c.Spec.Version)
	if err != nil {
		c.w.Oracle.fail(InvProtocol, c.Spec.ClientID+": "+err.Error())
		return 0
	}
	c.ep.Write(c.wbuf)
	c.sendSeq++
	c.lastSent = c.w.Sim.now
	return c.sendSeq
}

// Data implements Handler: bytes from the broker, read at the client's rate.
func (c *Client) Data(ep *Endpoint, b []byte) {
	if ep != c.ep {
		return
	}
	c.lastRecv = c.w.Sim.now
	if c.Spec.ReadRate <= 0 {
		c.read(b)
		ep.Consume(len(b))
		return
	}
	start := c.readAt
	if start.Before(c.w.Sim.now) {
		start = c.w.Sim.now
	}
	c.readAt = start.Add(time.Duration(int64(len(b)) * int64(time.Second) / c.Spec.ReadRate))
	data := append([]byte(nil), b...)
	c.w.Sim.At(c.readAt, func() {
		if ep != c.ep {
			return
		}
		c.read(data)
		ep.Consume(len(data))
	})
}

func (c *Client) read(b []byte) {
	c.in = append(c.in, b...)
	off := 0
	ep := c.ep
	for c.ep == ep && ep != nil {
		h, hdr, total, st := nextFrame(c.in[off:], 0)
		if st == frameShort {
			break
		}
		if st == frameBad {
			c.w.Oracle.fail(InvProtocol, c.Spec.ClientID+": bad fixed header from the broker")
			c.abort()
			return
		}
		body := c.in[off+hdr : off+total]
		off += total
		p, err := c.dec.Decode(h, body)
		if err != nil {
			c.w.Oracle.fail(InvProtocol, c.Spec.ClientID+": "+err.Error())
			c.abort()
			return
		}
		c.handle(p)
	}
	if c.ep == ep {
		rest := copy(c.in, c.in[off:])
		c.in = c.in[:rest]
	}
}

func (c *Client) handle(p packet.Packet) {
	o := c.w.Oracle
	switch p := p.(type) {
	case *packet.Connack:
		c.handleConnack(p)
	case *packet.Publish:
		c.handlePublish(p)
	case *packet.Ack:
		c.handleAck(p)
	case *packet.Suback:
		op := c.pendSub[p.PacketID]
		if op == nil {
			o.fail(InvProtocol, c.Spec.ClientID+": SUBACK for an unknown packet id")
			return
		}
		delete(c.pendSub, p.PacketID)
		c.processed(op.seq)
		if len(p.ReasonCodes) != 1 {
			o.fail(InvProtocol, c.Spec.ClientID+": SUBACK with a reason code count other than the filters'")
			return
		}
		code := p.ReasonCodes[0]
		granted := !code.IsError() && code != 0x80
		if granted {
			op.QoS = byte(code)
			c.setSub(op.Raw, packet.QoS(op.QoS))
		}
		o.subAcked(c, op, granted)
		o.checkGrant(c, op, code)
	case *packet.Unsuback:
		op := c.pendUnsub[p.PacketID]
		if op == nil {
			o.fail(InvProtocol, c.Spec.ClientID+": UNSUBACK for an unknown packet id")
			return
		}
		delete(c.pendUnsub, p.PacketID)
		c.processed(op.seq)
		c.dropSub(op.Raw)
		o.subAcked(c, op, true)
	case *packet.Pingresp:
		if len(c.pings) == 0 {
			o.fail(InvProtocol, c.Spec.ClientID+": PINGRESP without PINGREQ")
			return
		}
		seq := c.pings[0]
		c.pings = c.pings[1:]
		c.processed(seq)
		if c.mb != nil {
			c.mb.pingAnswered(seq)
		}
	case *packet.Disconnect:
		// The broker ends the connection; the close follows. A good
		// client is only ever taken over (another connection of its
		// own resumed the session).
		o.serverDisconnected(c, p.ReasonCode)
	default:
		o.fail(InvProtocol, c.Spec.ClientID+": unexpected "+p.Type().String()+" from the broker")
	}
}

func (c *Client) handleConnack(p *packet.Connack) {
	o := c.w.Oracle
	if c.state != cConnecting {
		o.fail(InvProtocol, c.Spec.ClientID+": CONNACK outside the connect phase")
		return
	}
	if p.ReasonCode != 0 {
		o.fail(InvProtocol, c.Spec.ClientID+": CONNACK "+p.ReasonCode.String())
		c.abort()
		return
	}
	c.w.Sim.Cancel(c.dialEv)
	c.state = cUp
	c.Stats.Connacks++
	present := p.SessionPresent
	o.clientConnack(c, present)
	o.checkConnack(c, p)
	c.srvRecvMax, c.srvMaxQoS = 65535, packet.QoS2
	if pr := &p.Properties; c.Spec.Version == packet.V5 {
		if pr.Has(packet.PropReceiveMaximum) {
			c.srvRecvMax = pr.ReceiveMaximum
		}
		if pr.Has(packet.PropMaximumQoS) {
			c.srvMaxQoS = packet.QoS(pr.MaximumQoS)
		}
	}
	c.w.debugf("connack %s conn=%d present=%v", c.Spec.ClientID, c.connID, present)
	if !present {
		c.discardSession()
	}
	if c.inc == nil {
		c.inc = o.resumedIncarnation(c, present)
	}
	c.hasSession = true
	o.clientSession(c)
	// Unacknowledged messages go again, in order, with DUP [MQTT-4.4.0-1].
	for _, om := range c.outq {
		if om.rec {
			om.seq = c.send(&packet.Ack{PacketType: packet.PUBREL, PacketID: om.pid})
		} else {
			om.seq = c.resend(om)
			om.m.Resent = true
			om.m.transmitted(c.connID, c.w.Sim.now)
			c.w.debugf("resend msg=%d by %s conn=%d", om.m.ID, c.Spec.ClientID, c.connID)
			c.Stats.Retransmits++
		}
		om.conn = c.connN
	}
	c.armKeepAlive()
	if c.b != nil {
		c.b.connected(c, present)
	}
	if c.mb != nil {
		c.mb.connected(present)
	}
	if c.fh != nil {
		c.fh.connected(c)
	}
}

// resend writes an unacknowledged PUBLISH again with DUP set.
func (c *Client) resend(om *outMsg) uint64 {
	if c.ep == nil || c.silent {
		return 0
	}
	b := append(c.wbuf[:0], om.pkt...)
	b[0] |= 0x08
	c.wbuf = b
	c.ep.Write(b)
	c.sendSeq++
	c.lastSent = c.w.Sim.now
	return c.sendSeq
}

// discardSession forgets the client's session state: a new incarnation
// starts at the next CONNACK.
func (c *Client) discardSession() {
	o := c.w.Oracle
	for _, om := range c.outq {
		o.abandoned(om.m)
	}
	c.outq = c.outq[:0]
	clear(c.outIdx)
	clear(c.qos2In)
	c.subs = c.subs[:0]
	if c.inc != nil {
		o.endIncarnation(c.inc)
		c.inc = nil
	}
	c.hasSession = false
}

func (c *Client) handlePublish(p *packet.Publish) {
	o := c.w.Oracle
	id, ok := payloadID(p.Payload)
	switch p.QoS {
	case 0:
	case 1:
		c.send(&packet.Ack{PacketType: packet.PUBACK, PacketID: p.PacketID})
	case 2:
		if in, seen := c.qos2In[p.PacketID]; seen {
			if ok && id != in.msg {
				o.staleDuplicate(c, in, id, p.PacketID)
			}
			c.w.debugf("%s: QoS 2 msg=%d pid=%d is a duplicate (dup=%v)", c.Spec.ClientID, id, p.PacketID, p.Dup)
			c.Stats.Dups++
			c.send(&packet.Ack{PacketType: packet.PUBREC, PacketID: p.PacketID})
			return // already delivered once [MQTT-4.3.3-?]: method B dedup
		}
		c.qos2In[p.PacketID] = inbound2{msg: id, inc: c.inc}
		c.send(&packet.Ack{PacketType: packet.PUBREC, PacketID: p.PacketID})
	}
	c.Stats.Received++
	if ok && c.inc != nil {
		o.delivered(c, id, p)
	}
}

func (c *Client) handleAck(a *packet.Ack) {
	o := c.w.Oracle
	switch a.PacketType {
	case packet.PUBREL:
		delete(c.qos2In, a.PacketID)
		c.send(&packet.Ack{PacketType: packet.PUBCOMP, PacketID: a.PacketID})
		return
	case packet.PUBACK, packet.PUBREC:
		om := c.outIdx[a.PacketID]
		if om == nil {
			return // an acknowledgement of a message the client already forgot
		}
		want := packet.QoS1
		if a.PacketType == packet.PUBREC {
			want = packet.QoS2
		}
		if om.m.QoS != byte(want) {
			o.fail(InvProtocol, c.Spec.ClientID+": "+a.PacketType.String()+" for a message of another QoS")
			return
		}
		if om.rec {
			c.send(&packet.Ack{PacketType: packet.PUBREL, PacketID: a.PacketID})
			return
		}
		c.processed(om.seq)
		o.acked(om.m, a.ReasonCode)
		if a.PacketType == packet.PUBACK || a.ReasonCode.IsError() {
			c.forget(om)
			return
		}
		om.rec = true
		om.seq = c.send(&packet.Ack{PacketType: packet.PUBREL, PacketID: a.PacketID})
	case packet.PUBCOMP:
		if om := c.outIdx[a.PacketID]; om != nil && om.rec {
			c.forget(om)
		}
	}
}

func (c *Client) forget(om *outMsg) {
	delete(c.outIdx, om.pid)
	for i, x := range c.outq {
		if x == om {
			c.outq = append(c.outq[:i], c.outq[i+1:]...)
			break
		}
	}
}

// processed records that the broker has processed every packet up to seq
// on the current connection: a response to a later packet proves it.
func (c *Client) processed(seq uint64) {
	if seq == 0 {
		return
	}
	n := 0
	for _, w := range c.waits {
		if w.seq <= seq {
			if w.m != nil {
				c.w.Oracle.processedBy(w.m)
			}
			continue
		}
		c.waits[n] = w
		n++
	}
	clear(c.waits[n:])
	c.waits = c.waits[:n]
}

func (c *Client) allocPID() uint16 {
	inUse := func(id uint16) bool {
		_, a := c.outIdx[id]
		_, b := c.pendSub[id]
		_, d := c.pendUnsub[id]
		return a || b || d
	}
	if c.Spec.LowestFreePID {
		id := uint16(1)
		for inUse(id) {
			id++
		}
		return id
	}
	for {
		c.nextPID++
		if c.nextPID == 0 {
			c.nextPID = 1
		}
		if !inUse(c.nextPID) {
			return c.nextPID
		}
	}
}

// Publish sends a message of size payload bytes (at least 8: its id).
func (c *Client) Publish(topic string, qos packet.QoS, retain bool, size int, empty bool) {
	if c.state != cUp || c.silent {
		return
	}
	qos = min(qos, c.Spec.MaxQoS, c.srvMaxQoS)
	if qos > 0 && len(c.outq) >= int(c.srvRecvMax) {
		return // the broker's Receive Maximum: wait for acknowledgements [MQTT-3.3.4-7]
	}
	m := c.w.Oracle.newMsg(c, topic, qos, retain, empty)
	p := &packet.Publish{QoS: qos, Retain: retain, Topic: []byte(topic)}
	if !empty {
		p.Payload = payloadFor(m.ID, size)
	}
	if qos > 0 {
		p.PacketID = c.allocPID()
	}
	c.Stats.Published++
	m.transmitted(c.connID, c.w.Sim.now)
	if qos == 0 {
		seq := c.send(p)
		c.waits = append(c.waits, procWait{seq: seq, m: m})
		return
	}
	om := &outMsg{m: m, pid: p.PacketID, conn: c.connN}
	om.pkt, _ = p.Append(nil, c.Spec.Version)
	c.outq = append(c.outq, om)
	c.outIdx[om.pid] = om
	c.ep.Write(om.pkt)
	c.sendSeq++
	c.lastSent = c.w.Sim.now
	om.seq = c.sendSeq
}

// Subscribe subscribes to filter (with "$share/group/" when shared).
func (c *Client) Subscribe(filter string, qos packet.QoS) {
	if c.state != cUp || c.silent {
		return
	}
	pid := c.allocPID()
	op := c.w.Oracle.newSubOp(c, filter, false, byte(qos))
	op.conn = c.connID
	c.pendSub[pid] = op
	op.seq = c.send(&packet.Subscribe{PacketID: pid, Subscriptions: []packet.Subscription{{Filter: []byte(filter), QoS: qos}}})
}

// Unsubscribe removes filter.
func (c *Client) Unsubscribe(filter string) {
	if c.state != cUp || c.silent {
		return
	}
	pid := c.allocPID()
	op := c.w.Oracle.newSubOp(c, filter, true, 0)
	op.conn = c.connID
	c.pendUnsub[pid] = op
	op.seq = c.send(&packet.Unsubscribe{PacketID: pid, Filters: [][]byte{[]byte(filter)}})
}

// Ping sends a PINGREQ (also used to learn that earlier packets were
// processed) and returns its send sequence number (0: not sent).
func (c *Client) Ping() uint64 {
	if c.state != cUp || c.silent {
		return 0
	}
	seq := c.send(&packet.Pingreq{})
	if seq != 0 {
		c.pings = append(c.pings, seq)
	}
	return seq
}

// Disconnect sends DISCONNECT (the will is discarded) and closes.
func (c *Client) Disconnect() {
	if c.state != cUp || c.silent {
		return
	}
	c.send(&packet.Disconnect{})
	if c.will != nil {
		c.w.Oracle.willCancelled(c.will)
	}
	c.ep.Close()
	c.lost("disconnect")
}

// Silence makes the client stop sending anything (it still reads): the
// broker must close it after 1.5 times the keep alive.
func (c *Client) Silence() {
	if c.state != cUp {
		return
	}
	c.silent = true
	// A silent client gives up on its connection after a while, so that
	// one whose connection became half-open meanwhile does not stay
	// silent (and believed connected) forever.
	ep := c.ep
	c.w.Sim.After(time.Duration(c.Spec.KeepAlive)*3*time.Second+10*time.Second, func() {
		if c.ep == ep && c.silent {
			c.abort()
		}
	})
}

// abort resets the connection (no DISCONNECT: the will goes).
func (c *Client) abort() {
	if c.ep != nil {
		c.ep.Abort()
	}
	c.lost("abort")
}

// Abort drops the connection abruptly.
func (c *Client) Abort() {
	if c.state != cDown {
		c.abort()
	}
}

// Closed implements Handler.
func (c *Client) Closed(ep *Endpoint, reset bool) {
	if ep != c.ep {
		return
	}
	if !ep.IsClosed() {
		ep.Close()
	}
	c.lost("closed")
}

// Writable implements Handler.
func (c *Client) Writable(*Endpoint) {}

// lost ends the current connection on the client's side.
func (c *Client) lost(why string) {
	if c.state == cDown {
		return
	}
	wasUp := c.state == cUp
	c.state = cDown
	c.ep = nil
	c.silent = false
	c.in = c.in[:0]
	c.w.Sim.Cancel(c.kaEv)
	c.w.Sim.Cancel(c.dialEv)
	c.Stats.Lost++
	c.w.debugf("lost %s conn=%d: %s", c.Spec.ClientID, c.connID, why)
	clear(c.pendSub) // lost with the connection, or processed: the oracle keeps both open
	clear(c.pendUnsub)
	c.waits = c.waits[:0]
	c.pings = c.pings[:0]
	if !c.Spec.Persistent {
		c.discardSession()
	}
	c.w.Oracle.clientDown(c, wasUp)
	if c.b != nil {
		c.b.disconnected(c)
	}
	if c.mb != nil {
		c.mb.disconnected()
	}
	if c.fh != nil {
		c.fh.disconnected(c)
	}
}

// armKeepAlive sends PINGREQ when nothing was sent for the keep alive, and
// gives up on a connection whose PINGREQ is not answered in time.
func (c *Client) armKeepAlive() {
	ka := time.Duration(c.Spec.KeepAlive) * time.Second
	if ka == 0 {
		return
	}
	c.w.Sim.Cancel(c.kaEv)
	ep := c.ep
	next := c.lastSent.Add(ka)
	if len(c.pings) > 0 || !next.After(c.w.Sim.now) {
		next = c.w.Sim.now.Add(ka / 2)
	}
	c.kaEv = c.w.Sim.At(next, func() {
		if c.ep != ep || c.state != cUp {
			return
		}
		now := c.w.Sim.now
		if len(c.pings) > 0 && !c.silent && now.Sub(c.lastRecv) >= ka/2 {
			// The broker has not answered, nor sent anything, for half a
			// keep alive: the connection is dead or half-open.
			c.abort()
			return
		}
		if now.Sub(c.lastSent) >= ka && !c.silent {
			c.Ping()
		}
		c.armKeepAlive()
	})
}

// payloadFor returns a payload carrying a message id in its first 8
// bytes, padded to size.
func payloadFor(id uint64, size int) []byte {
	b := make([]byte, max(8, size))
	binary.BigEndian.PutUint64(b, id)
	return b
}

func payloadID(b []byte) (uint64, bool) {
	if len(b) < 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}
