package conformance

// Retained messages: storing, replacing and deleting them, the RETAIN flag
// on what the broker sends, and the 5.0 Retain Handling and Retain As
// Published subscription options.

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// TestRetainedStoredAndReplaced publishes two retained messages on one topic
// and checks that a later subscriber receives only the second one, flagged
// RETAIN, at the QoS it was published with.
func TestRetainedStoredAndReplaced(t *testing.T) {
	t.Parallel()
	Require(t, features.RetainAvailable, "retained messages")
	for _, v := range pubsubVersions {
		for _, q := range []packet.QoS{packet.QoS0, packet.QoS1, packet.QoS2} {
			t.Run(fmt.Sprintf("%s/qos%d", psV(v), q), func(t *testing.T) {
				t.Parallel()
				q := min(q, features.MaximumQoS)
				topic := Topic(t)
				CleanRetained(t, topic)
				pub := psConn(t, v, ConnectOpts{})
				psPub(t, pub, topic, packet.QoS1, true, "first")
				psPub(t, pub, topic, q, true, "second")

				sub := psConn(t, v, ConnectOpts{})
				psGrant(t, sub, packet.Subscription{Filter: []byte(topic), QoS: packet.QoS2})
				got := psGather(t, sub)
				if len(got) == 0 && q == packet.QoS0 && v != packet.V5 {
					// 3.1.1 lets the broker drop a retained QoS 0 message at any
					// time; the first message must be gone all the same.
					return
				}
				// [v5 MQTT-3.3.1-5] [v3.1.1 MQTT-3.3.1-5] the second message replaced the first and is kept with
				// its QoS; [v3.1.1 MQTT-3.3.1-7] a retained QoS 0 message too discards the previous one;
				// [v5 MQTT-3.3.1-9] [v3.1.1 MQTT-3.3.1-6] a new subscription receives it.
				if diff := cmp.Diff([]string{"second"}, psPayloads(got)); diff != "" {
					t.Fatalf("retained messages after subscribing (-want +got):\n%s%s", diff, psDescribeAll(got))
				}
				m := got[0]
				// [v3.1.1 MQTT-3.3.1-8] RETAIN 1 on a message sent because of a new subscription.
				if !m.Retain || m.QoS != q {
					t.Fatalf("got %s, want retain=true qos=%d", Describe(m), q)
				}
			})
		}
	}
}

// TestRetainedWildcard checks that a new wildcard subscription receives the
// retained message of every topic it matches, and only those.
func TestRetainedWildcard(t *testing.T) {
	t.Parallel()
	Require(t, features.RetainAvailable, "retained messages")
	Require(t, features.WildcardSubs, "wildcard subscriptions")
	for _, v := range pubsubVersions {
		t.Run(psV(v), func(t *testing.T) {
			t.Parallel()
			base := Topic(t)
			topics := []string{base + "/a", base + "/b/c", base + "/b/d", base + "-other"}
			CleanRetained(t, topics...)
			pub := psConn(t, v, ConnectOpts{})
			for _, topic := range topics {
				psPub(t, pub, topic, packet.QoS1, true, topic)
			}
			sub := psConn(t, v, ConnectOpts{})
			psGrant(t, sub, packet.Subscription{Filter: []byte(base + "/#"), QoS: packet.QoS1})
			got := map[string]bool{}
			for _, m := range psGather(t, sub) {
				got[string(m.Topic)] = m.Retain
			}
			// [v3.1.1 MQTT-3.3.1-6] [v5 MQTT-3.3.1-9] one retained message per matching topic, flagged
			// [v3.1.1 MQTT-3.3.1-8] RETAIN.
			want := map[string]bool{topics[0]: true, topics[1]: true, topics[2]: true}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("retained messages for %s/# by topic, value RETAIN flag (-want +got):\n%s", base, diff)
			}
		})
	}
}

