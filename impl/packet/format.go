package packet

import (
	"fmt"
	"strconv"
	"strings"
)

// Format renders a packet on one line, deterministically, for logs, test
// transcripts and failure messages. Strings are quoted; long payloads are
// clipped; only properties that are present are shown.
func Format(p Packet) string {
	var b strings.Builder
	b.WriteString(p.Type().String())
	switch p := p.(type) {
	case *Connect:
		fmt.Fprintf(&b, " v=%s id=%q", p.Version, p.ClientID)
		if p.CleanStart {
			b.WriteString(" clean")
		}
		fmt.Fprintf(&b, " keepalive=%d", p.KeepAlive)
		if p.WillFlag {
			fmt.Fprintf(&b, " will-topic=%q will-qos=%d", p.WillTopic, p.WillQoS)
			if p.WillRetain {
				b.WriteString(" will-retain")
			}
			formatProps(&b, &p.WillProperties)
		}
		if p.UsernameFlag {
			fmt.Fprintf(&b, " user=%q", p.Username)
		}
		if p.PasswordFlag {
			b.WriteString(" password")
		}
		formatProps(&b, &p.Properties)
	case *Connack:
		if p.SessionPresent {
			b.WriteString(" present")
		}
		fmt.Fprintf(&b, " code=%s", hexCode(p.ReasonCode))
		formatProps(&b, &p.Properties)
	case *Publish:
		fmt.Fprintf(&b, " topic=%q qos=%d", p.Topic, p.QoS)
		if p.QoS > 0 {
			fmt.Fprintf(&b, " id=%d", p.PacketID)
		}
		if p.Retain {
			b.WriteString(" retain")
		}
		if p.Dup {
			b.WriteString(" dup")
		}
		pl := p.Payload
		if len(pl) > 48 {
			fmt.Fprintf(&b, " payload=%q...(%d bytes)", pl[:48], len(pl))
		} else {
			fmt.Fprintf(&b, " payload=%q", pl)
		}
		formatProps(&b, &p.Properties)
	case *Ack:
		fmt.Fprintf(&b, " id=%d", p.PacketID)
		if p.ReasonCode != Success {
			fmt.Fprintf(&b, " code=%s", hexCode(p.ReasonCode))
		}
		formatProps(&b, &p.Properties)
	case *Subscribe:
		fmt.Fprintf(&b, " id=%d", p.PacketID)
		for _, s := range p.Subscriptions {
			fmt.Fprintf(&b, " %q:qos=%d", s.Filter, s.QoS)
			if s.NoLocal {
				b.WriteString(",nl")
			}
			if s.RetainAsPublished {
				b.WriteString(",rap")
			}
			if s.RetainHandling != 0 {
				fmt.Fprintf(&b, ",rh=%d", s.RetainHandling)
			}
		}
		formatProps(&b, &p.Properties)
	case *Suback:
		fmt.Fprintf(&b, " id=%d codes=%s", p.PacketID, hexCodes(p.ReasonCodes))
		formatProps(&b, &p.Properties)
	case *Unsubscribe:
		fmt.Fprintf(&b, " id=%d", p.PacketID)
		for _, f := range p.Filters {
			fmt.Fprintf(&b, " %q", f)
		}
		formatProps(&b, &p.Properties)
	case *Unsuback:
		fmt.Fprintf(&b, " id=%d", p.PacketID)
		if len(p.ReasonCodes) > 0 {
			fmt.Fprintf(&b, " codes=%s", hexCodes(p.ReasonCodes))
		}
		formatProps(&b, &p.Properties)
	case *Disconnect:
		if p.ReasonCode != Success {
			fmt.Fprintf(&b, " code=%s", hexCode(p.ReasonCode))
		}
		formatProps(&b, &p.Properties)
	case *Auth:
		if p.ReasonCode != Success {
			fmt.Fprintf(&b, " code=%s", hexCode(p.ReasonCode))
		}
		formatProps(&b, &p.Properties)
	}
	return b.String()
}

func hexCode(r ReasonCode) string { return "0x" + strconv.FormatUint(uint64(r)|0x100, 16)[1:] }

func hexCodes(rs []ReasonCode) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = hexCode(r)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// propNames are the short names Format uses.
var propNames = map[PropertyID]string{
	PropPayloadFormat: "format", PropMessageExpiry: "expiry", PropContentType: "content-type",
	PropResponseTopic: "response-topic", PropCorrelationData: "correlation", PropSessionExpiry: "session-expiry",
	PropAssignedClientID: "assigned-id", PropServerKeepAlive: "server-keepalive", PropAuthMethod: "auth-method",
	PropAuthData: "auth-data", PropRequestProblemInfo: "problem-info", PropWillDelay: "will-delay",
	PropRequestResponseInfo: "response-info-req", PropResponseInfo: "response-info", PropServerReference: "server-ref",
	PropReasonString: "reason", PropReceiveMaximum: "receive-max", PropTopicAliasMaximum: "alias-max",
	PropTopicAlias: "alias", PropMaximumQoS: "max-qos", PropRetainAvailable: "retain-available",
	PropMaximumPacketSize: "max-packet", PropWildcardSubAvailable: "wildcard-available",
	PropSubIDAvailable: "subid-available", PropSharedSubAvailable: "shared-available",
}

func formatProps(b *strings.Builder, p *Properties) {
	for id := PropertyID(1); id <= maxPropertyID; id++ {
		if id == PropUser || id == PropSubscriptionID || !p.Has(id) {
			continue
		}
		f := p.field(id)
		var v string
		switch {
		case f.u8 != nil:
			v = strconv.Itoa(int(*f.u8))
		case f.u16 != nil:
			v = strconv.Itoa(int(*f.u16))
		case f.u32 != nil:
			v = strconv.FormatUint(uint64(*f.u32), 10)
		case f.bytes != nil:
			v = strconv.Quote(string(*f.bytes))
		}
		fmt.Fprintf(b, " %s=%s", propNames[id], v)
	}
	if len(p.SubscriptionIDs) > 0 {
		fmt.Fprintf(b, " sub-ids=%v", p.SubscriptionIDs)
	}
	for _, u := range p.User {
		fmt.Fprintf(b, " user[%q=%q]", u.Key, u.Value)
	}
}
