package conformance

// Helpers shared by the PUBLISH/SUBSCRIBE tests (publish, retain, subscribe,
// unsubscribe, topic, shared and delivery tests).

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// pubsubVersions are the protocol versions the PUBLISH/SUBSCRIBE tests run
// in when a behaviour exists in both.
var pubsubVersions = []packet.Version{packet.V311, packet.V5}

// psV names a version in subtest names ("v3.1.1", "v5").
func psV(v packet.Version) string {
	switch v {
	case packet.V5:
		return "v5"
	case packet.V311:
		return "v3.1.1"
	}
	return "v" + v.String()
}

// psConn dials and connects a raw client of version v with o.
func psConn(t testing.TB, v packet.Version, o ConnectOpts) *Raw {
	t.Helper()
	r := DialRaw(t, v)
	r.Connect(o)
	return r
}

// psSub returns a connected raw client of version v subscribed to filter
// at qos.
func psSub(t testing.TB, v packet.Version, filter string, qos packet.QoS) *Raw {
	t.Helper()
	r := psConn(t, v, ConnectOpts{})
	psGrant(t, r, packet.Subscription{Filter: []byte(filter), QoS: qos})
	return r
}

// psGrant subscribes and fails the test unless every filter is granted.
func psGrant(t testing.TB, r *Raw, subs ...packet.Subscription) *packet.Suback {
	t.Helper()
	ack := r.Subscribe(subs...)
	if len(ack.ReasonCodes) != len(subs) {
		t.Fatalf("%s for %d filters", Describe(ack), len(subs))
	}
	for i, rc := range ack.ReasonCodes {
		if rc.IsError() {
			t.Fatalf("subscription to %q refused: %s", subs[i].Filter, Describe(ack))
		}
	}
	return ack
}

// psGranted is the QoS a broker grants for a request of q: the request
// capped by the Maximum QoS it announced.
func psGranted(q packet.QoS) packet.QoS {
	return min(q, features.MaximumQoS)
}

// psPub publishes payload on topic at q as a well-behaved client and
// fails the test if the broker refuses it.
func psPub(t testing.TB, r *Raw, topic string, q packet.QoS, retain bool, payload string) {
	t.Helper()
	if rc := r.Publish(&packet.Publish{QoS: q, Retain: retain, Topic: []byte(topic), Payload: []byte(payload)}); rc.IsError() {
		t.Fatalf("publish to %q at QoS %d refused: %v", topic, q, rc)
	}
	if q == packet.QoS0 {
		// A QoS 0 PUBLISH has no acknowledgement: a PINGREQ answered
		// after it shows that the broker, which handles a connection's
		// packets in order, has handled it (routed it, stored it if
		// retained) before the test goes on. Without it, a subscriber
		// opened next could get the message live rather than retained.
		r.Send(&packet.Pingreq{})
		r.Expect(packet.PINGRESP)
	}
}

// psFrame builds a packet by hand: first is the fixed header's first byte,
// parts the body, whose length becomes the remaining length. For input that
// the codec refuses to encode.
func psFrame(first byte, parts ...[]byte) []byte {
	var body []byte
	for _, p := range parts {
		body = append(body, p...)
	}
	return append(packet.AppendVarint([]byte{first}, uint32(len(body))), body...)
}

// psStr is a length-prefixed string (or binary data) as MQTT encodes it.
func psStr(s string) []byte {
	return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...)
}

// psU16 is a two-byte integer.
func psU16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

// psNoProps is an empty 5.0 property block, for hand-built 5.0 packets.
var psNoProps = []byte{0}

// psExpectClose waits for the broker to close the connection after a
// protocol violation. A 5.0 broker may send a DISCONNECT first: its reason
// code must then be one of codes (any error code when codes is empty).
func psExpectClose(t testing.TB, r *Raw, codes ...packet.ReasonCode) {
	t.Helper()
	for _, p := range r.ExpectClosed(packet.DISCONNECT) {
		d := p.(*packet.Disconnect)
		if r.V != packet.V5 {
			continue
		}
		if !d.ReasonCode.IsError() {
			t.Fatalf("broker closed with %s, want an error reason code", Describe(d))
		}
		if len(codes) > 0 && !psHasCode(codes, d.ReasonCode) {
			t.Fatalf("broker closed with %s, want one of %v", Describe(d), codes)
		}
	}
}

func psHasCode(codes []packet.ReasonCode, c packet.ReasonCode) bool {
	for _, x := range codes {
		if x == c {
			return true
		}
	}
	return false
}

// psRefusal is how a broker refused a subscription: by a SUBACK failure code
// or by closing the connection.
type psRefusal struct {
	closed bool
	code   packet.ReasonCode // SUBACK code when not closed
}

