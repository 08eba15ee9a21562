// Command skybridge runs a Skybridge broker node.
//
//	skybridge serve [--config skybridge.yaml] [-p PORT] [--listen [NAME=]HOST:PORT] [--ws HOST:PORT] [--admin HOST:PORT] [--log-level LEVEL]
//	skybridge ctl COMMAND [ARGS] [--admin URL] [--token TOKEN]
//	skybridge passwd [--scram] TENANT/USER < password
//	skybridge version (or --version)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skybridge-mq/skybridge/impl/bridge"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/cluster/gossip"
	"github.com/skybridge-mq/skybridge/impl/config"
	"github.com/skybridge-mq/skybridge/impl/console"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/server"
	"github.com/skybridge-mq/skybridge/impl/store"
	"github.com/skybridge-mq/skybridge/impl/tenant"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "skybridge:", err)
		os.Exit(1)
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, `usage:
  skybridge serve [flags]   run a broker node (see skybridge serve -h)
  skybridge ctl COMMAND     talk to a running broker's admin API (see skybridge ctl -h)
  skybridge passwd TENANT/USER   print a password-file line (bcrypt; --scram adds SCRAM credentials)
  skybridge version         print the version (also --version)
Flags may come before or after a command's arguments; -h or --help on any command prints its usage.`)
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return errors.New("no command")
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		if helpRequested(args[1:]) {
			fmt.Fprintln(stdout, "usage: skybridge version   (or skybridge --version): print the version")
			return nil
		}
		fmt.Fprintln(stdout, version())
		return nil
	case "ctl":
		return ctl(args[1:], stdout, stderr)
	case "passwd":
		return passwd(args[1:], os.Stdin, stdout, stderr)
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return nil
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

// writeHeapProfile writes the live heap (after a collection) to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return "skybridge " + bi.Main.Version
	}
	return "skybridge (unknown version)"
}

// serveOptions are serve's flags that are not configuration overrides.
type serveOptions struct {
	cfgPath    string
	cpuProfile string
	memProfile string
}

// serveConfig parses serve's flags and returns the configuration they and
// the file give, validated. It returns flag.ErrHelp once it has printed
// the usage on stdout for -h.
func serveConfig(args []string, stdout, stderr io.Writer) (config.File, serveOptions, error) {
	var o serveOptions
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: skybridge serve [flags]   (flags override the configuration file: docs/CONFIG.md)")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.cfgPath, "config", "", "YAML configuration file (defaults apply when empty)")
	var listen listenFlag
	fs.Var(&listen, "listen", "override: `[NAME=]HOST:PORT`; with NAME moves that listener and keeps the others, without replaces every listener with one TCP listener (repeatable)")
	port := fs.String("p", "", "override: the `PORT` of the TCP listener (the one named tcp, else the first; its host kept), like mosquitto -p")
	ws := fs.String("ws", "", "override: add a WebSocket listener on this address")
	admin := fs.String("admin", "", "override: admin HTTP address (/metrics, /healthz, /readyz)")
	logLevel := fs.String("log-level", "", "override: debug, info, warn or error")
	dataDir := fs.String("data", "", "override: data directory of the pebble store")
	storage := fs.String("storage", "", "override: pebble or memory")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile to this file until the broker stops (for `go tool pprof`)")
	fs.StringVar(&o.memProfile, "memprofile", "", "write a heap profile to this file when the broker is asked to stop, before its clients are disconnected (every allocation sampled: slower; for `go tool pprof`)")
	if helpRequested(args) {
		printHelp(fs, stdout)
		return config.File{}, o, flag.ErrHelp
	}
	rest, err := parseArgs(fs, args)
	if err != nil {
		return config.File{}, o, err
	}
	if len(rest) > 0 {
		return config.File{}, o, fmt.Errorf("serve takes no arguments, got %q (see skybridge serve -h)", rest)
	}
	f := config.Default()
	if o.cfgPath != "" {
		r, err := os.Open(o.cfgPath)
		if err != nil {
			return f, o, err
		}
		f, err = config.Parse(r)
		r.Close()
		if err != nil {
			return f, o, fmt.Errorf("%s: %w", o.cfgPath, err)
		}
	}
	if err := applyListen(&f, listen, *port); err != nil {
		return f, o, err
	}
	if *ws != "" {
		f.Listeners = append(f.Listeners, config.Listener{Name: "ws", Type: "ws", Addr: *ws})
	}
	if *admin != "" {
		f.Admin.Addr = *admin
	}
	if *logLevel != "" {
		f.Log.Level = *logLevel
	}
	if *dataDir != "" {
		f.Storage.Dir = *dataDir
	}
	if *storage != "" {
		f.Storage.Type = *storage
	}
	if tok := os.Getenv("SKYBRIDGE_ADMIN_TOKEN"); tok != "" {
		f.Admin.Token = tok
	}
	if tok := os.Getenv("SKYBRIDGE_METRICS_TOKEN"); tok != "" {
		f.Admin.MetricsToken = tok
	}
	return f, o, f.Validate()
}

