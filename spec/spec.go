package spec

import (
	_ "embed"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Version names an MQTT protocol version as written in citations.
type Version string

// The versions the catalogue covers.
const (
	V311 Version = "v3.1.1"
	V5   Version = "v5"
)

// Versions returns the supported versions, oldest first.
func Versions() []Version { return []Version{V311, V5} }

// Known reports whether v is one of the supported versions.
func (v Version) Known() bool { return v == V311 || v == V5 }

// Values of Statement.Level.
const (
	LevelMust      = "MUST"
	LevelMustNot   = "MUST NOT"
	LevelShould    = "SHOULD"
	LevelShouldNot = "SHOULD NOT"
	LevelMay       = "MAY"
)

// Values of Statement.Binds: whom the statement obliges.
const (
	BindsServer = "Server"
	BindsClient = "Client"
	BindsBoth   = "Both"
)

// Values of Statement.Check: how this project can check the statement.
const (
	// CheckCodec: a packet encoder/decoder test checks it.
	CheckCodec = "codec"
	// CheckBroker: observable black-box, over a socket, from outside a broker.
	CheckBroker = "broker"
	// CheckClientOnly: only clients are obliged; a broker test cannot observe it.
	CheckClientOnly = "client-only"
	// CheckUnobservable: it binds the server but no packet exchange reveals it.
	CheckUnobservable = "unobservable"
)

// Statement is one normative statement of a specification.
type Statement struct {
	ID      string // the spec's ID, e.g. "MQTT-3.1.2-4" (misprints corrected)
	Section string // e.g. "3.1"
	Level   string // LevelMust, LevelMustNot, ...
	Binds   string // BindsServer, BindsClient or BindsBoth
	Check   string // CheckCodec, CheckBroker, CheckClientOnly or CheckUnobservable
	Reason  string // why; always set for client-only and unobservable
	Printed string // the ID as misprinted in the spec, else empty
	Summary string // one line, in our own words
}

// Chapter returns the first number of the section, e.g. "3" for "3.1".
func (s Statement) Chapter() string {
	ch, _, _ := strings.Cut(s.Section, ".")
	return ch
}

// ServerBinding reports whether the statement obliges the server (Binds is
// Server or Both).
func (s Statement) ServerBinding() bool {
	return s.Binds == BindsServer || s.Binds == BindsBoth
}

// Checkable reports whether the statement binds the server and our tests can
// check it (Check is broker or codec). For well-formed catalogue lines this is
// "server-binding and not unobservable"; a server-binding line whose text in
// fact only obliges the client is marked client-only and is not checkable.
func (s Statement) Checkable() bool {
	return s.ServerBinding() && (s.Check == CheckBroker || s.Check == CheckCodec)
}

// Header is the header line of the catalogue files, column by column.
var Header = []string{"id", "section", "level", "binds", "check", "reason", "printed", "summary"}

var (
	//go:embed mqtt-3.1.1.tsv
	tsv311 string
	//go:embed mqtt-5.0.tsv
	tsv5 string
)

// idRE is the syntax of a statement ID: "MQTT-", dotted section numbers, "-",
// a sequence number (MQTT 5.0 has one two-level ID, MQTT-4.2-1).
var idRE = regexp.MustCompile(`^MQTT-[0-9]+(\.[0-9]+)+-[0-9]+$`)

// printedRE is the looser syntax a misprinted ID must still have.
var printedRE = regexp.MustCompile(`^MQTT-[0-9][0-9.-]*[0-9]$`)

// ValidID reports whether id has the syntax of a (correctly printed) statement ID.
func ValidID(id string) bool { return idRE.MatchString(id) }

type catalogue struct {
	list []Statement
	byID map[string]int // canonical IDs and misprinted aliases
}

var loaders = map[Version]func() (*catalogue, error){
	V311: sync.OnceValues(func() (*catalogue, error) { return load("mqtt-3.1.1.tsv", tsv311) }),
	V5:   sync.OnceValues(func() (*catalogue, error) { return load("mqtt-5.0.tsv", tsv5) }),
}

func load(name, data string) (*catalogue, error) {
	list, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("spec: %s: %w", name, err)
	}
	c := &catalogue{list: list, byID: make(map[string]int, len(list)+2)}
	for i, s := range list {
		c.byID[s.ID] = i
	}
	for i, s := range list {
		if s.Printed == "" {
			continue
		}
		if _, dup := c.byID[s.Printed]; dup {
			return nil, fmt.Errorf("spec: %s: printed form %s of %s is also an ID", name, s.Printed, s.ID)
		}
		c.byID[s.Printed] = i
	}
	return c, nil
}

