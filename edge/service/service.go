// Package service is skybridge-edge's production runtime: it drives the
// agent core (edge/agent) with real time, runs what it asks for (the MQTT
// link to the cloud's broker, HTTPS calls to the cloud's API, artifact
// downloads, the app runner), samples the machine, embeds a local
// Skybridge broker for the node's devices and apps, and drives the device
// gateway core (edge/gateway): MQTT devices on the local broker
// (devices/<name>/reported in, devices/<name>/desired out) and Modbus TCP
// devices polled through edge/modbustcp.
//
// The cores are not safe for concurrent use: every call into one holds its
// mutex; its Ready is carried out outside the lock.
package service

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/cloud/link"
	"github.com/skybridge-mq/skybridge/edge/agent"
	"github.com/skybridge-mq/skybridge/edge/gateway"
	"github.com/skybridge-mq/skybridge/edge/modbustcp"
	"github.com/skybridge-mq/skybridge/edge/runner"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/server"
)

// Config configures an edge agent.
type Config struct {
	// DataDir holds the local store, the artifacts, the apps' working
	// directories and their logs.
	DataDir string
	// Join is the join string of the first start (ignored once the node
	// is activated).
	Join string
	// LocalBroker is the listen address of the embedded broker for the
	// node's devices and apps ("" disables it).
	LocalBroker string
	// Shim applies rlimits to apps (the agent's binary and
	// "exec-limited"); CgroupRoot as runner.Config.
	Shim       []string
	CgroupRoot string
	// ObserveEvery is the period of resource samples (default 15s).
	ObserveEvery time.Duration
	Agent        agent.Config
	// Gateway configures the device gateway's core, Modbus its Modbus
	// TCP driver (Done is set by the service).
	Gateway gateway.Config
	Modbus  modbustcp.Config
	Logger  *slog.Logger
	// Version is the agent's version (reported).
	Version string
}

// Service is a running edge agent.
type Service struct {
	cfg   Config
	log   *slog.Logger
	mu    sync.Mutex // guards a
	a     *agent.Agent
	run   *runner.Runner
	link  *link.Link
	local *server.Server
	gw    *link.Link
	// The device gateway: its core (under gwMu), the Modbus driver, and
	// the desired version whose devices it was given.
	gwMu    sync.Mutex
	dev     *gateway.Gateway
	modbus  *modbustcp.Driver
	devWake chan struct{}
	devVer  uint64
	devSet  bool
	sem     chan struct{} // bounds concurrent downloads
	ctx     context.Context
	cancel  context.CancelFunc
	wake    chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
	closed  sync.Once
	sys     *sampler
}

