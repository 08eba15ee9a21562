package sim

import (
	"strings"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/retain"
)

// Bug is a set of planted bugs, for proving that the invariants catch
// them. Most are planted in a local wrapper (the retained store handed to
// broker.New, or the simulated runtime between the broker's Output and the
// network); ack-before-durable is the broker's own hook
// (broker.Config.Hooks).
type Bug uint32

// Planted bugs.
const (
	// BugDropRedelivery drops the first QoS 1 redelivery (DUP) after a
	// reconnect and acknowledges it to the broker itself, as a broker that
	// forgot an inflight message on resume would.
	BugDropRedelivery Bug = 1 << iota
	// BugCrossTenant copies now and then a PUBLISH to a connection of
	// another tenant.
	BugCrossTenant
	// BugSkipRetainedDelete ignores a retained PUBLISH with an empty
	// payload instead of deleting the topic's retained message.
	BugSkipRetainedDelete
	// BugReorderQueued swaps two QoS 1/2 PUBLISHes of one topic that leave
	// in the same output batch.
	BugReorderQueued
	// BugAckBeforeDurable makes the broker acknowledge a PUBLISH before the
	// store has committed what it produced (broker.Hooks.AckBeforeDurable):
	// a power loss then loses messages the publisher was told are safe.
	BugAckBeforeDurable
)

// BugNames maps each planted bug to its name.
var BugNames = []struct {
	Bug  Bug
	Name string
}{
	{BugDropRedelivery, "drop-redelivery"},
	{BugCrossTenant, "cross-tenant"},
	{BugSkipRetainedDelete, "skip-retained-delete"},
	{BugReorderQueued, "reorder-queued"},
	{BugAckBeforeDurable, "ack-before-durable"},
}

// ParseBugs parses a comma-separated list of bug names.
func ParseBugs(s string) (Bug, bool) {
	var b Bug
	for _, name := range strings.Split(s, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		found := false
		for _, bn := range BugNames {
			if bn.Name == name {
				b |= bn.Bug
				found = true
			}
		}
		if !found {
			return 0, false
		}
	}
	return b, true
}

func (b Bug) String() string {
	var names []string
	for _, bn := range BugNames {
		if b&bn.Bug != 0 {
			names = append(names, bn.Name)
		}
	}
	return strings.Join(names, ",")
}

// skipDeleteStore is a retained store that forgets to delete.
type skipDeleteStore struct{ retain.Store }

func (s skipDeleteStore) Set(tenant string, m *message.Message) int {
	if len(m.Payload) == 0 {
		return 0
	}
	return s.Store.Set(tenant, m)
}

type rewriteState struct {
	firstDone bool
	tenant    string
	version   packet.Version
}

type outPacket struct {
	h          packet.FixedHeader
	start, end int
	body       []byte
}

func splitPackets(out []byte) []outPacket {
	var ps []outPacket
	off := 0
	for off < len(out) {
		h, hdr, total, st := nextFrame(out[off:], 0)
		if st != frameWhole {
			break
		}
		ps = append(ps, outPacket{h: h, start: off, end: off + total, body: out[off+hdr : off+total]})
		off += total
	}
	return ps
}

// rewriteOutput applies the planted runtime bugs to one output batch.
func (sc *srvConn) rewriteOutput(out []byte) []byte {
	w := sc.p.w
	bugs := w.bugs
	first := !sc.rewrite.firstDone && sc.connected
	if sc.connected {
		sc.rewrite.firstDone = true
	}
	ps := splitPackets(out)
	var drop = -1
	if bugs&BugDropRedelivery != 0 && first {
		for i, p := range ps {
			if p.h.Type == packet.PUBLISH && p.h.Flags&0x08 != 0 && (p.h.Flags>>1)&3 == 1 {
				drop = i
				break
			}
		}
	}
	if bugs&BugReorderQueued != 0 {
		for i := 0; i+1 < len(ps); i++ {
			a, b := ps[i], ps[i+1]
			if a.h.Type != packet.PUBLISH || b.h.Type != packet.PUBLISH || (a.h.Flags>>1)&3 == 0 || (b.h.Flags>>1)&3 == 0 {
				continue
			}
			if publishTopic(a.body) != publishTopic(b.body) {
				continue
			}
			ps[i], ps[i+1] = b, a
			break
		}
	}
	res := make([]byte, 0, len(out))
	for i, p := range ps {
		if i == drop {
			continue
		}
		res = append(res, out[p.start:p.end]...)
	}
	if drop >= 0 {
		pid := publishPID(ps[drop].body)
		ack := []byte{byte(pid >> 8), byte(pid)}
		sc.received(packet.FixedHeader{Type: packet.PUBACK, Remaining: 2}, ack)
		sc.c.Handle(packet.FixedHeader{Type: packet.PUBACK, Remaining: 2}, ack)
	}
	if bugs&BugCrossTenant != 0 {
		for _, p := range ps {
			if p.h.Type == packet.PUBLISH && w.Sim.Chance(0.02) {
				sc.leak(p)
			}
		}
	}
	return res
}

func publishTopic(body []byte) string {
	if len(body) < 2 {
		return ""
	}
	n := int(body[0])<<8 | int(body[1])
	if 2+n > len(body) {
		return ""
	}
	return string(body[2 : 2+n])
}

func publishPID(body []byte) uint16 {
	n := int(body[0])<<8 | int(body[1])
	return uint16(body[2+n])<<8 | uint16(body[3+n])
}

// leak writes a QoS 0 copy of a PUBLISH to a connection of another tenant.
func (sc *srvConn) leak(p outPacket) {
	var pub packet.Publish
	if pub.Decode(p.h, p.body, sc.rewrite.version) != nil {
		return
	}
	var targets []*srvConn
	for _, x := range sc.p.conns {
		if x.connected && !x.finished && x.rewrite.tenant != sc.rewrite.tenant {
			targets = append(targets, x)
		}
	}
	if len(targets) == 0 {
		return
	}
	t := targets[sc.p.w.Sim.Rand.IntN(len(targets))]
	cp := packet.Publish{Topic: pub.Topic, Payload: pub.Payload}
	b, err := cp.Append(nil, t.rewrite.version)
	if err == nil {
		t.ep.Write(b)
	}
}
