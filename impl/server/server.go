// Package server is Skybridge's production runtime: it listens on TCP, TLS,
// WebSocket and secure WebSocket, runs a reader and a writer goroutine per
// connection around the broker core, and serves the admin HTTP endpoints
// (Prometheus /metrics, /healthz, /readyz).
//
// This package is a runtime, exempt from the core's purity rule: it reads the
// wall clock, opens sockets and starts goroutines, and nothing in impl/broker
// or below does.
//
// Each connection has a reader goroutine, and a writer goroutine while it
// has output to write (conn.go). The reader decodes packets and hands them
// to the broker, which routes publishes into subscribers' sessions and wakes
// their writers; a writer drains its own session's output in batches (write
// coalescing) and ends when there is none. A publisher never writes to a
// subscriber's socket, so a slow subscriber slows only itself: its QoS 0
// messages are dropped and counted once its output buffer is full, its QoS
// 1/2 messages wait in its bounded session queue. An idle connection holds
// no read buffer (reader.go), and on Linux an idle TCP connection has no
// goroutine either: it parks in the server's epoll set until its socket
// has something (conn.go, parker_linux.go).
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skybridge-mq/skybridge/impl/auth"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// Listener types.
const (
	TCP = "tcp"
	TLS = "tls"
	WS  = "ws"
	WSS = "wss"
)

// ListenerConfig configures one listener.
type ListenerConfig struct {
	Name string
	Type string // tcp, tls, ws or wss
	Addr string // host:port; port 0 picks a free port
	// Path is the HTTP path of a WebSocket listener (default /mqtt).
	Path string
	// TLS certificate and key (PEM files) for tls and wss listeners.
	CertFile, KeyFile string
	// ClientCAFile enables client certificates signed by this CA;
	// RequireClientCert refuses clients without one.
	ClientCAFile      string
	RequireClientCert bool
	// DefaultTenant is the tenant of clients whose user name names none.
	DefaultTenant string
	// Redirect sends every client of this listener to another server
	// (5.0: CONNACK 0x9C with Server Reference, 0x9D when Moved).
	Redirect string
	Moved    bool
}

// Config configures a Server.
type Config struct {
	Listeners []ListenerConfig
	Broker    broker.Config
	// ConnectTimeout bounds the wait for CONNECT after a connection opens.
	ConnectTimeout time.Duration
	// WriteTimeout bounds one write to a client; a client that reads
	// nothing for this long is disconnected.
	WriteTimeout time.Duration
	// MaxConnections caps open connections (0: no cap).
	MaxConnections int
	// NoParking keeps a reader goroutine for every idle TCP connection
	// (see conn.go; parking is done on Linux only).
	NoParking bool
	// ReadBufferSize is the size of the read buffer a connection borrows
	// while it has bytes to handle (an idle connection holds none); a
	// packet that fits is handled in place, without a copy.
	ReadBufferSize int
	// Cluster, when set, is the node's cluster membership, which the admin
	// API shows (GET /api/v1/cluster).
	Cluster ClusterMembers
	// ClusterRanges, when set, adds this node's raftkv replicas to the
	// cluster's admin view.
	ClusterRanges ClusterRanges
	// Redirect, when set, names another server for Shutdown to send a 5.0
	// client to (DISCONNECT 0x9C, use another server, with a Server
	// Reference), called once per connection: a clustered node that stops
	// moves its clients to live ones. "" or nil: 0x8B, server shutting
	// down.
	Redirect func() string
	// AdminAddr is the address of the admin HTTP server ("" disables it).
	AdminAddr string
	// AdminToken guards the admin API (/api/v1): requests carry
	// "Authorization: Bearer TOKEN". Empty: the API answers on loopback only.
	AdminToken string
	// MetricsToken, when set, is also accepted for /metrics; without it
	// /metrics needs AdminToken when that is set.
	MetricsToken string
	// AdminHosts are more names the admin server may be addressed by (the
	// Host header) besides its own address, the machine's host name and,
	// on loopback, localhost (admin.go: DNS rebinding).
	AdminHosts []string
	// MaxTenantLabels bounds the tenants with series of their own in
	// /metrics; the rest are summed under tenant="_other". 0: 100
	// (event.DefaultMaxTenants).
	MaxTenantLabels int
	// Version is the broker's version, as the admin API reports it.
	Version string
	// Console serves the web console at /console/ on the admin listener;
	// ConsoleUsers are its users (name → bcrypt hash) besides the admin
	// token.
	Console      bool
	ConsoleUsers map[string][]byte
	// AuthGuard, when set, is the guard in front of authentication: its
	// counters are exported as skybridge_auth_* (admin.go).
	AuthGuard *auth.Guard
	// Collectors are more Prometheus collectors for /metrics (for example
	// the bridges', which the runtime around the server owns).
	Collectors []prometheus.Collector
	Logger     *slog.Logger
}

