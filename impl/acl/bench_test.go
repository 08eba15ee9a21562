package acl

import "testing"

func benchSet(b testing.TB) *Set {
	var rules []RuleConfig
	for _, p := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		rules = append(rules, r("allow", "publish", "apps/"+p+"/+/events"))
	}
	rules = append(rules,
		r("deny", "retain", "#"),
		r("allow", "publish", "devices/%c/up/#", "users/%u/#"),
		r("allow", "subscribe", "devices/%c/down/#", "broadcast/#"),
	)
	return mustSet(b, Config{DefaultDeny: true, Tenants: map[string][]RuleConfig{"acme": rules},
		Global: []RuleConfig{r("allow", "publish", "public/%t/#")}})
}

// BenchmarkSetPublish is the check the broker makes for every PUBLISH: the
// matching rule is the tenth of a dozen, with a substitution.
func BenchmarkSetPublish(b *testing.B) {
	s := benchSet(b)
	c := &Client{Tenant: "acme", User: "alice", ClientID: "device-0042"}
	topic := []byte("devices/device-0042/up/telemetry")
	b.ReportAllocs()
	for b.Loop() {
		if !s.CanPublish(c, topic, false) {
			b.Fatal("denied")
		}
	}
}

// BenchmarkSetPublishDenied runs every rule and falls to the default.
func BenchmarkSetPublishDenied(b *testing.B) {
	s := benchSet(b)
	c := &Client{Tenant: "acme", User: "alice", ClientID: "device-0042"}
	topic := []byte("devices/device-0043/up/telemetry")
	b.ReportAllocs()
	for b.Loop() {
		if s.CanPublish(c, topic, false) {
			b.Fatal("allowed")
		}
	}
}

func BenchmarkSetSubscribe(b *testing.B) {
	s := benchSet(b)
	c := &Client{Tenant: "acme", User: "alice", ClientID: "device-0042"}
	filter := []byte("devices/device-0042/down/+")
	b.ReportAllocs()
	for b.Loop() {
		if !s.CanSubscribe(c, filter) {
			b.Fatal("denied")
		}
	}
}

func TestPublishDoesNotAllocate(t *testing.T) {
	s := benchSet(t)
	c := &Client{Tenant: "acme", User: "alice", ClientID: "device-0042"}
	topic := []byte("devices/device-0042/up/telemetry")
	filter := []byte("devices/device-0042/down/+")
	if n := testing.AllocsPerRun(100, func() {
		s.CanPublish(c, topic, false)
		s.CanSubscribe(c, filter)
	}); n != 0 {
		t.Errorf("%v allocations per check, want 0", n)
	}
}
