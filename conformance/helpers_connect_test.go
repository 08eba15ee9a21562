package conformance

// Helpers of the connection-lifecycle tests (CONNECT, CONNACK, sessions,
// wills, keep alive, DISCONNECT, AUTH). They hang off the life namespace
// so that their names cannot collide with the other areas' helpers.

import (
	"flag"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

var (
	lifeFlagAuthMethod = flag.String("auth-method", "", "an enhanced authentication method the broker supports (5.0 AUTH tests; default: probe a few well-known ones)")
	lifeFlagAuthData   = flag.String("auth-data", "", "authentication data to send with -auth-method in CONNECT")
)

type lifeKit struct{}

// life is the namespace of the lifecycle helpers.
var life lifeKit

// versions are the protocol versions most lifecycle tests run for.
func (lifeKit) versions() []packet.Version { return []packet.Version{packet.V311, packet.V5} }

// pingreq returns an encoded PINGREQ.
func (lifeKit) pingreq() []byte { return []byte{byte(packet.PINGREQ) << 4, 0} }

// disconnectBadFlags returns a DISCONNECT whose reserved flags are 0001.
func (lifeKit) disconnectBadFlags() []byte { return []byte{byte(packet.DISCONNECT)<<4 | 0x01, 0} }

// ---- building CONNECT bytes ----

// encodeConnect builds the CONNECT of o for r's version, lets edit change
// it, and encodes it.
func (lifeKit) encodeConnect(t testing.TB, r *Raw, o ConnectOpts, edit func(c *packet.Connect)) []byte {
	t.Helper()
	c := r.ConnectPacket(o)
	if edit != nil {
		edit(c)
	}
	b, err := c.Append(nil, r.V)
	if err != nil {
		t.Fatalf("encode CONNECT: %v", err)
	}
	return b
}

// bodyAt returns the offset of the body of an encoded packet, after the
// fixed header.
func (lifeKit) bodyAt(b []byte) int {
	i := 1
	for b[i]&0x80 != 0 {
		i++
	}
	return i + 1
}

// flagsAt returns the offset of the Connect Flags byte in an encoded
// CONNECT: fixed header, protocol name, protocol level, then the flags.
func (l lifeKit) flagsAt(b []byte) int {
	i := l.bodyAt(b)
	nameLen := int(b[i])<<8 | int(b[i+1])
	return i + 2 + nameLen + 1
}

// reframe gives body a fixed header with first byte first.
func (lifeKit) reframe(first byte, body []byte) []byte {
	return append(packet.AppendVarint([]byte{first}, uint32(len(body))), body...)
}

// noCredentials strips the user name and password of a CONNECT.
func (lifeKit) noCredentials(c *packet.Connect) {
	c.UsernameFlag, c.Username, c.PasswordFlag, c.Password = false, nil, false, nil
}

// credentials returns a user name and password the broker accepts: the
// suite's own when it has them, else arbitrary ones (a broker that allows
// anonymous access accepts any).
func (lifeKit) credentials() (user, pass string) {
	if target.Username != "" {
		return target.Username, target.Password
	}
	return "conformance", "secret"
}

// ---- reading what the broker sends ----

// lifeClose is what a connection carried before the broker closed it.
type lifeClose struct {
	packets []packet.Packet // decoded packets in order; nil where undecodable
	raws    [][]byte        // raw bytes of every packet, decodable or not
	closed  bool            // false: still open at the deadline
	at      time.Time       // when the close was seen
}

func (c lifeClose) String() string {
	var s []string
	for i, b := range c.raws {
		if c.packets[i] != nil {
			s = append(s, Describe(c.packets[i]))
		} else {
			s = append(s, fmt.Sprintf("[% x]", b))
		}
	}
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}

// collectClose reads everything r receives until the connection ends or
// within passes. Unlike Raw.ExpectClosed it keeps undecodable packets (a
// CONNACK in another version's format, say) as raw bytes for the caller
// to judge, and it leaves the verdict to the caller.
func (lifeKit) collectClose(r *Raw, within time.Duration) lifeClose {
	var res lifeClose
	deadline := time.Now().Add(within)
	for {
		ev, ok := r.next(time.Until(deadline))
		if !ok {
			return res
		}
		if ev.p == nil && ev.raw == nil {
			res.closed, res.at = true, time.Now()
			return res
		}
		raw := ev.raw
		if raw == nil { // a held packet: encode it again
			raw, _ = ev.p.Append(nil, r.V)
		}
		res.packets = append(res.packets, ev.p)
		res.raws = append(res.raws, raw)
	}
}

// awaitClose is collectClose that fails the test when the connection is
// still open after within.
func (l lifeKit) awaitClose(t testing.TB, r *Raw, within time.Duration) lifeClose {
	t.Helper()
	res := l.collectClose(r, within)
	if !res.closed {
		t.Fatalf("broker did not close the connection within %v (received %v)", within, res)
	}
	return res
}

// rawConnack splits a raw CONNACK into its acknowledge flags and code; v5
// reports whether it has the 5.0 form (a property length after the code).
func (l lifeKit) rawConnack(b []byte) (flags byte, code packet.ReasonCode, v5 bool) {
	body := b[l.bodyAt(b):]
	if len(body) < 2 {
		return 0xff, 0xff, false
	}
	return body[0], packet.ReasonCode(body[1]), len(body) > 2
}

// hangUp ends r's connection with d (a normal DISCONNECT when nil) and
// waits until the broker has closed its side too. A test that reconnects
// with the same client identifier right after a DISCONNECT uses it, so
// that the new CONNECT cannot overtake the old connection's DISCONNECT in
// a broker that serves connections concurrently.
func (l lifeKit) hangUp(t testing.TB, r *Raw, d *packet.Disconnect) {
	t.Helper()
	if d == nil {
		d = &packet.Disconnect{}
	}
	r.Send(d)
	if cw, ok := r.conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite() // the broker reads the end of the stream after the DISCONNECT
	}
	if res := l.collectClose(r, waitFor); !res.closed {
		t.Fatalf("broker did not close the connection within %v of a DISCONNECT", waitFor)
	}
	r.Close()
}