// TestRetainedDelete publishes a retained message with an empty payload:
// current subscribers receive it as a normal message, the topic's retained
// message is removed, and the empty message is not itself retained.
func TestRetainedDelete(t *testing.T) {
	t.Parallel()
	Require(t, features.RetainAvailable, "retained messages")
	for _, v := range pubsubVersions {
		for _, existing := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/existing-%v", psV(v), existing), func(t *testing.T) {
				t.Parallel()
				topic := Topic(t)
				CleanRetained(t, topic)
				live := psConn(t, v, ConnectOpts{})
				psGrant(t, live, packet.Subscription{Filter: []byte(topic), QoS: packet.QoS1})
				pub := psConn(t, v, ConnectOpts{})
				if existing {
					psPub(t, pub, topic, packet.QoS1, true, "retained")
					live.Ack(live.ExpectPublish())
				}
				psPub(t, pub, topic, packet.QoS1, true, "")

				// [v5 MQTT-3.3.1-6] [v3.1.1 MQTT-3.3.1-10] the empty message is processed normally:
				// the existing subscriber gets it.
				m := live.ExpectPublish()
				if len(m.Payload) != 0 || string(m.Topic) != topic {
					t.Fatalf("existing subscriber got %s, want the empty message", Describe(m))
				}
				live.Ack(m)

				late := psConn(t, v, ConnectOpts{})
				psGrant(t, late, packet.Subscription{Filter: []byte(topic), QoS: packet.QoS1})
				// [v5 MQTT-3.3.1-6] [v3.1.1 MQTT-3.3.1-10] the retained message is gone, and
				// [v5 MQTT-3.3.1-7] [v3.1.1 MQTT-3.3.1-11] the empty message was not stored in its place.
				if got := psGather(t, late); len(got) != 0 {
					t.Fatalf("new subscriber received %s after the retained message was deleted", psDescribeAll(got))
				}
			})
		}
	}
}

// TestRetainZeroLeavesRetained publishes with RETAIN 0 on a topic: the
// message is not stored, and an existing retained message stays as it was.
func TestRetainZeroLeavesRetained(t *testing.T) {
	t.Parallel()
	Require(t, features.RetainAvailable, "retained messages")
	for _, v := range pubsubVersions {
		for _, existing := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/existing-%v", psV(v), existing), func(t *testing.T) {
				t.Parallel()
				topic := Topic(t)
				CleanRetained(t, topic)
				pub := psConn(t, v, ConnectOpts{})
				var want []string
				if existing {
					psPub(t, pub, topic, packet.QoS1, true, "retained")
					want = []string{"retained"}
				}
				psPub(t, pub, topic, packet.QoS1, false, "not retained")
				psPub(t, pub, topic, packet.QoS0, false, "")
				// A QoS 0 PUBLISH has no acknowledgement: a QoS 1 one on the
				// same connection, acknowledged, proves the broker has handled
				// it before the subscriber below arrives on another connection.
				psPub(t, pub, topic+"/fence", packet.QoS1, false, "fence")

				sub := psConn(t, v, ConnectOpts{})
				psGrant(t, sub, packet.Subscription{Filter: []byte(topic), QoS: packet.QoS1})
				got := psGather(t, sub)
				// [v5 MQTT-3.3.1-8] [v3.1.1 MQTT-3.3.1-12] RETAIN 0 neither stores, replaces nor removes.
				if diff := cmp.Diff(want, psPayloads(got)); diff != "" {
					t.Fatalf("retained messages after RETAIN 0 publications (-want +got):\n%s%s", diff, psDescribeAll(got))
				}
			})
		}
	}
}

// TestRetainedAtGrantedQoS publishes retained messages at QoS 0, 1 and 2
// and subscribes to them at each QoS: a retained message sent because of a
// new subscription goes, like any other, at the lower of the QoS it was
// published with and the QoS granted (the retained store keeps the
// published QoS; it must not leak through).
func TestRetainedAtGrantedQoS(t *testing.T) {
	t.Parallel()
	Require(t, features.RetainAvailable, "retained messages")
	all := []packet.QoS{packet.QoS0, packet.QoS1, packet.QoS2}
	for _, v := range pubsubVersions {
		for _, ask := range all {
			t.Run(fmt.Sprintf("%s/sub-qos%d", psV(v), ask), func(t *testing.T) {
				t.Parallel()
				base := Topic(t)
				topics := map[string]packet.QoS{} // topic → published QoS
				for _, q := range all {
					topics[fmt.Sprintf("%s/q%d", base, q)] = psGranted(q)
				}
				CleanRetained(t, slices.Sorted(maps.Keys(topics))...)
				pub := psConn(t, v, ConnectOpts{})
				for topic, q := range topics {
					psPub(t, pub, topic, q, true, topic)
				}
				sub := psConn(t, v, ConnectOpts{})
				ack := psGrant(t, sub, packet.Subscription{Filter: []byte(base + "/+"), QoS: ask})
				granted := packet.QoS(ack.ReasonCodes[0])
				seen := map[string]int{}
				for _, m := range psGather(t, sub) {
					pq, ok := topics[string(m.Topic)]
					if !ok || string(m.Payload) != string(m.Topic) || !m.Retain {
						t.Fatalf("subscribing to %s/+ brought %s, want the retained messages of its topics", base, Describe(m))
					}
					seen[string(m.Topic)]++
					want := min(pq, granted)
					// [v5 MQTT-3.8.4-8] [v3.1.1 MQTT-3.8.4-6] at min(published QoS, granted QoS);
					// 3.1.1 allows extra copies only when QoS 1 is downgraded to 0.
					extra := seen[string(m.Topic)] > 1
					if m.QoS != want || extra && (v == packet.V5 || pq != packet.QoS1 || want != packet.QoS0) {
						t.Fatalf("retained message published at QoS %d, subscription granted QoS %d: got %s (copy %d), want one at QoS %d",
							pq, granted, Describe(m), seen[string(m.Topic)], want)
					}
				}
				for topic, q := range topics {
					if seen[topic] == 0 && (v == packet.V5 || q > packet.QoS0) {
						// 3.1.1 lets the broker drop a retained QoS 0 message at any time.
						t.Fatalf("no retained message on %s (published at QoS %d) for a subscription granted QoS %d", topic, q, granted)
					}
				}
			})
		}
	}
}

