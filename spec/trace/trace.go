// Package trace finds the citations of MQTT normative statements in the
// project's tests and measures how much of the spec catalogue they cover.
//
// A test cites a statement by writing its version and ID in square brackets,
// anywhere in a *_test.go file (comment, test name, string):
//
//	[v5 MQTT-3.3.1-5]
//	[v3.1.1 MQTT-3.1.2-4]
//
// For v3.1.1 the two IDs misprinted in the specification ([v3.1.1 MQTT-3.1.2.7]
// and [v3.1.1 MQTT-3-8.3-4]) are accepted and counted under the corrected ID.
// A bracketed ID without a version ([MQTT-3.1.2-4]) is ambiguous, because the
// numbering differs between versions, and is reported as a problem, as are
// unknown versions ([v5.0 MQTT-...]) and IDs not in the catalogue.
//
// Scan skips directories named vendor or testdata, hidden directories (name
// starting with "." or "_", which the go tool ignores as well) and the
// top-level spec directory of the scanned root: the catalogue package's own
// tests and fixtures contain citations that exercise the scanner and must not
// count as coverage.
package trace

import (
	"cmp"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/skybridge-mq/skybridge/spec"
)

// Location is a place in a scanned file. File is slash-separated and relative
// to the scanned root.
type Location struct {
	File string
	Line int
}

func (l Location) String() string { return l.File + ":" + strconv.Itoa(l.Line) }

// Citation is one well-formed citation of a known statement.
type Citation struct {
	Location
	Version spec.Version
	ID      string // the catalogue's ID (a misprinted form is resolved)
	Text    string // the citation as written, e.g. "[v5 MQTT-3.3.1-5]"
}

// ProblemKind classifies a bad citation.
type ProblemKind string

// The kinds of bad citation.
const (
	BareCitation   ProblemKind = "bare citation"
	UnknownVersion ProblemKind = "unknown version"
	UnknownID      ProblemKind = "unknown statement"
)

// Problem is a citation that cannot be counted.
type Problem struct {
	Location
	Kind ProblemKind
	Text string // the citation as written
}

func (p Problem) String() string {
	var hint string
	switch p.Kind {
	case BareCitation:
		hint = fmt.Sprintf("say which version, e.g. [%s %s] or [%s %s]", spec.V5, bareID(p.Text), spec.V311, bareID(p.Text))
	case UnknownVersion:
		hint = fmt.Sprintf("the version must be %s or %s", spec.V5, spec.V311)
	case UnknownID:
		hint = "no such statement in that version's catalogue"
	}
	return fmt.Sprintf("%s: %s %s: %s", p.Location, p.Kind, p.Text, hint)
}

func bareID(text string) string {
	return strings.TrimSpace(strings.Trim(text, "[]"))
}

var (
	// citeRE matches a versioned citation. The version is loose here so that
	// near misses ("v5.0", "V5") are reported instead of silently ignored.
	citeRE = regexp.MustCompile(`\[([vV][0-9][0-9.]*) +(MQTT-[0-9][0-9.-]*[0-9])\]`)
	// bareRE matches an ID (or list of IDs) in brackets with no version.
	bareRE = regexp.MustCompile(`\[ *MQTT-[0-9][^\]\n]*\]`)
)

// Parse finds the citations and bad citations in one file's text. file is
// only used to fill in the locations.
func Parse(file string, src []byte) ([]Citation, []Problem) {
	var cites []Citation
	var probs []Problem
	for i, line := range strings.Split(string(src), "\n") {
		if !strings.Contains(line, "MQTT-") {
			continue
		}
		loc := Location{File: file, Line: i + 1}
		for _, m := range citeRE.FindAllStringSubmatch(line, -1) {
			text, v, id := m[0], spec.Version(m[1]), m[2]
			if !v.Known() {
				probs = append(probs, Problem{loc, UnknownVersion, text})
				continue
			}
			s, ok := spec.Lookup(v, id)
			if !ok {
				probs = append(probs, Problem{loc, UnknownID, text})
				continue
			}
			cites = append(cites, Citation{loc, v, s.ID, text})
		}
		for _, text := range bareRE.FindAllString(line, -1) {
			probs = append(probs, Problem{loc, BareCitation, text})
		}
	}
	return cites, probs
}