// expectRefused checks how the broker refuses a CONNECT: it closes the
// connection, and anything it sends first is a single CONNACK with
// Session Present 0 and a code from allowed. An empty allowed means no
// CONNACK may be sent at all. It returns the code and whether a CONNACK
// came.
// Callers cite what this checks: Session Present 0 with a non-zero code
// (5.0 MQTT-3.2.2-6, 3.1.1 MQTT-3.2.2-4), the close after a refusing
// CONNACK (5.0 MQTT-3.2.2-7, 3.1.1 MQTT-3.2.2-5), no DISCONNECT before a
// successful CONNACK (5.0 MQTT-3.14.0-1).
func (l lifeKit) expectRefused(t testing.TB, r *Raw, allowed ...packet.ReasonCode) (packet.ReasonCode, bool) {
	t.Helper()
	res := l.awaitClose(t, r, waitFor)
	if len(res.raws) == 0 {
		return 0, false
	}
	if len(res.raws) > 1 || res.raws[0][0] != byte(packet.CONNACK)<<4 {
		t.Fatalf("refusing a CONNECT the broker sent %v; only one CONNACK may come before the close", res)
	}
	if len(allowed) == 0 {
		t.Fatalf("broker sent %v; it must close the connection without a CONNACK", res)
	}
	flags, code, _ := l.rawConnack(res.raws[0])
	if flags != 0 {
		t.Fatalf("refusing CONNACK [% x] has acknowledge flags %#x, want 0 (Session Present 0)", res.raws[0], flags)
	}
	for _, a := range allowed {
		if code == a {
			return code, true
		}
	}
	t.Fatalf("refusing CONNACK [% x] has code %v, want one of %v", res.raws[0], code, allowed)
	return code, true
}

