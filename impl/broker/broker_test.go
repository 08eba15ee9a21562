package broker

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// harness runs a broker on a manual clock with in-memory connections
// driven synchronously by the test.
type harness struct {
	t     *testing.T
	b     *Broker
	clock *env.ManualClock
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWith(t, nil)
}

// newHarnessWith is newHarness with a configuration changed by adjust.
func newHarnessWith(t *testing.T, adjust func(*Config)) *harness {
	t.Helper()
	clock := env.NewManualClock(time.Unix(1_700_000_000, 0))
	e := env.Env{Clock: clock, Rand: env.NewRand(1)}
	cfg := DefaultConfig()
	if adjust != nil {
		adjust(&cfg)
	}
	return &harness{t: t, b: New(cfg, e, nil), clock: clock}
}

// client is a test connection.
type client struct {
	h     *harness
	c     *Conn
	v     packet.Version
	spare []byte
	name  string
}

func (h *harness) dial(name string, v packet.Version, tenant string) *client {
	cl := &client{h: h, v: v, name: name}
	cl.c = h.b.NewConn(ConnInfo{Listener: "test", DefaultTenant: tenant, Remote: name}, func() {})
	return cl
}

func (cl *client) send(p packet.Packet) {
	cl.h.t.Helper()
	b, err := packet.Encode(p, cl.v)
	if err != nil {
		cl.h.t.Fatal(err)
	}
	r := packet.NewReader(bytes.NewReader(b), 0)
	hd, body, err := r.ReadPacket()
	if err != nil {
		cl.h.t.Fatal(err)
	}
	cl.c.Handle(hd, body)
}

// recv returns every packet the connection has to write, formatted, and
// whether the broker wants it closed.
func (cl *client) recv() ([]string, bool) {
	var got []string
	for {
		out, closeNow := cl.c.Output(cl.spare)
		if len(out) == 0 {
			return got, closeNow
		}
		d := packet.NewDecoder(bytes.NewReader(out), cl.v)
		for {
			p, err := d.Next()
			if err != nil {
				break
			}
			got = append(got, packet.Format(p))
		}
		cl.spare = out[:0]
	}
}

func (cl *client) expect(want ...string) {
	cl.h.t.Helper()
	got, _ := cl.recv()
	if d := cmp.Diff(want, got); d != "" {
		cl.h.t.Fatalf("%s received (-want +got):\n%s", cl.name, d)
	}
}

func (cl *client) connect(id string, clean bool, props packet.Properties) {
	cl.h.t.Helper()
	cl.send(&packet.Connect{Version: cl.v, ClientID: []byte(id), CleanStart: clean, KeepAlive: 30, Properties: props})
}

func (cl *client) connectWithWill(id string, will string, delay uint32, props packet.Properties) {
	c := &packet.Connect{Version: cl.v, ClientID: []byte(id), CleanStart: true, KeepAlive: 30, Properties: props,
		WillFlag: true, WillTopic: []byte(will), WillPayload: []byte("gone")}
	if delay > 0 {
		c.WillProperties.WillDelay = delay
		c.WillProperties.Set(packet.PropWillDelay)
	}
	cl.send(c)
}

func expiry(s uint32) packet.Properties {
	var p packet.Properties
	p.SessionExpiry = s
	p.Set(packet.PropSessionExpiry)
	return p
}

func sub(id uint16, filter string, qos packet.QoS) *packet.Subscribe {
	return &packet.Subscribe{PacketID: id, Subscriptions: []packet.Subscription{{Filter: []byte(filter), QoS: qos}}}
}

func pub(topic, payload string, qos packet.QoS, id uint16) *packet.Publish {
	return &packet.Publish{Topic: []byte(topic), Payload: []byte(payload), QoS: qos, PacketID: id}
}

const connack5 = "CONNACK code=0x00 receive-max=1024 alias-max=64 max-packet=1048576"

