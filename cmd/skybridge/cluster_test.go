package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/server"
)

// Three brokers with a cluster: section find each other through the first
// one's gossip address (a seed), each shows the three members in its admin
// API and in `ctl cluster`, and a node stopped with SIGTERM leaves: the
// others see it "left", not dead. Membership only (docs/CLUSTER.md): the
// nodes do not route messages to each other yet.
func TestClusterMembership(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func(id string, seeds ...string) *brokerProc {
		conf := filepath.Join(dir, id+".yaml")
		yaml := fmt.Sprintf("cluster:\n  name: test\n  node_id: %s\n  bind: 127.0.0.1:0\n  seeds: [%s]\n", id, strings.Join(seeds, ", "))
		if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return startBrokerOn(t, filepath.Join(dir, id), "--config", conf)
	}
	info := func(b *brokerProc) (server.ClusterInfo, error) {
		var ci server.ClusterInfo
		resp, err := http.Get("http://" + b.admin + "/api/v1/cluster")
		if err != nil {
			return ci, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return ci, fmt.Errorf("status %s", resp.Status)
		}
		return ci, json.NewDecoder(resp.Body).Decode(&ci)
	}
	// wait polls b's view until every member in want has the state given.
	wait := func(b *brokerProc, want map[string]string) server.ClusterInfo {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			ci, err := info(b)
			got := map[string]string{}
			for _, m := range ci.Members {
				got[m.ID] = m.State
			}
			ok := err == nil
			for id, st := range want {
				ok = ok && got[id] == st
			}
			if ok {
				return ci
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s sees %v (err %v), want %v", b.admin, got, err, want)
			}
			time.Sleep(50 * time.Millisecond) // polling interval
		}
	}

	n1 := start("n1")
	ci := wait(n1, map[string]string{"n1": "alive"})
	if ci.Standalone || ci.Cluster != "test" || ci.Gossip == "" {
		t.Fatalf("n1 alone: %+v", ci)
	}
	n2 := start("n2", ci.Gossip)
	n3 := start("n3", ci.Gossip)
	all := map[string]string{"n1": "alive", "n2": "alive", "n3": "alive"}
	nodes := map[string]*brokerProc{"n1": n1, "n2": n2, "n3": n3}
	for id, b := range nodes {
		ci := wait(b, all)
		for _, m := range ci.Members {
			if m.Local != (m.ID == id) || m.MQTT != nodes[m.ID].addr || len(m.Roles) != 5 || m.Incarnation == 0 {
				t.Errorf("%s sees %+v (its MQTT address is %s)", id, m, nodes[m.ID].addr)
			}
		}
	}

	if n := metric(t, n1, `skybridge_cluster_members{state="alive"}`); n != 3 {
		t.Errorf("n1's skybridge_cluster_members{state=\"alive\"} = %v, want 3", n)
	}

	out, err := exec.Command(skybridgeBinary(t), "ctl", "cluster", "--admin", "http://"+n2.admin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"n3"`) || !strings.Contains(string(out), `"alive"`) {
		t.Fatalf("ctl cluster: %v\n%s", err, out)
	}

	if err := n3.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-n3.done:
		n3.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("n3 after SIGTERM: %v\n%s", err, n3.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("n3 did not stop")
	}
	wait(n1, map[string]string{"n1": "alive", "n2": "alive", "n3": "left"})
	wait(n2, map[string]string{"n1": "alive", "n2": "alive", "n3": "left"})
	if n := metric(t, n1, `skybridge_cluster_members{state="left"}`); n != 1 {
		t.Errorf("n1's skybridge_cluster_members{state=\"left\"} = %v, want 1", n)
	}

	// A broker without a cluster: section says it is standalone.
	b := startBroker(t)
	if ci, err := info(b); err != nil || !ci.Standalone || len(ci.Members) != 0 {
		t.Fatalf("standalone: %+v %v", ci, err)
	}
}
