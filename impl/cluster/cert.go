package cluster

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
)

// NodeURI is the URI SAN that binds a certificate to a broker node:
// skybridge://node/<id> (the id path-escaped). A node's certificate
// carries exactly one; it may carry its raftkv node's URI too
// (raftkv://node/<n>).
func NodeURI(id string) *url.URL {
	return &url.URL{Scheme: "skybridge", Host: "node", Path: "/" + id}
}

// CertNode returns the broker node a certificate's URI SAN names; a
// certificate naming none, or more than one, is no node's.
func CertNode(cert *x509.Certificate) (string, error) {
	id := ""
	for _, u := range cert.URIs {
		if u.Scheme != "skybridge" || u.Host != "node" {
			continue
		}
		if id != "" {
			return "", errors.New("cluster: the certificate names more than one node")
		}
		if len(u.Path) < 2 || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return "", fmt.Errorf("cluster: bad node URI %q in the certificate", u)
		}
		id = u.Path[1:]
	}
	if id == "" {
		return "", errors.New("cluster: the certificate names no node (no skybridge://node/<id> URI)")
	}
	return id, nil
}
