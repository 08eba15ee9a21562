package server

import (
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// tclient is a small synchronous MQTT client for the isolation tests.
type tclient struct {
	t   *testing.T
	c   net.Conn
	v   packet.Version
	dec *packet.Decoder
	mu  sync.Mutex
}

func tdial(t *testing.T, addr string, v packet.Version, conn *packet.Connect) *tclient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	tc := &tclient{t: t, c: c, v: v, dec: packet.NewDecoder(c, v)}
	conn.Version = v
	if conn.KeepAlive == 0 {
		conn.KeepAlive = 60
	}
	tc.send(conn)
	if p := tc.next(5 * time.Second); p == nil || p.Type() != packet.CONNACK || p.(*packet.Connack).ReasonCode != 0 {
		t.Fatalf("CONNACK: %v", p)
	}
	return tc
}

func (c *tclient) send(p packet.Packet) {
	b, err := packet.Encode(p, c.v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.c.Write(b)
}

// next returns the next packet within d, or nil.
func (c *tclient) next(d time.Duration) packet.Packet {
	_ = c.c.SetReadDeadline(time.Now().Add(d))
	p, err := c.dec.Next()
	if err != nil {
		return nil
	}
	return p
}

func (c *tclient) subscribe(filters ...string) {
	s := &packet.Subscribe{PacketID: 1}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, packet.Subscription{Filter: []byte(f), QoS: 1})
	}
	c.send(s)
	if p := c.next(5 * time.Second); p == nil || p.Type() != packet.SUBACK {
		c.t.Fatalf("SUBACK: %v", p)
	}
}

func user(name string) *packet.Connect {
	return &packet.Connect{ClientID: []byte("same-id"), CleanStart: true, UsernameFlag: true, Username: []byte(name)}
}

// TestTenantIsolationBlackBox: over real sockets, a tenant's "#" (and
// "$SYS/#", and a shared group of the same name) never receives another
// tenant's messages, retained messages, wills or statistics, and the same
// client id in two tenants is two sessions.
func TestTenantIsolationBlackBox(t *testing.T) {
	t.Parallel()
	cfg := testConfig(ListenerConfig{Name: "tcp", Type: TCP, Addr: "127.0.0.1:0", DefaultTenant: "d"})
	s := start(t, cfg)
	s.Broker().StartSys(50*time.Millisecond, "test")
	addr := s.Addr("tcp").String()

	// Tenant B leaves a retained message and has a client with a will.
	b := tdial(t, addr, packet.V5, user("beta/bob"))
	b.send(&packet.Publish{Topic: []byte("x/retained"), Payload: []byte("beta's"), Retain: true, QoS: 1, PacketID: 1})
	if p := b.next(5 * time.Second); p == nil || p.Type() != packet.PUBACK {
		t.Fatalf("PUBACK: %v", p)
	}
	bw := &packet.Connect{ClientID: []byte("willer"), CleanStart: true, UsernameFlag: true, Username: []byte("beta/w"),
		WillFlag: true, WillTopic: []byte("x/will"), WillPayload: []byte("beta's will")}
	bwill := tdial(t, addr, packet.V5, bw)

	// Tenant A, with the same client id as B's first client: a session of
	// its own, not a takeover of B's.
	a := tdial(t, addr, packet.V5, user("alpha/ann"))
	a.subscribe("#", "$SYS/#", "$share/g/#")
	b.send(&packet.Publish{Topic: []byte("x/live"), Payload: []byte("beta's live"), QoS: 1, PacketID: 2})
	if p := b.next(5 * time.Second); p == nil || p.Type() != packet.PUBACK {
		t.Fatalf("B was taken over by A's client of the same id: %v", p)
	}
	bwill.c.Close() // network loss: B's will goes to B's tenant only
	// A's own $SYS figures arrive (so the subscription works), and nothing
	// of B's does: no retained message, no live message, no will.
	// Listened to for 600 ms at least, and until A's own figure came (up
	// to 10 s: the $SYS tick may be late on a loaded machine).
	deadline, last := time.Now().Add(600*time.Millisecond), time.Now().Add(10*time.Second)
	sawOwnSys := false
	for time.Now().Before(deadline) || !sawOwnSys && time.Now().Before(last) {
		until := deadline
		if !sawOwnSys {
			until = last
		}
		p := a.next(time.Until(until))
		if p == nil {
			break
		}
		pub, ok := p.(*packet.Publish)
		if !ok {
			continue
		}
		if string(pub.Topic) == "$SYS/broker/clients/connected" && string(pub.Payload) == "1" {
			sawOwnSys = true
			continue
		}
		if len(pub.Topic) > 4 && string(pub.Topic[:4]) == "$SYS" {
			continue
		}
		t.Fatalf("tenant alpha received %s", packet.Format(pub))
	}
	if !sawOwnSys {
		t.Fatal("tenant alpha never saw its own $SYS/broker/clients/connected = 1")
	}
}

