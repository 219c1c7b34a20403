// twinedge dashboard: twins (RQL search), groups, live events (WebSocket) and a map of
// twin positions. Vanilla JS, no external assets; talks only to this server's /api/2.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "twinedge.token";
const MAX_EVENTS = 200;
const $ = (sel) => document.querySelector(sel);

const state = {
  token: null,
  things: [],
  selected: null,
  ws: null,
  wsRetryMs: 1000,
  refreshTimer: null,
  networkTimer: null,
  lastRefresh: 0,
};

// ---------------------------------------------------------------- token
function initToken() {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    localStorage.setItem(TOKEN_KEY, fromUrl);
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  state.token = fromUrl || localStorage.getItem(TOKEN_KEY);
  $("#token").value = state.token ? "••••••••" : "";
  if (!state.token) notice("Enter an API key (te_…) to see your twins. The service admin key is in DATA_DIR/admin.token.");
}

function notice(text) {
  const el = $("#notice");
  el.textContent = text || "";
  el.hidden = !text;
}

// ---------------------------------------------------------------- API
async function api(path) {
  const res = await fetch(path, { headers: { Authorization: "Bearer " + state.token, Accept: "application/json" } });
  let body = null;
  const text = await res.text();
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
  if (!res.ok) {
    const err = new Error((body && body.detail) || res.status + " " + res.statusText);
    err.status = res.status;
    err.problem = body;
    throw err;
  }
  return body;
}

function authFailed(err) {
  if (err.status === 401 || err.status === 403) {
    notice("The API key was refused: " + err.message);
    setStatus("bad", "unauthorised");
    return true;
  }
  return false;
}

// ---------------------------------------------------------------- twins
async function loadThings() {
  if (!state.token) return;
  const filter = $("#filter").value.trim();
  const q = new URLSearchParams({ limit: "500", sort: "+thingId" });
  if (filter) q.set("filter", filter);
  const errEl = $("#search-error");
  try {
    const [page, count] = await Promise.all([
      api("/api/2/search/things?" + q.toString()),
      api("/api/2/search/things/count" + (filter ? "?filter=" + encodeURIComponent(filter) : "")),
    ]);
    errEl.hidden = true;
    state.things = page.items;
    $("#count").textContent = count + (count > page.items.length ? " (showing " + page.items.length + ")" : "");
    renderThings();
    renderMap();
  } catch (err) {
    if (authFailed(err)) return;
    errEl.textContent = err.message;
    errEl.hidden = false;
  }
  state.lastRefresh = Date.now();
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
}

function renderThings() {
  const tbody = $("#things tbody");
  tbody.replaceChildren();
  for (const t of state.things) {
    const tr = document.createElement("tr");
    tr.dataset.thingId = t.thingId;
    if (t.thingId === state.selected) tr.className = "selected";
    cell(tr, t.thingId);
    cell(tr, t._domain ?? "");
    cell(tr, String(t._revision ?? ""));
    cell(tr, t._inSync ? "yes" : "pending", t._inSync ? "sync-yes" : "sync-no");
    cell(tr, (t._modified || "").replace("T", " ").replace("Z", ""));
    tr.addEventListener("click", () => select(t.thingId));
    tbody.appendChild(tr);
  }
}

async function select(thingId) {
  state.selected = thingId;
  renderThings();
  renderMap();
  try {
    const doc = await api("/api/2/things/" + encodeURIComponent(thingId));
    $("#detail-title").textContent = thingId + " — revision " + doc._revision;
    $("#detail-json").textContent = JSON.stringify(doc, null, 2);
    $("#detail").hidden = false;
    $("#detail").open = true;
  } catch (err) {
    authFailed(err);
  }
}

// ---------------------------------------------------------------- map
function position(t) {
  const f = t.features || {};
  const p = f.position && f.position.properties;  // what the orchestrator places by
  if (p && typeof p.x_m === "number" && typeof p.y_m === "number") return [p.x_m, p.y_m];
  const l = f.location && f.location.properties;
  if (l && typeof l.x === "number" && typeof l.y === "number") return [l.x, l.y];
  return null;
}

function svg(name, attrs, parent) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (parent) parent.appendChild(el);
  return el;
}

