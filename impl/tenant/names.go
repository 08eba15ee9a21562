package tenant

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Name rules. Every identity the broker accepts passes through ValidName and
// ValidUser, whatever produced it (a JWT claim, a webhook answer, a
// certificate attribute, a password file, a user name): tenant names end up
// in store keys, metric labels, log lines, $SYS topics and admin URLs, so
// they are kept to a small alphabet; user names are free text, minus what
// makes logs and records ambiguous.
const (
	// MaxNameLen is the longest tenant name, in bytes.
	MaxNameLen = 64
	// MaxUserLen is the longest user name, in bytes.
	MaxUserLen = 256
)

// ErrInvalidName is the error of a tenant or user name that breaks the rules.
var ErrInvalidName = errors.New("invalid name")

// ValidName checks a tenant name: 1 to MaxNameLen bytes of ASCII letters,
// digits, '.', '_' and '-', starting with a letter or a digit (names
// starting otherwise, like the metrics' "_other", are the broker's own).
func ValidName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w: tenant name must be 1 to %d bytes, got %d", ErrInvalidName, MaxNameLen, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return fmt.Errorf("%w: tenant name %q: byte %d (%q) is not a letter, digit, '.', '_' or '-' (nor first)", ErrInvalidName, name, i, c)
		}
	}
	return nil
}

// ValidUser checks a user name: valid UTF-8 of at most MaxUserLen bytes
// without control characters. The empty name (an anonymous client) is valid.
func ValidUser(user string) error {
	if len(user) > MaxUserLen {
		return fmt.Errorf("%w: user name longer than %d bytes", ErrInvalidName, MaxUserLen)
	}
	if !utf8.ValidString(user) {
		return fmt.Errorf("%w: user name is not valid UTF-8", ErrInvalidName)
	}
	for _, r := range user {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: user name %q holds a control character", ErrInvalidName, user)
		}
	}
	return nil
}