func (f psRefusal) String() string {
	if f.closed {
		return "closed the connection"
	}
	return fmt.Sprintf("SUBACK %v", f.code)
}

// psExpectSubRefused subscribes to one filter the broker must not
// accept. The broker may answer with a SUBACK failure code (0x80 in 3.1.1;
// a 5.0 Subscribe Reason Code of 0x80 or above, one of want when given) or
// treat the packet as malformed and close the connection (a 5.0 DISCONNECT
// sent first must carry an error code). Anything else fails the test.
func psExpectSubRefused(t testing.TB, r *Raw, s packet.Subscription, want ...packet.ReasonCode) psRefusal {
	t.Helper()
	id := r.NextID()
	r.Send(&packet.Subscribe{PacketID: id, Subscriptions: []packet.Subscription{s}})
	ev, ok := r.next(waitFor)
	if !ok {
		t.Fatalf("subscribe %q: neither SUBACK nor close within %v", s.Filter, waitFor)
	}
	switch p := ev.p.(type) {
	case nil:
		if ev.raw != nil {
			t.Fatalf("subscribe %q: %v", s.Filter, ev.err)
		}
		return psRefusal{closed: true}
	case *packet.Disconnect:
		if r.V == packet.V5 && !p.ReasonCode.IsError() {
			t.Fatalf("subscribe %q: broker sent %s, want an error reason code", s.Filter, Describe(p))
		}
		r.ExpectClosed()
		return psRefusal{closed: true}
	case *packet.Suback:
		if p.PacketID != id || len(p.ReasonCodes) != 1 {
			t.Fatalf("subscribe %q (id %d): %s", s.Filter, id, Describe(p))
		}
		rc := p.ReasonCodes[0]
		switch {
		case r.V != packet.V5 && rc != packet.SubackFailure:
			t.Fatalf("subscribe %q was accepted: %s, want failure 0x80 or a closed connection", s.Filter, Describe(p))
		case r.V == packet.V5 && !rc.IsError():
			t.Fatalf("subscribe %q was accepted: %s, want a failure code or a closed connection", s.Filter, Describe(p))
		case r.V == packet.V5 && len(want) > 0 && !psHasCode(want, rc):
			t.Fatalf("subscribe %q refused with %s, want one of %v", s.Filter, Describe(p), want)
		}
		return psRefusal{code: rc}
	default:
		t.Fatalf("subscribe %q: broker sent %s, want SUBACK or a closed connection", s.Filter, Describe(p))
	}
	return psRefusal{}
}

// psAck acknowledges p, if it needs it, without waiting for the rest of a
// QoS 2 flow: the PUBREL that follows is answered by drainAcks callers.
func psAck(r *Raw, p *packet.Publish) {
	switch p.QoS {
	case packet.QoS1:
		r.Send(&packet.Ack{PacketType: packet.PUBACK, PacketID: p.PacketID})
	case packet.QoS2:
		r.Send(&packet.Ack{PacketType: packet.PUBREC, PacketID: p.PacketID})
	}
}

// psGather reads until the connection has been quiet for quietPeriod and
// returns the PUBLISH packets received, acknowledging each as a
// well-behaved client (PUBREL packets are answered with PUBCOMP). Other
// packets fail the test.
func psGather(t testing.TB, r *Raw) []*packet.Publish {
	t.Helper()
	var got []*packet.Publish
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		ev, ok := r.next(quietPeriod)
		if !ok {
			return got
		}
		switch p := ev.p.(type) {
		case nil:
			t.Fatalf("gathering messages: %v", describeEnd(ev.err))
		case *packet.Publish:
			got = append(got, p)
			psAck(r, p)
		case *packet.Ack:
			if p.PacketType != packet.PUBREL {
				t.Fatalf("gathering messages: unexpected %s", Describe(p))
			}
			r.Send(&packet.Ack{PacketType: packet.PUBCOMP, PacketID: p.PacketID})
		default:
			t.Fatalf("gathering messages: unexpected %s", Describe(p))
		}
	}
	return got
}

// psExpectOn returns the first PUBLISH on topic. PUBLISH packets on other
// topics (a filter such as "#" sees the whole suite's traffic) are
// acknowledged and dropped, and so are the PUBRELs of their QoS 2 flows.
func psExpectOn(t testing.TB, r *Raw, topic string) *packet.Publish {
	t.Helper()
	p, ok := psNextWhere(t, r, func(s string) bool { return s == topic }, waitFor)
	if !ok {
		t.Fatalf("no PUBLISH on %q within %v", topic, waitFor)
	}
	return p
}

