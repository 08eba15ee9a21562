// The fleet's pages (skybridge-cloud): an overview with charts, nodes and
// a node's detail, apps (deploy or update one by label selector), devices
// and their shadows, activation tokens, events. Everything shown comes
// from the cloud's REST API (/v1/...) and is put in the page as text.
"use strict";

// --- small helpers -------------------------------------------------------

function badge(text, cls) { return el("span", { class: "badge" + (cls ? " " + cls : "") }, text); }

// nodeBadge says whether a node is online, offline, pending or revoked.
function nodeBadge(n) {
  if (n.state === "pending") return badge("pending", "wait");
  if (n.state === "revoked") return badge("revoked", "off");
  return n.online ? badge("online", "on") : badge("offline", "off");
}

function labelChips(labels) {
  const entries = Object.entries(labels || {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (entries.length === 0) return el("span", { class: "muted" }, "no labels");
  return el("span", { class: "labels" }, ...entries.map(([k, v]) => el("code", { class: "label" }, k + "=" + v)));
}

function applied(n) { return n.status ? n.status.applied_version : 0; }

// versionCell shows applied / desired, and whether the node got there.
function versionCell(n) {
  const a = applied(n);
  return el("span", { "data-version": n.name }, `${a} / ${n.desired_version} `,
    n.state !== "active" ? null : a === n.desired_version ? badge("applied", "on") : badge("updating", "wait"));
}

// parseLabels reads "k=v, k2=v2" (or one per line) into an object.
function parseLabels(text) {
  const out = {};
  for (const part of text.split(/[,\n]/).map((s) => s.trim()).filter(Boolean)) {
    const i = part.indexOf("=");
    if (i <= 0) throw new Error(`labels: "${part}" is not key=value`);
    out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

function formatLabels(labels) {
  return Object.entries(labels || {}).sort().map(([k, v]) => k + "=" + v).join(", ");
}

function until(iso) {
  if (!iso) return "";
  const s = (Date.parse(iso) - Date.now()) / 1000;
  if (s <= 0) return "expired";
  if (s < 3600) return "in " + Math.round(s / 60) + " min";
  if (s < 86400 * 2) return "in " + Math.round(s / 3600) + " h";
  return "in " + Math.round(s / 86400) + " d";
}

function formatBytes(v) {
  if (!v) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (v >= 10 || i === 0 ? Math.round(v) : v.toFixed(1)) + " " + units[i];
}

function when(iso) {
  if (!iso || iso.startsWith("0001-")) return el("span", { class: "muted" }, "never");
  return el("span", { title: iso }, ago(iso));
}

// usage draws a share as a meter with its figures next to it.
function usage(used, total, text) {
  if (!total) return el("span", { class: "muted" }, "unknown");
  return el("span", { class: "usage" }, el("meter", { min: 0, max: 1, low: 0.7, high: 0.9, optimum: 0, value: Math.min(1, used / total) }), " ", text);
}

function appStateBadge(state) {
  const cls = { running: "on", starting: "wait", waiting: "wait", backoff: "off", failed: "off", exited: "off" }[state];
  return badge(state || "unknown", cls);
}

// fieldErrors puts the lines of an API error under the fields they name
// (a line "selector: ...", "artifact.sha256: ..." or "env[0]: ..." goes
// under the field called selector, artifact or env); the whole message
// stays in the form's error line.
function fieldErrors(form, err, box) {
  const slots = [...form.querySelectorAll(".field-error")];
  slots.forEach((e) => { e.textContent = ""; });
  box.textContent = err ? err.message : "";
  if (!err) return;
  for (const line of err.message.split("\n")) {
    let best = null;
    for (const slot of slots) {
      const f = slot.dataset.errorFor;
      if ([":", ".", "["].some((c) => line.startsWith(f + c)) && (!best || f.length > best.dataset.errorFor.length)) best = slot;
    }
    if (best) best.textContent = best.textContent ? best.textContent + "; " + line : line;
  }
}

// refresh loads a page part now (an error shows on the page) and then
// every ms while box is on the page.
async function refresh(box, ms, load) {
  await load();
  if (!document.body.contains(box)) return;
  App.timers.push(setInterval(() => {
    if (document.body.contains(box)) load().catch((e) => App.toast(e.message));
  }, ms));
}

// appOnNode returns the state of an app on a node as the node reported it
// ("updating" while it runs another revision), and its status.
function appOnNode(app, node) {
  const st = node && node.status && (node.status.apps || []).find((x) => x.name === app.name);
  if (!st) return { state: "waiting", st: null };
  return { state: st.revision !== app.revision ? "updating" : st.state, st };
}

// confirmFirst makes a dangerous button ask for a second click within 5 s:
// true when this click only armed it.
function confirmFirst(button, question) {
  if (button.dataset.armed) return false;
  const label = button.textContent;
  button.dataset.armed = "1";
  button.textContent = question;
  setTimeout(() => { delete button.dataset.armed; button.textContent = label; }, 5000);
  return true;
}

function field(label, input, name) {
  return el("label", {}, label, input, el("div", { class: "field-error", "data-error-for": name }));
}

// onlineHistory rebuilds the number of online nodes over the last hour
// from the events: going back from now, a node.online event means one
// fewer before it, a node.offline one more.
function onlineHistory(nodes, events, now) {
  const s = new Series(["online"], 4000);
  const from = now - 3600 * 1000;
  let count = nodes.filter((n) => n.online).length;
  const points = [[now, count]];
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i];
    const t = Date.parse(e.at);
    if (t < from) break;
    if (e.type !== "node.online" && e.type !== "node.offline") continue;
    points.push([t, count]);
    count = Math.max(0, count + (e.type === "node.online" ? -1 : 1));
    points.push([t, count]);
  }
  points.push([from, count]);
  points.reverse().forEach(([t, v]) => s.push(t, [v]));
  return s;
}

// eventRate counts events per minute over the last hour: all of them, and
// those the nodes sent (app exits, failed health checks).
function eventRate(events, now) {
  const s = new Series(["all", "from nodes"], 120);
  const start = Math.floor(now / 60000) * 60000 - 59 * 60000;
  const all = new Array(60).fill(0), edge = new Array(60).fill(0);
  for (const e of events) {
    const i = Math.floor((Date.parse(e.at) - start) / 60000);
    if (i < 0 || i >= 60) continue;
    all[i]++;
    if (e.type.startsWith("edge.")) edge[i]++;
  }
  for (let i = 0; i < 60; i++) s.push(start + i * 60000, [all[i], edge[i]]);
  return s;
}

function chartCard(title, id, names) {
  return el("div", { class: "card" }, el("h3", {}, title),
    el("div", { class: "legend" }, ...names.map((n, i) => el("span", {}, el("i", { class: "c" + i }), n))),
    el("canvas", { class: "chart", id }));
}

// --- overview ------------------------------------------------------------

async function renderFleetOverview(view) {
  view.append(
    el("h2", {}, "Fleet"),
    el("div", { class: "stats" },
      stat("Nodes", "fl-nodes"), stat("Online", "fl-online"), stat("Offline", "fl-offline"), stat("Pending", "fl-pending"),
      stat("Applied their version", "fl-applied"), stat("Apps", "fl-apps"), stat("Devices", "fl-devices"), stat("Events, last hour", "fl-events")),
    el("div", { class: "charts" },
      chartCard("Nodes online, last hour", "chart-online", ["online"]),
      chartCard("Events per minute, last hour", "chart-events", ["all", "from nodes"])),
    el("h3", {}, "Latest events"), el("div", { id: "fl-latest" }));
  await refresh(view.lastChild, 5000, async () => {
    const [nodes, apps, devices, events] = await Promise.all([
      App.api("GET", "/v1/nodes"), App.api("GET", "/v1/apps"), App.api("GET", "/v1/devices"), App.api("GET", "/v1/events?last=2000")]);
    const now = Date.now();
    const active = (nodes || []).filter((n) => n.state === "active");
    setText("fl-nodes", (nodes || []).length);
    setText("fl-online", active.filter((n) => n.online).length);
    setText("fl-offline", active.filter((n) => !n.online).length);
    setText("fl-pending", (nodes || []).filter((n) => n.state === "pending").length);
    setText("fl-applied", `${active.filter((n) => applied(n) === n.desired_version).length} of ${active.length}`);
    setText("fl-apps", (apps || []).length);
    setText("fl-devices", (devices || []).length);
    setText("fl-events", (events || []).filter((e) => now - Date.parse(e.at) < 3600 * 1000).length);
    const co = document.getElementById("chart-online");
    if (co) drawChart(co, onlineHistory(nodes || [], events || [], now), "", { integer: true });
    const ce = document.getElementById("chart-events");
    if (ce) drawChart(ce, eventRate(events || [], now), "", { integer: true });
    const box = document.getElementById("fl-latest");
    if (box) box.replaceChildren(eventsTable((events || []).slice(-10).reverse()));
  });
}

// --- nodes ---------------------------------------------------------------

async function renderNodes(view) {
  view.append(el("h2", {}, "Nodes"),
    el("p", { class: "muted" }, "New nodes join with an activation token (", el("a", { href: "#/tokens" }, "Tokens"), ")."),
    el("div", { id: "nodes" }));
  await refresh(view.lastChild, 3000, async () => {
    const nodes = (await App.api("GET", "/v1/nodes")) || [];
    const box = document.getElementById("nodes");
    if (!box) return;
    box.replaceChildren(table([
      { label: "Node", get: (n) => el("a", { href: "#/nodes/" + enc(n.name) }, n.name) },
      { label: "Status", get: (n) => el("span", { "data-status": n.name }, nodeBadge(n)) },
      { label: "Labels", get: (n) => labelChips(n.labels) },
      { label: "Agent", get: (n) => (n.status && n.status.info.agent) || el("span", { class: "muted" }, "–") },
      { label: "OS / arch", get: (n) => (n.status && n.status.info.os ? `${n.status.info.os}/${n.status.info.arch}` : "") },
      { label: "Applied / desired", get: versionCell },
      { label: "Apps", num: true, get: (n) => (n.status && n.status.apps ? n.status.apps.length : 0) },
      { label: "CPU", get: (n) => (n.status && n.status.usage.mem_total_bytes ? usage(n.status.usage.cpu_percent || 0, 100, Math.round(n.status.usage.cpu_percent || 0) + " %") : "") },
      { label: "Memory", get: (n) => (n.status ? usage(n.status.usage.mem_used_bytes, n.status.usage.mem_total_bytes, Math.round(100 * n.status.usage.mem_used_bytes / (n.status.usage.mem_total_bytes || 1)) + " %") : "") },
      { label: "Last report", get: (n) => when(n.last_seen) },
    ], nodes, "No node yet: create an activation token."));
  });
}

async function renderNode(view, name) {
  const box = el("div", { id: "node" });
  view.append(el("h2", {}, el("a", { href: "#/nodes" }, "Nodes"), " / ", name), box);
  let editing = false; // the labels form is not redrawn under the user's hands
  const labelsInput = el("input", { id: "node-labels", placeholder: "key=value, key=value" });
  const labelsError = el("p", { class: "error", id: "node-labels-error" });
  const labelsForm = el("form", { class: "toolbar", id: "node-labels-form" }, labelsInput,
    el("button", { type: "submit", id: "node-labels-save" }, "Set labels"), labelsError);
  labelsInput.addEventListener("focus", () => { editing = true; });
  labelsForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await App.api("PUT", `/v1/nodes/${enc(name)}/labels`, { labels: parseLabels(labelsInput.value) });
      labelsError.textContent = "";
      editing = false;
      App.toast("labels of " + name + " set");
      load();
    } catch (e) { labelsError.textContent = e.message; }
  });
  const revoke = el("button", { class: "danger", id: "node-revoke" }, "Revoke");
  revoke.addEventListener("click", async () => {
    if (confirmFirst(revoke, "Click again to revoke " + name)) return;
    try {
      await App.api("POST", `/v1/nodes/${enc(name)}/revoke`);
      App.toast(name + " revoked");
      load();
    } catch (e) { App.toast(e.message); }
  });
  const remove = el("button", { class: "danger", id: "node-delete" }, "Delete");
  remove.addEventListener("click", async () => {
    if (confirmFirst(remove, "Click again to forget " + name)) return;
    try {
      await App.api("DELETE", "/v1/nodes/" + enc(name));
      App.toast(name + " deleted");
      location.hash = "#/nodes";
    } catch (e) { App.toast(e.message); }
  });
  const load = async () => {
    const [n, desired, devices, events] = await Promise.all([
      App.api("GET", `/v1/nodes/${enc(name)}`), App.api("GET", `/v1/nodes/${enc(name)}/desired`).catch(() => null),
      App.api("GET", "/v1/devices"), App.api("GET", "/v1/events?last=2000")]);
    if (!document.body.contains(box)) return;
    if (!editing) labelsInput.value = formatLabels(n.labels);
    const st = n.status || { info: {}, usage: {}, outbox: {}, apps: [] };
    const info = st.info || {}, u = st.usage || {}, ob = st.outbox || {};
    const running = new Map((st.apps || []).map((a) => [a.name, a]));
    const apps = ((desired && desired.apps) || []).map((a) => ({ spec: a, status: running.get(a.name) }));
    for (const a of st.apps || []) if (!apps.some((x) => x.spec.name === a.name)) apps.push({ spec: null, status: a });
    box.replaceChildren(
      el("div", { class: "card" },
        el("div", { class: "kv", id: "node-facts" },
          el("div", {}, "Status"), el("div", { id: "node-status" }, nodeBadge(n), n.online ? "" : " last heard " + (n.last_seen ? ago(n.last_seen) : "never")),
          el("div", {}, "Labels"), el("div", { id: "node-label-chips" }, labelChips(n.labels)),
          el("div", {}, "Applied / desired version"), el("div", {}, versionCell(n)),
          el("div", {}, "Last report"), el("div", {}, when(n.last_seen)),
          el("div", {}, "Host"), el("div", {}, [info.hostname, info.os && `${info.os}/${info.arch}`, info.kernel, info.cpus && info.cpus + " CPUs"].filter(Boolean).join(" · ")),
          el("div", {}, "Agent"), el("div", {}, info.agent || ""),
          el("div", {}, "Agent started"), el("div", {}, when(st.boot)),
          el("div", {}, "CPU"), el("div", {}, n.status ? usage(u.cpu_percent || 0, 100, `${(u.cpu_percent || 0).toFixed(1)} %`) : el("span", { class: "muted" }, "unknown")),
          el("div", {}, "Memory"), el("div", {}, usage(u.mem_used_bytes, u.mem_total_bytes, `${formatBytes(u.mem_used_bytes)} of ${formatBytes(u.mem_total_bytes)}`)),
          el("div", {}, "Disk"), el("div", {}, usage(u.disk_used_bytes, u.disk_total_bytes, `${formatBytes(u.disk_used_bytes)} of ${formatBytes(u.disk_total_bytes)}`)),
          el("div", {}, "Certificate"), el("div", {}, n.cert_serial ? `serial ${n.cert_serial}, expires ${until(n.cert_expires)}` : "none"),
          el("div", {}, "Outbox on the node"), el("div", {}, `${ob.pending || 0} pending (${formatBytes(ob.pending_bytes)}), ${ob.appended || 0} appended, ${ob.sent || 0} sent, ${ob.resent || 0} resent, dropped ${ob.dropped_full || 0} full / ${ob.dropped_age || 0} old`),
          el("div", {}, "Applied by the cloud"), el("div", {}, `up to ${n.outbox.applied} (store ${n.outbox.epoch}), ${n.outbox.gaps} lost in gaps, ${n.outbox.duplicates} duplicates ignored`)),
        el("div", { class: "toolbar" }, n.state === "active" ? revoke : remove)),
      el("h3", {}, "Labels"), labelsForm,
      el("h3", {}, "Apps"),
      table([
        { label: "App", get: (a) => el("a", { href: "#/apps/" + enc((a.spec || a.status).name) }, (a.spec || a.status).name) },
        { label: "State", get: (a) => el("span", { "data-app-state": (a.spec || a.status).name }, a.status ? appStateBadge(a.status.state) : badge("not reported", "wait")) },
        { label: "Revision running / desired", get: (a) => `${a.status ? a.status.revision : "–"} / ${a.spec ? a.spec.revision : "removed"}` },
        { label: "Restarts", num: true, get: (a) => (a.status ? a.status.restarts : "") },
        { label: "Last exit", num: true, get: (a) => (a.status && a.status.last_exit ? a.status.last_exit : "") },
        { label: "Healthy", get: (a) => (a.status && a.status.healthy !== undefined ? (a.status.healthy ? "yes" : "no") : "") },
        { label: "PID", num: true, get: (a) => (a.status && a.status.pid ? a.status.pid : "") },
        { label: "Memory", num: true, get: (a) => (a.status && a.status.rss_bytes ? formatBytes(a.status.rss_bytes) : "") },
      ], apps, "No app is placed on this node."),
      el("h3", {}, "Devices"),
      table([
        { label: "Device", get: (d) => el("a", { href: "#/devices/" + enc(d.name) }, d.name) },
        { label: "Model", get: (d) => d.model },
      ], (devices || []).filter((d) => d.node === name), "No device is bound to this node."),
      el("h3", {}, "Events"),
      eventsTable((events || []).filter((e) => e.node === name).slice(-20).reverse()));
  };
  await refresh(box, 3000, load);
}

