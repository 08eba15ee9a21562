package conformance

// CONNECT and CONNACK (5.0 sections 3.1, 3.2; 3.1.1 sections 3.1, 3.2; and
// the MQTT 3.1 "MQIsdp" protocol where it differs).

import (
	"fmt"
	"testing"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// TestConnectAccepted checks that a well-formed CONNECT is answered with a
// CONNACK carrying code 0, as the broker's first packet, for each protocol.
func TestConnectAccepted(t *testing.T) {
	t.Parallel()
	for _, v := range []packet.Version{packet.V31, packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			// [v5 MQTT-3.1.4-5] [v3.1.1 MQTT-3.1.4-4] CONNACK 0, and
			// [v5 MQTT-3.2.2-1] reserved acknowledge flags 0 (expectAccepted).
			r, _ := life.dial(t, v, ConnectOpts{})
			r.Send(&packet.Pingreq{})
			r.ExpectNext(packet.PINGRESP)
		})
	}
}

// TestConnectFirstPacket checks that a connection whose first packet is not
// a CONNECT is closed, without a DISCONNECT [v5 MQTT-3.14.0-1].
func TestConnectFirstPacket(t *testing.T) {
	t.Parallel()
	first := []struct {
		name string
		p    packet.Packet
	}{
		{"PINGREQ", &packet.Pingreq{}},
		{"PUBLISH", &packet.Publish{Topic: []byte("conformance/first"), Payload: []byte("x")}},
		{"SUBSCRIBE", &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("conformance/first")}}}},
		{"DISCONNECT", &packet.Disconnect{}},
	}
	for _, v := range life.versions() {
		for _, f := range first {
			t.Run(fmt.Sprintf("%v/%s", v, f.name), func(t *testing.T) {
				t.Parallel()
				r := DialRaw(t, v)
				r.Send(f.p)
				r.SendBytes(life.pingreq())
				// [v5 MQTT-3.1.0-1] [v3.1.1 MQTT-3.1.0-1]: dropped; a 5.0
				// broker may say why in a CONNACK. No PINGRESP either.
				if v == packet.V5 {
					life.expectRefused(t, r, packet.ProtocolError, packet.MalformedPacket)
				} else {
					life.expectRefused(t, r)
				}
			})
		}
	}
}

// TestConnectSecondConnect checks that a second CONNECT on a connection is
// a protocol error that closes it, with no second CONNACK.
func TestConnectSecondConnect(t *testing.T) {
	t.Parallel()
	for _, v := range life.versions() {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			r, _ := life.dial(t, v, ConnectOpts{})
			r.Send(r.ConnectPacket(ConnectOpts{}))
			r.SendBytes(life.pingreq())
			// [v5 MQTT-3.1.0-2] [v3.1.1 MQTT-3.1.0-2] closed; a 5.0 DISCONNECT
			// says Protocol Error [v5 MQTT-3.14.2-1] [v5 MQTT-3.14.2-2]
			// [v5 MQTT-3.14.4-1] [v5 MQTT-3.14.4-2], and no second CONNACK
			// [v5 MQTT-3.2.0-2].
			life.expectServerDisconnect(t, r, packet.ProtocolError)
		})
	}
}

// TestConnectProtocolName checks a CONNECT whose protocol name is not
// "MQTT": the broker must not go on speaking MQTT on that connection.
func TestConnectProtocolName(t *testing.T) {
	t.Parallel()
	for _, v := range life.versions() {
		for _, name := range []string{"MQTX", "mqtt"} {
			t.Run(fmt.Sprintf("%v/%s", v, name), func(t *testing.T) {
				t.Parallel()
				r := DialRaw(t, v)
				b := life.encodeConnect(t, r, ConnectOpts{}, nil)
				body := b[life.bodyAt(b):]
				// Replace the name "MQTT" (after its two-byte length) by name.
				nb := append(append([]byte{0, byte(len(name))}, name...), body[6:]...)
				r.SendBytes(life.reframe(b[0], nb))
				r.SendBytes(life.pingreq())
				if v == packet.V5 {
					// [v5 MQTT-3.1.2-1]: closed, after at most a CONNACK 0x84.
					life.expectRefused(t, r, packet.UnsupportedProtocolVersion)
					return
				}
				// [v3.1.1 MQTT-3.1.2-1]: the broker may close or switch to
				// another protocol, but no CONNACK or PINGRESP may come.
				res := life.collectClose(r, waitFor)
				for _, raw := range res.raws {
					if tp := packet.Type(raw[0] >> 4); tp == packet.CONNACK || tp == packet.PINGRESP {
						t.Fatalf("broker processed a CONNECT with protocol name %q as MQTT: sent %v", name, res)
					}
				}
			})
		}
	}
}