// psExpectNoneWhere fails the test if a PUBLISH whose topic satisfies match
// arrives at any of rs within one shared quietPeriod; other traffic is
// acknowledged and ignored.
func psExpectNoneWhere(t testing.TB, match func(topic string) bool, rs ...*Raw) {
	t.Helper()
	deadline := time.Now().Add(quietPeriod)
	for i, r := range rs {
		if p, ok := psNextWhere(t, r, match, max(time.Until(deadline), time.Millisecond)); ok {
			t.Fatalf("client %d: unexpected %s", i, Describe(p))
		}
	}
}

// psNextWhere returns the first PUBLISH within the given time whose topic
// satisfies match, acknowledging and dropping the others.
func psNextWhere(t testing.TB, r *Raw, match func(topic string) bool, within time.Duration) (*packet.Publish, bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, false
		}
		ev, ok := r.next(left)
		if !ok {
			return nil, false
		}
		switch p := ev.p.(type) {
		case nil:
			t.Fatalf("waiting for a PUBLISH: %v", describeEnd(ev.err))
		case *packet.Publish:
			if match(string(p.Topic)) {
				return p, true
			}
			psAck(r, p)
		case *packet.Ack:
			if p.PacketType == packet.PUBREL {
				r.Send(&packet.Ack{PacketType: packet.PUBCOMP, PacketID: p.PacketID})
			}
		}
	}
}

// psPayloads lists the payloads of ps, for diffs.
func psPayloads(ps []*packet.Publish) []string {
	var s []string
	for _, p := range ps {
		s = append(s, string(p.Payload))
	}
	return s
}

// psDescribeAll renders packets for failure messages.
func psDescribeAll(ps []*packet.Publish) string {
	var s []string
	for _, p := range ps {
		s = append(s, Describe(p))
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// psOnFail names the statements a table row checks in the log of a failing
// row, so that the failure says which rule the broker broke.
func psOnFail(t testing.TB, cite string) {
	if cite == "" {
		return
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("statement checked: %s", cite)
		}
	})
}

// psCollect reads the next n PUBLISH packets from r, acknowledging each as
// a well-behaved client (and answering PUBRELs with PUBCOMP). Use it where
// the number of messages is known, with psLeftovers at the end, so that a
// test waits for "nothing more" once instead of once per client.
func psCollect(t testing.TB, r *Raw, n int) []*packet.Publish {
	t.Helper()
	var got []*packet.Publish
	for len(got) < n {
		p := r.Next()
		switch p := p.(type) {
		case *packet.Publish:
			got = append(got, p)
			psAck(r, p)
		case *packet.Ack:
			if p.PacketType != packet.PUBREL {
				t.Fatalf("waiting for %d messages (got %s): unexpected %s", n, psDescribeAll(got), Describe(p))
			}
			r.Send(&packet.Ack{PacketType: packet.PUBCOMP, PacketID: p.PacketID})
		default:
			t.Fatalf("waiting for %d messages (got %s): unexpected %s", n, psDescribeAll(got), Describe(p))
		}
	}
	return got
}

// psLeftovers listens to every client for one shared quietPeriod and
// returns, per client, the PUBLISH packets that arrived (acknowledged);
// PUBRELs are answered, any other packet or a closed connection fails the
// test.
func psLeftovers(t testing.TB, rs ...*Raw) [][]*packet.Publish {
	t.Helper()
	deadline := time.Now().Add(quietPeriod)
	out := make([][]*packet.Publish, len(rs))
	for i, r := range rs {
		for {
			ev, ok := r.next(max(time.Until(deadline), time.Millisecond))
			if !ok {
				break
			}
			switch p := ev.p.(type) {
			case nil:
				t.Fatalf("client %d: %v", i, describeEnd(ev.err))
			case *packet.Publish:
				out[i] = append(out[i], p)
				psAck(r, p)
			case *packet.Ack:
				if p.PacketType != packet.PUBREL {
					t.Fatalf("client %d: unexpected %s", i, Describe(p))
				}
				r.Send(&packet.Ack{PacketType: packet.PUBCOMP, PacketID: p.PacketID})
			default:
				t.Fatalf("client %d: unexpected %s", i, Describe(p))
			}
		}
	}
	return out
}

// psQuiet is ExpectNothing for several clients at once: it fails the test
// if any of rs receives a packet, or loses its connection, within one
// shared quietPeriod.
func psQuiet(t testing.TB, rs ...*Raw) {
	t.Helper()
	deadline := time.Now().Add(quietPeriod)
	for i, r := range rs {
		ev, ok := r.next(max(time.Until(deadline), time.Millisecond))
		if !ok {
			continue
		}
		if ev.p != nil {
			t.Fatalf("client %d: unexpected %s", i, Describe(ev.p))
		}
		t.Fatalf("client %d: connection ended unexpectedly: %v", i, describeEnd(ev.err))
	}
}
