package server

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

func apiDo(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	cfg := testConfig(ListenerConfig{Name: "tcp", Type: TCP, Addr: "127.0.0.1:0", DefaultTenant: "d"})
	cfg.AdminAddr = "127.0.0.1:0"
	cfg.AdminToken = "s3cret"
	s := start(t, cfg)
	api := "http://" + s.Addr("admin").String()

	c, err := net.Dial("tcp", s.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn := &packet.Connect{Version: packet.V5, ClientID: []byte("dev-1"), KeepAlive: 30, UsernameFlag: true, Username: []byte("acme/alice")}
	b, _ := packet.Encode(conn, packet.V5)
	_, _ = c.Write(b)
	dec := packet.NewDecoder(c, packet.V5)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if p, err := dec.Next(); err != nil || p.Type() != packet.CONNACK {
		t.Fatalf("CONNACK: %v %v", p, err)
	}
	sub, _ := packet.Encode(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("a/#"), QoS: 1}}}, packet.V5)
	_, _ = c.Write(sub)
	if p, err := dec.Next(); err != nil || p.Type() != packet.SUBACK {
		t.Fatalf("SUBACK: %v %v", p, err)
	}
	pub, _ := packet.Encode(&packet.Publish{Topic: []byte("r/1"), Payload: []byte("kept"), Retain: true}, packet.V5)
	_, _ = c.Write(pub)

	if code, _ := apiDo(t, "GET", api+"/api/v1/tenants", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("without a token: %d, want 401", code)
	}
	if code, _ := apiDo(t, "GET", api+"/api/v1/tenants", "wrong", ""); code != http.StatusUnauthorized {
		t.Fatalf("with a wrong token: %d, want 401", code)
	}
	code, body := apiDo(t, "GET", api+"/api/v1/tenants/acme/sessions/dev-1", "s3cret", "")
	if code != 200 || !strings.Contains(body, `"filter": "a/#"`) || !strings.Contains(body, `"connected": true`) {
		t.Fatalf("session: %d %s", code, body)
	}
	code, body = apiDo(t, "GET", api+"/api/v1/tenants", "s3cret", "")
	var tenants []map[string]any
	if err := json.Unmarshal([]byte(body), &tenants); code != 200 || err != nil || len(tenants) != 1 || tenants[0]["name"] != "acme" {
		t.Fatalf("tenants: %d %s", code, body)
	}
	// Retained messages are listed and deleted (polling: the PUBLISH has
	// no acknowledgement).
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body = apiDo(t, "GET", api+"/api/v1/tenants/acme/retained?filter=r/%23", "s3cret", "")
		if strings.Contains(body, `"topic": "r/1"`) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling the API
	}
	if !strings.Contains(body, `"topic": "r/1"`) {
		t.Fatalf("retained: %s", body)
	}
	if code, _ = apiDo(t, "DELETE", api+"/api/v1/tenants/acme/retained?topic=r/1", "s3cret", ""); code != 204 {
		t.Fatalf("delete retained: %d", code)
	}
	if _, body = apiDo(t, "GET", api+"/api/v1/tenants/acme/retained", "s3cret", ""); strings.Contains(body, "r/1") {
		t.Fatalf("retained after delete: %s", body)
	}
	// Settings: a partial update changes what it names; a bad one names the field.
	code, body = apiDo(t, "PUT", api+"/api/v1/tenants/acme/settings", "s3cret", `{"max_connections": 7}`)
	if code != 200 || !strings.Contains(body, `"max_connections": 7`) || !strings.Contains(body, `"max_qos": 2`) {
		t.Fatalf("put settings: %d %s", code, body)
	}
	code, body = apiDo(t, "PUT", api+"/api/v1/tenants/acme/settings", "s3cret", `{"max_qos": 9}`)
	if code != 400 || !strings.Contains(body, "max_qos") {
		t.Fatalf("bad settings: %d %s", code, body)
	}
	// /metrics has the tenant's series.
	_, body = apiDo(t, "GET", api+"/metrics", "s3cret", "") // behind the admin token
	if !strings.Contains(body, `skybridge_tenant_connections{tenant="acme"} 1`) {
		t.Fatalf("metrics lack the tenant's connections:\n%s", grep(body, "skybridge_tenant"))
	}
	// Kicking the session: the client is told 0x98.
	if code, _ = apiDo(t, "DELETE", api+"/api/v1/tenants/acme/sessions/dev-1", "s3cret", ""); code != 204 {
		t.Fatalf("kick: %d", code)
	}
	for {
		p, err := dec.Next()
		if err != nil {
			t.Fatalf("no DISCONNECT after the kick: %v", err)
		}
		if d, ok := p.(*packet.Disconnect); ok {
			if d.ReasonCode != packet.AdministrativeAction {
				t.Fatalf("DISCONNECT %v, want 0x98", d.ReasonCode)
			}
			break
		}
	}
	if code, _ = apiDo(t, "GET", api+"/api/v1/tenants/acme/sessions/nobody", "s3cret", ""); code != 404 {
		t.Fatalf("unknown session: %d", code)
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
