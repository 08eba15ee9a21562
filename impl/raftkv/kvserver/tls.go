package kvserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/skybridge-mq/skybridge/impl/raftkv"
	"github.com/skybridge-mq/skybridge/impl/raftkv/kvclient"
)

// TLSServerName is the DNS name every node certificate carries and nodes
// check in the chain verification. Which node a certificate belongs to is
// its node URI (NodeURI), checked on top of it.
const TLSServerName = "raftkv"

// NodeURI is the URI SAN that binds a node certificate to its node ID:
// raftkv://node/<id>. A node certificate carries exactly one.
func NodeURI(id raftkv.NodeID) *url.URL {
	return &url.URL{Scheme: "raftkv", Host: "node", Path: "/" + strconv.FormatUint(uint64(id), 10)}
}

// CertNodeID returns the node ID a certificate's URI SAN names
// (raftkv://node/<id>); a certificate naming no node, or more than one
// URI of that form, is no node's.
func CertNodeID(cert *x509.Certificate) (raftkv.NodeID, error) {
	var id raftkv.NodeID
	for _, u := range cert.URIs {
		if u.Scheme != "raftkv" || u.Host != "node" {
			continue
		}
		if id != 0 {
			return 0, errors.New("kvserver: the certificate names more than one node")
		}
		n, err := strconv.ParseUint(u.Path[min(1, len(u.Path)):], 10, 64)
		if err != nil || n == 0 || u.Path != "/"+strconv.FormatUint(n, 10) || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return 0, fmt.Errorf("kvserver: bad node URI %q in the certificate", u)
		}
		id = raftkv.NodeID(n)
	}
	if id == 0 {
		return 0, errors.New("kvserver: the certificate names no node (no raftkv://node/<id> URI)")
	}
	return id, nil
}

// LoadTLS builds mutual TLS for node-to-node connections from PEM files:
// node id's certificate and key, and the CA that signs every node's. The
// certificate must name node id (NodeURI). The Server checks the node on
// top of these configurations: the certificate of a peer it dials must
// name that peer, and every message on an accepted connection must come
// from the node the client certificate names.
func LoadTLS(id raftkv.NodeID, certFile, keyFile, caFile string) (*TLSPair, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	got, err := CertNodeID(cert.Leaf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	if got != id {
		return nil, fmt.Errorf("kvserver: %s is node %d's certificate, not node %d's", certFile, got, id)
	}
	pool, err := kvclient.LoadCertPool(caFile)
	if err != nil {
		return nil, err
	}
	return &TLSPair{
		Server: &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13},
		Client: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: TLSServerName, MinVersion: tls.VersionTLS13},
	}, nil
}

// LoadClientTLS builds the TLS configuration of a client port
// (Config.ClientTLS) from PEM files: the port's certificate and key and,
// when caFile is set, the CA whose client certificates it requires (""
// takes any client).
func LoadClientTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	if caFile != "" {
		if tc.ClientCAs, err = kvclient.LoadCertPool(caFile); err != nil {
			return nil, err
		}
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// WriteTestCerts writes a CA and, for each of ids, a node certificate
// signed by it into dir (ca.pem; node-<id>.pem and node-<id>-key.pem,
// naming the node by NodeURI), for tests and the demo.
func WriteTestCerts(dir string, ids ...raftkv.NodeID) error {
	certs := map[string][]*url.URL{}
	for _, id := range ids {
		certs[fmt.Sprintf("node-%d", id)] = []*url.URL{NodeURI(id)}
	}
	return WriteTestCertsNamed(dir, certs)
}

// WriteTestCertsNamed writes a CA (ca.pem) and, for each name, a
// certificate signed by it with those URI SANs (name.pem, name-key.pem):
// for tests whose certificates name more than a raftkv node (a broker
// node's also names the broker, impl/cluster.NodeURI).
func WriteTestCertsNamed(dir string, certs map[string][]*url.URL) error {
	ca, err := newTestCA()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.certPEM, 0o600); err != nil {
		return err
	}
	for name, uris := range certs {
		certPEM, keyPEM, err := ca.issue(uris...)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name+".pem"), certPEM, 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name+"-key.pem"), keyPEM, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// testCA signs test certificates.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	serial  int64
}

func newTestCA() (*testCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "raftkv test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &testCA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), serial: 1}, nil
}

// issue signs a certificate for TLSServerName with the given URI SANs
// (for server and client authentication) and returns it and its key in PEM.
func (ca *testCA) issue(uris ...*url.URL) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	ca.serial++
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.serial), Subject: pkix.Name{CommonName: TLSServerName},
		DNSNames: []string{TLSServerName}, URIs: uris, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

// nodeServerTLS is the server side of a node's peer listener: the chain
// is verified by the configuration (it must require and verify client
// certificates), and the client certificate must name a node; refusals
// are counted. Which node sent a message is checked per message
// (readPeer).
func (s *Server) nodeServerTLS(base *tls.Config) (*tls.Config, error) {
	if base.ClientAuth != tls.RequireAndVerifyClientCert {
		return nil, errors.New("kvserver: PeerTLS.Server must require and verify client certificates")
	}
	return withCheck(base, func(cs tls.ConnectionState) error {
		if _, err := CertNodeID(cs.PeerCertificates[0]); err != nil {
			s.peerRefused.Add(1)
			s.log.Warn("peer connection refused", "err", err)
			return err
		}
		return nil
	}), nil
}

// nodeClientTLS is the client side for dialing node id: after the chain's
// verification, the server's certificate must name id.
func (s *Server) nodeClientTLS(base *tls.Config, id raftkv.NodeID) *tls.Config {
	return withCheck(base, func(cs tls.ConnectionState) error {
		got, err := CertNodeID(cs.PeerCertificates[0])
		if err == nil && got != id {
			err = fmt.Errorf("kvserver: dialed node %d, its certificate is node %d's", id, got)
		}
		if err != nil {
			s.peerRefused.Add(1)
			s.log.Warn("peer refused", "peer", id, "err", err)
		}
		return err
	})
}

// withCheck returns a copy of base that runs check after the chain's
// verification and base's own VerifyConnection, if any.
func withCheck(base *tls.Config, check func(tls.ConnectionState) error) *tls.Config {
	tc := base.Clone()
	prev := tc.VerifyConnection
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		if prev != nil {
			if err := prev(cs); err != nil {
				return err
			}
		}
		return check(cs)
	}
	return tc
}