// TestConnectProtocolLevel checks the answer to an unsupported protocol
// level: 3.1.1 requires CONNACK 0x01; 5.0 allows CONNACK 0x84 (or, as the
// broker cannot know the client's format, the 3.1.1 form of the refusal)
// and requires the close.
func TestConnectProtocolLevel(t *testing.T) {
	t.Parallel()
	rows := []struct {
		name  string
		v     packet.Version // format of the CONNECT body
		level byte
	}{
		{"3.1.1 body level 6", packet.V311, 6},
		{"3.1.1 body level 2", packet.V311, 2},
		{"3.1.1 body MQTT level 3", packet.V311, 3},
		{"5.0 body level 6", packet.V5, 6},
		{"5.0 body level 255", packet.V5, 255},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			r := DialRaw(t, row.v)
			b := life.encodeConnect(t, r, ConnectOpts{}, nil)
			b[life.flagsAt(b)-1] = row.level
			r.SendBytes(b)
			r.SendBytes(life.pingreq())
			res := life.awaitClose(t, r, waitFor)
			if row.v == packet.V311 {
				// [v3.1.1 MQTT-3.1.2-2] CONNACK 0x01, then the close; Session
				// Present 0 [v3.1.1 MQTT-3.2.2-4] [v3.1.1 MQTT-3.2.2-5].
				if len(res.raws) != 1 || string(res.raws[0]) != "\x20\x02\x00\x01" {
					t.Fatalf("protocol level %d: broker sent %v, want CONNACK 0x01 [20 02 00 01] and the close", row.level, res)
				}
				return
			}
			// [v5 MQTT-3.1.2-2] at most a CONNACK 0x84 with Session Present
			// 0, then the close [v5 MQTT-3.2.2-6] [v5 MQTT-3.2.2-7].
			if len(res.raws) == 0 {
				return
			}
			if len(res.raws) > 1 || res.raws[0][0] != 0x20 {
				t.Fatalf("protocol level %d: broker sent %v, want at most one CONNACK before the close", row.level, res)
			}
			flags, code, v5form := life.rawConnack(res.raws[0])
			ok := flags == 0 && (v5form && code == packet.UnsupportedProtocolVersion || !v5form && code == packet.ConnRefusedProtocol)
			if !ok {
				t.Fatalf("protocol level %d: CONNACK [% x], want 0x84 (or the 3.1.1 refusal 0x01)", row.level, res.raws[0])
			}
		})
	}
}

// connectWithFlags encodes a CONNECT built from o and edit, then sets the
// flag bits set and clears the bits clear in its Connect Flags byte.
func (lifeKit) connectWithFlags(t testing.TB, r *Raw, o ConnectOpts, edit func(c *packet.Connect), set, clear byte) []byte {
	b := life.encodeConnect(t, r, o, edit)
	i := life.flagsAt(b)
	b[i] = b[i]&^clear | set
	return b
}

