package conformance

import "github.com/skybridge-mq/skybridge/impl/packet"

// Describe renders a packet on one line for test failure messages.
func Describe(p packet.Packet) string { return packet.Format(p) }
