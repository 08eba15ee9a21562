package edgesim

import (
	"time"

	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/sim"
)

// mqttClient is the link of a simulated edge agent or cloud: an MQTT 5.0
// client on impl/packet over the virtual network, doing what the
// production link (paho's autopaho) does for them: connect with the
// process's credentials, subscribe to one filter, publish and acknowledge
// QoS 1, ping on the keep alive, and reconnect after a loss with
// exponential backoff and full jitter (1s doubling to 60s). It retransmits
// nothing: the layers above (the outbox, the cloud's version diff) recover
// what a lost connection took.
type mqttClient struct {
	s     *sim.Sim
	clock *sim.Clock // the process's: its timers die with it
	rnd   env.Rand
	host  *sim.Host
	to    string
	port  int

	clientID, user string
	password       func() []byte // read at each connection (a renewed certificate)
	filter         string
	keepAlive      time.Duration

	onUp      func()
	onDown    func()
	onMessage func(topic string, payload []byte)

	ep       *sim.Endpoint
	state    uint8
	closed   bool // stopped for good (the process ended)
	in       []byte
	dec      packet.Decoder
	wbuf     []byte
	pid      uint16
	lastSent time.Time
	lastRecv time.Time
	attempt  int
	dialT    env.Timer
	kaT      env.Timer
	retryT   env.Timer

	Connects, Refused, Lost uint64
}

const (
	mDown uint8 = iota
	mDialing
	mConnecting
	mSubscribing
	mUp
)

// start connects (and keeps reconnecting).
func (c *mqttClient) start() {
	c.closed = false
	c.dial()
}

// stop ends the connection for good: no callback, no reconnection.
func (c *mqttClient) stop() {
	c.closed = true
	c.cancelTimers()
	if c.ep != nil {
		c.ep.Abort()
		c.ep = nil
	}
	c.state = mDown
}

// reconnect drops the connection and connects again at once (new
// credentials).
func (c *mqttClient) reconnect() {
	if c.closed {
		return
	}
	c.lost()
	c.cancelTimers()
	c.attempt = 0
	c.dial()
}

func (c *mqttClient) cancelTimers() {
	for _, t := range []env.Timer{c.dialT, c.kaT, c.retryT} {
		if t != nil {
			t.Stop()
		}
	}
}

func (c *mqttClient) up() bool { return c.state == mUp }

func (c *mqttClient) dial() {
	if c.closed || c.state != mDown {
		return
	}
	c.state = mDialing
	c.Connects++
	c.ep = c.host.Dial(c.to, c.port, c)
	ep := c.ep
	c.dialT = c.clock.AfterFunc(10*time.Second, func() {
		if c.ep == ep && c.state != mUp {
			c.abort()
		}
	})
}

// Opened implements sim.Handler.
func (c *mqttClient) Opened(ep *sim.Endpoint) {
	if ep != c.ep || c.state != mDialing {
		return
	}
	c.state = mConnecting
	c.in = c.in[:0]
	c.dec = packet.Decoder{Version: packet.V5}
	c.lastRecv = c.s.Now()
	c.send(&packet.Connect{Version: packet.V5, CleanStart: true, KeepAlive: uint16(c.keepAlive / time.Second),
		ClientID: []byte(c.clientID), UsernameFlag: true, Username: []byte(c.user),
		PasswordFlag: true, Password: c.password()})
}

func (c *mqttClient) send(p packet.Packet) {
	if c.ep == nil {
		return
	}
	var err error
	if c.wbuf, err = p.Append(c.wbuf[:0], packet.V5); err != nil {
		return
	}
	c.ep.Write(c.wbuf)
	c.lastSent = c.s.Now()
}

// Data implements sim.Handler.
func (c *mqttClient) Data(ep *sim.Endpoint, b []byte) {
	if ep != c.ep {
		return
	}
	ep.Consume(len(b))
	c.lastRecv = c.s.Now()
	c.in = append(c.in, b...)
	off := 0
	for c.ep == ep {
		h, hdr, total, whole, bad := sim.NextFrame(c.in[off:], 0)
		if bad {
			c.abort()
			return
		}
		if !whole {
			break
		}
		p, err := c.dec.Decode(h, c.in[off+hdr:off+total])
		off += total
		if err != nil {
			c.abort()
			return
		}
		c.handle(p)
	}
	if c.ep == ep {
		c.in = c.in[:copy(c.in, c.in[off:])]
	}
}

