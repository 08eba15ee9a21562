package broker

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/acl"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/event"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// tokenAuth accepts everyone, with credentials valid for ttl.
type tokenAuth struct {
	clock *env.ManualClock
	ttl   time.Duration
}

func (a tokenAuth) Authenticate(req *AuthRequest) AuthResult {
	r := AllowAll{}.Authenticate(req)
	r.Expires = a.clock.Now().Add(a.ttl)
	return r
}

func newAuthz(t *testing.T, rules acl.Config, ttl time.Duration) (*harness, *event.Ring) {
	t.Helper()
	set, err := acl.NewSet(rules)
	if err != nil {
		t.Fatal(err)
	}
	clock := env.NewManualClock(time.Unix(1_700_000_000, 0))
	ring := event.NewRing(100)
	cfg := DefaultConfig()
	cfg.Authorizer, cfg.Events = set, ring
	if ttl > 0 {
		cfg.Authenticator = tokenAuth{clock, ttl}
	}
	return &harness{t: t, b: New(cfg, env.Env{Clock: clock, Rand: env.NewRand(1)}, nil), clock: clock}, ring
}

func eventTypes(r *event.Ring) []string {
	var out []string
	for _, e := range r.Events() {
		out = append(out, e.Type.String())
	}
	return out
}

func TestAuthorization(t *testing.T) {
	t.Parallel()
	h, ring := newAuthz(t, acl.Config{DefaultDeny: true, Tenants: map[string][]acl.RuleConfig{
		"t": {
			{Permission: "allow", Action: "publish|subscribe", Topics: []string{"devices/%c/#"}},
			{Permission: "allow", Action: "subscribe", Topics: []string{"broadcast/#"}},
		}}}, 0)
	c := h.dial("c", packet.V5, "t")
	c.connect("dev1", true, packet.Properties{})
	c.expect(connack5)
	c.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{
		{Filter: []byte("devices/dev1/#")}, {Filter: []byte("devices/dev2/#")}, {Filter: []byte("broadcast/x")}}})
	c.expect("SUBACK id=1 codes=[0x00 0x87 0x00]")
	c.send(pub("devices/dev1/up", "ok", 1, 2))
	c.expect(`PUBLISH topic="devices/dev1/up" qos=0 payload="ok"`, "PUBACK id=2")
	c.send(pub("devices/dev2/up", "no", 1, 3))
	c.expect("PUBACK id=3 code=0x87")
	c.send(pub("broadcast/x", "no", 0, 0)) // subscribe-only: a QoS 0 publish is dropped
	c.expect()
	// A 3.1.1 client is acknowledged and its message dropped.
	o := h.dial("o", packet.V311, "t")
	o.connect("dev3", true, packet.Properties{})
	o.expect("CONNACK code=0x00")
	o.send(pub("devices/dev1/up", "sneaky", 1, 1))
	o.expect("PUBACK id=1")
	c.expect()
	// A will the client could not publish is refused at CONNECT.
	w := h.dial("w", packet.V5, "t")
	w.connectWithWill("dev4", "devices/dev1/will", 0, packet.Properties{})
	refused(t, w, "CONNACK code=0x87")
	// The first drop of an interval is also reported as message_dropped.
	want := []string{"connected", "subscription_refused", "message_dropped", "publish_refused", "publish_refused",
		"connected", "publish_refused", "publish_refused"}
	if d := cmp.Diff(want, eventTypes(ring)); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
}

func TestCredentialsExpire(t *testing.T) {
	t.Parallel()
	h, ring := newAuthz(t, acl.Config{}, 30*time.Second)
	c := h.dial("c", packet.V5, "t")
	c.connect("c", true, packet.Properties{})
	c.expect(connack5)
	h.clock.Advance(29 * time.Second)
	c.expect()
	h.clock.Advance(time.Second)
	refused(t, c, "DISCONNECT code=0x87")
	types := eventTypes(ring)
	if len(types) < 2 || types[1] != "token_expired" {
		t.Fatalf("events %v, want token_expired after connected", types)
	}
}
