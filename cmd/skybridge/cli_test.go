package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestSecondBrokerOnTheSameDataDir: a data directory in use by another
// broker process is reported as such (issue 13 item 14).
func TestSecondBrokerOnTheSameDataDir(t *testing.T) {
	dir := t.TempDir()
	startBrokerOn(t, dir)
	out, err := exec.Command(skybridgeBinary(t), "serve", "--listen", freeAddr(t), "--data", dir).CombinedOutput()
	if err == nil {
		t.Fatal("a second broker started on a data directory in use")
	}
	msg := string(out)
	if !strings.Contains(msg, "in use by another process") || !strings.Contains(msg, dir) || strings.Contains(msg, "move it aside") {
		t.Fatalf("second broker said:\n%s\nwant the directory and that another process holds it", msg)
	}
}
