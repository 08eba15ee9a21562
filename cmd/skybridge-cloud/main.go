// Command skybridge-cloud manages a fleet of Skybridge edge nodes.
//
//	skybridge-cloud serve [--data DIR] [--api ADDR] [--broker ADDR] [--host NAME]...   run the cloud
//	skybridge-cloud serve --external-broker HOST:PORT ...                                 the same, with a broker it does not run
//	skybridge-cloud ctl COMMAND ...                                                       talk to its API
//	skybridge-cloud passwd USER < password                                                a console users file line
//	skybridge-cloud version
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/skybridge-mq/skybridge/cloud/fleet"
	"github.com/skybridge-mq/skybridge/cloud/service"
	"github.com/skybridge-mq/skybridge/impl/console"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "skybridge-cloud:", err)
		os.Exit(1)
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, `usage:
  skybridge-cloud serve [flags]   run the cloud: API, embedded broker, fleet (skybridge-cloud serve -h)
  skybridge-cloud ctl COMMAND     operate it through its API (skybridge-cloud ctl help)
  skybridge-cloud passwd USER < password   a line of the web console's users file (serve --console-users)
  skybridge-cloud version`)
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return errors.New("no command")
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "ctl":
		return ctl(args[1:], stdout, stderr)
	case "passwd":
		return passwd(args[1:], os.Stdin, stdout)
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
		return "skybridge-cloud " + bi.Main.Version
	}
	return "skybridge-cloud (unknown version)"
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv})), nil
}

func serve(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var hosts listFlag
	data := fs.String("data", "skybridge-cloud-data", "data directory (database, artifacts, keys)")
	apiAddr := fs.String("api", ":8443", "HTTPS API listen address")
	brokerAddr := fs.String("broker", ":8883", "embedded broker's mutual-TLS listen address")
	fs.Var(&hosts, "host", "a name or address nodes reach the cloud by (repeatable; default localhost and 127.0.0.1)")
	publicAPI := fs.String("public-api", "", "API URL given to nodes (default https://FIRST-HOST:API-PORT)")
	publicBroker := fs.String("public-broker", "", "broker address given to nodes (default FIRST-HOST:BROKER-PORT)")
	certLife := fs.Duration("cert-lifetime", 7*24*time.Hour, "lifetime of node certificates (renewed at 2/3)")
	grace := fs.Duration("renew-grace", 30*24*time.Hour, "how long after expiry a node may still renew")
	lease := fs.Duration("lease", 3*time.Minute, "a node unheard for this long is offline")
	drain := fs.Float64("drain-rate", 200, "upstream batches per second admitted from nodes draining their outboxes")
	secretKey := fs.String("secret-key-file", "", "file with the 32-byte key (hex) that seals secrets at rest (default DATA/secret.key, made on first start)")
	consoleOn := fs.Bool("console", true, "serve the web console at https://API/console/ (log in with the admin token or a --console-users user)")
	consoleUsers := fs.String("console-users", "", "file of console users besides the admin token: user:bcrypt-hash lines (skybridge-cloud passwd USER < password)")
	consoleCert := fs.String("console-cert", "", "certificate (PEM chain) the API listener shows browsers (default: a self-signed ECDSA one in DATA/tls/console.crt)")
	consoleKey := fs.String("console-key", "", "the key of --console-cert (PEM)")
	extAddr := fs.String("external-broker", "", "use this Skybridge broker's fleet listener (host:port) instead of the embedded broker (docs/EDGE.md)")
	extName := fs.String("external-broker-name", "", "the name its certificate carries (default: the address's host)")
	extListener := fs.String("external-broker-listener", "fleet", "the name of its fleet listener (its webhook calls for other listeners are ignored)")
	extTenant := fs.String("external-broker-tenant", "fleet", "the tenant of the fleet's clients there")
	extAdmin := fs.String("external-broker-admin", "", "its admin API URL, to close revoked nodes' connections at once (token in $SKYBRIDGE_BROKER_ADMIN_TOKEN)")
	extAdminCA := fs.String("external-broker-admin-ca", "", "PEM roots for an https admin URL")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var ext *service.ExternalBroker
	if *extAddr != "" {
		ext = &service.ExternalBroker{Address: *extAddr, ServerName: *extName, Listener: *extListener, Tenant: *extTenant,
			HookToken: os.Getenv("SKYBRIDGE_BROKER_HOOK_TOKEN"), AdminURL: *extAdmin,
			AdminToken: os.Getenv("SKYBRIDGE_BROKER_ADMIN_TOKEN"), AdminCAFile: *extAdminCA}
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	var users map[string][]byte
	if *consoleUsers != "" {
		data, err := os.ReadFile(*consoleUsers)
		if err != nil {
			return fmt.Errorf("--console-users: %w", err)
		}
		if users, err = console.ParseUsers(data); err != nil {
			return fmt.Errorf("--console-users %s: %w", *consoleUsers, err)
		}
	}
	s, err := service.Start(service.Config{DataDir: *data, APIAddr: *apiAddr, BrokerAddr: *brokerAddr, PublicHosts: hosts,
		PublicAPI: *publicAPI, PublicBroker: *publicBroker, AdminToken: os.Getenv("SKYBRIDGE_CLOUD_TOKEN"), Logger: log,
		SecretKeyFile: *secretKey, Console: *consoleOn, ConsoleUsers: users,
		ConsoleCertFile: *consoleCert, ConsoleKeyFile: *consoleKey, External: ext,
		Fleet: fleet.Config{CertLifetime: *certLife, RenewGrace: *grace, Lease: *lease, DrainRate: *drain}})
	if err != nil {
		return err
	}
	log.Info("ready", "api", s.APIAddr(), "broker", s.BrokerAddr(), "admin_token_file", *data+"/admin.token")
	if ext != nil && ext.HookToken == "" {
		log.Info("external broker", "webhook", "https://"+s.APIAddr()+"/v1/broker/auth", "hook_token_file", *data+"/broker-hook.token")
	}
	if *consoleOn {
		sum := sha256.Sum256(s.ConsoleCert())
		log.Info("web console", "url", "https://"+s.APIAddr()+"/console/", "users", len(users),
			"certificate_sha256", hex.EncodeToString(sum[:]))
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	log.Info("stopping")
	s.Close()
	return nil
}
