package broker

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/acl"
	"github.com/skybridge-mq/skybridge/impl/event"
	"github.com/skybridge-mq/skybridge/impl/packet"
	tenantpkg "github.com/skybridge-mq/skybridge/impl/tenant"
)

// claimAuth accepts every client with the identity its user name claims,
// "tenant|user" (any bytes at all): an authenticator that passes on
// whatever a token or a webhook said, like a JWT claim would.
type claimAuth struct{}

func (claimAuth) Authenticate(req *AuthRequest) AuthResult {
	// "%00" stands for the U+0000 an MQTT user name cannot carry.
	t, u, _ := strings.Cut(strings.ReplaceAll(req.Username, "%00", "\x00"), "|")
	return AuthResult{Code: packet.Success, Tenant: t, User: u}
}

func (cl *client) connectAs(user, id string, clean bool, props packet.Properties) {
	cl.h.t.Helper()
	cl.send(&packet.Connect{Version: cl.v, ClientID: []byte(id), CleanStart: clean, KeepAlive: 30,
		UsernameFlag: true, Username: []byte(user), Properties: props})
}

// leave disconnects the client normally.
func (cl *client) leave() {
	cl.send(&packet.Disconnect{})
	cl.c.Closed()
}

// connected returns a 5.0 client connected with a clean session as claim.
func (h *harness) connected(claim, id string) *client {
	h.t.Helper()
	cl := h.dial(id, packet.V5, "d")
	cl.connectAs(claim, id, true, packet.Properties{})
	cl.expect(connack5)
	return cl
}

func newIdentityHarness(t *testing.T, adjust func(*Config)) (*harness, *event.Ring) {
	t.Helper()
	ring := event.NewRing(100)
	h := newHarnessWith(t, func(c *Config) {
		c.Authenticator, c.Events = claimAuth{}, ring
		if adjust != nil {
			adjust(c)
		}
	})
	return h, ring
}

func authFailures(r *event.Ring) []string {
	var out []string
	for _, e := range r.Events() {
		if e.Type == event.AuthFailed {
			out = append(out, e.Reason.String()+": "+e.Detail)
		}
	}
	return out
}

// Whatever an authenticator returns, a tenant or user name the broker cannot
// keep apart from others is refused with 0x87, before it reaches a tenant,
// a store key or a metric (the hardening issue: a JWT tenant "t1\x00status"
// wrote into tenant t1's key space).
func TestInvalidIdentityRefused(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, claim string
		ok          bool
	}{
		{"plain", "acme|alice", true},
		{"NUL in the tenant", "t1%00status|alice", false},
		{"slash in the tenant", "t1/x|alice", false},
		{"empty tenant", "|alice", false},
		{"long tenant", strings.Repeat("t", tenantpkg.MaxNameLen+1) + "|alice", false},
		{"control character in the user", "acme|al\x1bice", false},
		{"long user", "acme|" + strings.Repeat("u", tenantpkg.MaxUserLen+1), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, ring := newIdentityHarness(t, nil)
			for _, v := range []packet.Version{packet.V5, packet.V311} {
				c := h.dial("c", v, "d")
				c.connectAs(tt.claim, "dev", true, packet.Properties{})
				got, closing := c.recv()
				switch {
				case tt.ok && (len(got) != 1 || !strings.HasPrefix(got[0], "CONNACK code=0x00")):
					t.Fatalf("%v: got %v, want acceptance", v, got)
				case !tt.ok && v == packet.V5 && !cmp.Equal(got, []string{"CONNACK code=0x87"}):
					t.Fatalf("%v: got %v, want CONNACK 0x87", v, got)
				case !tt.ok && v == packet.V311 && !cmp.Equal(got, []string{"CONNACK code=0x05"}):
					t.Fatalf("%v: got %v, want CONNACK 5 (not authorized)", v, got)
				case !tt.ok && !closing:
					t.Fatalf("%v: refused connection left open", v)
				}
				c.c.Closed()
			}
			if tt.ok {
				return
			}
			if got := h.b.Tenants(); len(got) != 0 {
				t.Errorf("tenants %q created by refused clients", got)
			}
			fails := authFailures(ring)
			if len(fails) != 2 || !strings.Contains(fails[0], "invalid name") {
				t.Errorf("auth_failed events = %q, want two naming the invalid name", fails)
			}
		})
	}
}

