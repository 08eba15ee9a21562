// Package service is skybridge-cloud's production runtime: it runs the
// fleet core (cloud/fleet) on the disk, the embedded broker (impl/broker
// behind impl/server's mutual-TLS listener, nodes authenticated by their
// certificates and confined to their own topics), the cloud's own MQTT
// link to it, the timers, and the HTTPS REST API.
//
// The core is not safe for concurrent use: every call into it holds one
// mutex, and what it asks for (Ready) is carried out after the call.
package service

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/cloud/blob"
	"github.com/skybridge-mq/skybridge/cloud/ca"
	"github.com/skybridge-mq/skybridge/cloud/fleet"
	"github.com/skybridge-mq/skybridge/cloud/link"
	"github.com/skybridge-mq/skybridge/impl/acl"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/server"
)

// Config configures the cloud.
type Config struct {
	// DataDir holds the database, the artifacts, the secret key, the admin
	// token and the TLS files of the broker.
	DataDir string
	// APIAddr and BrokerAddr are the listen addresses of the HTTPS API and
	// of the broker's mutual-TLS listener (port 0 picks a free port).
	APIAddr, BrokerAddr string
	// PublicHosts are the names and addresses nodes reach the cloud by
	// (the server certificate's names); default localhost and 127.0.0.1.
	PublicHosts []string
	// PublicAPI and PublicBroker are what join tokens and activations tell
	// nodes (default: the first public host and the listening ports).
	PublicAPI, PublicBroker string
	// AdminToken guards the operator API ("Authorization: Bearer ...");
	// empty: read DataDir/admin.token, created on first start.
	AdminToken string
	// SecretKeyFile holds the 32-byte key (hex) that encrypts secrets and
	// the CA key at rest; default DataDir/secret.key, created on first
	// start (mode 0600).
	SecretKeyFile string
	// Console serves the web console at /console/ on the API listener
	// (impl/console with its fleet pages). Its users log in with the admin
	// token or as one of ConsoleUsers (user name → bcrypt hash).
	Console      bool
	ConsoleUsers map[string][]byte
	// ConsoleCertFile and ConsoleKeyFile are the certificate (PEM chain)
	// and key the API listener shows browsers. Browsers verify no Ed25519
	// signature, so they cannot use the cloud CA's chain that nodes and
	// ctl get; each TLS client gets the first of the two it supports.
	// Empty: a self-signed ECDSA P-256 certificate for PublicHosts, kept
	// in DataDir/tls/console.crt (made again when missing, expiring within
	// a day, or not naming every public host).
	ConsoleCertFile, ConsoleKeyFile string
	// External, when set, has nodes and the cloud use a Skybridge broker
	// (or cluster) the cloud does not run, instead of the embedded one
	// (docs/EDGE.md, "An external broker"); BrokerAddr is then unused.
	External *ExternalBroker
	// MaxArtifactBytes bounds one uploaded artifact (default 256 MiB).
	MaxArtifactBytes int64
	Fleet            fleet.Config
	Logger           *slog.Logger
}

// ExternalBroker is a Skybridge broker the fleet uses. It verifies client
// certificates with the fleet CA on its fleet listener, asks the cloud's
// POST /v1/broker/auth (its authentication webhook, with the hook token)
// who may connect, and shows a server certificate of the fleet CA
// (POST /v1/broker/certificate, skybridge-cloud ctl broker-cert).
type ExternalBroker struct {
	// Address is the broker's fleet listener (host:port, mutual TLS) for
	// the cloud's own connection; nodes are told Config.PublicBroker,
	// Address by default.
	Address string
	// ServerName is the name the broker's certificate is checked for
	// (default: Address's host).
	ServerName string
	// Listener names the broker's fleet listener: the webhook answers
	// "ignore" for clients of other listeners (default "fleet").
	Listener string
	// Tenant is the tenant of the fleet's clients there (default "fleet").
	Tenant string
	// HookToken is what the broker's webhook sends as "Authorization:
	// Bearer ..."; empty: DataDir/broker-hook.token, made on first start.
	HookToken string
	// AdminURL and AdminToken reach the broker's admin API, to close a
	// revoked node's connection at once. Without them it lasts until the
	// node reconnects (refused then) or its certificate expires.
	AdminURL, AdminToken string
	// AdminCAFile holds PEM roots for an https AdminURL.
	AdminCAFile string
}

