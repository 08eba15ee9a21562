package retain

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/message"
)

func msg(topic, payload string) *message.Message {
	return &message.Message{Topic: []byte(topic), Payload: []byte(payload), Owned: true}
}

func matches(s Store, tenant, filter string, now time.Time) []string {
	var got []string
	s.Match(tenant, []byte(filter), now, func(m *message.Message) bool {
		got = append(got, string(m.Topic)+"="+string(m.Payload))
		return true
	})
	return got
}

func TestMemoryMatch(t *testing.T) {
	t.Parallel()
	s := NewMemory()
	now := time.Unix(100, 0)
	for _, tp := range []string{"a", "a/b", "a/b/c", "a/c", "b", "$SYS/x", "a//b", "/a"} {
		s.Set("t1", msg(tp, "v:"+tp))
	}
	s.Set("t2", msg("a/b", "other tenant"))
	cases := []struct {
		filter string
		want   []string
	}{
		{"a/b", []string{"a/b=v:a/b"}},
		{"a/+", []string{"a/b=v:a/b", "a/c=v:a/c"}},
		{"a/#", []string{"a=v:a", "a//b=v:a//b", "a/b=v:a/b", "a/b/c=v:a/b/c", "a/c=v:a/c"}},
		{"#", []string{"/a=v:/a", "a=v:a", "a//b=v:a//b", "a/b=v:a/b", "a/b/c=v:a/b/c", "a/c=v:a/c", "b=v:b"}},
		{"+/+", []string{"/a=v:/a", "a/b=v:a/b", "a/c=v:a/c"}},
		{"$SYS/#", []string{"$SYS/x=v:$SYS/x"}},
		{"+/x", nil},
		{"a/+/b", []string{"a//b=v:a//b"}},
		{"nothing", nil},
	}
	for _, c := range cases {
		if d := cmp.Diff(c.want, matches(s, "t1", c.filter, now)); d != "" {
			t.Errorf("Match(%q) (-want +got):\n%s", c.filter, d)
		}
	}
	if d := cmp.Diff([]string{"a/b=other tenant"}, matches(s, "t2", "#", now)); d != "" {
		t.Errorf("tenant t2 sees (-want +got):\n%s", d)
	}
	if n, _ := s.Count("t1"); n != 8 {
		t.Errorf("Count = %d, want 8", n)
	}
}

func TestMemorySetReplaceDelete(t *testing.T) {
	t.Parallel()
	s := NewMemory()
	now := time.Unix(0, 0)
	if d := s.Set("t", msg("a/b", "1")); d != 1 {
		t.Fatalf("first Set delta %d", d)
	}
	if d := s.Set("t", msg("a/b", "2")); d != 0 {
		t.Fatalf("replace delta %d", d)
	}
	if got := matches(s, "t", "a/b", now); len(got) != 1 || got[0] != "a/b=2" {
		t.Fatalf("after replace: %v", got)
	}
	if d := s.Set("t", msg("a/b", "")); d != -1 {
		t.Fatalf("delete delta %d", d)
	}
	if got := matches(s, "t", "#", now); got != nil {
		t.Fatalf("after delete: %v", got)
	}
	if n, b := s.Count("t"); n != 0 || b != 0 {
		t.Fatalf("Count after delete = %d, %d", n, b)
	}
	if len(s.tenants["t"].root.children) != 0 {
		t.Fatal("empty nodes left after delete")
	}
}

func TestMemoryExpiry(t *testing.T) {
	t.Parallel()
	s := NewMemory()
	m := msg("a", "x")
	m.Expiry = time.Unix(10, 0)
	s.Set("t", m)
	if got := matches(s, "t", "a", time.Unix(9, 0)); len(got) != 1 {
		t.Fatalf("before expiry: %v", got)
	}
	if got := matches(s, "t", "a", time.Unix(10, 0)); got != nil {
		t.Fatalf("at expiry: %v", got)
	}
	if n, _ := s.Count("t"); n != 0 {
		t.Fatalf("expired message still counted: %d", n)
	}
}
