package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// conn3 is an MQTT 3.1.1 connection on paho.mqtt.golang (paho.golang
// speaks 5.0 only). Each connection gets a new client with automatic
// reconnection off and an empty in-memory store, so that the library
// never sends anything again on its own: as with 5.0, the bridge's queue
// is the session and endpoint.run the reconnection loop.
//
// Acknowledgements (manual: SetAutoAckDisabled) and publish outcomes go
// through two small goroutines per connection, so that the queue's
// committer and the forwarder never block on the library's channels.
type conn3 struct {
	e        *endpoint
	gen      uint64
	cli      mqtt.Client
	doneOnce sync.Once
	doneCh   chan struct{}

	mu     sync.Mutex
	acks   []mqtt.Message
	waits  []pubWait
	wakeA  chan struct{}
	wakeW  chan struct{}
	closed bool
}

type pubWait struct {
	seq uint64
	tok mqtt.Token
}

func dial3(ctx context.Context, e *endpoint, gen uint64, first bool) (conn, error) {
	c := &conn3{e: e, gen: gen, doneCh: make(chan struct{}), wakeA: make(chan struct{}, 1), wakeW: make(chan struct{}, 1)}
	o := mqtt.NewClientOptions()
	o.AddBroker(e.addr.url.String())
	o.SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) { return e.dialNet(ctx) })
	o.SetClientID(e.cfg.ClientID)
	o.SetUsername(e.cfg.Username)
	o.SetPassword(e.cfg.Password)
	o.SetProtocolVersion(4)
	o.SetCleanSession(*e.cfg.SessionExpiry == 0 || first && e.cfg.CleanStart)
	o.SetKeepAlive(*e.cfg.KeepAlive)
	o.SetPingTimeout(e.cfg.ConnectTimeout)
	o.SetConnectTimeout(e.cfg.ConnectTimeout)
	o.SetWriteTimeout(e.cfg.ConnectTimeout)
	o.SetAutoReconnect(false)
	o.SetConnectRetry(false)
	o.SetResumeSubs(false)
	o.SetOrderMatters(true) // handlers run one at a time, in arrival order
	o.SetAutoAckDisabled(true)
	o.SetStore(mqtt.NewMemoryStore())
	o.SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
		r := &record{qos: m.Qos(), retain: m.Retained(), topic: m.Topic(), payload: m.Payload()}
		e.ev.message(r, func() { c.ack(m) }, func() { e.kick(gen) })
	})
	o.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		e.setErr(err)
		c.finish()
	})
	c.cli = mqtt.NewClient(o)
	tok := c.cli.Connect()
	if !waitToken(ctx, tok) {
		c.cli.Disconnect(0)
		return nil, fmt.Errorf("connect: %w", ctx.Err())
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	go c.acker()
	go c.waiter()
	if len(e.subs) > 0 {
		filters := map[string]byte{}
		for _, s := range e.subs {
			filters[s.filter] = s.qos
		}
		st := c.cli.SubscribeMultiple(filters, nil)
		sctx, cancel := context.WithTimeout(context.Background(), e.cfg.ConnectTimeout)
		ok := waitToken(sctx, st)
		cancel()
		if !ok || st.Error() != nil {
			c.close(false)
			if st.Error() != nil {
				return nil, fmt.Errorf("subscribe: %w", st.Error())
			}
			return nil, errors.New("subscribe: no SUBACK in time")
		}
		for f, code := range st.(*mqtt.SubscribeToken).Result() {
			if code >= 0x80 {
				e.log.Error("bridge subscription refused", "filter", f, "reason", fmt.Sprintf("0x%02X", code))
			}
		}
	}
	return c, nil
}

func waitToken(ctx context.Context, t mqtt.Token) bool {
	select {
	case <-t.Done():
		return true
	case <-ctx.Done():
		return false
	}
}

func (c *conn3) finish() {
	c.doneOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.acks, c.waits = nil, nil
		c.mu.Unlock()
		close(c.doneCh)
	})
}

func (c *conn3) done() <-chan struct{} { return c.doneCh }

func (c *conn3) limits() limits {
	return limits{receiveMax: 65535, maxQoS: 2, retain: true}
}

// close ends the connection. 3.1.1 has no way to say "drop me and send
// again" other than closing, and its DISCONNECT keeps a persistent
// session, so both cases send one; a clean close first gives the
// library up to drainTimeout to send what is waiting (acknowledgements).
func (c *conn3) close(clean bool) {
	var quiesce uint
	if clean {
		quiesce = uint(drainTimeout / time.Millisecond)
	}
	c.cli.Disconnect(quiesce)
	c.finish()
}

func (c *conn3) ack(m mqtt.Message) {
	if m.Qos() == 0 {
		return
	}
	c.mu.Lock()
	if !c.closed {
		c.acks = append(c.acks, m)
	}
	c.mu.Unlock()
	signal(c.wakeA)
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// acker sends acknowledgements in the order they were released.
func (c *conn3) acker() {
	for {
		select {
		case <-c.doneCh:
			return
		case <-c.wakeA:
		}
		c.mu.Lock()
		acks := c.acks
		c.acks = nil
		c.mu.Unlock()
		for _, m := range acks {
			m.Ack()
		}
	}
}

// waiter reports publish outcomes, oldest first.
func (c *conn3) waiter() {
	for {
		select {
		case <-c.doneCh:
			return
		case <-c.wakeW:
		}
		for {
			c.mu.Lock()
			if len(c.waits) == 0 {
				c.mu.Unlock()
				break
			}
			w := c.waits[0]
			c.waits = c.waits[1:]
			c.mu.Unlock()
			select {
			case <-c.doneCh:
				return
			case <-w.tok.Done():
			}
			if w.tok.Error() != nil {
				// A 3.1.1 PUBACK cannot refuse anything: an error is the
				// connection failing. The message stays queued.
				c.e.setErr(w.tok.Error())
				c.close(false)
				return
			}
			c.e.ev.acked(c.gen, w.seq, 0)
		}
	}
}

func (c *conn3) publish(r *record, qos byte, retain bool) error {
	tok := c.cli.Publish(r.topic, qos, retain, r.payload)
	if qos == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), c.e.cfg.ConnectTimeout)
		defer cancel()
		if !waitToken(ctx, tok) || tok.Error() != nil {
			return errDown
		}
		return nil
	}
	select {
	case <-tok.Done():
		if tok.Error() != nil {
			return fmt.Errorf("%w: %v", errDown, tok.Error())
		}
	default:
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errDown
	}
	c.waits = append(c.waits, pubWait{r.seq, tok})
	c.mu.Unlock()
	signal(c.wakeW)
	return nil
}
