package conformance

// Enhanced authentication and AUTH (5.0 sections 3.15, 4.12). Most of it
// needs an authentication method the broker offers: offeredAuthMethod
// finds one (or takes -auth-method) and the tests skip when there is none.

import (
	"testing"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// authProps returns CONNECT or AUTH properties naming method, with data.
func (lifeKit) authProps(method string, data []byte) packet.Properties {
	var p packet.Properties
	p.AuthMethod = []byte(method)
	p.Set(packet.PropAuthMethod)
	if data != nil {
		p.AuthData = data
		p.Set(packet.PropAuthData)
	}
	return p
}

// TestAuthUnknownMethod checks that a CONNECT naming an authentication
// method the broker does not support is refused, at most with CONNACK 0x8C
// or 0x87, and the connection closed [v5 MQTT-4.12.0-1] [v5 MQTT-3.1.4-2]
// [v5 MQTT-3.2.2-6] [v5 MQTT-3.2.2-7] [v5 MQTT-3.2.2-8] [v5 MQTT-3.14.0-1].
func TestAuthUnknownMethod(t *testing.T) {
	t.Parallel()
	r := DialRaw(t, packet.V5)
	r.Send(r.ConnectPacket(ConnectOpts{Properties: life.authProps("conformance-no-such-method-"+runID, []byte("x"))}))
	life.expectRefused(t, r, packet.BadAuthenticationMethod, packet.NotAuthorized)
}

// TestAuthNotAsked checks that a client that names no authentication method
// gets no AUTH and no Authentication Method in CONNACK [v5 MQTT-4.12.0-6].
func TestAuthNotAsked(t *testing.T) {
	t.Parallel()
	r, ack := life.dial(t, packet.V5, ConnectOpts{})
	if ack.Properties.Has(packet.PropAuthMethod) || ack.Properties.Has(packet.PropAuthData) {
		t.Fatalf("CONNECT without Authentication Method, yet %s", Describe(ack))
	}
	// An AUTH would come before the answer to this PINGREQ.
	r.Send(&packet.Pingreq{})
	r.ExpectNext(packet.PINGRESP)
}

// TestAuthWithoutMethod checks that an AUTH from a client whose CONNECT
// named no authentication method is a protocol error: the broker closes
// the connection [v5 MQTT-4.12.0-7], sending no AUTH back
// [v5 MQTT-4.12.0-6]; a DISCONNECT says Protocol Error [v5 MQTT-3.14.2-1]
// [v5 MQTT-3.14.2-2] [v5 MQTT-3.14.4-1] [v5 MQTT-3.14.4-2].
func TestAuthWithoutMethod(t *testing.T) {
	t.Parallel()
	for _, rc := range []packet.ReasonCode{packet.ReAuthenticate, packet.ContinueAuthentication} {
		t.Run(rc.String(), func(t *testing.T) {
			t.Parallel()
			r, _ := life.dial(t, packet.V5, ConnectOpts{})
			r.Send(&packet.Auth{ReasonCode: rc, Properties: life.authProps("SCRAM-SHA-256", []byte("x"))})
			life.expectServerDisconnect(t, r, packet.ProtocolError)
		})
	}
}

// TestAuthReservedFlags checks that an AUTH with fixed header flags other
// than 0000 is treated as malformed and the connection closed
// [v5 MQTT-3.15.1-1].
func TestAuthReservedFlags(t *testing.T) {
	t.Parallel()
	r, _ := life.dial(t, packet.V5, ConnectOpts{})
	b, _ := (&packet.Auth{ReasonCode: packet.ReAuthenticate, Properties: life.authProps("SCRAM-SHA-256", nil)}).Append(nil, packet.V5)
	b[0] |= 0x01
	r.SendBytes(b)
	life.expectServerDisconnect(t, r, packet.MalformedPacket, packet.ProtocolError)
}

// TestAuthExchange runs enhanced authentication with a method the broker
// offers. The suite does not know the method's mechanism, so it answers
// each challenge with data the broker will most likely reject; what it
// checks is the shape of the exchange: every AUTH from the broker says
// Continue authentication [v5 MQTT-4.12.0-2] [v5 MQTT-3.15.2-1] and, like
// a successful CONNACK, repeats the method [v5 MQTT-4.12.0-5]; a failure
// ends with the connection closed [v5 MQTT-4.12.0-4].
func TestAuthExchange(t *testing.T) {
	t.Parallel()
	method := life.offeredAuthMethod(t)
	var data []byte
	if *lifeFlagAuthData != "" {
		data = []byte(*lifeFlagAuthData)
	}
	r := DialRaw(t, packet.V5)
	r.Send(r.ConnectPacket(ConnectOpts{Properties: life.authProps(method, data)}))
	for round := 0; round < 5; round++ {
		ev, ok := r.next(waitFor)
		switch {
		case !ok:
			t.Fatalf("no answer during authentication within %v", waitFor)
		case ev.p == nil && ev.raw != nil:
			t.Fatalf("broker sent [% x] during authentication: %v", ev.raw, ev.err)
		case ev.p == nil:
			return // closed: a failed authentication
		}
		switch p := ev.p.(type) {
		case *packet.Auth:
			if p.ReasonCode != packet.ContinueAuthentication || string(p.Properties.AuthMethod) != method {
				t.Fatalf("broker's %s, want Continue authentication with method %q", Describe(p), method)
			}
			r.Send(&packet.Auth{ReasonCode: packet.ContinueAuthentication, Properties: life.authProps(method, []byte("conformance"))})
		case *packet.Connack:
			if p.ReasonCode == packet.Success {
				if string(p.Properties.AuthMethod) != method {
					t.Fatalf("successful %s does not repeat the method %q", Describe(p), method)
				}
				return
			}
			r.held = append(r.held, p)
			life.expectRefused(t, r, p.ReasonCode)
			return
		default:
			t.Fatalf("broker sent %s during authentication", Describe(p))
		}
	}
	t.Fatalf("authentication still going on after 5 rounds")
}

// TestAuthReauthenticate checks a failed re-authentication: with a
// connection authenticated by -auth-method and -auth-data, an AUTH 0x19
// carrying bad data either continues (AUTH 0x18) or ends with the
// connection closed [v5 MQTT-4.12.1-2].
func TestAuthReauthenticate(t *testing.T) {
	t.Parallel()
	method := life.offeredAuthMethod(t)
	r := DialRaw(t, packet.V5)
	var data []byte
	if *lifeFlagAuthData != "" {
		data = []byte(*lifeFlagAuthData)
	}
	r.Send(r.ConnectPacket(ConnectOpts{Properties: life.authProps(method, data)}))
	if ev, ok := r.next(waitFor); ok && ev.p != nil && ev.p.Type() == packet.AUTH {
		// A multi-step method (SCRAM): the suite cannot answer its challenge.
		t.Skipf("method %q needs an exchange the suite cannot complete; pass -auth-data that authenticates in one step", method)
	} else if ok && ev.p != nil {
		r.held = append(r.held, ev.p)
	}
	if _, refused := life.connackOrClose(t, r); refused {
		t.Skipf("method %q needs an exchange the suite cannot complete; pass -auth-data that authenticates in one step", method)
	}
	r.Send(&packet.Auth{ReasonCode: packet.ReAuthenticate, Properties: life.authProps(method, []byte("conformance-wrong"))})
	ev, ok := r.next(waitFor)
	if !ok {
		t.Fatalf("no answer to a re-authentication within %v", waitFor)
	}
	if a, isAuth := ev.p.(*packet.Auth); isAuth {
		if a.ReasonCode == packet.Success {
			t.Skip("broker accepted the re-authentication data")
		}
		return // the exchange continues; the suite cannot take it further
	}
	if ev.p != nil {
		r.held = append(r.held, ev.p)
	}
	life.awaitClose(t, r, waitFor)
}
