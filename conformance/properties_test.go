package conformance

// MQTT 5.0 message properties (section 3.3.2.3): what the broker forwards
// unchanged, Message Expiry, Topic Aliases in both directions; and the
// string rules of section 1.5 that show in delivered messages.

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// wireForwarded is the part of a PUBLISH's properties the broker must pass on
// unchanged.
type wireForwarded struct {
	PayloadFormat   *byte
	ContentType     *string
	ResponseTopic   *string
	CorrelationData []byte
	User            [][2]string
}

func wireForwardedOf(p *packet.Properties) wireForwarded {
	var f wireForwarded
	if p.Has(packet.PropPayloadFormat) {
		v := p.PayloadFormat
		f.PayloadFormat = &v
	}
	if p.Has(packet.PropContentType) {
		s := string(p.ContentType)
		f.ContentType = &s
	}
	if p.Has(packet.PropResponseTopic) {
		s := string(p.ResponseTopic)
		f.ResponseTopic = &s
	}
	if p.Has(packet.PropCorrelationData) {
		f.CorrelationData = bytes.Clone(p.CorrelationData)
	}
	for _, u := range p.User {
		f.User = append(f.User, [2]string{string(u.Key), string(u.Value)})
	}
	return f
}

// wireRichProperties are the properties of a PUBLISH that exercises every
// forwarded property: non-ASCII text, binary correlation data with NUL and
// 0xFF bytes, and user properties with a repeated name, in an order that
// is neither sorted nor grouped.
func wireRichProperties(topic string) packet.Properties {
	var p packet.Properties
	p.PayloadFormat = 1
	p.Set(packet.PropPayloadFormat)
	p.ContentType = []byte("application/json; charset=utf-8; note=\"é✓\"")
	p.Set(packet.PropContentType)
	p.ResponseTopic = []byte(topic + "/réponse/😀")
	p.Set(packet.PropResponseTopic)
	p.CorrelationData = []byte{0x00, 0xff, 0x10, 'c', 0x00}
	p.Set(packet.PropCorrelationData)
	p.MessageExpiry = 3600
	p.Set(packet.PropMessageExpiry)
	for _, kv := range [][2]string{{"z", "1"}, {"a", "2"}, {"z", "3"}, {"ключ", "значение"}, {"empty", ""}, {"a", "2"}} {
		p.User = append(p.User, packet.UserProperty{Key: []byte(kv[0]), Value: []byte(kv[1])})
	}
	return p
}

// TestPublishPropertiesForwarded publishes a message carrying every
// property a subscriber must receive unchanged and checks each delivery:
// live at each QoS and as a retained message.
func TestPublishPropertiesForwarded(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		qos      packet.QoS
		retained bool
	}{
		{"QoS 0", packet.QoS0, false},
		{"QoS 1", packet.QoS1, false},
		{"QoS 2", packet.QoS2, false},
		{"retained", packet.QoS1, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			Require(t, features.MaximumQoS >= c.qos, fmt.Sprintf("QoS %d", c.qos))
			if c.retained {
				Require(t, features.RetainAvailable, "retained messages")
			}
			topic := Topic(t)
			sent := &packet.Publish{QoS: c.qos, Retain: c.retained, Topic: []byte(topic), Payload: []byte(`{"x":1}`),
				Properties: wireRichProperties(topic)}
			sub := wireConnect(t, packet.V5, ConnectOpts{})
			pub := wireConnect(t, packet.V5, ConnectOpts{})
			subscribe := func() {
				if ack := sub.Subscribe(packet.Subscription{Filter: []byte(topic), QoS: c.qos}); ack.ReasonCodes[0].IsError() {
					t.Fatalf("subscribe refused: %s", Describe(ack))
				}
			}
			if c.retained {
				CleanRetained(t, topic)
				pub.Publish(sent)
				subscribe()
			} else {
				subscribe()
				pub.Publish(sent)
			}
			got := sub.ExpectPublish()
			sub.Ack(got)
			// [v5 MQTT-3.3.2-4] payload format indicator, [v5 MQTT-3.3.2-15]
			// response topic, [v5 MQTT-3.3.2-16] correlation data,
			// [v5 MQTT-3.3.2-20] content type, [v5 MQTT-3.3.2-17] every user
			// property, [v5 MQTT-3.3.2-18] in the order sent.
			if diff := cmp.Diff(wireForwardedOf(&sent.Properties), wireForwardedOf(&got.Properties)); diff != "" {
				t.Fatalf("forwarded properties differ (-sent +delivered):\n%s", diff)
			}
			// The expiry interval is passed on, reduced by at most the
			// seconds the message waited [v5 MQTT-3.3.2-6].
			if !got.Properties.Has(packet.PropMessageExpiry) || got.Properties.MessageExpiry > 3600 || got.Properties.MessageExpiry < 3590 {
				t.Fatalf("delivered %s, want a Message Expiry Interval of 3590..3600", Describe(got))
			}
			if !bytes.Equal(got.Payload, sent.Payload) {
				t.Fatalf("payload %q, want %q", got.Payload, sent.Payload)
			}
		})
	}
}