// A session belongs to the user that created it: another user's CONNECT
// with its client id is refused (0x87), whether it asks to resume, to take
// over a connected session or to discard it with a clean start, and the
// session is left as it was (the hardening issue: bob, denied alice's
// topics, read her queued messages by connecting with her client id).
func TestSessionBelongsToItsUser(t *testing.T) {
	t.Parallel()
	h, ring := newIdentityHarness(t, nil)
	alice := h.dial("alice", packet.V5, "d")
	alice.connectAs("acme|alice", "phone", false, expiry(300))
	alice.expect(connack5)
	alice.send(sub(1, "private/alice/#", 1))
	alice.expect("SUBACK id=1 codes=[0x01]")

	// While alice is connected: no takeover by bob, nor by an anonymous
	// client of the tenant.
	for _, who := range []string{"acme|bob", "acme|"} {
		for _, clean := range []bool{false, true} {
			b := h.dial("intruder", packet.V5, "d")
			b.connectAs(who, "phone", clean, expiry(300))
			b.expect("CONNACK code=0x87")
			if !b.c.Closing() {
				t.Fatalf("%s clean=%v: refused connection left open", who, clean)
			}
		}
	}
	alice.expect() // still connected, not told anything

	// Offline, with a message queued: bob still cannot resume it.
	alice.leave()
	p := h.connected("acme|alice", "sensor")
	p.send(pub("private/alice/inbox", "secret", 1, 1))
	p.expect("PUBACK id=1")
	bob := h.dial("bob", packet.V5, "d")
	bob.connectAs("acme|bob", "phone", false, expiry(300))
	bob.expect("CONNACK code=0x87")
	bob.c.Closed()

	// alice resumes her session and gets her message.
	alice2 := h.dial("alice2", packet.V5, "d")
	alice2.connectAs("acme|alice", "phone", false, expiry(300))
	alice2.expect("CONNACK present code=0x00 receive-max=1024 alias-max=64 max-packet=1048576",
		`PUBLISH topic="private/alice/inbox" qos=1 id=1 payload="secret"`)

	fails := authFailures(ring)
	if len(fails) != 5 || !strings.Contains(fails[0], "another user") {
		t.Errorf("auth_failed events = %q, want 5 naming another user's session", fails)
	}
	// The same client id in another tenant is another session.
	other := h.dial("other", packet.V5, "d")
	other.connectAs("beta|bob", "phone", false, expiry(300))
	other.expect(connack5)
}

// A tenant whose devices share a client id across users can allow it
// (session_takeover: any).
func TestSessionTakeoverAnyTenantSetting(t *testing.T) {
	t.Parallel()
	h, _ := newIdentityHarness(t, nil)
	s := tenantpkg.Default()
	s.SessionTakeover = tenantpkg.TakeoverAny
	if err := h.b.Settings().Set("open", s); err != nil {
		t.Fatal(err)
	}
	a := h.dial("a", packet.V5, "d")
	a.connectAs("open|alice", "shared", false, expiry(60))
	a.expect(connack5)
	b := h.dial("b", packet.V5, "d")
	b.connectAs("open|bob", "shared", false, expiry(60))
	if got, closing := a.recv(); !cmp.Equal(got, []string{"DISCONNECT code=0x8e"}) || !closing {
		t.Fatalf("alice got %v closing=%v, want taken over", got, closing)
	}
	b.expect("CONNACK present code=0x00 receive-max=1024 alias-max=64 max-packet=1048576")
	// Other tenants keep the default.
	c := h.dial("c", packet.V5, "d")
	c.connectAs("acme|carol", "x", false, expiry(60))
	c.expect(connack5)
	d := h.dial("d", packet.V5, "d")
	d.connectAs("acme|dave", "x", false, expiry(60))
	d.expect("CONNACK code=0x87")
}

