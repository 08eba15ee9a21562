package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/cloud/service"
)

// ctl tokens lists the outstanding activation tokens without their
// secrets, and ctl revoke-token removes one.
func TestCtlTokens(t *testing.T) {
	dir := t.TempDir()
	s, err := service.Start(service.Config{DataDir: dir, APIAddr: "127.0.0.1:0", BrokerAddr: "127.0.0.1:0", PublicHosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctl := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := ctl(append([]string{"--data", dir, "--api", "https://" + s.APIAddr()}, args...), &out, &errOut); err != nil {
			t.Fatalf("ctl %v: %v %s", args, err, errOut.String())
		}
		return out.String()
	}
	join := ctl("token", "edge-5", "site=a")
	list := ctl("tokens")
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "edge-5") || !strings.Contains(lines[1], "site=a") {
		t.Fatalf("ctl tokens:\n%s", list)
	}
	id := strings.Fields(lines[1])[0]
	j, err := api.DecodeJoin(strings.TrimSpace(join))
	if err != nil {
		t.Fatal(err)
	}
	if tid, secret, _ := strings.Cut(j.Token, "."); tid != id || secret == "" || strings.Contains(list, secret) {
		t.Fatalf("ctl tokens shows id %s for token %s, or the secret:\n%s", id, j.Token, list)
	}
	ctl("revoke-token", id)
	if list := ctl("tokens"); strings.Contains(list, "edge-5") {
		t.Fatalf("ctl tokens after revoke-token:\n%s", list)
	}
}
