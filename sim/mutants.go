package sim

// Mutant is a bug planted in the broker core's source, to measure what the
// simulator catches: TestMutants (mutants_test.go, run by make sim) builds
// skybridge-sim with the mutated file in place of the original (go build
// -overlay: the file itself is never touched), runs seeds until one fails,
// and requires that the failure is one of the invariants expected while
// the same seed passes on the unmutated broker. A mutant whose Original no
// longer occurs exactly once in its file fails the test, so that the list
// cannot rot silently when the code changes: update the snippet (or the
// mutant) with the code.
type Mutant struct {
	Name string
	// File is relative to the module root.
	File string
	// Original must occur exactly once in File; Mutated replaces it.
	Original, Mutated string
	// Want are the invariants by which a run may catch the mutant.
	Want []Invariant
	// Gap, when set, says why the simulator does not catch the mutant yet:
	// it is run and counted, and the test fails if it is caught after all
	// (then the gap is closed: clear it).
	Gap string
}

// Mutants are the planted source mutations: topic rules, retained
// matching, packet identifiers and flow control, tenant settings,
// authorization, the QoS of deliveries. Each is a plausible slip, one
// place changed.
var Mutants = []Mutant{
	{
		Name: "topic-hash-parent", File: "impl/topic/trie.go",
		// '#' no longer matches its parent level ("a/#" misses "a").
		Original: "\tm.collect(n)\n\tif n.x != nil && n.x.hash != nil {\n\t\tm.collect(n.x.hash)\n\t}\n}\n",
		Mutated:  "\tm.collect(n)\n}\n",
		Want:     []Invariant{InvAtLeastOnce, InvSubscriptions},
	},
	{
		Name: "topic-dollar-wildcard", File: "impl/topic/trie.go",
		// A filter starting with a wildcard matches topics starting with '$'.
		Original: "t.matchFrom(&t.root, topic, 0, m, len(topic) > 0 && topic[0] == '$')",
		Mutated:  "t.matchFrom(&t.root, topic, 0, m, false)",
		Want:     []Invariant{InvSubscribed, InvSubscriptions},
	},
	{
		Name: "retain-dollar-wildcard", File: "impl/retain/retain.go",
		// '#' at the root brings retained messages of '$' topics.
		Original: "func collectAll(n *node, first bool, out *[]*message.Message) {\n\tfor _, k := range sortedKeys(n.children) {\n\t\tif first && strings.HasPrefix(k, \"$\") {\n\t\t\tcontinue\n\t\t}\n",
		Mutated:  "func collectAll(n *node, first bool, out *[]*message.Message) {\n\tfor _, k := range sortedKeys(n.children) {\n",
		Want:     []Invariant{InvSubscribed},
	},
	{
		Name: "session-pid-wrap-zero", File: "impl/session/outbound.go",
		// Packet identifiers wrap to 0 instead of 1.
		Original: "\t\ts.nextPID++\n\t\tif s.nextPID == 0 {\n\t\t\ts.nextPID = 1\n\t\t}\n",
		Mutated:  "\t\ts.nextPID++\n",
		Want:     []Invariant{InvProtocol},
	},
	{
		Name: "session-pubrel-keeps-id", File: "impl/session/inbound.go",
		// PUBREL does not free the QoS 2 packet id: a client that reuses
		// it at once has its next message taken for a duplicate (lost,
		// and acknowledged as the old one was: a refusal the rules
		// require is missing).
		Original: "\t\t\tdelete(s.qos2In, a.PacketID)\n",
		Mutated:  "",
		Want:     []Invariant{InvAtLeastOnce, InvProtocol, InvRetained, InvAuthorization, InvTenantSettings},
	},
	{
		Name: "session-receive-max-ignored", File: "impl/session/outbound.go",
		// The client's Receive Maximum does not bound what is in flight.
		Original: "\tif s.conn != nil && int(s.conn.receiveMax) < limit {\n\t\tlimit = int(s.conn.receiveMax) // [MQTT-3.3.4-9]\n\t}\n",
		Mutated:  "",
		Want:     []Invariant{InvFlowControl},
	},
	{
		Name: "session-max-qos-grant", File: "impl/session/inbound.go",
		// A SUBSCRIBE is granted the QoS asked for, above the tenant's maximum.
		Original: "QoS: byte(min(sub.QoS, s.cfg.MaxQoS)), NoLocal: sub.NoLocal,",
		Mutated:  "QoS: byte(sub.QoS), NoLocal: sub.NoLocal,",
		Want:     []Invariant{InvTenantSettings, InvGrantedQoS},
	},
	{
		Name: "session-expiry-uncapped", File: "impl/session/session.go",
		// The tenant's max_session_expiry is not applied at CONNECT: a
		// session outlives its bound, and a will delayed beyond the bound
		// goes late.
		Original: "\t\tcase s.expiry > s.cfg.MaxSessionExpiry:\n\t\t\ts.expiry = s.cfg.MaxSessionExpiry\n\t\t\tp.SessionExpiry = s.expiry\n\t\t\tp.Set(packet.PropSessionExpiry)\n",
		Mutated:  "",
		Want:     []Invariant{InvTenantSettings, InvSessionPresent, InvWillTiming},
	},
	{
		Name: "broker-retained-qos", File: "impl/broker/route.go",
		// Retained messages go at their stored QoS, not at most the granted one.
		Original: "q := min(packet.QoS(r.Options.QoS), m.QoS)",
		Mutated:  "q := m.QoS",
		Want:     []Invariant{InvGrantedQoS},
	},
	{
		Name: "broker-live-qos", File: "impl/broker/route.go",
		// Live deliveries go at the message's QoS, whatever was granted.
		Original: "if q := int(min(packet.QoS(s.QoS), m.QoS)); q > qos {",
		Mutated:  "if q := int(m.QoS); q > qos {",
		Want:     []Invariant{InvGrantedQoS},
	},
	{
		Name: "broker-acl-publish", File: "impl/broker/route.go",
		// A PUBLISH the ACL denies is routed.
		Original: "if az := b.cfg.Authorizer; az != nil && !az.CanPublish(&c.who, m.Topic, m.Retain) {",
		Mutated:  "if az := b.cfg.Authorizer; az != nil && m.Topic == nil && !az.CanPublish(&c.who, m.Topic, m.Retain) {",
		Want:     []Invariant{InvAuthorization},
	},
	{
		Name: "broker-acl-subscribe", File: "impl/broker/route.go",
		// A SUBSCRIBE the ACL denies is granted.
		Original: "if az := c.b.cfg.Authorizer; az != nil && !az.CanSubscribe(&c.who, r.Filter) {",
		Mutated:  "if az := c.b.cfg.Authorizer; az != nil && r.Filter == nil && !az.CanSubscribe(&c.who, r.Filter) {",
		Want:     []Invariant{InvAuthorization},
	},
	{
		Name: "broker-topic-levels", File: "impl/broker/limits.go",
		// The tenant's max_topic_levels lets one level more through.
		Original: "topic.Levels(name) <= s.MaxTopicLevels",
		Mutated:  "topic.Levels(name) <= s.MaxTopicLevels+1",
		Want:     []Invariant{InvTenantSettings},
	},
}
