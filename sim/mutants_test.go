package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The scenario of the mutant runs: the standard one, every fault, short
// workload phases (skybridge-sim's flags, so that a failure replays with
// the same command on a build with the mutation).
var mutantArgs = []string{"--duration", "30s", "--every", "3s", "--quiesce", "60s"}

// mutantSeeds is how many seeds a mutant gets (SKYBRIDGE_MUTANT_SEEDS
// raises it).
const mutantSeeds = 8

// TestMutantsListed checks that every mutant's original snippet is still in
// its file, exactly once, so that the list cannot rot silently.
func TestMutantsListed(t *testing.T) {
	t.Parallel()
	names := map[string]bool{}
	for _, m := range Mutants {
		if names[m.Name] {
			t.Errorf("mutant %s listed twice", m.Name)
		}
		names[m.Name] = true
		if _, err := mutate(m); err != nil {
			t.Error(err)
		}
		if len(m.Want) == 0 {
			t.Errorf("mutant %s: no invariant expected", m.Name)
		}
	}
}

// mutate returns the content of m's file with the mutation applied.
func mutate(m Mutant) ([]byte, error) {
	src, err := os.ReadFile(filepath.Join("..", m.File))
	if err != nil {
		return nil, fmt.Errorf("mutant %s: %w", m.Name, err)
	}
	switch n := bytes.Count(src, []byte(m.Original)); {
	case m.Original == m.Mutated:
		return nil, fmt.Errorf("mutant %s: the mutation changes nothing", m.Name)
	case n != 1:
		return nil, fmt.Errorf("mutant %s: its original snippet occurs %d times in %s (want once): the code changed; update the mutant with it",
			m.Name, n, m.File)
	}
	return bytes.Replace(src, []byte(m.Original), []byte(m.Mutated), 1), nil
}

// TestMutants builds skybridge-sim once per mutant with the mutation laid
// over its file (go build -overlay; the build cache keeps each build) and
// runs seeds until one fails; the failure must be an invariant the mutant
// expects, and the same seed must pass unmutated (a seed the broker fails
// by itself proves nothing and is skipped). Every mutant but the listed
// gaps must be caught within the bound; a gap that is caught fails too, so
// that the list stays true. SKYBRIDGE_MUTANTS=a,b runs some only.
func TestMutants(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("mutants skipped in -short mode")
	}
	goBin, err := goTool()
	if err != nil {
		t.Skip(err)
	}
	seeds := uint64(mutantSeeds)
	if n, err := strconv.ParseUint(os.Getenv("SKYBRIDGE_MUTANT_SEEDS"), 10, 64); err == nil && n > 0 {
		seeds = n
	}
	var only []string
	if s := os.Getenv("SKYBRIDGE_MUTANTS"); s != "" {
		only = strings.Split(s, ",")
	}
	dir := t.TempDir()
	start := time.Now()
	clean := filepath.Join(dir, "clean")
	if err := buildSim(goBin, clean, ""); err != nil {
		t.Fatal(err)
	}
	// One mutant per CPU at a time: a build compiles a chain of packages
	// (the mutated one, then each that imports it), which leaves CPUs idle
	// that another build uses.
	type outcome struct {
		caught   bool
		seed     uint64
		inv      string
		skipped  int
		duration time.Duration
	}
	var mu sync.Mutex
	results := map[string]outcome{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))
	for _, m := range Mutants {
		if only != nil && !slices.Contains(only, m.Name) {
			continue
		}
		src, err := mutate(m)
		if err != nil {
			t.Error(err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			t0 := time.Now()
			bin := filepath.Join(dir, m.Name)
			if err := overlayBuild(goBin, dir, bin, m, src); err != nil {
				t.Errorf("mutant %s: %v", m.Name, err)
				return
			}
			var o outcome
			for seed := uint64(1); seed <= seeds && !o.caught; seed++ {
				inv, err := simRun(bin, seed)
				if err != nil {
					t.Errorf("mutant %s, seed %d: %v", m.Name, seed, err)
					return
				}
				if inv == "" {
					continue
				}
				if c, err := simRun(clean, seed); err != nil || c != "" {
					o.skipped++ // the unmutated broker fails this seed too
					continue
				}
				o.caught, o.seed, o.inv = true, seed, inv
			}
			o.duration = time.Since(t0)
			mu.Lock()
			results[m.Name] = o
			mu.Unlock()
		}()
	}
	wg.Wait()
	caught, total := 0, 0
	for _, m := range Mutants {
		o, ok := results[m.Name]
		if !ok {
			continue
		}
		total++
		replay := fmt.Sprintf("SKYBRIDGE_MUTANTS=%s go test ./sim -run TestMutants -v", m.Name)
		switch {
		case o.caught:
			caught++
			want := false
			for _, inv := range m.Want {
				want = want || inv.String() == o.inv
			}
			t.Logf("mutant %s caught at seed %d by %s (%d seeds skipped, %v)", m.Name, o.seed, o.inv, o.skipped, o.duration.Round(100*time.Millisecond))
			switch {
			case !want:
				t.Errorf("mutant %s caught at seed %d by %s, want one of %v\n  replay: %s", m.Name, o.seed, o.inv, m.Want, replay)
			case m.Gap != "":
				t.Errorf("mutant %s is listed as a gap (%s) but was caught: clear its Gap", m.Name, m.Gap)
			}
		case m.Gap != "":
			t.Logf("mutant %s survived %d seeds (a known gap: %s)", m.Name, seeds, m.Gap)
		default:
			t.Errorf("mutant %s survived %d seeds (%d skipped)\n  replay: %s", m.Name, seeds, o.skipped, replay)
		}
	}
	t.Logf("mutants: caught %d of %d within %d seeds of %s, in %v", caught, total, seeds, strings.Join(mutantArgs, " "),
		time.Since(start).Round(time.Second))
}

