package bridge

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
	"time"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/packets"
)

// limits are what the receiving broker announced in its CONNACK.
type limits struct {
	receiveMax int    // its Receive Maximum (65535 when absent)
	maxQoS     byte   // its Maximum QoS
	retain     bool   // Retain Available
	maxPacket  uint32 // Maximum Packet Size (0: none)
}

// events are how an endpoint reports to its bridge. They are called from
// the connection's goroutines and must not block.
type events struct {
	// up: connection gen is established (and subscribed).
	up func(gen uint64, l limits)
	// down: connection gen ended; nothing more is acknowledged on it.
	down func(gen uint64)
	// message: a PUBLISH arrived. ack acknowledges it to the broker (call
	// it once the message is durable, in any order: acknowledgements go out
	// in the order the messages arrived); kick drops the connection so that
	// the broker sends the unacknowledged messages again.
	message func(r *record, ack func(), kick func())
	// acked: the broker answered a forwarded QoS 1 message (PUBACK code).
	acked func(gen, seq uint64, code byte)
}

// conn is one established connection.
type conn interface {
	// publish sends r at QoS qos; a QoS 1 outcome arrives through
	// events.acked. errDown: the connection is unusable; errRejected:
	// this message can never be sent.
	publish(r *record, qos byte, retain bool) error
	done() <-chan struct{}
	limits() limits
	// close ends the connection: with a DISCONNECT when clean, else just
	// by closing the socket.
	close(clean bool)
}

var (
	errDown     = errors.New("connection down")
	errRejected = errors.New("message refused by the client library")
)

// subscription is a filter the endpoint subscribes to on every connection.
type subscription struct {
	filter string
	qos    byte
}

// endpoint keeps one side's connection up: connect, subscribe, report,
// reconnect with backoff.
type endpoint struct {
	side   string // "local" or "remote", for logs and errors
	cfg    Endpoint
	addr   address
	tls    *tls.Config
	subs   []subscription
	window int // Receive Maximum announced to the broker
	ev     events
	log    *slog.Logger
	dial   func(ctx context.Context, e *endpoint, gen uint64, first bool) (conn, error)

	mu        sync.Mutex
	cur       conn
	gen       uint64
	connected bool
	connects  uint64
	failures  uint64
	lastErr   string
	since     time.Time
}

func newEndpoint(side string, cfg Endpoint, subs []subscription, window int, log *slog.Logger) (*endpoint, error) {
	a, err := parseAddress(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("%s.address: %w", side, err)
	}
	e := &endpoint{side: side, cfg: cfg, addr: a, subs: subs, window: window, log: log.With("side", side)}
	if a.scheme == "ssl" || a.scheme == "wss" {
		if e.tls, err = tlsConfig(side, cfg.TLS, a); err != nil {
			return nil, err
		}
	}
	if cfg.Version == "3.1.1" {
		e.dial = dial3
	} else {
		e.dial = dial5
	}
	return e, nil
}

func tlsConfig(side string, t TLS, a address) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // the operator's explicit choice
	if c.ServerName == "" {
		c.ServerName = a.url.Hostname()
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s.tls.ca_file: %w", side, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s.tls.ca_file: no PEM certificate in %s", side, t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s.tls.cert_file: %w", side, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// dialNet opens the transport: TCP, TLS, WebSocket or secure WebSocket.
// The result is safe for concurrent writes of whole packets (paho needs
// that: its acknowledgements and publishes come from different goroutines).
func (e *endpoint) dialNet(ctx context.Context) (net.Conn, error) {
	switch e.addr.scheme {
	case "tcp":
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", e.addr.host)
		if err != nil {
			return nil, err
		}
		return packets.NewThreadSafeConn(c), nil
	case "ssl":
		d := tls.Dialer{Config: e.tls}
		c, err := d.DialContext(ctx, "tcp", e.addr.host)
		if err != nil {
			return nil, err
		}
		return packets.NewThreadSafeConn(c), nil
	default: // ws, wss
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: e.tls, Proxy: http.ProxyFromEnvironment}}
		ws, _, err := websocket.Dial(ctx, e.addr.url.String(), &websocket.DialOptions{HTTPClient: client, Subprotocols: []string{"mqtt"}})
		if err != nil {
			return nil, err
		}
		ws.SetReadLimit(-1) // MQTT bounds packet sizes itself
		return packets.NewThreadSafeConn(websocket.NetConn(context.Background(), ws, websocket.MessageBinary)), nil
	}
}

