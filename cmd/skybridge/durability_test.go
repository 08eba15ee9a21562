package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// rawClient is a minimal MQTT client on impl/packet for the kill -9 test.
type rawClient struct {
	t       *testing.T
	c       net.Conn
	v       packet.Version
	packets chan packet.Packet
	mu      sync.Mutex
}

func dialClient(t *testing.T, addr string, v packet.Version, connect *packet.Connect) (*rawClient, *packet.Connack) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	rc := &rawClient{t: t, c: c, v: v, packets: make(chan packet.Packet, 1<<16)}
	go func() {
		d := packet.NewDecoder(c, v)
		for {
			p, err := d.Next()
			if err != nil {
				close(rc.packets)
				return
			}
			// Own the packet: the decoder reuses its memory.
			b, _ := packet.Encode(p, v)
			cp := packet.New(p.Type())
			r := packet.NewReader(bytesReader(b), 0)
			h, body, _ := r.ReadPacket()
			_ = cp.Decode(h, append([]byte(nil), body...), v)
			rc.packets <- cp
		}
	}()
	rc.send(connect)
	select {
	case p := <-rc.packets:
		ack, ok := p.(*packet.Connack)
		if !ok {
			t.Fatalf("got %s, want CONNACK", packet.Format(p))
		}
		return rc, ack
	case <-time.After(10 * time.Second):
		t.Fatal("no CONNACK")
	}
	return nil, nil
}

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, os.ErrClosed
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func bytesReader(b []byte) *sliceReader { return &sliceReader{b} }

