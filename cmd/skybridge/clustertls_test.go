package main

import (
	"crypto/tls"
	"net"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/skybridge-mq/skybridge/impl/cluster"
	"github.com/skybridge-mq/skybridge/impl/config"
	"github.com/skybridge-mq/skybridge/impl/raftkv/kvserver"
)

// Mutual TLS between nodes' forward links: a node dials only the node it
// means (the server's certificate must name it), accepts a link only from
// the node whose certificate the sender shows, and starts only on its own
// certificate.
func TestNodeTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := kvserver.WriteTestCertsNamed(dir, map[string][]*url.URL{
		"n1": {cluster.NodeURI("n1")}, "n2": {cluster.NodeURI("n2")}, "none": nil,
	}); err != nil {
		t.Fatal(err)
	}
	load := func(id, certName string) (*nodeTLS, error) {
		return loadClusterTLS(&config.Cluster{NodeID: id, TLS: config.ClusterTLS{CertFile: filepath.Join(dir, certName+".pem"),
			KeyFile: filepath.Join(dir, certName+"-key.pem"), CAFile: filepath.Join(dir, "ca.pem")}})
	}
	n1, err := load("n1", "n1")
	if err != nil {
		t.Fatal(err)
	}
	n2, err := load("n2", "n2")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ id, cert string }{{"n1", "n2"}, {"n1", "none"}} {
		if _, err := load(c.id, c.cert); err == nil {
			t.Errorf("node %s started on certificate %s", c.id, c.cert)
		}
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", n1.server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			accepted <- c
		}
	}()
	dial := func(from *nodeTLS, to string) (*tls.Conn, error) {
		c, err := tls.Dial("tcp", ln.Addr().String(), from.peer(to))
		if err == nil {
			err = c.Handshake()
		}
		return c, err
	}
	// n2 dials n1 at n1's address: fine, and n1 takes it as n2's link only.
	c, err := dial(n2, "n1")
	if err != nil {
		t.Fatalf("n2 → n1: %v", err)
	}
	defer c.Close()
	srv := <-accepted
	defer srv.Close()
	if err := n1.checkPeer("n2", srv); err != nil {
		t.Errorf("n2's own link refused: %v", err)
	}
	if err := n1.checkPeer("n3", srv); err == nil {
		t.Error("n2's certificate accepted on a link claiming to be n3's")
	}
	// n2 means to reach n3 but n1 answers: refused by n2.
	if c, err := dial(n2, "n3"); err == nil {
		c.Close()
		t.Error("n2 took n1's certificate for n3's")
	}
	if err := n1.checkPeer("n2", &net.TCPConn{}); err == nil {
		t.Error("a link without TLS accepted")
	}
}
