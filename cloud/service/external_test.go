package service

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/cloud/ca"
	"github.com/skybridge-mq/skybridge/impl/acl"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/server"
	"github.com/skybridge-mq/skybridge/impl/webhook"
)

// freeAddr returns a loopback address free a moment ago (the cloud must
// be told the broker's address before the broker can start: it needs the
// cloud's certificate first).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startExternalBroker runs a Skybridge broker as an operator would set it
// up for the fleet: a certificate from the cloud (ctl broker-cert), a
// fleet listener verifying the fleet CA, the cloud's webhook deciding
// who connects (no cache, so a revocation holds at once), and an admin
// API the cloud closes revoked nodes' connections through.
func startExternalBroker(t *testing.T, cloud *Service, c *client, addr, adminAddr, adminToken string) {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(nil)
	var bc api.BrokerCertResponse
	c.must("POST", "/v1/broker/certificate", api.BrokerCertRequest{PublicKey: pub, Hosts: []string{"127.0.0.1"}}, &bc)
	keyPEM, err := ca.KeyPEM(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string]string{"server.crt": bc.Certificate, "server.key": string(keyPEM), "ca.crt": bc.CA} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cloud.CAPEM())
	hook, err := webhook.NewAuthenticator(webhook.AuthConfig{
		Endpoint: webhook.Endpoint{URL: "https://" + cloud.APIAddr() + "/v1/broker/auth",
			Headers: map[string]string{"Authorization": "Bearer " + cloud.HookToken()},
			Client:  &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}},
		Cache: webhook.CacheConfig{Size: -1}})
	if err != nil {
		t.Fatal(err)
	}
	rules, err := acl.NewSet(acl.Config{}) // the connections' own claims decide
	if err != nil {
		t.Fatal(err)
	}
	bcfg := broker.DefaultConfig()
	bcfg.Authenticator, bcfg.Authorizer = hook, rules
	sc := server.DefaultConfig()
	sc.Broker = bcfg
	sc.AdminAddr, sc.AdminToken = adminAddr, adminToken
	sc.Listeners = []server.ListenerConfig{{Name: "fleet", Type: server.TLS, Addr: addr,
		CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"),
		ClientCAFile: filepath.Join(dir, "ca.crt"), RequireClientCert: true}}
	srv := server.New(sc, broker.New(bcfg, env.Real(), nil))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
}

// The fleet through a broker the cloud does not run: the cloud's link and
// the nodes connect there, the cloud's webhook decides who may, with the
// same isolation as the embedded broker, and a revoked node is kicked
// through the broker's admin API.
func TestExternalBroker(t *testing.T) {
	t.Parallel()
	addr, adminAddr := freeAddr(t), freeAddr(t)
	cloud, err := Start(Config{DataDir: t.TempDir(), APIAddr: "127.0.0.1:0", PublicHosts: []string{"127.0.0.1"},
		External: &ExternalBroker{Address: addr, AdminURL: "http://" + adminAddr, AdminToken: "t0ken"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cloud.Close)
	if cloud.BrokerAddr() != addr || cloud.HookToken() == "" {
		t.Fatalf("broker %s, hook token %q", cloud.BrokerAddr(), cloud.HookToken())
	}
	c := newClient(t, cloud)
	// Without the hook token the webhook answers nothing.
	if st := c.do("POST", "/v1/broker/auth", hookRequest{Listener: "fleet"}, nil); st != http.StatusUnauthorized {
		t.Errorf("webhook with the operator's token: %d", st)
	}
	startExternalBroker(t, cloud, c, addr, adminAddr, "t0ken")
	eventually(t, 20*time.Second, "the cloud's link up", cloud.link.Up)

	// A node activates and comes online through it.
	startEdge(t, c, "n1", map[string]string{"site": "a"})
	var n api.Node
	eventually(t, 20*time.Second, "n1 online", func() bool {
		c.must("GET", "/v1/nodes/n1", nil, &n)
		return n.State == api.NodeActive && n.Online
	})
	checkIsolation(t, cloud, c)
}
