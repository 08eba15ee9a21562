package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	paho "github.com/eclipse/paho.golang/paho"

	"github.com/skybridge-mq/skybridge/impl/cluster"
	"github.com/skybridge-mq/skybridge/impl/raftkv"
	"github.com/skybridge-mq/skybridge/impl/raftkv/kvserver"
	"github.com/skybridge-mq/skybridge/impl/server"
)

// clusterNode is one broker process of a routing cluster.
type clusterNode struct {
	*brokerProc
	id      string
	gossip  string
	forward string
	kv      string // raft address
	dir     string
	conf    string
}

// startRoutingCluster starts n brokers that route messages between them,
// each running a raftkv node of one raftkv cluster. They start together:
// none serves MQTT before raftkv has a quorum.
func startRoutingCluster(t *testing.T, n int) []*clusterNode {
	t.Helper()
	return startRoutingClusterTLS(t, n, false)
}

// startRoutingClusterTLS is startRoutingCluster with, when secure, mutual
// TLS between the nodes (cluster.tls): each node's certificate names it
// and its raftkv node.
func startRoutingClusterTLS(t *testing.T, n int, secure bool) []*clusterNode {
	t.Helper()
	return startRoutingClusterConf(t, n, secure, "")
}

// startRoutingClusterConf is startRoutingClusterTLS with more of the
// configuration file (top-level sections) for every node.
func startRoutingClusterConf(t *testing.T, n int, secure bool, more string) []*clusterNode {
	t.Helper()
	dir := t.TempDir()
	tlsSection := func(string) string { return "" }
	if secure {
		certs := map[string][]*url.URL{}
		for i := range n {
			id := fmt.Sprintf("n%d", i+1)
			certs[id] = []*url.URL{cluster.NodeURI(id), kvserver.NodeURI(raftkv.NodeID(i + 1))}
		}
		if err := kvserver.WriteTestCertsNamed(dir, certs); err != nil {
			t.Fatal(err)
		}
		tlsSection = func(id string) string {
			return fmt.Sprintf("  tls: {cert_file: %s, key_file: %s, ca_file: %s}\n",
				filepath.Join(dir, id+".pem"), filepath.Join(dir, id+"-key.pem"), filepath.Join(dir, "ca.pem"))
		}
	}
	nodes := make([]*clusterNode, n)
	var peers []string
	// Every address at once: a port freed by one pick could be handed out
	// again to the next (each node's MQTT, admin, gossip, forward, raft).
	addrs := freeAddrs(t, 5*n)
	for i := range nodes {
		a := addrs[5*i:]
		nodes[i] = &clusterNode{id: fmt.Sprintf("n%d", i+1), gossip: a[0], forward: a[1], kv: a[2],
			dir: filepath.Join(dir, fmt.Sprintf("n%d", i+1))}
		peers = append(peers, fmt.Sprintf("%d=%s", i+1, nodes[i].kv))
	}
	for i, nd := range nodes {
		conf := filepath.Join(dir, nd.id+".yaml")
		yaml := fmt.Sprintf(`cluster:
  name: test
  node_id: %s
  bind: %s
  seeds: [%s]
  forward: %s
  kv:
    node_id: %d
    bind: %s
    client_bind: 127.0.0.1:0
    peers: [%s]
`, nd.id, nd.gossip, nodes[0].gossip, nd.forward, i+1, nd.kv, strings.Join(peers, ", ")) + tlsSection(nd.id) + more
		if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		nd.conf = conf
		nd.brokerProc = launchAt(t, addrs[5*i+3], addrs[5*i+4], nd.dir, "--config", conf)
	}
	for _, nd := range nodes {
		waitListening(t, nd.brokerProc, time.Minute)
	}
	return nodes
}

// freeAddrs returns n distinct free loopback addresses: all are held open
// until all are picked, so none is handed out twice.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	out := make([]string, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		out = append(out, l.Addr().String())
	}
	return out
}

