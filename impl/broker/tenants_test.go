package broker

import (
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/acl"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
	tenantpkg "github.com/skybridge-mq/skybridge/impl/tenant"
)

// Deny rules enforced end to end, through the broker and an
// acl.Authorizer: a denied SUBSCRIBE is refused in its SUBACK and delivers
// nothing (a filter that overlaps a denied tree is refused whole), a
// denied PUBLISH is refused (5.0) and reaches nobody, nor the retained
// store; other tenants are not bound by the rules.
func TestACLDenyEndToEnd(t *testing.T) {
	t.Parallel()
	h, _ := newAuthz(t, acl.Config{Tenants: map[string][]acl.RuleConfig{"t": {
		{Permission: "deny", Action: "publish", Topics: []string{"secret/#"}},
		{Permission: "deny", Action: "subscribe", Topics: []string{"private/#"}},
		{Permission: "deny", Action: "retain", Topics: []string{"news/#"}},
	}}}, 0)
	s := h.dial("s", packet.V5, "t")
	s.connect("s", true, packet.Properties{})
	s.expect(connack5)
	s.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{
		{Filter: []byte("secret/#"), QoS: 1},
		{Filter: []byte("private/x"), QoS: 1},
		{Filter: []byte("#"), QoS: 1}, // may match private/...: refused whole
		{Filter: []byte("$share/g/private/+"), QoS: 1},
		{Filter: []byte("news/#"), QoS: 1},
	}})
	s.expect("SUBACK id=1 codes=[0x01 0x87 0x87 0x87 0x01]")
	old := h.dial("old", packet.V311, "t")
	old.connect("old", true, packet.Properties{})
	old.expect("CONNACK code=0x00")
	old.send(sub(1, "private/#", 0))
	old.expect("SUBACK id=1 codes=[0x80]") // 3.1.1 has one failure code

	p := h.dial("p", packet.V5, "t")
	p.connect("p", true, packet.Properties{})
	p.expect(connack5)
	p.send(pub("secret/a", "no", 1, 1))
	p.expect("PUBACK id=1 code=0x87")
	p.send(pub("secret/b", "no", 2, 2))
	p.expect("PUBREC id=2 code=0x87")
	p.send(&packet.Publish{Topic: []byte("secret/r"), Payload: []byte("no"), QoS: 1, PacketID: 3, Retain: true})
	p.expect("PUBACK id=3 code=0x87")
	p.send(pub("private/x", "ok", 1, 4)) // publishing there is allowed; nobody may listen
	p.expect("PUBACK id=4 code=0x10")
	p.send(&packet.Publish{Topic: []byte("news/r"), Payload: []byte("no"), QoS: 1, PacketID: 5, Retain: true})
	p.expect("PUBACK id=5 code=0x87") // retaining is denied there, publishing is not
	p.send(pub("news/a", "ok", 1, 6))
	p.expect("PUBACK id=6")
	s.expect(`PUBLISH topic="news/a" qos=1 id=1 payload="ok"`)
	old.expect()

	// Nothing denied reached the retained store.
	late := h.dial("late", packet.V5, "t")
	late.connect("late", true, packet.Properties{})
	late.expect(connack5)
	late.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{
		{Filter: []byte("secret/#"), QoS: 1}, {Filter: []byte("news/#"), QoS: 1}}})
	late.expect("SUBACK id=1 codes=[0x01 0x01]")

	// The rules are tenant t's: another tenant may do all of it.
	o := h.dial("o", packet.V5, "other")
	o.connect("o", true, packet.Properties{})
	o.expect(connack5)
	o.send(sub(1, "#", 1))
	o.expect("SUBACK id=1 codes=[0x01]")
	o.send(pub("secret/a", "yes", 1, 2))
	o.expect(`PUBLISH topic="secret/a" qos=1 id=1 payload="yes"`, "PUBACK id=2")
}

