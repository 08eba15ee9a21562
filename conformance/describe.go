package conformance

import (
	"fmt"
	"strings"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// Describe renders a packet on one line for test failure messages.
func Describe(p packet.Packet) string {
	var b strings.Builder
	b.WriteString(p.Type().String())
	switch p := p.(type) {
	case *packet.Connack:
		fmt.Fprintf(&b, " session-present=%v reason=%v", p.SessionPresent, p.ReasonCode)
		props(&b, &p.Properties)
	case *packet.Publish:
		fmt.Fprintf(&b, " topic=%q qos=%d retain=%v dup=%v id=%d payload=%q", p.Topic, p.QoS, p.Retain, p.Dup, p.PacketID, clip(p.Payload))
		props(&b, &p.Properties)
	case *packet.Ack:
		fmt.Fprintf(&b, " id=%d reason=%v", p.PacketID, p.ReasonCode)
		props(&b, &p.Properties)
	case *packet.Suback:
		fmt.Fprintf(&b, " id=%d codes=%v", p.PacketID, p.ReasonCodes)
	case *packet.Unsuback:
		fmt.Fprintf(&b, " id=%d codes=%v", p.PacketID, p.ReasonCodes)
	case *packet.Disconnect:
		fmt.Fprintf(&b, " reason=%v", p.ReasonCode)
		props(&b, &p.Properties)
	case *packet.Auth:
		fmt.Fprintf(&b, " reason=%v", p.ReasonCode)
		props(&b, &p.Properties)
	}
	return b.String()
}

func clip(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

func props(b *strings.Builder, p *packet.Properties) {
	if p.Empty() {
		return
	}
	b.WriteString(" props{")
	for id := packet.PropertyID(1); id <= packet.PropSharedSubAvailable; id++ {
		if id != packet.PropUser && id != packet.PropSubscriptionID && p.Has(id) {
			fmt.Fprintf(b, "%s ", id)
		}
	}
	if len(p.SubscriptionIDs) > 0 {
		fmt.Fprintf(b, "sub-ids=%v ", p.SubscriptionIDs)
	}
	if len(p.ReasonString) > 0 {
		fmt.Fprintf(b, "reason-string=%q ", p.ReasonString)
	}
	for _, u := range p.User {
		fmt.Fprintf(b, "user[%s=%s] ", u.Key, u.Value)
	}
	b.WriteString("}")
}
