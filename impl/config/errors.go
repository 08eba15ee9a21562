package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/skybridge-mq/skybridge/impl/tenant"
)

// Configuration errors are for the person editing the file: each names the
// line and the YAML path of what is wrong ("line 12: limits.max_inflight:
// must be between 1 and 65535"), never a Go type. The YAML decoder's own
// messages ("cannot unmarshal !!str `x` into time.Duration", "field x not
// found in type config.Limits") are rewritten with the help of an index of
// the document: which path each line holds.

// place is where a key or a value sits in the document.
type place struct {
	line  int
	path  string
	value string // the key's name, or a scalar value
}

// docIndex lists the document's keys and values with their paths.
type docIndex struct {
	keys   []place
	values []place
	lines  map[string]int // path -> line of its key (or sequence item)
}

func indexDocument(data []byte) *docIndex {
	ix := &docIndex{lines: map[string]int{}}
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return ix
	}
	ix.walk(root.Content[0], "")
	return ix
}

func (ix *docIndex) walk(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			ix.keys = append(ix.keys, place{k.Line, p, k.Value})
			if _, ok := ix.lines[p]; !ok {
				ix.lines[p] = k.Line
			}
			ix.walk(v, p)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			ix.lines[p] = c.Line
			ix.walk(c, p)
		}
	case yaml.ScalarNode:
		ix.values = append(ix.values, place{n.Line, path, n.Value})
	case yaml.AliasNode:
		if n.Alias != nil {
			ix.walk(n.Alias, path)
		}
	}
	if n.Kind != yaml.ScalarNode {
		ix.values = append(ix.values, place{n.Line, path, ""})
	}
}

// find returns the path of the entry at line whose name (or value) is
// name; with several on the line and none named so, the first.
func find(list []place, line int, name string) (string, bool) {
	first, found := "", false
	for _, p := range list {
		if p.line != line {
			continue
		}
		if p.value == name {
			return p.path, true
		}
		if !found {
			first, found = p.path, true
		}
	}
	return first, found
}

var (
	reUnmarshal = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
	reUnknown   = regexp.MustCompile(`^line (\d+): field (\S+) not found in type (\S+)$`)
	reLine      = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	rePath      = regexp.MustCompile(`^([A-Za-z0-9_]+(?:\[\d+\]|\.[^.:\s\[]+)*): (.*)$`)
	reLineNo    = regexp.MustCompile(`^line (\d+): `)
)

// decodeError rewrites an error of the YAML decoder.
func (ix *docIndex) decodeError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		msg := err.Error()
		if m := reLine.FindStringSubmatch(msg); m != nil {
			return errors.New("line " + m[1] + ": " + m[2])
		}
		return errors.New(strings.TrimPrefix(msg, "yaml: "))
	}
	var out []string
	for _, e := range te.Errors {
		out = append(out, ix.rewrite(e))
	}
	return errors.New(strings.Join(out, "\n"))
}

// rewrite turns one of the decoder's messages into the configuration's
// words.
func (ix *docIndex) rewrite(msg string) string {
	if m := reUnmarshal.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		found := "a mapping"
		switch m[2] {
		case "seq":
			found = "a list"
		case "map":
		default:
			found = strconv.Quote(m[3])
		}
		path, _ := find(ix.values, line, m[3])
		return fmt.Sprintf("line %d: %s: %s is not %s", line, orTop(path), found, describe(m[4]))
	}
	if m := reUnknown.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		path, _ := find(ix.keys, line, m[2])
		return fmt.Sprintf("line %d: %s: unknown field%s", line, orTop(path), suggest(m[2], fieldsAt(parentOf(path))))
	}
	return msg
}