// DefaultConfig returns a configuration with one TCP listener on
// 127.0.0.1:1883 and production limits.
func DefaultConfig() Config {
	return Config{
		Listeners:      []ListenerConfig{{Name: "tcp", Type: TCP, Addr: "127.0.0.1:1883", DefaultTenant: "default"}},
		Broker:         broker.DefaultConfig(),
		ConnectTimeout: 10 * time.Second,
		WriteTimeout:   30 * time.Second,
		ReadBufferSize: 16 << 10,
	}
}

// Server runs a broker on real sockets.
type Server struct {
	cfg     Config
	b       *broker.Broker
	started time.Time
	log     *slog.Logger
	mu      sync.Mutex
	lns     map[string]net.Listener
	https   []*http.Server
	// conns holds the open connections; each knows its place
	// (connection.slot), so leaving is a swap with the last (a map cost
	// about 36 B per connection).
	conns []*connection
	// notMQTT bounds the log lines about connections that are not MQTT,
	// per listener (garbage.go).
	notMQTT map[string]*listenerLog
	bufs    *bufPool // read buffers
	parker  *parker  // idle TCP connections without a goroutine (nil: none)
	wg      sync.WaitGroup
	open    atomic.Int64
	closed  atomic.Bool
	// Counters of the runtime itself.
	rejected  atomic.Uint64 // connections refused at MaxConnections
	timeouts  atomic.Uint64 // connections closed for no CONNECT in time or keep alive
	tlsFailed atomic.Uint64
	// Parked connections given a reader again (bytes, a hang-up, the
	// keep-alive deadline, a close), and PINGREQs the parker answered
	// without (parker_linux.go).
	resumed     atomic.Uint64
	parkedPings atomic.Uint64
	// Refusals held (authhold.go): now, in all, and not held at the bound.
	holding  atomic.Int64
	held     atomic.Uint64
	notHeld  atomic.Uint64
	quit     chan struct{} // closed when the server stops
	quitOnce sync.Once
	// parkedHook, for tests, is called when a connection has parked after
	// a packet (not while it waits for its first: acceptBare).
	parkedHook func()
}

// New returns a server for b. Call Start to open its listeners.
func New(cfg Config, b *broker.Broker) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.ReadBufferSize <= 0 {
		cfg.ReadBufferSize = 16 << 10
	}
	return &Server{cfg: cfg, b: b, log: log, started: time.Now(), lns: map[string]net.Listener{},
		notMQTT: map[string]*listenerLog{}, bufs: newBufPool(cfg.ReadBufferSize), quit: make(chan struct{})}
}

// Broker returns the broker the server runs.
func (s *Server) Broker() *broker.Broker { return s.b }