// TestStringsKeepBOM checks that U+FEFF (bytes EF BB BF) inside strings is
// kept as a character, not stripped: a topic containing it is delivered
// with it, is distinct from the same topic without it, and 5.0 properties
// keep it [v5 MQTT-1.5.4-3] [v3.1.1 MQTT-1.5.3-3].
func TestStringsKeepBOM(t *testing.T) {
	t.Parallel()
	const bom = "\xef\xbb\xbf"
	for _, v := range wireV5V311 {
		t.Run(wireV(v), func(t *testing.T) {
			t.Parallel()
			base := Topic(t)
			withBOM := base + "/" + bom + "x" + bom
			sub := wireConnect(t, v, ConnectOpts{})
			sub.Subscribe(packet.Subscription{Filter: []byte(withBOM), QoS: packet.QoS1})
			plain := wireConnect(t, v, ConnectOpts{})
			plain.Subscribe(packet.Subscription{Filter: []byte(base + "/x"), QoS: packet.QoS1})

			p := &packet.Publish{QoS: packet.QoS1, Topic: []byte(withBOM), Payload: []byte("bom")}
			if v == packet.V5 {
				p.Properties.ContentType = []byte(bom + "text/plain")
				p.Properties.Set(packet.PropContentType)
				p.Properties.User = []packet.UserProperty{{Key: []byte(bom), Value: []byte(bom + "v")}}
			}
			pub := wireConnect(t, v, ConnectOpts{})
			pub.Publish(p)
			got := sub.ExpectPublish()
			sub.Ack(got)
			if string(got.Topic) != withBOM {
				t.Fatalf("delivered topic %q, want %q with its BOMs", got.Topic, withBOM)
			}
			if v == packet.V5 {
				if diff := cmp.Diff(wireForwardedOf(&p.Properties), wireForwardedOf(&got.Properties)); diff != "" {
					t.Fatalf("properties lost their BOM (-sent +delivered):\n%s", diff)
				}
			}
			// A stripped BOM would make the topic match the plain filter.
			plain.ExpectNothing()
		})
	}
}

// TestMessageExpiry queues messages for a disconnected subscriber: the copy
// whose Message Expiry Interval runs out while queued is deleted, and a
// copy delivered later carries the interval reduced by the time it waited.
func TestMessageExpiry(t *testing.T) {
	t.Parallel()
	for _, v := range wireV5V311 {
		t.Run(wireV(v)+" subscriber", func(t *testing.T) {
			t.Parallel()
			topic := Topic(t)
			id := uniqueID(t)
			opts := ConnectOpts{ClientID: id, Persistent: true}
			if v == packet.V5 {
				opts.Properties.SessionExpiry = 300
				opts.Properties.Set(packet.PropSessionExpiry)
			}
			CleanSession(t, id)
			sub := wireConnect(t, v, opts)
			sub.Subscribe(packet.Subscription{Filter: []byte(topic), QoS: packet.QoS1})
			sub.Disconnect()

			pub := wireConnect(t, packet.V5, ConnectOpts{})
			msg := func(payload string, expiry uint32) *packet.Publish {
				p := &packet.Publish{QoS: packet.QoS1, Topic: []byte(topic), Payload: []byte(payload)}
				if expiry > 0 {
					p.Properties.MessageExpiry = expiry
					p.Properties.Set(packet.PropMessageExpiry)
				}
				return p
			}
			sentAt := time.Now()
			pub.Publish(msg("expires", 1))
			pub.Publish(msg("lasts", 60))
			pub.Publish(msg("forever", 0))
			queued := time.Now()
			// The test is the 1 s interval running out while the messages
			// are queued; 2.2 s tolerates a broker that keeps time in whole
			// seconds.
			time.Sleep(2200 * time.Millisecond)
			waited := time.Since(queued)

			sub = DialRaw(t, v)
			opts.Persistent = true
			if ack := sub.Connect(opts); !ack.SessionPresent {
				t.Fatalf("session lost: %s", Describe(ack))
			}
			var got []*packet.Publish
			for range 2 {
				p := sub.ExpectPublish()
				sub.Ack(p)
				got = append(got, p)
			}
			sub.ExpectNothing()
			total := time.Since(sentAt)
			var payloads []string
			for _, p := range got {
				payloads = append(payloads, string(p.Payload))
			}
			// The expired copy is deleted [v5 MQTT-3.3.2-5].
			if diff := cmp.Diff([]string{"lasts", "forever"}, payloads); diff != "" {
				t.Fatalf("delivered after the 1 s expiry (-want +got):\n%s", diff)
			}
			if v != packet.V5 {
				return
			}
			// The interval is reduced by the time spent queued: at least
			// the whole seconds waited, at most the whole test plus one
			// for rounding [v5 MQTT-3.3.2-6].
			lasts := got[0].Properties
			hi := 60 - uint32(waited/time.Second)
			lo := 60 - uint32(total/time.Second) - 1
			if !lasts.Has(packet.PropMessageExpiry) || lasts.MessageExpiry > hi || lasts.MessageExpiry < lo {
				t.Fatalf("after %v queued, delivered %s; want a Message Expiry Interval of %d..%d", waited, Describe(got[0]), lo, hi)
			}
			if got[1].Properties.Has(packet.PropMessageExpiry) {
				t.Fatalf("delivered %s, want no Message Expiry Interval: none was sent", Describe(got[1]))
			}
		})
	}
}