// expectServerDisconnect waits for the broker to close the connection
// after a violation. If it sends a DISCONNECT first, that is the last
// packet, carries a code from allowed and no Session Expiry Interval. It
// reports whether a DISCONNECT came.
// Callers cite what this checks (5.0): a defined, fitting DISCONNECT code
// (MQTT-3.14.2-1), no Session Expiry Interval from the server
// (MQTT-3.14.2-2), nothing after the DISCONNECT (MQTT-3.14.4-1) and the
// close after it (MQTT-3.14.4-2).
func (l lifeKit) expectServerDisconnect(t testing.TB, r *Raw, allowed ...packet.ReasonCode) (*packet.Disconnect, bool) {
	t.Helper()
	res := l.awaitClose(t, r, waitFor)
	var got *packet.Disconnect
	for i, p := range res.packets {
		d, ok := p.(*packet.Disconnect)
		if !ok || r.V != packet.V5 {
			t.Fatalf("expected the connection to close, got %v", res)
		}
		if i != len(res.packets)-1 {
			t.Fatalf("broker sent more after its DISCONNECT: %v", res)
		}
		if d.Properties.Has(packet.PropSessionExpiry) {
			t.Fatalf("broker's DISCONNECT carries a Session Expiry Interval: %s", Describe(d))
		}
		okCode := false
		for _, a := range allowed {
			okCode = okCode || d.ReasonCode == a
		}
		if !okCode {
			t.Fatalf("broker's %s, want reason code one of %v", Describe(d), allowed)
		}
		got = d
	}
	return got, got != nil
}

// expectAccepted reads the broker's first packet after a CONNECT and checks
// that it is a successful CONNACK with the reserved acknowledge flags 0.
func (l lifeKit) expectAccepted(t testing.TB, r *Raw) *packet.Connack {
	t.Helper()
	ev, ok := r.next(waitFor)
	if !ok {
		t.Fatalf("no CONNACK within %v", waitFor)
	}
	if ev.p == nil {
		if ev.raw != nil {
			t.Fatalf("first packet from the broker [% x]: %v", ev.raw, ev.err)
		}
		t.Fatalf("waiting for CONNACK: %v", describeEnd(ev.err))
	}
	ack, isAck := ev.p.(*packet.Connack)
	if !isAck {
		t.Fatalf("first packet from the broker is %s, want CONNACK", Describe(ev.p))
	}
	if flags, _, _ := l.rawConnack(ev.raw); flags&0xfe != 0 {
		t.Fatalf("CONNACK [% x]: reserved acknowledge flags set", ev.raw)
	}
	if ack.ReasonCode != packet.Success {
		t.Fatalf("CONNECT refused: %s", Describe(ack))
	}
	return ack
}

// connackOrClose reads the answer to a CONNECT that the broker may accept
// or refuse. It returns the CONNACK when it is a success; otherwise
// refused is true and the CONNACK, if any, is held for expectRefused.
func (l lifeKit) connackOrClose(t testing.TB, r *Raw) (ack *packet.Connack, refused bool) {
	t.Helper()
	ev, ok := r.next(waitFor)
	switch {
	case !ok:
		t.Fatalf("no answer to the CONNECT within %v", waitFor)
	case ev.p == nil && ev.raw != nil:
		t.Fatalf("broker answered the CONNECT with [% x]: %v", ev.raw, ev.err)
	case ev.p == nil:
		return nil, true // closed; r.ended replays the close
	}
	ack, isAck := ev.p.(*packet.Connack)
	if !isAck {
		t.Fatalf("broker answered the CONNECT with %s", Describe(ev.p))
	}
	if ack.ReasonCode != packet.Success {
		r.held = append(r.held, ack)
		return nil, true
	}
	return ack, false
}

