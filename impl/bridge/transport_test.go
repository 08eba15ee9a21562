package bridge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// A remote that speaks MQTT 3.1.1: both directions, QoS 1, and the remote
// killed and restarted mid-stream.
func TestRemote311(t *testing.T) {
	t.Parallel()
	const n = 200
	local := startSkybridge(t)
	remote := newMosquitto(t, "")
	remote.start()
	rsub := newClient(t, remote.url(), clientOpts{id: "remote-sub-311", filters: []string{"site-7/sensors/#"}, persistent: true})
	rsub.subscribed(t)
	lsub := newClient(t, local.url(), clientOpts{filters: []string{"cmd/#"}})
	lsub.subscribed(t)
	eventually(t, "mosquitto persistence file", remote.dbSaved)

	cfg := testBridge("v311", local.url(), remote.url())
	cfg.Remote.Version = "3.1.1"
	cfg.Out = []Rule{{Filter: "sensors/#", Prefix: "site-7/"}}
	cfg.In = []Rule{{Filter: "site-7/cmd/#", Strip: "site-7/"}}
	b := startBridge(t, vfs.NewMem(), cfg)
	eventually(t, "bridge connected", func() bool {
		s := b.Stats().Bridges[0]
		return s.Local.Connected && s.Remote.Connected
	})

	rpub := newClient(t, remote.url(), clientOpts{})
	rpub.publish(t, "site-7/cmd/reboot", "now", 1, nil)
	eventually(t, "the command at the local subscriber", func() bool { return len(lsub.matching("cmd/reboot")) == 1 })
	in := lsub.matching("cmd/reboot")[0]
	if in.payload != "now" || in.qos != 1 || !slices.Equal(in.user(markerKey), []string{"v311"}) {
		t.Fatalf("in: %+v, markers %q", in, in.user(markerKey))
	}

	pub := newClient(t, local.url(), clientOpts{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, p := range seqPayloads(0, n) {
			pub.publish(t, "sensors/t", p, 1, nil)
		}
	}()
	eventually(t, "a first part at the remote", func() bool { return len(rsub.matching("site-7/sensors/t")) >= n/4 })
	remote.kill()
	killedAt := len(rsub.matching("site-7/sensors/t"))
	wg.Wait()
	eventually(t, "the bridge to notice", func() bool { return !b.Stats().Bridges[0].Remote.Connected })
	acked := int(b.Stats().Bridges[0].Out.Forwarded)
	remote.start()
	eventually(t, "the queue to drain", func() bool { return b.Stats().Bridges[0].Out.Queued == 0 })
	checkAfterRemoteKill(t, rsub, "site-7/sensors/t", seqPayloads(0, n), acked, killedAt,
		func(int) string { return "site-7/sensors/t" })
}

// TLS (ssl://) towards the remote, WebSocket (ws://) towards the local
// broker, both directions.
func TestTransports(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// mosquitto reads its key after dropping root.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ca, cert, key := writeTestPKI(t, dir)
	local := startSkybridge(t)
	plain := freePort(t)
	// The main listener speaks TLS; a second, plain one serves the test
	// clients.
	remote := newMosquitto(t, fmt.Sprintf("cafile %s\ncertfile %s\nkeyfile %s\nlistener %d 127.0.0.1\n", ca, cert, key, plain))
	remote.start()
	remotePlain := fmt.Sprintf("tcp://127.0.0.1:%d", plain)

	cfg := testBridge("tls", local.wsURL, "ssl://"+remote.addr())
	cfg.Remote.TLS = TLS{CAFile: ca, ServerName: "mosquitto.test"}
	cfg.Out = []Rule{{Filter: "secure/#", Prefix: "site-7/"}}
	cfg.In = []Rule{{Filter: "site-7/in/#", Strip: "site-7/"}}
	b := startBridge(t, vfs.NewMem(), cfg)
	eventually(t, "bridge connected over TLS and WebSocket", func() bool {
		s := b.Stats().Bridges[0]
		return s.Local.Connected && s.Remote.Connected
	})
	rsub := newClient(t, remotePlain, clientOpts{filters: []string{"site-7/secure/#"}})
	rsub.subscribed(t)
	lsub := newClient(t, local.url(), clientOpts{filters: []string{"in/#"}})
	lsub.subscribed(t)
	lpub := newClient(t, local.url(), clientOpts{})
	rpub := newClient(t, remotePlain, clientOpts{})
	for _, p := range seqPayloads(0, 20) {
		lpub.publish(t, "secure/x", p, 1, nil)
		rpub.publish(t, "site-7/in/y", p, 1, nil)
	}
	eventually(t, "both directions", func() bool {
		o, _ := distinct(rsub.matching("site-7/secure/x"))
		i, _ := distinct(lsub.matching("in/y"))
		return len(o) == 20 && len(i) == 20
	})
	checkStream(t, rsub.matching("site-7/secure/x"), seqPayloads(0, 20), func(int) string { return "site-7/secure/x" })
	checkStream(t, lsub.matching("in/y"), seqPayloads(0, 20), func(int) string { return "in/y" })
}

// writeTestPKI writes a CA and a server certificate for mosquitto.test
// and 127.0.0.1, returning the three PEM file names.
func writeTestPKI(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bridge test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "mosquitto.test"},
		DNSNames: []string{"mosquitto.test"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", der), write("server.key", "EC PRIVATE KEY", keyDER)
}