// TestConnectMalformed checks that the broker closes the connection on a
// CONNECT that breaks a format rule: in 3.1.1 without a CONNACK
// [v3.1.1 MQTT-3.1.4-1] [v3.1.1 MQTT-3.2.2-6], in 5.0 after at most a
// CONNACK saying Malformed Packet or Protocol Error [v5 MQTT-3.1.4-1]
// [v5 MQTT-3.2.2-7] [v5 MQTT-3.2.2-6], never a DISCONNECT [v5 MQTT-3.14.0-1].
func TestConnectMalformed(t *testing.T) {
	t.Parallel()
	both := life.versions()
	user := func(c *packet.Connect) {
		life.noCredentials(c)
		c.UsernameFlag, c.Username = true, []byte("conformance")
	}
	userPass := func(c *packet.Connect) {
		user(c)
		c.PasswordFlag, c.Password = true, []byte("secret")
	}
	will := ConnectOpts{Will: life.will("conformance/will", 0, false, "w")}
	// Each row is a CONNECT that breaks a format rule of section 3.1.
	rows := []struct {
		name     string
		versions []packet.Version
		build    func(t testing.TB, r *Raw) []byte
		cite     string
	}{
		{name: "reserved flag", versions: both, cite: "[v5 MQTT-3.1.2-3] [v3.1.1 MQTT-3.1.2-3]",
			build: func(t testing.TB, r *Raw) []byte { return life.connectWithFlags(t, r, ConnectOpts{}, nil, 0x01, 0) }},
		{name: "will QoS 1 without will flag", versions: both, cite: "[v5 MQTT-3.1.2-11] [v3.1.1 MQTT-3.1.2-13] [v3.1.1 MQTT-3.1.2-11]",
			build: func(t testing.TB, r *Raw) []byte { return life.connectWithFlags(t, r, ConnectOpts{}, nil, 0x08, 0) }},
		{name: "will QoS 2 without will flag", versions: both, cite: "[v5 MQTT-3.1.2-11] [v3.1.1 MQTT-3.1.2-13] [v3.1.1 MQTT-3.1.2-11]",
			build: func(t testing.TB, r *Raw) []byte { return life.connectWithFlags(t, r, ConnectOpts{}, nil, 0x10, 0) }},
		{name: "will retain without will flag", versions: both, cite: "[v5 MQTT-3.1.2-13] [v3.1.1 MQTT-3.1.2-15] [v3.1.1 MQTT-3.1.2-11]",
			build: func(t testing.TB, r *Raw) []byte { return life.connectWithFlags(t, r, ConnectOpts{}, nil, 0x20, 0) }},
		{name: "will QoS 3", versions: both, cite: "[v5 MQTT-3.1.2-12] [v3.1.1 MQTT-3.1.2-14]",
			build: func(t testing.TB, r *Raw) []byte { return life.connectWithFlags(t, r, will, nil, 0x18, 0) }},
		{name: "will flag without will fields", versions: both, cite: "[v5 MQTT-3.1.2-9] [v3.1.1 MQTT-3.1.2-9]",
			build: func(t testing.TB, r *Raw) []byte {
				return life.connectWithFlags(t, r, ConnectOpts{}, life.noCredentials, 0x04, 0)
			}},
		{name: "will fields without will flag", versions: both, cite: "[v3.1.1 MQTT-3.1.2-11]",
			build: func(t testing.TB, r *Raw) []byte {
				return life.connectWithFlags(t, r, will, life.noCredentials, 0, 0x3c)
			}},
		{name: "user name flag without user name", versions: both, cite: "[v5 MQTT-3.1.2-17] [v3.1.1 MQTT-3.1.2-19]",
			build: func(t testing.TB, r *Raw) []byte {
				return life.connectWithFlags(t, r, ConnectOpts{}, life.noCredentials, 0x80, 0)
			}},
		{name: "user name without user name flag", versions: both, cite: "[v5 MQTT-3.1.2-16] [v3.1.1 MQTT-3.1.2-18]",
			build: func(t testing.TB, r *Raw) []byte { return life.connectWithFlags(t, r, ConnectOpts{}, user, 0, 0x80) }},
		{name: "password flag without password", versions: both, cite: "[v5 MQTT-3.1.2-19] [v3.1.1 MQTT-3.1.2-21]",
			build: func(t testing.TB, r *Raw) []byte { return life.connectWithFlags(t, r, ConnectOpts{}, user, 0x40, 0) }},
		{name: "password without password flag", versions: both, cite: "[v5 MQTT-3.1.2-18] [v3.1.1 MQTT-3.1.2-20]",
			build: func(t testing.TB, r *Raw) []byte {
				return life.connectWithFlags(t, r, ConnectOpts{}, userPass, 0, 0x40)
			}},
		{name: "password flag without user name flag", versions: []packet.Version{packet.V311}, cite: "[v3.1.1 MQTT-3.1.2-22]",
			build: func(t testing.TB, r *Raw) []byte {
				return life.encodeConnect(t, r, ConnectOpts{}, func(c *packet.Connect) {
					life.noCredentials(c)
					c.PasswordFlag, c.Password = true, []byte("secret")
				})
			}},
		{name: "no client identifier", versions: both, cite: "[v5 MQTT-3.1.3-3] [v3.1.1 MQTT-3.1.3-3]",
			build: func(t testing.TB, r *Raw) []byte {
				b := life.encodeConnect(t, r, ConnectOpts{}, func(c *packet.Connect) { life.noCredentials(c); c.ClientID = nil })
				// Drop the (empty) client identifier: the payload is gone.
				return life.reframe(b[0], b[life.bodyAt(b):len(b)-2])
			}},
	}
	for _, row := range rows {
		for _, v := range row.versions {
			t.Run(fmt.Sprintf("%v/%s", v, row.name), func(t *testing.T) {
				t.Parallel()
				r := DialRaw(t, v)
				r.SendBytes(row.build(t, r))
				r.SendBytes(life.pingreq())
				if v == packet.V5 {
					life.expectRefused(t, r, packet.MalformedPacket, packet.ProtocolError)
				} else {
					life.expectRefused(t, r)
				}
			})
		}
	}
}

