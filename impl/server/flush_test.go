package server

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// TestReaderHandsLargeOutputToWriter: a batch whose own output is more than
// the socket takes at once (a SUBSCRIBE that brings megabytes of retained
// messages to a client with a small receive buffer) is written by the reader
// as far as the socket takes it, and the rest by a writer goroutine, in
// order, without the reader blocking: the client gets it all, then the
// answer to its next packet.
func TestReaderHandsLargeOutputToWriter(t *testing.T) {
	const n, size = 600, 8 << 10
	cfg := testConfig(ListenerConfig{Name: "tcp", Type: TCP, Addr: "127.0.0.1:0", DefaultTenant: "default"})
	s := start(t, cfg)
	addr := s.Addr("tcp").String()

	pub, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	mqttConnect(t, pub, packet.V311, "pub")
	payload := make([]byte, size)
	for i := range n {
		b := encode(t, &packet.Publish{QoS: 1, PacketID: uint16(i + 1), Retain: true,
			Topic: []byte("r/" + strconv.Itoa(i)), Payload: payload}, packet.V311)
		if _, err := pub.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	pd := packet.NewDecoder(pub, packet.V311)
	_ = pub.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range n {
		if p, err := pd.Next(); err != nil || p.(*packet.Ack).PacketType != packet.PUBACK {
			t.Fatalf("PUBACK %d: %v", i, err)
		}
	}

	sub, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	_ = sub.(*net.TCPConn).SetReadBuffer(16 << 10)
	mqttConnect(t, sub, packet.V311, "sub")
	b := encode(t, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("r/#"), QoS: 1}}}, packet.V311)
	b = append(b, encode(t, &packet.Pingreq{}, packet.V311)...)
	if _, err := sub.Write(b); err != nil {
		t.Fatal(err)
	}
	sd := packet.NewDecoder(sub, packet.V311)
	_ = sub.SetReadDeadline(time.Now().Add(20 * time.Second))
	var got []packet.Type
	publishes := 0
	for {
		p, err := sd.Next()
		if err != nil {
			t.Fatalf("after %d publishes: %v", publishes, err)
		}
		switch p.(type) {
		case *packet.Publish:
			publishes++
			continue
		}
		got = append(got, p.Type())
		if p.Type() == packet.PINGRESP {
			break
		}
	}
	// The retained messages beyond the in-flight window wait for
	// acknowledgements; those in it are more than the socket takes at once.
	if publishes*size < 512<<10 || len(got) != 2 || got[0] != packet.SUBACK {
		t.Fatalf("got %d publishes and %v, want SUBACK, at least %d publishes, PINGRESP", publishes, got, (512<<10)/size)
	}
}
