package topic

import (
	"bytes"
	"strconv"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// MaxLen is the longest topic name or filter in bytes: an MQTT UTF-8
// string carries a two-byte length.
const MaxLen = 65535

// sharePrefix starts a shared subscription's filter (case-sensitive).
const sharePrefix = "$share/"

// Error is a topic name or filter that breaks the rules. Code is the
// reason code a 5.0 server answers with: packet.TopicNameInvalid (0x90) for
// a PUBLISH topic, packet.TopicFilterInvalid (0x8F) for a subscription.
type Error struct {
	Code   packet.ReasonCode
	Reason string
}

func (e *Error) Error() string {
	return "mqtt: " + e.Code.String() + ": " + e.Reason
}

func nameErr(reason string) *Error {
	return &Error{Code: packet.TopicNameInvalid, Reason: reason}
}

func filterErr(reason string) *Error {
	return &Error{Code: packet.TopicFilterInvalid, Reason: reason}
}

// ValidName checks a topic name (a PUBLISH topic, a will topic): non-empty,
// at most MaxLen bytes, no wildcard and no U+0000. UTF-8 well-formedness is
// the codec's job. A name beginning with '$' is valid here; whether a client
// may publish to one is the broker's policy.
func ValidName(name []byte) error {
	if len(name) == 0 {
		return nameErr("topic name is empty")
	}
	if len(name) > MaxLen {
		return nameErr("topic name is longer than 65535 bytes")
	}
	for i, c := range name {
		switch c {
		case '+', '#':
			return nameErr("wildcard '" + string(c) + "' in topic name at byte " + strconv.Itoa(i))
		case 0:
			return nameErr("U+0000 in topic name at byte " + strconv.Itoa(i))
		}
	}
	return nil
}

// ValidFilter checks a topic filter: non-empty, at most MaxLen bytes, no
// U+0000, '#' only as the whole last level, '+' only as a whole level. A
// filter beginning with "$share/" is a shared subscription
// "$share/{name}/{filter}": the share name is non-empty and has no '/', '+'
// or '#', and the filter after it is non-empty and valid by the rules above.
func ValidFilter(filter []byte) error {
	if len(filter) == 0 {
		return filterErr("topic filter is empty")
	}
	if len(filter) > MaxLen {
		return filterErr("topic filter is longer than 65535 bytes")
	}
	if i := bytes.IndexByte(filter, 0); i >= 0 {
		return filterErr("U+0000 in topic filter at byte " + strconv.Itoa(i))
	}
	rest, shared := bytes.CutPrefix(filter, []byte(sharePrefix))
	if !shared {
		return validLevels(filter, 0)
	}
	slash := bytes.IndexByte(rest, '/')
	if slash < 0 {
		return filterErr("shared subscription has no '/' and topic filter after its share name")
	}
	name := rest[:slash]
	if len(name) == 0 {
		return filterErr("shared subscription has an empty share name")
	}
	if i := bytes.IndexAny(name, "+#"); i >= 0 {
		return filterErr("wildcard '" + string(name[i]) + "' in share name")
	}
	inner := rest[slash+1:]
	if len(inner) == 0 {
		return filterErr("shared subscription has an empty topic filter")
	}
	return validLevels(inner, len(filter)-len(inner))
}

// validLevels checks the wildcard placement of a (non-empty) filter; off is
// where f starts in the caller's filter, for the error message.
func validLevels(f []byte, off int) error {
	for i, c := range f {
		switch c {
		case '#':
			if i > 0 && f[i-1] != '/' {
				return filterErr("'#' does not follow '/' at byte " + strconv.Itoa(off+i))
			}
			if i != len(f)-1 {
				return filterErr("'#' is not the last character at byte " + strconv.Itoa(off+i))
			}
		case '+':
			if (i > 0 && f[i-1] != '/') || (i+1 < len(f) && f[i+1] != '/') {
				return filterErr("'+' does not fill its level at byte " + strconv.Itoa(off+i))
			}
		}
	}
	return nil
}

// ParseShared splits a shared subscription "$share/g/a/b" into its share
// name "g" and its topic filter "a/b", both aliasing filter. ok is false for
// a filter that does not start with "$share/" or has no '/' after the share
// name. It assumes ValidFilter passed; on other input it never panics, and
// the name and filter it returns may be empty.
func ParseShared(filter []byte) (group, inner []byte, ok bool) {
	rest, shared := bytes.CutPrefix(filter, []byte(sharePrefix))
	if !shared {
		return nil, nil, false
	}
	slash := bytes.IndexByte(rest, '/')
	if slash < 0 {
		return nil, nil, false
	}
	return rest[:slash], rest[slash+1:], true
}

// IsWildcard reports whether filter contains '+' or '#' (for a shared
// filter, the share name cannot, so this is about its topic filter).
func IsWildcard(filter []byte) bool {
	return bytes.IndexByte(filter, '+') >= 0 || bytes.IndexByte(filter, '#') >= 0
}

// Levels returns the number of levels of a topic name or filter: one more
// than the number of '/' ("a" 1, "a/" 2, "/" 2), and 0 for an empty one.
// It counts the bytes as given; for a shared subscription pass the filter
// that ParseShared returns.
func Levels(topic []byte) int {
	if len(topic) == 0 {
		return 0
	}
	return bytes.Count(topic, []byte{'/'}) + 1
}