// dial connects a raw client of version v with o and returns it with its
// CONNACK, which must be a success.
func (l lifeKit) dial(t testing.TB, v packet.Version, o ConnectOpts) (*Raw, *packet.Connack) {
	t.Helper()
	r := DialRaw(t, v)
	r.Send(r.ConnectPacket(o))
	return r, l.expectAccepted(t, r)
}

// subscriber connects a clean 5.0 raw client subscribed to filter at qos.
func (l lifeKit) subscriber(t testing.TB, filter string, qos packet.QoS) *Raw {
	t.Helper()
	r, _ := l.dial(t, packet.V5, ConnectOpts{})
	l.subscribe(t, r, filter, qos)
	return r
}

// subscribe subscribes r to filter and fails unless it is granted.
func (lifeKit) subscribe(t testing.TB, r *Raw, filter string, qos packet.QoS) {
	t.Helper()
	ack := r.Subscribe(packet.Subscription{Filter: []byte(filter), QoS: qos})
	if len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0].IsError() {
		t.Fatalf("subscribe %q: %s", filter, Describe(ack))
	}
}

// sessionExpiry returns CONNECT or DISCONNECT properties with a Session
// Expiry Interval.
func (lifeKit) sessionExpiry(seconds uint32) packet.Properties {
	var p packet.Properties
	p.SessionExpiry = seconds
	p.Set(packet.PropSessionExpiry)
	return p
}

// persistent returns options for a session that outlives its connection:
// Clean Session 0 in 3.1/3.1.1; Clean Start 0 with a Session Expiry
// Interval of expiry seconds in 5.0. The session is discarded when the
// test ends.
func (l lifeKit) persistent(t testing.TB, v packet.Version, id string, expiry uint32) ConnectOpts {
	CleanSession(t, id)
	o := ConnectOpts{ClientID: id, Persistent: true}
	if v == packet.V5 {
		o.Properties = l.sessionExpiry(expiry)
	}
	return o
}

// will returns a will message for a CONNECT.
func (lifeKit) will(topic string, qos packet.QoS, retain bool, payload string) *packet.Publish {
	return &packet.Publish{Topic: []byte(topic), QoS: qos, Retain: retain, Payload: []byte(payload)}
}

// willDelay sets the Will Delay Interval of a 5.0 will.
func (lifeKit) willDelay(w *packet.Publish, seconds uint32) *packet.Publish {
	w.Properties.WillDelay = seconds
	w.Properties.Set(packet.PropWillDelay)
	return w
}

// lifeArrival is the first PUBLISH a watcher saw, and when.
type lifeArrival struct {
	p  *packet.Publish // nil: none came in time
	at time.Time
	// err is set when the connection ended or sent something undecodable.
	err error
}

// nextPublish waits up to within for a PUBLISH on r, holding any other
// packet for later, and notes when it arrived.
func (lifeKit) nextPublish(r *Raw, within time.Duration) lifeArrival {
	for i, p := range r.held {
		if pub, ok := p.(*packet.Publish); ok {
			r.held = append(r.held[:i:i], r.held[i+1:]...)
			return lifeArrival{p: pub, at: time.Now()}
		}
	}
	deadline := time.Now().Add(within)
	for {
		ev, ok := r.nextFromWire(time.Until(deadline))
		if !ok {
			return lifeArrival{}
		}
		if ev.p == nil {
			if ev.raw != nil {
				return lifeArrival{err: ev.err}
			}
			return lifeArrival{err: fmt.Errorf("%s", describeEnd(ev.err))}
		}
		if pub, ok := ev.p.(*packet.Publish); ok {
			return lifeArrival{p: pub, at: time.Now()}
		}
		r.held = append(r.held, ev.p)
	}
}

