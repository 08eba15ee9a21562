package kvserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/raftkv"
	"github.com/skybridge-mq/skybridge/impl/raftkv/kvclient"
)

// loadTestTLS loads node id's certificate written by WriteTestCerts.
func loadTestTLS(dir string, id raftkv.NodeID) (*TLSPair, error) {
	return LoadTLS(id, filepath.Join(dir, fmt.Sprintf("node-%d.pem", id)), filepath.Join(dir, fmt.Sprintf("node-%d-key.pem", id)),
		filepath.Join(dir, "ca.pem"))
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startNode runs one node on loopback; the other nodes of peers are
// wherever addrs says (or nowhere).
func startNode(t *testing.T, id raftkv.NodeID, peers []raftkv.NodeID, addrs map[raftkv.NodeID]string, peerTLS *TLSPair, clientTLS *tls.Config) *Server {
	t.Helper()
	s, err := New(Config{Node: raftkv.Config{ID: id, Dir: t.TempDir(), Peers: peers}, PeerAddrs: addrs,
		Listen: "127.0.0.1:0", ClientListen: "127.0.0.1:0", PeerTLS: peerTLS, ClientTLS: clientTLS, Tick: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run() }()
	t.Cleanup(func() { s.Close(); <-done })
	return s
}

func TestCertNodeID(t *testing.T) {
	t.Parallel()
	u := func(s string) *url.URL {
		v, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name string
		uris []*url.URL
		want raftkv.NodeID // 0: no node
	}{
		{"node URI", []*url.URL{NodeURI(7)}, 7},
		{"with other URIs", []*url.URL{u("spiffe://example.org/kv"), NodeURI(12)}, 12},
		{"none", nil, 0},
		{"other scheme", []*url.URL{u("https://node/3")}, 0},
		{"two nodes", []*url.URL{NodeURI(1), NodeURI(2)}, 0},
		{"zero", []*url.URL{u("raftkv://node/0")}, 0},
		{"not a number", []*url.URL{u("raftkv://node/x1")}, 0},
		{"leading zero", []*url.URL{u("raftkv://node/01")}, 0},
		{"longer path", []*url.URL{u("raftkv://node/1/2")}, 0},
		{"query", []*url.URL{u("raftkv://node/1?x=2")}, 0},
	} {
		got, err := CertNodeID(&x509.Certificate{URIs: tc.uris})
		if diff := cmp.Diff(tc.want, got); diff != "" || (err == nil) != (tc.want != 0) {
			t.Errorf("%s: node %d, err %v (-want +got %s)", tc.name, got, err, diff)
		}
	}
}

func TestLoadTLSChecksTheNode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := WriteTestCerts(dir, 1, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := loadTestTLS(dir, 2); err != nil {
		t.Fatalf("node 2 with its certificate: %v", err)
	}
	if _, err := LoadTLS(1, filepath.Join(dir, "node-2.pem"), filepath.Join(dir, "node-2-key.pem"), filepath.Join(dir, "ca.pem")); err == nil {
		t.Fatal("node 1 loaded node 2's certificate")
	}
}

// fakeNode listens with the given TLS (a certificate of some node) and
// counts the handshakes that succeed.
func fakeNode(t *testing.T, tc *tls.Config) (string, *atomic.Int64) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
	if err != nil {
		t.Fatal(err)
	}
	var ok atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if c.(*tls.Conn).Handshake() == nil {
				ok.Add(1)
			}
			c.Close()
		}
	}()
	return ln.Addr().String(), &ok
}

// TestDialChecksThePeersNode: node 1 dials node 2's address; what answers
// there must present node 2's certificate, not another node's of the
// same CA.
func TestDialChecksThePeersNode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := WriteTestCerts(dir, 1, 2, 3); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		answer  raftkv.NodeID // whose certificate answers at node 2's address
		refused bool
	}{
		{"node 2's certificate", 2, false},
		{"node 3's certificate", 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			other, err := loadTestTLS(dir, tc.answer)
			if err != nil {
				t.Fatal(err)
			}
			addr, handshakes := fakeNode(t, other.Server)
			own, err := loadTestTLS(dir, 1)
			if err != nil {
				t.Fatal(err)
			}
			// Node 1 campaigns and asks node 2 for its vote: it dials.
			s := startNode(t, 1, []raftkv.NodeID{1, 2}, map[raftkv.NodeID]string{2: addr}, own, nil)
			if tc.refused {
				waitUntil(t, "a refused dial", func() bool { return s.Stats().PeerRefused > 0 })
				if n := handshakes.Load(); n != 0 {
					t.Errorf("%d handshakes completed with node 3's certificate at node 2's address", n)
				}
				return
			}
			waitUntil(t, "a handshake", func() bool { return handshakes.Load() > 0 })
			if n := s.Stats().PeerRefused; n != 0 {
				t.Errorf("%d dials refused with node 2's own certificate", n)
			}
		})
	}
}

