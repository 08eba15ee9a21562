// Package deploy holds the release tooling (release.sh), the systemd
// units and the install script; its test runs the install script.
package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeRelease writes a release directory with small stand-ins for the
// binaries and the real units and script.
func fakeRelease(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var sums strings.Builder
	add := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o755); err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(data)
		sums.WriteString(hex.EncodeToString(s[:]) + "  " + name + "\n")
	}
	for _, arch := range []string{"amd64", "arm64", "armv7", "mips", "mipsle"} {
		for _, b := range []string{"skybridge", "skybridge-edge", "skybridge-cloud"} {
			add(b+"-linux-"+arch, []byte("#!/bin/sh\necho "+b+" "+arch+"\n"))
		}
	}
	for _, f := range []string{"install.sh", "skybridge-edge.service", "skybridge.service"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		add(f, data)
	}
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(sums.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func install(t *testing.T, dir string, args ...string) (string, error) {
	out, err := exec.Command("sh", append([]string{filepath.Join(dir, "install.sh")}, args...)...).CombinedOutput()
	return string(out), err
}

func TestInstall(t *testing.T) {
	t.Parallel()
	dir := fakeRelease(t)
	root := t.TempDir()
	if out, err := install(t, dir, "--root", root, "--role", "all", "--arch", "mips", "--join", "secret-join"); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	for path, mode := range map[string]os.FileMode{
		"usr/local/bin/skybridge-edge":              0o755,
		"usr/local/bin/skybridge":                   0o755,
		"etc/systemd/system/skybridge-edge.service": 0o644,
		"etc/systemd/system/skybridge.service":      0o644,
		"etc/skybridge/edge.env":                    0o600,
		"etc/skybridge/skybridge.yaml":              0o644,
	} {
		fi, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	out, err := exec.Command(filepath.Join(root, "usr/local/bin/skybridge-edge")).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "skybridge-edge mips" {
		t.Errorf("the installed agent says %q (%v), want the mips release", out, err)
	}
	env, _ := os.ReadFile(filepath.Join(root, "etc/skybridge/edge.env"))
	if string(env) != "SKYBRIDGE_JOIN=secret-join\n" {
		t.Errorf("edge.env = %q", env)
	}
	// A second install keeps the broker's configuration.
	cfg := filepath.Join(root, "etc/skybridge/skybridge.yaml")
	if err := os.WriteFile(cfg, []byte("# mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := install(t, dir, "--root", root, "--role", "broker", "--arch", "armv7"); err != nil {
		t.Fatalf("reinstall: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(cfg); string(b) != "# mine\n" {
		t.Errorf("the broker's configuration was replaced: %q", b)
	}
}

func TestInstallRefusesBadChecksum(t *testing.T) {
	t.Parallel()
	dir := fakeRelease(t)
	if err := os.WriteFile(filepath.Join(dir, "skybridge-edge-linux-arm64"), []byte("tampered"), 0o755); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	out, err := install(t, dir, "--root", root, "--arch", "arm64")
	if err == nil || !strings.Contains(out, "skybridge-edge-linux-arm64: checksum mismatch") {
		t.Fatalf("install of a tampered binary: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/local/bin/skybridge-edge")); err == nil {
		t.Fatal("the tampered binary was installed")
	}
	if out, err := install(t, dir, "--root", root, "--arch", "sparc"); err == nil {
		t.Fatalf("an unknown arch installed: %s", out)
	}
}

// TestUnits checks the units with systemd-analyze where it exists.
func TestUnits(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"skybridge-edge.service", "skybridge.service"} {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"[Unit]", "[Service]", "[Install]", "ExecStart=/usr/local/bin/", "Restart=always"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s: no %q", u, want)
			}
		}
	}
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed: the units' syntax is not verified")
	}
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", "skybridge-edge.service", "skybridge.service").CombinedOutput()
	// verify also complains that /usr/local/bin/... does not exist here;
	// only syntax errors count.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "Unknown") || strings.Contains(line, "Invalid") || strings.Contains(line, "Failed to parse") {
			t.Errorf("systemd-analyze: %s (%v)", line, err)
		}
	}
}
