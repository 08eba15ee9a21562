package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestKill9ThreeProcesses builds the binary, runs a 3-process cluster on
// loopback (mutual TLS between nodes, TLS on the client ports) under a
// write load, kills one node with SIGKILL (its process group), restarts
// it, and requires every acknowledged write to be read back and the
// cluster to keep serving.
func TestKill9ThreeProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "skybridge-kv")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := runDemo(ctx, bin, dir, 6*time.Second, 16, 1, true, t.Logf)
	if rep != nil && rep.load != nil {
		t.Logf("load with kill -9 of n%d: %s", rep.victim, rep.load)
	}
	if rep != nil && rep.after != nil {
		t.Logf("after the restart: %s", rep.after)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.load.lost)+len(rep.load.wrong) > 0 {
		t.Fatalf("acknowledged writes lost: %v, wrong: %v", rep.load.lost, rep.load.wrong)
	}
	if rep.load.acked == 0 || rep.after.acked == 0 {
		t.Fatalf("no writes acknowledged (during: %d, after: %d)", rep.load.acked, rep.after.acked)
	}
}
