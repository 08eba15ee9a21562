package conformance

// Topic names and topic filters: wildcard matching, topics beginning with
// '$', filters and names the broker must refuse, no normalisation.

import (
	"strings"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// psExpand replaces {P} in s with the test's unique prefix and {+P} with
// the same prefix whose first level is the wildcard '+'.
func psExpand(s, prefix string) string {
	plus := "+" + prefix[strings.IndexByte(prefix, '/'):]
	return strings.NewReplacer("{+P}", plus, "{P}", prefix).Replace(s)
}

// TestTopicMatching subscribes to a filter and publishes on a topic, and
// checks whether the message arrives, with the topic name it was published
// on.
func TestTopicMatching(t *testing.T) {
	t.Parallel()
	const (
		plus  = "[v5 MQTT-4.7.1-2] [v3.1.1 MQTT-4.7.1-3]"
		hash  = "[v5 MQTT-4.7.1-1] [v3.1.1 MQTT-4.7.1-2]"
		exact = "[v5 MQTT-4.7.3-4] [v3.1.1 MQTT-4.7.3-4]"
	)
	cases := []struct {
		name, filter, topic string
		match               bool
		cite                string
	}{
		{"same", "{P}/a/b", "{P}/a/b", true, ""},
		{"other", "{P}/a/b", "{P}/a/c", false, ""},
		{"plus-middle", "{P}/+/b", "{P}/a/b", true, plus},
		{"plus-last", "{P}/a/+", "{P}/a/b", true, plus},
		{"plus-first", "{+P}/a/b", "{P}/a/b", true, plus},
		{"plus-first-empty-level", "+/{P}/x", "/{P}/x", true, plus},
		{"plus-one-level-only", "{P}/+", "{P}/a/b", false, plus},
		{"plus-twice", "{P}/+/+", "{P}/a/b", true, plus},
		{"plus-empty-level", "{P}/a/+", "{P}/a/", true, plus},
		{"plus-empty-middle-level", "{P}/+/b", "{P}//b", true, plus},
		{"plus-needs-a-level", "{P}/a/+", "{P}/a", false, plus},
		{"plus-too-many-levels", "{P}/+/+/+", "{P}/a/b", false, plus},
		{"hash-all-below", "{P}/#", "{P}/a/b/c", true, hash},
		{"hash-parent-level", "{P}/a/#", "{P}/a", true, hash},
		{"hash-after-exact", "{P}/a/b/#", "{P}/a/b", true, hash},
		{"hash-not-a-prefix-match", "{P}/a/#", "{P}/ab", false, hash},
		{"plus-then-hash", "{P}/+/#", "{P}/a/b/c", true, hash + " " + plus},
		{"no-implicit-hash", "{P}/a", "{P}/a/b", false, ""},
		{"case-sensitive", "{P}/a", "{P}/A", false, exact},
		{"no-unicode-normalisation", "{P}/caf\u00e9", "{P}/cafe\u0301", false, exact},
		{"decomposed-form-kept", "{P}/cafe\u0301", "{P}/cafe\u0301", true, exact},
		{"no-width-folding", "{P}/\uff21", "{P}/A", false, exact},
		{"trailing-space", "{P}/a ", "{P}/a", false, exact},
		{"trailing-separator", "{P}/a/", "{P}/a", false, exact},
	}
	for _, v := range pubsubVersions {
		t.Run(psV(v), func(t *testing.T) {
			t.Parallel()
			// One subscriber per case, each under its own prefix; all cases
			// share the wait for "nothing (more) arrives".
			type sub struct {
				filter, topic string
				r             *Raw
			}
			subs := make([]sub, len(cases))
			pub := psConn(t, v, ConnectOpts{})
			for i, c := range cases {
				if strings.ContainsAny(c.filter, "+#") && !features.WildcardSubs {
					continue // broker does not offer wildcard subscriptions
				}
				prefix := Topic(t)
				subs[i] = sub{filter: psExpand(c.filter, prefix), topic: psExpand(c.topic, prefix)}
				subs[i].r = psSub(t, v, subs[i].filter, packet.QoS1)
			}
			var rs []*Raw
			for _, s := range subs {
				if s.r != nil {
					psPub(t, pub, s.topic, packet.QoS1, false, "m")
					rs = append(rs, s.r)
				}
			}
			deadline := time.Now().Add(waitFor)
			for i, c := range cases {
				s := subs[i]
				if s.r == nil || !c.match {
					continue
				}
				ev, ok := s.r.next(max(time.Until(deadline), time.Millisecond))
				m, isPub := ev.p.(*packet.Publish)
				switch {
				case !ok || !isPub:
					t.Errorf("%s: filter %q did not receive the message on %q %s", c.name, s.filter, s.topic, c.cite)
				case string(m.Topic) != s.topic:
					// [v5 MQTT-3.3.2-3] [v3.1.1 MQTT-3.3.2-3] the topic name sent is the one published, which the filter matches.
					t.Errorf("%s: filter %q, published on %q: got %s", c.name, s.filter, s.topic, Describe(m))
				default:
					psAck(s.r, m)
				}
			}
			left := psLeftovers(t, rs...)
			j := 0
			for i, c := range cases {
				if subs[i].r == nil {
					continue
				}
				if len(left[j]) > 0 {
					t.Errorf("%s: filter %q, topic %q: unexpected %s %s", c.name, subs[i].filter, subs[i].topic, psDescribeAll(left[j]), c.cite)
				}
				j++
			}
		})
	}
}

// TestTopicHashAlone subscribes to "#" alone, which matches every topic not
// beginning with '$' (the whole suite's traffic arrives and is ignored).
func TestTopicHashAlone(t *testing.T) {
	t.Parallel()
	Require(t, features.WildcardSubs, "wildcard subscriptions")
	for _, v := range pubsubVersions {
		t.Run(psV(v), func(t *testing.T) {
			t.Parallel()
			topic := Topic(t)
			r := psSub(t, v, "#", packet.QoS0)
			psPub(t, r, topic, packet.QoS0, false, "m")
			// [v5 MQTT-4.7.1-1] [v3.1.1 MQTT-4.7.1-2] '#' on its own matches any topic.
			psExpectOn(t, r, topic)
		})
	}
}

// TestTopicDollar publishes on a topic beginning with '$': filters that
// begin with a wildcard do not match it, a filter spelling the '$' level
// does.
func TestTopicDollar(t *testing.T) {
	t.Parallel()
	Require(t, features.WildcardSubs, "wildcard subscriptions")
	for _, v := range pubsubVersions {
		t.Run(psV(v), func(t *testing.T) {
			t.Parallel()
			prefix := Topic(t)
			topic := "$" + prefix + "/x" // "$conformance/<run>/<test>/x"
			rest := topic[strings.IndexByte(topic, '/'):]
			exact := psSub(t, v, "$"+prefix+"/#", packet.QoS1)
			var wild []*Raw
			for _, f := range []string{"#", "+/#", "+" + rest} {
				wild = append(wild, psSub(t, v, f, packet.QoS1))
			}
			pub := psConn(t, v, ConnectOpts{})
			pub.Send(&packet.Publish{QoS: packet.QoS1, PacketID: 1, Topic: []byte(topic), Payload: []byte("m")})
			if ack := pub.ExpectNext(packet.PUBACK).(*packet.Ack); ack.ReasonCode.IsError() {
				t.Skipf("broker refuses client publications on %q: %s", topic, Describe(ack))
			}
			// Control: the broker routes the message to a filter naming the '$' level.
			exact.Ack(psExpectOn(t, exact, topic))
			// [v5 MQTT-4.7.2-1] [v3.1.1 MQTT-4.7.2-1] no match for filters starting with '#' or '+': neither
			// this message nor any other on a '$' topic (such as a broker's retained $SYS messages).
			psExpectNoneWhere(t, func(s string) bool { return strings.HasPrefix(s, "$") }, wild...)
		})
	}
}

// TestTopicFilterInvalid subscribes to filters that break the topic filter
// rules: the broker refuses each, by a SUBACK failure code or by closing the
// connection.
func TestTopicFilterInvalid(t *testing.T) {
	t.Parallel()
	const (
		hash = "[v5 MQTT-4.7.1-1] [v3.1.1 MQTT-4.7.1-2]"
		plus = "[v5 MQTT-4.7.1-2] [v3.1.1 MQTT-4.7.1-3]"
	)
	cases := []struct{ name, filter, cite string }{
		{"hash-not-last", "{P}/#/b", hash},
		{"hash-in-level", "{P}/a#", hash},
		{"hash-then-text", "{P}/#a", hash},
		{"hash-twice", "{P}/##", hash},
		{"plus-then-text", "{P}/+a", plus},
		{"text-then-plus", "{P}/a+", plus},
		{"plus-inside-level", "{P}/a+b", plus},
		{"plus-twice", "{P}/++", plus},
		{"plus-hash", "{P}/+#", hash + " " + plus},
		{"empty", "", "[v5 MQTT-4.7.3-1] [v3.1.1 MQTT-4.7.3-1]"},
		{"null-character", "{P}/a\x00b", "[v5 MQTT-4.7.3-2] [v3.1.1 MQTT-4.7.3-2]"},
	}
	for _, v := range pubsubVersions {
		for _, c := range cases {
			t.Run(psV(v)+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				psOnFail(t, c.cite)
				r := psConn(t, v, ConnectOpts{})
				got := psExpectSubRefused(t, r, packet.Subscription{Filter: []byte(psExpand(c.filter, Topic(t))), QoS: packet.QoS1})
				t.Logf("broker %v", got)
			})
		}
	}
}

