package conformance

// MQTT over WebSocket (chapter 6) and the transport rules of chapter 7.
// The WebSocket endpoint comes from -broker-ws; against the suite's own
// mosquitto a second mosquitto with a WebSocket listener is started.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/coder/websocket"
	paho "github.com/eclipse/paho.golang/paho"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// TestWebSocket runs the WebSocket tests against one endpoint, started
// once for all of them.
func TestWebSocket(t *testing.T) {
	t.Parallel()
	ep := wsBroker(t)
	for _, offer := range [][]string{{"mqtt"}, {"chat", "mqtt"}, {"mqtt", "mqttv3.1"}, {"mqttv3.1", "mqtt"}} {
		t.Run("subprotocol offered "+strings.Join(offer, ","), func(t *testing.T) { t.Parallel(); wsSubprotocol(t, ep, offer) })
	}
	t.Run("non-MQTT subprotocol", func(t *testing.T) { t.Parallel(); wsOtherSubprotocol(t, ep) })
	for _, v := range wireV5V311 {
		t.Run("binary frames/"+wireV(v), func(t *testing.T) { t.Parallel(); wsBinaryFrames(t, ep, v) })
		t.Run("packets split across frames/"+wireV(v), func(t *testing.T) { t.Parallel(); wsSplit(t, ep, v) })
		t.Run("packets packed into one frame/"+wireV(v), func(t *testing.T) { t.Parallel(); wsPacked(t, ep, v) })
		t.Run("text frame closes/"+wireV(v), func(t *testing.T) { t.Parallel(); wsTextFrame(t, ep, v, false) })
		t.Run("text frame before CONNECT closes/"+wireV(v), func(t *testing.T) { t.Parallel(); wsTextFrame(t, ep, v, true) })
		t.Run("WebSocket and TCP clients meet/"+wireV(v), func(t *testing.T) { t.Parallel(); wsAndTCP(t, ep, v) })
	}
}

// wsSubprotocol offers "mqtt" among other subprotocols, among them the
// name MQTT 3.1 used: the broker must select "mqtt" [v5 MQTT-6.0.0-4]
// [v3.1.1 MQTT-6.0.0-4].
func wsSubprotocol(t *testing.T, ep wsEndpoint, offer []string) {
	c := wsDial(t, ep, offer...)
	if got := c.Subprotocol(); got != "mqtt" {
		t.Fatalf("offered %q, the broker selected %q; want \"mqtt\"", offer, got)
	}
}

// wsOtherSubprotocol offers only a subprotocol that is not MQTT's: the
// broker may refuse the handshake, but must not select anything but
// "mqtt" [v5 MQTT-6.0.0-4] [v3.1.1 MQTT-6.0.0-4].
func wsOtherSubprotocol(t *testing.T, ep wsEndpoint) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, ep.URL, &websocket.DialOptions{Subprotocols: []string{"chat"}})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return // refused: allowed
	}
	defer c.CloseNow()
	if got := c.Subprotocol(); got != "" && got != "mqtt" {
		t.Fatalf("offered only \"chat\", the broker selected %q", got)
	}
}

// wsRead reads WebSocket messages until one whole MQTT packet has
// arrived, checking that every message is binary [v5 MQTT-6.0.0-1]
// [v3.1.1 MQTT-6.0.0-1]. buf carries bytes of following packets between
// calls.
func wsRead(t *testing.T, c *websocket.Conn, v packet.Version, buf *[]byte) packet.Packet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for {
		if p, n := wsParse(t, *buf, v); p != nil {
			*buf = (*buf)[n:]
			return p
		}
		typ, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("reading from the WebSocket: %v", err)
		}
		if typ != websocket.MessageBinary {
			t.Fatalf("broker sent a %v message %q; MQTT packets travel in binary frames", typ, data)
		}
		*buf = append(*buf, data...)
	}
}

// wsParse decodes the first whole packet in b, returning it and its length,
// or nil when b holds only part of a packet.
func wsParse(t *testing.T, b []byte, v packet.Version) (packet.Packet, int) {
	t.Helper()
	if len(b) < 2 {
		return nil, 0
	}
	rd := packet.NewReader(bytes.NewReader(b), len(b))
	h, body, err := rd.ReadPacket()
	if err != nil {
		return nil, 0 // incomplete
	}
	p := packet.New(h.Type)
	if p == nil {
		t.Fatalf("broker sent reserved packet type %d", h.Type)
	}
	if err := p.Decode(h, bytes.Clone(body), v); err != nil {
		t.Fatalf("broker sent an undecodable %s: %v", h.Type, err)
	}
	return p, h.Size() + h.Remaining
}

// wsWrite sends b as one binary WebSocket message.
func wsWrite(t *testing.T, c *websocket.Conn, b []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageBinary, b); err != nil {
		t.Fatalf("WebSocket write: %v", err)
	}
}

// wsConnectBytes is the CONNECT a raw client of version v sends.
func wsConnectBytes(t *testing.T, v packet.Version) []byte {
	t.Helper()
	r := &Raw{t: t, V: v}
	return wire.encode(t, r.ConnectPacket(ConnectOpts{}), v)
}

