// Almanac console: plain JavaScript, no framework, no inline code (the server sends a strict
// Content-Security-Policy). Every value from the server reaches the page through textContent,
// never as markup. Views are chosen by the URL's hash: #/overview, #/env/APP/PROFILES[?label=],
// #/diff?from=&to=[&app=&profile=], #/live.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { overview: null, events: null, selected: {} };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined)
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

async function api(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.message ? `${r.status}: ${body.message}` : `${r.status} ${r.statusText}`);
  return body;
}

function showError(err) {
  const box = $("#error");
  if (!err) { box.hidden = true; return; }
  box.textContent = String(err.message || err);
  box.hidden = false;
}

const short = (id) => (id ? id.slice(0, 8) : "");
function ago(seconds) {
  if (!seconds) return "";
  const d = Date.now() / 1000 - seconds;
  if (d < 90) return "just now";
  if (d < 5400) return `${Math.round(d / 60)} min ago`;
  if (d < 129600) return `${Math.round(d / 3600)} h ago`;
  return `${Math.round(d / 86400)} days ago`;
}
const fileOf = (source) => (source || "").replace(/^[a-z]+:\/\/.*?\/(?=[^/]*$)/, "").replace(/^.*\//, "");
function where(side) {
  if (!side || !side.source) return "";
  return fileOf(side.source) + (side.origin ? `:${side.origin}` : "");
}
const text = (v) => (typeof v === "string" ? v : JSON.stringify(v));

// ---- health ------------------------------------------------------------------------------

async function loadHealth() {
  const pill = $("#health-pill");
  try {
    const h = await api("/actuator/health");
    const parts = Object.entries(h.components || {});
    const degraded = parts.some(([, c]) => c && c.status && c.status !== "UP");
    pill.textContent = degraded ? "degraded" : h.status === "UP" ? "healthy" : h.status;
    pill.className = "pill " + (degraded ? "degraded" : h.status === "UP" ? "up" : "down");
    const cards = $("#health-detail");
    cards.replaceChildren(...parts.map(([name, c]) => el("div", { class: "card" },
      el("h3", {}, el("span", { class: "pill " + (c.status === "UP" ? "up" : "degraded"), text: c.status }), " ", name),
      ...Object.entries(c.details || c).filter(([k]) => k !== "status").slice(0, 8)
        .map(([k, v]) => el("p", { text: `${k}: ${text(v)}` })))));
    if (!parts.length) cards.replaceChildren(el("p", { class: "empty", text: "No components reported." }));
  } catch (e) {
    pill.textContent = "unreachable";
    pill.className = "pill down";
  }
}

// ---- overview ----------------------------------------------------------------------------

async function loadOverview(force) {
  if (!state.overview || force) state.overview = await api("/ui/api/overview");
  $("#served-version").textContent = state.overview.version ? `served ${short(state.overview.version)}` : "dir mode";
  const list = $("#diff-commits");
  list.replaceChildren(...(state.overview.history || []).map((c) =>
    el("option", { value: c.commit, label: `${short(c.commit)} ${c.summary}` })));
  return state.overview;
}

function renderOverview() {
  const o = state.overview;
  const filter = $("#overview-filter").value.trim().toLowerCase();
  const apps = Object.keys(o.applications).sort().filter((a) => a.toLowerCase().includes(filter));
  const profiles = [...new Set(apps.flatMap((a) => Object.keys(o.applications[a])))].sort((a, b) =>
    a === "default" ? -1 : b === "default" ? 1 : a.localeCompare(b));
  const table = $("#overview-table");
  if (!apps.length) {
    table.replaceChildren(el("tbody", {}, el("tr", {}, el("td", { class: "empty", text: "No applications you may read." }))));
    return;
  }
  table.replaceChildren(
    el("thead", {}, el("tr", {}, el("th", { text: "application" }), el("th", { text: "watchers" }),
      profiles.map((p) => el("th", { text: p })))),
    el("tbody", {}, apps.map((app) => el("tr", {
      tabindex: 0, "data-app": app,
      onclick: (ev) => openEnv(app, ev.target.closest("td")?.dataset.profile || "default"),
    },
      el("td", { class: "mono", text: app }),
      el("td", { text: String(watchersOf(app)) }),
      profiles.map((p) => {
        const c = o.applications[app][p];
        if (c === undefined) return el("td", {});
        const td = el("td", { "data-profile": p });
        if (c && c.commit) td.append(el("span", { class: "cell-commit", title: c.summary, text: short(c.commit) }),
          el("span", { class: "cell-when", text: `${ago(c.time)} · ${c.summary}` }));
        else if (c && c.earlierThan) td.append(el("span", { class: "cell-when", text: `before ${short(c.earlierThan)}` }));
        else td.append(el("span", { class: "cell-when", text: "—" }));
        return td;
      })))));
}

function watchersOf(app) {
  const w = (state.overview && state.overview.watchers) || {};
  return Object.entries(w).filter(([k]) => k.split(",").includes(app)).reduce((n, [, v]) => n + v, 0);
}

function openEnv(app, profile) { location.hash = `#/env/${encodeURIComponent(app)}/${encodeURIComponent(profile)}`; }

// ---- one Environment ---------------------------------------------------------------------

async function showEnv(app, profiles, label) {
  $("#env-app").value = app || "";
  $("#env-profiles").value = profiles || "";
  $("#env-label").value = label || "";
  const table = $("#env-table");
  if (!app || !profiles) {
    $("#env-title").textContent = "Environment";
    $("#env-meta").textContent = "Choose an application and profiles, or open one from the overview.";
    table.replaceChildren();
    return;
  }
  const q = label ? `?label=${encodeURIComponent(label)}` : "";
  const env = await api(`/ui/api/environment/${encodeURIComponent(app)}/${encodeURIComponent(profiles)}${q}`);
  $("#env-title").textContent = `${env.name} · ${env.profiles}`;
  $("#env-meta").textContent = `${env.keys.length} keys at ${env.version ? short(env.version) : "the directory"}` +
    (label ? ` (label ${label})` : "") + ". Secrets are masked; lower layers a value overrode are listed under it.";
  state.envKeys = env.keys.sort((a, b) => a.key.localeCompare(b.key));
  renderEnv();
}

function renderEnv() {
  const filter = $("#env-filter").value.trim().toLowerCase();
  const rows = (state.envKeys || []).filter((k) => !filter ||
    k.key.toLowerCase().includes(filter) || text(k.value).toLowerCase().includes(filter));
  $("#env-table").replaceChildren(
    el("thead", {}, el("tr", {}, el("th", { text: "key" }), el("th", { text: "value" }), el("th", { text: "set by" }))),
    el("tbody", {}, rows.map((k) => {
      const [top, ...lower] = k.layers;
      return el("tr", { tabindex: 0 },
        el("td", { class: "key", text: k.key }),
        el("td", { class: "value" + (k.secret ? " secret" : "") }, k.secret ? secretBadge() : null, text(k.value)),
        el("td", {}, el("span", { class: "src", text: where(top) }),
          lower.length ? el("ul", { class: "layers", title: "overridden" },
            lower.map((l) => el("li", { text: `${where(l)} = ${text(l.value)}` }))) : null));
    })));
}

// ---- diff --------------------------------------------------------------------------------

async function showDiff(params) {
  const from = params.get("from"), to = params.get("to");
  const hist = (state.overview && state.overview.history) || [];
  $("#diff-from").value = from || (hist[1] ? hist[1].commit : "");
  $("#diff-to").value = to || (hist[0] ? hist[0].commit : "");
  if (!from || !to) {
    $("#diff-meta").textContent = "Pick two labels or commits; the served commit and the one before it are filled in.";
    $("#diff-pairs").replaceChildren();
    $("#diff-detail").replaceChildren();
    return;
  }
  const q = `from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
  const all = await api(`/diff?${q}`);
  $("#diff-meta").textContent = `${short(all.fromVersion)} → ${short(all.toVersion)}: ` +
    (all.changed.length ? `${all.changed.length} Environment(s) change.` : "no effective change.");
  const app = params.get("app"), profile = params.get("profile");
  $("#diff-pairs").replaceChildren(
    el("thead", {}, el("tr", {}, el("th", { text: "environment" }), el("th", { text: "changes" }))),
    el("tbody", {}, all.changed.map((c) => el("tr", {
      tabindex: 0, class: c.application === app && c.profile === profile ? "selected" : null,
      onclick: () => { location.hash = `#/diff?${q}&app=${encodeURIComponent(c.application)}&profile=${encodeURIComponent(c.profile)}`; },
    },
      el("td", { class: "mono", text: `${c.application} / ${c.profile}` }),
      el("td", {}, badge("add", "+", c.counts.added), badge("del", "−", c.counts.removed), badge("chg", "~", c.counts.changed))))));
  const detail = $("#diff-detail");
  if (!app || !profile) {
    detail.replaceChildren(el("p", { class: "empty", text: all.changed.length ? "Choose an Environment to see its keys." : "" }));
    return;
  }
  const d = await api(`/diff/${encodeURIComponent(app)}/${encodeURIComponent(profile)}?${q}`);
  const items = [
    ...d.added.map((e) => change("add", "+", e, null, e.to)),
    ...d.removed.map((e) => change("del", "−", e, e.from, null)),
    ...d.changed.map((e) => change("chg", "~", e, e.from, e.to)),
  ];
  detail.replaceChildren(el("h2", { text: `${app} / ${profile}` }),
    ...(items.length ? items : [el("p", { class: "empty", text: "No effective change." })]));
}

