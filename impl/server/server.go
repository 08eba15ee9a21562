// Package server is Skybridge's production runtime: it listens on TCP, TLS,
// WebSocket and secure WebSocket, runs a reader and a writer goroutine per
// connection around the broker core, and serves the admin HTTP endpoints
// (Prometheus /metrics, /healthz, /readyz).
//
// This package is a runtime, exempt from the core's purity rule: it reads the
// wall clock, opens sockets and starts goroutines, and nothing in impl/broker
// or below does.
//
// Each connection has exactly two goroutines. The reader decodes packets and
// hands them to the broker, which routes publishes into subscribers' sessions
// and wakes their writers; the writer drains its own session's output in
// batches (write coalescing). A publisher never writes to a subscriber's
// socket, so a slow subscriber slows only itself: its QoS 0 messages are
// dropped and counted once its output buffer is full, its QoS 1/2 messages
// wait in its bounded session queue.
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
	// ReadBufferSize is the size of each connection's read buffer.
	ReadBufferSize int
	// AdminAddr is the address of the admin HTTP server ("" disables it).
	AdminAddr string
	// AdminToken guards the admin API (/api/v1): requests carry
	// "Authorization: Bearer TOKEN". Empty: the API answers on loopback only.
	AdminToken string
	// MaxTenantLabels bounds the tenants with series of their own in
	// /metrics; the rest are summed under tenant="_other". 0: 100.
	MaxTenantLabels int
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
	cfg    Config
	b      *broker.Broker
	log    *slog.Logger
	mu     sync.Mutex
	lns    map[string]net.Listener
	https  []*http.Server
	conns  map[*connection]struct{}
	wg     sync.WaitGroup
	open   atomic.Int64
	closed atomic.Bool
	// Counters of the runtime itself.
	rejected  atomic.Uint64 // connections refused at MaxConnections
	timeouts  atomic.Uint64 // connections closed for no CONNECT in time or keep alive
	tlsFailed atomic.Uint64
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
	return &Server{cfg: cfg, b: b, log: log, lns: map[string]net.Listener{}, conns: map[*connection]struct{}{}}
}

// Broker returns the broker the server runs.
func (s *Server) Broker() *broker.Broker { return s.b }

// Start opens every listener and the admin server and starts accepting.
func (s *Server) Start() error {
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

func tlsConfig(lc ListenerConfig) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(lc.CertFile, lc.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if lc.ClientCAFile != "" {
		pem, err := os.ReadFile(lc.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA %s: no certificate found", lc.ClientCAFile)
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
	ln, err := net.Listen("tcp", lc.Addr)
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
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			info := broker.ConnInfo{Listener: lc.Name, DefaultTenant: lc.DefaultTenant, Remote: nc.RemoteAddr().String(),
				Redirect: lc.Redirect, Moved: lc.Moved}
			if tcfg != nil {
				tc := tls.Server(nc, tcfg)
				_ = tc.SetDeadline(time.Now().Add(s.cfg.ConnectTimeout))
				if err := tc.Handshake(); err != nil {
					s.tlsFailed.Add(1)
					s.log.Debug("tls handshake", "remote", info.Remote, "err", err)
					nc.Close()
					return
				}
				_ = tc.SetDeadline(time.Time{})
				if st := tc.ConnectionState(); len(st.PeerCertificates) > 0 {
					info.CertSubject = st.PeerCertificates[0].Subject.String()
				}
				nc = tc
			}
			s.serve(nc, info)
		}()
	}
}

// connection is the runtime side of one client connection.
type connection struct {
	nc   net.Conn
	c    *broker.Conn
	wake chan struct{}
}

// serve runs one connection until it ends. It returns when both the reader
// and the writer are done.
func (s *Server) serve(nc net.Conn, info broker.ConnInfo) {
	if s.closed.Load() {
		nc.Close()
		return
	}
	if max := s.cfg.MaxConnections; max > 0 && s.open.Load() >= int64(max) {
		s.rejected.Add(1)
		nc.Close()
		return
	}
	s.open.Add(1)
	defer s.open.Add(-1)
	cn := &connection{nc: nc, wake: make(chan struct{}, 1)}
	cn.c = s.b.NewConn(info, func() {
		select {
		case cn.wake <- struct{}{}:
		default:
		}
	})
	s.mu.Lock()
	s.conns[cn] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, cn)
		s.mu.Unlock()
	}()

	readerDone := make(chan struct{})
	writerDone := make(chan struct{})
	go s.writeLoop(cn, readerDone, writerDone)
	s.readLoop(cn)
	close(readerDone)
	<-writerDone
	nc.Close()
	cn.c.Closed()
}

func (s *Server) readLoop(cn *connection) {
	r := packet.NewReader(cn.nc, s.cfg.ReadBufferSize)
	r.MaxPacketSize = s.cfg.Broker.MaxPacketSize
	_ = cn.nc.SetReadDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	read := 0
	for {
		h, body, err := r.ReadPacket()
		if err != nil {
			var pe *packet.Error
			if errors.As(err, &pe) {
				cn.c.Fail(err) // malformed header or packet too large
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				s.timeouts.Add(1)
			}
			return
		}
		cn.c.Handle(h, body)
		if cn.c.Closing() {
			return
		}
		read += h.Size() + h.Remaining
		if r.Buffered() == 0 {
			// Inbound bandwidth limits push back by not reading.
			if p := cn.c.InboundPause(read); p > 0 {
				time.Sleep(p)
			}
			read = 0
			// The batch is done: let the writer send what it produced, and
			// arm the keep-alive deadline before blocking in Read.
			// After the first packet the connection is either established
			// or closing, so the CONNECT deadline gives way to keep alive.
			cn.wakeUp()
			if ka := cn.c.KeepAlive(); ka > 0 {
				_ = cn.nc.SetReadDeadline(time.Now().Add(ka))
			} else {
				_ = cn.nc.SetReadDeadline(time.Time{})
			}
		}
	}
}

func (cn *connection) wakeUp() {
	select {
	case cn.wake <- struct{}{}:
	default:
	}
}

func (s *Server) writeLoop(cn *connection, readerDone <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	var spare []byte
	readerGone := false
	for {
		out, closeNow := cn.c.Output(spare)
		if len(out) > 0 {
			_ = cn.nc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
			if _, err := cn.nc.Write(out); err != nil {
				cn.nc.Close() // unblocks the reader
				return
			}
			if p := cn.c.OutboundPause(len(out)); p > 0 {
				time.Sleep(p) // outbound bandwidth limit
			}
			if cap(out) > 256<<10 {
				out = nil // do not keep a huge buffer for an idle connection
			}
			spare = out[:0]
			continue
		}
		if closeNow || readerGone {
			cn.nc.Close()
			return
		}
		select {
		case <-cn.wake:
		case <-readerDone:
			readerGone = true
		}
	}
}

// Close stops accepting, closes every connection at once and waits for
// their goroutines. Use Shutdown for a graceful stop.
func (s *Server) Close() {
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
	for cn := range s.conns {
		cn.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Shutdown stops accepting, sends DISCONNECT 0x8B (server shutting down) to
// 5.0 clients, lets every connection flush its output and close, and waits
// until they have or ctx ends; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	for _, ln := range s.lns {
		ln.Close()
	}
	s.mu.Unlock()
	s.b.Shutdown()
	s.mu.Lock()
	for cn := range s.conns {
		cn.c.Kick(packet.ServerShuttingDown) // also those still before CONNECT
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