// TestConnectInvalidUTF8 checks that the client identifier, will topic and
// user name must be UTF-8: an ill-formed one gets the connection closed.
func TestConnectInvalidUTF8(t *testing.T) {
	t.Parallel()
	const bad = "\xc0\xaf" // an overlong encoding of '/'
	rows := []struct {
		name  string
		edit  func(c *packet.Connect)
		v5    []packet.ReasonCode // allowed 5.0 CONNACK codes
		v311  []packet.ReasonCode // allowed 3.1.1 CONNACK codes
		cites string
	}{
		{"client identifier", func(c *packet.Connect) { c.ClientID = []byte("c" + bad + runID) },
			[]packet.ReasonCode{packet.MalformedPacket, packet.ClientIdentifierNotValid}, []packet.ReasonCode{packet.ConnRefusedIdentifier},
			"[v5 MQTT-3.1.3-4] [v3.1.1 MQTT-3.1.3-4]"},
		{"will topic", func(c *packet.Connect) {
			c.WillFlag, c.WillTopic, c.WillPayload = true, []byte("conformance/"+bad), []byte("w")
		}, []packet.ReasonCode{packet.MalformedPacket, packet.TopicNameInvalid}, nil,
			"[v5 MQTT-3.1.3-11] [v3.1.1 MQTT-3.1.3-10]"},
		{"user name", func(c *packet.Connect) {
			life.noCredentials(c)
			c.UsernameFlag, c.Username = true, []byte("u"+bad)
		}, []packet.ReasonCode{packet.MalformedPacket, packet.BadUserNameOrPassword}, nil,
			"[v5 MQTT-3.1.3-12] [v3.1.1 MQTT-3.1.3-11]"},
	}
	for _, row := range rows {
		for _, v := range life.versions() {
			t.Run(fmt.Sprintf("%v/%s", v, row.name), func(t *testing.T) {
				t.Parallel()
				r := DialRaw(t, v)
				r.SendBytes(life.encodeConnect(t, r, ConnectOpts{}, row.edit))
				r.SendBytes(life.pingreq())
				// row.cites: closed, after at most a refusing CONNACK
				// [v5 MQTT-3.1.4-1] [v3.1.1 MQTT-3.1.4-1].
				if v == packet.V5 {
					life.expectRefused(t, r, row.v5...)
				} else {
					life.expectRefused(t, r, row.v311...)
				}
			})
		}
	}
}

// TestConnectClientIDAllowed checks that client identifiers of 1 to 23
// characters from the basic alphabet are accepted [v5 MQTT-3.1.3-5]
// [v3.1.1 MQTT-3.1.3-5] (and, for 3.1, which requires exactly that range).
func TestConnectClientIDAllowed(t *testing.T) {
	t.Parallel()
	// The characters every broker must accept in a client identifier.
	const clientIDAlphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for _, v := range []packet.Version{packet.V31, packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			// Five 23-character identifiers together use the whole
			// alphabet; each ends with a part unique to this run.
			var ids []string
			for i := 0; i < len(clientIDAlphabet); i += 13 {
				chunk := clientIDAlphabet[i:min(i+13, len(clientIDAlphabet))]
				u := "0000000000000" + uniqueID(t)
				ids = append(ids, chunk+u[len(u)-(23-len(chunk)):])
			}
			// A one-character identifier cannot be unique to the run; pick
			// one from the counter to make collisions unlikely.
			ids = append(ids, string(clientIDAlphabet[counter.Add(1)%uint64(len(clientIDAlphabet))]))
			for _, id := range ids {
				if len(id) < 1 || len(id) > 23 {
					t.Fatalf("test bug: id %q", id)
				}
				r, _ := life.dial(t, v, ConnectOpts{ClientID: id})
				r.Disconnect()
			}
		})
	}
}