// A resumed session is checked against the rules in force: a subscription
// its user may no longer make is dropped (with an event), and so are the
// messages queued for topics the user may no longer read.
func TestResumeRechecksACL(t *testing.T) {
	t.Parallel()
	rules := func(private bool) acl.Config {
		c := acl.Config{DefaultDeny: true, Tenants: map[string][]acl.RuleConfig{"acme": {
			{Permission: "allow", Action: "all", Topics: []string{"public/#"}},
		}}}
		action := "publish" // reading private topics is what gets revoked
		if private {
			action = "all"
		}
		c.Tenants["acme"] = append(c.Tenants["acme"], acl.RuleConfig{Permission: "allow", Action: action, Topics: []string{"private/#"}})
		return c
	}
	set, err := acl.NewSet(rules(true))
	if err != nil {
		t.Fatal(err)
	}
	h, ring := newIdentityHarness(t, func(c *Config) { c.Authorizer = set })
	a := h.dial("a", packet.V5, "d")
	a.connectAs("acme|alice", "phone", false, expiry(300))
	a.expect(connack5)
	a.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{
		{Filter: []byte("public/#"), QoS: 1}, {Filter: []byte("private/#"), QoS: 1}}})
	a.expect("SUBACK id=1 codes=[0x01 0x01]")
	a.leave()
	p := h.connected("acme|pub", "pub")
	p.send(pub("private/x", "p1", 1, 1))
	p.expect("PUBACK id=1")
	p.send(pub("public/x", "q1", 1, 2))
	p.expect("PUBACK id=2")

	// The rules change while alice is away: private/# is no longer hers.
	if err := set.Replace(rules(false)); err != nil {
		t.Fatal(err)
	}
	dropped := h.b.Stats().DroppedBy[DropNotAuthorized].Load()
	a2 := h.dial("a2", packet.V5, "d")
	a2.connectAs("acme|alice", "phone", false, expiry(300))
	a2.expect("CONNACK present code=0x00 receive-max=1024 alias-max=64 max-packet=1048576",
		`PUBLISH topic="public/x" qos=1 id=2 payload="q1"`)
	if n := h.b.Stats().DroppedBy[DropNotAuthorized].Load() - dropped; n != 1 {
		t.Errorf("%d queued messages dropped as not authorized, want 1", n)
	}
	var refused []string
	for _, e := range ring.Events() {
		if e.Type == event.SubscriptionRefused {
			refused = append(refused, e.Detail)
		}
	}
	if !cmp.Equal(refused, []string{"private/#"}) {
		t.Errorf("subscription_refused events %q, want the revoked private/#", refused)
	}
	// The route is gone: nothing more arrives on private topics.
	p.send(pub("private/y", "p2", 1, 3))
	p.expect("PUBACK id=3 code=0x10") // no matching subscribers
	a2.send(&packet.Ack{PacketType: packet.PUBACK, PacketID: 2})
	a2.expect()
}

// Tenants are made by the connections that name them; once a tenant holds
// nothing (no session, no retained message) it is freed, so that a stream
// of clients naming new tenants does not grow the broker for ever.
func TestTenantsFreedWhenEmpty(t *testing.T) {
	t.Parallel()
	h, _ := newIdentityHarness(t, nil)
	for i := range 100 {
		c := h.dial("c", packet.V5, "d")
		c.connectAs(fmt.Sprintf("t%d|u", i), "dev", true, packet.Properties{})
		c.expect(connack5)
		c.leave()
	}
	keep := h.dial("keep", packet.V5, "d") // a persistent session keeps its tenant
	keep.connectAs("persist|u", "dev", false, expiry(3600))
	keep.expect(connack5)
	keep.leave()
	r := h.connected("retain|u", "pub") // so does a retained message
	r.send(&packet.Publish{Topic: []byte("r"), Payload: []byte("x"), Retain: true})
	r.leave()
	live := h.connected("live|u", "dev") // and a connected client
	if n := len(h.b.Tenants()); n != 103 {
		t.Fatalf("%d tenants before the idle delay, want 103", n)
	}
	h.clock.Advance(tenantIdleTTL)
	if got := h.b.Tenants(); !cmp.Equal(got, []string{"live", "persist", "retain"}) {
		t.Fatalf("tenants after the idle delay: %v", got)
	}
	if n := h.b.Stats().TenantsFreed.Load(); n != 100 {
		t.Errorf("TenantsFreed = %d, want 100", n)
	}
	// A freed tenant comes back when a client names it again.
	c := h.connected("t7|u", "again")
	c.send(sub(1, "a", 0))
	c.expect("SUBACK id=1 codes=[0x00]")
	live.send(pub("a", "x", 0, 0))
	c.expect() // tenants stay apart
	c.leave()
	live.leave()
	h.clock.Advance(tenantIdleTTL)
	if got := h.b.Tenants(); !cmp.Equal(got, []string{"persist", "retain"}) {
		t.Fatalf("tenants at the end: %v", got)
	}
}