// Start opens every listener and the admin server and starts accepting.
func (s *Server) Start() error {
	if !s.cfg.NoParking && s.parker == nil {
		for _, lc := range s.cfg.Listeners {
			if lc.Type != TCP {
				continue
			}
			if p, err := newParker(); err == nil {
				s.parker = p
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					p.run()
				}()
			}
			break
		}
	}
	for i := range s.cfg.Listeners {
		lc := s.cfg.Listeners[i]
		if lc.Name == "" {
			lc.Name = lc.Type
		}
		if err := s.listen(lc); err != nil {
			s.Close()
			return fmt.Errorf("listener %q (%s %s): %w", lc.Name, lc.Type, lc.Addr, err)
		}
	}
	if s.cfg.AdminAddr != "" {
		if err := s.startAdmin(); err != nil {
			s.Close()
			return fmt.Errorf("admin %s: %w", s.cfg.AdminAddr, err)
		}
	}
	return nil
}

// Addr returns the address a listener is bound to ("admin" for the admin
// server), or nil.
func (s *Server) Addr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ln := s.lns[name]; ln != nil {
		return ln.Addr()
	}
	return nil
}

// LoadCertPool reads a file of PEM certificates (a CA bundle) into a pool.
func LoadCertPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate found", file)
	}
	return pool, nil
}

