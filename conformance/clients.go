package conformance

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	paho "github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// V5Client is a paho.golang (MQTT 5.0) client whose received messages
// arrive on Messages.
type V5Client struct {
	*paho.Client
	Messages chan *paho.Publish
	ClientID string
}

// NewV5 connects a paho.golang client. connect may be nil; the suite's
// credentials and a unique client id are filled in when empty. The client
// disconnects when the test ends.
func NewV5(t testing.TB, connect *paho.Connect) (*V5Client, *paho.Connack) {
	t.Helper()
	checkDeviation(t)
	conn, err := target.Dial()
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	msgs := make(chan *paho.Publish, 1024)
	c := paho.NewClient(paho.ClientConfig{
		// paho writes from several goroutines (a PINGREQ, acknowledgements)
		// and writes a packet in parts: over TLS, unlocked, their parts
		// would interleave (the library says to wrap the conn so).
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				select {
				case msgs <- pr.Packet:
				default:
					t.Errorf("V5Client: message buffer full")
				}
				return true, nil
			}},
		PacketTimeout: waitFor,
	})
	if connect == nil {
		connect = &paho.Connect{CleanStart: true}
	}
	if connect.ClientID == "" {
		connect.ClientID = uniqueID(t)
	}
	if connect.KeepAlive == 0 {
		connect.KeepAlive = 60
	}
	if target.Username != "" && !connect.UsernameFlag {
		connect.UsernameFlag, connect.Username = true, target.Username
	}
	if target.Password != "" && !connect.PasswordFlag {
		connect.PasswordFlag, connect.Password = true, []byte(target.Password)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ack, err := c.Connect(ctx, connect)
	if err != nil {
		conn.Close()
		t.Fatalf("paho connect: %v", err)
	}
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
		conn.Close()
	})
	return &V5Client{Client: c, Messages: msgs, ClientID: connect.ClientID}, ack
}

// Sub subscribes to one filter at qos and fails the test unless it is granted.
func (c *V5Client) Sub(t testing.TB, filter string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ack, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil {
		t.Fatalf("subscribe %q: %v", filter, err)
	}
	if len(ack.Reasons) != 1 || ack.Reasons[0] >= 0x80 {
		t.Fatalf("subscribe %q refused: %v", filter, ack.Reasons)
	}
}

// Pub publishes and waits for the QoS flow to complete.
func (c *V5Client) Pub(t testing.TB, p *paho.Publish) *paho.PublishResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	resp, err := c.Publish(ctx, p)
	if err != nil {
		t.Fatalf("publish to %q: %v", p.Topic, err)
	}
	return resp
}

// Receive returns the next message within waitFor.
func (c *V5Client) Receive(t testing.TB) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.Messages:
		return m
	case <-time.After(waitFor):
		t.Fatalf("no message within %v", waitFor)
	}
	return nil
}

// ExpectNoMessage fails if a message arrives within quietPeriod.
func (c *V5Client) ExpectNoMessage(t testing.TB) {
	t.Helper()
	select {
	case m := <-c.Messages:
		t.Fatalf("unexpected message on %q: %q", m.Topic, m.Payload)
	case <-time.After(quietPeriod):
	}
}

// V311Client is a paho.mqtt.golang (MQTT 3.1.1) client whose received
// messages arrive on Messages.
type V311Client struct {
	mqtt.Client
	Messages chan mqtt.Message
	ClientID string
}

// NewV311 connects a paho.mqtt.golang client; configure may adjust the
// options (clean session, will, ...). It disconnects when the test ends.
func NewV311(t testing.TB, configure func(*mqtt.ClientOptions)) *V311Client {
	t.Helper()
	checkDeviation(t)
	msgs := make(chan mqtt.Message, 1024)
	id := uniqueID(t)
	scheme := "tcp"
	if target.TLS != nil {
		scheme = "ssl"
	}
	o := mqtt.NewClientOptions().
		AddBroker(fmt.Sprintf("%s://%s", scheme, target.NextAddr())).
		SetClientID(id).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(60 * time.Second).
		SetConnectTimeout(waitFor).
		SetOrderMatters(true).
		SetTLSConfig(target.TLS).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			select {
			case msgs <- m:
			default:
				t.Errorf("V311Client: message buffer full")
			}
		})
	if target.Username != "" {
		o.SetUsername(target.Username)
	}
	if target.Password != "" {
		o.SetPassword(target.Password)
	}
	if configure != nil {
		configure(o)
	}
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("paho 3.1.1 connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return &V311Client{Client: c, Messages: msgs, ClientID: o.ClientID}
}

// Sub subscribes to filter at qos, delivering to Messages.
func (c *V311Client) Sub(t testing.TB, filter string, qos byte) {
	t.Helper()
	tok := c.Subscribe(filter, qos, nil)
	if !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("subscribe %q: %v", filter, tok.Error())
	}
}

// Pub publishes and waits for the QoS flow to complete.
func (c *V311Client) Pub(t testing.TB, topic string, qos byte, retained bool, payload []byte) {
	t.Helper()
	tok := c.Publish(topic, qos, retained, payload)
	if !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("publish to %q: %v", topic, tok.Error())
	}
}

// Receive returns the next message within waitFor.
func (c *V311Client) Receive(t testing.TB) mqtt.Message {
	t.Helper()
	select {
	case m := <-c.Messages:
		return m
	case <-time.After(waitFor):
		t.Fatalf("no message within %v", waitFor)
	}
	return nil
}

// ExpectNoMessage fails if a message arrives within quietPeriod.
func (c *V311Client) ExpectNoMessage(t testing.TB) {
	t.Helper()
	select {
	case m := <-c.Messages:
		t.Fatalf("unexpected message on %q: %q", m.Topic(), m.Payload())
	case <-time.After(quietPeriod):
	}
}