// --- apps ----------------------------------------------------------------

async function renderApps(view) {
  const list = el("div", { id: "apps" });
  const form = appForm();
  view.append(el("h2", {}, "Apps"), list, form.card);
  const load = async () => {
    const [apps, nodes] = await Promise.all([App.api("GET", "/v1/apps"), App.api("GET", "/v1/nodes")]);
    const placed = await Promise.all((apps || []).map((a) => App.api("GET", `/v1/apps/${enc(a.name)}/nodes`).catch(() => [])));
    const byName = new Map((nodes || []).map((n) => [n.name, n]));
    if (!document.body.contains(list)) return;
    list.replaceChildren(table([
      { label: "App", get: (a) => el("a", { href: "#/apps/" + enc(a.name) }, a.name) },
      { label: "Revision", num: true, get: (a) => a.revision },
      { label: "Selector", get: (a) => el("code", {}, a.selector || "(every node)") },
      { label: "Artifact", get: (a) => el("span", { title: a.artifact.sha256 }, `${a.artifact.name || ""} ${a.artifact.sha256.slice(0, 12)}`) },
      { label: "Runs on", get: (a) => el("span", { "data-placed": a.name }, ...placementChips(a, placed[apps.indexOf(a)] || [], byName)) },
      { label: "", get: (a) => el("button", { class: "secondary", "data-edit": a.name, onclick: () => form.edit(a) }, "Edit") },
    ], apps || [], "No app yet: deploy one below."));
  };
  form.onSaved = load;
  await refresh(list, 3000, load);
}

