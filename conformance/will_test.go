package conformance

// Will messages (5.0 sections 3.1.2.5-3.1.2.7, 3.1.3.2-3.1.3.4, 3.14.4;
// 3.1.1 sections 3.1.2.5-3.1.2.7, 3.14.4).

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// collectWills reads n PUBLISHes from sub, keyed by topic, acknowledging
// each, and fails on a second message for a topic.
func (lifeKit) collectWills(t testing.TB, sub *Raw, n int) map[string]*packet.Publish {
	t.Helper()
	got := map[string]*packet.Publish{}
	for len(got) < n {
		p := life.expectPublish(t, sub, waitFor)
		if _, dup := got[string(p.Topic)]; dup {
			t.Fatalf("will published twice: %s", Describe(p))
		}
		got[string(p.Topic)] = p
	}
	return got
}

// TestWillOnNetworkLoss checks that a will is published, with its topic,
// payload and QoS, when the connection closes without DISCONNECT.
func TestWillOnNetworkLoss(t *testing.T) {
	t.Parallel()
	topic := Topic(t)
	sub := life.subscriber(t, topic+"/#", packet.QoS2)
	type row struct {
		name  string
		v     packet.Version
		qos   packet.QoS
		creds bool // with a user name and password after the will fields
	}
	var rows []row
	for _, v := range life.versions() {
		// A will above the broker's Maximum QoS is refused [v5 MQTT-3.2.2-12]
		// (TestWillQoSNotSupported), so only the QoS it offers are tried.
		for q := packet.QoS0; q <= features.MaximumQoS; q++ {
			rows = append(rows, row{fmt.Sprintf("%v-qos%d", v, q), v, q, false})
		}
		rows = append(rows, row{fmt.Sprintf("%v-credentials", v), v, min(packet.QoS1, features.MaximumQoS), true})
	}
	var clients []*Raw
	for _, row := range rows {
		w := life.will(topic+"/"+row.name, row.qos, false, "gone "+row.name)
		r := DialRaw(t, row.v)
		var edit func(c *packet.Connect)
		if row.creds {
			user, pass := life.credentials()
			edit = func(c *packet.Connect) {
				c.UsernameFlag, c.Username, c.PasswordFlag, c.Password = true, []byte(user), true, []byte(pass)
			}
		}
		r.SendBytes(life.encodeConnect(t, r, ConnectOpts{Will: w}, edit))
		// [v5 MQTT-3.1.2-7] the will is stored when the CONNECT is accepted.
		life.expectAccepted(t, r)
		clients = append(clients, r)
	}
	for _, r := range clients {
		r.Close() // network loss: no DISCONNECT
	}
	wills := life.collectWills(t, sub, len(rows))
	for _, row := range rows {
		p := wills[topic+"/"+row.name]
		// [v5 MQTT-3.1.2-8] [v3.1.1 MQTT-3.1.2-8] published on the close,
		// with the will's topic, payload and QoS [v3.1.1 MQTT-3.1.2-9]; with
		// a user name and password after the will fields, read in the order
		// the specification gives [v3.1.1 MQTT-3.1.3-1].
		if p == nil || string(p.Payload) != "gone "+row.name || p.QoS != row.qos {
			t.Errorf("%s: got %v, want the will at QoS %d", row.name, p, row.qos)
			continue
		}
		// [v5 MQTT-3.1.2-14] [v3.1.1 MQTT-3.1.2-16] not retained.
		if p.Retain {
			t.Errorf("%s: will without Will Retain delivered with RETAIN 1: %s", row.name, Describe(p))
		}
	}
	// [v5 MQTT-3.1.2-10] [v3.1.1 MQTT-3.1.2-10] each will went out once.
	sub.ExpectNothing()
	// [v5 MQTT-3.1.2-14] [v3.1.1 MQTT-3.1.2-16] nor stored as retained.
	late := life.subscriber(t, topic+"/#", packet.QoS2)
	late.ExpectNothing()
}