// launchAt starts the binary on given MQTT and admin addresses, without
// waiting for it to listen.
func launchAt(t *testing.T, addr, admin, dataDir string, extra ...string) *brokerProc {
	t.Helper()
	bp := &brokerProc{addr: addr, admin: admin, stderr: &syncBuffer{}, done: make(chan error, 1)}
	args := append([]string{"serve", "--listen", bp.addr, "--data", dataDir, "--admin", bp.admin, "--log-level", "debug"}, extra...)
	bp.cmd = exec.Command(skybridgeBinary(t), args...)
	bp.cmd.Stderr = bp.stderr
	if err := bp.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { bp.done <- bp.cmd.Wait() }()
	t.Cleanup(func() {
		_ = bp.cmd.Process.Kill()
		err := <-bp.done
		bp.done <- err
		if t.Failed() {
			t.Logf("broker %s log:\n%s", bp.addr, bp.stderr.String())
		}
	})
	return bp
}

// waitListening polls until bp accepts MQTT connections.
func waitListening(t *testing.T, bp *brokerProc, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if c, err := net.Dial("tcp", bp.addr); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-bp.done:
			bp.done <- err
			t.Fatalf("skybridge exited: %v\n%s", err, bp.stderr.String())
		case <-time.After(20 * time.Millisecond): // polling interval
		}
		if time.Now().After(deadline) {
			t.Fatalf("skybridge did not listen on %s in %v\n%s", bp.addr, limit, bp.stderr.String())
		}
	}
}

// v5 is a minimal MQTT 5.0 client for these tests.
type v5 struct {
	c       *paho.Client
	msgs    chan *paho.Publish
	session bool                  // the CONNACK's session present
	gone    chan *paho.Disconnect // a DISCONNECT from the broker
}

func dialV5(t *testing.T, addr, id string) *v5 {
	t.Helper()
	return dialV5Session(t, addr, id, 0)
}

// dialV5Session connects with clean start off and a session expiry.
func dialV5Session(t *testing.T, addr, id string, expiry uint32) *v5 {
	t.Helper()
	return dialV5Timeout(t, addr, id, expiry, 0)
}

// dialV5Timeout is dialV5Session with paho's bound on waiting for an
// acknowledgement (0: paho's 10 s), which caps every call's context.
func dialV5Timeout(t *testing.T, addr, id string, expiry uint32, packetTimeout time.Duration) *v5 {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan *paho.Publish, 10000)
	gone := make(chan *paho.Disconnect, 1)
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), PacketTimeout: packetTimeout, OnServerDisconnect: func(d *paho.Disconnect) {
		select {
		case gone <- d:
		default:
		}
	}, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			select {
			case msgs <- pr.Packet:
			default:
				t.Errorf("%s: message buffer full", id)
			}
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cp := &paho.Connect{ClientID: id, CleanStart: expiry == 0, KeepAlive: 60}
	if expiry > 0 {
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
	}
	ack, err := c.Connect(ctx, cp)
	if err != nil || ack.ReasonCode != 0 {
		t.Fatalf("%s: connect: %v %+v", id, err, ack)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return &v5{c: c, msgs: msgs, session: ack.SessionPresent, gone: gone}
}

// connectV5 sends one CONNECT and returns the CONNACK, whatever it says.
func connectV5(t *testing.T, addr, id string) *paho.Connack {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 60})
	if ack == nil {
		t.Fatalf("%s: connect: %v", id, err)
	}
	if ack.ReasonCode == 0 {
		_ = c.Disconnect(&paho.Disconnect{})
	}
	conn.Close()
	return ack
}

func (c *v5) sub(t *testing.T, filter string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := c.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil || len(sa.Reasons) != 1 || sa.Reasons[0] != qos {
		t.Fatalf("subscribe %s: %v %+v", filter, err, sa)
	}
}

func (c *v5) unsub(t *testing.T, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.c.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{filter}}); err != nil {
		t.Fatalf("unsubscribe %s: %v", filter, err)
	}
}

// pub publishes and returns the reason code of its acknowledgement (0 for
// QoS 0).
func (c *v5) pub(t *testing.T, topic string, qos byte, payload string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)})
	if err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	if r == nil {
		return 0
	}
	return r.ReasonCode
}

// delivers publishes payload to topic at QoS 1 and checks that it is
// acknowledged and that sub's next message is it; what names the check.
func (c *v5) delivers(t *testing.T, sub *v5, topic, payload, what string) {
	t.Helper()
	if code := c.pub(t, topic, 1, payload); code >= 0x80 {
		t.Fatalf("%s: publish refused (0x%x)", what, code)
	}
	if m := sub.next(10 * time.Second); m == nil || string(m.Payload) != payload {
		t.Fatalf("%s: got %v, want %q", what, m, payload)
	}
}

