// The broker's pages: overview with live rates, tenants, a tenant's
// sessions (search, kick), subscriptions, retained messages and settings;
// and, for a node in a cluster, the cluster's members.
"use strict";

// rates turns successive counter readings into per-second rates.
class Rates {
  constructor() { this.prev = new Map(); }
  // rate returns the per-second increase of counter key since the last call.
  rate(key, value, now) {
    const p = this.prev.get(key);
    this.prev.set(key, { value, now });
    if (!p || now <= p.now || value < p.value) return 0;
    return (value - p.value) * 1000 / (now - p.now);
  }
}

const brokerRates = new Rates();
const brokerSeries = {
  messages: new Series(["in", "out"]),
  connections: new Series(["connections", "sessions"]),
};

async function renderOverview(view) {
  view.append(
    el("h2", {}, "Broker"),
    el("div", { class: "stats" },
      stat("Connections", "ov-conn"), stat("Sessions", "ov-sess"), stat("Tenants", "ov-tenants"),
      stat("Messages in/s", "ov-in"), stat("Messages out/s", "ov-out"), stat("Dropped/s", "ov-drop")),
    el("div", { class: "charts" },
      el("div", { class: "card" }, el("h3", {}, "Messages per second"),
        el("div", { class: "legend" }, el("span", {}, el("i", { class: "c0" }), "in"), el("span", {}, el("i", { class: "c1" }), "out")),
        el("canvas", { class: "chart", id: "chart-messages" })),
      el("div", { class: "card" }, el("h3", {}, "Connections"),
        el("div", { class: "legend" }, el("span", {}, el("i", { class: "c0" }), "connections"), el("span", {}, el("i", { class: "c1" }), "sessions")),
        el("canvas", { class: "chart", id: "chart-connections" }))),
    el("p", { class: "muted", id: "ov-version" }));
  App.every(2000, async () => {
    const b = await App.api("GET", "/v1/broker");
    const now = Date.now();
    const rin = brokerRates.rate("in", b.messages_in, now);
    const rout = brokerRates.rate("out", b.messages_out, now);
    const rdrop = brokerRates.rate("drop", b.dropped, now);
    brokerSeries.messages.push(now, [rin, rout]);
    brokerSeries.connections.push(now, [b.connections, b.sessions]);
    setText("ov-conn", b.connections);
    setText("ov-sess", b.sessions);
    setText("ov-tenants", b.tenants);
    setText("ov-in", formatNumber(rin));
    setText("ov-out", formatNumber(rout));
    setText("ov-drop", formatNumber(rdrop));
    setText("ov-version", `${b.version} · up ${Math.round(b.uptime_seconds)} s · ${b.connects_total} connects, ${b.refused} refused`);
    const cm = document.getElementById("chart-messages");
    if (cm) drawChart(cm, brokerSeries.messages);
    const cc = document.getElementById("chart-connections");
    if (cc) drawChart(cc, brokerSeries.connections);
  });
}

const tenantRates = new Rates();

async function renderTenants(view) {
  view.append(el("h2", {}, "Tenants"), el("div", { id: "tenants" }));
  App.every(2000, async () => {
    const list = (await App.api("GET", "/v1/tenants")) || [];
    const now = Date.now();
    const rows = list.map((t) => ({
      ...t,
      in: tenantRates.rate(t.name + "/in", t.messages_in, now),
      out: tenantRates.rate(t.name + "/out", t.messages_out, now),
    }));
    const box = document.getElementById("tenants");
    if (!box) return;
    box.replaceChildren(table([
      { label: "Tenant", get: (t) => el("a", { href: "#/tenants/" + enc(t.name) }, t.name) },
      { label: "Connected", num: true, get: (t) => t.connected },
      { label: "Sessions", num: true, get: (t) => t.sessions },
      { label: "Subscriptions", num: true, get: (t) => t.subscriptions },
      { label: "Retained", num: true, get: (t) => t.retained },
      { label: "In/s", num: true, get: (t) => el("span", { "data-rate-in": t.name }, formatNumber(t.in)) },
      { label: "Out/s", num: true, get: (t) => el("span", { "data-rate-out": t.name }, formatNumber(t.out)) },
      { label: "Dropped", num: true, get: (t) => t.dropped },
    ], rows, "No tenant yet: tenants appear with their first client."));
  });
}

function tenantTabs(tenant, active) {
  const tab = (name, label) => el("a", { href: `#/tenants/${enc(tenant)}/${name}`, class: active === name ? "active" : null }, label);
  return el("div", {},
    el("h2", {}, el("a", { href: "#/tenants" }, "Tenants"), " / ", tenant),
    el("div", { class: "tabs" }, tab("sessions", "Sessions"), tab("subscriptions", "Subscriptions"),
      tab("retained", "Retained"), tab("settings", "Settings")));
}

