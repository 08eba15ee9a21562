package auth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/bcrypt"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// dummyHash is compared against when the file has no bcrypt entry at all
// (an unknown user still costs one bcrypt comparison).
const dummyHash = "$2a$10$wLvk6/HW3hex3lkNrBSKJuHqW6gFZjDGXlHeuSrCz6O.TLGX8CBUa"

// DefaultCost is the bcrypt cost HashPassword uses for a cost of 0.
const DefaultCost = bcrypt.DefaultCost

type key struct{ tenant, user string }

type entry struct {
	bcrypt []byte
	scram  *Credentials
}

type table struct {
	entries map[key]*entry
	dummy   []byte // a real hash of the file (or dummyHash) for unknown users
	// fakeIter is the iteration count SCRAM announces for unknown users:
	// that of the file's first SCRAM entry, so that it gives nothing away.
	fakeIter int
	n        int
}

// PasswordFile authenticates clients against a password file. It is safe
// for concurrent use; Replace swaps the whole table atomically.
//
// # Format
//
// One entry per line, "tenant/user:secret". Blank lines and lines whose
// first non-blank character is '#' are ignored; surrounding blanks and a
// trailing '\r' are trimmed. The name is split at the first ':' (so a user
// name cannot contain ':') and at its first '/' into a non-empty tenant and
// a non-empty user. The secret is one of:
//
//	$2a$10$...                               a bcrypt hash ($2a$, $2b$ or $2y$): HashPassword
//	SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
//	                                         SCRAM credentials (base64): DeriveSCRAM, Credentials.String
//
// A user may have one entry of each kind (bcrypt for CONNECT passwords,
// SCRAM for enhanced authentication); two of the same kind are an error.
// Example (both entries for the password "pencil"; the SCRAM one is RFC
// 7677's example):
//
//	# acme's devices
//	acme/sensor-1:$2a$10$ZlwDyfsgYAHtWKo5DCbuHuyk81t39W4wtZITKYTSRNEE2reMDQPuK
//	acme/sensor-1:SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=
//
// A client's user name "tenant/user" names its entry; a user name without
// '/' names the entry of the listener's default tenant (as
// broker.TenantOf splits it).
type PasswordFile struct {
	tab atomic.Pointer[table]
}

// NewPasswordFile parses data.
func NewPasswordFile(data []byte) (*PasswordFile, error) {
	t, err := parsePasswordFile(data)
	if err != nil {
		return nil, err
	}
	p := &PasswordFile{}
	p.tab.Store(t)
	return p, nil
}

// Replace parses data and, if it is valid, makes it the table in force.
// On error the previous table stays.
func (p *PasswordFile) Replace(data []byte) error {
	t, err := parsePasswordFile(data)
	if err != nil {
		return err
	}
	p.tab.Store(t)
	return nil
}

// Len returns the number of entries in force.
func (p *PasswordFile) Len() int {
	if t := p.tab.Load(); t != nil {
		return t.n
	}
	return 0
}

func (p *PasswordFile) table() *table {
	if t := p.tab.Load(); t != nil {
		return t
	}
	return &table{dummy: []byte(dummyHash), fakeIter: DefaultIterations}
}

// lineError is a problem on one line; it never quotes the secret.
func lineError(n int, format string, args ...any) error {
	return fmt.Errorf("password file line %d: %s", n, fmt.Sprintf(format, args...))
}