// takenOver waits for the broker's DISCONNECT 0x8E (session taken over).
func (c *v5) takenOver(t *testing.T, who string) {
	t.Helper()
	if d := c.disconnected(t, who); d.ReasonCode != 0x8E {
		t.Fatalf("%s told 0x%x, want 0x8E", who, d.ReasonCode)
	}
}

// disconnected waits for a DISCONNECT from the broker.
func (c *v5) disconnected(t *testing.T, who string) *paho.Disconnect {
	t.Helper()
	select {
	case d := <-c.gone:
		return d
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no DISCONNECT from the broker in 10 s", who)
	}
	return nil
}

// next returns the next message, or nil after wait.
func (c *v5) next(wait time.Duration) *paho.Publish {
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(wait):
		return nil
	}
}

// waitMembers polls until every node sees every node alive: the SUBACK
// guarantee holds between nodes that see each other.
func waitMembers(t *testing.T, nodes []*clusterNode) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, nd := range nodes {
		for {
			resp, err := http.Get("http://" + nd.admin + "/api/v1/cluster")
			var ci server.ClusterInfo
			if err == nil {
				err = json.NewDecoder(resp.Body).Decode(&ci)
				resp.Body.Close()
			}
			alive := 0
			for _, m := range ci.Members {
				if m.State == "alive" {
					alive++
				}
			}
			if err == nil && alive == len(nodes) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s sees %d alive (%v), want %d", nd.id, alive, err, len(nodes))
			}
			time.Sleep(50 * time.Millisecond) // polling interval
		}
	}
}