// TestWillRetained checks that a will with Will Retain 1 is published as a
// retained message [v5 MQTT-3.1.2-15] [v3.1.1 MQTT-3.1.2-17].
func TestWillRetained(t *testing.T) {
	t.Parallel()
	if !features.RetainAvailable {
		t.Skip("broker does not offer retained messages (Retain Available 0)")
	}
	for _, v := range life.versions() {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			topic := Topic(t)
			CleanRetained(t, topic)
			sub := life.subscriber(t, topic, packet.QoS1)
			r, _ := life.dial(t, v, ConnectOpts{Will: life.will(topic, packet.QoS1, true, "retained will")})
			r.Close()
			life.expectPublish(t, sub, waitFor)
			late := life.subscriber(t, topic, packet.QoS1)
			p := life.expectPublish(t, late, waitFor)
			if !p.Retain || string(p.Payload) != "retained will" {
				t.Fatalf("new subscriber got %s, want the will as a retained message", Describe(p))
			}
		})
	}
}

// TestWillNotPublished checks the cases where a will must not go out: a
// normal DISCONNECT deletes it, and a connection without a will has none.
func TestWillNotPublished(t *testing.T) {
	t.Parallel()
	topic := Topic(t)
	sub := life.subscriber(t, topic+"/#", packet.QoS1)
	var explained packet.Properties
	explained.ReasonString = []byte("done")
	explained.Set(packet.PropReasonString)
	explained.User = []packet.UserProperty{{Key: []byte("k"), Value: []byte("v")}}
	rows := []struct {
		name string
		v    packet.Version
		end  func(t testing.TB, r *Raw)
	}{
		// [v3.1.1 MQTT-3.14.4-3] [v3.1.1 MQTT-3.1.2-10] [v3.1.1 MQTT-3.1.2-8]
		{"3.1.1 DISCONNECT", packet.V311, func(t testing.TB, r *Raw) { r.Disconnect() }},
		// [v5 MQTT-3.14.4-3] [v5 MQTT-3.1.2-10] [v5 MQTT-3.1.2-8]
		{"5.0 DISCONNECT 0x00", packet.V5, func(t testing.TB, r *Raw) { r.Disconnect() }},
		{"5.0 DISCONNECT 0x00 with properties", packet.V5, func(t testing.TB, r *Raw) {
			r.Send(&packet.Disconnect{Properties: explained})
			r.Close()
		}},
	}
	for i, row := range rows {
		r, _ := life.dial(t, row.v, ConnectOpts{Will: life.will(fmt.Sprintf("%s/%d", topic, i), packet.QoS1, false, row.name)})
		row.end(t, r)
	}
	// [v3.1.1 MQTT-3.1.2-12] a connection with Will Flag 0 leaves no will
	// when it is lost, though an earlier connection of its session had one.
	id := uniqueID(t)
	r, _ := life.dial(t, packet.V311, ConnectOpts{ClientID: id, Persistent: true, Will: life.will(topic+"/earlier", packet.QoS1, false, "earlier")})
	CleanSession(t, id)
	life.hangUp(t, r, nil)
	r, _ = life.dial(t, packet.V311, ConnectOpts{ClientID: id, Persistent: true})
	r.Close()
	sub.ExpectNothing()
}

// TestWillDisconnectWithWill checks that DISCONNECT 0x04 (Disconnect with
// Will Message) keeps the will, which is then published
// [v5 MQTT-3.1.2-8].
func TestWillDisconnectWithWill(t *testing.T) {
	t.Parallel()
	topic := Topic(t)
	sub := life.subscriber(t, topic, packet.QoS1)
	r, _ := life.dial(t, packet.V5, ConnectOpts{Will: life.will(topic, packet.QoS1, false, "asked for")})
	r.Send(&packet.Disconnect{ReasonCode: packet.DisconnectWithWill})
	r.Close()
	if p := life.expectPublish(t, sub, waitFor); string(p.Payload) != "asked for" {
		t.Fatalf("got %s, want the will", Describe(p))
	}
}