// TestTopicNameInvalid publishes on topic names that break the rules: the
// broker treats the PUBLISH as a protocol violation, closes the connection
// and delivers nothing.
func TestTopicNameInvalid(t *testing.T) {
	t.Parallel()
	const wild = "[v5 MQTT-3.3.2-2] [v5 MQTT-4.7.0-1] [v3.1.1 MQTT-3.3.2-2] [v3.1.1 MQTT-4.7.1-1]"
	cases := []struct {
		name string
		// topic is the name, or nil for a PUBLISH with no room for one.
		topic *string
		cite  string
	}{
		{"plus-level", psPtr("{P}/+"), wild},
		{"hash-level", psPtr("{P}/#"), wild},
		{"plus-inside-level", psPtr("{P}/a+b"), wild},
		{"hash-inside-level", psPtr("{P}/a#"), wild},
		{"empty", psPtr(""), "[v5 MQTT-4.7.3-1] [v3.1.1 MQTT-4.7.3-1]"},
		{"null-character", psPtr("{P}/a\x00b"), "[v5 MQTT-4.7.3-2] [v3.1.1 MQTT-4.7.3-2]"},
		{"not-utf8", psPtr("{P}/\xff"), "[v5 MQTT-3.3.2-1] [v3.1.1 MQTT-3.3.2-1]"},
		{"missing", nil, "[v5 MQTT-3.3.2-1] [v3.1.1 MQTT-3.3.2-1]"},
	}
	for _, v := range pubsubVersions {
		t.Run(psV(v), func(t *testing.T) {
			t.Parallel()
			prefix := Topic(t)
			watch := psSub(t, v, prefix+"/#", packet.QoS1)
			var props []byte
			if v == packet.V5 {
				props = psNoProps
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					psOnFail(t, c.cite)
					r := psConn(t, v, ConnectOpts{})
					if c.topic == nil {
						r.SendBytes(psFrame(0x30, []byte{0}))
					} else {
						r.SendBytes(psFrame(0x32, psStr(psExpand(*c.topic, prefix)), psU16(1), props, []byte(c.name)))
					}
					psExpectClose(t, r, packet.MalformedPacket, packet.ProtocolError, packet.TopicNameInvalid)
				})
			}
			// None of the refused messages was delivered.
			watch.ExpectNothing()
		})
	}
}

func psPtr(s string) *string { return &s }