func serve(args []string, stdout, stderr io.Writer) error {
	f, o, err := serveConfig(args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	// Signals are caught from the start: a SIGTERM that arrives while the
	// store opens or the listeners start waits for a clean shutdown
	// instead of killing the process with the store open.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	if o.cpuProfile != "" {
		pf, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			pf.Close()
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			pf.Close()
		}()
	}
	if o.memProfile != "" {
		// Every allocation, so that the objects of a few thousand idle
		// connections can be counted one by one.
		runtime.MemProfileRate = 1
	}
	opts := &slog.HandlerOptions{Level: f.LogLevel()}
	var h slog.Handler = slog.NewTextHandler(stderr, opts)
	if f.Log.Format == "json" {
		h = slog.NewJSONHandler(stderr, opts)
	}
	log := slog.New(h)

	sc := f.Server(log)
	sc.Version = version()
	if p := f.Admin.ConsoleUsersFile; p != "" && f.Admin.Console {
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("admin.console_users_file: %w", err)
		}
		if sc.ConsoleUsers, err = console.ParseUsers(data); err != nil {
			return fmt.Errorf("admin.console_users_file %s: %w", p, err)
		}
	}
	e := env.Real()
	x, err := buildExtensions(&f, e, log)
	if err != nil {
		return err
	}
	defer x.close()
	sc.Broker.Authenticator, sc.Broker.EnhancedAuth = x.authn, x.enhanced
	sc.Broker.Authorizer, sc.Broker.Events = x.authz, x.events
	sc.AuthGuard = x.guard
	var st store.Store = store.Memory{}
	var pst *store.Pebble
	if f.Storage.Type == "pebble" {
		began := time.Now()
		pst, err = store.Open(e.FS, f.Storage.Dir, store.Options{MinFreeBytes: f.Storage.MinFreeBytes, Logger: log})
		if err != nil {
			return err
		}
		defer pst.Close()
		st = pst
		go pst.Run() // the group committer
		log.Info("store opened", "dir", f.Storage.Dir, "took", time.Since(began).String())
	}
	var routing *clusterRouting
	if f.Cluster != nil && f.Cluster.Forward != "" {
		if routing, err = startRouting(&f, log); err != nil {
			return err
		}
		defer routing.close()
		sc.Broker.Cluster = routing.router
		sc.Collectors = append(sc.Collectors, routerCollector{routing.router})
	}
	b := broker.New(sc.Broker, e, st)
	if routing != nil {
		routing.setBroker(b)
	}
	began := time.Now()
	if err := b.Recover(); err != nil {
		return err
	}
	if routing != nil {
		// The cluster's retained messages are in place before clients come.
		select {
		case <-routing.router.FollowRetained():
		case <-time.After(30 * time.Second):
			log.Warn("the cluster's retained messages are not all loaded yet; serving anyway")
		}
	}
	if pst != nil {
		log.Info("state recovered", "sessions", b.Stats().Sessions.Load(), "quarantined", pst.Quarantined(),
			"took", time.Since(began).String())
		sc.Collectors = append(sc.Collectors, storeCollector{pst})
	}
	// The bridges' collector is registered before the admin server starts;
	// the bridges themselves start once the listeners are up.
	sc.Collectors = append(sc.Collectors, eventCollector{x.eventCounts})
	bc := &bridgeCollector{}
	if len(f.Bridges) > 0 {
		sc.Collectors = append(sc.Collectors, bc)
	}
	var member *gossip.Node
	if f.Cluster != nil {
		if member, err = joinCluster(f.Cluster, f.Listeners[0].Addr, routing, log); err != nil {
			return err
		}
		sc.Cluster = member
		if routing != nil {
			sc.Redirect = redirector(member, f.Cluster.NodeID)
			sc.ClusterRanges = routing.ranges
		}
		sc.Collectors = append(sc.Collectors, clusterCollector{member})
	}
	srv := server.New(sc, b)
	if err := srv.Start(); err != nil {
		if member != nil {
			_ = member.Shutdown()
		}
		return err
	}
	var br *bridge.Bridge
	if len(f.Bridges) > 0 {
		if br, err = startBridges(f.Bridges, log); err != nil {
			srv.Close()
			return err
		}
		bc.b.Store(br)
	}
	b.StartSys(f.MQTT.SysInterval, version())
	defer b.StopSys()
	log.Info("skybridge started", "version", version(), "storage", f.Storage.Type)

	if o.cfgPath != "" {
		go watchSettings(o.cfgPath, b.Settings(), x, log)
	}

	s := <-sig
	log.Info("shutting down", "signal", s.String())
	if o.memProfile != "" {
		// While the clients are still connected: what they hold is the point.
		if err := writeHeapProfile(o.memProfile); err != nil {
			log.Warn("heap profile", "err", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		<-sig // a second signal stops at once
		cancel()
	}()
	if br != nil {
		// Before the broker goes: the bridges disconnect cleanly and keep
		// their sessions on both sides.
		if err := br.Close(); err != nil {
			log.Warn("closing bridges", "err", err)
		}
	}
	// Clients go first, while this node is still a member: a clustered
	// node sends its 5.0 clients to the live members (Redirect), and their
	// sessions' claims there find it answering.
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("shutdown incomplete", "err", err)
	}
	if member != nil {
		// The others hear "left", not "dead", from a node stopped on purpose.
		if err := member.Leave(2 * time.Second); err != nil {
			log.Warn("leaving the cluster", "err", err)
		}
		_ = member.Shutdown()
	}
	log.Info("stopped")
	return nil
}

