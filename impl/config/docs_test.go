package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/event"
	"github.com/skybridge-mq/skybridge/impl/tenant"
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

// docFiles are the documents that name configuration fields.
var docFiles = []string{"../../README.md", "../../CONTRIBUTING.md", "../../docs/CONFIG.md", "../../docs/ADMIN.md", "../../docs/AUTH.md",
	"../../docs/STORAGE.md", "../../docs/BRIDGE.md", "../../docs/ARCHITECTURE.md"}

func readDocs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range docFiles {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = string(b)
	}
	return out
}

// yamlNames returns every YAML field name of the configuration's types.
func yamlNames() map[string]bool {
	names := map[string]bool{}
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t == nodeType {
			t = reflect.TypeFor[tenant.Settings]()
		}
		if t.Kind() != reflect.Struct || seen[t] {
			return
		}
		seen[t] = true
		for i := range t.NumField() {
			if n := yamlName(t.Field(i)); n != "" {
				names[n] = true
			}
			walk(t.Field(i).Type)
		}
	}
	walk(reflect.TypeFor[File]())
	return names
}

var topLevel = func() map[string]bool {
	m := map[string]bool{}
	for _, n := range fieldsAt("") {
		m[n] = true
	}
	return m
}()

// docWords are snake_case words the documents put in backticks that are
// not configuration fields: the code's own vocabulary (events, drop and
// throttle reasons, metric names) is added from the code below; these are
// the rest.
var docWords = []string{
	"mosquitto_pub", "mosquitto_sub", // tools
	"drop_oldest", "refuse_new", "too_large", // bridge queue policies and drop reasons (docs/BRIDGE.md)
	"auth_source", "auth_user", "auth_ban", // auth.Guard's throttled events
	"offline_qos0", "slow_subscriber", // broker drop and throttle reasons named in prose
}

// TestDocsNameRealFields keeps the documents and the configuration in
// step: a backticked configuration path (`admin.max_tenant_labels`) must
// exist, a backticked snake_case word must be a field or a known word of
// the code (so that `client_ca` for `client_ca_file` fails), and a default
// the documents state next to a path ("default 100", "(10,000)") must be
// Default()'s.
func TestDocsNameRealFields(t *testing.T) {
	t.Parallel()
	known := yamlNames()
	for _, w := range docWords {
		known[w] = true
	}
	for _, ty := range event.Types() {
		known[ty.String()] = true
	}
	for _, r := range broker.DropReasons {
		known[r] = true
	}
	for _, r := range broker.ThrottleReasons {
		known[r] = true
	}
	for _, r := range broker.DisconnectCauses {
		known[r] = true
	}
	word := regexp.MustCompile("`([a-z][a-z0-9]*(?:_[a-z0-9]+)+)`")
	path := regexp.MustCompile("`([a-z_]+(?:\\.[a-z_0-9]+)+)`([^`|\\n]{0,60})")
	stated := regexp.MustCompile(`(?:default |^ ?\()(\d[\d,]*)( MiB| KiB)?`)
	def := Default()
	for name, doc := range readDocs(t) {
		for _, m := range word.FindAllStringSubmatch(doc, -1) {
			if w := m[1]; !known[w] && !strings.HasPrefix(w, "skybridge_") {
				t.Errorf("%s: `%s` is neither a configuration field nor a word of the code", name, w)
			}
		}
		for _, m := range path.FindAllStringSubmatch(doc, -1) {
			p := m[1]
			if !topLevel[strings.SplitN(p, ".", 2)[0]] {
				continue // a file name, a bridge's queue.max_bytes, ...
			}
			v, ok := valueAt(reflect.ValueOf(def), strings.Split(p, "."))
			if !ok {
				t.Errorf("%s: `%s` is not a configuration path", name, p)
				continue
			}
			if s := stated.FindStringSubmatch(m[2]); s != nil && v.CanInt() {
				n, _ := strconv.ParseInt(strings.ReplaceAll(s[1], ",", ""), 10, 64)
				switch s[2] {
				case " MiB":
					n <<= 20
				case " KiB":
					n <<= 10
				}
				if n != v.Int() {
					t.Errorf("%s: `%s`%s: the default is %d", name, p, m[2], v.Int())
				}
			}
		}
	}
}

// valueAt follows a YAML path through v.
func valueAt(v reflect.Value, path []string) (reflect.Value, bool) {
	for _, part := range path {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v = reflect.New(v.Type().Elem())
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return v, false
		}
		f, ok := fieldByTag(v.Type(), part)
		if !ok {
			return v, false
		}
		v = v.FieldByIndex(f.Index)
	}
	return v, true
}

// TestDocumentedExampleShowsTheDefaults: the sections of docs/CONFIG.md's
// example that list every field show their default values.
func TestDocumentedExampleShowsTheDefaults(t *testing.T) {
	t.Parallel()
	doc := readDocs(t)["CONFIG.md"]
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindStringSubmatch(doc)
	f, err := Parse(strings.NewReader(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	for _, c := range []struct {
		section   string
		got, want any
	}{
		{"admin.max_tenant_labels", f.Admin.MaxTenantLabels, d.Admin.MaxTenantLabels},
		{"limits", f.Limits, d.Limits},
		{"mqtt", f.MQTT, d.MQTT},
		{"storage", f.Storage, d.Storage},
		{"log", f.Log, d.Log},
		{"tenants.defaults", f.Tenants.Defaults, d.Tenants.Defaults},
		{"auth.limits", f.Auth.Limits, d.Auth.Limits},
		{"auth.jwt.require_exp", f.Auth.JWT.ExpRequired(), d.Auth.JWT.ExpRequired()},
	} {
		if diff := cmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("docs/CONFIG.md example, %s (-default +shown):\n%s", c.section, diff)
		}
	}
}

// TestDocsNameTheOtherTenantsLabel: the label the tenants beyond
// admin.max_tenant_labels share is written as the code writes it.
func TestDocsNameTheOtherTenantsLabel(t *testing.T) {
	t.Parallel()
	label := regexp.MustCompile("(?:tenant=\"|as `|as \")(_?other)[\"`]")
	for name, doc := range readDocs(t) {
		for _, m := range label.FindAllStringSubmatch(doc, -1) {
			if m[1] != event.OtherTenant {
				t.Errorf("%s: %q, but the label is %q", name, m[0], event.OtherTenant)
			}
		}
	}
}

// TestDocsStayInTheRepository: the documents' relative links and paths
// lead to files of the repository (a reader of a clone has only the
// clone).
func TestDocsStayInTheRepository(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ref := regexp.MustCompile("(?:\\]\\(|`)((?:\\.\\./)+[^)`\\s]*)")
	for _, p := range docFiles {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		dir, _ := filepath.Abs(filepath.Dir(p))
		for _, m := range ref.FindAllStringSubmatch(string(b), -1) {
			target := filepath.Join(dir, m[1])
			if _, err := os.Stat(target); err != nil || !within(target, root) {
				t.Errorf("%s points outside the repository, or at nothing: %s", filepath.Base(p), m[1])
			}
		}
	}
}
