package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/event"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// start runs a server with the given listeners (addresses 127.0.0.1:0)
// until the test ends.
func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	b := broker.New(cfg.Broker, env.Real(), nil)
	s := New(cfg, b)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func testConfig(listeners ...ListenerConfig) Config {
	cfg := DefaultConfig()
	cfg.Listeners = listeners
	// The tests' clients pick their tenant with a "tenant/user" name.
	cfg.Broker.Authenticator = broker.TenantFromUsername{}
	return cfg
}

// mqttConnect sends a CONNECT on c and returns the CONNACK.
func mqttConnect(t *testing.T, c net.Conn, v packet.Version, id string) *packet.Connack {
	t.Helper()
	b, _ := packet.Encode(&packet.Connect{Version: v, ClientID: []byte(id), CleanStart: true, KeepAlive: 30}, v)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	p, err := packet.NewDecoder(c, v).Next()
	if err != nil {
		t.Fatalf("reading CONNACK: %v", err)
	}
	ack, ok := p.(*packet.Connack)
	if !ok {
		t.Fatalf("got %s, want CONNACK", packet.Format(p))
	}
	return ack
}

// pki is a throwaway CA with a server and a client certificate.
type pki struct {
	dir                string
	caFile, certFile   string
	keyFile            string
	clientCert         tls.Certificate
	pool               *x509.CertPool
	clientSubjectShort string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(cn string, usage x509.ExtKeyUsage, ip bool) ([]byte, *ecdsa.PrivateKey) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: []string{"acme"}},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		if ip {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srvDER, srvKey := issue("127.0.0.1", x509.ExtKeyUsageServerAuth, true)
	srvKeyDER, _ := x509.MarshalECPrivateKey(srvKey)
	cliDER, cliKey := issue("device-7", x509.ExtKeyUsageClientAuth, false)
	p := &pki{dir: dir, caFile: write("ca.pem", "CERTIFICATE", caDER), certFile: write("server.pem", "CERTIFICATE", srvDER),
		keyFile: write("server.key", "EC PRIVATE KEY", srvKeyDER), pool: x509.NewCertPool(), clientSubjectShort: "CN=device-7,O=acme"}
	p.pool.AddCert(ca)
	p.clientCert = tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}
	return p
}

// recordingAuth accepts everyone and remembers what it was asked.
type recordingAuth struct {
	mu   sync.Mutex
	reqs []broker.AuthRequest
}

func (a *recordingAuth) Authenticate(req *broker.AuthRequest) broker.AuthResult {
	a.mu.Lock()
	a.reqs = append(a.reqs, *req)
	a.mu.Unlock()
	return broker.TenantFromUsername{}.Authenticate(req)
}

func (a *recordingAuth) last() broker.AuthRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reqs[len(a.reqs)-1]
}

func TestTLSWithClientCertificates(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	cfg := testConfig(ListenerConfig{Name: "tls", Type: TLS, Addr: "127.0.0.1:0", CertFile: p.certFile,
		KeyFile: p.keyFile, ClientCAFile: p.caFile, RequireClientCert: true, DefaultTenant: "d"})
	auth := &recordingAuth{}
	cfg.Broker.Authenticator = auth
	s := start(t, cfg)
	addr := s.Addr("tls").String()

	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{p.clientCert}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ack := mqttConnect(t, c, packet.V5, "tls-client"); ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %v", ack.ReasonCode)
	}
	if got := auth.last().CertSubject; got != p.clientSubjectShort {
		t.Fatalf("certificate subject %q, want %q", got, p.clientSubjectShort)
	}

	// Without a client certificate the handshake fails.
	c2, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: p.pool})
	if err == nil {
		_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := packet.Encode(&packet.Connect{Version: packet.V311, ClientID: []byte("x"), CleanStart: true}, packet.V311)
		_, _ = c2.Write(b)
		_, err = c2.Read(make([]byte, 1))
		c2.Close()
	}
	if err == nil {
		t.Fatal("a client without a certificate was served")
	}
}

func TestWebSocketSecure(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	s := start(t, testConfig(ListenerConfig{Name: "wss", Type: WSS, Addr: "127.0.0.1:0", CertFile: p.certFile,
		KeyFile: p.keyFile, DefaultTenant: "d"}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool}}}
	ws, resp, err := websocket.Dial(ctx, "wss://"+s.Addr("wss").String()+"/mqtt",
		&websocket.DialOptions{HTTPClient: hc, Subprotocols: []string{"mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Sec-WebSocket-Protocol") != "mqtt" {
		t.Fatalf("subprotocol %q", resp.Header.Get("Sec-WebSocket-Protocol"))
	}
	nc := websocket.NetConn(ctx, ws, websocket.MessageBinary)
	defer nc.Close()
	if ack := mqttConnect(t, nc, packet.V311, "wss-client"); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %v", ack.ReasonCode)
	}
}