// Three brokers route messages to each other: a subscriber on one node
// gets what clients of the other nodes publish, once per subscription, in
// order, at QoS 0, 1 and 2; a shared group spread over nodes gets each
// message once; an unsubscribe stops the flow; and a publisher's QoS 1
// acknowledgement says the message reached the other nodes.
func TestClusterRoutesMessages(t *testing.T) {
	t.Parallel()
	nodes := startRoutingCluster(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]

	waitMembers(t, nodes)

	// The admin API shows each node's raftkv replicas: every range has a
	// replica on each of the three nodes and, once elections settle, one
	// leader among them.
	deadline := time.Now().Add(30 * time.Second)
	for {
		leaders, replicas := map[uint64]int{}, map[uint64]int{}
		for _, nd := range nodes {
			resp, err := http.Get("http://" + nd.admin + "/api/v1/cluster")
			if err != nil {
				t.Fatal(err)
			}
			var ci server.ClusterInfo
			err = json.NewDecoder(resp.Body).Decode(&ci)
			resp.Body.Close()
			if err != nil || ci.KVError != "" || ci.KVNode == 0 {
				t.Fatalf("%s: %v %q kv node %d", nd.id, err, ci.KVError, ci.KVNode)
			}
			for _, r := range ci.Ranges {
				replicas[r.Range]++
				if r.Leader {
					leaders[r.Range]++
				}
			}
		}
		settled := len(replicas) > 0
		for id, n := range replicas {
			settled = settled && n == 3 && leaders[id] == 1
		}
		if settled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ranges: replicas %v, leaders %v", replicas, leaders)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}

	// The SUBACK guarantee: the first message published on another node
	// right after the SUBACK arrives.
	pubA := dialV5(t, a.addr, "pub-a")
	subB := dialV5(t, b.addr, "sub-b")
	subB.sub(t, "plain/#", 1)
	pubA.pub(t, "plain/first", 1, "first")
	if m := subB.next(10 * time.Second); m == nil || string(m.Payload) != "first" {
		t.Fatalf("B: the first message after its SUBACK: %v", m)
	}
	subC := dialV5(t, c.addr, "sub-c")
	subC.sub(t, "plain/+/x", 2)
	pubA.pub(t, "plain/first/x", 0, "first-x")
	for name, s := range map[string]*v5{"B": subB, "C": subC} {
		if m := s.next(10 * time.Second); m == nil || string(m.Payload) != "first-x" {
			t.Fatalf("%s: the first QoS 0 message after C's SUBACK: %v", name, m)
		}
	}

	// Order and exactly-once per node: 300 messages from A at QoS 0, 1, 2.
	const n = 300
	for i := range n {
		if code := pubA.pub(t, "plain/seq/x", byte(i%3), fmt.Sprint(i)); code >= 0x80 {
			t.Fatalf("publish %d refused: 0x%x", i, code)
		}
	}
	for name, s := range map[string]*v5{"B": subB, "C": subC} {
		for i := range n {
			m := s.next(10 * time.Second)
			if m == nil {
				t.Fatalf("%s got %d of %d messages", name, i, n)
			}
			if string(m.Payload) != fmt.Sprint(i) || m.Topic != "plain/seq/x" {
				t.Fatalf("%s: message %d is %q on %s", name, i, m.Payload, m.Topic)
			}
		}
		if m := s.next(300 * time.Millisecond); m != nil {
			t.Fatalf("%s: extra message %q", name, m.Payload)
		}
	}

	// A subscriber on the publisher's own node still gets it, once.
	subA := dialV5(t, a.addr, "sub-a")
	subA.sub(t, "plain/#", 0)
	pubA.pub(t, "plain/local", 1, "here")
	if m := subA.next(10 * time.Second); m == nil || string(m.Payload) != "here" {
		t.Fatalf("local subscriber: %v", m)
	}
	if m := subB.next(10 * time.Second); m == nil || string(m.Payload) != "here" {
		t.Fatalf("B after the local one: %v", m)
	}

	// A shared group with members on B and C: every message reaches
	// exactly one of them.
	gB := dialV5(t, b.addr, "g-b")
	gB.sub(t, "$share/g/jobs/#", 1)
	gC := dialV5(t, c.addr, "g-c")
	gC.sub(t, "$share/g/jobs/#", 1)
	const jobs = 200
	for i := range jobs {
		pubA.pub(t, "jobs/run", 1, fmt.Sprint(i))
	}
	seen := map[string]int{}
	perMember := map[string]int{}
	for got := 0; got < jobs; got++ {
		var m *paho.Publish
		select {
		case m = <-gB.msgs:
			perMember["B"]++
		case m = <-gC.msgs:
			perMember["C"]++
		case <-time.After(10 * time.Second):
			t.Fatalf("the group got %d of %d jobs", got, jobs)
		}
		seen[string(m.Payload)]++
	}
	for p, k := range seen {
		if k != 1 {
			t.Errorf("job %s delivered %d times", p, k)
		}
	}
	if gB.next(300*time.Millisecond) != nil || gC.next(10*time.Millisecond) != nil {
		t.Error("a job was delivered twice")
	}
	if perMember["B"] == 0 || perMember["C"] == 0 {
		t.Errorf("jobs per member %v: one member got none", perMember)
	}

	// After C unsubscribes, A stops sending to C.
	subC.unsub(t, "plain/+/x")
	deadline = time.Now().Add(20 * time.Second)
	for {
		before := metric(t, a.brokerProc, `skybridge_cluster_forward_messages_total{outcome="sent"}`)
		pubA.pub(t, "plain/after/x", 1, "after")
		if m := subB.next(10 * time.Second); m == nil {
			t.Fatal("B lost its subscription")
		}
		if metric(t, a.brokerProc, `skybridge_cluster_forward_messages_total{outcome="sent"}`)-before == 1 {
			break // to B only
		}
		if time.Now().After(deadline) {
			t.Fatal("A still forwards to C 20 s after its unsubscribe")
		}
	}
	for subC.next(300*time.Millisecond) != nil {
	}
	pubA.pub(t, "plain/after/x", 1, "after")
	if m := subC.next(500 * time.Millisecond); m != nil {
		t.Fatalf("C got %q after unsubscribing", m.Payload)
	}
	// Retained messages are the cluster's: set on A, a new subscriber on C
	// gets it; replaced on B, C's next subscriber gets the new one;
	// deleted on A, none.
	retainedOn := func(sub *clusterNode, id, want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			s := dialV5(t, sub.addr, id)
			s.sub(t, "state/#", 1)
			m := s.next(500 * time.Millisecond)
			_ = s.c.Disconnect(&paho.Disconnect{})
			got := ""
			if m != nil {
				got = string(m.Payload)
				if !m.Retain {
					t.Fatalf("%s: retained message without the retain flag", id)
				}
			}
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s on %s: retained %q, want %q", id, sub.id, got, want)
			}
		}
	}
	setRetained := func(p *v5, payload string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := p.c.Publish(ctx, &paho.Publish{Topic: "state/dev1", QoS: 1, Retain: true, Payload: []byte(payload)}); err != nil {
			t.Fatal(err)
		}
	}
	setRetained(pubA, "on")
	retainedOn(c, "r1", "on")
	pubB := dialV5(t, b.addr, "pub-b")
	setRetained(pubB, "off")
	retainedOn(c, "r2", "off")
	retainedOn(a, "r3", "off")
	setRetained(pubA, "")
	retainedOn(b, "r4", "")
	retainedOn(c, "r5", "")

	// One owner per session: the same client id on another node ends the
	// first connection (0x8E) before it is accepted; its subscription
	// goes with the session it ended; the new node's session starts
	// afresh.
	devA := dialV5Session(t, a.addr, "dev", 300)
	devA.sub(t, "dev/in", 1)
	devB := dialV5Session(t, b.addr, "dev", 300)
	devA.takenOver(t, "dev on A")
	if devB.session {
		t.Error("session present on B: the session does not move with its state")
	}
	devB.sub(t, "dev/in", 1)
	pubA.pub(t, "dev/in", 1, "to-dev")
	if m := devB.next(10 * time.Second); m == nil || string(m.Payload) != "to-dev" {
		t.Fatalf("dev on B: %v", m)
	}
	devA2 := dialV5Session(t, a.addr, "dev", 300)
	devB.takenOver(t, "dev on B")
	_ = devA2

	if got := metric(t, b.brokerProc, `skybridge_cluster_forward_received_total`); got < n {
		t.Errorf("B's skybridge_cluster_forward_received_total = %v, want at least %d", got, n)
	}

	// Drain: B sends its clients to the others and refuses new ones with
	// a reference, until undrained.
	onB := dialV5(t, b.addr, "drained")
	out, err := exec.Command(skybridgeBinary(t), "ctl", "drain", "--admin", "http://"+b.admin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"draining": true`) {
		t.Fatalf("ctl drain: %v\n%s", err, out)
	}
	d := onB.disconnected(t, "the client of the drained node")
	if d.ReasonCode != 0x9C || d.Properties == nil || (d.Properties.ServerReference != a.addr && d.Properties.ServerReference != c.addr) {
		t.Fatalf("drained node said %+v, want 0x9C and %s or %s", d, a.addr, c.addr)
	}
	ack := connectV5(t, b.addr, "late")
	if ack.ReasonCode != 0x9C || ack.Properties == nil || (ack.Properties.ServerReference != a.addr && ack.Properties.ServerReference != c.addr) {
		t.Fatalf("CONNECT to the drained node: %+v", ack)
	}
	if out, err := exec.Command(skybridgeBinary(t), "ctl", "undrain", "--admin", "http://"+b.admin).CombinedOutput(); err != nil {
		t.Fatalf("ctl undrain: %v\n%s", err, out)
	}
	if ack := connectV5(t, b.addr, "late"); ack.ReasonCode != 0 {
		t.Fatalf("CONNECT after undrain: %+v", ack)
	}

	// A node stopped with SIGTERM sends its 5.0 clients to the live nodes:
	// DISCONNECT 0x9C (use another server) with a Server Reference.
	onC := dialV5(t, c.addr, "moving")
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	d = onC.disconnected(t, "the client of the stopping node")
	ref := ""
	if d.Properties != nil {
		ref = d.Properties.ServerReference
	}
	if d.ReasonCode != 0x9C || (ref != a.addr && ref != b.addr) {
		t.Fatalf("stopping node said 0x%x, server reference %q; want 0x9C and %s or %s", d.ReasonCode, ref, a.addr, b.addr)
	}
	moved := dialV5(t, ref, "moving")
	moved.sub(t, "moved/#", 1)
	pubA.pub(t, "moved/x", 1, "found")
	if m := moved.next(10 * time.Second); m == nil || string(m.Payload) != "found" {
		t.Fatalf("the moved client: %v", m)
	}
}

// A tenant's max_connections counts its clients on every live node: with
// 2, a client on node 1 and one on node 2 leave no place on node 3 (once
// node 3 heard of them), and one that leaves makes a place again.
func TestClusterTenantConnectionLimit(t *testing.T) {
	t.Parallel()
	nodes := startRoutingClusterConf(t, 3, false, "tenants:\n  tenants:\n    default: {max_connections: 2}\n")
	waitMembers(t, nodes)
	first := dialV5(t, nodes[0].addr, "lim-1")
	dialV5(t, nodes[1].addr, "lim-2")
	// until wants the CONNACK code of a new client of nd, while others'
	// counts propagate; an accepted client leaves at once.
	until := func(nd *clusterNode, id string, want byte) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			ack := connectV5(t, nd.addr, id)
			if ack.ReasonCode == want {
				return
			}
			if ack.ReasonCode != 0 && ack.ReasonCode != 0x97 {
				t.Fatalf("%s on %s: CONNACK 0x%x", id, nd.id, ack.ReasonCode)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s on %s: CONNACK 0x%x for 20 s, want 0x%x", id, nd.id, ack.ReasonCode, want)
			}
			time.Sleep(50 * time.Millisecond) // polling interval
		}
	}
	until(nodes[2], "lim-3", 0x97)
	until(nodes[0], "lim-4", 0x97) // node 1 counts node 2's client too
	if got := metric(t, nodes[2].brokerProc, "skybridge_cluster_connections_refused_total"); got < 1 {
		t.Errorf("node 3's skybridge_cluster_connections_refused_total = %v, want at least 1", got)
	}
	if err := first.c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	until(nodes[2], "lim-3", 0)
}

// kill -9 of a node under QoS 1 load: publishers on A, subscribers on B
// and C; C's process is killed with SIGKILL mid-load. Every message A
// acknowledged (PUBACK below 0x80) reached B's subscriber: A's
// acknowledgements that waited for C are refused (0x83) when C's link
// gives up or the membership declares C dead, never given as success;
// the publishers send those again. C restarts with its stores and routes
// again.
func TestClusterKill9(t *testing.T) {
	t.Parallel()
	nodes := startRoutingClusterTLS(t, 3, true) // and mutual TLS between the nodes
	a, b, c := nodes[0], nodes[1], nodes[2]
	waitMembers(t, nodes)
	subB := dialV5(t, b.addr, "k-sub-b")
	subB.sub(t, "load/#", 1)
	subC := dialV5(t, c.addr, "k-sub-c")
	subC.sub(t, "load/#", 1)

	const writers, perWriter = 8, 400
	var mu sync.Mutex
	acked := map[string]bool{}
	failed := 0
	var wg sync.WaitGroup
	var killed sync.Once
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := dialV5(t, a.addr, fmt.Sprintf("k-pub-%d", w))
			for i := range perWriter {
				payload := fmt.Sprintf("%d-%d", w, i)
				// A refused message is sent again, as a client would.
				for try := 0; ; try++ {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					r, err := p.c.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("load/%d", w), QoS: 1, Payload: []byte(payload)})
					cancel()
					if r == nil && err != nil {
						t.Errorf("writer %d: %v", w, err)
						return
					}
					mu.Lock()
					ok := r.ReasonCode < 0x80
					if ok {
						acked[payload] = true
					} else {
						failed++
					}
					mu.Unlock()
					if ok {
						break
					}
					if try == 5 {
						t.Errorf("writer %d: %s refused 6 times (0x%x)", w, payload, r.ReasonCode)
						return
					}
				}
				mu.Lock()
				n := len(acked)
				mu.Unlock()
				if n >= writers*perWriter/4 {
					killed.Do(func() {
						if err := c.cmd.Process.Kill(); err != nil { // SIGKILL, by pid
							t.Error(err)
						}
					})
				}
			}
		}()
	}
	wg.Wait()
	got := map[string]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < len(acked) && time.Now().Before(deadline) {
		if m := subB.next(time.Second); m != nil {
			got[string(m.Payload)] = true
		}
	}
	lost := 0
	for p := range acked {
		if !got[p] {
			lost++
		}
	}
	t.Logf("%d acknowledged, %d refused (0x83 while C was dying), %d received on B, %d acknowledged and lost",
		len(acked), failed, len(got), lost)
	if lost > 0 {
		t.Fatalf("%d acknowledged messages never reached B", lost)
	}
	if len(acked) != writers*perWriter {
		t.Fatalf("%d of %d acknowledged", len(acked), writers*perWriter)
	}

	// C comes back with its stores and routes again.
	err := <-c.done
	c.done <- err
	c.brokerProc = launchAt(t, c.addr, c.admin, c.dir, "--config", c.conf)
	waitListening(t, c.brokerProc, time.Minute)
	waitMembers(t, nodes)
	subC2 := dialV5(t, c.addr, "k-sub-c2")
	subC2.sub(t, "after/#", 1)
	pubA := dialV5(t, a.addr, "k-pub-after")
	pubA.delivers(t, subC2, "after/x", "back", "C after its restart")
}