// Start opens the data directory and starts the agent: the apps of the
// stored desired state start at once, with or without the cloud.
func Start(cfg Config) (*Service, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("service: DataDir is required")
	}
	if cfg.ObserveEvery <= 0 {
		cfg.ObserveEvery = 15 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, log: log, sem: make(chan struct{}, 2), wake: make(chan struct{}, 1), done: make(chan struct{}),
		devWake: make(chan struct{}, 1), dev: gateway.New(cfg.Gateway)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.sys = newSampler(cfg.DataDir)
	ac := cfg.Agent
	ac.Info = s.sys.info(cfg.Version)
	a, err := agent.New(ac, env.NewLockedRand(env.SystemSeed()), vfs.Default, cfg.DataDir, time.Now())
	if err != nil {
		return nil, err
	}
	s.a = a
	s.run, err = runner.New(runner.Config{Dir: filepath.Join(cfg.DataDir, "apps"), LogDir: filepath.Join(cfg.DataDir, "logs"),
		Artifacts: a.Artifacts(), Shim: cfg.Shim, CgroupRoot: cfg.CgroupRoot, Events: events{s}, Logger: log,
		Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"}})
	if err != nil {
		_ = a.Close()
		return nil, err
	}
	mc := cfg.Modbus
	mc.Logger = log
	mc.Done = s.modbusDone
	s.modbus = modbustcp.New(mc) // from here on, Close stops it
	if !a.Activated() {
		if cfg.Join == "" {
			s.Close()
			return nil, errors.New("the node is not activated: give it a join token (skybridge-cloud ctl token NODE)")
		}
		j, err := api.DecodeJoin(cfg.Join)
		if err == nil {
			err = a.Activate(j, time.Now())
		}
		if err != nil {
			s.Close()
			return nil, err
		}
	} else if err := s.startLink(); err != nil {
		s.Close()
		return nil, err
	}
	if cfg.LocalBroker != "" {
		if err := s.startLocalBroker(); err != nil {
			s.Close()
			return nil, err
		}
	}
	s.wg.Add(3)
	go s.loop()
	go s.observe()
	go s.devices()
	log.Info("skybridge-edge started", "node", a.Node(), "activated", a.Activated(), "local_broker", cfg.LocalBroker)
	return s, nil
}

// events hands the runner's news to the core.
type events struct{ s *Service }

func (e events) Started(name string, gen uint64, pid int) {
	e.s.with(func(a *agent.Agent) { a.AppStarted(name, gen, pid, time.Now()) })
}
func (e events) Exited(name string, gen uint64, code int) {
	e.s.with(func(a *agent.Agent) { a.AppExited(name, gen, code, time.Now()) })
}
func (e events) Failed(name string, gen uint64, reason string) {
	e.s.with(func(a *agent.Agent) { a.AppFailed(name, gen, reason, time.Now()) })
}
func (e events) Health(name string, gen uint64, ok bool) {
	e.s.with(func(a *agent.Agent) { a.AppHealth(name, gen, ok, time.Now()) })
}

// with calls into the core under the lock and wakes the loop.
func (s *Service) with(fn func(a *agent.Agent)) {
	s.mu.Lock()
	fn(s.a)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// loop carries out Ready and runs the core's timers.
func (s *Service) loop() {
	defer s.wg.Done()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for {
		s.mu.Lock()
		s.a.Tick(time.Now())
		r := s.a.Ready()
		next := s.a.NextDeadline()
		var devs []api.DeviceSpec
		changed := false
		if d := s.a.Desired(); d != nil && (!s.devSet || d.Version != s.devVer) {
			devs, s.devVer, s.devSet, changed = d.Devices, d.Version, true, true
		}
		s.mu.Unlock()
		if changed {
			s.withGateway(func(g *gateway.Gateway) { g.Configure(devs, time.Now()) })
		}
		s.carryOut(r)
		wait := time.Minute
		if !next.IsZero() {
			wait = min(wait, max(time.Until(next), 5*time.Millisecond))
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

func (s *Service) carryOut(r agent.Ready) {
	for _, p := range r.Publish {
		if s.link != nil {
			s.link.Publish(p.Topic, p.Payload) // a loss is recovered by the outbox
		}
	}
	for _, st := range r.Stop {
		s.run.Stop(st.Name, st.Gen)
	}
	for _, st := range r.Start {
		spec := st.Spec
		spec.Env = append([]api.EnvVar{{Name: "SKYBRIDGE_NODE", Value: s.Node()}}, spec.Env...)
		s.run.Start(st.Name, st.Gen, spec)
	}
	for _, art := range r.Fetch {
		s.wg.Add(1)
		go s.fetch(art)
	}
	for _, q := range r.Requests {
		s.wg.Add(1)
		go s.request(q)
	}
	for _, d := range r.Devices {
		if s.gw != nil {
			b, _ := json.Marshal(d.Props)
			s.gw.PublishRetained("devices/"+d.Device+"/desired", b)
		}
	}
	if r.Reconnect {
		if s.link == nil {
			if err := s.startLink(); err != nil {
				s.log.Error("edge: link", "err", err)
			}
		} else {
			s.link.Reconnect()
		}
	}
}

// credentials returns the node's identity as TLS material.
func (s *Service) credentials() (agent.Credentials, tls.Certificate, *x509.CertPool, error) {
	s.mu.Lock()
	c, ok := s.a.Credentials()
	s.mu.Unlock()
	if !ok {
		return c, tls.Certificate{}, nil, errors.New("not activated")
	}
	caCert, err := x509.ParseCertificate(c.CA)
	if err != nil {
		return c, tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	cert := tls.Certificate{Certificate: [][]byte{c.Cert}, PrivateKey: ed25519.NewKeyFromSeed(c.KeySeed)}
	return c, cert, pool, nil
}

func (s *Service) startLink() error {
	c, _, _, err := s.credentials()
	if err != nil {
		return err
	}
	s.link, err = link.Start(link.Config{
		Broker:   c.Broker,
		ClientID: c.Node,
		Filter:   api.NodeDownTopic(c.Node),
		TLS: func() (*tls.Config, error) {
			c, cert, pool, err := s.credentials()
			if err != nil {
				return nil, err
			}
			host, _, _ := net.SplitHostPort(c.Broker)
			return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}, nil
		},
		OnUp:   func() { s.with(func(a *agent.Agent) { a.LinkUp(time.Now()) }) },
		OnDown: func() { s.with(func(a *agent.Agent) { a.LinkDown(time.Now()) }) },
		OnMessage: func(topic string, payload []byte) {
			s.with(func(a *agent.Agent) { a.Message(topic, payload, time.Now()) })
		},
		Logger: s.log,
	})
	return err
}

// httpClient returns a client for the cloud's API: pinned to the CA hash
// of a join token (activation), or trusting the node's CA and presenting
// its certificate.
func (s *Service) httpClient(caHash string) (*http.Client, error) {
	var tcfg *tls.Config
	if caHash != "" {
		tcfg = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, // verified below, by the pinned CA
			VerifyConnection: func(cs tls.ConnectionState) error { return verifyPinned(cs, caHash) }}
	} else {
		_, cert, pool, err := s.credentials()
		if err != nil {
			return nil, err
		}
		tcfg = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{cert}}
	}
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: tcfg, Proxy: http.ProxyFromEnvironment}}, nil
}

// verifyPinned checks the server's chain against the CA whose certificate
// has the pinned SHA-256 (the server sends the CA in its chain).
func verifyPinned(cs tls.ConnectionState, caHash string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no server certificate")
	}
	pool := x509.NewCertPool()
	found := false
	for _, c := range cs.PeerCertificates {
		sum := sha256.Sum256(c.Raw)
		if hex.EncodeToString(sum[:]) == caHash {
			pool.AddCert(c)
			found = true
		}
	}
	if !found {
		return errors.New("the server's chain does not hold the CA of the join token")
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, DNSName: cs.ServerName})
	return err
}