// goTool finds the go command.
func goTool() (string, error) {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p, nil
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	return "", errors.New("no go command: mutants need go build")
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// buildSim builds ./cmd/skybridge-sim into out, with an overlay file when
// one is given.
func buildSim(goBin, out, overlay string) error {
	args := []string{"build", "-ldflags=-s -w", "-o", out} // no symbol tables: a shorter link
	if overlay != "" {
		args = append(args, "-overlay", overlay)
	}
	cmd := exec.Command(goBin, append(args, "./cmd/skybridge-sim")...)
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, b)
	}
	return nil
}

// overlayBuild builds skybridge-sim with m's file replaced by src.
func overlayBuild(goBin, dir, bin string, m Mutant, src []byte) error {
	orig, err := filepath.Abs(filepath.Join("..", m.File))
	if err != nil {
		return err
	}
	mutated := filepath.Join(dir, m.Name+".go")
	if err := os.WriteFile(mutated, src, 0o644); err != nil {
		return err
	}
	ov, _ := json.Marshal(map[string]map[string]string{"Replace": {orig: mutated}})
	overlay := filepath.Join(dir, m.Name+".json")
	if err := os.WriteFile(overlay, ov, 0o644); err != nil {
		return err
	}
	return buildSim(goBin, bin, overlay)
}

var failLine = regexp.MustCompile(`(?m)^FAIL seed \d+: invariant (\S+) broken`)

// simRun runs one seed of the mutant scenario and returns the invariant it
// broke ("" when it passed).
func simRun(bin string, seed uint64) (string, error) {
	args := append([]string{"run", "--seed", strconv.FormatUint(seed, 10), "--html", os.DevNull}, mutantArgs...)
	out, err := exec.Command(bin, args...).CombinedOutput()
	if m := failLine.FindSubmatch(out); m != nil {
		return string(m[1]), nil
	}
	if err != nil {
		return "", fmt.Errorf("%v\n%s", err, out)
	}
	return "", nil
}
