package topic

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// codeOf returns the reason code of a validation error, 0 for nil. A
// non-nil error that is not an *Error is reported as 0xFF.
func codeOf(err error) packet.ReasonCode {
	if err == nil {
		return 0
	}
	var e *Error
	if !errors.As(err, &e) {
		return 0xFF
	}
	return e.Code
}

const (
	okCode     = packet.ReasonCode(0)
	badName    = packet.TopicNameInvalid
	badFilter  = packet.TopicFilterInvalid
	maxLenName = MaxLen
)

func TestValidName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want packet.ReasonCode
	}{
		{"one level", "a", okCode},
		{"levels", "sport/tennis/player1", okCode},
		{"empty levels are levels", "/", okCode},
		{"leading slash", "/finance", okCode},
		{"trailing slash", "finance/", okCode},
		{"double slash", "a//b", okCode},
		{"space", " ", okCode},
		{"dollar topic", "$SYS/broker/uptime", okCode},
		{"share-like name", "$share/g/a", okCode},
		{"utf-8", "h\u00e9llo/\u4e16\u754c", okCode},
		{"max length [v5 MQTT-4.7.3-3] [v3.1.1 MQTT-4.7.3-3]", strings.Repeat("a", maxLenName), okCode},

		{"empty [v5 MQTT-4.7.3-1] [v3.1.1 MQTT-4.7.3-1]", "", badName},
		{"too long [v5 MQTT-4.7.3-3] [v3.1.1 MQTT-4.7.3-3]", strings.Repeat("a", maxLenName+1), badName},
		{"null [v5 MQTT-4.7.3-2] [v3.1.1 MQTT-4.7.3-2]", "a/\x00/b", badName},
		{"plus level [v5 MQTT-4.7.0-1] [v3.1.1 MQTT-4.7.1-1]", "a/+/b", badName},
		{"plus inside a level [v5 MQTT-4.7.0-1] [v3.1.1 MQTT-4.7.1-1]", "a+b", badName},
		{"hash [v5 MQTT-4.7.0-1] [v3.1.1 MQTT-4.7.1-1]", "a/#", badName},
		{"hash alone [v5 MQTT-4.7.0-1] [v3.1.1 MQTT-4.7.1-1]", "#", badName},
		{"plus alone [v5 MQTT-4.7.0-1] [v3.1.1 MQTT-4.7.1-1]", "+", badName},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, codeOf(ValidName([]byte(tc.in)))); diff != "" {
				t.Errorf("ValidName(%.40q) code (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestValidFilter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want packet.ReasonCode
	}{
		{"exact", "sport/tennis/player1", okCode},
		{"empty levels", "a//b/", okCode},
		{"only a slash", "/", okCode},
		{"dollar", "$SYS/#", okCode},
		{"max length [v5 MQTT-4.7.3-3] [v3.1.1 MQTT-4.7.3-3]", strings.Repeat("a", maxLenName), okCode},
		{"empty [v5 MQTT-4.7.3-1] [v3.1.1 MQTT-4.7.3-1]", "", badFilter},
		{"too long [v5 MQTT-4.7.3-3] [v3.1.1 MQTT-4.7.3-3]", strings.Repeat("a", maxLenName+1), badFilter},
		{"null [v5 MQTT-4.7.3-2] [v3.1.1 MQTT-4.7.3-2]", "a/\x00", badFilter},

		// '#': alone or after '/', and last [v5 MQTT-4.7.1-1] [v3.1.1 MQTT-4.7.1-2].
		{"hash alone [v5 MQTT-4.7.1-1] [v3.1.1 MQTT-4.7.1-2]", "#", okCode},
		{"hash after slash [v5 MQTT-4.7.1-1] [v3.1.1 MQTT-4.7.1-2]", "sport/tennis/#", okCode},
		{"hash after empty level [v5 MQTT-4.7.1-1] [v3.1.1 MQTT-4.7.1-2]", "/#", okCode},
		{"hash glued to a level [v5 MQTT-4.7.1-1] [v3.1.1 MQTT-4.7.1-2]", "sport/tennis#", badFilter},
		{"hash not last [v5 MQTT-4.7.1-1] [v3.1.1 MQTT-4.7.1-2]", "sport/tennis/#/ranking", badFilter},
		{"hash then slash [v5 MQTT-4.7.1-1] [v3.1.1 MQTT-4.7.1-2]", "#/", badFilter},
		{"two hashes [v5 MQTT-4.7.1-1] [v3.1.1 MQTT-4.7.1-2]", "##", badFilter},
		{"hash before a level [v5 MQTT-4.7.1-1] [v3.1.1 MQTT-4.7.1-2]", "#a", badFilter},

		// '+': any level, always the whole level [v5 MQTT-4.7.1-2] [v3.1.1 MQTT-4.7.1-3].
		{"plus alone [v5 MQTT-4.7.1-2] [v3.1.1 MQTT-4.7.1-3]", "+", okCode},
		{"plus first [v5 MQTT-4.7.1-2] [v3.1.1 MQTT-4.7.1-3]", "+/tennis/#", okCode},
		{"plus middle [v5 MQTT-4.7.1-2] [v3.1.1 MQTT-4.7.1-3]", "sport/+/player1", okCode},
		{"plus last [v5 MQTT-4.7.1-2] [v3.1.1 MQTT-4.7.1-3]", "sport/+", okCode},
		{"plus every level [v5 MQTT-4.7.1-2] [v3.1.1 MQTT-4.7.1-3]", "+/+/+", okCode},
		{"plus and empty levels [v5 MQTT-4.7.1-2] [v3.1.1 MQTT-4.7.1-3]", "/+/", okCode},
		{"plus glued after [v5 MQTT-4.7.1-2] [v3.1.1 MQTT-4.7.1-3]", "sport+", badFilter},
		{"plus glued before [v5 MQTT-4.7.1-2] [v3.1.1 MQTT-4.7.1-3]", "sport/+tennis", badFilter},
		{"two pluses [v5 MQTT-4.7.1-2] [v3.1.1 MQTT-4.7.1-3]", "++", badFilter},
		{"plus hash [v5 MQTT-4.7.1-1] [v3.1.1 MQTT-4.7.1-2]", "+#", badFilter},

		// Shared subscriptions [v5 MQTT-4.8.2-1] [v5 MQTT-4.8.2-2].
		{"shared [v5 MQTT-4.8.2-1]", "$share/g/a/b", okCode},
		{"shared one-character name [v5 MQTT-4.8.2-1]", "$share/g/#", okCode},
		{"shared wildcard filter [v5 MQTT-4.8.2-2]", "$share/consumers/+/x/#", okCode},
		{"shared filter with empty level [v5 MQTT-4.8.2-2]", "$share/g//", okCode},
		{"shared filter that looks shared [v5 MQTT-4.8.2-2]", "$share/g/$share/h/a", okCode},
		{"empty share name [v5 MQTT-4.8.2-1]", "$share//a", badFilter},
		{"share prefix only [v5 MQTT-4.8.2-1]", "$share/", badFilter},
		{"no slash after name [v5 MQTT-4.8.2-2]", "$share/g", badFilter},
		{"no filter after name [v5 MQTT-4.8.2-2]", "$share/g/", badFilter},
		{"plus in share name [v5 MQTT-4.8.2-2]", "$share/g+/a", badFilter},
		{"plus as share name [v5 MQTT-4.8.2-2]", "$share/+/a", badFilter},
		{"hash as share name [v5 MQTT-4.8.2-2]", "$share/#/a", badFilter},
		{"hash in share name [v5 MQTT-4.8.2-2]", "$share/#g/a", badFilter},
		{"bad inner filter", "$share/g/a#", badFilter},
		{"bad inner plus", "$share/g/a/b+", badFilter},
		{"null in share name", "$share/g\x00/a", badFilter},
		// Not shared: the prefix is case-sensitive and needs its '/'.
		{"$share without slash is a plain filter", "$share", okCode},
		{"$SHARE is a plain filter", "$SHARE/g/a", okCode},
		{"$SHARE plain filter keeps the wildcard rules", "$SHARE/+g/a", badFilter},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, codeOf(ValidFilter([]byte(tc.in)))); diff != "" {
				t.Errorf("ValidFilter(%.40q) code (-want +got):\n%s", tc.in, diff)
			}
			if got := refValidFilter(tc.in); got != (tc.want == okCode) {
				t.Errorf("reference validator says %v for %.40q", got, tc.in)
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	t.Parallel()
	got := []string{
		ValidName([]byte("a/+")).Error(),
		ValidFilter([]byte("a/b#")).Error(),
	}
	want := []string{
		"mqtt: " + packet.TopicNameInvalid.String() + ": wildcard '+' in topic name at byte 2",
		"mqtt: " + packet.TopicFilterInvalid.String() + ": '#' does not follow '/' at byte 3",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseShared(t *testing.T) {
	t.Parallel()
	type result struct {
		Group, Inner string
		OK           bool
	}
	tests := []struct {
		in   string
		want result
	}{
		{"$share/g/a/b", result{"g", "a/b", true}},
		{"$share/group/#", result{"group", "#", true}},
		{"$share/g/$share/h/x", result{"g", "$share/h/x", true}},
		{"a/b", result{}},
		{"$share", result{}},
		{"$SHARE/g/a", result{}},
		// Invalid input: no panic, and the parts as they fall.
		{"$share/g", result{}},
		{"$share/", result{}},
		{"$share//a", result{"", "a", true}},
		{"$share/g/", result{"g", "", true}},
	}
	for _, tc := range tests {
		g, in, ok := ParseShared([]byte(tc.in))
		got := result{string(g), string(in), ok}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseShared(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestIsWildcardAndLevels(t *testing.T) {
	t.Parallel()
	type result struct {
		Wildcard bool
		Levels   int
	}
	tests := []struct {
		in   string
		want result
	}{
		{"", result{false, 0}},
		{"a", result{false, 1}},
		{"/", result{false, 2}},
		{"a/", result{false, 2}},
		{"a//b", result{false, 3}},
		{"a/+/b", result{true, 3}},
		{"#", result{true, 1}},
		{"a/b/#", result{true, 3}},
		{"$share/g/a", result{false, 3}},
	}
	for _, tc := range tests {
		got := result{IsWildcard([]byte(tc.in)), Levels([]byte(tc.in))}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestValidateDoesNotAllocate(t *testing.T) {
	// Not parallel: AllocsPerRun counts every goroutine's allocations.
	name, filter, shared := []byte("sport/tennis/player1"), []byte("sport/+/player1/#"), []byte("$share/g/a/+")
	allocs := testing.AllocsPerRun(100, func() {
		if ValidName(name) != nil || ValidFilter(filter) != nil || ValidFilter(shared) != nil {
			t.Fatal("valid input rejected")
		}
	})
	if allocs != 0 {
		t.Errorf("validating valid input allocates %v times", allocs)
	}
}
