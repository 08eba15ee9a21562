package main

import (
	"flag"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/raftkv/kvserver"
)

// TestClientTLSFlags: the client subcommands' TLS flags make the
// configuration kvclient dials with, or refuse a combination that would
// quietly fall back to plain TCP.
func TestClientTLSFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := kvserver.WriteTestCerts(dir, 1); err != nil {
		t.Fatal(err)
	}
	ca, cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "node-1.pem"), filepath.Join(dir, "node-1-key.pem")
	type result struct {
		TLS        bool
		ServerName string
		ClientCert bool
		Err        bool
	}
	for _, tc := range []struct {
		name string
		args []string
		want result
	}{
		{"plain TCP", nil, result{}},
		{"the CA", []string{"--tls-ca", ca}, result{TLS: true}},
		{"a server name", []string{"--tls-ca", ca, "--tls-server-name", "raftkv"}, result{TLS: true, ServerName: "raftkv"}},
		{"a client certificate", []string{"--tls-ca", ca, "--tls-cert", cert, "--tls-key", key}, result{TLS: true, ClientCert: true}},
		{"a certificate without the CA", []string{"--tls-cert", cert, "--tls-key", key}, result{Err: true}},
		{"a server name without the CA", []string{"--tls-server-name", "raftkv"}, result{Err: true}},
		{"a certificate without its key", []string{"--tls-ca", ca, "--tls-cert", cert}, result{Err: true}},
		{"a missing CA file", []string{"--tls-ca", filepath.Join(dir, "none.pem")}, result{Err: true}},
	} {
		fs := flag.NewFlagSet("get", flag.ContinueOnError)
		f := addClientTLSFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		cfg, err := f.config()
		got := result{TLS: cfg != nil, Err: err != nil}
		if cfg != nil {
			got.ServerName, got.ClientCert = cfg.ServerName, len(cfg.Certificates) == 1
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (err %v): -want +got\n%s", tc.name, err, diff)
		}
	}
}
