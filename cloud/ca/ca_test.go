package ca

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/env"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func TestIssueVerifyRenew(t *testing.T) {
	t.Parallel()
	r := env.NewRand(1)
	c, seed, err := New("test-ca", r, t0, 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Load(c.CertDER(), seed)
	if err != nil || !bytes.Equal(again.CertDER(), c.CertDER()) {
		t.Fatalf("reload: %v", err)
	}
	key, _, _ := NewKey(r)
	csr, err := CSR(key, "whatever")
	if err != nil {
		t.Fatal(err)
	}
	der, err := c.SignNode(csr, "edge-1", 7, t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := c.Verify(der, t0.Add(30*time.Minute), false)
	if err != nil {
		t.Fatal(err)
	}
	if nc.Node != "edge-1" || nc.Serial != 7 {
		t.Errorf("verified %+v", nc)
	}
	if got := nc.Cert.Subject.String(); got != "SERIALNUMBER=7,CN=edge-1" {
		t.Errorf("subject %q", got)
	}
	if _, err := c.Verify(der, t0.Add(2*time.Hour), false); !errors.Is(err, ErrExpired) {
		t.Errorf("expired certificate: %v", err)
	}
	if _, err := c.Verify(der, t0.Add(2*time.Hour), true); err != nil {
		t.Errorf("expired certificate within grace: %v", err)
	}
	// Renewal proof: the new CSR signed by the old key.
	newKey, _, _ := NewKey(r)
	csr2, _ := CSR(newKey, "edge-1")
	if err := CheckProof(nc.Cert, csr2, Prove(key, csr2)); err != nil {
		t.Errorf("good proof refused: %v", err)
	}
	if err := CheckProof(nc.Cert, csr2, Prove(newKey, csr2)); !errors.Is(err, ErrBadProof) {
		t.Errorf("proof by another key: %v", err)
	}
	// Another CA's certificate.
	other, _, _ := New("other", r, t0, time.Hour)
	der3, _ := other.SignNode(csr, "edge-1", 7, t0, time.Hour)
	if _, err := c.Verify(der3, t0, false); !errors.Is(err, ErrNotOurs) {
		t.Errorf("foreign certificate: %v", err)
	}
	if _, err := c.SignNode([]byte("junk"), "x", 1, t0, time.Hour); !errors.Is(err, ErrBadCSR) {
		t.Errorf("junk CSR: %v", err)
	}
}

// The same seed gives the same certificates, byte for byte: the
// simulator relies on it.
func TestDeterministic(t *testing.T) {
	t.Parallel()
	issue := func() []byte {
		r := env.NewRand(42)
		c, _, err := New("ca", r, t0, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		k, _, _ := NewKey(r)
		csr, _ := CSR(k, "n")
		der, err := c.SignNode(csr, "n", 2, t0, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return append(c.CertDER(), der...)
	}
	if !bytes.Equal(issue(), issue()) {
		t.Fatal("same seed, different certificates")
	}
}
