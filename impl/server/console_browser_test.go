package server

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/skybridge-mq/skybridge/impl/cluster"
	"github.com/skybridge-mq/skybridge/impl/console/browsertest"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// fixedMembers is a cluster view that does not change (the console's
// cluster page; the real one is cmd/skybridge's TestClusterMembership).
type fixedMembers struct{ view cluster.View }

func (f fixedMembers) Members() cluster.View { return f.view }
func (fixedMembers) GossipAddr() string      { return "10.0.0.1:7946" }

// TestConsoleInTheBrowser drives the broker's web console in headless
// Chromium: log in with the admin token, watch the overview, see a
// tenant's message rate move while a client publishes, find a session by
// its client id and kick it (the client gets DISCONNECT 0x98), and have
// the settings form refuse an invalid value with the field named, and list
// the cluster's members.
// Screenshots of each page go to $SKYBRIDGE_ARTIFACTS.
func TestConsoleInTheBrowser(t *testing.T) {
	cfg := testConfig(ListenerConfig{Name: "tcp", Type: TCP, Addr: "127.0.0.1:0"})
	cfg.AdminAddr, cfg.AdminToken, cfg.Console, cfg.Version = "127.0.0.1:0", "t0ken", true, "skybridge test"
	cfg.Cluster = fixedMembers{cluster.View{Version: 7, Members: []cluster.Member{
		{ID: "n1", State: cluster.StateAlive, Local: true, Meta: cluster.Meta{Cluster: "test", Incarnation: 3, Roles: cluster.AllRoles, MQTT: "10.0.0.1:1883"}},
		{ID: "n2", State: cluster.StateLeft, Meta: cluster.Meta{Cluster: "test", Incarnation: 5, Roles: cluster.AllRoles, MQTT: "10.0.0.2:1883"}},
	}}}
	s := start(t, cfg)
	mqtt := s.Addr("tcp").String()
	console := "http://" + s.Addr("admin").String() + "/console/"

	dc := &packet.Connect{ClientID: []byte("sensor-17"), CleanStart: true, UsernameFlag: true, Username: []byte("acme/sensor")}
	dc.Properties.SessionExpiry = 3600 // kicked, its session stays (offline)
	dc.Properties.Set(packet.PropSessionExpiry)
	device := tdial(t, mqtt, packet.V5, dc)
	device.subscribe("cmd/#")
	pub := tdial(t, mqtt, packet.V311, &packet.Connect{ClientID: []byte("publisher"), CleanStart: true,
		UsernameFlag: true, Username: []byte("acme/pub")})
	var stop atomic.Bool
	defer stop.Store(true)
	go func() { // about 200 messages a second into tenant acme
		for i := 0; !stop.Load(); i++ {
			b, _ := packet.Encode(&packet.Publish{Topic: []byte(fmt.Sprintf("telemetry/%d", i%10)), Payload: []byte("21.5")}, packet.V311)
			if _, err := pub.c.Write(b); err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond) // the publisher's pace, not a wait for a condition
		}
	}()

	b := browsertest.Start(t, 2*time.Minute)
	b.Do("open the console", chromedp.Navigate(console), chromedp.WaitVisible("#login-token"))
	b.Screenshot("login")
	b.Do("log in with a wrong token", chromedp.SendKeys("#login-token", "nope"), chromedp.Click("#login-submit"))
	b.WaitFor("the refusal", `document.getElementById("login-error").textContent.includes("wrong token")`, 10*time.Second)
	b.SetValue("#login-token", "t0ken")
	b.Do("log in", chromedp.Click("#login-submit"), chromedp.WaitVisible("#nav"))
	b.WaitFor("the overview's rate", `Number(document.getElementById("ov-conn").textContent) >= 2 && document.getElementById("ov-in").textContent !== "0"`, 20*time.Second)
	b.Screenshot("overview")

	b.Do("open the tenants", chromedp.Navigate(console+"#/tenants"))
	b.WaitFor("acme's rate to move", `(() => { const e = document.querySelector('[data-rate-in="acme"]'); return e && parseFloat(e.textContent) > 10; })()`, 20*time.Second)
	b.Screenshot("tenants")

	b.Do("search sessions", chromedp.Navigate(console+"#/tenants/acme/sessions"), chromedp.WaitVisible("#session-search"),
		chromedp.SendKeys("#session-search", "sensor"), chromedp.Click(`#session-search-form button`))
	b.WaitFor("the search result", `document.getElementById("sessions").textContent.includes("1 session(s) matching")`, 10*time.Second)
	if txt := b.Text("#sessions"); strings.Contains(txt, "publisher") || !strings.Contains(txt, "sensor-17") {
		t.Fatalf("search for sensor found:\n%s", txt)
	}
	b.Screenshot("sessions")
	b.Do("open the session", chromedp.Click(`//a[text()="sensor-17"]`), chromedp.WaitVisible("#kick"))
	b.Screenshot("session")
	b.Do("kick", chromedp.Click("#kick"))
	p := device.next(10 * time.Second)
	if d, ok := p.(*packet.Disconnect); !ok || d.ReasonCode != packet.AdministrativeAction {
		t.Fatalf("the kicked client got %v, want DISCONNECT 0x98", p)
	}
	b.WaitFor("the session shown offline", `document.getElementById("session-state") && document.getElementById("session-state").textContent.startsWith("offline")`, 10*time.Second)

	b.Do("open the settings", chromedp.Navigate(console+"#/tenants/acme/settings"), chromedp.WaitVisible("#setting-max_qos"))
	b.SetValue("#setting-max_qos", "7")
	b.Do("save", chromedp.Click("#settings-save"))
	b.WaitFor("the validation error", `document.getElementById("err-max_qos").textContent.includes("must be 0, 1 or 2")`, 10*time.Second)
	b.Screenshot("settings")
	if got := s.Broker().Settings().Get("acme").MaxQoS; got != 2 {
		t.Fatalf("an invalid max_qos was applied: %d", got)
	}
	b.SetValue("#setting-max_qos", "1")
	b.Do("fix it", chromedp.Click("#settings-save"))
	deadline := time.Now().Add(10 * time.Second)
	for s.Broker().Settings().Get("acme").MaxQoS != 1 {
		if time.Now().After(deadline) {
			t.Fatal("max_qos 1 was not applied")
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}

	b.Do("open the cluster", chromedp.Navigate(console+"#/cluster"))
	b.WaitFor("the members", `(document.querySelector('[data-member-state="n2"]') || {}).textContent === "left" &&
		document.getElementById("cluster-info").textContent.includes("Cluster test")`, 10*time.Second)
	b.Screenshot("cluster")

	b.Do("log out", chromedp.Click("#logout"), chromedp.WaitVisible("#login-token"))
	if st := b.Text("#login-title"); st == "" {
		t.Fatal("no login form after logging out")
	}
}
