// Command skybridge-edge is the agent of a Skybridge edge node: it
// activates the node with the cloud, keeps its desired state and
// artifacts locally, runs its apps (also with no cloud at all), embeds a
// local broker for devices and apps, and reports upstream through a
// durable outbox.
//
//	skybridge-edge run --data DIR [--join JOIN] [--local-broker ADDR]
//	skybridge-edge exec-limited --nofile=N --as=N -- PROGRAM ARGS   (internal: applies an app's rlimits)
//	skybridge-edge version
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/skybridge-mq/skybridge/edge/agent"
	"github.com/skybridge-mq/skybridge/edge/runner"
	"github.com/skybridge-mq/skybridge/edge/service"
)

func main() {
	// The shim must not touch anything before it execs the app.
	if len(os.Args) > 1 && os.Args[1] == "exec-limited" {
		err := runner.ExecLimited(os.Args[2:])
		fmt.Fprintln(os.Stderr, "skybridge-edge:", err)
		os.Exit(127)
	}
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "skybridge-edge:", err)
		os.Exit(1)
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, `usage:
  skybridge-edge run --data DIR [--join JOIN] [flags]   run the agent (skybridge-edge run -h)
  skybridge-edge version`)
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return errors.New("no command")
	}
	switch args[0] {
	case "run":
		return runAgent(args[1:], stderr)
	case "version":
		fmt.Fprintln(stdout, version())
		return nil
	case "-h", "--help", "help":
		usage(stdout)
		return nil
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return "skybridge-edge " + bi.Main.Version
	}
	return "skybridge-edge (unknown version)"
}

func runAgent(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "skybridge-edge-data", "data directory (local store, artifacts, apps, logs)")
	join := fs.String("join", os.Getenv("SKYBRIDGE_JOIN"), "join string from `skybridge-cloud ctl token NODE` (first start only)")
	local := fs.String("local-broker", "127.0.0.1:1883", "listen address of the embedded broker for devices and apps (\"\" disables)")
	report := fs.Duration("report-every", time.Minute, "period of status reports")
	jitter := fs.Duration("resync-jitter", 30*time.Second, "bound of the random delay before resyncing after a reconnect")
	ackTimeout := fs.Duration("ack-timeout", 30*time.Second, "resend an unacknowledged upstream batch after this long")
	maxRecords := fs.Int("outbox-records", 10000, "outbox bound: records (the oldest are dropped beyond it)")
	maxBytes := fs.Int("outbox-bytes", 8<<20, "outbox bound: bytes")
	maxAge := fs.Duration("outbox-age", 7*24*time.Hour, "outbox bound: age")
	cgroup := fs.String("cgroup-root", "", "cgroup v2 mount for app limits (default /sys/fs/cgroup if v2; - disables)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("log level %q: debug, info, warn or error", *logLevel)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	s, err := service.Start(service.Config{DataDir: *data, Join: *join, LocalBroker: *local, Logger: log, Version: version(),
		Shim: []string{exe, "exec-limited"}, CgroupRoot: *cgroup,
		Agent: agent.Config{ReportEvery: *report, ResyncJitter: *jitter, AckTimeout: *ackTimeout,
			Outbox: agent.Limits{MaxRecords: *maxRecords, MaxBytes: *maxBytes, MaxAge: *maxAge}}})
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	log.Info("stopping")
	s.Close()
	return nil
}