// placementChips lists the nodes an app is placed on with its state there.
function placementChips(app, nodeNames, byName) {
  if (nodeNames.length === 0) return [el("span", { class: "muted" }, "no node matches")];
  return nodeNames.map((name) => {
    const { state } = appOnNode(app, byName.get(name));
    return el("a", { href: "#/nodes/" + enc(name), class: "chip", "data-node": name, "data-state": state }, name + " ", appStateBadge(state));
  });
}

// appForm is the deploy-or-update form: a new app, or an existing one
// (Edit) whose other fields (mounts, health, limits) are kept.
function appForm() {
  const name = el("input", { id: "app-name", placeholder: "collector" });
  const selector = el("input", { id: "app-selector", placeholder: "site=plant-2,role in (gateway,server)" });
  const artifact = el("select", { id: "app-artifact" });
  const upload = el("input", { type: "file", id: "artifact-file" });
  const uploadButton = el("button", { type: "button", class: "secondary", id: "artifact-upload" }, "Upload");
  const args = el("textarea", { id: "app-args", rows: 2, placeholder: "one argument per line" });
  const envText = el("textarea", { id: "app-env", rows: 2, placeholder: "NAME=value, one per line" });
  const restart = el("select", { id: "app-restart" }, ...["always", "on-failure", "never"].map((p) => el("option", { value: p }, p)));
  const error = el("p", { class: "error", id: "app-error" });
  const title = el("h3", {}, "Deploy an app");
  let base = null; // the app being edited
  const form = el("form", { id: "app-form" },
    el("div", { class: "form-grid" },
      field("Name", name, "name"),
      field("Node selector (labels)", selector, "selector"),
      field("Artifact", artifact, "artifact"),
      el("label", {}, "Upload an executable", el("span", { class: "toolbar" }, upload, uploadButton)),
      field("Arguments", args, "args"),
      field("Environment", envText, "env"),
      field("Restart", restart, "restart")),
    el("div", { class: "toolbar" }, el("button", { type: "submit", id: "app-deploy" }, "Deploy"),
      el("button", { type: "button", class: "secondary", id: "app-new", onclick: () => f.edit(null) }, "New app"), error));
  const f = {
    card: el("div", { class: "card" }, title, el("p", { class: "muted" },
      "The app runs on every node whose labels match the selector; a change makes a new revision that the nodes pick up."), form),
    onSaved: null,
    async artifacts() {
      const list = (await App.api("GET", "/v1/artifacts")) || [];
      const keep = artifact.value;
      artifact.replaceChildren(el("option", { value: "" }, list.length ? "choose…" : "upload one first"),
        ...list.map((a) => el("option", { value: a.sha256 }, `${a.name || "(no name)"} · ${a.sha256.slice(0, 12)} · ${formatBytes(a.size)}`)));
      artifact.value = keep;
    },
    edit(app) {
      base = app;
      title.textContent = app ? "Update " + app.name : "Deploy an app";
      name.value = app ? app.name : "";
      name.disabled = !!app;
      selector.value = app ? app.selector : "";
      artifact.value = app ? app.artifact.sha256 : "";
      args.value = app ? (app.args || []).join("\n") : "";
      envText.value = app ? (app.env || []).map((e) => e.name + "=" + e.value).join("\n") : "";
      restart.value = (app && app.restart && app.restart.policy) || "always";
      fieldErrors(form, null, error);
      form.scrollIntoView();
    },
  };
  uploadButton.addEventListener("click", async () => {
    const file = upload.files[0];
    if (!file) { error.textContent = "choose a file to upload"; return; }
    try {
      const a = await App.api("POST", "/v1/artifacts?name=" + enc(file.name), file);
      await f.artifacts();
      artifact.value = a.sha256;
      error.textContent = "";
      App.toast(`uploaded ${file.name} (${formatBytes(a.size)})`);
    } catch (e) { error.textContent = e.message; }
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const app = base ? JSON.parse(JSON.stringify(base)) : {};
    const n = name.value.trim();
    delete app.name;
    delete app.revision;
    app.selector = selector.value.trim();
    app.artifact = { sha256: artifact.value };
    app.args = args.value.split("\n").map((s) => s.trim()).filter(Boolean);
    try {
      app.env = envText.value.split("\n").map((s) => s.trim()).filter(Boolean).map((line, i) => {
        const j = line.indexOf("=");
        if (j <= 0) throw new Error(`env[${i}]: "${line}" is not NAME=value`);
        return { name: line.slice(0, j), value: line.slice(j + 1) };
      });
      if (!n) throw new Error("name: required");
      if (!base && (await App.api("GET", "/v1/apps/" + enc(n)).catch(() => null))) {
        // A PUT would replace it whole, dropping its mounts, health check and limits.
        throw new Error(`name: an app called ${n} exists: update it with its Edit button`);
      }
      if (!app.artifact.sha256) throw new Error("artifact: choose or upload one");
      app.restart = Object.assign({}, app.restart, { policy: restart.value });
      const saved = await App.api("PUT", "/v1/apps/" + enc(n), app);
      fieldErrors(form, null, error);
      App.toast(`${saved.name} revision ${saved.revision} deployed`);
      f.edit(saved);
      if (f.onSaved) f.onSaved();
    } catch (e) { fieldErrors(form, e, error); }
  });
  f.artifacts();
  return f;
}

