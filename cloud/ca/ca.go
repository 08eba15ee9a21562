// Package ca is the cloud's certificate authority and the node side of
// it: Ed25519 keys, certificate signing requests, node certificates, the
// proof a node gives when it renews.
//
// # Contract
//
// The package is pure: keys come from an io.Reader the caller gives
// (env.Rand: the simulator seeds it; production passes a reader over the
// operating system's randomness), times are arguments, nothing is read
// from a clock or a file. Ed25519 is used throughout because its
// signatures are deterministic: the same seed gives the same certificates,
// byte for byte, which keeps simulated runs reproducible (ECDSA would draw
// from crypto/rand inside the standard library).
//
// A node certificate's subject is CN=<node>, SERIALNUMBER=<serial>: the
// broker sees only the subject of a verified client certificate, and the
// serial in it lets the cloud refuse a certificate it replaced or revoked
// before its expiry.
package ca

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"time"
)

// Errors.
var (
	ErrBadCSR     = errors.New("ca: bad certificate signing request")
	ErrNotOurs    = errors.New("ca: certificate not issued by this CA")
	ErrExpired    = errors.New("ca: certificate expired")
	ErrBadProof   = errors.New("ca: the renewal is not signed by the certificate's key")
	ErrNotNodeCrt = errors.New("ca: not a node certificate")
)

// clockSkew is how far before "now" a new certificate's validity starts,
// so that a node whose clock lags a little accepts it.
const clockSkew = 5 * time.Minute

// CA is a certificate authority with an Ed25519 key.
type CA struct {
	cert *x509.Certificate
	der  []byte
	key  ed25519.PrivateKey
	pool *x509.CertPool
}

// NewKey returns an Ed25519 key drawn from r, and its 32-byte seed (what
// a store keeps).
func NewKey(r io.Reader) (ed25519.PrivateKey, []byte, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(r, seed); err != nil {
		return nil, nil, err
	}
	return ed25519.NewKeyFromSeed(seed), seed, nil
}

