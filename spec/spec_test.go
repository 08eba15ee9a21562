package spec

import (
	"cmp"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestCatalogueCounts(t *testing.T) {
	tests := []struct {
		v    Version
		want int
	}{
		{V311, 141},
		{V5, 251},
	}
	for _, tt := range tests {
		t.Run(string(tt.v), func(t *testing.T) {
			list, err := Catalogue(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != tt.want {
				t.Errorf("%d statements, want %d", len(list), tt.want)
			}
		})
	}
}

func TestCatalogueUnknownVersion(t *testing.T) {
	for _, v := range []Version{"", "v5.0", "v3", "V5"} {
		if _, err := Catalogue(v); err == nil {
			t.Errorf("Catalogue(%q): no error", v)
		}
		if _, ok := Lookup(v, "MQTT-3.1.0-1"); ok {
			t.Errorf("Lookup(%q, ...) found a statement", v)
		}
	}
}

// TestCatalogueLines checks, for each version, the properties every line must
// have beyond what parse already enforces.
func TestCatalogueLines(t *testing.T) {
	for _, v := range Versions() {
		t.Run(string(v), func(t *testing.T) {
			list, err := Catalogue(v)
			if err != nil {
				t.Fatal(err)
			}
			ids := map[string]bool{}
			for _, s := range list {
				if !ValidID(s.ID) {
					t.Errorf("%s: malformed id", s.ID)
				}
				if ids[s.ID] {
					t.Errorf("%s: duplicate", s.ID)
				}
				ids[s.ID] = true
				if (s.Check == CheckUnobservable || s.Check == CheckClientOnly) && strings.TrimSpace(s.Reason) == "" {
					t.Errorf("%s: check %s without a reason", s.ID, s.Check)
				}
				if s.Binds == BindsClient && s.Check == CheckUnobservable {
					t.Errorf("%s: unobservable is for server-binding statements; a Client one is client-only", s.ID)
				}
				if strings.ContainsAny(s.Summary, "\t\n\r") || strings.ContainsAny(s.Reason, "\t\n\r") {
					t.Errorf("%s: summary or reason is not a single line", s.ID)
				}
				if n := len(strings.Fields(s.Summary)); n < 4 || n > 30 {
					t.Errorf("%s: summary has %d words, want a short sentence", s.ID, n)
				}
				if v == V5 && s.Printed != "" {
					t.Errorf("%s: v5 has no misprinted IDs", s.ID)
				}
			}
			if !slices.IsSortedFunc(list, func(a, b Statement) int { return compareIDs(a.ID, b.ID) }) {
				t.Error("statements are not in ID order")
			}
		})
	}
}

// compareIDs orders IDs by their numeric components.
func compareIDs(a, b string) int {
	num := func(id string) []int {
		var out []int
		for _, f := range strings.FieldsFunc(strings.TrimPrefix(id, "MQTT-"), func(r rune) bool { return r == '.' || r == '-' }) {
			n := 0
			for _, c := range f {
				n = n*10 + int(c-'0')
			}
			out = append(out, n)
		}
		return out
	}
	return slices.Compare(num(a), num(b))
}

func TestV5BindsCounts(t *testing.T) {
	list, err := Catalogue(V5)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, s := range list {
		got[s.Binds]++
	}
	want := map[string]int{BindsServer: 102, BindsClient: 24, BindsBoth: 125}
	if !maps.Equal(got, want) {
		t.Errorf("binds counts = %v, want %v", got, want)
	}
}

func TestV311Misprints(t *testing.T) {
	list, err := Catalogue(V311)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range list {
		if s.Printed != "" {
			got[s.ID] = s.Printed
		}
	}
	want := map[string]string{"MQTT-3.1.2-7": "MQTT-3.1.2.7", "MQTT-3.8.3-4": "MQTT-3-8.3-4"}
	if !maps.Equal(got, want) {
		t.Errorf("printed forms = %v, want %v", got, want)
	}
}

func TestLookup(t *testing.T) {
	tests := []struct {
		name   string
		v      Version
		id     string
		wantID string // "" means not found
	}{
		{"v5 canonical", V5, "MQTT-3.3.1-5", "MQTT-3.3.1-5"},
		{"v5 two-level id", V5, "MQTT-4.2-1", "MQTT-4.2-1"},
		{"v311 canonical", V311, "MQTT-3.1.2-4", "MQTT-3.1.2-4"},
		{"v311 corrected id", V311, "MQTT-3.1.2-7", "MQTT-3.1.2-7"},
		{"v311 misprint alias", V311, "MQTT-3.1.2.7", "MQTT-3.1.2-7"},
		{"v311 misprint alias 2", V311, "MQTT-3-8.3-4", "MQTT-3.8.3-4"},
		{"v5 has no misprint alias", V5, "MQTT-3.1.2.7", ""},
		{"v5-only id in v311", V311, "MQTT-3.3.1-13", ""},
		{"v311-only id in v5", V5, "MQTT-7.1.2-1", ""},
		{"unknown", V5, "MQTT-9.9.9-9", ""},
		{"empty", V5, "", ""},
		{"lower case", V5, "mqtt-3.3.1-5", ""},
		{"surrounding space", V5, " MQTT-3.3.1-5", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, ok := Lookup(tt.v, tt.id)
			if ok != (tt.wantID != "") {
				t.Fatalf("Lookup(%s, %q) found = %v, want %v", tt.v, tt.id, ok, tt.wantID != "")
			}
			if s.ID != tt.wantID {
				t.Errorf("Lookup(%s, %q).ID = %q, want %q", tt.v, tt.id, s.ID, tt.wantID)
			}
		})
	}
}

func TestCatalogueReturnsCopy(t *testing.T) {
	a, err := Catalogue(V5)
	if err != nil {
		t.Fatal(err)
	}
	a[0].Summary = "changed"
	b, _ := Catalogue(V5)
	if b[0].Summary == "changed" {
		t.Error("Catalogue returned the shared slice")
	}
}

func TestStatementMethods(t *testing.T) {
	tests := []struct {
		s                        Statement
		chapter                  string
		serverBinding, checkable bool
	}{
		{Statement{Section: "3.1", Binds: BindsServer, Check: CheckBroker}, "3", true, true},
		{Statement{Section: "1.5", Binds: BindsBoth, Check: CheckCodec}, "1", true, true},
		{Statement{Section: "4.8", Binds: BindsBoth, Check: CheckUnobservable}, "4", true, false},
		{Statement{Section: "3.3", Binds: BindsServer, Check: CheckClientOnly}, "3", true, false},
		{Statement{Section: "3.10", Binds: BindsClient, Check: CheckBroker}, "3", false, false},
		{Statement{Section: "6.0", Binds: BindsClient, Check: CheckClientOnly}, "6", false, false},
	}
	for _, tt := range tests {
		if got := tt.s.Chapter(); got != tt.chapter {
			t.Errorf("%+v: Chapter() = %q, want %q", tt.s, got, tt.chapter)
		}
		if got := tt.s.ServerBinding(); got != tt.serverBinding {
			t.Errorf("%+v: ServerBinding() = %v, want %v", tt.s, got, tt.serverBinding)
		}
		if got := tt.s.Checkable(); got != tt.checkable {
			t.Errorf("%+v: Checkable() = %v, want %v", tt.s, got, tt.checkable)
		}
	}
}

func TestParseErrors(t *testing.T) {
	header := strings.Join(Header, "\t") + "\n"
	good := "MQTT-3.1.0-1\t3.1\tMUST\tServer\tbroker\t\t\tFirst packet is CONNECT or the server drops it\n"
	tests := []struct {
		name, data, wantErr string
	}{
		{"ok", header + good, ""},
		{"ok header only", header, ""},
		{"no header", good, "header"},
		{"bad header", strings.Replace(header, "summary", "text", 1), "header"},
		{"too few columns", header + "MQTT-3.1.0-1\t3.1\tMUST\n", "columns"},
		{"too many columns", header + strings.TrimSuffix(good, "\n") + "\textra\n", "columns"},
		{"duplicate", header + good + good, "duplicate"},
		{"malformed id", header + strings.Replace(good, "MQTT-3.1.0-1", "MQTT-3.1.0.1", 1), "malformed id"},
		{"section mismatch", header + strings.Replace(good, "\t3.1\t", "\t3.2\t", 1), "section"},
		{"section prefix only", header + strings.Replace(good, "MQTT-3.1.0-1", "MQTT-3.10.1-1", 1), "section"},
		{"bad level", header + strings.Replace(good, "MUST", "Must", 1), "level"},
		{"bad binds", header + strings.Replace(good, "Server", "Broker", 1), "binds"},
		{"bad check", header + strings.Replace(good, "broker", "black-box", 1), "check"},
		{"client-only without reason", header + strings.Replace(good, "broker", "client-only", 1), "reason"},
		{"unobservable without reason", header + strings.Replace(good, "broker", "unobservable", 1), "reason"},
		{"unobservable with reason", header + strings.Replace(good, "broker\t", "unobservable\tinternal only", 1), ""},
		{"printed equals id", header + strings.Replace(good, "\t\t\t", "\t\tMQTT-3.1.0-1\t", 1), "printed"},
		{"printed garbage", header + strings.Replace(good, "\t\t\t", "\t\tsee 3.1\t", 1), "printed"},
		{"empty summary", header + strings.Replace(good, "First packet is CONNECT or the server drops it", "", 1), "summary"},
		{"white space", header + strings.Replace(good, "\tMUST\t", "\tMUST \t", 1), "white space"},
		{"CRLF", header + strings.Replace(good, "\n", "\r\n", 1), "carriage return"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(tt.data)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("no error, want one mentioning %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

// referenceDir finds the read-only MQTT reference material, which lives
// outside the repository; tests that need it skip when it is absent (as in CI).
func referenceDir(t *testing.T) string {
	t.Helper()
	for _, d := range []string{"/work/shared/mqtt-spec", filepath.Join("..", "..", "shared", "mqtt-spec")} {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d
		}
	}
	t.Skip("MQTT reference material not found (/work/shared/mqtt-spec or ../../shared/mqtt-spec)")
	return ""
}

func readRef(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReferenceIDs compares the catalogues' ID sets with the reference lists.
func TestReferenceIDs(t *testing.T) {
	dir := referenceDir(t)
	tests := []struct {
		v    Version
		file string
	}{
		{V311, "v3.1.1-statement-ids.txt"},
		{V5, "v5.0-statement-ids.txt"},
	}
	for _, tt := range tests {
		t.Run(string(tt.v), func(t *testing.T) {
			want := strings.Fields(readRef(t, dir, tt.file))
			list, err := Catalogue(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			// The reference lists IDs as printed, so compare printed forms.
			var got []string
			for _, s := range list {
				got = append(got, cmp.Or(s.Printed, s.ID))
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("ID sets differ\nonly in catalogue: %v\nonly in reference: %v", minus(got, want), minus(want, got))
			}
			for _, id := range want {
				if _, ok := Lookup(tt.v, id); !ok {
					t.Errorf("Lookup(%s, %q) failed", tt.v, id)
				}
			}
		})
	}
}

// TestReferenceV5Roles checks that section and binds of every 5.0 line are
// copied from the roles file.
func TestReferenceV5Roles(t *testing.T) {
	dir := referenceDir(t)
	lines := strings.Split(strings.TrimSpace(readRef(t, dir, "v5.0-statement-roles.tsv")), "\n")
	if len(lines) != 252 {
		t.Fatalf("roles file has %d lines, want header + 251", len(lines))
	}
	for _, line := range lines[1:] {
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			t.Fatalf("roles line %q: want 4 columns", line)
		}
		s, ok := Lookup(V5, f[0])
		if !ok {
			t.Errorf("%s: not in catalogue", f[0])
			continue
		}
		if s.Section != f[1] || s.Binds != f[3] {
			t.Errorf("%s: section/binds = %s/%s, roles file says %s/%s", s.ID, s.Section, s.Binds, f[1], f[3])
		}
	}
}

// TestReferenceSummariesOwnWords guards against summaries copied from the
// specification: no summary may share a run of 7 or more consecutive words with
// the reference texts.
func TestReferenceSummariesOwnWords(t *testing.T) {
	dir := referenceDir(t)
	const n = 7
	tests := []struct {
		v    Version
		file string
	}{
		{V311, "mqtt-v3.1.1-os.txt"},
		{V5, "v5.0-statement-texts.txt"},
	}
	for _, tt := range tests {
		t.Run(string(tt.v), func(t *testing.T) {
			grams := map[string]bool{}
			// The 3.1.1 text numbers its lines; drop the numbers so that they
			// do not break up runs of words.
			text := lineNoRE.ReplaceAllString(readRef(t, dir, tt.file), "")
			w := words(text)
			for i := 0; i+n <= len(w); i++ {
				grams[strings.Join(w[i:i+n], " ")] = true
			}
			list, err := Catalogue(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range list {
				sw := words(s.Summary)
				for i := 0; i+n <= len(sw); i++ {
					if g := strings.Join(sw[i:i+n], " "); grams[g] {
						t.Errorf("%s: summary repeats the spec's wording %q", s.ID, g)
						break
					}
				}
			}
		})
	}
}

var (
	wordRE   = regexp.MustCompile(`[a-z0-9]+`)
	lineNoRE = regexp.MustCompile(`(?m)^[ \t]*[0-9]+[ \t]+`)
)

func words(s string) []string { return wordRE.FindAllString(strings.ToLower(s), -1) }

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