func TestTakeover(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a := h.dial("a", packet.V5, "t")
	a.connect("same", false, expiry(60))
	a.expect(connack5)
	a.send(sub(1, "x", 1))
	a.expect("SUBACK id=1 codes=[0x01]")

	b := h.dial("b", packet.V5, "t")
	b.connect("same", false, expiry(60))
	// The old connection is told why and closed [v5 MQTT-3.1.4-3]; the new
	// one resumes the session.
	got, closing := a.recv()
	if d := cmp.Diff([]string{"DISCONNECT code=0x8e"}, got); d != "" || !closing {
		t.Fatalf("old connection got %v closing=%v", got, closing)
	}
	b.expect("CONNACK present code=0x00 receive-max=1024 alias-max=64 max-packet=1048576")
	a.c.Closed() // the runtime closes the old transport: nothing happens to the session
	p := h.dial("p", packet.V311, "t")
	p.connect("pub", true, packet.Properties{})
	p.expect("CONNACK code=0x00")
	p.send(pub("x", "m", 1, 1))
	p.expect("PUBACK id=1")
	b.expect(`PUBLISH topic="x" qos=1 id=1 payload="m"`)
}

func TestWillDelayAndResume(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	s := h.dial("s", packet.V5, "t")
	s.connect("sub", true, packet.Properties{})
	s.expect(connack5)
	s.send(sub(1, "will/#", 0))
	s.expect("SUBACK id=1 codes=[0x00]")

	w := h.dial("w", packet.V5, "t")
	w.connectWithWill("w1", "will/a", 5, expiry(100))
	w.expect(connack5)
	w.c.Closed() // network failure
	h.clock.Advance(4 * time.Second)
	s.expect()
	h.clock.Advance(time.Second)
	s.expect(`PUBLISH topic="will/a" qos=0 payload="gone"`)

	// A client that comes back before the delay suppresses its will
	// [v5 MQTT-3.1.3-9].
	w2 := h.dial("w2", packet.V5, "t")
	w2.connectWithWill("w2", "will/b", 5, expiry(100))
	w2.expect(connack5)
	w2.c.Closed()
	h.clock.Advance(2 * time.Second)
	back := h.dial("w2b", packet.V5, "t")
	back.connect("w2", false, expiry(100))
	back.expect("CONNACK present code=0x00 receive-max=1024 alias-max=64 max-packet=1048576")
	h.clock.Advance(10 * time.Second)
	s.expect()
}

func TestSessionExpiry(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.dial("c", packet.V5, "t")
	c.connect("e", false, expiry(10))
	c.expect(connack5)
	c.send(sub(1, "q", 1))
	c.expect("SUBACK id=1 codes=[0x01]")
	c.c.Closed()
	if n := h.b.Stats().Sessions.Load(); n != 1 {
		t.Fatalf("sessions = %d", n)
	}
	h.clock.Advance(10 * time.Second)
	if n := h.b.Stats().Sessions.Load(); n != 0 {
		t.Fatalf("sessions after expiry = %d", n)
	}
	// The expired session's routes are gone too.
	h.b.mu.Lock()
	tn := h.b.tenants["t"]
	h.b.mu.Unlock()
	if n := tn.routes.Len(); n != 0 {
		t.Fatalf("%d routes left", n)
	}
	c2 := h.dial("c2", packet.V5, "t")
	c2.connect("e", false, expiry(10))
	c2.expect(connack5) // Session Present 0 [v5 MQTT-3.2.2-3]
}

func TestTenantsAreIsolated(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	red := h.dial("red", packet.V311, "red")
	red.connect("same-id", true, packet.Properties{})
	red.expect("CONNACK code=0x00")
	red.send(sub(1, "#", 0))
	red.expect("SUBACK id=1 codes=[0x00]")
	// The same client id in another tenant is another session: no takeover.
	blue := h.dial("blue", packet.V311, "blue")
	blue.connect("same-id", true, packet.Properties{})
	blue.expect("CONNACK code=0x00")
	blue.send(&packet.Publish{Topic: []byte("a"), Payload: []byte("blue"), Retain: true})
	red.expect()
	red.send(sub(2, "a", 0))
	red.expect("SUBACK id=2 codes=[0x00]") // no retained message from blue
	blue.send(sub(1, "a", 0))
	blue.expect("SUBACK id=1 codes=[0x00]", `PUBLISH topic="a" qos=0 retain payload="blue"`)
	// Without an authenticator that vouches for it, a user name
	// "tenant/user" does not pick the tenant: the client stays in the
	// listener's default tenant.
	green := h.dial("green", packet.V311, "default")
	green.send(&packet.Connect{Version: packet.V311, ClientID: []byte("g"), CleanStart: true,
		UsernameFlag: true, Username: []byte("red/mallory")})
	green.expect("CONNACK code=0x00")
	green.send(pub("b", "from green", 0, 0))
	red.expect()
	if got := h.b.Tenants(); !cmp.Equal(got, []string{"blue", "default", "red"}) {
		t.Errorf("tenants = %v", got)
	}
}