async function renderSessions(view, tenant) {
  const q = new URLSearchParams(location.hash.split("?")[1] || "").get("q") || "";
  const input = el("input", { id: "session-search", placeholder: "client id contains…", value: q });
  const box = el("div", { id: "sessions" });
  const load = async () => {
    const query = input.value.trim();
    const data = await App.api("GET", `/v1/tenants/${enc(tenant)}/sessions?limit=200&q=${enc(query)}`);
    box.replaceChildren(
      el("p", { class: "muted" }, `${data.total} session(s)${query ? " matching “" + query + "”" : ""}`),
      table([
        { label: "Client id", get: (s) => el("a", { href: `#/tenants/${enc(tenant)}/sessions/${enc(s.client_id)}` }, s.client_id) },
        { label: "User", get: (s) => s.user || "" },
        { label: "State", get: (s) => s.connected ? el("span", { class: "badge on" }, "connected") : el("span", { class: "badge off" }, "offline " + ago(s.offline_since)) },
        { label: "Protocol", get: (s) => s.protocol },
        { label: "Queued", num: true, get: (s) => s.queued },
        { label: "In flight", num: true, get: (s) => s.inflight },
      ], data.sessions || []));
  };
  view.append(tenantTabs(tenant, "sessions"),
    el("form", { class: "toolbar", id: "session-search-form", onsubmit: (ev) => { ev.preventDefault(); load(); } },
      input, el("button", { type: "submit" }, "Search")),
    box);
  await load();
}

async function renderSession(view, tenant, client) {
  const s = await App.api("GET", `/v1/tenants/${enc(tenant)}/sessions/${enc(client)}`);
  const discard = el("input", { type: "checkbox", id: "kick-discard" });
  const kick = el("button", { class: "danger", id: "kick" }, "Kick");
  kick.addEventListener("click", async () => {
    kick.disabled = true;
    try {
      await App.api("DELETE", `/v1/tenants/${enc(tenant)}/sessions/${enc(client)}?discard=${discard.checked}`);
      App.toast(`${client} kicked${discard.checked ? " and its session discarded" : ""}`);
      setTimeout(() => App.route(), 300);
    } catch (e) {
      App.toast(e.message);
      kick.disabled = false;
    }
  });
  view.append(
    el("h2", {}, el("a", { href: "#/tenants" }, "Tenants"), " / ", el("a", { href: `#/tenants/${enc(tenant)}/sessions` }, tenant), " / ", client),
    el("div", { class: "card" },
      el("div", { class: "kv", id: "session-facts" },
        el("div", {}, "State"), el("div", { id: "session-state" }, s.connected ? "connected" : "offline " + ago(s.offline_since)),
        el("div", {}, "User"), el("div", {}, s.user || "(anonymous)"),
        el("div", {}, "Remote"), el("div", {}, s.remote || ""),
        el("div", {}, "Protocol"), el("div", {}, s.protocol),
        el("div", {}, "Session expiry"), el("div", {}, s.session_expiry === 4294967295 ? "never" : s.session_expiry + " s"),
        el("div", {}, "Queued / in flight"), el("div", {}, `${s.queued} / ${s.inflight}`),
        el("div", {}, "Dropped"), el("div", {}, Object.entries(s.dropped || {}).map(([k, v]) => `${k} ${v}`).join(", "))),
      el("div", { class: "toolbar" }, kick, el("label", {}, discard, " also discard the session"))),
    el("h3", {}, "Subscriptions"),
    table([
      { label: "Filter", get: (x) => x.filter },
      { label: "QoS", num: true, get: (x) => x.qos },
      { label: "Options", get: (x) => [x.no_local ? "no local" : "", x.retain_as_published ? "retain as published" : "", x.subscription_id ? "id " + x.subscription_id : ""].filter(Boolean).join(", ") },
    ], s.subscriptions || []));
}

async function renderSubscriptions(view, tenant) {
  const subs = (await App.api("GET", `/v1/tenants/${enc(tenant)}/subscriptions`)) || [];
  view.append(tenantTabs(tenant, "subscriptions"), table([
    { label: "Filter", get: (x) => x.filter },
    { label: "Client id", get: (x) => el("a", { href: `#/tenants/${enc(tenant)}/sessions/${enc(x.client_id)}` }, x.client_id) },
    { label: "QoS", num: true, get: (x) => x.qos },
  ], subs));
}

async function renderRetained(view, tenant) {
  const filter = el("input", { id: "retained-filter", value: "#" });
  const box = el("div", { id: "retained" });
  const load = async () => {
    const list = (await App.api("GET", `/v1/tenants/${enc(tenant)}/retained?limit=500&payload=true&filter=${enc(filter.value || "#")}`)) || [];
    box.replaceChildren(table([
      { label: "Topic", get: (m) => m.topic },
      { label: "QoS", num: true, get: (m) => m.qos },
      { label: "Bytes", num: true, get: (m) => m.payload_bytes },
      { label: "Payload", get: (m) => el("pre", {}, decodePayload(m.payload)) },
      { label: "", get: (m) => el("button", { class: "secondary", onclick: async () => {
        await App.api("DELETE", `/v1/tenants/${enc(tenant)}/retained?topic=${enc(m.topic)}`);
        App.toast("deleted " + m.topic);
        load();
      } }, "Delete") },
    ], list));
  };
  view.append(tenantTabs(tenant, "retained"),
    el("form", { class: "toolbar", onsubmit: (ev) => { ev.preventDefault(); load(); } }, filter, el("button", { type: "submit" }, "Filter")),
    box);
  await load();
}

