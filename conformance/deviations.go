package conformance

import (
	"flag"
	"strings"
	"testing"
)

var flagDeviations = flag.Bool("deviations", false, "run tests that a known peer deviation makes fail, instead of skipping them")

// deviations lists, per target broker, tests that fail because the broker
// breaks the specification (not because the test is wrong). Each entry names
// the statement broken and what the broker does. Against that broker the
// test is skipped with this reason, so `make test` stays green; run with
// -deviations to see each one fail. PEERS.md is the readable account.
//
// Keys are test names as t.Name() prints them; a parent test's name covers
// its subtests.
var deviations = map[string]map[string]string{
	"mosquitto": {},
}

// checkDeviation skips t when the broker under test is known to deviate
// from the specification on it. Every helper that opens a connection calls
// it, so a test never has to.
func checkDeviation(t testing.TB) {
	if *flagDeviations || target == nil {
		return
	}
	for name, why := range deviations[target.Name] {
		if t.Name() == name || strings.HasPrefix(t.Name(), name+"/") {
			t.Skipf("known %s deviation: %s", target.Name, why)
		}
	}
}