// TestWillOnProtocolError checks that a will is published when the broker
// closes the connection because the client broke the protocol
// [v5 MQTT-3.1.2-8] [v3.1.1 MQTT-3.1.2-8]: the will is deleted only by a
// normal DISCONNECT.
func TestWillOnProtocolError(t *testing.T) {
	t.Parallel()
	violations := []struct {
		name string
		send func(t testing.TB, r *Raw)
	}{
		{"second CONNECT", func(t testing.TB, r *Raw) { r.Send(r.ConnectPacket(ConnectOpts{})) }},
		{"PUBLISH QoS 3", func(t testing.TB, r *Raw) {
			b, _ := (&packet.Publish{Topic: []byte("conformance/qos3"), Payload: []byte("x")}).Append(nil, r.V)
			b[0] |= 0x06
			r.SendBytes(b)
		}},
	}
	for _, v := range life.versions() {
		for _, vio := range violations {
			t.Run(fmt.Sprintf("%v/%s", v, vio.name), func(t *testing.T) {
				t.Parallel()
				topic := Topic(t)
				sub := life.subscriber(t, topic, packet.QoS1)
				r, _ := life.dial(t, v, ConnectOpts{Will: life.will(topic, packet.QoS1, false, "broke the rules")})
				vio.send(t, r)
				life.awaitClose(t, r, waitFor)
				if p := life.expectPublish(t, sub, waitFor); string(p.Payload) != "broke the rules" {
					t.Fatalf("got %s, want the will", Describe(p))
				}
			})
		}
	}
}

