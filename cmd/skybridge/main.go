// Command skybridge runs a Skybridge broker node.
//
//	skybridge serve [--config skybridge.yaml] [--listen HOST:PORT] [--ws HOST:PORT] [--admin HOST:PORT] [--log-level LEVEL]
//	skybridge version
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
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skybridge-mq/skybridge/impl/bridge"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/config"
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
  skybridge version         print the version`)
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return errors.New("no command")
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "version":
		fmt.Fprintln(stdout, version())
		return nil
	case "ctl":
		return ctl(args[1:], stdout, stderr)
	case "passwd":
		return passwd(args[1:], os.Stdin, stdout, stderr)
	case "-h", "--help", "help":
		usage(stdout)
		return nil
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return "skybridge " + bi.Main.Version
	}
	return "skybridge (unknown version)"
}

func serve(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "YAML configuration file (defaults apply when empty)")
	listen := fs.String("listen", "", "override: address of the TCP listener (replaces the file's listeners)")
	ws := fs.String("ws", "", "override: add a WebSocket listener on this address")
	admin := fs.String("admin", "", "override: admin HTTP address (/metrics, /healthz, /readyz)")
	logLevel := fs.String("log-level", "", "override: debug, info, warn or error")
	dataDir := fs.String("data", "", "override: data directory of the pebble store")
	storage := fs.String("storage", "", "override: pebble or memory")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file until the broker stops (for `go tool pprof`)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		pf, err := os.Create(*cpuProfile)
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
	f := config.Default()
	if *cfgPath != "" {
		r, err := os.Open(*cfgPath)
		if err != nil {
			return err
		}
		f, err = config.Parse(r)
		r.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", *cfgPath, err)
		}
	}
	if *listen != "" {
		f.Listeners = []config.Listener{{Name: "tcp", Type: "tcp", Addr: *listen}}
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
	if err := f.Validate(); err != nil {
		return err
	}
	opts := &slog.HandlerOptions{Level: f.LogLevel()}
	var h slog.Handler = slog.NewTextHandler(stderr, opts)
	if f.Log.Format == "json" {
		h = slog.NewJSONHandler(stderr, opts)
	}
	log := slog.New(h)

	sc := f.Server(log)
	e := env.Real()
	x, err := buildExtensions(&f, e, log)
	if err != nil {
		return err
	}
	defer x.close()
	sc.Broker.Authenticator, sc.Broker.EnhancedAuth = x.authn, x.enhanced
	sc.Broker.Authorizer, sc.Broker.Events = x.authz, x.events
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
	b := broker.New(sc.Broker, e, st)
	began := time.Now()
	if err := b.Recover(); err != nil {
		return err
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
	srv := server.New(sc, b)
	if err := srv.Start(); err != nil {
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

	if *cfgPath != "" {
		go watchSettings(*cfgPath, b.Settings(), x, log)
	}

	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	s := <-sig
	log.Info("shutting down", "signal", s.String())
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
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("shutdown incomplete", "err", err)
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
