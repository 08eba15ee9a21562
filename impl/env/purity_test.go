package env

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// coreRoots are the trees whose packages must obey the purity rule.
var coreRoots = []string{"impl", "sim", "edge", "cloud"}

// runtimePackages are the only packages under coreRoots allowed to touch the
// outside world. Keep this list short: every entry is a place where
// determinism ends.
var runtimePackages = []string{
	"impl/env",                 // the real implementations of Clock, Rand, FS, Network
	"impl/server",              // production runtime: listeners, connection goroutines
	"impl/bridge",              // runtime: MQTT client connections to two brokers, their goroutines
	"impl/webhook",             // runtime: HTTP calls to authentication/authorization/event endpoints, the event sink's sender
	"impl/console/browsertest", // test infrastructure: a headless browser process, screenshot files
	"impl/raftkv/kvserver",     // runtime: raftkv nodes on TCP/TLS, their loop, committer and transport goroutines
	"impl/raftkv/kvclient",     // runtime: the Go client of raftkv over TCP/TLS
	"impl/cluster/gossip",      // runtime: membership on hashicorp/memberlist (UDP/TCP gossip, its goroutines, the apply loop)
	"impl/forward/transport",   // runtime: the links between broker nodes on TCP/TLS, their dialer, reader and writer goroutines
	"impl/cluster/router",      // runtime: the broker's routes in raftkv, their watches, the forward links to other nodes

	// Edge and cloud runtimes (docs/EDGE.md).
	"cloud/link",     // the MQTT link (paho autopaho) of the cloud and of edge agents
	"cloud/service",  // skybridge-cloud: API server, embedded broker, timers
	"edge/runner",    // app processes, health probes, logs, rlimits and cgroups
	"edge/modbustcp", // the device gateway's Modbus TCP connections and workers (and its test server)
	"edge/service",   // skybridge-edge: timers, link, HTTPS calls, local broker, /proc samples
	"edge/demo",      // the demo's heartbeat app (a program, not core)
}

// bannedCalls lists package-level functions the core must not call, by import path.
var bannedCalls = map[string][]string{
	"time": {"Now", "Sleep", "After", "AfterFunc", "NewTimer", "NewTicker", "Tick", "Since", "Until"},
	"net":  {"Dial", "DialTimeout", "DialTCP", "DialUDP", "DialIP", "DialUnix", "Listen", "ListenPacket", "ListenTCP", "ListenUDP", "ListenUnix", "ListenIP", "LookupHost", "LookupIP", "LookupAddr", "LookupPort", "LookupSRV", "LookupTXT", "ResolveTCPAddr", "ResolveUDPAddr", "ResolveIPAddr"},
}

// bannedPackages may not be called at all (any function).
var bannedPackages = map[string]string{
	"os":          "file and process access goes through env.FS or the runtime",
	"crypto/rand": "take an io.Reader (env.Rand) so the simulator can seed it",
	"math/rand":   "use an injected env.Rand",
}

// allowedRandV2 are the math/rand/v2 functions that build a seeded source
// rather than draw from the global one.
var allowedRandV2 = []string{"New", "NewPCG", "NewChaCha8", "NewZipf"}

type violation struct {
	pos  token.Position
	what string
}

func (v violation) String() string { return fmt.Sprintf("%s: %s", v.pos, v.what) }

// checkFile reports the purity violations of one Go source file.
func checkFile(fset *token.FileSet, f *ast.File) []violation {
	imports := map[string]string{} // local name -> import path
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		name := path[strings.LastIndex(path, "/")+1:]
		if path == "math/rand/v2" {
			name = "rand"
		}
		if imp.Name != nil {
			name = imp.Name.Name
		}
		imports[name] = path
	}
	var out []violation
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.GoStmt:
			out = append(out, violation{fset.Position(n.Pos()), "go statement: the core starts no goroutines; a runtime drives it"})
		case *ast.CallExpr:
			sel, ok := n.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			id, ok := sel.X.(*ast.Ident)
			if !ok || id.Obj != nil { // a local variable, not a package
				return true
			}
			path, ok := imports[id.Name]
			if !ok {
				return true
			}
			fn := sel.Sel.Name
			pos := fset.Position(n.Pos())
			if why, ok := bannedPackages[path]; ok {
				out = append(out, violation{pos, fmt.Sprintf("%s.%s: %s", path, fn, why)})
			}
			if slices.Contains(bannedCalls[path], fn) {
				out = append(out, violation{pos, fmt.Sprintf("%s.%s: use the injected env.Clock / env.Network", path, fn)})
			}
			if path == "math/rand/v2" && !slices.Contains(allowedRandV2, fn) && fn[0] >= 'A' && fn[0] <= 'Z' && !isType(fn) {
				out = append(out, violation{pos, fmt.Sprintf("math/rand/v2.%s draws from the global source: use an injected env.Rand", fn)})
			}
		}
		return true
	})
	return out
}

// isType reports whether a math/rand/v2 identifier is a type conversion
// rather than a function call.
func isType(name string) bool {
	return name == "Source" || name == "PCG" || name == "ChaCha8" || name == "Rand" || name == "Zipf"
}

func moduleRoot(t *testing.T) string {
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

func isRuntime(rel string) bool {
	for _, p := range runtimePackages {
		if rel == p || strings.HasPrefix(rel, p+"/") {
			return true
		}
	}
	return false
}

func TestCoreIsPure(t *testing.T) {
	t.Parallel()
	root := moduleRoot(t)
	fset := token.NewFileSet()
	var bad []violation
	files := 0
	for _, top := range coreRoots {
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return nil
				}
				return err
			}
			rel, _ := filepath.Rel(root, path)
			rel = filepath.ToSlash(rel)
			if d.IsDir() {
				if d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") || isRuntime(rel) {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution|parser.ParseComments)
			if err != nil {
				return err
			}
			files++
			bad = append(bad, checkFile(fset, f)...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range bad {
		t.Error(v)
	}
	if files == 0 {
		t.Fatal("no core files found: is the walk looking in the right place?")
	}
	t.Logf("%d core files checked", files)
}

// TestPurityCheckerCatches proves the checker sees each kind of violation,
// so that TestCoreIsPure cannot pass by looking at nothing.
func TestPurityCheckerCatches(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "testdata/purity/impure.go", nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	got := checkFile(fset, f)
	var lines []int
	for _, v := range got {
		lines = append(lines, v.pos.Line)
	}
	// Each line of impure.go marked "// want" must be reported, and no other.
	src, err := os.ReadFile("testdata/purity/impure.go")
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	for i, l := range strings.Split(string(src), "\n") {
		if strings.Contains(l, "// want") {
			want = append(want, i+1)
		}
	}
	slices.Sort(lines)
	lines = slices.Compact(lines)
	if !slices.Equal(lines, want) {
		t.Errorf("reported lines %v, want %v\n%v", lines, want, got)
	}
}