// TestWillDelay checks the 5.0 Will Delay Interval: the will waits for the
// delay [v5 MQTT-3.1.2-8], is never sent if the client reconnects in time
// [v5 MQTT-3.1.3-9], and goes out when the session ends if that comes
// first [v5 MQTT-3.1.2-8].
func TestWillDelay(t *testing.T) {
	t.Parallel()
	topic := Topic(t)
	sub := life.subscriber(t, topic+"/#", packet.QoS1)
	scenarios := []struct {
		name      string
		delay     uint32 // Will Delay Interval, seconds
		expiry    uint32 // Session Expiry Interval, seconds
		reconnect bool
	}{
		{"delay", 1, 10, false},
		{"reconnected", 1, 10, true},
		{"session ends first", 10, 1, false},
	}
	var clients []*Raw
	ids := make([]string, len(scenarios))
	for i, s := range scenarios {
		ids[i] = uniqueID(t)
		CleanSession(t, ids[i])
		w := life.willDelay(life.will(topic+"/"+s.name, packet.QoS1, false, s.name), s.delay)
		r, _ := life.dial(t, packet.V5, ConnectOpts{ClientID: ids[i], Will: w, Properties: life.sessionExpiry(s.expiry)})
		clients = append(clients, r)
	}
	// The deliberate wait of this test is the will delay of 1 s (and the
	// session expiry of 1 s) after these closes.
	closed := time.Now()
	for _, r := range clients {
		r.Close()
	}
	for i, s := range scenarios {
		if s.reconnect {
			_, ack := life.dial(t, packet.V5, ConnectOpts{ClientID: ids[i], Persistent: true, Properties: life.sessionExpiry(10)})
			if !ack.SessionPresent {
				t.Fatalf("reconnecting within the will delay: %s, want Session Present 1", Describe(ack))
			}
		}
	}
	arrived := map[string]time.Duration{}
	for len(arrived) < 2 {
		a := life.nextPublish(sub, waitFor)
		if a.err != nil || a.p == nil {
			t.Fatalf("wills so far %v; then %v", arrived, a.err)
		}
		sub.Ack(a.p)
		arrived[string(a.p.Payload)] = a.at.Sub(closed)
	}
	// "reconnected" would have gone out with "delay"; give it a moment more.
	life.expectNoPublish(t, sub, quietPeriod)
	want := []string{"delay", "session ends first"}
	var got []string
	for _, name := range want {
		if d, ok := arrived[name]; ok {
			got = append(got, name)
			if d < time.Second {
				t.Errorf("%s: will published %v after the close, before the 1 s interval", name, d)
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("wills published (-want +got):\n%s", diff)
	}
}

// TestWillSessionEndsAtClose checks a will whose delay outlasts a session
// that ends with its connection (Session Expiry Interval 0): the will goes
// out at once, when the session ends [v5 MQTT-3.1.2-8].
func TestWillSessionEndsAtClose(t *testing.T) {
	t.Parallel()
	topic := Topic(t)
	sub := life.subscriber(t, topic, packet.QoS1)
	w := life.willDelay(life.will(topic, packet.QoS1, false, "session over"), 30)
	r, _ := life.dial(t, packet.V5, ConnectOpts{Will: w})
	r.Close()
	if p := life.expectPublish(t, sub, waitFor); string(p.Payload) != "session over" {
		t.Fatalf("got %s, want the will", Describe(p))
	}
}

// TestWillUserProperties checks that the will's User Properties reach the
// subscriber in their order [v5 MQTT-3.1.3-10].
func TestWillUserProperties(t *testing.T) {
	t.Parallel()
	topic := Topic(t)
	sub := life.subscriber(t, topic, packet.QoS1)
	w := life.will(topic, packet.QoS1, false, "props")
	for _, kv := range [][2]string{{"k", "1"}, {"a", "2"}, {"k", "3"}, {"b", "4"}} {
		w.Properties.User = append(w.Properties.User, packet.UserProperty{Key: []byte(kv[0]), Value: []byte(kv[1])})
	}
	r, _ := life.dial(t, packet.V5, ConnectOpts{Will: w})
	r.Close()
	p := life.expectPublish(t, sub, waitFor)
	render := func(us []packet.UserProperty) []string {
		var s []string
		for _, u := range us {
			s = append(s, string(u.Key)+"="+string(u.Value))
		}
		return s
	}
	if diff := cmp.Diff(render(w.Properties.User), render(p.Properties.User)); diff != "" {
		t.Fatalf("will User Properties (-sent +delivered):\n%s", diff)
	}
}

// TestWillQoSNotSupported checks that a broker with a Maximum QoS refuses a
// will of a higher QoS [v5 MQTT-3.2.2-12].
func TestWillQoSNotSupported(t *testing.T) {
	t.Parallel()
	if features.MaximumQoS >= packet.QoS2 {
		t.Skip("broker supports QoS 2 (no Maximum QoS below 2 in its CONNACK): no will QoS to refuse")
	}
	r := DialRaw(t, packet.V5)
	r.Send(r.ConnectPacket(ConnectOpts{Will: life.will(Topic(t), features.MaximumQoS+1, false, "too high")}))
	if _, refused := life.connackOrClose(t, r); !refused {
		t.Fatalf("Maximum QoS %d, yet a will of QoS %d was accepted", features.MaximumQoS, features.MaximumQoS+1)
	}
	life.expectRefused(t, r, packet.QoSNotSupported, packet.UnspecifiedError, packet.ImplementationSpecificError)
}

// TestWillRetainNotSupported checks that a broker without retained messages
// refuses a will with Will Retain 1 [v5 MQTT-3.2.2-13].
func TestWillRetainNotSupported(t *testing.T) {
	t.Parallel()
	if features.RetainAvailable {
		t.Skip("broker offers retained messages (Retain Available absent or 1): no will to refuse")
	}
	r := DialRaw(t, packet.V5)
	r.Send(r.ConnectPacket(ConnectOpts{Will: life.will(Topic(t), packet.QoS0, true, "retained")}))
	if _, refused := life.connackOrClose(t, r); !refused {
		t.Fatalf("Retain Available 0, yet a will with Will Retain 1 was accepted")
	}
	life.expectRefused(t, r, packet.RetainNotSupported, packet.UnspecifiedError, packet.ImplementationSpecificError)
}
