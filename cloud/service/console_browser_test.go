package service

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/eclipse/paho.golang/paho"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/edge/agent"
	edgesvc "github.com/skybridge-mq/skybridge/edge/service"
	"github.com/skybridge-mq/skybridge/impl/console/browsertest"
)

// TestFleetConsoleInTheBrowser drives skybridge-cloud's web console in
// headless Chromium against a cloud and an edge agent in process: log in
// with the admin token, make an activation token in the tokens form (a bad
// node name is refused under its field) and revoke another, start an
// agent with the join string the page shows and see its node come online
// with its version applied, upload an artifact and deploy an app by label
// selector through the form (an invalid selector is refused under its
// field and nothing is recorded), see it run on the node, update it to a
// new revision, set a device's desired value (a value of the wrong type
// is refused) and see the delta close when the device reports it, filter
// the events. Screenshots of each page go to $SKYBRIDGE_ARTIFACTS.
func TestFleetConsoleInTheBrowser(t *testing.T) {
	cloud, err := Start(Config{DataDir: t.TempDir(), APIAddr: "127.0.0.1:0", BrokerAddr: "127.0.0.1:0",
		PublicHosts: []string{"127.0.0.1"}, Console: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	admin := newClient(t, cloud)
	console := "https://" + cloud.APIAddr() + "/console/"
	const wait = 30 * time.Second

	b := browsertest.Start(t, 4*time.Minute, browsertest.TrustCert(cloud.ConsoleCert()))
	// fill sets an input and presses a button; refusedUnder waits for a
	// refusal under a form's field.
	fill := func(input, value, button string) {
		t.Helper()
		b.SetValue(input, value)
		b.Do(fmt.Sprintf("%s %q, then %s", input, value, button), chromedp.Click(button))
	}
	refusedUnder := func(field, text string) {
		t.Helper()
		b.WaitFor("the refusal under "+field, fmt.Sprintf(`document.querySelector('[data-error-for=%q]').textContent.includes(%q)`, field, text), wait)
	}
	b.Do("open the console", chromedp.Navigate(console), chromedp.WaitVisible("#login-token"))
	b.Screenshot("login")
	b.SetValue("#login-token", cloud.AdminToken())
	b.Do("log in", chromedp.Click("#login-submit"), chromedp.WaitVisible("#nav"))
	b.WaitFor("the fleet overview", `document.getElementById("fl-nodes") && document.getElementById("fl-nodes").textContent === "0"`, wait)

	// Activation tokens: a bad name is refused under its field; a good one
	// shows its join string once; another is revoked from the list.
	b.Do("open the tokens", chromedp.Navigate(console+"#/tokens"), chromedp.WaitVisible("#token-node"))
	fill("#token-node", "Edge One", "#token-create")
	refusedUnder("node", "only a-z")
	fill("#token-node", "edge-2", "#token-create")
	b.WaitFor("edge-2's join string", `(document.getElementById("token-join") || {}).textContent > ""`, wait)
	b.SetValue("#token-node", "edge-1")
	b.SetValue("#token-labels", "site=plant-2, role=gateway")
	b.Do("create a token for edge-1", chromedp.Click("#token-create"))
	b.WaitFor("edge-1's join string", `document.querySelector("#token-made h3").textContent.endsWith("edge-1")`, wait)
	join := b.Text("#token-join")
	var tokens []api.TokenInfo
	admin.must("GET", "/v1/tokens", nil, &tokens)
	i := slices.IndexFunc(tokens, func(x api.TokenInfo) bool { return x.Node == "edge-2" })
	if len(tokens) != 2 || i < 0 {
		t.Fatalf("tokens after two creations: %+v", tokens)
	}
	b.WaitFor("both tokens listed", `document.querySelectorAll("#tokens [data-revoke]").length === 2`, wait)
	b.Screenshot("tokens")
	b.Do("revoke edge-2's token", chromedp.Click(`#tokens [data-revoke="`+tokens[i].ID+`"]`))
	b.WaitFor("one token left", `document.querySelectorAll("#tokens [data-revoke]").length === 1`, wait)
	admin.must("GET", "/v1/tokens", nil, &tokens)
	if len(tokens) != 1 || tokens[0].Node != "edge-1" {
		t.Fatalf("tokens after revoking edge-2's: %+v", tokens)
	}

	// The node joins with the join string from the page.
	edge, err := edgesvc.Start(edgesvc.Config{DataDir: t.TempDir(), Join: join, LocalBroker: "127.0.0.1:0",
		Agent: agent.Config{ResyncJitter: 50 * time.Millisecond, ReportEvery: time.Second, ReportDelay: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer edge.Close()
	b.Do("open the nodes", chromedp.Navigate(console+"#/nodes"), chromedp.WaitVisible("#nodes"))
	b.WaitFor("edge-1 online", `(document.querySelector('[data-status="edge-1"]') || {}).textContent === "online"`, wait)
	b.WaitFor("edge-1's version applied", `(document.querySelector('[data-version="edge-1"]') || {}).textContent === "1 / 1 applied"`, wait)
	b.Screenshot("nodes")

	// An app by label, through the form, with an artifact uploaded there.
	script := filepath.Join(t.TempDir(), "collector.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"collector $SKYBRIDGE_APP_REVISION $*\"\nexec sleep 1000\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	b.Do("open the apps", chromedp.Navigate(console+"#/apps"), chromedp.WaitVisible("#app-name"))
	b.Do("upload the artifact", chromedp.SetUploadFiles("#artifact-file", []string{script}), chromedp.Click("#artifact-upload"))
	b.WaitFor("the artifact chosen", `document.getElementById("app-artifact").value.length === 64`, wait)
	b.SetValue("#app-name", "collector")
	fill("#app-selector", "role in (gateway", "#app-deploy")
	refusedUnder("selector", "selector:")
	if st := admin.do("GET", "/v1/apps/collector", nil, nil); st != 404 {
		t.Fatalf("an app with a bad selector was recorded: %d", st)
	}
	fill("#app-selector", "role in (gateway,server),site=plant-2", "#app-deploy")
	b.WaitFor("collector running on edge-1", `!!document.querySelector('[data-placed="collector"] [data-node="edge-1"][data-state="running"]')`, wait)
	var app api.App
	admin.must("GET", "/v1/apps/collector", nil, &app)
	var placed []string
	admin.must("GET", "/v1/apps/collector/nodes", nil, &placed)
	if app.Revision != 1 || app.Selector == "" || app.Artifact.Name != "collector.sh" || !slices.Equal(placed, []string{"edge-1"}) {
		t.Fatalf("the deployed app: %+v on %v", app, placed)
	}
	b.Screenshot("apps")
	b.Do("a new app", chromedp.Click("#app-new"))
	b.SetValue("#app-name", "collector")
	fill("#app-selector", "site=elsewhere", "#app-deploy")
	refusedUnder("name", "exists")
	var same api.App
	admin.must("GET", "/v1/apps/collector", nil, &same)
	if same.Revision != 1 || same.Selector != app.Selector {
		t.Fatalf("a new app of an existing name replaced it: %+v", same)
	}
	b.Do("edit the app", chromedp.Click(`[data-edit="collector"]`))
	b.WaitFor("the form filled", `document.getElementById("app-selector").value === "`+app.Selector+`"`, wait)
	fill("#app-args", "--interval\n10s", "#app-deploy")
	b.WaitFor("revision 2 recorded", `document.querySelector("#apps tbody tr td:nth-child(2)").textContent === "2"`, wait)
	b.WaitFor("revision 2 running on edge-1", `!!document.querySelector('[data-placed="collector"] [data-node="edge-1"][data-state="running"]')`, wait)
	admin.must("GET", "/v1/apps/collector", nil, &app)
	if app.Revision != 2 || !slices.Equal(app.Args, []string{"--interval", "10s"}) {
		t.Fatalf("the updated app: %+v", app)
	}
	b.Do("open the node", chromedp.Navigate(console+"#/nodes/edge-1"), chromedp.WaitVisible("#node-facts"))
	b.WaitFor("the app's state on the node page", `(document.querySelector('[data-app-state="collector"]') || {}).textContent === "running"`, wait)
	b.Screenshot("node")
	// Labels decide placement: edited on the node's page, the app leaves
	// the node and comes back.
	b.WaitFor("the labels form filled", `document.getElementById("node-labels").value === "role=gateway, site=plant-2"`, wait)
	fill("#node-labels", "site", "#node-labels-save")
	b.WaitFor("a label without a value refused", `document.getElementById("node-labels-error").textContent.includes("not key=value")`, wait)
	fill("#node-labels", "site=plant-3, role=gateway", "#node-labels-save")
	b.WaitFor("the app gone from the node", `document.getElementById("node-label-chips").textContent.includes("site=plant-3")
		&& !document.querySelector('[data-app-state="collector"]')`, wait)
	admin.must("GET", "/v1/apps/collector/nodes", nil, &placed)
	if len(placed) != 0 {
		t.Fatalf("collector still placed on %v after the labels changed", placed)
	}
	fill("#node-labels", "site=plant-2, role=gateway", "#node-labels-save")
	b.WaitFor("the app back on the node", `(document.querySelector('[data-app-state="collector"]') || {}).textContent === "running"`, wait)
	b.Do("open the app", chromedp.Navigate(console+"#/apps/collector"), chromedp.WaitVisible(`[data-app-on="edge-1"]`))
	b.Screenshot("app")

	// A device's shadow: the desired value is set in the form, the device
	// reports it through its node and the delta closes.
	admin.must("PUT", "/v1/devicemodels/thermo", api.DeviceModel{Properties: []api.Property{
		{Name: "temp", Type: api.PropInt, Unit: `<b id="injected">°C</b>`}, {Name: "setpoint", Type: api.PropFloat, Writable: true, Unit: "°C"}}}, nil)
	admin.must("PUT", "/v1/devices/t1", api.Device{Model: "thermo", Node: "edge-1"}, nil)
	b.Do("open the devices", chromedp.Navigate(console+"#/devices"))
	b.WaitFor("t1 listed in sync", `(document.querySelector('[data-shadow="t1"]') || {}).textContent === "in sync"`, wait)
	b.Screenshot("devices")
	b.Do("open t1", chromedp.Navigate(console+"#/devices/t1"), chromedp.WaitVisible("#desired-setpoint"))
	fill("#desired-setpoint", "warm", "#shadow-save")
	refusedUnder("setpoint", "want a value of type float")
	fill("#desired-setpoint", "21.5", "#shadow-save")
	b.WaitFor("the desired value and its delta", `(document.querySelector('[data-desired="setpoint"]') || {}).textContent === "21.5" && !!document.querySelector('[data-delta="setpoint"]')`, wait)
	var sh api.Shadow
	admin.must("GET", "/v1/devices/t1/shadow", nil, &sh)
	if string(sh.Desired["setpoint"]) != "21.5" {
		t.Fatalf("shadow after the form: %+v", sh)
	}
	pub := localClient(t, edge.LocalBrokerAddr())
	if _, err := pub.Publish(context.Background(), &paho.Publish{Topic: "devices/t1/reported", QoS: 1,
		Payload: json.RawMessage(`{"setpoint":21.5,"temp":20}`)}); err != nil {
		t.Fatal(err)
	}
	b.WaitFor("the report shown, no delta", `(document.querySelector('[data-reported="setpoint"]') || {}).textContent === "21.5" && !document.querySelector("[data-delta]")`, wait)
	b.Screenshot("device")
	if b.Text("#shadow") == "" || !b.Eval(`document.getElementById("injected") === null && document.getElementById("shadow").textContent.includes('<b id="injected">')`) {
		t.Error("a unit holding markup was not shown as text")
	}

	// Events, filtered by node and by type.
	b.Do("open the events", chromedp.Navigate(console+"#/events"), chromedp.WaitVisible("#events-node"))
	b.WaitFor("events", `document.querySelectorAll("#events tbody tr").length > 5`, wait)
	b.SetValue("#events-node", "edge-1")
	b.SetValue("#events-type", "node.")
	b.WaitFor("only edge-1's node events", `(() => { const rows = [...document.querySelectorAll("#events tbody tr")];
		return rows.length >= 3 && rows.every((r) => r.children[2].textContent.startsWith("node.") && r.children[3].textContent === "edge-1")
			&& rows.some((r) => r.children[2].textContent === "node.online"); })()`, wait)
	b.Screenshot("events")

	b.Do("open the overview", chromedp.Navigate(console+"#/fleet"))
	b.WaitFor("one node online, one app", `document.getElementById("fl-online").textContent === "1" && document.getElementById("fl-apps").textContent === "1"`, wait)
	b.Screenshot("overview")

	// Removing the app and revoking the node take a second click.
	b.Do("open the app", chromedp.Navigate(console+"#/apps/collector"), chromedp.WaitVisible("#app-delete"))
	b.Do("delete the app", chromedp.Click("#app-delete"))
	b.WaitFor("the confirmation asked", `document.getElementById("app-delete").textContent.startsWith("Click again")`, wait)
	b.Do("confirm", chromedp.Click("#app-delete"))
	b.WaitFor("back on the apps page", `location.hash === "#/apps" && !!document.querySelector("#apps tbody")
		&& document.querySelector("#apps tbody").textContent.includes("No app yet")`, wait)
	b.Do("open the node", chromedp.Navigate(console+"#/nodes/edge-1"), chromedp.WaitVisible("#node-revoke"))
	b.Do("revoke", chromedp.Click("#node-revoke"), chromedp.Click("#node-revoke"))
	b.WaitFor("the node shown revoked", `((document.getElementById("node-status") || {}).textContent || "").startsWith("revoked last heard")`, wait)
	var n api.Node
	admin.must("GET", "/v1/nodes/edge-1", nil, &n)
	if st := admin.do("GET", "/v1/apps/collector", nil, nil); st != 404 || n.State != api.NodeRevoked {
		t.Fatalf("after delete and revoke: app status %d, node %s", st, n.State)
	}
	// A node that never joined (its token revoked above) is forgotten.
	b.Do("open edge-2", chromedp.Navigate(console+"#/nodes/edge-2"), chromedp.WaitVisible("#node-delete"))
	b.Do("delete edge-2", chromedp.Click("#node-delete"), chromedp.Click("#node-delete"))
	b.WaitFor("the nodes without edge-2", `location.hash === "#/nodes" && !!document.querySelector('[data-status="edge-1"]') && !document.querySelector('[data-status="edge-2"]')`, wait)
	if st := admin.do("GET", "/v1/nodes/edge-2", nil, nil); st != 404 {
		t.Fatalf("edge-2 after its deletion: %d", st)
	}
	b.Do("log out", chromedp.Click("#logout"), chromedp.WaitVisible("#login-token"))
}
