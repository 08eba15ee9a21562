package sim

import "github.com/skybridge-mq/skybridge/impl/packet"

// NewBrokerProc returns a broker process on host h of network n, for
// harnesses outside this package (sim/edgesim) that bring their own
// clients and checks: no oracle watches it and no bug is planted. Start
// starts it; Crash and Restart work as in a scenario; Close releases its
// store at the end of a run.
func NewBrokerProc(s *Sim, n *Network, h *Host, spec BrokerSpec) *BrokerProc {
	w := &World{Sim: s, Net: n, BrokerHost: h}
	w.Broker = newBrokerProc(w, h, spec)
	return w.Broker
}

// Close releases the durable broker's store (Pebble's memory and
// goroutines); nothing of the process runs afterwards.
func (p *BrokerProc) Close() { p.closeStore() }

// NextFrame looks at the MQTT packet at the front of b, for clients
// outside this package: its fixed header, the header's size and the
// packet's total size; whole reports that b holds all of it, bad that the
// header is one a reader refuses. maxSize is the largest packet allowed
// (0: the protocol's).
func NextFrame(b []byte, maxSize int) (h packet.FixedHeader, hdr, total int, whole, bad bool) {
	h, hdr, total, st := nextFrame(b, maxSize)
	return h, hdr, total, st == frameWhole, st == frameBad
}
