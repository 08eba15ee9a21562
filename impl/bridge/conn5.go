package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session"
)

// conn5 is an MQTT 5.0 connection on paho.golang.
//
// The bridge drives paho.Client itself rather than through autopaho's
// ConnectionManager: the ConnectionManager only offers a blocking Publish
// (one message in flight per call, and concurrent calls do not keep their
// order on the wire), while forwarding at speed needs many QoS 1 messages
// in flight in queue order, which is PublishWithOptions with
// PublishMethod_AsyncSend from one goroutine. The reconnection loop is
// endpoint.run; its backoff is autopaho's.
type conn5 struct {
	cli  *paho.Client
	nc   net.Conn
	sess *session5
	lim  limits
}

// ackInterval is how often paho sends the acknowledgements the bridge
// released (manual acknowledgement batches them, in order).
const ackInterval = 5 * time.Millisecond

// drainTimeout bounds how long a clean close waits for acknowledgements.
const drainTimeout = 250 * time.Millisecond

func dial5(ctx context.Context, e *endpoint, gen uint64, first bool) (conn, error) {
	nc, err := e.dialNet(ctx)
	if err != nil {
		return nil, err
	}
	sess := newSession5(
		func(seq uint64, code byte) { e.ev.acked(gen, seq, code) },
		nil,
	)
	var once sync.Once
	cli := paho.NewClient(paho.ClientConfig{
		ClientID:                   e.cfg.ClientID,
		Conn:                       nc,
		Session:                    sess,
		EnableManualAcknowledgment: true,
		SendAcksInterval:           ackInterval,
		PacketTimeout:              e.cfg.ConnectTimeout,
		OnClientError:              func(err error) { once.Do(func() { e.setErr(err) }) },
		OnServerDisconnect: func(d *paho.Disconnect) {
			reason := ""
			if d.Properties != nil {
				reason = d.Properties.ReasonString
			}
			once.Do(func() { e.setErr(fmt.Errorf("server sent DISCONNECT 0x%02X %s", d.ReasonCode, reason)) })
		},
	})
	cli.AddOnPublishReceived(func(pr paho.PublishReceived) (bool, error) {
		p := pr.Packet
		r := fromPaho(p)
		ack := func() {
			if p.QoS == 0 {
				return
			}
			// Client.Ack releases the acknowledgement to paho's tracker,
			// which sends acknowledgements in arrival order. A PUBLISH
			// that arrives right after CONNACK can reach the tracker
			// before Connect resets it (paho v0.23 starts its reader
			// first), and is then unknown to it: acknowledge that one
			// directly, or the broker would keep it in flight until the
			// next reconnection. Once the connection is gone both are
			// no-ops and the broker sends the message again.
			if err := pr.Client.Ack(p); errors.Is(err, paho.ErrPacketNotFound) {
				_ = sess.Ack(p.Packet())
			}
		}
		e.ev.message(r, ack, func() { e.kick(gen) })
		return true, nil
	})
	keepAlive := uint16(*e.cfg.KeepAlive / time.Second)
	expiry := uint32(*e.cfg.SessionExpiry / time.Second)
	recvMax := uint16(e.window)
	cp := &paho.Connect{
		ClientID:   e.cfg.ClientID,
		KeepAlive:  keepAlive,
		CleanStart: first && e.cfg.CleanStart,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry, ReceiveMaximum: &recvMax},
	}
	if e.cfg.Username != "" {
		cp.Username, cp.UsernameFlag = e.cfg.Username, true
	}
	if e.cfg.Password != "" {
		cp.Password, cp.PasswordFlag = []byte(e.cfg.Password), true
	}
	ca, err := cli.Connect(ctx, cp)
	if err != nil {
		nc.Close()
		if ca != nil && ca.ReasonCode >= 0x80 {
			reason := ""
			if ca.Properties != nil {
				reason = ca.Properties.ReasonString
			}
			return nil, fmt.Errorf("CONNACK 0x%02X %s", ca.ReasonCode, reason)
		}
		return nil, err
	}
	c := &conn5{cli: cli, nc: nc, sess: sess, lim: limits{receiveMax: 65535, maxQoS: 2, retain: true}}
	if p := ca.Properties; p != nil {
		if p.ReceiveMaximum != nil {
			c.lim.receiveMax = int(*p.ReceiveMaximum)
		}
		if p.MaximumQoS != nil {
			c.lim.maxQoS = *p.MaximumQoS
		}
		c.lim.retain = p.RetainAvailable
		if p.MaximumPacketSize != nil {
			c.lim.maxPacket = *p.MaximumPacketSize
		}
	}
	if len(e.subs) > 0 {
		s := &paho.Subscribe{}
		for _, sub := range e.subs {
			// No Local: what the bridge publishes on this side never comes
			// back to it. Retain As Published keeps the RETAIN flag, so a
			// retained message stays retained on the other side. Retain
			// Handling 1: retained messages only for a new subscription,
			// not again on every reconnection.
			s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{
				Topic: sub.filter, QoS: sub.qos, NoLocal: true, RetainAsPublished: true, RetainHandling: 1,
			})
		}
		sctx, cancel := context.WithTimeout(context.Background(), e.cfg.ConnectTimeout)
		sa, err := cli.Subscribe(sctx, s)
		cancel()
		if sa != nil {
			for i, code := range sa.Reasons {
				if code >= 0x80 && i < len(e.subs) {
					e.log.Error("bridge subscription refused", "filter", e.subs[i].filter, "reason", fmt.Sprintf("0x%02X", code))
				}
			}
		}
		if err != nil && sa == nil {
			c.close(false)
			<-cli.Done()
			return nil, fmt.Errorf("subscribe: %w", err)
		}
	}
	return c, nil
}