// Two tenants with different settings from the settings provider, side by
// side on one broker: each connection gets its tenant's maximum QoS,
// Receive Maximum, session expiry bound and topic limits, announced in the
// CONNACK and enforced; a retained message goes at most at the QoS its
// subscription was granted; a change of one tenant's settings applies to
// its next connections and leaves the other tenant alone.
func TestTwoTenantsDifferentSettings(t *testing.T) {
	t.Parallel()
	p := tenantpkg.NewProvider()
	a := tenantpkg.Default()
	a.MaxQoS, a.ReceiveMaximum, a.MaxSessionExpiry, a.MaxTopicLevels = 1, 5, 60, 2
	b := tenantpkg.Default()
	b.MaxTopicLevels, b.RetainEnabled = 3, false
	for name, s := range map[string]tenantpkg.Settings{"a": a, "b": b} {
		if err := p.Set(name, s); err != nil {
			t.Fatal(err)
		}
	}
	clock := env.NewManualClock(time.Unix(1_700_000_000, 0))
	cfg := DefaultConfig()
	cfg.Settings = p
	h := &harness{t: t, b: New(cfg, env.Env{Clock: clock, Rand: env.NewRand(1)}, nil), clock: clock}

	ca := h.dial("ca", packet.V5, "a")
	ca.connect("ca", false, expiry(3600))
	ca.expect("CONNACK code=0x00 session-expiry=60 receive-max=5 alias-max=64 max-qos=1 max-packet=1048576")
	cb := h.dial("cb", packet.V5, "b")
	cb.connect("cb", false, expiry(3600))
	cb.expect("CONNACK code=0x00 receive-max=1024 alias-max=64 retain-available=0 max-packet=1048576")

	// Maximum QoS: granted at most the tenant's.
	ca.send(sub(1, "x/+", 2))
	ca.expect("SUBACK id=1 codes=[0x01]")
	cb.send(sub(1, "x/+", 2))
	cb.expect("SUBACK id=1 codes=[0x02]")
	// Topic levels: "x/y/z" is one too many for a, not for b.
	ca.send(sub(2, "x/y/z", 1))
	ca.expect("SUBACK id=2 codes=[0x8f]")
	ca.send(pub("x/y/z", "deep", 1, 3))
	ca.expect("PUBACK id=3 code=0x90")
	cb.send(pub("x/y/z", "deep", 1, 3))
	cb.expect("PUBACK id=3 code=0x10")
	// A retained QoS 1 message reaches a's QoS 0 subscriber at QoS 0, the
	// minimum of the two [v5 MQTT-3.8.4-8]. Retained messages are kept for
	// a only: b has them switched off (a retained PUBLISH ends the
	// connection there).
	ca.send(&packet.Publish{Topic: []byte("r/1"), Payload: []byte("kept"), QoS: 1, PacketID: 4, Retain: true})
	ca.expect("PUBACK id=4 code=0x10")
	ca.send(sub(5, "r/+", 0))
	ca.expect("SUBACK id=5 codes=[0x00]", `PUBLISH topic="r/1" qos=0 retain payload="kept"`)
	cb.send(&packet.Publish{Topic: []byte("r/1"), Payload: []byte("no"), QoS: 1, PacketID: 4, Retain: true})
	refused(t, cb, "DISCONNECT code=0x9a")

	// Hot reload: a's new connections get QoS 2; its open one keeps 1; b
	// is not affected.
	a.MaxQoS = 2
	if err := p.Set("a", a); err != nil {
		t.Fatal(err)
	}
	ca2 := h.dial("ca2", packet.V5, "a")
	ca2.connect("ca2", true, packet.Properties{})
	ca2.expect("CONNACK code=0x00 receive-max=5 alias-max=64 max-packet=1048576")
	ca2.send(sub(1, "x/+", 2))
	ca2.expect("SUBACK id=1 codes=[0x02]")
	ca.send(sub(6, "y/+", 2))
	ca.expect("SUBACK id=6 codes=[0x01]")
	cb2 := h.dial("cb2", packet.V5, "b")
	cb2.connect("cb2", true, packet.Properties{})
	cb2.expect("CONNACK code=0x00 receive-max=1024 alias-max=64 retain-available=0 max-packet=1048576")
}
