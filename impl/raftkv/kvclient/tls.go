package kvclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
)

// LoadTLS builds the TLS configuration for a client port secured with TLS
// (kvserver.Config.ClientTLS): the server's certificate is verified
// against the CA in caFile for serverName ("": the host of the address
// dialed); certFile and keyFile, when set, are the client certificate
// presented to a port that requires one.
func LoadTLS(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	pool, err := LoadCertPool(caFile)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS13}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// LoadCertPool reads the PEM certificates of file into a pool.
func LoadCertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("kvclient: no certificate in " + file)
	}
	return pool, nil
}
