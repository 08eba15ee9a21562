package auth

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

func TestChain(t *testing.T) {
	t.Parallel()
	clock := env.NewManualClock(jwtT0)
	pf, err := NewPasswordFile([]byte("acme/alice:" + testHash(t, "pw") + "\nacme/joe:" + testHash(t, "pw")))
	if err != nil {
		t.Fatal(err)
	}
	j := newJWT(t, clock, nil)
	chain := &Chain{
		Deciders:       []Decider{&CertAuth{TenantAttr: "O", Listeners: []string{"mtls"}}, j, pf, nil},
		AllowAnonymous: []string{"open"},
	}
	tok := sign(t, jwt.SigningMethodHS256, secret1, "k1", claims("sub", "joe", "tenant", "acme"))
	r := func(listener, user, pw, cert string) *broker.AuthRequest {
		x := req(user, pw)
		x.Listener, x.CertSubject = listener, cert
		return x
	}
	type res struct {
		Code         packet.ReasonCode
		Tenant, User string
	}
	tests := []struct {
		name string
		r    *broker.AuthRequest
		want res
	}{
		{"certificate decides first", r("mtls", "acme/alice", "wrong", "CN=dev,O=acme"), res{0, "acme", "dev"}},
		{"certificate elsewhere is not looked at", r("tcp", "acme/alice", "pw", "CN=dev,O=acme"), res{0, "acme", "alice"}},
		{"a refusal is final", r("mtls", "acme/alice", "pw", "CN=dev"), res{Code: 0x87}},
		{"token", r("tcp", "joe", tok, ""), res{0, "acme", "joe"}},
		{"bad token: refused, not passed to the file", r("tcp", "acme/joe", tok[:len(tok)-2], ""), res{Code: 0x86}},
		{"password", r("tcp", "acme/alice", "pw", ""), res{0, "acme", "alice"}},
		{"wrong password", r("tcp", "acme/alice", "nope", ""), res{Code: 0x86}},
		{"unknown user", r("tcp", "acme/zed", "pw", ""), res{Code: 0x86}},
		{"unknown user on the anonymous listener", r("open", "acme/zed", "pw", ""), res{Code: 0x86}},
		{"user name without password", r("open", "acme/zed", "", ""), res{Code: 0x86}},
		{"anonymous where allowed", r("open", "", "", ""), res{0, "dflt", ""}},
		{"anonymous elsewhere", r("tcp", "", "", ""), res{Code: 0x87}},
	}
	for _, tc := range tests {
		ar := chain.Authenticate(tc.r)
		if d := cmp.Diff(tc.want, res{ar.Code, ar.Tenant, ar.User}); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
	// Identify on a plain Authenticator.
	if id := Identify(broker.TenantFromUsername{}, req("t/u", "")); id.Code != 0 || id.Tenant != "t" || id.User != "u" {
		t.Errorf("Identify(TenantFromUsername) = %+v", id)
	}
	// AllowAll vouches for nobody's tenant: the listener's default.
	if id := Identify(broker.AllowAll{}, req("t/u", "")); id.Code != 0 || id.Tenant != "dflt" || id.User != "t/u" {
		t.Errorf("Identify(AllowAll) = %+v", id)
	}
	if _, ok := (Methods{"x": nil}).Begin("x", &broker.AuthRequest{}); ok {
		t.Error("a nil method began")
	}
}

// conn is a broker connection driven the way impl/server drives one.
type conn struct {
	t   *testing.T
	c   *broker.Conn
	out []byte
}

func dial(t *testing.T, b *broker.Broker, info broker.ConnInfo) *conn {
	return &conn{t: t, c: b.NewConn(info, func() {})}
}

func (c *conn) send(p packet.Packet) {
	c.t.Helper()
	b, err := packet.Encode(p, packet.V5)
	if err != nil {
		c.t.Fatal(err)
	}
	h, body, err := packet.NewReader(bytes.NewReader(b), 0).ReadPacket()
	if err != nil {
		c.t.Fatal(err)
	}
	c.c.Handle(h, body)
}

// recv returns the packets the broker has for the client.
func (c *conn) recv() []packet.Packet {
	var got []packet.Packet
	for {
		out, _ := c.c.Output(c.out)
		if len(out) == 0 {
			return got
		}
		d := packet.NewDecoder(bytes.NewReader(out), packet.V5)
		for {
			p, err := d.Next()
			if err != nil {
				break
			}
			got = append(got, clonePacket(c.t, p))
		}
		c.out = out[:0]
	}
}

// clonePacket copies a decoded packet out of the decoder's memory.
func clonePacket(t *testing.T, p packet.Packet) packet.Packet {
	b, err := packet.Encode(p, packet.V5)
	if err != nil {
		t.Fatal(err)
	}
	d := packet.NewDecoder(bytes.NewReader(b), packet.V5)
	q, err := d.Next()
	if err != nil {
		t.Fatal(err)
	}
	switch q := q.(type) {
	case *packet.Auth:
		cp := *q
		cp.Properties.AuthMethod = bytes.Clone(q.Properties.AuthMethod)
		cp.Properties.AuthData = bytes.Clone(q.Properties.AuthData)
		return &cp
	case *packet.Connack:
		cp := *q
		cp.Properties.AuthMethod = bytes.Clone(q.Properties.AuthMethod)
		cp.Properties.AuthData = bytes.Clone(q.Properties.AuthData)
		return &cp
	}
	return q
}

func authProps(method string, data []byte) packet.Properties {
	var p packet.Properties
	p.AuthMethod = []byte(method)
	p.Set(packet.PropAuthMethod)
	if data != nil {
		p.AuthData = data
		p.Set(packet.PropAuthData)
	}
	return p
}

// TestThroughTheBroker runs SCRAM (with re-authentication), a JWT exchange
// and a Chain inside the real broker, as the lead will wire them.
func TestThroughTheBroker(t *testing.T) {
	t.Parallel()
	clock := env.NewManualClock(jwtT0)
	creds, err := NewCredentials(env.NewRand(5), []byte("pencil"), 4096)
	if err != nil {
		t.Fatal(err)
	}
	pf, err := NewPasswordFile([]byte("acme/alice:" + creds.String() + "\nacme/bob:" + testHash(t, "pw")))
	if err != nil {
		t.Fatal(err)
	}
	scram, err := NewSCRAM(pf, env.NewLockedRand(11))
	if err != nil {
		t.Fatal(err)
	}
	j := newJWT(t, clock, func(o *JWTOptions) { o.Method = "JWT" })
	cfg := broker.DefaultConfig()
	cfg.Authenticator = &Chain{Deciders: []Decider{j, pf}}
	cfg.EnhancedAuth = Methods{SCRAMMethod: scram, "JWT": j}
	b := broker.New(cfg, env.Env{Clock: clock, Rand: env.NewRand(1)}, nil)
	info := broker.ConnInfo{Listener: "tcp", DefaultTenant: "dflt", Remote: "r"}

	// SCRAM: CONNECT with client-first, AUTH with client-final, CONNACK
	// with server-final.
	c := dial(t, b, info)
	cl := &scramClient{user: "acme/alice", password: "pencil", nonce: "cnonce"}
	c.send(&packet.Connect{Version: packet.V5, ClientID: []byte("s1"), CleanStart: true, Properties: authProps(SCRAMMethod, []byte(cl.first()))})
	got := c.recv()
	a, ok := got[0].(*packet.Auth)
	if len(got) != 1 || !ok || a.ReasonCode != packet.ContinueAuthentication {
		t.Fatalf("after CONNECT: %v", got)
	}
	final, err := cl.final(string(a.Properties.AuthData))
	if err != nil {
		t.Fatal(err)
	}
	auth := &packet.Auth{ReasonCode: packet.ContinueAuthentication, Properties: authProps(SCRAMMethod, []byte(final))}
	c.send(auth)
	got = c.recv()
	ack, ok := got[0].(*packet.Connack)
	if !ok || ack.ReasonCode != 0 {
		t.Fatalf("after client-final: %v", got)
	}
	if err := cl.verify(string(ack.Properties.AuthData)); err != nil {
		t.Fatal(err)
	}
	// Re-authentication on the live connection runs a new exchange.
	cl = &scramClient{user: "acme/alice", password: "pencil", nonce: "again"}
	c.send(&packet.Auth{ReasonCode: packet.ReAuthenticate, Properties: authProps(SCRAMMethod, []byte(cl.first()))})
	got = c.recv()
	a, ok = got[0].(*packet.Auth)
	if !ok || a.ReasonCode != packet.ContinueAuthentication {
		t.Fatalf("re-auth first: %v", got)
	}
	final, _ = cl.final(string(a.Properties.AuthData))
	c.send(&packet.Auth{ReasonCode: packet.ContinueAuthentication, Properties: authProps(SCRAMMethod, []byte(final))})
	got = c.recv()
	a, ok = got[0].(*packet.Auth)
	if !ok || a.ReasonCode != packet.Success || cl.verify(string(a.Properties.AuthData)) != nil {
		t.Fatalf("re-auth final: %v", got)
	}

	// A wrong SCRAM password is refused with 0x86.
	c = dial(t, b, info)
	cl = &scramClient{user: "acme/alice", password: "crayon", nonce: "n"}
	c.send(&packet.Connect{Version: packet.V5, ClientID: []byte("s2"), CleanStart: true, Properties: authProps(SCRAMMethod, []byte(cl.first()))})
	a = c.recv()[0].(*packet.Auth)
	final, _ = cl.final(string(a.Properties.AuthData))
	c.send(&packet.Auth{ReasonCode: packet.ContinueAuthentication, Properties: authProps(SCRAMMethod, []byte(final))})
	if ack := c.recv()[0].(*packet.Connack); ack.ReasonCode != packet.BadUserNameOrPassword {
		t.Errorf("wrong SCRAM password: CONNACK %v", ack.ReasonCode)
	}

	// JWT as an enhanced method: one step, straight to CONNACK.
	tok := sign(t, jwt.SigningMethodHS256, secret1, "k1", claims("sub", "u", "tenant", "acme", "exp", jwtT0.Add(time.Hour).Unix()))
	c = dial(t, b, info)
	c.send(&packet.Connect{Version: packet.V5, ClientID: []byte("j1"), CleanStart: true, Properties: authProps("JWT", []byte(tok))})
	if ack := c.recv()[0].(*packet.Connack); ack.ReasonCode != 0 {
		t.Errorf("JWT method: CONNACK %v", ack.ReasonCode)
	}

	// The chain on plain CONNECTs.
	for _, tc := range []struct {
		user, pw string
		want     packet.ReasonCode
	}{
		{"acme/bob", "pw", 0},
		{"acme/bob", "no", packet.BadUserNameOrPassword},
		{"", tok, 0},
		{"", "", packet.NotAuthorized},
	} {
		c = dial(t, b, info)
		p := &packet.Connect{Version: packet.V5, ClientID: []byte("p" + tc.user), CleanStart: true}
		if tc.user != "" {
			p.UsernameFlag, p.Username = true, []byte(tc.user)
		}
		if tc.pw != "" {
			p.PasswordFlag, p.Password = true, []byte(tc.pw)
		}
		c.send(p)
		if ack := c.recv()[0].(*packet.Connack); ack.ReasonCode != tc.want {
			t.Errorf("CONNECT %q/%q: %v, want %v", tc.user, strings.Repeat("*", len(tc.pw)), ack.ReasonCode, tc.want)
		}
	}
}