// TestRetainFlagOnLiveMessages checks the RETAIN flag on messages forwarded
// to an existing subscription: 0 in 3.1.1, and in 5.0 0 unless the
// subscription asked for Retain As Published.
func TestRetainFlagOnLiveMessages(t *testing.T) {
	t.Parallel()
	Require(t, features.RetainAvailable, "retained messages")
	cases := []struct {
		v   packet.Version
		rap bool
	}{
		{packet.V311, false},
		{packet.V5, false},
		{packet.V5, true},
	}
	for _, c := range cases {
		for _, retain := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/rap-%v/retain-%v", psV(c.v), c.rap, retain), func(t *testing.T) {
				t.Parallel()
				topic := Topic(t)
				CleanRetained(t, topic)
				sub := psConn(t, c.v, ConnectOpts{})
				psGrant(t, sub, packet.Subscription{Filter: []byte(topic), QoS: packet.QoS1, RetainAsPublished: c.rap})
				pub := psConn(t, c.v, ConnectOpts{})
				psPub(t, pub, topic, packet.QoS1, retain, "live")
				m := sub.ExpectPublish()
				sub.Ack(m)
				want := c.rap && retain
				if m.Retain != want {
					if c.rap {
						// [v5 MQTT-3.3.1-13] Retain As Published keeps the publisher's flag.
						t.Fatalf("Retain As Published subscription got %s, want retain=%v", Describe(m), want)
					}
					// [v5 MQTT-3.3.1-12] [v3.1.1 MQTT-3.3.1-9] RETAIN 0 on a message to an existing subscription.
					t.Fatalf("existing subscription got %s, want retain=false", Describe(m))
				}
			})
		}
	}
}

// TestRetainHandling checks the 5.0 Retain Handling option when a
// subscription is made and when it is made again.
func TestRetainHandling(t *testing.T) {
	t.Parallel()
	Require(t, features.RetainAvailable, "retained messages")
	cases := []struct {
		rh           byte
		first, again int // retained messages expected on each SUBSCRIBE
	}{
		// [v5 MQTT-3.3.1-9] 0: every time the subscription is made.
		{rh: 0, first: 1, again: 1},
		// [v5 MQTT-3.3.1-10] 1: only when the subscription did not exist yet.
		{rh: 1, first: 1, again: 0},
		// [v5 MQTT-3.3.1-11] 2: never.
		{rh: 2, first: 0, again: 0},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("rh-%d", c.rh), func(t *testing.T) {
			t.Parallel()
			topic := Topic(t)
			CleanRetained(t, topic)
			pub := psConn(t, packet.V5, ConnectOpts{})
			psPub(t, pub, topic, packet.QoS1, true, "retained")

			sub := psConn(t, packet.V5, ConnectOpts{})
			s := packet.Subscription{Filter: []byte(topic), QoS: packet.QoS1, RetainHandling: c.rh}
			for i, want := range []int{c.first, c.again} {
				psGrant(t, sub, s)
				got := psGather(t, sub)
				if len(got) != want {
					t.Fatalf("Retain Handling %d, subscription %d: got %s, want %d retained message(s)", c.rh, i+1, psDescribeAll(got), want)
				}
				if want == 1 && (!got[0].Retain || string(got[0].Payload) != "retained") {
					t.Fatalf("Retain Handling %d: got %s, want the retained message with RETAIN 1", c.rh, Describe(got[0]))
				}
			}
			// The option is about retained messages only: live ones flow.
			psPub(t, pub, topic, packet.QoS1, false, "live")
			if m := sub.ExpectPublish(); string(m.Payload) != "live" {
				t.Fatalf("got %s, want the live message", Describe(m))
			}
		})
	}
}