// Service is a running cloud.
type Service struct {
	cfg   Config
	log   *slog.Logger
	mu    sync.Mutex // guards f
	f     *fleet.Fleet
	blobs *blob.Store
	srv   *server.Server
	b     *broker.Broker
	link  *link.Link
	api   *http.Server
	apiLn net.Listener
	admin string
	tlsCA []byte
	// hook is the external broker's webhook token ("" with the embedded
	// broker); brokerAdmin calls its admin API.
	hook        string
	brokerAdmin *http.Client
	// kicks queue the nodes whose connections the external broker must
	// close (bounded; kicksDropped counts what did not fit).
	kicks        chan string
	kicksDropped atomic.Uint64

	serverCert  tls.Certificate
	cloudCert   tls.Certificate
	consoleCert tls.Certificate // for browsers (Config.Console)

	wake    chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
	closeMu sync.Once
}

// Start opens the data directory and starts everything.
func Start(cfg Config) (*Service, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("service: DataDir is required")
	}
	if len(cfg.PublicHosts) == 0 {
		cfg.PublicHosts = []string{"localhost", "127.0.0.1"}
	}
	if cfg.MaxArtifactBytes <= 0 {
		cfg.MaxArtifactBytes = 256 << 20
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: log, wake: make(chan struct{}, 1), done: make(chan struct{}), kicks: make(chan string, 1024)}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	key, err := s.secretKey()
	if err != nil {
		return nil, err
	}
	if s.admin, err = s.token(cfg.AdminToken, "admin.token"); err != nil {
		return nil, err
	}
	if cfg.External != nil {
		x := *cfg.External // defaults are filled in a copy
		s.cfg.External = &x
		if err := s.external(&x); err != nil {
			return nil, err
		}
		cfg = s.cfg
	}
	// Listeners first: their ports go into what nodes are told.
	apiLn, err := net.Listen("tcp", orDefault(cfg.APIAddr, ":8443"))
	if err != nil {
		return nil, fmt.Errorf("api listener: %w", err)
	}
	s.apiLn = apiLn
	brokerAddr := orDefault(cfg.BrokerAddr, ":8883")
	if cfg.External != nil {
		brokerAddr = cfg.External.Address
	} else if strings.HasSuffix(brokerAddr, ":0") { // pick the port now, so nodes can be told it
		ln, err := net.Listen("tcp", brokerAddr)
		if err != nil {
			return nil, fmt.Errorf("broker listener: %w", err)
		}
		brokerAddr = ln.Addr().String()
		_ = ln.Close()
	}
	_, apiPort, _ := net.SplitHostPort(apiLn.Addr().String())
	_, brokerPort, _ := net.SplitHostPort(brokerAddr)
	fc := cfg.Fleet
	fc.SecretKey = key
	fc.API = orDefault(cfg.PublicAPI, "https://"+net.JoinHostPort(cfg.PublicHosts[0], apiPort))
	fc.Broker = orDefault(cfg.PublicBroker, net.JoinHostPort(cfg.PublicHosts[0], brokerPort))
	now := time.Now()
	f, err := fleet.Open(fc, env.NewLockedRand(env.SystemSeed()), vfs.Default, filepath.Join(cfg.DataDir, "db"), now)
	if err != nil {
		return nil, err
	}
	s.f = f
	if s.blobs, err = blob.Open(vfs.Default, filepath.Join(cfg.DataDir, "artifacts")); err != nil {
		return nil, err
	}
	s.blobs.MaxSize = cfg.MaxArtifactBytes
	if err := s.certificates(now); err != nil {
		return nil, err
	}
	if cfg.Console {
		if s.consoleCert, err = s.consoleCertificate(now); err != nil {
			return nil, fmt.Errorf("console certificate: %w", err)
		}
	}
	linkAddr, serverName := net.JoinHostPort("127.0.0.1", brokerPort), "127.0.0.1"
	if x := cfg.External; x != nil {
		linkAddr, serverName = x.Address, x.ServerName
	} else if err := s.startBroker(brokerAddr); err != nil {
		return nil, err
	}
	if err := s.startLink(linkAddr, serverName); err != nil {
		return nil, err
	}
	s.startAPI()
	s.wg.Add(1)
	go s.loop()
	if s.brokerAdmin != nil {
		s.wg.Add(1)
		go s.kicker()
	}
	ok = true
	log.Info("skybridge-cloud started", "api", s.APIAddr(), "broker", s.BrokerAddr(), "public_api", fc.API, "public_broker", fc.Broker)
	return s, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// secretKey reads the key that encrypts what is at rest, or makes one.