func (c *conn5) done() <-chan struct{} { return c.cli.Done() }

func (c *conn5) limits() limits { return c.lim }

func (c *conn5) close(clean bool) {
	if clean {
		// Give the acknowledgements of what was received a moment to go
		// out (the queue commits them, paho's tracker sends them every
		// ackInterval): whatever is still unacknowledged at DISCONNECT
		// comes again on the next run, a repeat on the other side.
		deadline := time.Now().Add(drainTimeout)
		for c.sess.unacknowledged() > 0 && time.Now().Before(deadline) {
			time.Sleep(ackInterval) // waiting for paho's periodic flush, which has no signal
		}
		// Reason 0: the session stays (Session Expiry from CONNECT), the
		// will (none) is not published.
		_ = c.cli.Disconnect(&paho.Disconnect{ReasonCode: 0})
		return
	}
	c.nc.Close() // paho's reader fails and the client shuts down
}

func (c *conn5) publish(r *record, qos byte, retain bool) error {
	p := toPaho(r, qos, retain)
	_, err := c.cli.PublishWithOptions(withSeq(context.Background(), r.seq), p, paho.PublishOptions{Method: paho.PublishMethod_AsyncSend})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, paho.ErrInvalidArguments):
		return fmt.Errorf("%w: %v", errRejected, err)
	case errors.Is(err, session.ErrNoConnection), errors.Is(err, paho.ErrNetworkErrorAfterStored):
		return errDown
	default:
		return fmt.Errorf("%w: %v", errDown, err)
	}
}

// fromPaho converts a received PUBLISH into a record (topic not yet
// mapped). A Message Expiry Interval becomes an absolute instant.
func fromPaho(p *paho.Publish) *record {
	r := &record{qos: p.QoS, retain: p.Retain, topic: p.Topic, payload: p.Payload}
	if pp := p.Properties; pp != nil {
		if pp.PayloadFormat != nil {
			r.hasFormat, r.payloadFormat = true, *pp.PayloadFormat
		}
		if pp.MessageExpiry != nil {
			r.expiry = time.Now().Add(time.Duration(*pp.MessageExpiry) * time.Second).UnixNano()
		}
		r.contentType = pp.ContentType
		r.responseTopic = pp.ResponseTopic
		r.correlationData = pp.CorrelationData
		for _, u := range pp.User {
			r.user = append(r.user, userProp{u.Key, u.Value})
		}
	}
	return r
}

func toPaho(r *record, qos byte, retain bool) *paho.Publish {
	p := &paho.Publish{QoS: qos, Retain: retain, Topic: r.topic, Payload: r.payload, Properties: &paho.PublishProperties{
		ContentType: r.contentType, ResponseTopic: r.responseTopic, CorrelationData: r.correlationData,
	}}
	if r.hasFormat {
		f := r.payloadFormat
		p.Properties.PayloadFormat = &f
	}
	if r.expiry != 0 {
		left := remaining(r.expiry)
		p.Properties.MessageExpiry = &left
	}
	for _, u := range r.user {
		p.Properties.User = append(p.Properties.User, paho.UserProperty{Key: u.key, Value: u.value})
	}
	return p
}

// remaining is the Message Expiry Interval left, in whole seconds rounded
// up (at least 1: callers drop expired messages before sending).
func remaining(expiry int64) uint32 {
	d := time.Until(time.Unix(0, expiry))
	s := (d + time.Second - 1) / time.Second
	if s < 1 {
		s = 1
	}
	if s > 1<<32-1 {
		s = 1<<32 - 1
	}
	return uint32(s)
}
