package conformance

import (
	"flag"
	"fmt"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	flag.Parse()
	t, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance: no broker to test:", err)
		os.Exit(1)
	}
	features, err = discover()
	if err != nil {
		t.Stop()
		fmt.Fprintln(os.Stderr, "conformance: discovering features:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "conformance: testing %s at %s\n", t.Name, t.Addr)
	code := m.Run()
	t.Stop()
	os.Exit(code)
}
