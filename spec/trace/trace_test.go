package trace

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/skybridge-mq/skybridge/spec"
)

func TestParse(t *testing.T) {
	type cite struct {
		line int
		v    spec.Version
		id   string
	}
	type prob struct {
		line int
		kind ProblemKind
		text string
	}
	tests := []struct {
		name  string
		src   string
		cites []cite
		probs []prob
	}{
		{name: "v5", src: "// [v5 MQTT-3.3.1-5]", cites: []cite{{1, spec.V5, "MQTT-3.3.1-5"}}},
		{name: "v3.1.1", src: "// [v3.1.1 MQTT-3.1.2-4]", cites: []cite{{1, spec.V311, "MQTT-3.1.2-4"}}},
		{name: "two-level v5 id", src: `t.Run("transport [v5 MQTT-4.2-1]", f)`, cites: []cite{{1, spec.V5, "MQTT-4.2-1"}}},
		{name: "misprint alias", src: "[v3.1.1 MQTT-3.1.2.7]", cites: []cite{{1, spec.V311, "MQTT-3.1.2-7"}}},
		{name: "misprint alias 2", src: "[v3.1.1 MQTT-3-8.3-4]", cites: []cite{{1, spec.V311, "MQTT-3.8.3-4"}}},
		{name: "several on a line", src: "[v5 MQTT-3.1.0-1][v3.1.1 MQTT-3.1.0-1] and [v5 MQTT-3.1.0-2]",
			cites: []cite{{1, spec.V5, "MQTT-3.1.0-1"}, {1, spec.V311, "MQTT-3.1.0-1"}, {1, spec.V5, "MQTT-3.1.0-2"}}},
		{name: "line numbers", src: "package x\n\n// [v5 MQTT-3.1.0-1]\n\n// [v5 MQTT-3.1.0-2]\n",
			cites: []cite{{3, spec.V5, "MQTT-3.1.0-1"}, {5, spec.V5, "MQTT-3.1.0-2"}}},
		{name: "bare", src: "// [MQTT-3.1.2-4]", probs: []prob{{1, BareCitation, "[MQTT-3.1.2-4]"}}},
		{name: "bare list", src: "// [MQTT-3.1.2-4, MQTT-3.1.2-5]", probs: []prob{{1, BareCitation, "[MQTT-3.1.2-4, MQTT-3.1.2-5]"}}},
		{name: "unknown id", src: "[v5 MQTT-9.9.9-9]", probs: []prob{{1, UnknownID, "[v5 MQTT-9.9.9-9]"}}},
		{name: "id of the other version", src: "[v5 MQTT-7.1.1-1]", probs: []prob{{1, UnknownID, "[v5 MQTT-7.1.1-1]"}}},
		{name: "misprint is v3.1.1 only", src: "[v5 MQTT-3.1.2.7]", probs: []prob{{1, UnknownID, "[v5 MQTT-3.1.2.7]"}}},
		{name: "unknown version", src: "[v5.0 MQTT-3.1.0-1]", probs: []prob{{1, UnknownVersion, "[v5.0 MQTT-3.1.0-1]"}}},
		{name: "upper-case version", src: "[V5 MQTT-3.1.0-1]", probs: []prob{{1, UnknownVersion, "[V5 MQTT-3.1.0-1]"}}},
		{name: "good and bad", src: "[v5 MQTT-3.12.4-1] [MQTT-3.12.4-1]",
			cites: []cite{{1, spec.V5, "MQTT-3.12.4-1"}}, probs: []prob{{1, BareCitation, "[MQTT-3.12.4-1]"}}},
		{name: "unbracketed id is not a citation", src: "// see MQTT-3.1.0-1"},
		{name: "map index is not a citation", src: `m["MQTT-3.1.0-1"]`},
		{name: "other brackets", src: "x := []string{\"a\"}[0] // [v5] [MQTT]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cites, probs := Parse("f_test.go", []byte(tt.src))
			var gotC []cite
			for _, c := range cites {
				if c.File != "f_test.go" {
					t.Errorf("citation file = %q", c.File)
				}
				gotC = append(gotC, cite{c.Line, c.Version, c.ID})
			}
			var gotP []prob
			for _, p := range probs {
				gotP = append(gotP, prob{p.Line, p.Kind, p.Text})
			}
			if !slices.Equal(gotC, tt.cites) {
				t.Errorf("citations = %v, want %v", gotC, tt.cites)
			}
			if !slices.Equal(gotP, tt.probs) {
				t.Errorf("problems = %v, want %v", gotP, tt.probs)
			}
		})
	}
}