func get(v Version) (*catalogue, error) {
	f, ok := loaders[v]
	if !ok {
		return nil, fmt.Errorf("spec: unknown version %q (want %q or %q)", v, V311, V5)
	}
	return f()
}

// Catalogue returns the statements of version v in ID order. The slice is a
// copy; callers may modify it.
func Catalogue(v Version) ([]Statement, error) {
	c, err := get(v)
	if err != nil {
		return nil, err
	}
	return slices.Clone(c.list), nil
}

// Lookup returns the statement of version v with the given ID. For v3.1.1 it
// also accepts the two IDs misprinted in the specification ("MQTT-3.1.2.7" and
// "MQTT-3-8.3-4"); the returned Statement carries the corrected ID.
func Lookup(v Version, id string) (Statement, bool) {
	c, err := get(v)
	if err != nil {
		return Statement{}, false
	}
	i, ok := c.byID[id]
	if !ok {
		return Statement{}, false
	}
	return c.list[i], true
}

var (
	levels = []string{LevelMust, LevelMustNot, LevelShould, LevelShouldNot, LevelMay}
	binds  = []string{BindsServer, BindsClient, BindsBoth}
	checks = []string{CheckCodec, CheckBroker, CheckClientOnly, CheckUnobservable}
)

// parse reads a catalogue file and validates every line.
func parse(data string) ([]Statement, error) {
	lines := strings.Split(strings.TrimSuffix(data, "\n"), "\n")
	if len(lines) == 0 || lines[0] != strings.Join(Header, "\t") {
		return nil, fmt.Errorf("line 1: header must be %q", strings.Join(Header, "\t"))
	}
	var out []Statement
	seen := map[string]int{}
	for n, line := range lines[1:] {
		lineNo := n + 2
		if strings.HasSuffix(line, "\r") {
			return nil, fmt.Errorf("line %d: carriage return (the file must use \\n line endings)", lineNo)
		}
		f := strings.Split(line, "\t")
		if len(f) != len(Header) {
			return nil, fmt.Errorf("line %d: %d columns, want %d", lineNo, len(f), len(Header))
		}
		for i, v := range f {
			if v != strings.TrimSpace(v) {
				return nil, fmt.Errorf("line %d: column %s has surrounding white space", lineNo, Header[i])
			}
		}
		s := Statement{ID: f[0], Section: f[1], Level: f[2], Binds: f[3], Check: f[4], Reason: f[5], Printed: f[6], Summary: f[7]}
		if err := s.validate(); err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", lineNo, s.ID, err)
		}
		if prev, dup := seen[s.ID]; dup {
			return nil, fmt.Errorf("line %d: %s: duplicate of line %d", lineNo, s.ID, prev)
		}
		seen[s.ID] = lineNo
		out = append(out, s)
	}
	return out, nil
}

func (s Statement) validate() error {
	switch {
	case !ValidID(s.ID):
		return fmt.Errorf("malformed id")
	case !strings.HasPrefix(s.ID, "MQTT-"+s.Section+".") && !strings.HasPrefix(s.ID, "MQTT-"+s.Section+"-"):
		return fmt.Errorf("section %q does not match the id", s.Section)
	case strings.Count(s.Section, ".") != 1:
		return fmt.Errorf("section %q is not of the form N.N", s.Section)
	case !slices.Contains(levels, s.Level):
		return fmt.Errorf("level %q not one of %q", s.Level, levels)
	case !slices.Contains(binds, s.Binds):
		return fmt.Errorf("binds %q not one of %q", s.Binds, binds)
	case !slices.Contains(checks, s.Check):
		return fmt.Errorf("check %q not one of %q", s.Check, checks)
	case (s.Check == CheckUnobservable || s.Check == CheckClientOnly) && s.Reason == "":
		return fmt.Errorf("check %s needs a reason", s.Check)
	case s.Printed != "" && (s.Printed == s.ID || !printedRE.MatchString(s.Printed)):
		return fmt.Errorf("printed %q must be a differing MQTT-... form", s.Printed)
	case s.Summary == "":
		return fmt.Errorf("empty summary")
	}
	return nil
}