// expectPublish waits up to within for a PUBLISH on r and acknowledges it.
func (l lifeKit) expectPublish(t testing.TB, r *Raw, within time.Duration) *packet.Publish {
	t.Helper()
	a := l.nextPublish(r, within)
	if a.err != nil {
		t.Fatalf("waiting for a PUBLISH: %v", a.err)
	}
	if a.p == nil {
		t.Fatalf("no PUBLISH within %v", within)
	}
	r.Ack(a.p)
	return a.p
}

// expectNoPublish fails if a PUBLISH arrives on r within d; use it for
// intervals other than quietPeriod (a will delay that must not end early).
func (l lifeKit) expectNoPublish(t testing.TB, r *Raw, d time.Duration) {
	t.Helper()
	a := l.nextPublish(r, d)
	if a.err != nil {
		t.Fatalf("while checking that nothing arrives: %v", a.err)
	}
	if a.p != nil {
		t.Fatalf("unexpected %s", Describe(a.p))
	}
}

// ---- enhanced authentication ----

var (
	lifeAuthOnce   sync.Once
	lifeAuthMethod string // "" when the broker offers none we know of
	lifeAuthProbe  string // what the probe saw, for skip messages
)

// lifeAuthCandidates are well-known SASL mechanism names a broker may offer
// for MQTT 5.0 enhanced authentication.
var lifeAuthCandidates = []string{"SCRAM-SHA-256", "SCRAM-SHA-512", "SCRAM-SHA-1", "GS2-KRB5", "OAUTHBEARER", "K8S-SAT"}

// offeredAuthMethod returns an authentication method the broker accepts
// to start enhanced authentication with: -auth-method when given, else the
// first well-known method the broker does not refuse outright. It skips
// the test when there is none.
func (lifeKit) offeredAuthMethod(t testing.TB) string {
	t.Helper()
	lifeAuthOnce.Do(func() {
		candidates := lifeAuthCandidates
		if *lifeFlagAuthMethod != "" {
			candidates = []string{*lifeFlagAuthMethod}
		}
		var seen []string
		for _, m := range candidates {
			outcome := life.probeAuthMethod(m)
			seen = append(seen, m+": "+outcome)
			if outcome == "accepted" || outcome == "continued" {
				lifeAuthMethod = m
				return
			}
		}
		lifeAuthProbe = strings.Join(seen, "; ")
	})
	if lifeAuthMethod == "" {
		t.Skipf("broker offers no enhanced authentication method (probed %s); pass -auth-method to name one", lifeAuthProbe)
	}
	return lifeAuthMethod
}

// probeAuthMethod sends a CONNECT with Authentication Method m and says
// how the broker answered: "accepted" (CONNACK 0), "continued" (AUTH),
// "refused" or an error.
func (lifeKit) probeAuthMethod(m string) string {
	c, err := target.Dial()
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	conn := &packet.Connect{Version: packet.V5, CleanStart: true, KeepAlive: 10, ClientID: []byte("auth" + runID)}
	conn.Properties.AuthMethod = []byte(m)
	conn.Properties.Set(packet.PropAuthMethod)
	if *lifeFlagAuthData != "" {
		conn.Properties.AuthData = []byte(*lifeFlagAuthData)
		conn.Properties.Set(packet.PropAuthData)
	}
	if target.Username != "" {
		conn.UsernameFlag, conn.Username = true, []byte(target.Username)
	}
	if target.Password != "" {
		conn.PasswordFlag, conn.Password = true, []byte(target.Password)
	}
	b, _ := conn.Append(nil, packet.V5)
	_ = c.SetDeadline(time.Now().Add(waitFor))
	if _, err := c.Write(b); err != nil {
		return err.Error()
	}
	p, err := packet.NewDecoder(c, packet.V5).Next()
	if err != nil {
		return "refused (" + describeEnd(err) + ")"
	}
	switch p := p.(type) {
	case *packet.Auth:
		return "continued"
	case *packet.Connack:
		if p.ReasonCode == packet.Success {
			return "accepted"
		}
		return "refused (" + p.ReasonCode.String() + ")"
	}
	return "unexpected " + p.Type().String()
}