function renderMap() {
  const map = $("#map");
  map.replaceChildren();
  const W = 600, H = 400, PAD = 30;
  const pts = state.things.map((t) => [t, position(t)]).filter(([, p]) => p);
  if (!pts.length) {
    const msg = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis" }, map);
    msg.textContent = "no twin has features/position/properties/{x_m,y_m}";
    return;
  }
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const [, [x, y]] of pts) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  const span = Math.max(x1 - x0, y1 - y0, 1);
  // one scale for both axes (distances stay true); a degenerate axis gets half the span
  const scale = Math.min((W - 2 * PAD) / Math.max(x1 - x0, span * 0.5), (H - 2 * PAD) / Math.max(y1 - y0, span * 0.5));
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const sx = (x) => W / 2 + (x - cx) * scale;
  const sy = (y) => H / 2 - (y - cy) * scale; // y grows upwards
  // grid: ~8 lines per axis at a round step
  const step = Math.pow(10, Math.floor(Math.log10(span / 8 || 1)));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => span / s <= 10) || step * 10;
  for (let gx = Math.ceil((cx - W / 2 / scale) / nice) * nice; sx(gx) <= W; gx += nice) {
    svg("line", { x1: sx(gx), y1: 0, x2: sx(gx), y2: H, class: "grid" }, map);
    svg("text", { x: sx(gx) + 2, y: H - 4, class: "axis" }, map).textContent = +gx.toFixed(6);
  }
  for (let gy = Math.ceil((cy - H / 2 / scale) / nice) * nice; sy(gy) >= 0; gy += nice) {
    svg("line", { x1: 0, y1: sy(gy), x2: W, y2: sy(gy), class: "grid" }, map);
    svg("text", { x: 2, y: sy(gy) - 2, class: "axis" }, map).textContent = +gy.toFixed(6);
  }
  const labels = pts.length <= 40;
  for (const [t, [x, y]] of pts) {
    const cls = (t._inSync ? "ok" : "pending") + (t.thingId === state.selected ? " selected" : "");
    const c = svg("circle", { cx: sx(x), cy: sy(y), r: 6, class: cls, "data-thing-id": t.thingId }, map);
    svg("title", {}, c).textContent = t.thingId + " (" + x + ", " + y + ")" + (t._host ? " on " + t._host : "");
    c.addEventListener("click", () => select(t.thingId));
    if (labels) svg("text", { x: sx(x) + 8, y: sy(y) + 3, class: "label" }, map).textContent = t.thingId;
  }
}

// ---------------------------------------------------------------- groups
async function loadGroups() {
  if (!state.token) return;
  try {
    const res = await api("/api/2/groups");
    const ul = $("#groups");
    ul.replaceChildren();
    if (!res.items.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "no groups (PUT /api/2/groups/{name})";
      ul.appendChild(li);
    }
    for (const g of res.items) {
      const li = document.createElement("li");
      li.dataset.group = g.domain + "/" + g.name;
      const name = document.createElement("strong");
      name.textContent = g.name;
      const filter = document.createElement("code");
      filter.textContent = g.filter || "fixed members";
      filter.title = g.filter || "";
      const size = document.createElement("span");
      size.className = "size";
      size.textContent = g.size;
      li.append(name, filter, size);
      ul.appendChild(li);
    }
  } catch (err) {
    authFailed(err);
  }
}

// ---------------------------------------------------------------- events
function setStatus(cls, text) {
  const el = $("#status");
  el.className = "pill " + cls;
  el.textContent = text;
}

function connectEvents() {
  if (!state.token) return;
  if (state.ws) { state.ws.onclose = null; state.ws.close(); }
  const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(proto + "//" + window.location.host + "/api/2/events/ws?token=" + encodeURIComponent(state.token));
  state.ws = ws;
  ws.onopen = () => { setStatus("on", "live"); state.wsRetryMs = 1000; };
  ws.onmessage = (msg) => {
    let ev;
    try { ev = JSON.parse(msg.data); } catch (e) { return; }
    addEvent(ev);
    scheduleRefresh(ev.type && ev.type.includes(".group.") ? 2 : 1);
  };
  ws.onclose = (e) => {
    state.ws = null;
    if (e.code === 1008) {
      setStatus("bad", "refused");
      notice("The event stream was refused: " + (e.reason || "policy violation"));
      return;
    }
    setStatus("off", e.reason ? "reconnecting (" + e.reason.slice(0, 40) + ")" : "reconnecting");
    const delay = state.wsRetryMs;
    state.wsRetryMs = Math.min(state.wsRetryMs * 2, 30000);
    setTimeout(() => { connectEvents(); loadThings(); loadGroups(); }, delay);
  };
}