func wsExpect(t *testing.T, c *websocket.Conn, v packet.Version, buf *[]byte, want packet.Type) packet.Packet {
	t.Helper()
	p := wsRead(t, c, v, buf)
	if p.Type() != want {
		t.Fatalf("got %s, want %s", Describe(p), want)
	}
	return p
}

// wsBinaryFrames runs a whole exchange and checks every message the broker
// sends is binary [v5 MQTT-6.0.0-1] [v3.1.1 MQTT-6.0.0-1].
func wsBinaryFrames(t *testing.T, ep wsEndpoint, v packet.Version) {
	c := wsDial(t, ep, "mqtt")
	var buf []byte
	topic := Topic(t)
	wsWrite(t, c, wsConnectBytes(t, v))
	if ack := wsExpect(t, c, v, &buf, packet.CONNACK).(*packet.Connack); ack.ReasonCode != packet.Success {
		t.Fatalf("got %s", Describe(ack))
	}
	wsWrite(t, c, wire.encode(t, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte(topic), QoS: 1}}}, v))
	wsExpect(t, c, v, &buf, packet.SUBACK)
	wsWrite(t, c, wire.encode(t, &packet.Publish{QoS: 1, PacketID: 2, Topic: []byte(topic), Payload: []byte("ws")}, v))
	var gotAck, gotMsg bool
	for !gotAck || !gotMsg {
		switch p := wsRead(t, c, v, &buf).(type) {
		case *packet.Ack:
			gotAck = p.PacketType == packet.PUBACK && p.PacketID == 2
		case *packet.Publish:
			gotMsg = string(p.Payload) == "ws"
			wsWrite(t, c, wire.encode(t, &packet.Ack{PacketType: packet.PUBACK, PacketID: p.PacketID}, v))
		default:
			t.Fatalf("unexpected %s", Describe(p))
		}
	}
	wsWrite(t, c, wire.encode(t, &packet.Pingreq{}, v))
	wsExpect(t, c, v, &buf, packet.PINGRESP)
}

// wsSplit sends packets cut into pieces: one byte per WebSocket message,
// and one message fragmented into several frames, cut inside the
// Remaining Length and inside strings. The broker must reassemble them
// [v5 MQTT-6.0.0-2] [v3.1.1 MQTT-6.0.0-2].
func wsSplit(t *testing.T, ep wsEndpoint, v packet.Version) {
	c := wsDial(t, ep, "mqtt")
	var buf []byte
	topic := Topic(t)
	for _, b := range wsConnectBytes(t, v) {
		wsWrite(t, c, []byte{b})
	}
	if ack := wsExpect(t, c, v, &buf, packet.CONNACK).(*packet.Connack); ack.ReasonCode != packet.Success {
		t.Fatalf("got %s", Describe(ack))
	}
	// A SUBSCRIBE whose remaining length takes two bytes, in a message
	// of several frames cut after the first length byte and mid-filter.
	long := topic + "/" + string(bytes.Repeat([]byte("s"), 150))
	sub := wire.encode(t, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte(long), QoS: 1}}}, v)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	w, err := c.Writer(ctx, websocket.MessageBinary)
	if err != nil {
		t.Fatalf("WebSocket writer: %v", err)
	}
	for _, part := range [][]byte{sub[:2], sub[2:9], sub[9:60], sub[60:]} {
		if _, err := w.Write(part); err != nil {
			t.Fatalf("WebSocket frame: %v", err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("WebSocket final frame: %v", err)
	}
	if ack := wsExpect(t, c, v, &buf, packet.SUBACK).(*packet.Suback); ack.PacketID != 1 {
		t.Fatalf("got %s", Describe(ack))
	}
	// A PUBLISH spread over two messages, the second also carrying the
	// start of a PINGREQ whose last byte comes alone.
	pub := wire.encode(t, &packet.Publish{Topic: []byte(long), Payload: []byte("split")}, v)
	wsWrite(t, c, pub[:len(pub)/2])
	wsWrite(t, c, append(bytes.Clone(pub[len(pub)/2:]), 0xC0))
	wsWrite(t, c, []byte{0x00})
	if p := wsExpect(t, c, v, &buf, packet.PUBLISH).(*packet.Publish); string(p.Payload) != "split" || string(p.Topic) != long {
		t.Fatalf("got %s", Describe(p))
	}
	wsExpect(t, c, v, &buf, packet.PINGRESP)
}

// wsPacked sends several packets in one WebSocket message: the broker must
// handle each [v5 MQTT-6.0.0-2] [v3.1.1 MQTT-6.0.0-2].
func wsPacked(t *testing.T, ep wsEndpoint, v packet.Version) {
	c := wsDial(t, ep, "mqtt")
	var buf []byte
	topic := Topic(t)
	var all []byte
	all = append(all, wsConnectBytes(t, v)...)
	all = append(all, wire.encode(t, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte(topic)}}}, v)...)
	for i := range 3 {
		all = append(all, wire.encode(t, &packet.Publish{Topic: []byte(topic), Payload: []byte(fmt.Sprint(i))}, v)...)
	}
	all = append(all, wire.encode(t, &packet.Pingreq{}, v)...)
	wsWrite(t, c, all)
	if ack := wsExpect(t, c, v, &buf, packet.CONNACK).(*packet.Connack); ack.ReasonCode != packet.Success {
		t.Fatalf("got %s", Describe(ack))
	}
	wsExpect(t, c, v, &buf, packet.SUBACK)
	var got []string
	pong := false
	for len(got) < 3 || !pong {
		switch p := wsRead(t, c, v, &buf).(type) {
		case *packet.Publish:
			got = append(got, string(p.Payload))
		case *packet.Pingresp:
			pong = true
		default:
			t.Fatalf("unexpected %s", Describe(p))
		}
	}
	if fmt.Sprint(got) != "[0 1 2]" {
		t.Fatalf("messages %v, want [0 1 2]", got)
	}
}

