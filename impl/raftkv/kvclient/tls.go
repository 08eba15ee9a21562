package kvclient

import (
	"crypto/x509"
	"errors"
	"os"
)

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