// KeyFromSeed returns the key of a stored seed.
func KeyFromSeed(seed []byte) (ed25519.PrivateKey, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, errors.New("ca: a key seed is 32 bytes")
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// New creates a CA with a self-signed certificate valid from now for
// validity, its key drawn from r.
func New(name string, r io.Reader, now time.Time, validity time.Duration) (*CA, []byte, error) {
	key, seed, err := NewKey(r)
	if err != nil {
		return nil, nil, err
	}
	tpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(nil, tpl, tpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	c, err := Load(der, seed)
	return c, seed, err
}

// Load returns the CA of a stored certificate and key seed.
func Load(certDER, seed []byte) (*CA, error) {
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	key, err := KeyFromSeed(seed)
	if err != nil {
		return nil, err
	}
	if pub, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("ca: the key does not match the certificate")
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cert: cert, der: certDER, key: key, pool: pool}, nil
}

// CertDER returns the CA certificate.
func (c *CA) CertDER() []byte { return c.der }

// Cert returns the parsed CA certificate.
func (c *CA) Cert() *x509.Certificate { return c.cert }

// Pool returns a pool holding the CA certificate.
func (c *CA) Pool() *x509.CertPool { return c.pool }

// Fingerprint is the hex SHA-256 of a DER certificate (what a join token
// pins).
func Fingerprint(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

// Fingerprint returns the CA certificate's fingerprint.
func (c *CA) Fingerprint() string { return Fingerprint(c.der) }

// CSR returns a certificate signing request for cn, signed by key.
func CSR(key ed25519.PrivateKey, cn string) ([]byte, error) {
	return x509.CreateCertificateRequest(nil, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
}

// SerialString is how a serial appears in a subject and in the cloud's
// records.
func SerialString(serial uint64) string { return strconv.FormatUint(serial, 16) }

// SignNode checks a CSR and issues a node certificate for node, valid
// from now for lifetime, with the given serial. The CSR's own subject is
// ignored: the cloud decides who the key belongs to.
func (c *CA) SignNode(csrDER []byte, node string, serial uint64, now time.Time, lifetime time.Duration) ([]byte, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, ErrBadCSR
	}
	if csr.CheckSignature() != nil {
		return nil, ErrBadCSR
	}
	if _, ok := csr.PublicKey.(ed25519.PublicKey); !ok {
		return nil, fmt.Errorf("%w: Ed25519 keys only", ErrBadCSR)
	}
	tpl := &x509.Certificate{
		SerialNumber: new(big.Int).SetUint64(serial),
		Subject:      pkix.Name{CommonName: node, SerialNumber: SerialString(serial)},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return x509.CreateCertificate(nil, tpl, c.cert, csr.PublicKey, c.key)
}

// SignServer issues a server certificate (and client, for the cloud's
// own MQTT connection) for cn and the given DNS names and IP addresses,
// to the public key pub.
func (c *CA) SignServer(pub crypto.PublicKey, cn string, hosts []string, serial uint64, now time.Time, lifetime time.Duration) ([]byte, error) {
	tpl := &x509.Certificate{
		SerialNumber: new(big.Int).SetUint64(serial),
		Subject:      pkix.Name{CommonName: cn, SerialNumber: SerialString(serial)},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tpl.IPAddresses = append(tpl.IPAddresses, ip)
		} else {
			tpl.DNSNames = append(tpl.DNSNames, h)
		}
	}
	return x509.CreateCertificate(nil, tpl, c.cert, pub, c.key)
}

// NodeCert is what a verified node certificate says.
type NodeCert struct {
	Node     string
	Serial   uint64
	NotAfter time.Time
	Cert     *x509.Certificate
}

// Verify checks that der is a node certificate this CA issued, valid at
// now unless ignoreExpiry (a renewal within the grace period).
func (c *CA) Verify(der []byte, now time.Time, ignoreExpiry bool) (NodeCert, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return NodeCert{}, ErrNotNodeCrt
	}
	if err := cert.CheckSignatureFrom(c.cert); err != nil {
		return NodeCert{}, ErrNotOurs
	}
	if !ignoreExpiry && (now.After(cert.NotAfter) || now.Before(cert.NotBefore)) {
		return NodeCert{}, ErrExpired
	}
	serial, err := strconv.ParseUint(cert.Subject.SerialNumber, 16, 64)
	if err != nil || cert.SerialNumber.Cmp(new(big.Int).SetUint64(serial)) != 0 || cert.Subject.CommonName == "" {
		return NodeCert{}, ErrNotNodeCrt
	}
	return NodeCert{Node: cert.Subject.CommonName, Serial: serial, NotAfter: cert.NotAfter, Cert: cert}, nil
}

// Prove signs a renewal's CSR with the node's current key.
func Prove(current ed25519.PrivateKey, csrDER []byte) []byte {
	return ed25519.Sign(current, csrDER)
}

// CheckProof checks that sig is the certificate's key's signature of csr.
func CheckProof(cert *x509.Certificate, csrDER, sig []byte) error {
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok || !ed25519.Verify(pub, csrDER, sig) {
		return ErrBadProof
	}
	return nil
}

// ParseCert returns the node name, serial and expiry of a DER
// certificate without verifying it (the node reading its own).
func ParseCert(der []byte) (NodeCert, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return NodeCert{}, err
	}
	serial, _ := strconv.ParseUint(cert.Subject.SerialNumber, 16, 64)
	return NodeCert{Node: cert.Subject.CommonName, Serial: serial, NotAfter: cert.NotAfter, Cert: cert}, nil
}

// PEM encodes DER bytes as a PEM block of the given type.
func PEM(typ string, der []byte) []byte {
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: typ, Bytes: der})
	return b.Bytes()
}

// KeyPEM encodes a private key as PKCS #8 PEM.
func KeyPEM(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return PEM("PRIVATE KEY", der), nil
}
