package conformance

import (
	"log/slog"
	"os"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/server"
)

// The project's own broker, started in-process on a random loopback port
// with its production defaults.
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
		srv := server.New(cfg, broker.New(cfg.Broker, env.Real(), nil))
		if err := srv.Start(); err != nil {
			return "", "", nil, err
		}
		return srv.Addr("tcp").String(), "ws://" + srv.Addr("ws").String() + "/mqtt", srv.Close, nil
	}
}
