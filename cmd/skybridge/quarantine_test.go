package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/skybridge-mq/skybridge/impl/store"
)

// A data directory holding a record the broker cannot read (here the key a
// tenant name with U+0000 wrote before names were validated and escaped)
// does not stop the broker: the record is quarantined, logged and counted,
// and the readable sessions are recovered.
func TestDamagedStoreStillStarts(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(vfs.Default, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	st.Commit(&store.Batch{Ops: []store.Op{{Kind: store.PutSession, Tenant: "default", ClientID: "good",
		Session: &store.SessionRecord{Version: 5, Expiry: 3600, Owner: "", OwnerKnown: true}}}}, func(err error) { done <- err })
	st.Step()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("st1\x00status\x00client\x00\x01"), []byte{1, 5, 0}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	b := startBrokerOn(t, dir)
	// The MQTT listener accepts before the admin listener is up: wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + b.admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin listener: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	if n := metric(t, b, "skybridge_store_quarantined_total"); n != 1 {
		t.Errorf("skybridge_store_quarantined_total = %v, want 1", n)
	}
	log := b.stderr.String()
	for _, want := range []string{"unreadable record quarantined", "sessions=1"} {
		if !strings.Contains(log, want) {
			t.Errorf("log does not say %q:\n%s", want, log)
		}
	}
}