func (rc *rawClient) send(p packet.Packet) bool {
	b, err := packet.Encode(p, rc.v)
	if err != nil {
		rc.t.Fatal(err)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	_ = rc.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err = rc.c.Write(b)
	return err == nil
}

// TestKill9LosesNothingAcknowledged: a persistent 5.0 subscriber goes
// offline; two publishers send thousands of QoS 1 and QoS 2 messages; the
// broker is killed with SIGKILL mid-stream and restarted on the same data
// directory; the subscriber reconnects and must receive every message that
// was acknowledged (PUBACK / PUBREC), QoS 2 exactly once, in order per
// publisher.
func TestKill9LosesNothingAcknowledged(t *testing.T) {
	rounds := 1
	if n, err := strconv.Atoi(os.Getenv("SKYBRIDGE_KILL9_ROUNDS")); err == nil && n > 0 {
		rounds = n // make crash-soak
	}
	for round := range rounds {
		kill9Round(t, round)
	}
}

func kill9Round(t *testing.T, round int) {
	data := t.TempDir()
	b := startBrokerOn(t, data)
	subConnect := &packet.Connect{Version: packet.V5, ClientID: []byte("durable-sub"), KeepAlive: 60}
	subConnect.Properties.SessionExpiry = 3600
	subConnect.Properties.Set(packet.PropSessionExpiry)
	sub, _ := dialClient(t, b.addr, packet.V5, subConnect)
	sub.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("k/#"), QoS: 2}}})
	if p := <-sub.packets; p == nil || p.Type() != packet.SUBACK {
		t.Fatalf("SUBACK: %v", p)
	}
	sub.send(&packet.Disconnect{})
	sub.c.Close()

	const perPublisher = 3000
	killAt := 1500 + round*137%1000 // acknowledged messages before the kill
	type result struct {
		acked []string
		qos   map[string]packet.QoS
	}
	results := make([]*result, 2)
	var acks sync.WaitGroup
	var total sync.Mutex
	ackedTotal := 0
	killed := make(chan struct{})
	var killOnce sync.Once
	for i := range 2 {
		res := &result{qos: map[string]packet.QoS{}}
		results[i] = res
		v := packet.V5
		if i == 1 {
			v = packet.V311
		}
		pub, _ := dialClient(t, b.addr, v, &packet.Connect{Version: v, ClientID: []byte(fmt.Sprint("pub", i)), CleanStart: true, KeepAlive: 60})
		acks.Add(1)
		go func() { // reads acknowledgements
			defer acks.Done()
			for p := range pub.packets {
				a, ok := p.(*packet.Ack)
				if !ok {
					continue
				}
				switch a.PacketType {
				case packet.PUBACK, packet.PUBREC:
					if a.ReasonCode.IsError() {
						continue
					}
					body := fmt.Sprintf("p%d-%d", i, a.PacketID-1)
					total.Lock()
					res.acked = append(res.acked, body)
					ackedTotal++
					if ackedTotal >= killAt {
						killOnce.Do(func() {
							_ = b.cmd.Process.Signal(syscall.SIGKILL)
							close(killed)
						})
					}
					total.Unlock()
					if a.PacketType == packet.PUBREC {
						pub.send(&packet.Ack{PacketType: packet.PUBREL, PacketID: a.PacketID})
					}
				}
			}
		}()
		go func() { // publishes as fast as the broker takes them
			for n := range perPublisher {
				qos := packet.QoS(1 + n%2)
				body := fmt.Sprintf("p%d-%d", i, n)
				total.Lock()
				res.qos[body] = qos
				total.Unlock()
				if !pub.send(&packet.Publish{Topic: []byte(fmt.Sprint("k/", i)), QoS: qos, PacketID: uint16(n + 1), Payload: []byte(body)}) {
					return
				}
			}
		}()
	}
	select {
	case <-killed:
	case <-time.After(60 * time.Second):
		t.Fatalf("fewer than %d messages acknowledged in a minute", killAt)
	}
	<-b.done
	b.done <- nil
	acks.Wait() // connections are dead: readers end

	// Restart on the same data directory.
	b2 := startBrokerOn(t, data)
	subConnect.CleanStart = false
	sub2, ack := dialClient(t, b2.addr, packet.V5, subConnect)
	if !ack.SessionPresent {
		t.Fatal("the persistent session did not survive the crash")
	}
	got := map[string]int{}
	order := map[byte][]int{}
	awaitRel := map[uint16]bool{}
	want := 0
	for _, r := range results {
		want += len(r.acked)
	}
	deadline := time.After(60 * time.Second)
	quiet := time.NewTimer(time.Hour)
	received := 0
	for {
		select {
		case p, ok := <-sub2.packets:
			if !ok {
				t.Fatal("the subscriber's connection ended")
			}
			switch p := p.(type) {
			case *packet.Publish:
				count := true
				switch p.QoS {
				case 1:
					sub2.send(&packet.Ack{PacketType: packet.PUBACK, PacketID: p.PacketID})
				case 2:
					count = !awaitRel[p.PacketID]
					awaitRel[p.PacketID] = true
					sub2.send(&packet.Ack{PacketType: packet.PUBREC, PacketID: p.PacketID})
				}
				if count {
					body := string(p.Payload)
					got[body]++
					var pi, n int
					fmt.Sscanf(body, "p%d-%d", &pi, &n)
					order[byte(pi)] = append(order[byte(pi)], n)
					received++
				}
			case *packet.Ack:
				if p.PacketType == packet.PUBREL {
					delete(awaitRel, p.PacketID)
					sub2.send(&packet.Ack{PacketType: packet.PUBCOMP, PacketID: p.PacketID})
				}
			}
			if received >= want {
				// Everything acknowledged may be here: listen a little longer
				// for duplicates, then check.
				quiet.Reset(500 * time.Millisecond)
			}
			continue
		case <-quiet.C:
		case <-deadline:
		}
		break
	}
	for i, r := range results {
		for _, body := range r.acked {
			n := got[body]
			if n == 0 {
				t.Fatalf("round %d: acknowledged %s (QoS %d) lost in the crash (received %d of %d acknowledged)", round, body, r.qos[body], received, want)
			}
			if n > 1 && r.qos[body] == 2 {
				t.Fatalf("round %d: QoS 2 %s delivered %d times", round, body, n)
			}
		}
		seq := order[byte(i)]
		for k := 1; k < len(seq); k++ {
			if seq[k] < seq[k-1] && got[fmt.Sprintf("p%d-%d", i, seq[k])] < 2 {
				t.Fatalf("round %d: publisher %d's messages out of order around %v", round, i, seq[max(0, k-3):min(len(seq), k+3)])
			}
		}
	}
	t.Logf("round %d: %d acknowledged before SIGKILL, %d received after restart", round, want, received)
}