async function renderApp(view, name) {
  const box = el("div", { id: "app" });
  const del = el("button", { class: "danger", id: "app-delete" }, "Delete");
  del.addEventListener("click", async () => {
    if (confirmFirst(del, "Click again to remove " + name + " from every node")) return;
    try {
      await App.api("DELETE", "/v1/apps/" + enc(name));
      App.toast(name + " deleted");
      location.hash = "#/apps";
    } catch (e) { App.toast(e.message); }
  });
  const spec = el("div", { class: "card", id: "app-spec" });
  const where = el("div", { id: "app-where" });
  box.append(spec, el("h3", {}, "Where it runs"), where);
  view.append(el("h2", {}, el("a", { href: "#/apps" }, "Apps"), " / ", name), box);
  let shown = 0; // the revision on screen: the specification is redrawn only when it changes
  await refresh(box, 3000, async () => {
    const [a, placed, nodes] = await Promise.all([App.api("GET", "/v1/apps/" + enc(name)),
      App.api("GET", `/v1/apps/${enc(name)}/nodes`), App.api("GET", "/v1/nodes")]);
    const byName = new Map((nodes || []).map((n) => [n.name, n]));
    if (!document.body.contains(box)) return;
    if (a.revision !== shown) {
      shown = a.revision;
      spec.replaceChildren(
        el("div", { class: "kv" },
          el("div", {}, "Revision"), el("div", {}, a.revision),
          el("div", {}, "Selector"), el("div", {}, el("code", {}, a.selector || "(every node)")),
          el("div", {}, "Artifact"), el("div", {}, `${a.artifact.name || ""} ${a.artifact.sha256} (${formatBytes(a.artifact.size)})`)),
        el("h3", {}, "Specification"), el("pre", { class: "spec" }, JSON.stringify(a, null, 2)),
        el("div", { class: "toolbar" }, del));
    }
    where.replaceChildren(table([
      { label: "Node", get: (nn) => el("a", { href: "#/nodes/" + enc(nn) }, nn) },
      { label: "Node status", get: (nn) => (byName.get(nn) ? nodeBadge(byName.get(nn)) : "") },
      { label: "App", get: (nn) => el("span", { "data-app-on": nn }, appStateBadge(appOnNode(a, byName.get(nn)).state)) },
      { label: "Revision running", num: true, get: (nn) => { const { st } = appOnNode(a, byName.get(nn)); return st ? st.revision : "–"; } },
      { label: "Restarts", num: true, get: (nn) => { const { st } = appOnNode(a, byName.get(nn)); return st ? st.restarts : ""; } },
    ], placed || [], "No node matches its selector."));
  });
}