func (s *Service) request(q agent.Request) {
	defer s.wg.Done()
	status, body := 0, []byte(nil)
	defer func() {
		s.with(func(a *agent.Agent) {
			if err := a.Response(q.ID, status, body, time.Now()); err != nil {
				s.log.Error("edge: "+q.Kind, "err", err)
			}
		})
		if q.Kind == agent.ReqActivate && status == http.StatusOK {
			s.log.Info("edge: activated")
		}
	}()
	c, err := s.httpClient(q.CAHash)
	if err != nil {
		body = []byte(err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(q.API, "/")+"/v1/"+q.Kind, bytes.NewReader(q.Body))
	if err != nil {
		body = []byte(err.Error())
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		body = []byte(err.Error())
		return
	}
	defer resp.Body.Close()
	body, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	status = resp.StatusCode
}

// fetch downloads an artifact into the store (at most two at a time).
func (s *Service) fetch(art api.Artifact) {
	defer s.wg.Done()
	select {
	case s.sem <- struct{}{}:
	case <-s.done:
		return
	}
	defer func() { <-s.sem }()
	err := s.download(art)
	s.with(func(a *agent.Agent) {
		if err != nil {
			s.log.Warn("edge: download failed", "sha256", art.SHA256, "err", err)
			a.ArtifactFailed(art.SHA256, time.Now())
		} else {
			a.ArtifactReady(art.SHA256, time.Now())
		}
	})
}

func (s *Service) download(art api.Artifact) error {
	c, err := s.httpClient("")
	if err != nil {
		return err
	}
	creds, _, _, _ := s.credentials()
	u, err := url.JoinPath(creds.API, "v1", "artifacts", art.SHA256)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	s.mu.Lock()
	store := s.a.Artifacts()
	s.mu.Unlock()
	_, _, err = store.Put(io.LimitReader(resp.Body, art.Size+1), art.SHA256)
	return err
}

// startLocalBroker runs the embedded broker for devices and apps, and the
// device gateway's connection to it.
func (s *Service) startLocalBroker() error {
	bc := broker.DefaultConfig()
	bc.Logger = s.log
	b := broker.New(bc, env.Real(), nil)
	sc := server.DefaultConfig()
	sc.Broker = bc
	sc.Logger = s.log
	sc.Listeners = []server.ListenerConfig{{Name: "local", Type: server.TCP, Addr: s.cfg.LocalBroker, DefaultTenant: "edge"}}
	s.local = server.New(sc, b)
	if err := s.local.Start(); err != nil {
		return err
	}
	gw, err := link.Start(link.Config{
		Broker:     s.local.Addr("local").String(),
		ClientID:   "skybridge-edge-gateway",
		Filter:     "devices/+/reported",
		BackoffMin: 100 * time.Millisecond, BackoffMax: 5 * time.Second,
		OnMessage: func(topic string, payload []byte) {
			dev := strings.TrimSuffix(strings.TrimPrefix(topic, "devices/"), "/reported")
			s.withGateway(func(g *gateway.Gateway) { g.MQTTReport(dev, payload) })
		},
		Logger: s.log,
	})
	s.gw = gw
	return err
}

// LocalBrokerAddr returns the embedded broker's address ("" when off).
func (s *Service) LocalBrokerAddr() string {
	if s.local == nil {
		return ""
	}
	return s.local.Addr("local").String()
}

// observe samples the machine and the apps for the status reports.
func (s *Service) observe() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ObserveEvery)
	defer t.Stop()
	for {
		usage := s.sys.usage()
		apps := s.run.Usage()
		s.with(func(a *agent.Agent) { a.Observe(s.sys.info(s.cfg.Version), usage, apps) })
		s.observeDevices()
		select {
		case <-s.done:
			return
		case <-t.C:
		}
	}
}