// watchSettings reloads the tenants section of the configuration file when
// the file changes (polled every two seconds: no platform-specific watcher
// needed). A file that no longer parses keeps the settings in force.
func watchSettings(path string, p *tenant.Provider, x *extensions, log *slog.Logger) {
	mtime := func(p string) time.Time {
		if fi, err := os.Stat(p); err == nil {
			return fi.ModTime()
		}
		return time.Time{}
	}
	last := mtime(path)
	passwdPath := x.passwdPath
	lastPasswd := mtime(passwdPath)
	for range time.Tick(2 * time.Second) {
		if passwdPath != "" {
			if m := mtime(passwdPath); m.After(lastPasswd) {
				lastPasswd = m
				if r, err := os.Open(path); err == nil {
					if f, err := config.Parse(r); err == nil {
						x.reload(&f, log)
						log.Info("password file reloaded", "file", passwdPath)
					}
					r.Close()
				}
			}
		}
		m := mtime(path)
		if !m.After(last) {
			continue
		}
		last = m
		r, err := os.Open(path)
		if err != nil {
			log.Warn("settings reload", "file", path, "err", err)
			continue
		}
		f, err := config.Parse(r)
		r.Close()
		if err == nil {
			err = p.Replace(f.Tenants)
		}
		if err != nil {
			log.Warn("settings reload refused; the previous settings stay", "file", path, "err", err)
			continue
		}
		x.reload(&f, log)
		passwdPath, lastPasswd = f.Auth.PasswordFile, mtime(f.Auth.PasswordFile)
		log.Info("settings reloaded", "file", path, "tenants", len(f.Tenants.Overrides))
	}
}

// storeCollector exposes the durable store's own counters.
type storeCollector struct{ p *store.Pebble }

var storeQuarantined = prometheus.NewDesc("skybridge_store_quarantined_total",
	"Records the store could not read at start and moved under its quarantine prefix.", nil, nil)

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- storeQuarantined }

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(storeQuarantined, prometheus.CounterValue, float64(c.p.Quarantined()))
}