// Report is the result of a Scan.
type Report struct {
	Root  string
	Files int // number of *_test.go files scanned
	// Citations maps version and statement ID to the places citing it.
	Citations map[spec.Version]map[string][]Location
	Problems  []Problem
}

// Cited returns the places citing statement id of version v.
func (r Report) Cited(v spec.Version, id string) []Location { return r.Citations[v][id] }

// Scan walks root and collects the citations in every *_test.go file, skipping
// the directories described in the package documentation.
func Scan(root string) (Report, error) {
	rep := Report{Root: root, Citations: map[spec.Version]map[string][]Location{}}
	for _, v := range spec.Versions() {
		rep.Citations[v] = map[string][]Location{}
	}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && skipDir(rel, d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(d.Name(), "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rep.Files++
		cites, probs := Parse(rel, src)
		for _, c := range cites {
			rep.Citations[c.Version][c.ID] = append(rep.Citations[c.Version][c.ID], c.Location)
		}
		rep.Problems = append(rep.Problems, probs...)
		return nil
	})
	if err != nil {
		return Report{}, fmt.Errorf("trace: %w", err)
	}
	return rep, nil
}

func skipDir(rel, name string) bool {
	switch {
	case name == "vendor", name == "testdata":
		return true
	case strings.HasPrefix(name, "."), strings.HasPrefix(name, "_"):
		return true
	case rel == "spec":
		return true
	}
	return false
}

// Row is one line of a coverage table.
type Row struct {
	Chapter        string // "1", "2", ... or "total"
	Statements     int    // all statements
	ServerBinding  int    // binds Server or Both
	Checkable      int    // server-binding and checkable by our tests (spec.Statement.Checkable)
	Cited          int    // statements cited at least once (checkable or not)
	CitedCheckable int    // checkable statements cited at least once
}

// Percent is the share of checkable statements that are cited, 0 when there
// are none.
func (r Row) Percent() float64 {
	if r.Checkable == 0 {
		return 0
	}
	return 100 * float64(r.CitedCheckable) / float64(r.Checkable)
}

func (r *Row) add(s spec.Statement, cited bool) {
	r.Statements++
	if s.ServerBinding() {
		r.ServerBinding++
	}
	if s.Checkable() {
		r.Checkable++
	}
	if cited {
		r.Cited++
		if s.Checkable() {
			r.CitedCheckable++
		}
	}
}

// Coverage is the per-chapter coverage of one version's catalogue.
type Coverage struct {
	Version  spec.Version
	Chapters []Row // in chapter order
	Total    Row
	Uncited  []spec.Statement // checkable statements nobody cites, in ID order
}

// Coverage computes the coverage of version v's catalogue by the report's
// citations.
func (r Report) Coverage(v spec.Version) (Coverage, error) {
	list, err := spec.Catalogue(v)
	if err != nil {
		return Coverage{}, err
	}
	cov := Coverage{Version: v, Total: Row{Chapter: "total"}}
	rows := map[string]*Row{}
	for _, s := range list {
		ch := s.Chapter()
		row := rows[ch]
		if row == nil {
			row = &Row{Chapter: ch}
			rows[ch] = row
		}
		cited := len(r.Citations[v][s.ID]) > 0
		row.add(s, cited)
		cov.Total.add(s, cited)
		if s.Checkable() && !cited {
			cov.Uncited = append(cov.Uncited, s)
		}
	}
	for _, row := range rows {
		cov.Chapters = append(cov.Chapters, *row)
	}
	slices.SortFunc(cov.Chapters, func(a, b Row) int {
		x, _ := strconv.Atoi(a.Chapter)
		y, _ := strconv.Atoi(b.Chapter)
		return cmp.Compare(x, y)
	})
	return cov, nil
}
