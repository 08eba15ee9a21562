package broker

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
	tenantpkg "github.com/skybridge-mq/skybridge/impl/tenant"
)

// newLimited returns a harness whose tenant "small" has tight settings.
func newLimited(t *testing.T, adjust func(*tenantpkg.Settings)) *harness {
	t.Helper()
	p := tenantpkg.NewProvider()
	s := tenantpkg.Default()
	adjust(&s)
	if err := p.Set("small", s); err != nil {
		t.Fatal(err)
	}
	clock := env.NewManualClock(time.Unix(1_700_000_000, 0))
	cfg := DefaultConfig()
	cfg.Settings = p
	return &harness{t: t, b: New(cfg, env.Env{Clock: clock, Rand: env.NewRand(1)}, nil), clock: clock}
}

func refused(t *testing.T, c *client, want string) {
	t.Helper()
	got, closing := c.recv()
	if d := cmp.Diff([]string{want}, got); d != "" || !closing {
		t.Fatalf("%s: got %v closing=%v, want %s and a close", c.name, got, closing, want)
	}
}

func TestTenantConnectionLimits(t *testing.T) {
	t.Parallel()
	h := newLimited(t, func(s *tenantpkg.Settings) {
		s.MaxConnections, s.MQTT311, s.MaxPersistent, s.MaxWillSize = 2, false, 1, 4
	})
	a := h.dial("a", packet.V5, "small")
	a.connect("a", false, expiry(60)) // persistent: the tenant's one
	a.expect(connack5)
	b := h.dial("b", packet.V5, "small")
	b.connect("b", false, expiry(60)) // a second persistent session: over the quota
	refused(t, b, "CONNACK code=0x97")
	b2 := h.dial("b2", packet.V5, "small")
	b2.connect("b2", true, packet.Properties{}) // clean: fine
	b2.expect(connack5)
	c := h.dial("c", packet.V5, "small")
	c.connect("c", true, packet.Properties{}) // a third connection
	refused(t, c, "CONNACK code=0x97")
	old := h.dial("old", packet.V311, "small")
	old.connect("old", true, packet.Properties{}) // 3.1.1 switched off for this tenant
	refused(t, old, "CONNACK code=0x01")
	other := h.dial("other", packet.V311, "big") // other tenants are not affected
	other.connect("other", true, packet.Properties{})
	other.expect("CONNACK code=0x00")
	w := h.dial("w", packet.V5, "big")
	w.connectWithWill("w", "x", 0, packet.Properties{})
	w.expect(connack5)
	if n := h.b.Stats().Throttled[ThrottleConnections].Load(); n != 1 {
		t.Fatalf("connection throttles counted %d, want 1", n)
	}
}

// A client that reconnects while its old connection is still open (it
// has not timed out yet) takes that connection over and takes no new
// place: at the tenant's max_connections it is not refused; a new client
// id is.
func TestConnectionLimitTakeover(t *testing.T) {
	t.Parallel()
	h := newLimited(t, func(s *tenantpkg.Settings) { s.MaxConnections = 2 })
	a := h.dial("a", packet.V5, "small")
	a.connect("dev", true, packet.Properties{})
	a.expect(connack5)
	o := h.dial("o", packet.V5, "small")
	o.connect("other", true, packet.Properties{})
	o.expect(connack5)
	b := h.dial("b", packet.V5, "small") // the same device, again
	b.connect("dev", true, packet.Properties{})
	got, closing := a.recv()
	if d := cmp.Diff([]string{"DISCONNECT code=0x8e"}, got); d != "" || !closing {
		t.Fatalf("old connection got %v closing=%v, want a takeover", got, closing)
	}
	b.expect(connack5)
	a.c.Closed() // the runtime closes the old transport
	c := h.dial("c", packet.V5, "small")
	c.connect("third", true, packet.Properties{})
	refused(t, c, "CONNACK code=0x97")
	if n := h.b.Stats().Throttled[ThrottleConnections].Load(); n != 1 {
		t.Fatalf("connection throttles counted %d, want 1", n)
	}
}

