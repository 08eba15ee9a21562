package conformance

import (
	crand "crypto/rand"
	"flag"
	"log/slog"
	"os"

	"github.com/skybridge-mq/skybridge/impl/auth"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/server"
	"github.com/skybridge-mq/skybridge/impl/store"
	"github.com/skybridge-mq/skybridge/impl/tenant"
)

var flagStorage = flag.String("storage", "pebble", "storage of the in-process Skybridge: pebble (in a temporary directory) or memory")

// The project's own broker, started in-process on random loopback ports
// (TCP and WebSocket) with its production defaults.
func init() {
	InProcess = func() (string, string, func(), error) {
		cfg := server.DefaultConfig()
		cfg.Listeners = []server.ListenerConfig{
			{Name: "tcp", Type: server.TCP, Addr: "127.0.0.1:0", DefaultTenant: "default"},
			{Name: "ws", Type: server.WS, Addr: "127.0.0.1:0", Path: "/mqtt", DefaultTenant: "default"},
		}
		if os.Getenv("SKYBRIDGE_CONFORMANCE_LOG") != "" {
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
			cfg.Broker.Logger = cfg.Logger
		}
		e := env.Real()
		var st store.Store = store.Memory{}
		cleanup := func() {}
		if *flagStorage == "pebble" {
			dir, err := os.MkdirTemp("", "skybridge-conformance-data-")
			if err != nil {
				return "", "", nil, err
			}
			pst, err := store.Open(e.FS, dir, store.Options{})
			if err != nil {
				return "", "", nil, err
			}
			go pst.Run()
			st = pst
			cleanup = func() {
				pst.Close()
				os.RemoveAll(dir)
			}
		}
		// Offer SCRAM-SHA-256 so that the enhanced-authentication tests run:
		// the suite's own client-first message starts the exchange.
		creds, err := auth.NewCredentials(crand.Reader, []byte("conformance-password"), 4096)
		if err != nil {
			return "", "", nil, err
		}
		line, _ := auth.Line("default", "conformance", []byte(creds.String()))
		pf, err := auth.NewPasswordFile([]byte(line + "\n"))
		if err != nil {
			return "", "", nil, err
		}
		scram, err := auth.NewSCRAM(pf, crand.Reader)
		if err != nil {
			return "", "", nil, err
		}
		cfg.Broker.EnhancedAuth = auth.Methods{auth.SCRAMMethod: scram}
		if *lifeFlagAuthMethod == "" {
			*lifeFlagAuthMethod = auth.SCRAMMethod
			*lifeFlagAuthData = "n,,n=conformance,r=conformance-nonce"
		}
		if *flagRestricted {
			c := tenant.Config{Defaults: tenant.Default()}
			d := &c.Defaults
			d.MaxQoS, d.RetainEnabled = 1, false
			d.SharedSubscriptions, d.SubscriptionIdentifiers = false, false
			p := tenant.NewProvider()
			if err := p.Replace(c); err != nil {
				return "", "", nil, err
			}
			cfg.Broker.Settings = p
		}
		b := broker.New(cfg.Broker, e, st)
		if err := b.Recover(); err != nil {
			return "", "", nil, err
		}
		srv := server.New(cfg, b)
		if err := srv.Start(); err != nil {
			return "", "", nil, err
		}
		stop := func() {
			srv.Close()
			cleanup()
		}
		return srv.Addr("tcp").String(), "ws://" + srv.Addr("ws").String() + "/mqtt", stop, nil
	}
}