// TestNoisyTenantLatency: while tenant "noisy" floods the broker with QoS 0
// messages from two connections as fast as they can write, tenant "quiet"
// measures the round trip of QoS 1 messages to its own subscriber. The
// quiet tenant's p99 must stay under the stated bound.
func TestNoisyTenantLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	const bound = 50 * time.Millisecond // the stated bound for the quiet tenant's p99
	cfg := testConfig(ListenerConfig{Name: "tcp", Type: TCP, Addr: "127.0.0.1:0", DefaultTenant: "d"})
	s := start(t, cfg)
	addr := s.Addr("tcp").String()

	measure := func() []time.Duration {
		sub := tdial(t, addr, packet.V311, &packet.Connect{ClientID: []byte("q-sub"), CleanStart: true, UsernameFlag: true, Username: []byte("quiet/s")})
		sub.subscribe("ping")
		pub := tdial(t, addr, packet.V311, &packet.Connect{ClientID: []byte("q-pub"), CleanStart: true, UsernameFlag: true, Username: []byte("quiet/p")})
		var rtts []time.Duration
		for i := 1; i <= 300; i++ {
			began := time.Now()
			pub.send(&packet.Publish{Topic: []byte("ping"), QoS: 1, PacketID: uint16(i), Payload: []byte("x")})
			for {
				p := sub.next(5 * time.Second)
				if p == nil {
					t.Fatal("the quiet tenant's message did not arrive")
				}
				if m, ok := p.(*packet.Publish); ok {
					sub.send(&packet.Ack{PacketType: packet.PUBACK, PacketID: m.PacketID})
					break
				}
			}
			rtts = append(rtts, time.Since(began))
			if p := pub.next(5 * time.Second); p == nil {
				t.Fatal("no PUBACK")
			}
		}
		sub.c.Close()
		pub.c.Close()
		return rtts
	}
	p99 := func(d []time.Duration) time.Duration {
		slices.Sort(d)
		return d[len(d)*99/100]
	}
	base := p99(measure())

	var stop atomic.Bool
	var flooded atomic.Int64
	var wg sync.WaitGroup
	for i := range 2 {
		fc := tdial(t, addr, packet.V311, &packet.Connect{ClientID: []byte{'f', byte('0' + i)}, CleanStart: true,
			UsernameFlag: true, Username: []byte("noisy/f")})
		fsub := tdial(t, addr, packet.V311, &packet.Connect{ClientID: []byte{'s', byte('0' + i)}, CleanStart: true,
			UsernameFlag: true, Username: []byte("noisy/s")})
		fsub.subscribe("flood/#") // a subscriber that never reads: its drops are its own problem
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch, _ := packet.Encode(&packet.Publish{Topic: []byte("flood/x"), Payload: make([]byte, 256)}, packet.V311)
			var buf []byte
			for range 64 {
				buf = append(buf, batch...)
			}
			for !stop.Load() {
				_ = fc.c.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := fc.c.Write(buf); err != nil {
					return
				}
				flooded.Add(64)
			}
		}()
	}
	loaded := p99(measure())
	stop.Store(true)
	wg.Wait()
	t.Logf("quiet tenant QoS 1 round trip p99: %v alone, %v while the noisy tenant sent %d messages", base, loaded, flooded.Load())
	if loaded > bound {
		t.Fatalf("quiet tenant p99 %v under flood exceeds the %v bound", loaded, bound)
	}
}