function decodePayload(b64) {
  if (!b64) return "";
  try {
    const text = atob(b64);
    return /^[\x09\x0a\x0d\x20-\x7e]*$/.test(text) ? text.slice(0, 500) : `(${text.length} bytes of binary)`;
  } catch (e) { return ""; }
}

// The settings form is generated from the settings object: booleans as
// check boxes, numbers and strings as inputs. Validation is the API's: its
// error names the field, which is marked.
async function renderSettings(view, tenant) {
  const settings = await App.api("GET", `/v1/tenants/${enc(tenant)}/settings`);
  const fields = el("div", { class: "form-grid" });
  for (const [k, v] of Object.entries(settings)) {
    const id = "setting-" + k;
    const input = typeof v === "boolean"
      ? el("input", { type: "checkbox", id, name: k, checked: v })
      : el("input", { id, name: k, value: v, "data-kind": typeof v });
    fields.append(el("label", { "data-field": k }, typeof v === "boolean" ? input : null, k.replaceAll("_", " "),
      typeof v === "boolean" ? null : input, el("div", { class: "field-error", id: "err-" + k })));
  }
  const error = el("p", { class: "error", id: "settings-error" });
  const form = el("form", { id: "settings-form", class: "card" }, fields,
    el("div", { class: "toolbar" }, el("button", { type: "submit", id: "settings-save" }, "Save"), error));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = {};
    for (const input of form.querySelectorAll("input")) {
      const k = input.name;
      if (input.type === "checkbox") body[k] = input.checked;
      else if (input.dataset.kind === "number") body[k] = Number(input.value);
      else body[k] = input.value;
    }
    form.querySelectorAll(".field-error").forEach((e) => { e.textContent = ""; });
    error.textContent = "";
    try {
      await App.api("PUT", `/v1/tenants/${enc(tenant)}/settings`, body);
      App.toast("settings of " + tenant + " saved");
    } catch (e) {
      error.textContent = e.message;
      for (const [k] of Object.entries(settings)) {
        if (e.message.includes(k + ":")) setText("err-" + k, e.message.slice(e.message.indexOf(k + ":")).split("\n")[0]);
      }
    }
  });
  view.append(tenantTabs(tenant, "settings"),
    el("p", { class: "muted" }, "Changes apply at once (limits that shape a session, to new connections) and are not written to the configuration file."),
    form);
}

App.section("broker", {
  nav: [{ href: "#/overview", label: "Overview" }, { href: "#/tenants", label: "Tenants" }],
  routes: [
    { re: /^\/overview$/, render: renderOverview },
    { re: /^\/tenants$/, render: renderTenants },
    { re: /^\/tenants\/([^/?]+)$/, render: (v, t) => { location.replace(`#/tenants/${enc(t)}/sessions`); return Promise.resolve(); } },
    { re: /^\/tenants\/([^/?]+)\/sessions(?:\?.*)?$/, render: renderSessions },
    { re: /^\/tenants\/([^/?]+)\/sessions\/([^/?]+)$/, render: renderSession },
    { re: /^\/tenants\/([^/?]+)\/subscriptions$/, render: renderSubscriptions },
    { re: /^\/tenants\/([^/?]+)\/retained$/, render: renderRetained },
    { re: /^\/tenants\/([^/?]+)\/settings$/, render: renderSettings },
  ],
});

// renderCluster shows the members as this node sees them (membership
// only: the broker does not route messages between nodes yet).
async function renderCluster(view) {
  view.append(el("h2", {}, "Cluster"), el("p", { class: "muted", id: "cluster-info" }), el("div", { id: "cluster-members" }));
  App.every(2000, async () => {
    const c = await App.api("GET", "/v1/cluster");
    setText("cluster-info", c.standalone ? "This node is standalone (no cluster: section)."
      : `Cluster ${c.cluster} · this node's gossip address ${c.gossip} · view version ${c.version}`);
    const box = document.getElementById("cluster-members");
    if (!box) return;
    box.replaceChildren(table([
      { label: "Node", get: (m) => m.local ? el("strong", {}, m.id + " (this node)") : m.id },
      { label: "State", get: (m) => el("span", { "data-member-state": m.id, class: m.state === "alive" ? null : "muted" }, m.state) },
      { label: "Roles", get: (m) => (m.roles || []).join(", ") },
      { label: "MQTT", get: (m) => m.mqtt || "" },
      { label: "Incarnation", num: true, get: (m) => m.incarnation },
    ], c.members || [], "No members."));
  });
}

App.section("cluster", {
  nav: [{ href: "#/cluster", label: "Cluster" }],
  routes: [{ re: /^\/cluster$/, render: renderCluster }],
});
