package topic

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// FuzzMatch builds a trie from the lines of filters (line i subscribed by
// subscriber i%3, so some lines share a subscriber and some replace),
// matches topic, and compares with the reference over the valid filters.
// A second trie takes every line, valid or not, and must survive matching
// any topic and then empty completely.
func FuzzMatch(f *testing.F) {
	seeds := []struct{ filters, topic string }{
		{"a/b\na/+\na/#\n#\n+/+", "a/b"},
		{"sport/tennis/player1/#\nsport/#\n+/+", "sport"},
		{"+/+\n/+\n+", "/finance"},
		{"$SYS/#\n#\n+/x", "$SYS/x"},
		{"$share/g/a/+\n$share/h/#\n$share/g/a/+\na/+", "a/"},
		{"a//b\n+/+/+\na/+/b", "a//b"},
		{"a/#/b\n#/#\n+#\n$share/g\n$share//x\n", "a/#/b"},
		{"\n\n/", ""},
	}
	for _, s := range seeds {
		f.Add(s.filters, s.topic)
	}
	f.Fuzz(func(t *testing.T, filters, topic string) {
		lines := strings.Split(filters, "\n")
		if len(lines) > 64 {
			lines = lines[:64]
		}
		valid, all, ref := NewTrie(), NewTrie(), newRefTrie()
		for i, l := range lines {
			s := Subscription{Subscriber: SubscriberID(i % 3), Options: Options{ID: uint32(i)}}
			all.Subscribe([]byte(l), s)
			if ValidFilter([]byte(l)) == nil {
				if got, want := valid.Subscribe([]byte(l), s), ref.subscribe(l, s); got != want {
					t.Fatalf("Subscribe(%q) = %v, reference %v", l, got, want)
				}
			}
		}
		checkInvariants(t, valid)
		checkInvariants(t, all)
		var m Matches
		if ValidName([]byte(topic)) == nil {
			got, want := trieMatch(valid, topic, &m), ref.match(topic)
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("Match(%q) (-reference +trie):\n%s", topic, diff)
			}
		}
		m.Reset()
		all.Match([]byte(topic), &m)
		for i, l := range lines {
			all.Unsubscribe([]byte(l), SubscriberID(i%3))
		}
		if all.Len() != 0 || all.Nodes() != 0 {
			t.Fatalf("after unsubscribing every line: Len %d, Nodes %d", all.Len(), all.Nodes())
		}
	})
}

// FuzzValidFilter checks the validators against the reference rules, on
// any bytes: same verdict, the right reason code, and for a valid shared
// filter a ParseShared that puts it back together.
func FuzzValidFilter(f *testing.F) {
	for _, s := range []string{"a/b", "#", "+", "a/#", "a/+/b", "a#", "a/#/b", "+a", "", "/", "$share/g/a",
		"$share//a", "$share/g", "$share/g/", "$share/g+/a", "$share/g/#", "a\x00b", "$SYS/+", "\xff/+"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := string(b)
		err := ValidFilter(b)
		if got, want := err == nil, refValidFilter(s); got != want {
			t.Fatalf("ValidFilter(%q) = %v, reference says valid=%v", s, err, want)
		}
		if err != nil && codeOf(err) != packet.TopicFilterInvalid {
			t.Fatalf("ValidFilter(%q): code %v", s, codeOf(err))
		}
		err = ValidName(b)
		if got, want := err == nil, refValidName(s); got != want {
			t.Fatalf("ValidName(%q) = %v, reference says valid=%v", s, err, want)
		}
		if err != nil && codeOf(err) != packet.TopicNameInvalid {
			t.Fatalf("ValidName(%q): code %v", s, codeOf(err))
		}
		if got, want := IsWildcard(b), strings.ContainsAny(s, "+#"); got != want {
			t.Fatalf("IsWildcard(%q) = %v", s, got)
		}
		if want := len(strings.Split(s, "/")); s != "" && Levels(b) != want {
			t.Fatalf("Levels(%q) = %d, want %d", s, Levels(b), want)
		}
		group, inner, ok := ParseShared(b)
		if ValidFilter(b) == nil {
			rg, ri, rok := refShared(s)
			if ok != rok || string(group) != rg || (ok && string(inner) != ri) {
				t.Fatalf("ParseShared(%q) = %q %q %v, reference %q %q %v", s, group, inner, ok, rg, ri, rok)
			}
		}
		if ok && !bytes.Equal(append(append([]byte("$share/"), group...), append([]byte{'/'}, inner...)...), b) {
			t.Fatalf("ParseShared(%q) = %q, %q does not rebuild the filter", s, group, inner)
		}
	})
}