function badge(kind, sym, n) {
  return n ? el("span", { class: `badge ${kind}`, title: kind, text: `${sym}${n}` }) : null;
}

function secretBadge() { return el("span", { class: "badge chg", title: "a {cipher} value, masked", text: "secret" }); }

function change(kind, sym, e, from, to) {
  const v = el("div", { class: "v" });
  if (e.secret) v.append(secretBadge());
  if (from && to) v.append(el("del", { text: text(from.value) }), " → ", el("ins", { text: text(to.value) }));
  else v.append(text((to || from).value));
  return el("div", { class: `change ${kind}`, "data-key": e.key },
    el("span", { class: "sym", "aria-label": kind, text: sym }),
    el("span", { class: "k", text: e.key }), v,
    el("span", { class: "v src", text: to && from && where(to) !== where(from) ? `${where(to)} (was ${where(from)})` : where(to || from) }));
}

// ---- live --------------------------------------------------------------------------------

function startLive() {
  if (state.events) return;
  const stateEl = $("#live-state");
  const feed = $("#live-feed");
  const es = new EventSource("/events");
  state.events = es;
  es.onopen = () => { stateEl.textContent = "live"; stateEl.className = "pill up"; };
  es.onerror = () => { stateEl.textContent = "reconnecting (needs admin)"; stateEl.className = "pill degraded"; };
  es.addEventListener("refresh", async (ev) => {
    let data = {};
    try { data = JSON.parse(ev.data); } catch (e) { /* shown as is */ }
    const apps = data.applications || [];
    feed.prepend(el("li", { class: "event" },
      el("time", { text: new Date().toLocaleTimeString() }), " ",
      el("span", { class: "cell-commit", text: short(data.commit || data.version) }), " ",
      el("span", { text: apps.length ? `changed: ${apps.join(", ")}` : "no application changed" })));
    await loadOverview(true).catch(showError);
    renderWatchers();
    if (currentView() === "overview") renderOverview();
  });
}