// run connects and reconnects until ctx is done, then disconnects cleanly.
func (e *endpoint) run(ctx context.Context) {
	backoff := autopaho.NewExponentialBackoff(e.cfg.ReconnectMin, e.cfg.ReconnectMax,
		min(2*e.cfg.ReconnectMin, e.cfg.ReconnectMax), 1.5)
	first := true
	attempt := 0
	for {
		if attempt > 0 {
			t := time.NewTimer(backoff(attempt))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return
		}
		e.mu.Lock()
		e.gen++
		gen := e.gen
		e.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, e.cfg.ConnectTimeout)
		c, err := e.dial(cctx, e, gen, first)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			e.failed(err)
			attempt++
			continue
		}
		first = false
		attempt = 1 // after a drop, wait a little: a broker that accepts and drops at once must not make us spin
		e.mu.Lock()
		e.cur, e.connected, e.lastErr, e.since = c, true, "", time.Now()
		e.connects++
		reconnect := e.connects > 1
		e.mu.Unlock()
		e.log.Info("bridge connected", "address", e.cfg.Address, "client_id", e.cfg.ClientID, "reconnect", reconnect)
		e.ev.up(gen, c.limits())
		stopping := false
		select {
		case <-c.done():
		case <-ctx.Done():
			stopping = true
			c.close(true)
			<-c.done()
		}
		e.mu.Lock()
		e.cur, e.connected = nil, false
		lastErr := e.lastErr
		e.mu.Unlock()
		e.ev.down(gen)
		if stopping {
			return
		}
		e.log.Warn("bridge connection lost", "address", e.cfg.Address, "err", lastErr)
	}
}

func (e *endpoint) failed(err error) {
	e.mu.Lock()
	e.failures++
	streak := e.lastErr == "" || e.lastErr != err.Error()
	e.lastErr = err.Error()
	e.mu.Unlock()
	if streak {
		e.log.Warn("bridge cannot connect; retrying", "address", e.cfg.Address, "err", err)
	} else {
		e.log.Debug("bridge cannot connect; retrying", "address", e.cfg.Address, "err", err)
	}
}

// setErr records why the current connection ended.
func (e *endpoint) setErr(err error) {
	if err == nil {
		return
	}
	e.mu.Lock()
	e.lastErr = err.Error()
	e.mu.Unlock()
}

// current returns the connection gen if it is still the established one.
func (e *endpoint) current(gen uint64) conn {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gen != gen || !e.connected {
		return nil
	}
	return e.cur
}

// publish sends r on connection gen.
func (e *endpoint) publish(gen uint64, r *record, qos byte, retain bool) error {
	c := e.current(gen)
	if c == nil {
		return errDown
	}
	return c.publish(r, qos, retain)
}

// kick drops connection gen (if it is still the current one) so that it
// is established again.
func (e *endpoint) kick(gen uint64) {
	if c := e.current(gen); c != nil {
		c.close(false)
	}
}

// ConnState is the state of one side's connection.
type ConnState struct {
	Connected bool
	// Since is when the current connection was established.
	Since time.Time
	// Connects counts established connections; Reconnects is Connects
	// minus the first.
	Connects   uint64
	Reconnects uint64
	// Failures counts failed connection attempts.
	Failures uint64
	// LastError is why the last attempt failed or the last connection
	// ended ("" while connected after a clean start).
	LastError string
}

func (e *endpoint) state() ConnState {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := ConnState{Connected: e.connected, Connects: e.connects, Failures: e.failures, LastError: e.lastErr}
	if e.connects > 0 {
		s.Reconnects = e.connects - 1
	}
	if e.connected {
		s.Since = e.since
	}
	return s
}