// An authenticator that vouches for "tenant/user" names (here the trusting
// one of the tests) puts the client in the tenant its name claims.
func TestTenantFromUsername(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, func(c *Config) { c.Authenticator = TenantFromUsername{} })
	red := h.dial("red", packet.V311, "red")
	red.connect("r", true, packet.Properties{})
	red.expect("CONNACK code=0x00")
	red.send(sub(1, "#", 0))
	red.expect("SUBACK id=1 codes=[0x00]")
	green := h.dial("green", packet.V311, "default")
	green.send(&packet.Connect{Version: packet.V311, ClientID: []byte("g"), CleanStart: true,
		UsernameFlag: true, Username: []byte("red/alice")})
	green.expect("CONNACK code=0x00")
	green.send(pub("b", "from green", 0, 0))
	red.expect(`PUBLISH topic="b" qos=0 payload="from green"`)
}

func TestOverlapNoLocalAndSubscriptionIDs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.dial("c", packet.V5, "t")
	c.connect("c", true, packet.Properties{})
	c.expect(connack5)
	s1 := sub(1, "a/+", 1)
	s1.Properties.SubscriptionIDs = []uint32{7}
	c.send(s1)
	s2 := sub(2, "a/#", 2)
	s2.Properties.SubscriptionIDs = []uint32{9}
	c.send(s2)
	c.send(&packet.Subscribe{PacketID: 3, Subscriptions: []packet.Subscription{{Filter: []byte("a/b"), QoS: 0, NoLocal: true}}})
	c.expect("SUBACK id=1 codes=[0x01]", "SUBACK id=2 codes=[0x02]", "SUBACK id=3 codes=[0x00]")
	c.send(pub("a/b", "x", 2, 5))
	// One delivery at the highest QoS of the overlapping subscriptions with
	// both identifiers; the No Local subscription adds nothing.
	c.expect(`PUBLISH topic="a/b" qos=2 id=1 payload="x" sub-ids=[7 9]`, "PUBREC id=5")
}

func TestSharedGroupRoundRobin(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var members []*client
	for i := range 2 {
		m := h.dial(fmt.Sprint("m", i), packet.V5, "t")
		m.connect(fmt.Sprint("m", i), true, packet.Properties{})
		m.expect(connack5)
		m.send(sub(1, "$share/g/jobs", 1))
		m.expect("SUBACK id=1 codes=[0x01]")
		members = append(members, m)
	}
	p := h.dial("p", packet.V5, "t")
	p.connect("p", true, packet.Properties{})
	p.expect(connack5)
	for i := range 4 {
		p.send(pub("jobs", fmt.Sprint(i), 0, 0))
	}
	var counts []int
	for _, m := range members {
		got, _ := m.recv()
		counts = append(counts, len(got))
	}
	if d := cmp.Diff([]int{2, 2}, counts); d != "" {
		t.Fatalf("deliveries per member (-want +got):\n%s", d)
	}
}

