// The console's shell: login, session, navigation, a hash router, and the
// API helper every page uses. Sections (broker.js, fleet.js) register
// their pages with App.section.
"use strict";

const App = {
  session: null,   // {user, csrf, title, sections}
  sections: {},    // name → {nav: [{href, label}], routes: [{re, render}]}
  timers: [],      // intervals of the page on screen, cleared on navigation

  section(name, def) { this.sections[name] = def; },

  // api calls the process's API through the console (cookie + CSRF token).
  async api(method, path, body) {
    const opts = { method, headers: {}, credentials: "same-origin" };
    if (method !== "GET" && method !== "HEAD") opts.headers["X-CSRF-Token"] = this.session ? this.session.csrf : "";
    if (body instanceof Blob) { // a file, sent as it is
      opts.headers["Content-Type"] = "application/octet-stream";
      opts.body = body;
    } else if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const r = await fetch("/console/api" + path, opts);
    if (r.status === 401) { this.showLogin(); throw new Error("not logged in"); }
    if (r.status === 204) return null;
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { error: text }; }
    if (!r.ok) throw new Error((data && data.error) || r.statusText);
    return data;
  },

  every(ms, f) {
    f();
    this.timers.push(setInterval(f, ms));
  },

  toast(msg) {
    const t = document.getElementById("toast");
    t.textContent = msg;
    t.classList.remove("hidden");
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => t.classList.add("hidden"), 3000);
  },

  async start() {
    const r = await fetch("/console/session", { credentials: "same-origin" });
    const data = await r.json();
    document.title = (data.title || "Skybridge") + " console";
    if (r.status === 401) { this.loginInfo = data; this.showLogin(); return; }
    this.session = data;
    this.showShell();
  },

  showLogin() {
    this.session = null;
    this.clearTimers();
    const info = this.loginInfo || {};
    document.getElementById("shell").classList.add("hidden");
    document.getElementById("login").classList.remove("hidden");
    document.getElementById("login-title").textContent = info.title || "Skybridge";
    document.getElementById("user-fields").classList.toggle("hidden", !info.users);
    if (info.open) {
      document.getElementById("login-hint").textContent = "No token is configured: the console answers this machine only.";
      document.getElementById("token-field").classList.add("hidden");
    }
  },

  showShell() {
    document.getElementById("login").classList.add("hidden");
    document.getElementById("shell").classList.remove("hidden");
    document.getElementById("brand").textContent = this.session.title;
    document.getElementById("whoami").textContent = this.session.user;
    const nav = document.getElementById("nav");
    nav.replaceChildren();
    for (const name of this.session.sections || []) {
      const s = this.sections[name];
      if (!s) continue;
      for (const item of s.nav) nav.append(el("a", { href: item.href, "data-nav": item.href }, item.label));
    }
    if (!location.hash || location.hash === "#") {
      const first = nav.querySelector("a");
      if (first) {
        location.hash = first.getAttribute("href"); // hashchange routes
        return;
      }
    }
    this.route();
  },

  clearTimers() {
    this.timers.forEach(clearInterval);
    this.timers = [];
  },

  route() {
    if (!this.session) return;
    this.clearTimers();
    const hash = location.hash.replace(/^#/, "") || "/";
    const view = document.getElementById("view");
    for (const a of document.querySelectorAll("#nav a")) {
      const h = a.getAttribute("href").replace(/^#/, "");
      a.classList.toggle("active", hash === h || (h !== "/" && hash.startsWith(h + "/")));
    }
    for (const name of this.session.sections || []) {
      const s = this.sections[name];
      if (!s) continue;
      for (const r of s.routes) {
        const m = hash.match(r.re);
        if (m) {
          view.replaceChildren();
          r.render(view, ...m.slice(1).map(decodeURIComponent)).catch((e) => view.append(el("p", { class: "error" }, e.message)));
          return;
        }
      }
    }
    view.replaceChildren(el("p", { class: "muted" }, "Nothing here."));
  },
};

// el makes an element: el("a", {href: "#"}, "text", child, ...).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, "");
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// table makes a table of rows with the given columns: [{label, get, num}].
function table(columns, rows, empty) {
  const head = el("tr", {}, ...columns.map((c) => el("th", { class: c.num ? "num" : null }, c.label)));
  const body = rows.map((r) => el("tr", {}, ...columns.map((c) => el("td", { class: c.num ? "num" : null }, c.get(r)))));
  if (rows.length === 0) body.push(el("tr", {}, el("td", { colspan: columns.length, class: "muted" }, empty || "None.")));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...body));
}

function stat(label, id) {
  return el("div", { class: "stat" }, el("div", { class: "k" }, label), el("div", { class: "v", id }, "–"));
}

function setText(id, v) {
  const e = document.getElementById(id);
  if (e) e.textContent = v;
}

function enc(s) { return encodeURIComponent(s); }

function ago(iso) {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = {
      token: document.getElementById("login-token").value,
      user: document.getElementById("login-user").value,
      password: document.getElementById("login-password").value,
    };
    const r = await fetch("/console/login", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) {
      document.getElementById("login-error").textContent = data.error || r.statusText;
      return;
    }
    document.getElementById("login-error").textContent = "";
    document.getElementById("login-token").value = "";
    document.getElementById("login-password").value = "";
    App.session = data;
    App.showShell();
  });
  document.getElementById("logout").addEventListener("click", async () => {
    await fetch("/console/logout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": App.session.csrf } });
    App.session = null;
    App.clearTimers();
    App.start(); // the login form, as the server describes it
  });
  window.addEventListener("hashchange", () => App.route());
  App.start();
});