func orTop(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

func parentOf(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

// describe says in the file's terms what a Go type takes.
func describe(goType string) string {
	switch {
	case goType == "time.Duration":
		return "a duration (like 500ms, 10s or 1m30s)"
	case goType == "bool" || goType == "*bool":
		return "true or false"
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["), strings.Contains(goType, "."):
		return "a mapping (key: value lines)"
	case strings.HasPrefix(goType, "uint"):
		return "a whole number of 0 or more"
	case strings.HasPrefix(goType, "int"):
		return "a whole number"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	}
	return "of the right kind"
}

var nodeType = reflect.TypeFor[yaml.Node]()

// fieldsAt returns the YAML field names of the mapping at path in the
// configuration, or nil when it is not a known structure.
func fieldsAt(path string) []string {
	t := reflect.TypeFor[File]()
	if path != "" {
		for _, part := range strings.Split(path, ".") {
			name, _, _ := strings.Cut(part, "[")
			for t.Kind() == reflect.Pointer {
				t = t.Elem()
			}
			switch t.Kind() {
			case reflect.Struct:
				f, ok := fieldByTag(t, name)
				if !ok {
					return nil
				}
				t = f.Type
			case reflect.Map:
				t = t.Elem()
			default:
				return nil
			}
			for strings.Contains(part, "[") && t.Kind() == reflect.Slice {
				t = t.Elem()
				part = part[strings.IndexByte(part, ']')+1:]
			}
			if t == nodeType {
				t = reflect.TypeFor[tenant.Settings]() // tenants.tenants.NAME
			}
		}
	}
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for i := range t.NumField() {
		if tag := yamlName(t.Field(i)); tag != "" {
			names = append(names, tag)
		}
	}
	return names
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if yamlName(t.Field(i)) == name {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// suggest names the known field closest to name, when one is close.
func suggest(name string, known []string) string {
	best, dist := "", 4
	for _, k := range known {
		if d := editDistance(name, k); d < dist {
			best, dist = k, d
		}
	}
	if best == "" {
		if len(known) > 0 {
			return " (known here: " + strings.Join(known, ", ") + ")"
		}
		return ""
	}
	return " (did you mean " + best + "?)"
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// checkOverrides checks the field names of the tenant overrides, which are
// decoded later (tenant.Config.Resolve) without the decoder's check of
// unknown fields.
func (ix *docIndex) checkOverrides(c *tenant.Config) []string {
	known := fieldsAt("tenants.defaults")
	var out []string
	for name, n := range c.Overrides {
		if n.Kind != yaml.MappingNode {
			continue // Resolve reports it
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if !slices.Contains(known, k.Value) {
				out = append(out, fmt.Sprintf("line %d: tenants.tenants.%s.%s: unknown field%s", k.Line, name, k.Value, suggest(k.Value, known)))
			}
		}
	}
	return out
}

// validationError gives each line of Validate's error the line of the
// path it names, and the decoder's messages inside it (a tenant override's
// values) the configuration's words; the lines come out in file order.
func (ix *docIndex) validationError(err error, extra []string) error {
	lines := extra
	for _, l := range strings.Split(err.Error(), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasSuffix(l, "yaml: unmarshal errors:") {
			continue
		}
		if reLineNo.MatchString(l) {
			lines = append(lines, ix.rewrite(l))
			continue
		}
		if m := rePath.FindStringSubmatch(l); m != nil {
			if n, ok := ix.lineOf(m[1]); ok {
				l = "line " + strconv.Itoa(n) + ": " + l
			}
		}
		lines = append(lines, l)
	}
	return errors.New(strings.Join(sortByLine(lines), "\n"))
}

// lineOf returns the line of path, or of its closest ancestor in the file.
func (ix *docIndex) lineOf(path string) (int, bool) {
	for path != "" {
		if n, ok := ix.lines[path]; ok {
			return n, true
		}
		i := max(strings.LastIndexByte(path, '.'), strings.LastIndexByte(path, '['))
		if i <= 0 {
			break
		}
		path = path[:i]
	}
	return 0, false
}

// sortByLine orders messages by their line; those without one come last.
func sortByLine(lines []string) []string {
	num := func(s string) int {
		if m := reLineNo.FindStringSubmatch(s); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
		return int(^uint(0) >> 1)
	}
	slices.SortStableFunc(lines, func(a, b string) int {
		if c := num(a) - num(b); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return lines
}

// decodeStrict decodes data over f, refusing unknown fields.
func decodeStrict(data []byte, f *File) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(f)
}