func TestTenantConnectRate(t *testing.T) {
	t.Parallel()
	h := newLimited(t, func(s *tenantpkg.Settings) { s.ConnectRate = 2 })
	for i, want := range []string{connack5, connack5, "CONNACK code=0x9f"} {
		c := h.dial(string(rune('a'+i)), packet.V5, "small")
		c.connect(string(rune('a'+i)), true, packet.Properties{})
		if got, _ := c.recv(); len(got) != 1 || got[0] != want {
			t.Fatalf("connect %d: %v, want %s", i, got, want)
		}
	}
	h.clock.Advance(time.Second) // the bucket refills
	c := h.dial("d", packet.V5, "small")
	c.connect("d", true, packet.Properties{})
	c.expect(connack5)
}

func TestTenantPublishLimits(t *testing.T) {
	t.Parallel()
	h := newLimited(t, func(s *tenantpkg.Settings) {
		s.MaxPayloadSize, s.MaxTopicLevels, s.MaxRetained = 8, 3, 1
	})
	p := h.dial("p", packet.V5, "small")
	p.connect("p", true, packet.Properties{})
	p.expect(connack5)
	p.send(pub("a/b", "too long a payload", 1, 1))
	p.expect("PUBACK id=1 code=0x97")
	p.send(pub("a/b/c/d", "x", 1, 2))
	p.expect("PUBACK id=2 code=0x90")
	p.send(&packet.Publish{Topic: []byte("r/1"), Payload: []byte("x"), Retain: true, QoS: 1, PacketID: 3})
	p.expect("PUBACK id=3 code=0x10")
	p.send(&packet.Publish{Topic: []byte("r/2"), Payload: []byte("y"), Retain: true, QoS: 1, PacketID: 4})
	p.expect("PUBACK id=4 code=0x97") // a second retained message: over the quota
	// A 3.1.1 publisher over a limit is disconnected (it cannot be refused).
	q := h.dial("q", packet.V311, "small")
	q.connect("q", true, packet.Properties{})
	q.expect("CONNACK code=0x00")
	q.send(pub("a/b", "too long a payload", 1, 1))
	got, closing := q.recv()
	if len(got) != 0 || !closing {
		t.Fatalf("3.1.1 over the payload limit: %v closing=%v, want a silent close", got, closing)
	}
}

func TestTenantPublishRate(t *testing.T) {
	t.Parallel()
	h := newLimited(t, func(s *tenantpkg.Settings) { s.PublishRate = 3 })
	p := h.dial("p", packet.V5, "small")
	p.connect("p", true, packet.Properties{})
	p.expect(connack5)
	for i := range 3 {
		p.send(pub("t", "x", 0, 0))
		if got, closing := p.recv(); len(got) != 0 || closing {
			t.Fatalf("publish %d: %v %v", i, got, closing)
		}
	}
	p.send(pub("t", "x", 0, 0))
	refused(t, p, "DISCONNECT code=0x96")
	// Counted as rate_limited, not as not_authorized (the hardening
	// issue's operator bug).
	st := h.b.Stats()
	if rl, na := st.DroppedBy[DropRateLimited].Load(), st.DroppedBy[DropNotAuthorized].Load(); rl != 1 || na != 0 {
		t.Errorf("drops: rate_limited %d, not_authorized %d; want 1, 0", rl, na)
	}
}

func TestTenantSubscriptionLimits(t *testing.T) {
	t.Parallel()
	h := newLimited(t, func(s *tenantpkg.Settings) {
		s.MaxSubscriptions, s.MaxSharedGroupSize, s.MaxTopicLength = 2, 1, 10
	})
	a := h.dial("a", packet.V5, "small")
	a.connect("a", true, packet.Properties{})
	a.expect(connack5)
	a.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{
		{Filter: []byte("x")}, {Filter: []byte("a/very/long/filter")}, {Filter: []byte("y")}, {Filter: []byte("z")}}})
	a.expect("SUBACK id=1 codes=[0x00 0x8f 0x00 0x97]")
	a.send(sub(2, "y", 1)) // replacing one is not adding one
	a.expect("SUBACK id=2 codes=[0x01]")
	b := h.dial("b", packet.V5, "small")
	b.connect("b", true, packet.Properties{})
	b.expect(connack5)
	b.send(sub(1, "$share/g/t", 0))
	b.expect("SUBACK id=1 codes=[0x00]")
	c := h.dial("c", packet.V5, "small")
	c.connect("c", true, packet.Properties{})
	c.expect(connack5)
	c.send(sub(1, "$share/g/t", 0)) // the group is full
	c.expect("SUBACK id=1 codes=[0x97]")
	b.send(&packet.Unsubscribe{PacketID: 2, Filters: [][]byte{[]byte("$share/g/t")}})
	b.expect("UNSUBACK id=2 codes=[0x00]")
	c.send(sub(2, "$share/g/t", 0)) // room again
	c.expect("SUBACK id=2 codes=[0x00]")
}

