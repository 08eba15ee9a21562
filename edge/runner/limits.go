package runner

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/skybridge-mq/skybridge/cloud/api"
)

// limitArgs returns the shim's flags for an app's limits. Memory becomes
// RLIMIT_AS only without cgroups (address space is a crude stand-in for
// memory: runtimes that reserve large virtual areas, such as Go's, need a
// generous value).
func limitArgs(l api.Limits, cgroup bool) []string {
	var out []string
	if l.NoFile > 0 {
		out = append(out, "--nofile="+strconv.FormatInt(l.NoFile, 10))
	}
	if l.MemoryBytes > 0 && !cgroup {
		out = append(out, "--as="+strconv.FormatInt(l.MemoryBytes, 10))
	}
	return out
}

// ExecLimited is the shim's side: args are "--nofile=N", "--as=N", then
// "--" and the command. It sets the limits on itself and execs the
// command, which keeps them. It returns only on error.
func ExecLimited(args []string) error {
	for len(args) > 0 && args[0] != "--" {
		k, v, ok := strings.Cut(strings.TrimPrefix(args[0], "--"), "=")
		n, err := strconv.ParseUint(v, 10, 64)
		if !ok || err != nil {
			return fmt.Errorf("exec-limited: bad flag %q", args[0])
		}
		var res int
		switch k {
		case "nofile":
			res = syscall.RLIMIT_NOFILE
		case "as":
			res = syscall.RLIMIT_AS
		default:
			return fmt.Errorf("exec-limited: unknown limit %q", k)
		}
		if err := syscall.Setrlimit(res, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
			return fmt.Errorf("exec-limited: %s: %w", k, err)
		}
		args = args[1:]
	}
	if len(args) < 2 {
		return errors.New("exec-limited: no command after --")
	}
	return syscall.Exec(args[1], args[1:], os.Environ())
}

// cgroups is the runner's cgroup v2 subtree.
type cgroups struct {
	base string
}

// newCgroups sets up root/skybridge-edge with the memory, cpu and pids
// controllers; nil when the machine has no writable cgroup v2 (a v1 or
// hybrid hierarchy, a container without delegation, not root).
func newCgroups(root string, log *slog.Logger) *cgroups {
	if root == "-" {
		return nil
	}
	if root == "" {
		root = "/sys/fs/cgroup"
	}
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err != nil {
		log.Info("runner: no cgroup v2 hierarchy: limits are rlimits only", "root", root)
		return nil
	}
	base := filepath.Join(root, "skybridge-edge")
	err := os.MkdirAll(base, 0o755)
	for _, d := range []string{root, base} {
		if err == nil {
			err = os.WriteFile(filepath.Join(d, "cgroup.subtree_control"), []byte("+memory +cpu +pids"), 0o644)
		}
	}
	if err != nil {
		log.Info("runner: cgroup v2 not writable: limits are rlimits only", "err", err)
		return nil
	}
	return &cgroups{base: base}
}

// prepare makes (or updates) the app's cgroup with its limits and returns
// an open descriptor of its directory for clone3's CLONE_INTO_CGROUP.
func (c *cgroups) prepare(app string, l api.Limits) (int, error) {
	dir := filepath.Join(c.base, app)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return -1, err
	}
	mem, pids, cpu := "max", "max", "max 100000"
	if l.MemoryBytes > 0 {
		mem = strconv.FormatInt(l.MemoryBytes, 10)
	}
	if l.Procs > 0 {
		pids = strconv.FormatInt(l.Procs, 10)
	}
	if l.CPUMillis > 0 {
		cpu = strconv.FormatInt(l.CPUMillis*100, 10) + " 100000" // quota per 100 ms period
	}
	for file, v := range map[string]string{"memory.max": mem, "pids.max": pids, "cpu.max": cpu} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0o644); err != nil {
			return -1, err
		}
	}
	return syscall.Open(dir, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
}

func setCgroup(a *syscall.SysProcAttr, fd int) {
	a.UseCgroupFD = true
	a.CgroupFD = fd
}