// emptyIDConnect sends a CONNECT with a zero-length client identifier.
func (lifeKit) emptyIDConnect(t testing.TB, r *Raw, o ConnectOpts) {
	r.SendBytes(life.encodeConnect(t, r, o, func(c *packet.Connect) { c.ClientID = nil }))
}

// TestConnectEmptyClientID5 checks a zero-length client identifier in 5.0:
// the broker either refuses it (CONNACK 0x85, close) or assigns a unique
// identifier, reports it in CONNACK and treats the client as if it had
// sent it.
func TestConnectEmptyClientID5(t *testing.T) {
	t.Parallel()
	r := DialRaw(t, packet.V5)
	life.emptyIDConnect(t, r, ConnectOpts{})
	ack1, refused := life.connackOrClose(t, r)
	if refused {
		// [v5 MQTT-3.1.3-8] a refused identifier: at most CONNACK 0x85, and
		// the close.
		life.expectRefused(t, r, packet.ClientIdentifierNotValid)
		t.Skip("broker does not allow empty client identifiers")
	}
	// [v5 MQTT-3.1.3-6] [v5 MQTT-3.1.3-7] [v5 MQTT-3.2.2-16] an Assigned Client
	// Identifier comes back.
	if !ack1.Properties.Has(packet.PropAssignedClientID) || len(ack1.Properties.AssignedClientID) == 0 {
		t.Fatalf("empty client identifier accepted without an Assigned Client Identifier: %s", Describe(ack1))
	}
	r2 := DialRaw(t, packet.V5)
	life.emptyIDConnect(t, r2, ConnectOpts{})
	ack2 := life.expectAccepted(t, r2)
	// [v5 MQTT-3.2.2-16] not used by any other session: a second client gets
	// another one, and neither takes the other's session over.
	if string(ack2.Properties.AssignedClientID) == string(ack1.Properties.AssignedClientID) {
		t.Fatalf("two clients were assigned the same identifier %q", ack1.Properties.AssignedClientID)
	}
	for _, c := range []*Raw{r, r2} {
		c.Send(&packet.Pingreq{})
		c.ExpectNext(packet.PINGRESP)
	}

	// [v5 MQTT-3.1.3-7] the session belongs to the assigned identifier: it
	// can be resumed by naming it.
	r3 := DialRaw(t, packet.V5)
	life.emptyIDConnect(t, r3, ConnectOpts{Persistent: true, Properties: life.sessionExpiry(60)})
	ack3 := life.expectAccepted(t, r3)
	id := string(ack3.Properties.AssignedClientID)
	if id == "" {
		t.Fatalf("no Assigned Client Identifier: %s", Describe(ack3))
	}
	CleanSession(t, id)
	life.hangUp(t, r3, nil)
	_, ack4 := life.dial(t, packet.V5, ConnectOpts{ClientID: id, Persistent: true, Properties: life.sessionExpiry(60)})
	if !ack4.SessionPresent {
		t.Fatalf("reconnecting as the assigned identifier %q: %s, want Session Present 1", id, Describe(ack4))
	}
}