func TestTenantSettingsHotReload(t *testing.T) {
	t.Parallel()
	h := newLimited(t, func(s *tenantpkg.Settings) { s.MaxQoS = 1 })
	a := h.dial("a", packet.V5, "small")
	a.connect("a", true, packet.Properties{})
	a.expect("CONNACK code=0x00 receive-max=1024 alias-max=64 max-qos=1 max-packet=1048576")
	s := tenantpkg.Default()
	s.MaxQoS = 0
	if err := h.b.Settings().Set("small", s); err != nil {
		t.Fatal(err)
	}
	// New connections see the change.
	b := h.dial("b", packet.V5, "small")
	b.connect("b", true, packet.Properties{})
	b.expect("CONNACK code=0x00 receive-max=1024 alias-max=64 max-qos=0 max-packet=1048576")
}

func TestBucket(t *testing.T) {
	t.Parallel()
	var b tenantpkg.Bucket
	now := time.Unix(0, 0)
	for i := range 5 {
		if !b.Take(now, 5, 5, 1) {
			t.Fatalf("take %d refused with a full bucket", i)
		}
	}
	if b.Take(now, 5, 5, 1) {
		t.Fatal("took from an empty bucket")
	}
	if !b.Take(now.Add(200*time.Millisecond), 5, 5, 1) {
		t.Fatal("no token after 200 ms at 5/s")
	}
	var bw tenantpkg.Bucket
	if p := bw.Spend(now, 100, 100, 300); p != 2*time.Second {
		t.Fatalf("Spend pause = %v, want 2s", p)
	}
}

// TestWillWithinTenantFeatures checks a will against what the tenant
// offers: a 5.0 client is refused [v5 MQTT-3.2.2-12] [v5 MQTT-3.2.2-13], an
// older one (which cannot be told) has its will kept within the offer.
func TestWillWithinTenantFeatures(t *testing.T) {
	t.Parallel()
	p := tenantpkg.NewProvider()
	d := tenantpkg.Default()
	d.MaxQoS, d.RetainEnabled = 1, false
	if err := p.Replace(tenantpkg.Config{Defaults: d}); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Settings = p
	clock := env.NewManualClock(time.Unix(1_700_000_000, 0))
	h := &harness{t: t, b: New(cfg, env.Env{Clock: clock, Rand: env.NewRand(1)}, nil), clock: clock}

	for _, c := range []struct {
		qos    packet.QoS
		retain bool
		want   string
	}{
		{2, false, "CONNACK code=0x9b"},
		{1, true, "CONNACK code=0x9a"},
	} {
		w := h.dial("w5", packet.V5, "t")
		w.send(&packet.Connect{Version: packet.V5, ClientID: []byte("w5"), CleanStart: true,
			WillFlag: true, WillTopic: []byte("will/5"), WillPayload: []byte("x"), WillQoS: c.qos, WillRetain: c.retain})
		w.expect(c.want)
	}

	s := h.dial("s", packet.V311, "t")
	s.connect("sub", true, packet.Properties{})
	s.expect("CONNACK code=0x00")
	s.send(sub(1, "will/#", 2))
	s.expect("SUBACK id=1 codes=[0x01]")
	w := h.dial("w3", packet.V311, "t")
	w.send(&packet.Connect{Version: packet.V311, ClientID: []byte("w3"), CleanStart: true,
		WillFlag: true, WillTopic: []byte("will/3"), WillPayload: []byte("x"), WillQoS: 2, WillRetain: true})
	w.expect("CONNACK code=0x00")
	w.c.Closed()
	s.expect(`PUBLISH topic="will/3" qos=1 id=1 payload="x"`)
	s.send(sub(2, "will/3", 0))
	s.expect("SUBACK id=2 codes=[0x00]") // not retained
}