// --- devices -------------------------------------------------------------

async function renderDevices(view) {
  view.append(el("h2", {}, "Devices"), el("div", { id: "devices" }));
  await refresh(view.lastChild, 5000, async () => {
    const devices = (await App.api("GET", "/v1/devices")) || [];
    const shadows = await Promise.all(devices.slice(0, 200).map((d) => App.api("GET", `/v1/devices/${enc(d.name)}/shadow`).catch(() => null)));
    const box = document.getElementById("devices");
    if (!box) return;
    box.replaceChildren(table([
      { label: "Device", get: (d) => el("a", { href: "#/devices/" + enc(d.name) }, d.name) },
      { label: "Model", get: (d) => d.model },
      { label: "Node", get: (d) => el("a", { href: "#/nodes/" + enc(d.node) }, d.node) },
      { label: "Shadow", get: (d) => {
        const sh = shadows[devices.indexOf(d)];
        if (!sh) return "";
        const n = Object.keys(sh.delta || {}).length;
        return el("span", { "data-shadow": d.name }, n ? badge(n + " pending", "wait") : badge("in sync", "on"));
      } },
      { label: "Last report", get: (d) => { const sh = shadows[devices.indexOf(d)]; return sh ? when(sh.reported_at) : ""; } },
    ], devices, "No device yet (skybridge-cloud ctl device, or PUT /v1/devices/NAME)."));
  });
}