func (c *mqttClient) handle(p packet.Packet) {
	switch p := p.(type) {
	case *packet.Connack:
		if c.state != mConnecting {
			return
		}
		if p.ReasonCode != 0 {
			c.Refused++ // an expired or revoked certificate: retried with backoff
			c.abort()
			return
		}
		c.dialT.Stop()
		c.armKeepAlive()
		if c.filter == "" {
			c.becomeUp()
			return
		}
		c.state = mSubscribing
		c.send(&packet.Subscribe{PacketID: c.nextPID(), Subscriptions: []packet.Subscription{{Filter: []byte(c.filter), QoS: packet.QoS1}}})
	case *packet.Suback:
		if c.state == mSubscribing {
			if len(p.ReasonCodes) != 1 || p.ReasonCodes[0].IsError() {
				c.abort()
				return
			}
			c.becomeUp()
		}
	case *packet.Publish:
		if p.QoS == packet.QoS1 {
			c.send(&packet.Ack{PacketType: packet.PUBACK, PacketID: p.PacketID})
		}
		if c.state == mUp && c.onMessage != nil {
			// The topic and payload alias the read buffer: copy them.
			c.onMessage(string(p.Topic), append([]byte(nil), p.Payload...))
		}
	case *packet.Pingresp:
	case *packet.Disconnect:
		// The broker ends the connection (takeover, kick); the close follows.
	}
}

func (c *mqttClient) becomeUp() {
	c.state = mUp
	c.attempt = 0
	if c.onUp != nil {
		c.onUp()
	}
}

func (c *mqttClient) nextPID() uint16 {
	c.pid++
	if c.pid == 0 {
		c.pid = 1
	}
	return c.pid
}

// publish sends a QoS 1 message; false when the link is not up.
func (c *mqttClient) publish(topic string, payload []byte) bool {
	if c.state != mUp {
		return false
	}
	c.send(&packet.Publish{QoS: packet.QoS1, PacketID: c.nextPID(), Topic: []byte(topic), Payload: payload})
	return true
}

// armKeepAlive keeps the connection honest both ways: a PINGREQ when
// nothing came from the broker for half the keep alive (a client that
// only publishes would otherwise never learn that its connection died
// behind a partition), and the connection is given up when nothing came
// for the whole keep alive.
func (c *mqttClient) armKeepAlive() {
	ep := c.ep
	c.kaT = c.clock.AfterFunc(c.keepAlive/2, func() {
		if c.ep != ep {
			return
		}
		now := c.s.Now()
		if now.Sub(c.lastRecv) >= c.keepAlive {
			c.abort() // dead or half-open
			return
		}
		if now.Sub(c.lastRecv) >= c.keepAlive/2 || now.Sub(c.lastSent) >= c.keepAlive/2 {
			c.send(&packet.Pingreq{})
		}
		c.armKeepAlive()
	})
}

// Closed implements sim.Handler.
func (c *mqttClient) Closed(ep *sim.Endpoint, reset bool) {
	if ep != c.ep {
		return
	}
	c.abort()
}

// Writable implements sim.Handler.
func (c *mqttClient) Writable(*sim.Endpoint) {}

func (c *mqttClient) abort() {
	c.lost()
	c.retry()
}

// lost ends the current connection and says so.
func (c *mqttClient) lost() {
	if c.ep != nil {
		c.ep.Abort()
		c.ep = nil
	}
	was := c.state
	c.state = mDown
	if c.kaT != nil {
		c.kaT.Stop()
	}
	if c.dialT != nil {
		c.dialT.Stop()
	}
	if was == mUp {
		c.Lost++
		if c.onDown != nil {
			c.onDown()
		}
	}
}

// retry schedules the next connection: full jitter over an exponential
// bound, so that clients that lost the broker together do not come back
// together.
func (c *mqttClient) retry() {
	if c.closed {
		return
	}
	bound := min(time.Second<<min(c.attempt, 6), time.Minute)
	c.attempt++
	d := time.Duration(c.rnd.Float64() * float64(bound))
	if c.retryT != nil {
		c.retryT.Stop()
	}
	c.retryT = c.clock.AfterFunc(d, c.dial)
}
