package broker

import (
	"io"
	"time"

	"github.com/skybridge-mq/skybridge/impl/event"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/session"
)

// beginAuth starts the enhanced authentication a 5.0 CONNECT asks for
// (section 4.12). The CONNECT waits, copied, until the exchange ends.
func (c *Conn) beginAuth(conn *packet.Connect, req AuthRequest, now time.Time) {
	method := string(conn.Properties.AuthMethod)
	var ex Exchange
	ok := false
	if ea := c.b.cfg.EnhancedAuth; ea != nil {
		ex, ok = ea.Begin(method, &req)
	}
	if !ok {
		c.refuse(packet.V5, packet.BadAuthenticationMethod) // [v5 MQTT-4.12.0-1]
		return
	}
	own, err := packet.Encode(conn, packet.V5)
	if err != nil {
		c.refuse(packet.V5, packet.ImplementationSpecificError)
		return
	}
	cp := &packet.Connect{}
	r := packet.NewReader(bytesReader(own), 0)
	h, body, err := r.ReadPacket()
	if err == nil {
		err = cp.Decode(h, append([]byte(nil), body...), packet.V5)
	}
	if err != nil {
		c.refuse(packet.V5, packet.ImplementationSpecificError)
		return
	}
	a := c.authState()
	a.ex, a.method, a.connect, a.req = ex, []byte(method), cp, &req
	c.authStep(conn.Properties.AuthData, now)
}

// continueAuth handles a packet from a client whose CONNECT waits for its
// authentication: only AUTH with Continue authentication and the same
// method is allowed [v5 MQTT-4.12.0-3] [v5 MQTT-4.12.0-5].
func (c *Conn) continueAuth(h packet.FixedHeader, body []byte, now time.Time) {
	c.dec.Version = packet.V5
	p, err := c.dec.Decode(h, body)
	if err != nil {
		c.b.stats.ProtocolError.Add(1)
		c.refuse(packet.V5, packet.CodeOf(err))
		return
	}
	a, ok := p.(*packet.Auth)
	if !ok || a.ReasonCode != packet.ContinueAuthentication || string(a.Properties.AuthMethod) != string(c.auth.method) {
		c.b.stats.ProtocolError.Add(1)
		c.refuse(packet.V5, packet.ProtocolError)
		return
	}
	c.authStep(a.Properties.AuthData, now)
}

// authStep runs one step of the exchange before CONNACK.
func (c *Conn) authStep(data []byte, now time.Time) {
	reply, done, code := c.auth.ex.Step(data)
	switch {
	case code.IsError():
		c.refuse(packet.V5, code) // [v5 MQTT-4.12.0-4]
	case !done:
		// [v5 MQTT-4.12.0-2]: more is needed.
		a := packet.Auth{ReasonCode: packet.ContinueAuthentication}
		a.Properties.AuthMethod, a.Properties.AuthData = c.auth.method, reply
		a.Properties.Set(packet.PropAuthMethod)
		if reply != nil {
			a.Properties.Set(packet.PropAuthData)
		}
		c.mu.Lock()
		c.pending, _ = a.Append(c.pending, packet.V5)
		c.mu.Unlock()
		c.wakeUp()
	default:
		conn, ar := c.auth.connect, c.auth.ex.Result()
		c.auth.connect = nil
		if ar.Code.IsError() {
			c.refuse(packet.V5, ar.Code)
			return
		}
		if ar.Tenant == "" {
			ar.Tenant, ar.User = TenantOf(c.auth.req.Username, c.auth.req.DefaultTenant)
		}
		c.accept(conn, string(conn.ClientID), ar, session.AttachInfo{AuthMethod: c.auth.method, AuthData: reply}, now)
	}
}

// reauthenticate handles AUTH on an established connection: re-authentication
// with the method of the CONNECT [v5 MQTT-4.12.1-1]. A failure ends the
// connection with the reason [v5 MQTT-4.12.1-2].
func (c *Conn) reauthenticate(e *entry, a *packet.Auth) {
	kick := func(code packet.ReasonCode) {
		e.mu.Lock()
		if e.conn == c {
			e.s.Kick(code)
		}
		e.mu.Unlock()
		c.markClosing()
	}
	if string(a.Properties.AuthMethod) != string(c.auth.method) {
		c.b.stats.ProtocolError.Add(1)
		kick(packet.ProtocolError)
		return
	}
	switch a.ReasonCode {
	case packet.ReAuthenticate:
		ex, ok := c.b.cfg.EnhancedAuth.Begin(string(c.auth.method), c.auth.req)
		if !ok {
			kick(packet.BadAuthenticationMethod)
			return
		}
		c.auth.ex = ex
	case packet.ContinueAuthentication:
		if c.auth.ex == nil {
			kick(packet.ProtocolError)
			return
		}
	default:
		kick(packet.ProtocolError)
		return
	}
	reply, done, code := c.auth.ex.Step(a.Properties.AuthData)
	if code.IsError() {
		c.auth.ex = nil
		if !code.ValidFor(packet.DISCONNECT) {
			code = packet.NotAuthorized // 0x86 and 0x8C are not DISCONNECT codes
		}
		c.b.emit(event.NewReauthFailed(c.b.env.Clock.Now(), c.eventWho(), code))
		kick(code)
		return
	}
	out := packet.Auth{ReasonCode: packet.ContinueAuthentication}
	if done {
		ar := c.auth.ex.Result()
		c.auth.ex = nil
		if ar.Code.IsError() || ar.Tenant != "" && ar.Tenant != c.who.Tenant || ar.User != c.who.User {
			// A re-authentication proves the same identity again; it does
			// not move a connection to another user or tenant.
			c.b.emit(event.NewReauthFailed(c.b.env.Clock.Now(), c.eventWho(), packet.NotAuthorized))
			kick(packet.NotAuthorized)
			return
		}
		out.ReasonCode = packet.Success
		c.mu.Lock()
		c.who.Extra = ar.ACL
		c.mu.Unlock()
		c.armCredentials(ar.Expires, c.b.env.Clock.Now())
	}
	out.Properties.AuthMethod, out.Properties.AuthData = c.auth.method, reply
	out.Properties.Set(packet.PropAuthMethod)
	if reply != nil {
		out.Properties.Set(packet.PropAuthData)
	}
	e.mu.Lock()
	if e.conn == c {
		e.s.SendPacket(&out)
	}
	e.mu.Unlock()
}

// bytesReader reads a byte slice once.
type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func bytesReader(b []byte) *sliceReader { return &sliceReader{b} }