func tlsConfig(lc ListenerConfig) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(lc.CertFile, lc.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if lc.ClientCAFile != "" {
		pool, err := LoadCertPool(lc.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if lc.RequireClientCert {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg, nil
}

func (s *Server) listen(lc ListenerConfig) error {
	var lcfg net.ListenConfig
	if lc.Type == TCP {
		// No TCP keep-alive by default: MQTT keep alive finds dead peers, and
		// the four setsockopt calls per connection show in a connection
		// storm. Connections without MQTT keep alive get it (batchDone).
		lcfg.KeepAlive = -1
	}
	ln, err := lcfg.Listen(context.Background(), "tcp", lc.Addr)
	if err != nil {
		return err
	}
	var tcfg *tls.Config
	if lc.Type == TLS || lc.Type == WSS {
		if tcfg, err = tlsConfig(lc); err != nil {
			ln.Close()
			return err
		}
	}
	s.mu.Lock()
	s.lns[lc.Name] = ln
	s.notMQTT[lc.Name] = &listenerLog{name: lc.Name, rateLog: rateLog{every: notMQTTEvery}}
	s.mu.Unlock()
	s.log.Info("listening", "listener", lc.Name, "type", lc.Type, "addr", ln.Addr().String())
	switch lc.Type {
	case TCP, TLS:
		s.wg.Add(1)
		go s.acceptLoop(ln, lc, tcfg)
	case WS, WSS:
		if tcfg != nil {
			ln = tls.NewListener(ln, tcfg)
		}
		s.serveWebSocket(ln, lc)
	default:
		ln.Close()
		return fmt.Errorf("unknown listener type %q", lc.Type)
	}
	return nil
}

func (s *Server) acceptLoop(ln net.Listener, lc ListenerConfig, tcfg *tls.Config) {
	defer s.wg.Done()
	if tcfg == nil && s.acceptBare(ln, &lc) {
		return
	}
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failure (out of file descriptors): back off, keep going.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept", "listener", lc.Name, "err", err)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		// Go sockets have TCP_NODELAY set already.
		s.wg.Add(1) // released by serveTCP or, once admitted, finish
		go s.serveTCP(nc, &lc, tcfg)
	}
}

// serveTCP runs a connection of a TCP or TLS listener. Its frame and the
// reader's are all that a parked connection keeps on its stack: the TLS
// handshake and the setup run in functions of their own, so that the stack
// can shrink back to its smallest useful size once the connection is idle.
func (s *Server) serveTCP(nc net.Conn, lc *ListenerConfig, tcfg *tls.Config) {
	growStack(0)
	cert := ""
	if tcfg != nil {
		var ok bool
		if nc, cert, ok = s.handshake(nc, tcfg); !ok {
			s.wg.Done()
			return
		}
	}
	cn := s.admit(nc, -1, lc, "", cert)
	if cn == nil {
		s.wg.Done()
		return
	}
	cn.counted = true
	s.run(cn)
}

// connectStack is about the stack the broker needs to accept a CONNECT.
const connectStack = 6 << 10

// growStack grows a new reader goroutine's stack to what a CONNECT (or a
// connection's end) needs, in one step while the stack is nearly empty. A
// goroutine starts small and would otherwise double its stack twice in the
// middle of the CONNECT, copying and adjusting every frame each time: about
// a sixth of the CPU time of a connection storm. (The stack shrinks back
// once the connection is idle, or goes with its goroutine when it parks.)
//
//go:noinline
func growStack(n int) byte {
	var b [connectStack]byte
	b[n%len(b)] = byte(n)
	return b[(n+1)%len(b)]
}

// handshake runs the TLS handshake of a new connection and returns the
// client certificate's subject, if any.
//
//go:noinline
func (s *Server) handshake(nc net.Conn, tcfg *tls.Config) (net.Conn, string, bool) {
	tc := tls.Server(nc, tcfg)
	_ = tc.SetDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	if err := tc.Handshake(); err != nil {
		s.tlsFailed.Add(1)
		s.log.Debug("tls handshake", "remote", nc.RemoteAddr().String(), "err", err)
		nc.Close()
		return nil, "", false
	}
	_ = tc.SetDeadline(time.Time{})
	cert := ""
	if st := tc.ConnectionState(); len(st.PeerCertificates) > 0 {
		cert = st.PeerCertificates[0].Subject.String()
	}
	return tc, cert, true
}

// Close stops accepting, closes every connection at once and waits for
// their goroutines. Use Shutdown for a graceful stop.
func (s *Server) Close() {
	s.quitOnce.Do(func() { close(s.quit) })
	if s.closed.Swap(true) {
		return
	}
	s.mu.Lock()
	for _, ln := range s.lns {
		ln.Close()
	}
	for _, h := range s.https {
		h.Close()
	}
	for _, cn := range s.conns {
		cn.closeTransport()
	}
	s.mu.Unlock()
	if s.parker != nil {
		s.parker.close()
	}
	s.wg.Wait()
}

// Drain sends every client elsewhere and refuses new ones the same way
// until Undrain (broker.Drain): 5.0 clients get 0x9C with a Server
// Reference from Config.Redirect. It reports false when nothing names
// another server (no Redirect, or no live server to name).
func (s *Server) Drain() bool {
	if s.cfg.Redirect == nil {
		return false
	}
	ref := s.cfg.Redirect
	if ref() == "" {
		return false
	}
	s.mu.Lock()
	conns := make([]*broker.Conn, 0, len(s.conns))
	wake := make([]func(), 0, len(s.conns))
	for _, cn := range s.conns {
		conns = append(conns, cn.c)
		wake = append(wake, cn.wakeUp)
	}
	s.mu.Unlock()
	s.b.Drain(ref, conns)
	for _, w := range wake {
		w()
	}
	return true
}

// Undrain accepts clients again after Drain.
func (s *Server) Undrain() { s.b.Undrain() }

// Shutdown stops accepting, sends DISCONNECT 0x8B (server shutting down),
// or 0x9C with a Server Reference when Config.Redirect names one, to 5.0
// clients, lets every connection flush its output and close, and waits
// until they have or ctx ends; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.quitOnce.Do(func() { close(s.quit) }) // held refusals go now
	s.mu.Lock()
	for _, ln := range s.lns {
		ln.Close()
	}
	s.mu.Unlock()
	s.b.Shutdown()
	s.mu.Lock()
	for _, cn := range s.conns {
		code, ref := packet.ServerShuttingDown, ""
		if s.cfg.Redirect != nil {
			if ref = s.cfg.Redirect(); ref != "" {
				code = packet.UseAnotherServer
			}
		}
		cn.c.KickTo(code, ref) // also those still before CONNECT
		cn.wakeUp()
	}
	s.mu.Unlock()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.open.Load() > 0 {
		select {
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		case <-tick.C:
		}
	}
	s.Close()
	return nil
}

// OpenConnections returns the number of open client connections.
func (s *Server) OpenConnections() int64 { return s.open.Load() }