function addEvent(ev) {
  const ol = $("#events");
  const li = document.createElement("li");
  const kind = (ev.type || "").split(".").pop();
  li.dataset.subject = ev.subject || "";
  li.dataset.type = ev.type || "";
  const time = document.createElement("span");
  time.className = "muted";
  time.textContent = (ev.time || "").slice(11, 23) + " ";
  const type = document.createElement("span");
  type.className = "type " + kind;
  type.textContent = (ev.type || "").replace("dev.twinedge.", "");
  const what = document.createElement("span");
  const d = ev.data || {};
  let text = (ev.subject || "") + " r" + (d.revision ?? "?");
  if (d.group) text += " → " + d.group;
  else if (Array.isArray(d.patch)) text += " " + d.patch.map((op) => op.op + " " + (op.path || "/")).join(", ");
  what.textContent = text;
  li.title = JSON.stringify(ev, null, 1);
  li.append(time, type, what);
  ol.prepend(li);
  while (ol.children.length > MAX_EVENTS) ol.lastChild.remove();
}

// Refresh the list at most every 500 ms while events arrive.
function scheduleRefresh(what) {
  if (state.refreshTimer) { state.refreshGroups = state.refreshGroups || what === 2; return; }
  state.refreshGroups = what === 2;
  const wait = Math.max(0, 500 - (Date.now() - state.lastRefresh));
  state.refreshTimer = setTimeout(async () => {
    state.refreshTimer = null;
    const groups = state.refreshGroups;
    await loadThings();
    if (groups) await loadGroups();
    else loadGroups();
  }, wait);
}

// ---------------------------------------------------------------- network
// The live orchestrator (serve --network): hosts, their load and twins, the last cycle
// and the forecast peak; polled every 2 s. Hidden when the service runs no orchestrator.
function pct(used, cap) {
  return cap > 0 ? Math.round((100 * used) / cap) + " %" : "–";
}

async function loadNetwork() {
  if (!state.token) return;
  let st, fc = null;
  try {
    // /healthz says whether the service runs an orchestrator (no 404 to log if not)
    const health = await (await fetch("/healthz")).json();
    if (!health.orchestrator) { $("#network-panel").hidden = true; return; }
    st = await api("/api/2/orchestrator");
  } catch (err) {
    if (!authFailed(err)) scheduleNetwork();
    return;
  }
  try { fc = await api("/api/2/orchestrator/forecast"); } catch (e) { fc = null; }
  $("#network-panel").hidden = false;
  $("#network-policies").textContent = st.network + ": " + st.placement + " + " + st.migration + ", every " + st.cycle_s + " s";
  const c = st.last_cycle;
  $("#network-cycle").textContent = c
    ? "cycle " + st.cycles + ": " + c.twins + " twins, " + c.placed + " placed, " + c.migrations + " migrated, decided in " +
      Math.round(1000 * c.decide_s) + " ms; " + st.migrations_total + " migrations in all"
    : "no cycle yet";
  const err = $("#network-error");
  err.textContent = c && c.error ? c.error : "";
  err.hidden = !(c && c.error);
  const peak = {};
  for (const h of (fc && fc.hosts) || []) peak[h.id] = h;
  const tbody = $("#hosts tbody");
  tbody.replaceChildren();
  for (const h of st.hosts) {
    const tr = document.createElement("tr");
    tr.dataset.host = h.id;
    cell(tr, h.id);
    cell(tr, h.tier);
    cell(tr, h.domain);
    cell(tr, String(h.twins), "twins");
    cell(tr, pct(h.used_cpu_ghz, h.cpu_ghz) + " of " + h.cpu_ghz + " GHz");
    cell(tr, pct(h.used_mem_gb, h.mem_gb) + " of " + h.mem_gb + " GB");
    const p = peak[h.id];
    cell(tr, p ? Math.round(100 * p.peak_utilisation) + " % at " + p.at_t_s.toFixed(0) + " s" : "–",
         p && p.peak_utilisation >= 0.8 ? "spike" : "");
    tbody.appendChild(tr);
  }
  scheduleNetwork();
}

function scheduleNetwork() {
  clearTimeout(state.networkTimer);
  state.networkTimer = setTimeout(loadNetwork, 2000);
}

// ---------------------------------------------------------------- wiring
function start() {
  initToken();
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const v = $("#token").value.trim();
    if (!v || v.startsWith("•")) return;
    state.token = v;
    localStorage.setItem(TOKEN_KEY, v);
    $("#token").value = "••••••••";
    notice("");
    refreshAll();
  });
  $("#forget").addEventListener("click", () => {
    localStorage.removeItem(TOKEN_KEY);
    state.token = null;
    if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; }
    $("#token").value = "";
    setStatus("off", "offline");
    notice("Key forgotten. Enter an API key to continue.");
  });
  $("#search-form").addEventListener("submit", (e) => { e.preventDefault(); loadThings(); });
  $("#clear-events").addEventListener("click", () => $("#events").replaceChildren());
  refreshAll();
}

function refreshAll() {
  loadThings();
  loadGroups();
  loadNetwork();
  connectEvents();
}

start();
