package service

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/cloud/ca"
	"github.com/skybridge-mq/skybridge/cloud/fleet"
	"github.com/skybridge-mq/skybridge/edge/agent"
	"github.com/skybridge-mq/skybridge/edge/modbustcp/modbustest"
	edgesvc "github.com/skybridge-mq/skybridge/edge/service"
)

type client struct {
	t     *testing.T
	base  string
	token string
	hc    *http.Client
}

func newClient(t *testing.T, s *Service) *client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.CAPEM())
	return &client{t: t, base: "https://" + s.APIAddr(), token: s.AdminToken(),
		hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
}

// do sends a request; body is JSON-encoded unless it is []byte.
func (c *client) do(method, path string, body, out any) int {
	c.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		r = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, c.base+path, r)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return resp.StatusCode
}

func (c *client) must(method, path string, body, out any) {
	c.t.Helper()
	if st := c.do(method, path, body, out); st >= 300 {
		c.t.Fatalf("%s %s: status %d", method, path, st)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

func startCloud(t *testing.T) *Service {
	t.Helper()
	s, err := Start(Config{DataDir: t.TempDir(), APIAddr: "127.0.0.1:0", BrokerAddr: "127.0.0.1:0", PublicHosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestCloudAndEdgeInProcess(t *testing.T) {
	t.Parallel()
	cloud := startCloud(t)
	c := newClient(t, cloud)
	edge := startEdge(t, c, "n1", map[string]string{"site": "a"})
	var n api.Node
	eventually(t, 20*time.Second, "n1 online", func() bool {
		c.must("GET", "/v1/nodes/n1", nil, &n)
		return n.State == api.NodeActive && n.Online
	})
	// An app by label: a script that says it runs.
	script := []byte("#!/bin/sh\necho \"running $SKYBRIDGE_APP rev $SKYBRIDGE_APP_REVISION $(cat etc/greeting)\"\nexec sleep 1000\n")
	var art struct{ SHA256 string }
	c.must("POST", "/v1/artifacts?name=hello", script, &art)
	c.must("PUT", "/v1/configs/greet", api.Config{Data: map[string]string{"greeting": "hi"}}, nil)
	c.must("PUT", "/v1/apps/hello", api.App{Selector: "site=a", Artifact: api.Artifact{SHA256: art.SHA256},
		Mounts: []api.Mount{{Config: "greet", Dir: "etc"}}}, nil)
	eventually(t, 20*time.Second, "hello running and reported", func() bool {
		c.must("GET", "/v1/nodes/n1", nil, &n)
		return n.Status != nil && n.Status.AppliedVersion == n.DesiredVersion && len(n.Status.Apps) == 1 && n.Status.Apps[0].State == api.AppRunning
	})
	// A device on the node's local broker reports through the gateway.
	c.must("PUT", "/v1/devicemodels/thermo", api.DeviceModel{Properties: []api.Property{{Name: "temp", Type: api.PropInt}}}, nil)
	c.must("PUT", "/v1/devices/t1", api.Device{Model: "thermo", Node: "n1"}, nil)
	pub := localClient(t, edge.LocalBrokerAddr())
	eventually(t, 20*time.Second, "the device's report in its shadow", func() bool {
		_, _ = pub.Publish(context.Background(), &paho.Publish{Topic: "devices/t1/reported", QoS: 1, Payload: []byte(`{"temp":21}`)})
		var sh api.Shadow
		c.must("GET", "/v1/devices/t1/shadow", nil, &sh)
		return string(sh.Reported["temp"]) == "21"
	})
	// Events tell the story.
	var evs []api.Event
	c.must("GET", "/v1/events?since=0", nil, &evs)
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	for _, want := range []string{"node.activated", "node.online", "app.put", "desired.changed", "desired.applied"} {
		if !slices.Contains(types, want) {
			t.Errorf("no %s event in %v", want, types)
		}
	}
}

// startEdge activates an in-process edge agent with quick timers.
func startEdge(t *testing.T, c *client, node string, labels map[string]string) *edgesvc.Service {
	t.Helper()
	var tok tokenReply
	c.must("POST", "/v1/tokens", tokenBody{Node: node, Labels: labels}, &tok)
	edge, err := edgesvc.Start(edgesvc.Config{DataDir: t.TempDir(), Join: tok.Join, LocalBroker: "127.0.0.1:0",
		Agent: agent.Config{ResyncJitter: 50 * time.Millisecond, ReportEvery: time.Second, ReportDelay: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(edge.Close)
	return edge
}

func localClient(t *testing.T, addr string) *autopaho.ConnectionManager {
	t.Helper()
	u, _ := url.Parse("mqtt://" + addr)
	cm, err := autopaho.NewConnection(context.Background(), autopaho.ClientConfig{ServerUrls: []*url.URL{u}, KeepAlive: 30,
		ClientConfig: paho.ClientConfig{ClientID: "device-t1"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cm.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cm.Disconnect(context.Background()) })
	return cm
}

// activate makes a node with a key of the test's and returns its TLS
// certificate.
func activate(t *testing.T, c *client, node string) tls.Certificate {
	t.Helper()
	var tok tokenReply
	c.must("POST", "/v1/tokens", tokenBody{Node: node}, &tok)
	_, priv, _ := ed25519.GenerateKey(nil)
	csr, _ := ca.CSR(priv, node)
	var resp api.ActivateResponse
	c.must("POST", "/v1/activate", api.ActivateRequest{Token: tok.Token, CSR: csr}, &resp)
	return tls.Certificate{Certificate: [][]byte{resp.Cert}, PrivateKey: priv}
}

// mqttConn connects to the cloud's broker with a certificate, as client
// id.
func mqttConn(t *testing.T, s *Service, cert tls.Certificate, id string) (*paho.Client, error) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.CAPEM())
	conn, err := tls.Dial("tcp", s.BrokerAddr(), &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		return nil, err
	}
	pc := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn)}) // paho writes from several goroutines; a tls.Conn alone would interleave their packets
	ca, err := pc.Connect(context.Background(), &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true})
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	if ca.ReasonCode != 0 {
		_ = conn.Close()
		return nil, fmt.Errorf("CONNACK 0x%02x", ca.ReasonCode)
	}
	t.Cleanup(func() { _ = pc.Disconnect(&paho.Disconnect{}) })
	return pc, nil
}

// A node reaches only its own topics, under its own client id; a revoked
// node and a foreign CA's certificate do not connect.
func TestBrokerIsolation(t *testing.T) {
	t.Parallel()
	cloud := startCloud(t)
	checkIsolation(t, cloud, newClient(t, cloud))
}

func checkIsolation(t *testing.T, cloud *Service, c *client) {
	t.Helper()
	n2 := activate(t, c, "n2")
	activate(t, c, "n3")
	for _, id := range []string{"n3", fleet.CloudClientID, "x"} {
		if _, err := mqttConn(t, cloud, n2, id); err == nil {
			t.Errorf("n2 connected as client id %q", id)
		}
	}
	pc, err := mqttConn(t, cloud, n2, "n2")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sa, err := pc.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: api.NodeDownTopic("n2"), QoS: 1}, {Topic: api.NodeDownTopic("n3"), QoS: 1}, {Topic: "#", QoS: 1}}})
	if sa == nil {
		t.Fatal(err) // a partial refusal comes with its SUBACK
	}
	if sa.Reasons[0] >= 0x80 || sa.Reasons[1] < 0x80 || sa.Reasons[2] < 0x80 {
		t.Errorf("SUBACK reasons %v: own down topic granted, n3's and # refused", sa.Reasons)
	}
	if pr, err := pc.Publish(ctx, &paho.Publish{Topic: api.NodeUpTopic("n3"), QoS: 1, Payload: []byte("{}")}); err == nil && pr.ReasonCode < 0x80 {
		t.Error("n2 published on n3's up topic")
	}
	// A certificate of another CA does not get through TLS.
	other, _, _ := ca.New("other", strings.NewReader(strings.Repeat("x", 64)), time.Now(), time.Hour)
	_, priv, _ := ed25519.GenerateKey(nil)
	csr, _ := ca.CSR(priv, "n2")
	der, _ := other.SignNode(csr, "n2", 2, time.Now(), time.Hour)
	if _, err := mqttConn(t, cloud, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, "n2"); err == nil {
		t.Error("a foreign CA's certificate connected")
	}
	// Revoked: kicked, and refused from then on.
	c.must("POST", "/v1/nodes/n2/revoke", nil, nil)
	select {
	case <-pc.Done():
	case <-time.After(10 * time.Second): // a deadline, not a wait: Done closes as soon as the kick lands
		t.Error("the revoked node's connection stayed open")
	}
	if _, err := mqttConn(t, cloud, n2, "n2"); err == nil {
		t.Error("a revoked node connected")
	}
	// The artifact of no app of the node is refused to it.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cloud.CAPEM())
	n3hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{activate(t, c, "n4")}}}}
	var art struct{ SHA256 string }
	c.must("POST", "/v1/artifacts?name=x", []byte("bin"), &art)
	resp, err := n3hc.Get("https://" + cloud.APIAddr() + "/v1/artifacts/" + art.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("artifact of no app of the node: %d", resp.StatusCode)
	}
	// The operator API wants its token.
	anon := *c
	anon.token = ""
	if st := anon.do("GET", "/v1/nodes", nil, nil); st != http.StatusUnauthorized {
		t.Errorf("anonymous GET /v1/nodes: %d", st)
	}
}