// Status returns the node's status as it would report it now.
func (s *Service) Status() api.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.a.Status(time.Now())
}

// Node returns the node's name ("" before activation).
func (s *Service) Node() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.a.Node()
}

// Close stops the agent and its apps.
func (s *Service) Close() {
	s.closed.Do(func() {
		close(s.done)
		s.cancel()
		if s.link != nil {
			_ = s.link.Close()
		}
		if s.gw != nil {
			_ = s.gw.Close()
		}
		if s.local != nil {
			s.local.Close()
		}
		s.wg.Wait()
		s.modbus.Shutdown()
		s.run.Close()
		s.mu.Lock()
		_ = s.a.Close()
		s.mu.Unlock()
	})
}

// withGateway calls into the gateway core under its lock and wakes its
// loop.
func (s *Service) withGateway(fn func(g *gateway.Gateway)) {
	s.gwMu.Lock()
	fn(s.dev)
	s.gwMu.Unlock()
	select {
	case s.devWake <- struct{}{}:
	default:
	}
}

// modbusDone hands a Modbus operation's answer to the gateway core.
func (s *Service) modbusDone(op gateway.Op, res []gateway.ReadResult, err error) {
	s.withGateway(func(g *gateway.Gateway) {
		if op.Write != nil {
			g.WriteDone(op.Device, op.ID, err, time.Now())
		} else {
			g.PollDone(op.Device, op.ID, res, err, time.Now())
		}
	})
}

// devices runs the gateway core's timers and carries out its Ready:
// Modbus operations to the driver, reports to the agent's outbox.
func (s *Service) devices() {
	defer s.wg.Done()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for {
		s.gwMu.Lock()
		s.dev.Tick(time.Now())
		r := s.dev.Ready()
		next := s.dev.NextDeadline()
		s.gwMu.Unlock()
		for _, e := range r.Events {
			s.log.Info("edge: device", "device", e.Device, "msg", e.Message)
		}
		if len(r.Events) > 0 || len(r.Reports) > 0 {
			s.observeDevices() // a device changed state: the next status says so
		}
		for _, name := range r.Close {
			s.modbus.Close(name)
		}
		for _, op := range r.Ops {
			s.modbus.Submit(op)
		}
		if len(r.Reports) > 0 {
			s.with(func(a *agent.Agent) { a.DevicesReported(r.Reports, time.Now()) }) // one sync for all
		}
		wait := time.Minute
		if !next.IsZero() {
			wait = min(wait, max(time.Until(next), time.Millisecond))
		}
		t.Reset(wait)
		select {
		case <-s.done:
			return
		case <-s.devWake:
		case <-t.C:
		}
	}
}

// Devices returns the gateway's view of the node's devices, and its
// counters.
func (s *Service) Devices() ([]api.DeviceState, gateway.Stats) {
	s.gwMu.Lock()
	defer s.gwMu.Unlock()
	return s.dev.Devices(), s.dev.Stats()
}

// observeDevices hands the gateway's view to the agent for its status
// reports.
func (s *Service) observeDevices() {
	s.gwMu.Lock()
	devs, stats := s.dev.Devices(), s.dev.APIStats()
	s.gwMu.Unlock()
	stats.QueueDropped = s.modbus.Stats().Dropped
	s.with(func(a *agent.Agent) { a.ObserveDevices(devs, stats, time.Now()) })
}