func TestRetainHandling(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p := h.dial("p", packet.V5, "t")
	p.connect("p", true, packet.Properties{})
	p.expect(connack5)
	p.send(&packet.Publish{Topic: []byte("r"), Payload: []byte("kept"), Retain: true, QoS: 1, PacketID: 1})
	p.expect("PUBACK id=1 code=0x10")
	c := h.dial("c", packet.V5, "t")
	c.connect("c", true, packet.Properties{})
	c.expect(connack5)
	rh := func(id uint16, h byte) *packet.Subscribe {
		return &packet.Subscribe{PacketID: id, Subscriptions: []packet.Subscription{{Filter: []byte("r"), QoS: 1, RetainHandling: h}}}
	}
	c.send(rh(1, 1))
	c.expect("SUBACK id=1 codes=[0x01]", `PUBLISH topic="r" qos=1 id=1 retain payload="kept"`)
	c.send(&packet.Ack{PacketType: packet.PUBACK, PacketID: 1})
	c.send(rh(2, 1)) // exists already: nothing [v5 MQTT-3.3.1-10]
	c.expect("SUBACK id=2 codes=[0x01]")
	c.send(rh(3, 2)) // never [v5 MQTT-3.3.1-11]
	c.expect("SUBACK id=3 codes=[0x01]")
	c.send(rh(4, 0)) // always
	c.expect("SUBACK id=4 codes=[0x01]", `PUBLISH topic="r" qos=1 id=2 retain payload="kept"`)
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cases := []struct {
		name string
		v    packet.Version
		c    *packet.Connect
		want string
	}{
		{"3.1.1 empty id, persistent", packet.V311, &packet.Connect{Version: packet.V311}, "CONNACK code=0x02"},
		{"3.1 empty id", packet.V31, &packet.Connect{Version: packet.V31, CleanStart: true}, "CONNACK code=0x02"},
		{"5.0 will topic with wildcard", packet.V5, &packet.Connect{Version: packet.V5, ClientID: []byte("x"),
			WillFlag: true, WillTopic: []byte("a/#")}, "CONNACK code=0x90"},
		{"5.0 unknown auth method", packet.V5, &packet.Connect{Version: packet.V5, ClientID: []byte("x"),
			Properties: func() packet.Properties {
				var p packet.Properties
				p.AuthMethod = []byte("SCRAM-SHA-1")
				p.Set(packet.PropAuthMethod)
				return p
			}()}, "CONNACK code=0x8c"},
	}
	for _, tc := range cases {
		c := h.dial(tc.name, tc.v, "t")
		c.send(tc.c)
		got, closing := c.recv()
		if !closing || len(got) != 1 || !strings.HasPrefix(got[0], tc.want) {
			t.Errorf("%s: got %v closing=%v, want %s", tc.name, got, closing, tc.want)
		}
	}
}

func TestSysTopicsPerTenant(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.b.StartSys(10*time.Second, "skybridge test")
	a := h.dial("a", packet.V311, "alpha")
	a.connect("a", true, packet.Properties{})
	a.expect("CONNACK code=0x00")
	a.send(sub(1, "$SYS/broker/clients/connected", 0))
	a.expect("SUBACK id=1 codes=[0x00]")
	b := h.dial("b", packet.V311, "beta")
	b.connect("b1", true, packet.Properties{})
	b.expect("CONNACK code=0x00")
	b2 := h.dial("b2", packet.V311, "beta")
	b2.connect("b2", true, packet.Properties{})
	b2.expect("CONNACK code=0x00")
	// "#" does not match $SYS [v5 MQTT-4.7.2-1]; the explicit filter does, and
	// each tenant sees only its own figures.
	b.send(sub(1, "#", 0))
	b.send(sub(2, "$SYS/broker/clients/connected", 0))
	b.expect("SUBACK id=1 codes=[0x00]", "SUBACK id=2 codes=[0x00]")
	h.clock.Advance(10 * time.Second)
	a.expect(`PUBLISH topic="$SYS/broker/clients/connected" qos=0 payload="1"`)
	b.expect(`PUBLISH topic="$SYS/broker/clients/connected" qos=0 payload="2"`)
	h.b.StopSys()
	h.clock.Advance(time.Minute)
	a.expect()
}

// challenge is a toy enhanced-authentication method: the client must echo
// the server's challenge with "+ok" appended.
type challenge struct{}

type challengeEx struct {
	step int
	ok   bool
}

func (challenge) Begin(method string, _ *AuthRequest) (Exchange, bool) {
	return &challengeEx{}, method == "challenge"
}

func (x *challengeEx) Step(data []byte) ([]byte, bool, packet.ReasonCode) {
	x.step++
	switch {
	case x.step == 1:
		return []byte("nonce"), false, packet.Success
	case string(data) == "nonce+ok":
		x.ok = true
		return []byte("welcome"), true, packet.Success
	}
	return nil, false, packet.NotAuthorized
}