// The OpenAPI document describes exactly the routes the server has.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for p, ops := range doc.Paths {
		for m := range ops {
			documented[strings.ToUpper(m)+" "+p] = true
		}
	}
	served := map[string]bool{}
	for _, r := range routes {
		served[r.method+" "+r.path] = true
		if !documented[r.method+" "+r.path] {
			t.Errorf("%s %s is served but not in openapi.json", r.method, r.path)
		}
	}
	for k := range documented {
		if !served[k] {
			t.Errorf("%s is in openapi.json but not served", k)
		}
	}
}

// The data directory survives a restart: same CA, nodes, admin token.
func TestRestartKeepsState(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := Start(Config{DataDir: dir, APIAddr: "127.0.0.1:0", BrokerAddr: "127.0.0.1:0", PublicHosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s)
	c.must("POST", "/v1/tokens", tokenBody{Node: "kept"}, nil)
	caPEM, tok := s.CAPEM(), s.AdminToken()
	s.Close()
	s, err = Start(Config{DataDir: dir, APIAddr: "127.0.0.1:0", BrokerAddr: "127.0.0.1:0", PublicHosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !bytes.Equal(caPEM, s.CAPEM()) || tok != s.AdminToken() {
		t.Error("the CA or the admin token changed across a restart")
	}
	c = newClient(t, s)
	var n api.Node
	c.must("GET", "/v1/nodes/kept", nil, &n)
	if info, err := os.Stat(filepath.Join(dir, "secret.key")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("secret key file: %v %v", info, err)
	}
}

// Short-lived certificates: the node renews over HTTPS before each
// expires, its link reconnects with the new one, and it stays online.
func TestRenewalInProcess(t *testing.T) {
	t.Parallel()
	cloud, err := Start(Config{DataDir: t.TempDir(), APIAddr: "127.0.0.1:0", BrokerAddr: "127.0.0.1:0", PublicHosts: []string{"127.0.0.1"},
		Fleet: fleet.Config{CertLifetime: 3 * time.Second, Lease: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	c := newClient(t, cloud)
	var tok tokenReply
	c.must("POST", "/v1/tokens", tokenBody{Node: "short"}, &tok)
	edge, err := edgesvc.Start(edgesvc.Config{DataDir: t.TempDir(), Join: tok.Join,
		Agent: agent.Config{ResyncJitter: 50 * time.Millisecond, ReportEvery: 300 * time.Millisecond, RetryMin: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer edge.Close()
	serials := map[string]bool{}
	var n api.Node
	eventually(t, 30*time.Second, "three certificates, the node online with the latest", func() bool {
		c.must("GET", "/v1/nodes/short", nil, &n)
		if n.CertSerial != "" {
			serials[n.CertSerial] = true
		}
		return len(serials) >= 3 && n.Online && n.Status != nil && time.Since(n.LastSeen) < time.Second
	})
}

// TestModbusDeviceInProcess: an operator defines a Modbus model and a
// device in the cloud; the node's gateway polls the device (a Modbus TCP
// server of the test) and its values reach the shadow; a desired value
// reaches the device's register and is read back into the shadow.
func TestModbusDeviceInProcess(t *testing.T) {
	t.Parallel()
	dev, err := modbustest.Start(4)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Stop()
	dev.SetInput(1, 0, 215)   // temp 21.5
	dev.SetHolding(1, 10, 50) // setpoint 5.0
	cloud := startCloud(t)
	c := newClient(t, cloud)
	edge := startEdge(t, c, "n1", map[string]string{"site": "a"})
	model := api.DeviceModel{Properties: []api.Property{
		{Name: "temp", Type: api.PropFloat, Unit: "°C", Modbus: &api.ModbusPoint{Table: "input", Address: 0, Type: "int16", Scale: 0.1}},
		{Name: "setpoint", Type: api.PropFloat, Writable: true, Modbus: &api.ModbusPoint{Table: "holding", Address: 10, Type: "int16", Scale: 0.1}},
	}}
	// A model the cloud refuses: a read-only table for a writable property.
	bad := model
	bad.Properties = []api.Property{{Name: "x", Type: api.PropInt, Writable: true, Modbus: &api.ModbusPoint{Table: "input", Type: "uint16"}}}
	if st := c.do("PUT", "/v1/devicemodels/bad", bad, nil); st != http.StatusBadRequest {
		t.Fatalf("a writable property on input registers: status %d, want 400", st)
	}
	c.must("PUT", "/v1/devicemodels/thermostat", model, nil)
	c.must("PUT", "/v1/devices/th1", api.Device{Model: "thermostat", Node: "n1",
		Modbus: &api.ModbusEndpoint{Address: dev.Addr(), Unit: 1, Poll: api.Duration(100 * time.Millisecond), Timeout: api.Duration(time.Second)}}, nil)
	shadow := func() api.Shadow {
		var sh api.Shadow
		c.must("GET", "/v1/devices/th1/shadow", nil, &sh)
		return sh
	}
	eventually(t, 20*time.Second, "the device's registers in its shadow", func() bool {
		sh := shadow()
		return string(sh.Reported["temp"]) == "21.5" && string(sh.Reported["setpoint"]) == "5"
	})
	dev.SetInput(1, 0, 0xffec) // -2.0
	eventually(t, 20*time.Second, "a change in the shadow", func() bool { return string(shadow().Reported["temp"]) == "-2" })
	c.must("PUT", "/v1/devices/th1/shadow/desired", map[string]any{"setpoint": 22.5}, nil)
	eventually(t, 20*time.Second, "the desired value written and read back", func() bool {
		sh := shadow()
		return dev.Holding(1, 10) == 225 && string(sh.Reported["setpoint"]) == "22.5" && len(sh.Delta) == 0
	})
	devs, stats := edge.Devices()
	if len(devs) != 1 || devs[0].State != "ok" || stats.Writes != 1 || stats.Polls < 3 {
		t.Fatalf("gateway: %+v %+v", devs, stats)
	}
	// A device that does not answer: the node's status says which and why.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	ln.Close()
	c.must("PUT", "/v1/devices/th2", api.Device{Model: "thermostat", Node: "n1",
		Modbus: &api.ModbusEndpoint{Address: gone, Poll: api.Duration(100 * time.Millisecond), Timeout: api.Duration(time.Second)}}, nil)
	var n api.Node
	eventually(t, 20*time.Second, "the devices' states in the node's status", func() bool {
		c.must("GET", "/v1/nodes/n1", nil, &n)
		st := n.Status
		return st != nil && st.Gateway != nil && st.Gateway.Writes == 1 && len(st.Devices) == 2 &&
			st.Devices[0] == api.DeviceState{Name: "th1", State: "ok"} &&
			st.Devices[1].State == "failing" && strings.Contains(st.Devices[1].Reason, "connect "+gone)
	})
}