// TestAcceptChecksTheSender: a node takes from a connection only messages
// from the node its client certificate names, and none from a certificate
// of the CA that names no node.
func TestAcceptChecksTheSender(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := WriteTestCerts(dir, 1, 2); err != nil {
		t.Fatal(err)
	}
	own, err := loadTestTLS(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	two, err := loadTestTLS(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	// A certificate of another CA-signed identity without a node URI: the
	// form every node certificate had before the node was bound.
	ca, err := newTestCA()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.issue()
	if err != nil {
		t.Fatal(err)
	}
	noNode, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(ca.certPEM)
	caCert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	// The node trusts both CAs, so only the missing node URI refuses it.
	server := own.Server.Clone()
	server.ClientCAs = server.ClientCAs.Clone()
	server.ClientCAs.AddCert(caCert)
	noNodeClient := two.Client.Clone()
	noNodeClient.Certificates = []tls.Certificate{noNode}

	frame := func(from raftkv.NodeID) []byte {
		b, err := raftkv.EncodeMessage(nil, &raftkv.Message{Kind: raftkv.MsgWatch, From: from, To: 1})
		if err != nil {
			t.Fatal(err)
		}
		return raftkv.AppendFrame(nil, raftkv.FrameNode, b)
	}
	for _, tc := range []struct {
		name   string
		client *tls.Config
		froms  []raftkv.NodeID
	}{
		{"node 2 says it is node 3", two.Client, []raftkv.NodeID{3}},
		{"node 2, then as node 3", two.Client, []raftkv.NodeID{2, 3}},
		{"no node in the certificate", noNodeClient, []raftkv.NodeID{2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startNode(t, 1, []raftkv.NodeID{1, 2, 3}, nil, &TLSPair{Server: server, Client: own.Client}, nil)
			c, err := tls.Dial("tcp", s.Addr(), tc.client)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			for _, from := range tc.froms {
				if _, err := c.Write(frame(from)); err != nil {
					break // refused already
				}
			}
			// The node ends the connection without a word.
			if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("read %d bytes, %v; want the connection closed", n, err)
			}
			waitUntil(t, "the refusal counted", func() bool { return s.Stats().PeerRefused == 1 })
		})
	}
}

// TestClientPortTLS: a client port with TLS that requires client
// certificates serves a client with the CA and a certificate, and nobody
// else.
func TestClientPortTLS(t *testing.T) {
	t.Parallel()
	dir, otherDir := t.TempDir(), t.TempDir()
	if err := WriteTestCerts(dir, 1, 2); err != nil {
		t.Fatal(err)
	}
	if err := WriteTestCerts(otherDir); err != nil {
		t.Fatal(err)
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	portTLS, err := LoadClientTLS(f("node-1.pem"), f("node-1-key.pem"), f("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	s := startNode(t, 1, []raftkv.NodeID{1}, nil, nil, portTLS)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	good, err := kvclient.LoadTLS(f("ca.pem"), f("node-2.pem"), f("node-2-key.pem"), TLSServerName)
	if err != nil {
		t.Fatal(err)
	}
	c := kvclient.New([]string{s.ClientAddr()}, good)
	defer c.Close()
	if err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatalf("put over TLS: %v", err)
	}
	if v, ok, err := c.Get(ctx, []byte("k")); err != nil || !ok || string(v) != "v" {
		t.Fatalf("get over TLS: %q %v %v", v, ok, err)
	}

	noCert, err := kvclient.LoadTLS(f("ca.pem"), "", "", TLSServerName)
	if err != nil {
		t.Fatal(err)
	}
	wrongCA, err := kvclient.LoadTLS(filepath.Join(otherDir, "ca.pem"), f("node-2.pem"), f("node-2-key.pem"), TLSServerName)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tls  *tls.Config
	}{
		{"plain TCP", nil},
		{"no client certificate", noCert},
		{"another CA", wrongCA},
		{"the address for a server name", &tls.Config{RootCAs: good.RootCAs, Certificates: good.Certificates}},
	} {
		bad := kvclient.New([]string{s.ClientAddr()}, tc.tls)
		bctx, bcancel := context.WithTimeout(ctx, 2*time.Second)
		if _, _, err := bad.Get(bctx, []byte("k")); err == nil {
			t.Errorf("%s: a get succeeded", tc.name)
		}
		bcancel()
		bad.Close()
	}
}