// propInput makes an input for a property's desired value.
function propInput(p) {
  const id = "desired-" + p.name;
  if (p.type === "bool") return el("select", { id, name: p.name, "data-type": p.type }, el("option", { value: "" }, "(unchanged)"), el("option", { value: "true" }, "true"), el("option", { value: "false" }, "false"));
  return el("input", { id, name: p.name, "data-type": p.type, placeholder: "(not set)" });
}

// propValue reads an input: undefined when left empty. Numbers that do not
// parse are sent as typed, for the API to refuse with the property named.
function propValue(input) {
  const v = input.value.trim();
  if (v === "") return undefined;
  switch (input.dataset.type) {
    case "bool": return v === "true";
    case "int": case "float": return v !== "" && !isNaN(Number(v)) ? Number(v) : v;
    default: return v;
  }
}

function jsonText(v) { return v === undefined ? "" : JSON.stringify(v); }

async function renderDevice(view, name) {
  const devices = (await App.api("GET", "/v1/devices")) || [];
  const d = devices.find((x) => x.name === name);
  if (!d) throw new Error(`device "${name}" not found`);
  const models = (await App.api("GET", "/v1/devicemodels")) || [];
  const model = models.find((m) => m.name === d.model) || { properties: [] };
  const shadowBox = el("div", { id: "shadow" });
  const error = el("p", { class: "error", id: "shadow-error" });
  const writable = model.properties.filter((p) => p.writable);
  const form = el("form", { id: "shadow-form", class: "card" },
    el("h3", {}, "Set desired values"),
    el("div", { class: "form-grid" }, ...writable.map((p) => field(`${p.name} (${p.type}${p.unit ? ", " + p.unit : ""})`, propInput(p), p.name))),
    el("div", { class: "toolbar" }, el("button", { type: "submit", id: "shadow-save" }, "Save"), error));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = {};
    for (const input of form.querySelectorAll("input, select")) {
      const v = propValue(input);
      if (v !== undefined) body[input.name] = v;
    }
    if (Object.keys(body).length === 0) { error.textContent = "nothing to change"; return; }
    try {
      const sh = await App.api("PUT", `/v1/devices/${enc(name)}/shadow/desired`, body);
      fieldErrors(form, null, error);
      form.querySelectorAll("input").forEach((i) => { i.value = ""; });
      form.querySelectorAll("select").forEach((i) => { i.value = ""; });
      App.toast(`desired values of ${name} saved (version ${sh.desired_version})`);
      load();
    } catch (e) { fieldErrors(form, e, error); }
  });
  const load = async () => {
    const sh = await App.api("GET", `/v1/devices/${enc(name)}/shadow`);
    if (!document.body.contains(shadowBox)) return;
    for (const input of form.querySelectorAll("input")) {
      const v = (sh.desired || {})[input.name];
      input.placeholder = v === undefined ? "(not set)" : "now " + JSON.stringify(v);
    }
    const names = new Set([...model.properties.map((p) => p.name), ...Object.keys(sh.desired || {}), ...Object.keys(sh.reported || {})]);
    const props = [...names].map((n) => Object.assign({ name: n }, model.properties.find((p) => p.name === n) || {}));
    shadowBox.replaceChildren(
      el("p", { class: "muted" }, `desired version ${sh.desired_version}, reported version ${sh.reported_version}, last report `, when(sh.reported_at)),
      table([
        { label: "Property", get: (p) => p.name },
        { label: "Type", get: (p) => (p.type || "") + (p.unit ? " (" + p.unit + ")" : "") + (p.writable ? ", writable" : "") },
        { label: "Desired", get: (p) => el("span", { "data-desired": p.name }, jsonText((sh.desired || {})[p.name])) },
        { label: "Reported", get: (p) => el("span", { "data-reported": p.name }, jsonText((sh.reported || {})[p.name])) },
        { label: "Delta", get: (p) => (p.name in (sh.delta || {}) ? el("span", { "data-delta": p.name }, badge("pending", "wait")) : "") },
      ], props, "The model has no properties."));
  };
  view.append(el("h2", {}, el("a", { href: "#/devices" }, "Devices"), " / ", name),
    el("p", { class: "muted" }, "Model ", el("code", {}, d.model), ", bound to node ", el("a", { href: "#/nodes/" + enc(d.node) }, d.node),
      ". Desired values reach the device through its node; the delta is what it has not reported yet."),
    shadowBox, writable.length ? form : el("p", { class: "muted" }, "No writable property."));
  await refresh(shadowBox, 3000, load);
}