// TestConnectEmptyClientID311 checks a zero-length client identifier in
// 3.1.1 and 3.1.
func TestConnectEmptyClientID311(t *testing.T) {
	t.Parallel()
	t.Run("clean session 0", func(t *testing.T) {
		t.Parallel()
		r := DialRaw(t, packet.V311)
		life.emptyIDConnect(t, r, ConnectOpts{Persistent: true})
		// [v3.1.1 MQTT-3.1.3-8] CONNACK 0x02 with Session Present 0, then
		// the close [v3.1.1 MQTT-3.2.2-4] [v3.1.1 MQTT-3.2.2-5].
		if _, sent := life.expectRefused(t, r, packet.ConnRefusedIdentifier); !sent {
			t.Fatalf("connection closed without CONNACK 0x02")
		}
	})
	t.Run("clean session 1", func(t *testing.T) {
		t.Parallel()
		r := DialRaw(t, packet.V311)
		life.emptyIDConnect(t, r, ConnectOpts{})
		if _, refused := life.connackOrClose(t, r); refused {
			// [v3.1.1 MQTT-3.1.3-9] a refused identifier: CONNACK 0x02 and
			// the close.
			if _, sent := life.expectRefused(t, r, packet.ConnRefusedIdentifier); !sent {
				t.Fatalf("empty client identifier refused without CONNACK 0x02")
			}
			t.Skip("broker does not allow empty client identifiers")
		}
		// [v3.1.1 MQTT-3.1.3-6] each gets a unique identifier: a second
		// such client does not take the first one's place.
		r2 := DialRaw(t, packet.V311)
		life.emptyIDConnect(t, r2, ConnectOpts{})
		life.expectAccepted(t, r2)
		for _, c := range []*Raw{r, r2} {
			c.Send(&packet.Pingreq{})
			c.ExpectNext(packet.PINGRESP)
		}
	})
	t.Run("3.1", func(t *testing.T) {
		t.Parallel()
		// MQTT 3.1 requires 1 to 23 characters and answers 0x02 otherwise.
		r := DialRaw(t, packet.V31)
		life.emptyIDConnect(t, r, ConnectOpts{})
		if _, sent := life.expectRefused(t, r, packet.ConnRefusedIdentifier); !sent {
			t.Fatalf("connection closed without CONNACK 0x02")
		}
	})
}

// TestConnectLongClientID checks that a broker refusing a client
// identifier longer than 23 characters says so with the right code and
// closes; accepting it is allowed in 3.1.1 and 5.0.
func TestConnectLongClientID(t *testing.T) {
	t.Parallel()
	for _, v := range life.versions() {
		for _, n := range []int{24, 200} {
			t.Run(fmt.Sprintf("%v/%d", v, n), func(t *testing.T) {
				t.Parallel()
				id := uniqueID(t)
				for len(id) < n {
					id += "x"
				}
				r := DialRaw(t, v)
				r.Send(r.ConnectPacket(ConnectOpts{ClientID: id}))
				if _, refused := life.connackOrClose(t, r); !refused {
					return
				}
				// [v5 MQTT-3.1.3-8] 0x85 and the close; [v3.1.1 MQTT-3.1.3-9]
				// 0x02 and the close.
				if v == packet.V5 {
					life.expectRefused(t, r, packet.ClientIdentifierNotValid)
				} else if _, sent := life.expectRefused(t, r, packet.ConnRefusedIdentifier); !sent {
					t.Fatalf("client identifier refused without CONNACK 0x02")
				}
			})
		}
	}
}

// TestConnectV31LongClientID checks MQTT 3.1's limit: a client identifier
// of more than 23 characters is refused with CONNACK 0x02 (Identifier
// Rejected), as the 3.1 specification requires.
func TestConnectV31LongClientID(t *testing.T) {
	t.Parallel()
	id := uniqueID(t)
	for len(id) < 24 {
		id += "x"
	}
	r := DialRaw(t, packet.V31)
	r.Send(r.ConnectPacket(ConnectOpts{ClientID: id}))
	if _, refused := life.connackOrClose(t, r); !refused {
		t.Fatalf("3.1 broker accepted the %d-character client identifier %q, want CONNACK 0x02", len(id), id)
	}
	if _, sent := life.expectRefused(t, r, packet.ConnRefusedIdentifier); !sent {
		t.Fatalf("connection closed without CONNACK 0x02")
	}
}

