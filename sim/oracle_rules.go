package sim

import (
	"fmt"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// What the tenants' settings and rules require (tenants.go), and the QoS a
// delivery may have:
//
//   - granted-qos: a delivery, live or retained, goes at most at the QoS
//     granted to a subscription of the session that matches it (the
//     highest of them, over the window in which the broker may have routed
//     it or made the subscription that brought it) [v5 MQTT-3.8.4-8]
//     [v3.1.1 MQTT-3.8.4-6];
//   - authorization: a PUBLISH the ACL denies is refused (0x87 to a 5.0
//     publisher, a positive acknowledgement to a 3.1.1 one) and reaches
//     nobody; a SUBSCRIBE it denies is refused in its SUBACK; what it
//     allows is never refused;
//   - tenant-settings: the CONNACK announces the tenant's Maximum QoS,
//     Receive Maximum and a Session Expiry Interval cut to its bound; a
//     SUBSCRIBE is granted the QoS asked for up to the tenant's maximum,
//     and refused beyond its topic limits; a PUBLISH beyond them is
//     refused (0x90) and reaches nobody.

// refusal returns the invariant a refusal with code concerns.
func refusal(code packet.ReasonCode) Invariant {
	if code == packet.NotAuthorized {
		return InvAuthorization
	}
	return InvTenantSettings
}

// checkConnack checks what a 5.0 CONNACK announces against the tenant's
// settings.
func (o *Oracle) checkConnack(c *Client, p *packet.Connack) {
	if c.Spec.Version != packet.V5 || p.ReasonCode != 0 {
		return
	}
	l := o.w.limits(c.Spec.Tenant)
	pr := &p.Properties
	o.Checked[InvTenantSettings]++
	var asked uint32
	if c.Spec.Persistent {
		asked = c.Spec.Expiry
	}
	switch {
	case l.maxQoS < packet.QoS2 && (!pr.Has(packet.PropMaximumQoS) || packet.QoS(pr.MaximumQoS) != l.maxQoS),
		l.maxQoS == packet.QoS2 && pr.Has(packet.PropMaximumQoS):
		o.fail(InvTenantSettings, fmt.Sprintf("%s (tenant %s, maximum QoS %d): CONNACK announces Maximum QoS %v (present %v)",
			c.Spec.ClientID, c.Spec.Tenant, l.maxQoS, pr.MaximumQoS, pr.Has(packet.PropMaximumQoS)))
	case asked > l.maxExpiry && (!pr.Has(packet.PropSessionExpiry) || pr.SessionExpiry != l.maxExpiry),
		asked <= l.maxExpiry && pr.Has(packet.PropSessionExpiry) && pr.SessionExpiry != asked:
		o.fail(InvTenantSettings, fmt.Sprintf("%s (tenant %s, session expiry at most %d s) asked for %d s: CONNACK says %d s (present %v)",
			c.Spec.ClientID, c.Spec.Tenant, l.maxExpiry, asked, pr.SessionExpiry, pr.Has(packet.PropSessionExpiry)))
	case l.receiveMax != 65535 && (!pr.Has(packet.PropReceiveMaximum) || pr.ReceiveMaximum != l.receiveMax):
		o.fail(InvTenantSettings, fmt.Sprintf("%s (tenant %s, Receive Maximum %d): CONNACK announces %d (present %v)",
			c.Spec.ClientID, c.Spec.Tenant, l.receiveMax, pr.ReceiveMaximum, pr.Has(packet.PropReceiveMaximum)))
	}
}

// serverDisconnected: the broker sent a good client a DISCONNECT. Only a
// takeover (another connection of the same client resumed the session) is
// expected; a session a crash brought back without the client knowing it
// may hold state the client does not (QoS 2 ids counted against the
// broker's Receive Maximum), so its incarnation is spared.
func (o *Oracle) serverDisconnected(c *Client, code packet.ReasonCode) {
	o.Checked[InvProtocol]++
	if code == packet.SessionTakenOver || c.inc != nil && c.inc.lenient {
		return
	}
	o.fail(InvProtocol, fmt.Sprintf("the broker disconnected %s (tenant %s), a client that kept to the protocol and to what the CONNACK announced, with %s",
		c.Spec.ClientID, c.Spec.Tenant, code))
}

// checkGrant checks a SUBACK against the tenant's rules and settings.
func (o *Oracle) checkGrant(c *Client, op *SubOp, code packet.ReasonCode) {
	l := o.w.limits(c.Spec.Tenant)
	granted := op.Granted
	why := l.subRefused(op.Raw)
	inv := InvTenantSettings
	if l.subDenied(op.Raw) {
		inv = InvAuthorization
	}
	o.Checked[inv]++
	switch {
	case why != "" && granted:
		o.fail(inv, fmt.Sprintf("%s (tenant %s) was granted %q at QoS %d although %s", c.Spec.ClientID, c.Spec.Tenant, op.Raw, op.QoS, why))
	case why == "" && !granted:
		o.fail(refusal(code), fmt.Sprintf("%s (tenant %s) was refused %q (%s), which the tenant's rules and settings allow",
			c.Spec.ClientID, c.Spec.Tenant, op.Raw, code))
	case granted && op.QoS != byte(min(packet.QoS(op.Asked), l.maxQoS)):
		o.fail(InvTenantSettings, fmt.Sprintf("%s (tenant %s, maximum QoS %d) asked for %q at QoS %d and was granted QoS %d",
			c.Spec.ClientID, c.Spec.Tenant, l.maxQoS, op.Raw, op.Asked, op.QoS))
	}
}

// checkPubAck checks the acknowledgement of a PUBLISH the rules may refuse.
func (o *Oracle) checkPubAck(m *Msg, code packet.ReasonCode) {
	c := m.Pub
	switch {
	case m.refuse != "":
		o.Checked[refusal(m.refuseCode)]++
		if c.Spec.Version == packet.V5 && code != m.refuseCode {
			o.fail(refusal(m.refuseCode), fmt.Sprintf("message %d of %s on %s: acknowledged with %s, want %s (%s)",
				m.ID, c.Spec.ClientID, m.Topic, code, m.refuseCode, m.refuse))
		}
	case code.IsError():
		o.fail(refusal(code), fmt.Sprintf("message %d of %s (tenant %s) on %s refused with %s, which the tenant's rules and settings allow",
			m.ID, c.Spec.ClientID, c.Spec.Tenant, m.Topic, code))
	}
}

// checkDeliveryRules checks a delivery of m to c (incarnation inc) against
// the rules and the QoS granted.
func (o *Oracle) checkDeliveryRules(c *Client, inc *Incarnation, m *Msg, p *packet.Publish, now time.Time) {
	if m.refuse != "" {
		o.Checked[refusal(m.refuseCode)]++
		o.fail(refusal(m.refuseCode), fmt.Sprintf("message %d of %s on %s delivered to %s although %s",
			m.ID, m.Pub.Spec.ClientID, m.Topic, c.Spec.ClientID, m.refuse))
		return
	}
	o.Checked[InvGrantedQoS]++
	if q := inc.maxGranted(m.Topic, m.SendAt, now); int(p.QoS) > q {
		kind := "live"
		if p.Retain {
			kind = "retained"
		}
		o.fail(InvGrantedQoS, fmt.Sprintf("message %d (topic %s, QoS %d) delivered %s to %s (incarnation %d) at QoS %d; its matching subscriptions were granted at most QoS %d",
			m.ID, m.Topic, m.QoS, kind, c.Spec.ClientID, inc.ID, p.QoS, q))
	}
}

// maxGranted returns the highest QoS granted to a filter of inc matching
// topic at some point of [a, b] (-1: none was subscribed).
func (inc *Incarnation) maxGranted(topic string, a, b time.Time) int {
	mask := inc.mask(topic)
	q := -1
	for i, fr := range inc.filters {
		if i < 64 && mask&(1<<i) != 0 {
			q = max(q, fr.maxQoS(a, b))
		}
	}
	return q
}

// maxQoS returns the highest QoS fr may have had during [a, b]: the state
// the acknowledged operations give at a, and every SUBSCRIBE sent before b
// (the QoS granted once acknowledged, the QoS asked for, an upper bound,
// until then). -1: never subscribed then.
func (fr *filterRec) maxQoS(a, b time.Time) int {
	ops := fr.ops
	last := -1
	for i, op := range ops {
		if op.Acked && !op.AckAt.After(a) && op.effective() {
			last = i
		}
	}
	q := -1
	if last >= 0 && !ops[last].Unsub {
		q = int(ops[last].QoS)
	}
	for _, op := range ops[last+1:] {
		if op.SendAt.After(b) {
			break
		}
		if op.Unsub || op.Acked && !op.Granted {
			continue
		}
		q = max(q, int(op.QoS))
	}
	return q
}