function renderWatchers() {
  const w = (state.overview && state.overview.watchers) || {};
  const rows = Object.entries(w).sort();
  $("#live-watchers").replaceChildren(
    el("thead", {}, el("tr", {}, el("th", { text: "watching" }), el("th", { text: "parked here" }))),
    el("tbody", {}, rows.length ? rows.map(([k, v]) => el("tr", {}, el("td", { class: "mono", text: k }), el("td", { text: String(v) })))
      : el("tr", {}, el("td", { class: "empty", colspan: 2, text: "No watcher is parked on this replica." }))));
}

// ---- routing and keys --------------------------------------------------------------------

function currentView() { return (location.hash.match(/^#\/(\w+)/) || [])[1] || "overview"; }

async function route() {
  showError(null);
  const hash = location.hash || "#/overview";
  const [path, query] = hash.slice(2).split("?");
  const parts = path.split("/").map(decodeURIComponent);
  const view = ["overview", "env", "diff", "live"].includes(parts[0]) ? parts[0] : "overview";
  document.querySelectorAll(".view").forEach((v) => { v.hidden = v.id !== `view-${view}`; });
  document.querySelectorAll(".tabs a").forEach((a) => a.classList.toggle("active", a.dataset.view === view));
  const params = new URLSearchParams(query || "");
  try {
    await loadOverview(false);
    if (view === "overview") renderOverview();
    else if (view === "env") await showEnv(parts[1], parts[2], params.get("label"));
    else if (view === "diff") await showDiff(params);
    else { startLive(); renderWatchers(); }
  } catch (e) { showError(e); }
}

function moveSelection(step) {
  const rows = [...document.querySelectorAll(".view:not([hidden]) tbody tr[tabindex]")];
  if (!rows.length) return;
  const i = rows.indexOf(document.activeElement);
  const next = rows[Math.max(0, Math.min(rows.length - 1, i < 0 ? 0 : i + step))];
  next.focus();
}

document.addEventListener("keydown", (ev) => {
  const typing = ev.target.matches("input, textarea");
  if (ev.key === "Escape" && typing) { ev.target.blur(); return; }
  if (typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const views = { 1: "#/overview", 2: "#/env", 3: "#/diff", 4: "#/live" };
  if (views[ev.key]) { location.hash = views[ev.key]; ev.preventDefault(); }
  else if (ev.key === "/") { const f = document.querySelector(".view:not([hidden]) input[type=search], .view:not([hidden]) input"); if (f) { f.focus(); ev.preventDefault(); } }
  else if (ev.key === "j" || ev.key === "ArrowDown") { moveSelection(1); ev.preventDefault(); }
  else if (ev.key === "k" || ev.key === "ArrowUp") { moveSelection(-1); ev.preventDefault(); }
  else if (ev.key === "Enter" && document.activeElement.matches("tbody tr")) document.activeElement.click();
});

$("#overview-filter").addEventListener("input", renderOverview);
$("#env-filter").addEventListener("input", renderEnv);
$("#env-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const label = $("#env-label").value.trim();
  location.hash = `#/env/${encodeURIComponent($("#env-app").value.trim())}/${encodeURIComponent($("#env-profiles").value.trim())}` +
    (label ? `?label=${encodeURIComponent(label)}` : "");
});
$("#diff-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  location.hash = `#/diff?from=${encodeURIComponent($("#diff-from").value.trim())}&to=${encodeURIComponent($("#diff-to").value.trim())}`;
});
window.addEventListener("hashchange", route);
loadHealth();
setInterval(loadHealth, 15000);
route();