// TestConnectRefusedIgnoresRest checks that after refusing a CONNECT the
// broker processes nothing the client sent behind it: a PUBLISH pipelined
// after the refused CONNECT must not reach a subscriber.
func TestConnectRefusedIgnoresRest(t *testing.T) {
	t.Parallel()
	topic := Topic(t)
	sub := life.subscriber(t, topic+"/#", packet.QoS0)
	var unknownAuth packet.Properties
	unknownAuth.AuthMethod = []byte("conformance-no-such-method")
	unknownAuth.Set(packet.PropAuthMethod)
	rows := []struct {
		name    string
		v       packet.Version
		connect func(t testing.TB, r *Raw) []byte
	}{
		{"3.1.1 empty client identifier with clean session 0", packet.V311, func(t testing.TB, r *Raw) []byte {
			return life.encodeConnect(t, r, ConnectOpts{Persistent: true}, func(c *packet.Connect) { c.ClientID = nil })
		}},
		{"3.1.1 protocol level 6", packet.V311, func(t testing.TB, r *Raw) []byte {
			b := life.encodeConnect(t, r, ConnectOpts{}, nil)
			b[life.flagsAt(b)-1] = 6
			return b
		}},
		{"3.1.1 reserved flag", packet.V311, func(t testing.TB, r *Raw) []byte {
			return life.connectWithFlags(t, r, ConnectOpts{}, nil, 0x01, 0)
		}},
		{"5.0 unknown authentication method", packet.V5, func(t testing.TB, r *Raw) []byte {
			return life.encodeConnect(t, r, ConnectOpts{Properties: unknownAuth}, nil)
		}},
		{"5.0 protocol level 6", packet.V5, func(t testing.TB, r *Raw) []byte {
			b := life.encodeConnect(t, r, ConnectOpts{}, nil)
			b[life.flagsAt(b)-1] = 6
			return b
		}},
		{"5.0 reserved flag", packet.V5, func(t testing.TB, r *Raw) []byte {
			return life.connectWithFlags(t, r, ConnectOpts{}, nil, 0x01, 0)
		}},
	}
	for i, row := range rows {
		r := DialRaw(t, row.v)
		b := row.connect(t, r)
		pub, _ := (&packet.Publish{Topic: []byte(fmt.Sprintf("%s/%d", topic, i)), Payload: []byte(row.name)}).Append(nil, row.v)
		r.SendBytes(append(b, pub...)) // one write: the PUBLISH is there when the CONNECT is judged
		res := life.awaitClose(t, r, waitFor)
		for _, raw := range res.raws {
			if raw[0] == 0x20 {
				if _, code, _ := life.rawConnack(raw); code == packet.Success {
					t.Fatalf("%s: accepted: %v", row.name, res)
				}
			}
		}
	}
	// [v5 MQTT-3.1.4-6] [v3.1.1 MQTT-3.1.4-5] none of the PUBLISHes was
	// processed.
	sub.ExpectNothing()
}

// TestConnackMaximumQoS checks what a CONNACK's Maximum QoS promises: a
// broker that announces none supports QoS 2 [v5 MQTT-3.2.2-9]; one that
// announces a lower maximum still accepts SUBSCRIBE at every QoS
// [v5 MQTT-3.2.2-10].
func TestConnackMaximumQoS(t *testing.T) {
	t.Parallel()
	topic := Topic(t)
	r, ack := life.dial(t, packet.V5, ConnectOpts{})
	if !ack.Properties.Has(packet.PropMaximumQoS) {
		// No Maximum QoS: QoS 2 must work end to end.
		life.subscribe(t, r, topic, packet.QoS2)
		if rc := r.Publish(&packet.Publish{QoS: packet.QoS2, Topic: []byte(topic), Payload: []byte("q2")}); rc.IsError() {
			t.Fatalf("broker announced no Maximum QoS but refused a QoS 2 PUBLISH: %v", rc)
		}
		p := r.ExpectPublish()
		if p.QoS != packet.QoS2 {
			t.Fatalf("broker announced no Maximum QoS but delivered %s to a QoS 2 subscription", Describe(p))
		}
		r.Ack(p)
		return
	}
	maxQoS := packet.QoS(ack.Properties.MaximumQoS)
	for q := packet.QoS0; q <= packet.QoS2; q++ {
		suback := r.Subscribe(packet.Subscription{Filter: []byte(fmt.Sprintf("%s/%d", topic, q)), QoS: q})
		if len(suback.ReasonCodes) != 1 || suback.ReasonCodes[0].IsError() || packet.QoS(suback.ReasonCodes[0]) > maxQoS {
			t.Fatalf("Maximum QoS %d: SUBSCRIBE at QoS %d got %s, want a grant of at most QoS %d", maxQoS, q, Describe(suback), maxQoS)
		}
	}
}