func (x *challengeEx) Result() AuthResult {
	return AuthResult{Code: packet.Success, Tenant: "auth-tenant", User: "u"}
}

func authPacket(code packet.ReasonCode, method, data string) *packet.Auth {
	a := &packet.Auth{ReasonCode: code}
	a.Properties.AuthMethod, a.Properties.AuthData = []byte(method), []byte(data)
	a.Properties.Set(packet.PropAuthMethod)
	a.Properties.Set(packet.PropAuthData)
	return a
}

func TestEnhancedAuthentication(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.b.cfg.EnhancedAuth = challenge{}
	var props packet.Properties
	props.AuthMethod = []byte("challenge")
	props.Set(packet.PropAuthMethod)

	c := h.dial("c", packet.V5, "t")
	c.connect("c", true, props)
	c.expect(`AUTH code=0x18 auth-method="challenge" auth-data="nonce"`)
	c.send(authPacket(packet.ContinueAuthentication, "challenge", "nonce+ok"))
	c.expect(`CONNACK code=0x00 auth-method="challenge" auth-data="welcome" receive-max=1024 alias-max=64 max-packet=1048576`)
	// Re-authentication on the live connection [v5 MQTT-4.12.1-1].
	c.send(authPacket(packet.ReAuthenticate, "challenge", ""))
	c.expect(`AUTH code=0x18 auth-method="challenge" auth-data="nonce"`)
	c.send(authPacket(packet.ContinueAuthentication, "challenge", "nonce+ok"))
	c.expect(`AUTH auth-method="challenge" auth-data="welcome"`)
	// A failed re-authentication ends the connection [v5 MQTT-4.12.1-2].
	c.send(authPacket(packet.ReAuthenticate, "challenge", ""))
	c.expect(`AUTH code=0x18 auth-method="challenge" auth-data="nonce"`)
	c.send(authPacket(packet.ContinueAuthentication, "challenge", "wrong"))
	got, closing := c.recv()
	if d := cmp.Diff([]string{"DISCONNECT code=0x87"}, got); d != "" || !closing {
		t.Fatalf("after a failed re-authentication: %v closing=%v", got, closing)
	}

	// A wrong answer during CONNECT is refused with the exchange's code.
	bad := h.dial("bad", packet.V5, "t")
	bad.connect("bad", true, props)
	bad.expect(`AUTH code=0x18 auth-method="challenge" auth-data="nonce"`)
	bad.send(authPacket(packet.ContinueAuthentication, "challenge", "guess"))
	got, closing = bad.recv()
	if d := cmp.Diff([]string{"CONNACK code=0x87"}, got); d != "" || !closing {
		t.Fatalf("failed authentication: %v closing=%v", got, closing)
	}
	// An unknown method is refused with 0x8C [v5 MQTT-4.12.0-1].
	var other packet.Properties
	other.AuthMethod = []byte("kerberos")
	other.Set(packet.PropAuthMethod)
	u := h.dial("u", packet.V5, "t")
	u.connect("u", true, other)
	got, _ = u.recv()
	if d := cmp.Diff([]string{"CONNACK code=0x8c"}, got); d != "" {
		t.Fatalf("unknown method (-want +got):\n%s", d)
	}
}

func TestRedirect(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, tc := range []struct {
		v     packet.Version
		moved bool
		want  string
	}{
		{packet.V5, false, `CONNACK code=0x9c server-ref="other:1883"`},
		{packet.V5, true, `CONNACK code=0x9d server-ref="other:1883"`},
		{packet.V311, false, "CONNACK code=0x03"},
	} {
		c := &client{h: h, v: tc.v, name: "r"}
		c.c = h.b.NewConn(ConnInfo{DefaultTenant: "t", Redirect: "other:1883", Moved: tc.moved}, func() {})
		c.connect("r", true, packet.Properties{})
		got, closing := c.recv()
		if d := cmp.Diff([]string{tc.want}, got); d != "" || !closing {
			t.Errorf("v%s moved=%v: %v closing=%v (-want +got):\n%s", tc.v, tc.moved, got, closing, d)
		}
	}
}
