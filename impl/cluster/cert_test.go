package cluster

import (
	"crypto/x509"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCertNode(t *testing.T) {
	t.Parallel()
	u := func(s string) *url.URL {
		p, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	type out struct {
		ID string
		OK bool
	}
	for _, tc := range []struct {
		name string
		uris []*url.URL
		want out
	}{
		{"one", []*url.URL{NodeURI("n1")}, out{"n1", true}},
		{"with its raftkv node", []*url.URL{u("raftkv://node/3"), NodeURI("broker-1.eu")}, out{"broker-1.eu", true}},
		{"escaped id", []*url.URL{NodeURI("a b/c")}, out{"a b/c", true}},
		{"none", nil, out{}},
		{"raftkv only", []*url.URL{u("raftkv://node/3")}, out{}},
		{"two", []*url.URL{NodeURI("n1"), NodeURI("n2")}, out{}},
		{"empty id", []*url.URL{u("skybridge://node/")}, out{}},
		{"query", []*url.URL{u("skybridge://node/n1?x=1")}, out{}},
	} {
		id, err := CertNode(&x509.Certificate{URIs: tc.uris})
		if d := cmp.Diff(tc.want, out{id, err == nil}); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
}