// TestTopicAliasFromClient uses Topic Aliases from the client to the
// broker: every alias from 1 to the broker's Topic Alias Maximum is
// accepted [v5 MQTT-3.3.2-12], a PUBLISH with an empty topic and a mapped
// alias is delivered on the mapped topic, and a new topic on a mapped alias
// replaces the mapping.
func TestTopicAliasFromClient(t *testing.T) {
	t.Parallel()
	tam := features.TopicAliasMaximum
	Require(t, tam > 0, "topic aliases (Topic Alias Maximum > 0)")
	base := Topic(t)
	sub := wireConnect(t, packet.V5, ConnectOpts{})
	sub.Subscribe(packet.Subscription{Filter: []byte(base + "/#"), QoS: packet.QoS1})
	pub := wireConnect(t, packet.V5, ConnectOpts{})

	aliases := []uint16{1, tam}
	if tam > 2 {
		aliases = []uint16{1, tam / 2, tam}
	}
	type sent struct {
		alias        uint16
		topic, empty bool
		wantTopic    string
	}
	var plan []sent
	for _, a := range aliases {
		topic := fmt.Sprintf("%s/alias%d", base, a)
		plan = append(plan,
			sent{alias: a, topic: true, wantTopic: topic}, // set the mapping
			sent{alias: a, empty: true, wantTopic: topic}, // use it
		)
	}
	remapped := base + "/remapped"
	plan = append(plan,
		sent{alias: 1, topic: true, wantTopic: remapped},
		sent{alias: 1, empty: true, wantTopic: remapped})

	for i, s := range plan {
		p := &packet.Publish{QoS: packet.QoS1, Payload: []byte(fmt.Sprint(i))}
		if s.topic {
			p.Topic = []byte(s.wantTopic)
		}
		p.Properties.TopicAlias = s.alias
		p.Properties.Set(packet.PropTopicAlias)
		if rc := pub.Publish(p); rc.IsError() {
			t.Fatalf("PUBLISH with Topic Alias %d (topic %q) refused: %v", s.alias, p.Topic, rc)
		}
		got := sub.ExpectPublish()
		sub.Ack(got)
		if string(got.Topic) != s.wantTopic || string(got.Payload) != fmt.Sprint(i) {
			t.Fatalf("PUBLISH %d with Topic Alias %d: subscriber got %s, want topic %q", i, s.alias, Describe(got), s.wantTopic)
		}
		// The subscriber announced no Topic Alias Maximum: the broker
		// must send it none [v5 MQTT-3.1.2-27].
		if got.Properties.Has(packet.PropTopicAlias) {
			t.Fatalf("subscriber without Topic Alias Maximum got %s", Describe(got))
		}
	}
}

// TestTopicAliasInvalid sends a Topic Alias of 0 [v5 MQTT-3.3.2-8] and one
// above the broker's Topic Alias Maximum; the broker must close the
// connection with Topic Alias invalid and deliver nothing. A broker with no
// Topic Alias Maximum accepts no alias at all, so alias 1 is already too
// large there.
func TestTopicAliasInvalid(t *testing.T) {
	t.Parallel()
	tam := features.TopicAliasMaximum
	cases := []struct {
		name  string
		alias uint16
		codes []packet.ReasonCode
	}{
		// The specification names no code for alias 0: Topic Alias
		// invalid fits, and so do the general Malformed Packet and
		// Protocol Error.
		{"alias 0", 0, []packet.ReasonCode{packet.TopicAliasInvalid, packet.MalformedPacket, packet.ProtocolError}},
	}
	if tam < 65535 {
		cases = append(cases, struct {
			name  string
			alias uint16
			codes []packet.ReasonCode
		}{fmt.Sprintf("alias %d above the maximum", tam+1), tam + 1, []packet.ReasonCode{packet.TopicAliasInvalid}})
	}
	for _, c := range cases {
		for _, empty := range []bool{false, true} {
			name := c.name + " with topic"
			if empty {
				name = c.name + " without topic"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				topic := Topic(t)
				sub := wireConnect(t, packet.V5, ConnectOpts{})
				sub.Subscribe(packet.Subscription{Filter: []byte(topic), QoS: packet.QoS1})
				r := wireConnect(t, packet.V5, ConnectOpts{})
				p := &packet.Publish{QoS: packet.QoS1, PacketID: 1, Topic: []byte(topic), Payload: []byte("x")}
				if empty {
					p.Topic = nil
				}
				p.Properties.TopicAlias = c.alias
				p.Properties.Set(packet.PropTopicAlias)
				r.Send(p)
				// The broker closes [v5 MQTT-4.13.1-1]; a DISCONNECT
				// carries Topic Alias invalid.
				wireExpectDropped(t, r, false, c.codes...)
				sub.ExpectNothing()
			})
		}
	}
}

