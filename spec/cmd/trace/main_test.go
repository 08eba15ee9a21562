package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skybridge-mq/skybridge/spec"
)

func checkable(t *testing.T, v spec.Version) int {
	t.Helper()
	list, err := spec.Catalogue(v)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range list {
		if s.Checkable() {
			n++
		}
	}
	return n
}

var (
	fixtureRepo  = filepath.Join("..", "..", "trace", "testdata", "repo")
	fixtureClean = filepath.Join("..", "..", "trace", "testdata", "clean")
)

func TestRun(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    []string // substrings of stdout
		notOut     []string // must not appear in stdout
		wantErr    []string // substrings of stderr
		notErrText []string // must not appear in stderr
	}{
		{
			name:     "clean tree",
			args:     []string{"-root", fixtureClean},
			wantCode: 0,
			wantOut: []string{
				"citations in 1 test files",
				"MQTT v3.1.1", "MQTT v5",
				"chapter  statements  server  checkable  cited  cited-checkable  coverage",
			},
			notOut:     []string{"uncited checkable"},
			notErrText: []string{"bad citations"},
		},
		{
			name:     "verbose lists uncited checkable statements",
			args:     []string{"-root", fixtureClean, "-v"},
			wantCode: 0,
			// The fixture cites two checkable statements of each version.
			wantOut: []string{
				fmt.Sprintf("uncited checkable v5 statements (%d)", checkable(t, spec.V5)-2),
				fmt.Sprintf("uncited checkable v3.1.1 statements (%d)", checkable(t, spec.V311)-2),
				"MQTT-3.12.4-1",
			},
		},
		{
			name:     "threshold met",
			args:     []string{"-root", fixtureClean, "-min-v5", "0.5", "-min-v311", "0.5%"},
			wantCode: 0,
		},
		{
			name:     "v5 threshold missed",
			args:     []string{"-root", fixtureClean, "-min-v5", "50"},
			wantCode: 1,
			wantErr:  []string{"v5 coverage", "below the required 50%"},
		},
		{
			name:       "v3.1.1 threshold missed",
			args:       []string{"-root", fixtureClean, "-min-v311", "100"},
			wantCode:   1,
			wantErr:    []string{"v3.1.1 coverage"},
			notErrText: []string{"v5 coverage"},
		},
		{
			name:     "bad citations fail",
			args:     []string{"-root", fixtureRepo},
			wantCode: 1,
			wantErr: []string{
				"7 bad citations",
				"beta/beta_test.go:3: bare citation [MQTT-3.1.2-4]",
				"beta/beta_test.go:5: unknown statement [v5 MQTT-9.9.9-9]",
				"beta/beta_test.go:7: unknown version [v5.0 MQTT-3.1.0-1]",
			},
		},
		{name: "threshold out of range", args: []string{"-min-v5", "120"}, wantCode: 2, wantErr: []string{"between 0 and 100"}},
		{name: "threshold not a number", args: []string{"-min-v311", "most"}, wantCode: 2, wantErr: []string{"percentage"}},
		{name: "stray argument", args: []string{"-root", fixtureClean, "extra"}, wantCode: 2, wantErr: []string{"unexpected arguments"}},
		{name: "missing root", args: []string{"-root", filepath.Join("testdata", "nope")}, wantCode: 2, wantErr: []string{"trace:"}},
		{name: "help", args: []string{"-h"}, wantCode: 0, wantErr: []string{"usage: trace"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, &stdout, &stderr)
			}
			for _, s := range tt.wantOut {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, &stdout)
				}
			}
			for _, s := range tt.notOut {
				if strings.Contains(stdout.String(), s) {
					t.Errorf("stdout contains %q:\n%s", s, &stdout)
				}
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, &stderr)
				}
			}
			for _, s := range tt.notErrText {
				if strings.Contains(stderr.String(), s) {
					t.Errorf("stderr contains %q:\n%s", s, &stderr)
				}
			}
		})
	}
}

// TestTable checks the numbers of the v5 table for the clean fixture, which
// cites v5 MQTT-3.1.0-1 and MQTT-3.1.0-2 (checkable) and MQTT-4.6.0-2
// (client-only).
func TestTable(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-root", fixtureClean}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d\n%s", code, &stderr)
	}
	_, v5, ok := strings.Cut(stdout.String(), "MQTT v5\n")
	if !ok {
		t.Fatalf("no v5 table:\n%s", &stdout)
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(v5), "\n") {
		f := strings.Fields(line)
		rows[f[0]] = f[1:]
	}
	// chapter 3: 2 checkable statements cited; chapter 4: 1 cited, not checkable.
	if got := rows["3"]; len(got) != 6 || got[3] != "2" || got[4] != "2" {
		t.Errorf("chapter 3 row = %v, want cited 2, cited-checkable 2", got)
	}
	if got := rows["4"]; len(got) != 6 || got[3] != "1" || got[4] != "0" || got[5] != "0.0%" {
		t.Errorf("chapter 4 row = %v, want cited 1, cited-checkable 0, 0.0%%", got)
	}
	if got := rows["total"]; len(got) != 6 || got[0] != "251" || got[3] != "3" || got[4] != "2" {
		t.Errorf("total row = %v, want 251 statements, cited 3, cited-checkable 2", got)
	}
}

// TestVerbose checks which v5 statements -v lists for the clean fixture.
func TestVerbose(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-root", fixtureClean, "-v"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d\n%s", code, &stderr)
	}
	_, list, ok := strings.Cut(stdout.String(), "uncited checkable v5 statements")
	if !ok {
		t.Fatalf("no v5 list:\n%s", &stdout)
	}
	tests := []struct {
		id     string
		listed bool
	}{
		{"MQTT-3.1.0-1", false}, // cited
		{"MQTT-3.1.0-2", false}, // cited
		{"MQTT-4.6.0-2", false}, // client-only
		{"MQTT-3.2.2-4", false}, // client-only, not cited
		{"MQTT-3.12.4-1", true},
		{"MQTT-1.5.5-1", true}, // codec
	}
	for _, tt := range tests {
		if got := strings.Contains(list, "  "+tt.id+" "); got != tt.listed {
			t.Errorf("%s listed = %v, want %v", tt.id, got, tt.listed)
		}
	}
}
