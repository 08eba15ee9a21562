package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocumentedExampleParses keeps docs/CONFIG.md true: its annotated
// example must be a valid configuration (strict decoding: a field renamed
// in the code but not in the docs fails here).
func TestDocumentedExampleParses(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/CONFIG.md has no yaml example")
	}
	f, err := Parse(strings.NewReader(string(m[1])))
	if err != nil {
		t.Fatalf("docs/CONFIG.md example: %v", err)
	}
	if len(f.Listeners) == 0 || f.Tenants.Overrides["acme"].Kind == 0 {
		t.Fatalf("example lost its listeners or tenant overrides: %+v", f)
	}
}