// --- activation tokens ---------------------------------------------------

async function renderTokens(view) {
  const node = el("input", { id: "token-node", placeholder: "edge-17" });
  const labels = el("input", { id: "token-labels", placeholder: "site=plant-2, role=gateway" });
  const ttl = el("input", { id: "token-ttl", placeholder: "24h" });
  const error = el("p", { class: "error", id: "token-error" });
  const made = el("div", { id: "token-made" });
  const list = el("div", { id: "tokens" });
  const form = el("form", { id: "token-form", class: "card" },
    el("h3", {}, "New activation token"),
    el("div", { class: "form-grid" }, field("Node name", node, "node"), field("Labels", labels, "labels"), field("Valid for", ttl, "ttl")),
    el("div", { class: "toolbar" }, el("button", { type: "submit", id: "token-create" }, "Create"), error));
  const load = async () => {
    const tokens = (await App.api("GET", "/v1/tokens")) || [];
    if (!document.body.contains(list)) return;
    list.replaceChildren(table([
      { label: "Token id", get: (t) => el("code", {}, t.id) },
      { label: "Node", get: (t) => el("a", { href: "#/nodes/" + enc(t.node) }, t.node) },
      { label: "Labels", get: (t) => labelChips(t.labels) },
      { label: "Expires", get: (t) => el("span", { title: t.expires }, until(t.expires)) },
      { label: "", get: (t) => el("button", { class: "secondary", "data-revoke": t.id, onclick: async () => {
        try {
          await App.api("DELETE", "/v1/tokens/" + enc(t.id));
          App.toast("token " + t.id + " revoked");
          load();
        } catch (e) { App.toast(e.message); }
      } }, "Revoke") },
    ], tokens, "No outstanding token."));
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      // No labels typed: none sent, so a known node keeps its own.
      const body = { node: node.value.trim() };
      if (labels.value.trim()) body.labels = parseLabels(labels.value);
      if (ttl.value.trim()) body.ttl = ttl.value.trim();
      const r = await App.api("POST", "/v1/tokens", body);
      fieldErrors(form, null, error);
      made.replaceChildren(el("div", { class: "card" },
        el("h3", {}, "Join string for " + r.node),
        el("p", { class: "muted" }, "Shown once: it holds the one-time secret. On the node: skybridge-edge run --data DIR --join <this>"),
        el("pre", { class: "join", id: "token-join" }, r.join)));
      node.value = labels.value = ttl.value = "";
      load();
    } catch (e) {
      // The API's messages name the node or a label, not the field.
      const msg = e.message.replace(/^name "/, "node: name \"").replace(/^label/, "labels: label");
      fieldErrors(form, new Error(msg), error);
    }
  });
  view.append(el("h2", {}, "Activation tokens"), form, made, el("h3", {}, "Outstanding"), list);
  await refresh(list, 5000, load);
}