// wsTextFrame sends a packet in a text frame, before or after CONNECT: the
// broker must close the network connection [v5 MQTT-6.0.0-1]
// [v3.1.1 MQTT-6.0.0-1].
func wsTextFrame(t *testing.T, ep wsEndpoint, v packet.Version, beforeConnect bool) {
	c := wsDial(t, ep, "mqtt")
	var buf []byte
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	text := wire.encode(t, &packet.Pingreq{}, v)
	if beforeConnect {
		text = wsConnectBytes(t, v)
	} else {
		wsWrite(t, c, wsConnectBytes(t, v))
		wsExpect(t, c, v, &buf, packet.CONNACK)
	}
	if err := c.Write(ctx, websocket.MessageText, text); err != nil {
		return // already closed
	}
	for {
		typ, data, err := c.Read(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("connection still open %v after a text frame", waitFor)
		}
		if err != nil {
			return // closed
		}
		buf = append(buf, data...)
		if p, _ := wsParse(t, buf, v); p != nil && typ == websocket.MessageBinary {
			if d, ok := p.(*packet.Disconnect); ok && v == packet.V5 && d.ReasonCode.IsError() {
				continue // a 5.0 broker may say why before closing
			}
			t.Fatalf("after a text frame the broker answered %s instead of closing", Describe(p))
		}
	}
}

// wsAndTCP checks that WebSocket and TCP clients of the same broker
// exchange messages both ways.
func wsAndTCP(t *testing.T, ep wsEndpoint, v packet.Version) {
	topic := Topic(t)
	ws, _ := wsDialRaw(t, ep, v)
	ws.Connect(ConnectOpts{})
	ws.Subscribe(packet.Subscription{Filter: []byte(topic + "/to-ws"), QoS: 1})
	tcp := wsDialRawTCP(t, ep, v)
	tcp.Connect(ConnectOpts{})
	tcp.Subscribe(packet.Subscription{Filter: []byte(topic + "/to-tcp"), QoS: 1})

	tcp.Publish(&packet.Publish{QoS: 1, Topic: []byte(topic + "/to-ws"), Payload: []byte("a")})
	if p := ws.ExpectPublish(); string(p.Payload) != "a" {
		t.Fatalf("WebSocket client got %s", Describe(p))
	} else {
		ws.Ack(p)
	}
	ws.Publish(&packet.Publish{QoS: 1, Topic: []byte(topic + "/to-tcp"), Payload: []byte("b")})
	if p := tcp.ExpectPublish(); string(p.Payload) != "b" {
		t.Fatalf("TCP client got %s", Describe(p))
	} else {
		tcp.Ack(p)
	}
}

// TestTransport checks the transport rules a client can see: the broker
// serves MQTT over an ordered, lossless, two-way byte stream (TCP, or TLS
// over it) [v3.1.1 MQTT-7.1.1-1] [v5 MQTT-4.2-1], and off-the-shelf client
// libraries using no extensions interoperate with it [v3.1.1 MQTT-7.0.0-2]:
// paho's 3.1.1 and 5.0 clients with default options connect, subscribe and
// get back, in order, what they published.
func TestTransport(t *testing.T) {
	t.Parallel()
	want := "[0 1 2 3 4]"
	t.Run("v3.1.1", func(t *testing.T) {
		t.Parallel()
		topic := Topic(t)
		c := NewV311(t, nil)
		c.Sub(t, topic, 1)
		for i := range 5 {
			c.Pub(t, topic, 1, false, []byte(fmt.Sprint(i)))
		}
		var got []string
		for range 5 {
			got = append(got, string(c.Receive(t).Payload()))
		}
		if fmt.Sprint(got) != want {
			t.Fatalf("received %v, want %s", got, want)
		}
	})
	t.Run("v5", func(t *testing.T) {
		t.Parallel()
		topic := Topic(t)
		c, _ := NewV5(t, nil)
		c.Sub(t, topic, 1)
		for i := range 5 {
			c.Pub(t, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(fmt.Sprint(i))})
		}
		var got []string
		for range 5 {
			got = append(got, string(c.Receive(t).Payload))
		}
		if fmt.Sprint(got) != want {
			t.Fatalf("received %v, want %s", got, want)
		}
	})
}
