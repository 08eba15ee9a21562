package acl

import (
	"testing"

	"github.com/skybridge-mq/skybridge/impl/topic"
)

// FuzzPattern compiles arbitrary patterns and checks them against arbitrary
// topics and filters: nothing panics, and on valid input the three ways of
// matching agree (a topic name is a filter that matches only itself).
func FuzzPattern(f *testing.F) {
	for _, s := range [][3]string{
		{"a/+/#", "a/b/c", "a/#"},
		{"users/%u/#", "users/u/x", "users/u/+"},
		{"#", "$SYS/x", "#"},
		{"+/#", "/", "+"},
		{"p%%/%c%t", "p%/ct", "p%/+"},
		{"%", "%", "%"},
		{"a//b", "a//b", "a/+/b"},
		{"$share/g/a", "a", "$share/g/a"},
	} {
		f.Add(s[0], s[1], s[2], "u", "c")
	}
	f.Fuzz(func(t *testing.T, pat, name, filter, user, client string) {
		rs, err := Compile([]Rule{{Permission: Allow, Actions: All, Pattern: pat}})
		if err != nil {
			return
		}
		c := &Client{Tenant: "t", User: user, ClientID: client}
		p := &rs.rules[0].pat
		pub := rs.Publish(c, []byte(name), false)
		sub := rs.Subscribe(c, []byte(filter))
		_ = rs.Subscribe(c, []byte(name))
		if !p.safeFor(c) {
			if pub != NoMatch || sub != NoMatch {
				t.Fatalf("an allow rule with an unsafe value decided: %v %v", pub, sub)
			}
			return
		}
		if topic.ValidName([]byte(name)) == nil {
			m := p.matchTopic([]byte(name), c)
			if in := p.contains([]byte(name), c); in != m {
				t.Fatalf("pattern %q, topic %q: match %v but contains %v", pat, name, m, in)
			}
			if meet := p.overlaps([]byte(name), c); meet != m {
				t.Fatalf("pattern %q, topic %q: match %v but overlaps %v", pat, name, m, meet)
			}
		}
		if topic.ValidFilter([]byte(filter)) == nil && p.contains([]byte(filter), c) && !p.overlaps([]byte(filter), c) {
			t.Fatalf("pattern %q contains filter %q without meeting it", pat, filter)
		}
	})
}