func TestScanFixture(t *testing.T) {
	rep, err := Scan(filepath.Join("testdata", "repo"))
	if err != nil {
		t.Fatal(err)
	}
	// alpha/alpha_test.go, beta/beta_test.go, gamma/spec/g_test.go; everything
	// else is a non-test file or in a skipped directory.
	if rep.Files != 3 {
		t.Errorf("scanned %d files, want 3", rep.Files)
	}
	tests := []struct {
		v    spec.Version
		id   string
		want []string
	}{
		{spec.V5, "MQTT-3.1.0-1", []string{"alpha/alpha_test.go:5", "alpha/alpha_test.go:15"}},
		{spec.V311, "MQTT-3.1.0-1", []string{"alpha/alpha_test.go:5"}},
		{spec.V5, "MQTT-3.1.0-2", []string{"alpha/alpha_test.go:7"}},
		{spec.V311, "MQTT-3.1.2-7", []string{"alpha/alpha_test.go:11"}},
		{spec.V311, "MQTT-3.8.3-4", []string{"alpha/alpha_test.go:11", "alpha/alpha_test.go:12"}},
		{spec.V5, "MQTT-4.6.0-2", []string{"alpha/alpha_test.go:16"}},
		// Only beta cites v5 MQTT-3.12.4-1: alpha.go is not a test file and
		// the other citations are in skipped directories.
		{spec.V5, "MQTT-3.12.4-1", []string{"beta/beta_test.go:9"}},
		{spec.V311, "MQTT-3.12.4-1", []string{"gamma/spec/g_test.go:3"}},
		{spec.V311, "MQTT-3.1.2-4", nil},
	}
	for _, tt := range tests {
		var got []string
		for _, l := range rep.Cited(tt.v, tt.id) {
			got = append(got, l.String())
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Cited(%s, %s) = %v, want %v", tt.v, tt.id, got, tt.want)
		}
	}
	n := 0
	for _, v := range spec.Versions() {
		for _, locs := range rep.Citations[v] {
			n += len(locs)
		}
	}
	if n != 10 {
		t.Errorf("%d citations in all, want 10", n)
	}

	var probs []string
	for _, p := range rep.Problems {
		probs = append(probs, fmt.Sprintf("%s %s %s", p.Location, p.Kind, p.Text))
	}
	wantProbs := []string{
		"beta/beta_test.go:3 bare citation [MQTT-3.1.2-4]",
		"beta/beta_test.go:4 bare citation [MQTT-3.1.2-4, MQTT-3.1.2-5]",
		"beta/beta_test.go:5 unknown statement [v5 MQTT-9.9.9-9]",
		"beta/beta_test.go:6 unknown statement [v5 MQTT-3.1.2.7]",
		"beta/beta_test.go:7 unknown version [v5.0 MQTT-3.1.0-1]",
		"beta/beta_test.go:8 unknown statement [v5 MQTT-7.1.1-1]",
		"beta/beta_test.go:9 bare citation [MQTT-3.12.4-1]",
	}
	if !slices.Equal(probs, wantProbs) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(probs, "\n"), strings.Join(wantProbs, "\n"))
	}
}

func TestScanMissingRoot(t *testing.T) {
	if _, err := Scan(filepath.Join("testdata", "no-such-dir")); err == nil {
		t.Error("no error for a missing root")
	}
}

// TestScanRepoSkipsSpec scans the whole repository, as the trace command does,
// and checks that nothing under spec/ (these tests and their fixtures) counts.
func TestScanRepoSkipsSpec(t *testing.T) {
	rep, err := Scan(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range spec.Versions() {
		for id, locs := range rep.Citations[v] {
			for _, l := range locs {
				if strings.HasPrefix(l.File, "spec/") {
					t.Errorf("%s %s cited at %s, inside spec/", v, id, l)
				}
			}
		}
	}
	for _, p := range rep.Problems {
		if strings.HasPrefix(p.File, "spec/") {
			t.Errorf("problem reported inside spec/: %s", p)
		}
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{Location{"a_test.go", 3}, BareCitation, "[MQTT-3.1.2-4]"},
			"a_test.go:3: bare citation [MQTT-3.1.2-4]: say which version, e.g. [v5 MQTT-3.1.2-4] or [v3.1.1 MQTT-3.1.2-4]"},
		{Problem{Location{"a_test.go", 4}, UnknownVersion, "[v5.0 MQTT-3.1.0-1]"},
			"a_test.go:4: unknown version [v5.0 MQTT-3.1.0-1]: the version must be v5 or v3.1.1"},
		{Problem{Location{"a_test.go", 5}, UnknownID, "[v5 MQTT-9.9.9-9]"},
			"a_test.go:5: unknown statement [v5 MQTT-9.9.9-9]: no such statement in that version's catalogue"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("got  %q\nwant %q", got, tt.want)
		}
	}
}