func (s *Service) secretKey() ([]byte, error) {
	path := orDefault(s.cfg.SecretKeyFile, filepath.Join(s.cfg.DataDir, "secret.key"))
	if b, err := os.ReadFile(path); err == nil {
		key, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(key) != 32 {
			return nil, fmt.Errorf("secret key %s: 64 hex digits expected", path)
		}
		return key, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := crand.Read(key); err != nil {
		return nil, err
	}
	return key, writeFileSync(path, []byte(hex.EncodeToString(key)+"\n"), 0o600)
}

// external checks the external broker's settings, fills in defaults and
// reads or makes the hook token.
func (s *Service) external(x *ExternalBroker) error {
	host, _, err := net.SplitHostPort(x.Address)
	if err != nil || host == "" {
		return fmt.Errorf("external broker: address %q is not host:port", x.Address)
	}
	x.ServerName = orDefault(x.ServerName, host)
	x.Listener = orDefault(x.Listener, "fleet")
	x.Tenant = orDefault(x.Tenant, brokerTenant)
	if s.cfg.PublicBroker == "" {
		s.cfg.PublicBroker = x.Address
	}
	if s.hook, err = s.token(x.HookToken, "broker-hook.token"); err != nil {
		return err
	}
	if x.AdminURL != "" {
		if u, err := url.Parse(x.AdminURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("external broker: admin URL %q is not an http(s) URL", x.AdminURL)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if x.AdminCAFile != "" {
			pool, err := server.LoadCertPool(x.AdminCAFile)
			if err != nil {
				return fmt.Errorf("external broker: admin CA file: %w", err)
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		s.brokerAdmin = &http.Client{Transport: tr, Timeout: 5 * time.Second}
	}
	return nil
}

// token returns the configured token, or the one in DataDir/file, made
// on first start.
func (s *Service) token(configured, file string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	path := filepath.Join(s.cfg.DataDir, file)
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	b := make([]byte, 24)
	if _, err := crand.Read(b); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(b)
	return tok, writeFileSync(path, []byte(tok+"\n"), 0o600)
}

// writeFileSync writes a file and syncs it.
func writeFileSync(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// certificates issues this run's server certificate (broker and API) and
// the cloud's own client certificate, with fresh keys.
func (s *Service) certificates(now time.Time) error {
	issue := func(server bool) (tls.Certificate, error) {
		pub, priv, err := ed25519.GenerateKey(crand.Reader)
		if err != nil {
			return tls.Certificate{}, err
		}
		var der []byte
		if server {
			der, err = s.f.IssueServerCert(pub, s.cfg.PublicHosts, now)
		} else {
			der, err = s.f.IssueCloudCert(pub, now)
		}
		if err != nil {
			return tls.Certificate{}, err
		}
		// The chain carries the CA: a node pins it by its hash when it
		// activates, before it trusts anything else.
		return tls.Certificate{Certificate: [][]byte{der, s.f.CA().CertDER()}, PrivateKey: priv}, nil
	}
	var err error
	if s.serverCert, err = issue(true); err != nil {
		return err
	}
	if s.cloudCert, err = issue(false); err != nil {
		return err
	}
	// impl/server reads PEM files.
	dir := filepath.Join(s.cfg.DataDir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	keyPEM, err := ca.KeyPEM(s.serverCert.PrivateKey.(ed25519.PrivateKey))
	if err != nil {
		return err
	}
	certPEM := append(ca.PEM("CERTIFICATE", s.serverCert.Certificate[0]), ca.PEM("CERTIFICATE", s.f.CA().CertDER())...)
	s.tlsCA = ca.PEM("CERTIFICATE", s.f.CA().CertDER())
	for name, data := range map[string][]byte{"server.crt": certPEM, "server.key": keyPEM, "ca.crt": s.tlsCA} {
		if err := writeFileSync(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// consoleCertificate returns the certificate browsers get from the API
// listener: Config.ConsoleCertFile, or the self-signed one in DataDir/tls.
func (s *Service) consoleCertificate(now time.Time) (tls.Certificate, error) {
	if s.cfg.ConsoleCertFile != "" || s.cfg.ConsoleKeyFile != "" {
		return tls.LoadX509KeyPair(s.cfg.ConsoleCertFile, s.cfg.ConsoleKeyFile)
	}
	dir := filepath.Join(s.cfg.DataDir, "tls")
	certPath, keyPath := filepath.Join(dir, "console.crt"), filepath.Join(dir, "console.key")
	if c, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && c.Leaf != nil &&
		now.Add(24*time.Hour).Before(c.Leaf.NotAfter) && namesAll(c.Leaf, s.cfg.PublicHosts) {
		return c, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := crand.Int(crand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "skybridge-cloud console"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true}
	for _, h := range s.cfg.PublicHosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM, keyPEM := ca.PEM("CERTIFICATE", der), ca.PEM("PRIVATE KEY", keyDER)
	if err := writeFileSync(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileSync(certPath, certPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// namesAll reports whether the certificate names every host.
func namesAll(c *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if c.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// ConsoleCert returns the certificate browsers get (DER; nil without the
// console).
func (s *Service) ConsoleCert() []byte {
	if len(s.consoleCert.Certificate) == 0 {
		return nil
	}
	return bytes.Clone(s.consoleCert.Certificate[0])
}

// brokerTenant is the tenant of the embedded broker's clients.
const brokerTenant = "fleet"

func (s *Service) startBroker(addr string) error {
	acls, err := acl.NewSet(fleet.BrokerACL())
	if err != nil {
		return err
	}
	bc := broker.DefaultConfig()
	bc.Authenticator = fleet.NodeAuth{Check: func(node string, serial uint64) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.f.CertValid(node, serial)
	}}
	bc.Authorizer = acls
	bc.Logger = s.log
	s.b = broker.New(bc, env.Real(), nil) // in memory: nodes use clean sessions, the outbox recovers losses
	dir := filepath.Join(s.cfg.DataDir, "tls")
	sc := server.DefaultConfig()
	sc.Broker = bc
	sc.Logger = s.log
	sc.Listeners = []server.ListenerConfig{{Name: "mqtts", Type: server.TLS, Addr: addr, DefaultTenant: brokerTenant,
		CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"),
		ClientCAFile: filepath.Join(dir, "ca.crt"), RequireClientCert: true}}
	s.srv = server.New(sc, s.b)
	return s.srv.Start()
}

// startLink connects the cloud to its broker, as the user fleet.CloudUser.
func (s *Service) startLink(addr, serverName string) error {
	pool := x509.NewCertPool()
	pool.AddCert(s.f.CA().Cert())
	l, err := link.Start(link.Config{
		Broker:   addr,
		ClientID: fleet.CloudClientID,
		Filter:   api.UpFilter,
		TLS: func() (*tls.Config, error) {
			return &tls.Config{Certificates: []tls.Certificate{s.cloudCert}, RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}, nil
		},
		QueueLen:   1 << 16,
		BackoffMin: 100 * time.Millisecond, BackoffMax: 5 * time.Second,
		OnMessage: func(topic string, payload []byte) {
			s.mu.Lock()
			err := s.f.HandleUp(topic, payload, time.Now())
			s.mu.Unlock()
			if err != nil {
				s.log.Error("cloud: handling a node's message", "topic", topic, "err", err)
			}
			s.kick()
		},
		Logger: s.log,
	})
	if err != nil {
		return err
	}
	s.link = l
	return nil
}

// kick wakes the loop (something may be Ready, a deadline may be nearer).
func (s *Service) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// loop carries out what the core asks for and runs its timers.
func (s *Service) loop() {
	defer s.wg.Done()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for {
		s.mu.Lock()
		now := time.Now()
		if err := s.f.Tick(now); err != nil {
			s.log.Error("cloud: tick", "err", err)
		}
		out := s.f.Ready()
		next := s.f.NextDeadline()
		s.mu.Unlock()
		for _, p := range out.Publish {
			s.link.Publish(p.Topic, p.Payload)
		}
		for _, n := range out.Kick {
			if s.cfg.External == nil {
				_ = s.b.KickSession(brokerTenant, n, true)
				continue
			}
			if s.brokerAdmin == nil {
				s.log.Info("cloud: no admin API of the external broker: a revoked node's connection lasts until it reconnects", "node", n)
				continue
			}
			select {
			case s.kicks <- n:
			default:
				// The admin API is slow or down and a backlog is queued:
				// this node's connection lasts until it reconnects (and is
				// refused) or its certificate expires.
				s.kicksDropped.Add(1)
				s.log.Warn("cloud: too many kicks waiting for the external broker's admin API; dropped one", "node", n)
			}
		}
		wait := time.Minute
		if !next.IsZero() {
			wait = min(wait, max(time.Until(next), 10*time.Millisecond))
		}
		t.Reset(wait)
		select {
		case <-s.done:
			return
		case <-s.wake:
		case <-t.C:
		}
	}
}

// kicker closes revoked nodes' connections on the external broker, one
// at a time, off the fleet's loop (a slow admin API must not hold it).
func (s *Service) kicker() {
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			return
		case n := <-s.kicks:
			s.kickExternal(n)
		}
	}
}

// kickExternal closes a node's connection on the external broker (and
// ends its session): the node reconnects and is refused.
func (s *Service) kickExternal(node string) {
	x := s.cfg.External
	u := strings.TrimSuffix(x.AdminURL, "/") + "/api/v1/tenants/" + url.PathEscape(x.Tenant) + "/sessions/" + url.PathEscape(node) + "?discard=true"
	req, err := http.NewRequest(http.MethodDelete, u, nil)
	if err != nil {
		s.log.Error("cloud: kicking a node", "node", node, "err", err)
		return
	}
	if x.AdminToken != "" {
		req.Header.Set("Authorization", "Bearer "+x.AdminToken)
	}
	resp, err := s.brokerAdmin.Do(req)
	if err != nil {
		s.log.Warn("cloud: the external broker's admin API did not close a node's connection", "node", node, "err", err)
		return
	}
	_ = resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNoContent, http.StatusNotFound: // closed, or not connected
		s.log.Info("cloud: node's connection closed on the external broker", "node", node, "status", resp.StatusCode)
	default:
		s.log.Warn("cloud: the external broker's admin API refused to close a node's connection", "node", node, "status", resp.Status)
	}
}

// APIAddr returns the API's listening address.
func (s *Service) APIAddr() string { return s.apiLn.Addr().String() }

// BrokerAddr returns the broker's listening address (the external
// broker's address when there is one).
func (s *Service) BrokerAddr() string {
	if x := s.cfg.External; x != nil {
		return x.Address
	}
	return s.srv.Addr("mqtts").String()
}

// HookToken returns the token an external broker's webhook must send (""
// without an external broker).
func (s *Service) HookToken() string { return s.hook }

// AdminToken returns the operator token.
func (s *Service) AdminToken() string { return s.admin }

// CAPEM returns the CA certificate (PEM).
func (s *Service) CAPEM() []byte { return bytes.Clone(s.tlsCA) }

// Close stops everything.
func (s *Service) Close() {
	s.closeMu.Do(func() {
		close(s.done)
		if s.api != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = s.api.Shutdown(ctx)
			cancel()
		} else if s.apiLn != nil {
			_ = s.apiLn.Close()
		}
		if s.link != nil {
			_ = s.link.Close()
		}
		if s.srv != nil {
			s.srv.Close()
		}
		s.wg.Wait()
		if s.f != nil {
			s.mu.Lock()
			_ = s.f.Close()
			s.mu.Unlock()
		}
	})
}