func parsePasswordFile(data []byte) (*table, error) {
	t := &table{entries: map[key]*entry{}}
	var errs []error
	for n, line := range bytes.Split(data, []byte{'\n'}) {
		ln := n + 1
		s := strings.TrimSpace(string(line))
		if s == "" || s[0] == '#' {
			continue
		}
		name, secret, ok := strings.Cut(s, ":")
		if !ok {
			errs = append(errs, lineError(ln, "no ':' between name and secret"))
			continue
		}
		tenant, user, ok := strings.Cut(name, "/")
		if !ok || tenant == "" || user == "" {
			errs = append(errs, lineError(ln, "name %q is not tenant/user", name))
			continue
		}
		k := key{tenant, user}
		e := t.entries[k]
		if e == nil {
			e = &entry{}
		}
		switch {
		case strings.HasPrefix(secret, "$2a$") || strings.HasPrefix(secret, "$2b$") || strings.HasPrefix(secret, "$2y$"):
			if _, err := bcrypt.Cost([]byte(secret)); err != nil || len(secret) != 60 {
				errs = append(errs, lineError(ln, "malformed bcrypt hash for %q", name))
				continue
			}
			if e.bcrypt != nil {
				errs = append(errs, lineError(ln, "second bcrypt entry for %q", name))
				continue
			}
			e.bcrypt = []byte(secret)
			if t.dummy == nil {
				t.dummy = e.bcrypt
			}
		case strings.HasPrefix(secret, scramPrefix):
			c, err := ParseCredentials(secret)
			if err != nil {
				errs = append(errs, lineError(ln, "%q: %v", name, err))
				continue
			}
			if e.scram != nil {
				errs = append(errs, lineError(ln, "second SCRAM entry for %q", name))
				continue
			}
			e.scram = &c
			if t.fakeIter == 0 {
				t.fakeIter = c.Iterations
			}
		default:
			errs = append(errs, lineError(ln, "secret of %q is neither a bcrypt hash ($2a$...) nor SCRAM credentials (%s...)", name, scramPrefix))
			continue
		}
		t.entries[k] = e
		t.n++
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if t.dummy == nil {
		t.dummy = []byte(dummyHash)
	}
	if t.fakeIter == 0 {
		t.fakeIter = DefaultIterations
	}
	return t, nil
}

// HashPassword returns the bcrypt hash of pw for a password file entry
// (cost 0: DefaultCost). Passwords longer than 72 bytes are refused
// (bcrypt ignores what follows). The salt comes from the operating
// system's random source inside bcrypt: this is for tools (`skybridge
// passwd`), not for the broker's core.
func HashPassword(pw []byte, cost int) ([]byte, error) {
	if cost == 0 {
		cost = DefaultCost
	}
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return nil, fmt.Errorf("auth: bcrypt cost %d outside %d..%d", cost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	return bcrypt.GenerateFromPassword(pw, cost)
}

// ReadPassword reads a password for a tool (`skybridge passwd`): one line
// of r, without its line ending; an empty one is refused.
func ReadPassword(r io.Reader) ([]byte, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && line == "" {
		return nil, errors.New("no password on standard input")
	}
	pw := []byte(strings.TrimRight(line, "\r\n"))
	if len(pw) == 0 {
		return nil, errors.New("empty password")
	}
	return pw, nil
}

// Line formats a password file entry.
func Line(tenant, user string, secret []byte) (string, error) {
	if tenant == "" || user == "" || strings.ContainsAny(tenant, "/:\n\r") || strings.ContainsAny(user, ":\n\r") {
		return "", fmt.Errorf("auth: %q/%q cannot be written as tenant/user in a password file", tenant, user)
	}
	return tenant + "/" + user + ":" + string(secret), nil
}

// Decide implements Decider: a client with a user name that has a bcrypt
// entry is recognised and its password checked; any other client is passed
// on, after a comparison against a dummy hash when it sent a user name
// (so that timing does not tell which names exist).
func (p *PasswordFile) Decide(req *broker.AuthRequest) (Identity, bool) {
	if !req.HasUser {
		return Identity{}, false
	}
	t := p.table()
	tenant, user := broker.TenantOf(req.Username, req.DefaultTenant)
	e := t.entries[key{tenant, user}]
	if e == nil || e.bcrypt == nil {
		_ = bcrypt.CompareHashAndPassword(t.dummy, req.Password)
		return Identity{}, false
	}
	if bcrypt.CompareHashAndPassword(e.bcrypt, req.Password) != nil {
		return refused(packet.BadUserNameOrPassword), true
	}
	return accepted(tenant, user), true
}

// Authenticate implements broker.Authenticator: a client the file does not
// know is refused with 0x86, like a wrong password.
func (p *PasswordFile) Authenticate(req *broker.AuthRequest) broker.AuthResult {
	if id, ok := p.Decide(req); ok {
		return id.Result()
	}
	return broker.AuthResult{Code: packet.BadUserNameOrPassword}
}

// scramCredentials returns the SCRAM credentials of tenant/user, and the
// iteration count to announce for unknown users.
func (p *PasswordFile) scramCredentials(tenant, user string) (*Credentials, int) {
	t := p.table()
	if e := t.entries[key{tenant, user}]; e != nil && e.scram != nil {
		return e.scram, t.fakeIter
	}
	return nil, t.fakeIter
}