func TestConnectTimeout(t *testing.T) {
	t.Parallel()
	cfg := testConfig(ListenerConfig{Name: "tcp", Type: TCP, Addr: "127.0.0.1:0"})
	cfg.ConnectTimeout = 200 * time.Millisecond
	s := start(t, cfg)
	c, err := net.Dial("tcp", s.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	began := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("read = %v, want EOF (the broker closes a silent connection)", err)
	}
	if d := time.Since(began); d < 150*time.Millisecond || d > 3*time.Second {
		t.Fatalf("closed after %v, want about 200ms", d)
	}
}

func TestMaxConnections(t *testing.T) {
	t.Parallel()
	cfg := testConfig(ListenerConfig{Name: "tcp", Type: TCP, Addr: "127.0.0.1:0"})
	cfg.MaxConnections = 2
	s := start(t, cfg)
	addr := s.Addr("tcp").String()
	for i := range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		mqttConnect(t, c, packet.V311, "c"+string(rune('a'+i)))
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection over the limit was served")
	}
	if s.rejected.Load() != 1 {
		t.Fatalf("rejected = %d", s.rejected.Load())
	}
}

// TestSlowSubscriberDoesNotBlockPublisher: a subscriber that never reads
// fills its own output and TCP buffers; the publisher's QoS 1 flow must keep
// completing, and the subscriber's QoS 0 messages are dropped and counted.
func TestSlowSubscriberDoesNotBlockPublisher(t *testing.T) {
	t.Parallel()
	cfg := testConfig(ListenerConfig{Name: "tcp", Type: TCP, Addr: "127.0.0.1:0"})
	cfg.Broker.Session.MaxOutput = 64 << 10
	s := start(t, cfg)
	addr := s.Addr("tcp").String()

	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	mqttConnect(t, slow, packet.V311, "slow")
	sub, _ := packet.Encode(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("flood")}}}, packet.V311)
	if _, err := slow.Write(sub); err != nil {
		t.Fatal(err)
	}
	// Wait for the SUBACK, then never read again.
	if p, err := packet.NewDecoder(slow, packet.V311).Next(); err != nil || p.Type() != packet.SUBACK {
		t.Fatalf("SUBACK: %v %v", p, err)
	}

	pub, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	mqttConnect(t, pub, packet.V311, "pub")
	payload := strings.Repeat("x", 16<<10)
	dec := packet.NewDecoder(pub, packet.V311)
	began := time.Now()
	const n = 2000 // 32 MiB: far more than the subscriber's buffers
	for i := 1; i <= n; i++ {
		b, _ := packet.Encode(&packet.Publish{Topic: []byte("flood"), QoS: packet.QoS1, PacketID: uint16(i), Payload: []byte(payload)}, packet.V311)
		_ = pub.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := pub.Write(b); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		p, err := dec.Next()
		if err != nil || p.Type() != packet.PUBACK {
			t.Fatalf("PUBACK %d: %v %v", i, p, err)
		}
	}
	if d := time.Since(began); d > 20*time.Second {
		t.Fatalf("publishing took %v: the slow subscriber held the publisher back", d)
	}
	if s.b.Stats().Dropped.Load() == 0 {
		t.Fatal("no QoS 0 delivery was dropped for the subscriber that never reads")
	}
}

func TestGracefulShutdownTellsClients(t *testing.T) {
	t.Parallel()
	s := start(t, testConfig(ListenerConfig{Name: "tcp", Type: TCP, Addr: "127.0.0.1:0"}))
	c, err := net.Dial("tcp", s.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mqttConnect(t, c, packet.V5, "bye")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	p, err := packet.NewDecoder(c, packet.V5).Next()
	if err != nil {
		t.Fatalf("no DISCONNECT: %v", err)
	}
	if d, ok := p.(*packet.Disconnect); !ok || d.ReasonCode != packet.ServerShuttingDown {
		t.Fatalf("got %s, want DISCONNECT 0x8b", packet.Format(p))
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// The runtime tells the broker why a connection ended: the disconnected
// event of a client that went silent says keep_alive_timeout (0x8d), of
// one that closed its socket without DISCONNECT connection_lost.
func TestDisconnectReasonFromTheTransport(t *testing.T) {
	t.Parallel()
	cfg := testConfig(ListenerConfig{Name: "tcp", Type: TCP, Addr: "127.0.0.1:0"})
	ring := event.NewRing(20)
	cfg.Broker.Events = ring
	s := start(t, cfg)
	silent, err := net.Dial("tcp", s.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	b, _ := packet.Encode(&packet.Connect{Version: packet.V5, ClientID: []byte("silent"), CleanStart: true, KeepAlive: 1}, packet.V5)
	if _, err := silent.Write(b); err != nil {
		t.Fatal(err)
	}
	gone, err := net.Dial("tcp", s.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	mqttConnect(t, gone, packet.V311, "gone")
	gone.Close()
	want := map[string]string{"silent": "0x8d keep_alive_timeout", "gone": "0x80 connection_lost: EOF"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := map[string]string{}
		for _, e := range ring.Events() {
			if e.Type == event.Disconnected {
				got[e.ClientID] = fmt.Sprintf("0x%02x %s", byte(e.Reason), e.Detail)
			}
		}
		if len(got) == len(want) {
			if d := cmp.Diff(want, got); d != "" {
				t.Fatalf("disconnected events (-want +got):\n%s", d)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("disconnected events %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}
