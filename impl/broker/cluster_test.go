package broker

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/topic"
)

// An audience serves the shared groups named for it, compared by group
// name and filter, nothing near them.
func TestAudienceServes(t *testing.T) {
	t.Parallel()
	tr := topic.NewTrie()
	for i, f := range []string{"$share/g/a/+", "$share/g/a/#", "$share/gg/a/+", "$share/h/a/b"} {
		tr.Subscribe([]byte(f), topic.Subscription{Subscriber: topic.SubscriberID(i + 1)})
	}
	var m topic.Matches
	tr.Match([]byte("a/b"), &m)
	a := &audience{groups: []string{"$share/g/a/+", "$share/h/a/b", "$share/g/a", "share/gg/a/+"}}
	got := map[string]bool{}
	for _, g := range m.Groups {
		got["$share/"+g.Name()+"/"+g.Filter()] = a.serves(g)
	}
	want := map[string]bool{"$share/g/a/+": true, "$share/g/a/#": false, "$share/gg/a/+": false, "$share/h/a/b": true}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}