// TestTopicAliasPerConnection establishes a Topic Alias, reconnects with
// the same client and session, and uses the alias with an empty topic:
// mappings do not outlive the network connection [v5 MQTT-3.3.2-7], so
// the broker must treat it as a Protocol Error and deliver nothing.
func TestTopicAliasPerConnection(t *testing.T) {
	t.Parallel()
	Require(t, features.TopicAliasMaximum > 0, "topic aliases (Topic Alias Maximum > 0)")
	topic := Topic(t)
	sub := wireConnect(t, packet.V5, ConnectOpts{})
	sub.Subscribe(packet.Subscription{Filter: []byte(topic), QoS: packet.QoS1})

	id := uniqueID(t)
	CleanSession(t, id)
	opts := ConnectOpts{ClientID: id, Persistent: true}
	opts.Properties.SessionExpiry = 60
	opts.Properties.Set(packet.PropSessionExpiry)
	r := wireConnect(t, packet.V5, opts)
	p := &packet.Publish{QoS: packet.QoS1, Topic: []byte(topic), Payload: []byte("first")}
	p.Properties.TopicAlias = 1
	p.Properties.Set(packet.PropTopicAlias)
	r.Publish(p)
	sub.Ack(sub.ExpectPublish())
	r.Disconnect()

	r = DialRaw(t, packet.V5)
	if ack := r.Connect(opts); !ack.SessionPresent {
		t.Fatalf("session lost: %s", Describe(ack))
	}
	p = &packet.Publish{QoS: packet.QoS1, PacketID: 1, Payload: []byte("second")}
	p.Properties.TopicAlias = 1
	p.Properties.Set(packet.PropTopicAlias)
	r.Send(p)
	wireExpectDropped(t, r, false, packet.ProtocolError)
	sub.ExpectNothing()
}

// TestTopicAliasToClient lets the broker use Topic Aliases towards
// subscribers with different Topic Alias Maximums. Whatever aliases it
// picks must lie within the subscriber's maximum [v5 MQTT-3.1.2-26]
// [v5 MQTT-3.3.2-11], none at all when the maximum is absent or 0
// [v5 MQTT-3.1.2-27], and each message must resolve to its real topic.
func TestTopicAliasToClient(t *testing.T) {
	t.Parallel()
	for _, tam := range []int{-1, 0, 1, 3} {
		name := fmt.Sprintf("maximum %d", tam)
		if tam < 0 {
			name = "maximum absent"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			base := Topic(t)
			var o ConnectOpts
			if tam >= 0 {
				o.Properties.TopicAliasMaximum = uint16(tam)
				o.Properties.Set(packet.PropTopicAliasMaximum)
			}
			sub := wireConnect(t, packet.V5, o)
			sub.Subscribe(packet.Subscription{Filter: []byte(base + "/#"), QoS: packet.QoS1})
			pub := wireConnect(t, packet.V5, ConnectOpts{})
			var want []string
			for round := range 3 {
				for i := range 5 {
					topic := fmt.Sprintf("%s/t%d", base, i)
					want = append(want, topic)
					pub.Publish(&packet.Publish{QoS: packet.QoS1, Topic: []byte(topic), Payload: []byte(fmt.Sprint(round))})
				}
			}
			mapping := map[uint16]string{}
			for i, w := range want {
				p := sub.ExpectPublish()
				sub.Ack(p)
				topic := string(p.Topic)
				if p.Properties.Has(packet.PropTopicAlias) {
					a := p.Properties.TopicAlias
					if tam <= 0 || a == 0 || int(a) > tam {
						t.Fatalf("subscriber with Topic Alias Maximum %s got %s", name, Describe(p))
					}
					if topic != "" {
						mapping[a] = topic
					}
					topic = mapping[a]
				}
				if topic != w {
					t.Fatalf("message %d resolves to topic %q, want %q (%s)", i, topic, w, Describe(p))
				}
			}
		})
	}
}