func TestCoverage(t *testing.T) {
	cites := func(ids ...string) map[string][]Location {
		m := map[string][]Location{}
		for _, id := range ids {
			m[id] = []Location{{"x_test.go", 1}}
		}
		return m
	}
	rep := Report{Citations: map[spec.Version]map[string][]Location{
		// Two checkable chapter-3 statements and one client-only one.
		spec.V5: cites("MQTT-3.1.0-1", "MQTT-3.1.0-2", "MQTT-3.2.2-4"),
	}}
	for _, v := range spec.Versions() {
		list, err := spec.Catalogue(v)
		if err != nil {
			t.Fatal(err)
		}
		cov, err := rep.Coverage(v)
		if err != nil {
			t.Fatal(err)
		}
		// Per-chapter rows add up to the total and match the catalogue.
		var sum Row
		var chapters []string
		for _, r := range cov.Chapters {
			chapters = append(chapters, r.Chapter)
			sum.Statements += r.Statements
			sum.ServerBinding += r.ServerBinding
			sum.Checkable += r.Checkable
			sum.Cited += r.Cited
			sum.CitedCheckable += r.CitedCheckable
		}
		sum.Chapter = "total"
		if sum != cov.Total {
			t.Errorf("%s: chapters add up to %+v, total is %+v", v, sum, cov.Total)
		}
		if cov.Total.Statements != len(list) {
			t.Errorf("%s: total statements %d, want %d", v, cov.Total.Statements, len(list))
		}
		wantCh := map[spec.Version][]string{spec.V311: {"1", "2", "3", "4", "6", "7"}, spec.V5: {"1", "2", "3", "4", "6"}}[v]
		if !slices.Equal(chapters, wantCh) {
			t.Errorf("%s: chapters %v, want %v", v, chapters, wantCh)
		}
		checkable := 0
		for _, s := range list {
			if s.Checkable() {
				checkable++
			}
		}
		if cov.Total.Checkable != checkable || len(cov.Uncited)+cov.Total.CitedCheckable != checkable {
			t.Errorf("%s: checkable %d, uncited %d, cited-checkable %d; catalogue has %d checkable",
				v, cov.Total.Checkable, len(cov.Uncited), cov.Total.CitedCheckable, checkable)
		}
	}

	cov, err := rep.Coverage(spec.V5)
	if err != nil {
		t.Fatal(err)
	}
	if cov.Total.Cited != 3 || cov.Total.CitedCheckable != 2 {
		t.Errorf("v5 cited = %d, cited-checkable = %d; want 3 and 2", cov.Total.Cited, cov.Total.CitedCheckable)
	}
	for _, s := range cov.Uncited {
		if s.ID == "MQTT-3.1.0-1" || s.ID == "MQTT-3.1.0-2" {
			t.Errorf("%s listed as uncited", s.ID)
		}
	}
	if want := 100 * 2 / float64(cov.Total.Checkable); cov.Total.Percent() != want {
		t.Errorf("percent = %v, want %v", cov.Total.Percent(), want)
	}
	if _, err := rep.Coverage("v4"); err == nil {
		t.Error("no error for an unknown version")
	}
}

func TestRowPercent(t *testing.T) {
	tests := []struct {
		r    Row
		want float64
	}{
		{Row{Checkable: 0, CitedCheckable: 0}, 0},
		{Row{Checkable: 4, CitedCheckable: 1}, 25},
		{Row{Checkable: 3, CitedCheckable: 3}, 100},
	}
	for _, tt := range tests {
		if got := tt.r.Percent(); got != tt.want {
			t.Errorf("%+v: Percent() = %v, want %v", tt.r, got, tt.want)
		}
	}
}