// TestConnectRequestResponseInformation checks that a client that does not
// ask for Response Information gets none [v5 MQTT-3.1.2-28].
func TestConnectRequestResponseInformation(t *testing.T) {
	t.Parallel()
	var zero packet.Properties
	zero.RequestResponseInfo = 0
	zero.Set(packet.PropRequestResponseInfo)
	for _, row := range []struct {
		name  string
		props packet.Properties
	}{{"absent", packet.Properties{}}, {"0", zero}} {
		name, props := row.name, row.props
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, ack := life.dial(t, packet.V5, ConnectOpts{Properties: props})
			if ack.Properties.Has(packet.PropResponseInfo) {
				t.Fatalf("Request Response Information %s, yet the CONNACK carries Response Information: %s", name, Describe(ack))
			}
		})
	}
}

// TestConnectRequestProblemInformation checks that with Request Problem
// Information 0 the broker puts no Reason String or User Property on
// acknowledgements [v5 MQTT-3.1.2-29]: it provokes a PUBACK, SUBACK,
// UNSUBACK and PUBCOMP that have a reason to explain themselves.
func TestConnectRequestProblemInformation(t *testing.T) {
	t.Parallel()
	var props packet.Properties
	props.RequestProblemInfo = 0
	props.Set(packet.PropRequestProblemInfo)
	r, _ := life.dial(t, packet.V5, ConnectOpts{Properties: props})
	topic := Topic(t)
	sent := []packet.Packet{
		&packet.Publish{QoS: packet.QoS1, PacketID: 1, Topic: []byte(topic + "/nobody"), Payload: []byte("x")}, // no subscribers
		&packet.Subscribe{PacketID: 2, Subscriptions: []packet.Subscription{{Filter: []byte(topic), QoS: packet.QoS1}}},
		&packet.Unsubscribe{PacketID: 3, Filters: [][]byte{[]byte(topic + "/never-subscribed")}},
		&packet.Ack{PacketType: packet.PUBREL, PacketID: 4}, // unknown packet identifier
	}
	want := []packet.Type{packet.PUBACK, packet.SUBACK, packet.UNSUBACK, packet.PUBCOMP}
	for i, p := range sent {
		r.Send(p)
		got := r.Expect(want[i])
		var pr *packet.Properties
		switch g := got.(type) {
		case *packet.Ack:
			pr = &g.Properties
		case *packet.Suback:
			pr = &g.Properties
		case *packet.Unsuback:
			pr = &g.Properties
		}
		if pr.Has(packet.PropReasonString) || pr.Has(packet.PropUser) {
			t.Fatalf("Request Problem Information 0, yet %s carries a Reason String or User Property", Describe(got))
		}
	}
}

// TestConnectTopicAliasMaximum checks the client's Topic Alias Maximum: a
// client that sets none gets no Topic Alias [v5 MQTT-3.1.2-27]; one that
// allows two never sees a larger alias [v5 MQTT-3.1.2-26].
func TestConnectTopicAliasMaximum(t *testing.T) {
	t.Parallel()
	topic := Topic(t)
	var two packet.Properties
	two.TopicAliasMaximum = 2
	two.Set(packet.PropTopicAliasMaximum)
	none, _ := life.dial(t, packet.V5, ConnectOpts{})
	some, _ := life.dial(t, packet.V5, ConnectOpts{Properties: two})
	for _, r := range []*Raw{none, some} {
		life.subscribe(t, r, topic+"/#", packet.QoS0)
	}
	pub, _ := life.dial(t, packet.V5, ConnectOpts{})
	const topics, rounds = 4, 3
	for i := 0; i < rounds; i++ {
		for j := 0; j < topics; j++ {
			pub.Publish(&packet.Publish{Topic: []byte(fmt.Sprintf("%s/%d", topic, j)), Payload: []byte("x")})
		}
	}
	for n := 0; n < topics*rounds; n++ {
		if p := none.ExpectPublish(); p.Properties.Has(packet.PropTopicAlias) {
			t.Fatalf("client without Topic Alias Maximum got %s", Describe(p))
		}
		if p := some.ExpectPublish(); p.Properties.Has(packet.PropTopicAlias) && p.Properties.TopicAlias > 2 {
			t.Fatalf("client with Topic Alias Maximum 2 got %s", Describe(p))
		}
	}
}
