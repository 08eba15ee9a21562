package sim

import (
	"strings"

	"github.com/skybridge-mq/skybridge/impl/acl"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/session"
	"github.com/skybridge-mq/skybridge/impl/tenant"
)

// TenantSpec gives a tenant settings of its own (impl/tenant, served to the
// broker by a settings provider) and authorization rules (impl/acl): what
// its clients may not publish and may not subscribe to. Tenants without a
// spec get tenant.Default() and no rules.
//
// The oracle does not ask the broker what these mean: it derives what the
// broker must announce, grant, refuse and deliver from the spec itself
// (limits below, and its own filter overlap for the deny rules).
type TenantSpec struct {
	Name     string
	Settings tenant.Settings
	// DenyPublish are topic filters a PUBLISH may not match; DenySubscribe
	// filters a SUBSCRIBE may not overlap (a filter that could match a
	// topic of a denied tree is refused whole, as impl/acl reasons).
	DenyPublish, DenySubscribe []string
}

// tenantLimits is what a tenant's settings mean for its clients, under the
// broker's own configuration (the ceiling).
type tenantLimits struct {
	maxQoS           packet.QoS
	maxTopicLength   int
	maxTopicLevels   int
	maxExpiry        uint32
	receiveMax       uint16
	maxQueued        int
	denyPub, denySub []string
}

func newTenantLimits(cfg *session.Config, ts *TenantSpec) tenantLimits {
	s := tenant.Default()
	if ts != nil {
		s = ts.Settings
	}
	l := tenantLimits{maxQoS: min(cfg.MaxQoS, packet.QoS(s.MaxQoS)), maxTopicLength: s.MaxTopicLength,
		maxTopicLevels: s.MaxTopicLevels, maxExpiry: min(cfg.MaxSessionExpiry, s.MaxSessionExpiry),
		receiveMax: min(cfg.ReceiveMaximum, uint16(s.ReceiveMaximum)), maxQueued: min(cfg.MaxQueued, s.InboxSize)}
	if ts != nil {
		l.denyPub, l.denySub = ts.DenyPublish, ts.DenySubscribe
	}
	return l
}

// limits returns tenant t's limits.
func (w *World) limits(t string) *tenantLimits {
	if l, ok := w.limitsOf[t]; ok {
		return l
	}
	var spec *TenantSpec
	for i := range w.Broker.Spec.Tenants {
		if w.Broker.Spec.Tenants[i].Name == t {
			spec = &w.Broker.Spec.Tenants[i]
		}
	}
	l := newTenantLimits(&w.Broker.Spec.Config.Session, spec)
	w.limitsOf[t] = &l
	return &l
}

// topicOK reports whether a topic name or filter is within the limits.
func (l *tenantLimits) topicOK(s string) bool {
	return len(s) <= l.maxTopicLength && strings.Count(s, "/")+1 <= l.maxTopicLevels
}

// pubDenied reports whether the rules deny publishing to topic.
func (l *tenantLimits) pubDenied(topic string) bool {
	for _, f := range l.denyPub {
		if topicMatch(f, topic) {
			return true
		}
	}
	return false
}

// subDenied reports whether the rules deny subscribing to filter (a
// shared subscription is judged by its inner filter).
func (l *tenantLimits) subDenied(filter string) bool {
	inner := innerFilter(filter)
	for _, f := range l.denySub {
		if filtersOverlap(inner, f) {
			return true
		}
	}
	return false
}

// subRefused reports whether the broker must refuse a subscription to
// filter, and why ("" when it must grant it).
func (l *tenantLimits) subRefused(filter string) string {
	switch {
	case l.subDenied(filter):
		return "the ACL denies it"
	case !l.topicOK(innerFilter(filter)):
		return "it exceeds the tenant's topic limits"
	}
	return ""
}

// pubRefused says why the broker must refuse a PUBLISH to topic ("" when
// it must route it), and the reason code a 5.0 publisher gets.
func (l *tenantLimits) pubRefused(topic string) (string, packet.ReasonCode) {
	switch {
	case l.pubDenied(topic):
		return "the ACL denies it", packet.NotAuthorized
	case !l.topicOK(topic):
		return "it exceeds the tenant's topic limits", packet.TopicNameInvalid
	}
	return "", 0
}

func innerFilter(filter string) string {
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		if _, inner, ok := strings.Cut(rest, "/"); ok {
			return inner
		}
	}
	return filter
}

// filtersOverlap reports whether some topic matches both filters (the
// oracle's own reasoning, independent of impl/acl): level by level, '+'
// meets any level, '#' meets whatever is left (its parent level included),
// and a wildcard first level never meets a topic starting with '$'.
func filtersOverlap(a, b string) bool {
	al, bl := strings.Split(a, "/"), strings.Split(b, "/")
	for i := 0; ; i++ {
		aEnd, bEnd := i == len(al), i == len(bl)
		switch {
		case aEnd && bEnd:
			return true
		case !aEnd && al[i] == "#":
			return i > 0 || bEnd || !strings.HasPrefix(bl[0], "$")
		case !bEnd && bl[i] == "#":
			return i > 0 || aEnd || !strings.HasPrefix(al[0], "$")
		case aEnd || bEnd:
			return false
		case al[i] == "+" || bl[i] == "+":
			if i == 0 && (strings.HasPrefix(al[0], "$") || strings.HasPrefix(bl[0], "$")) {
				return false
			}
		case al[i] != bl[i]:
			return false
		}
	}
}

// configure gives the broker configuration the scenario's tenants: a
// settings provider for their settings and an ACL for their rules.
// The authenticator is the spec's own (a harness may bring one, as the
// edge simulator's certificate check does).
func (spec *BrokerSpec) configure(cfg *broker.Config) error {
	if len(spec.Tenants) == 0 {
		return nil
	}
	prov := tenant.NewProvider()
	rules := acl.Config{Tenants: map[string][]acl.RuleConfig{}}
	for _, ts := range spec.Tenants {
		if err := prov.Set(ts.Name, ts.Settings); err != nil {
			return err
		}
		var rs []acl.RuleConfig
		if len(ts.DenyPublish) > 0 {
			rs = append(rs, acl.RuleConfig{Permission: "deny", Action: "publish", Topics: ts.DenyPublish})
		}
		if len(ts.DenySubscribe) > 0 {
			rs = append(rs, acl.RuleConfig{Permission: "deny", Action: "subscribe", Topics: ts.DenySubscribe})
		}
		if len(rs) > 0 {
			rules.Tenants[ts.Name] = rs
		}
	}
	cfg.Settings = prov
	if len(rules.Tenants) > 0 {
		set, err := acl.NewSet(rules)
		if err != nil {
			return err
		}
		cfg.Authorizer = set
	}
	return nil
}