// --- events --------------------------------------------------------------

function eventsTable(events) {
  return table([
    { label: "#", num: true, get: (e) => e.seq },
    { label: "When", get: (e) => el("span", { title: e.at }, ago(e.at)) },
    { label: "Type", get: (e) => el("code", {}, e.type) },
    { label: "Node", get: (e) => (e.node ? el("a", { href: "#/nodes/" + enc(e.node) }, e.node) : "") },
    { label: "App / device", get: (e) => (e.app ? el("a", { href: "#/apps/" + enc(e.app) }, e.app) : e.device ? el("a", { href: "#/devices/" + enc(e.device) }, e.device) : "") },
    { label: "Message", get: (e) => e.message || "" },
  ], events, "No event.");
}

async function renderEvents(view) {
  const kinds = ["", "node.", "token.", "app.", "desired.", "device.", "shadow.", "edge.", "outbox.", "record."];
  const type = el("select", { id: "events-type" }, ...kinds.map((k) => el("option", { value: k }, k ? k + "*" : "all types")));
  const node = el("input", { id: "events-node", placeholder: "node" });
  const text = el("input", { id: "events-text", placeholder: "text contains…" });
  const box = el("div", { id: "events" });
  let events = [];
  const draw = () => {
    const t = type.value, n = node.value.trim(), q = text.value.trim().toLowerCase();
    const shown = events.filter((e) => (!t || e.type.startsWith(t)) && (!n || e.node === n) &&
      (!q || [e.type, e.node, e.app, e.device, e.message].some((x) => x && x.toLowerCase().includes(q))));
    box.replaceChildren(el("p", { class: "muted", id: "events-count" }, `${shown.length} of the last ${events.length} events`),
      eventsTable(shown.slice(-500).reverse()));
    const c = document.getElementById("chart-events-page");
    if (c) drawChart(c, eventRate(shown, Date.now()), "", { integer: true });
  };
  for (const i of [type, node, text]) i.addEventListener("input", draw);
  view.append(el("h2", {}, "Events"),
    el("div", { class: "toolbar" }, type, node, text),
    chartCard("Events per minute, last hour (as filtered)", "chart-events-page", ["all", "from nodes"]),
    box);
  await refresh(box, 5000, async () => {
    events = (await App.api("GET", "/v1/events?last=2000")) || [];
    if (document.body.contains(box)) draw();
  });
}

App.section("fleet", {
  nav: [
    { href: "#/fleet", label: "Overview" }, { href: "#/nodes", label: "Nodes" }, { href: "#/apps", label: "Apps" },
    { href: "#/devices", label: "Devices" }, { href: "#/tokens", label: "Tokens" }, { href: "#/events", label: "Events" },
  ],
  routes: [
    { re: /^\/fleet$/, render: renderFleetOverview },
    { re: /^\/nodes$/, render: renderNodes },
    { re: /^\/nodes\/([^/?]+)$/, render: renderNode },
    { re: /^\/apps$/, render: renderApps },
    { re: /^\/apps\/([^/?]+)$/, render: renderApp },
    { re: /^\/devices$/, render: renderDevices },
    { re: /^\/devices\/([^/?]+)$/, render: renderDevice },
    { re: /^\/tokens$/, render: renderTokens },
    { re: /^\/events$/, render: renderEvents },
  ],
});
