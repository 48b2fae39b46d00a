// edgegw status page: polls api/v1/status every 2 s and fills the page.
// Text goes in with textContent only (values come from devices and clients).
"use strict";

const $ = (id) => document.getElementById(id);
const INTERVAL = 2000;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function ago(iso, now) {
  const t = iso ? Date.parse(iso) : NaN;
  if (!(t > 0)) return "never"; // null, unparsable, or Go's zero time (year 1)
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min ago";
  return Math.floor(s / 86400) + " d ago";
}

function duration(s) {
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
}

function bytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
  if (n < 1073741824) return (n / 1048576).toFixed(1) + " MiB";
  return (n / 1073741824).toFixed(2) + " GiB";
}

function readingText(r) {
  if (!r || !r.values) return "—";
  const parts = Object.keys(r.values).sort().map((k) => {
    const v = r.values[k];
    return k + " " + (v.v === null ? "invalid" : v.v) + (v.unit ? " " + v.unit : "");
  });
  if (r.quality && r.quality.join() !== "ok") parts.push("[" + r.quality.join(", ") + "]");
  return parts.join(" · ") || "—";
}

function renderBridges(list) {
  const box = $("bridges");
  box.replaceChildren();
  if (!list.length) { box.append(el("p", "none", "no bridge configured")); return; }
  for (const b of list) {
    const row = el("div", "bridge");
    row.dataset.bridge = b.bridge;
    const state = b.connected ? "connected" : "disconnected";
    row.append(el("span", "name", b.bridge), el("span", "state " + state, state),
      el("span", "outbox", "outbox " + b.outbox_depth + (b.outbox_depth ? " (" + bytes(b.outbox_bytes) + ")" : "") + (b.outbox_depth ? " · oldest " + duration(Math.round(b.outbox_oldest_age_seconds)) : "")),
      el("span", "detail", "since " + new Date(b.since).toLocaleTimeString()),
      el("span", "detail address", "via " + b.address + (b.fallback ? " (fall-back)" : "")));
    if (b.outbox_dropped) row.append(el("span", "detail", "dropped " + b.outbox_dropped));
    if (!b.connected && b.last_error) row.append(el("span", "detail error", b.last_error));
    box.append(row);
  }
}

function renderMeters(list, now) {
  const body = $("meters").tBodies[0];
  body.replaceChildren();
  $("no-meters").hidden = list.length > 0;
  $("meters").hidden = list.length === 0;
  for (const m of list) {
    const tr = el("tr");
    tr.dataset.meter = m.meter;
    const st = el("td");
    st.append(el("span", "state " + (m.state || "unknown"), m.state || "unknown"));
    const last = el("td");
    last.append(el("div", "values", readingText(m.reading)), el("div", "seen detail", "seen " + ago(m.last_seen, now)));
    tr.append(el("td", "id", m.meter), st, last);
    body.append(tr);
  }
}

// The error kinds of a port's counters: everything but frames and readings.
const PORT_OK_KINDS = ["frames", "readings"];

function renderPorts(list) {
  const body = $("ports").tBodies[0];
  body.replaceChildren();
  $("ports-section").hidden = list.length === 0;
  for (const p of list) {
    const tr = el("tr");
    tr.dataset.port = p.port;
    const st = el("td");
    const state = p.open ? "open" : "closed";
    st.append(el("span", "state " + (p.open ? "online" : "offline"), state));
    if (!p.open && p.last_error) st.append(el("div", "detail error", p.last_error));
    const c = p.counters || {};
    const errs = Object.keys(c).filter((k) => !PORT_OK_KINDS.includes(k) && c[k] > 0).sort().map((k) => k + " " + c[k]);
    const counts = el("td");
    counts.append(el("div", "frames", "frames " + (c.frames || 0) + " · readings " + (c.readings || 0)),
      el("div", "errors detail" + (errs.length ? " error" : ""), errs.length ? errs.join(", ") : "no errors"));
    const name = el("td");
    name.append(el("div", "id", p.port), el("div", "detail", p.device + " · " + p.protocol));
    tr.append(name, st, counts);
    body.append(tr);
  }
}

function renderListeners(list) {
  const body = $("listeners").tBodies[0];
  body.replaceChildren();
  for (const l of list) {
    const tr = el("tr");
    tr.dataset.listener = l.name;
    const name = el("td");
    name.append(el("div", "id", l.name), el("div", "detail", l.protocol + " " + l.address));
    tr.append(name, el("td", "clients", String(l.clients)),
      el("td", "conns detail", l.open + " open · " + l.accepted + " accepted · " + l.closed + " closed"));
    body.append(tr);
  }
}

// Message rates come from the difference between two polls.
let prev = null;

function rate(cur, before, secs) {
  // No earlier poll, or the gateway restarted in between (counters reset).
  if (before === undefined || !(secs > 0) || cur < before) return "—";
  return ((cur - before) / secs).toFixed(1) + " msg/s";
}

function renderRates(s) {
  const q = s.mqtt, t = Date.parse(s.time);
  const secs = prev ? (t - prev.t) / 1000 : 0;
  $("rate-in").textContent = rate(q.messages_received, prev && prev.in, secs) + " · " + q.messages_received + " since start";
  $("rate-out").textContent = rate(q.messages_sent, prev && prev.out, secs) + " · " + q.messages_sent + " since start";
  prev = { t: t, in: q.messages_received, out: q.messages_sent };
}

function render(s) {
  const now = Date.parse(s.time) || Date.now();
  const h = $("health");
  h.textContent = s.health.status;
  h.className = "badge " + s.health.status;
  $("problems").hidden = s.health.problems.length === 0;
  $("problems").textContent = s.health.problems.join("; ");
  $("version").textContent = s.version.version;
  const site = s.site_id || s.process.hostname || "edgegw";
  $("site").textContent = site;
  $("hostname").textContent = s.process.hostname || "";
  document.title = site + " · edgegw";
  renderRates(s);
  renderListeners(s.listeners);
  renderPorts(s.ports);
  $("uptime").textContent = duration(s.uptime.seconds);
  renderBridges(s.bridges);
  renderMeters(s.meters, now);
  const ss = s.sessions, used = ss.online + ss.offline;
  $("sessions-online").textContent = ss.online;
  $("sessions-offline").textContent = ss.offline;
  $("sessions-quota").textContent = used + " of " + ss.max;
  $("quota-bar").value = ss.max ? used / ss.max : 0;
  $("sessions-queued").textContent = ss.queued;
  $("groups").textContent = s.groups.length;
  const st = s.store;
  $("store-used").textContent = bytes(st.used_bytes) + (st.max_bytes ? " of " + bytes(st.max_bytes) : "") + (st.healthy ? "" : " — " + st.error);
  $("store-bar").value = st.max_bytes ? st.used_bytes / st.max_bytes : 0;
  $("store-file").textContent = bytes(st.file_bytes) + ", " + st.free_pages + " free pages";
  $("store-wpm").textContent = st.messages_written ? bytes(st.bytes_written_per_message) + " (" + bytes(st.bytes_written) + " for " + st.messages_written + ")" : "— (" + bytes(st.bytes_written) + " written, no queued message yet)";
  $("store-commits").textContent = st.commits + (st.commits_failed ? " (" + st.commits_failed + " failed)" : "");
  $("store-aside").textContent = st.moved_aside.length ? st.moved_aside.map((f) => f.path + " (" + bytes(f.bytes) + ")").join(", ") : "none";
  const ms = (sec) => (sec * 1000).toFixed(1) + " ms";
  $("store-commit-times").textContent = "p50 " + ms(st.commit_p50_seconds) + ", p99 " + ms(st.commit_p99_seconds) +
    ", max " + ms(st.commit_max_seconds) + "; acknowledged-unsynced max " + ms(st.unsynced_max_seconds) +
    (st.ack_waits ? "; " + st.ack_waits + " PUBACKs held for a commit" : "");
  const c = s.clock, j = c.last_jump;
  $("clock").textContent = c.state + (c.state === "synced" ? "" : " (readings flagged clock_unsynced)") +
    (j ? ", last jump " + (j.by_seconds > 0 ? "+" : "") + Math.round(j.by_seconds) + " s at " + new Date(j.at).toLocaleString() : ", no jump seen");
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  document.body.classList.remove("stale");
  document.body.dataset.updates = String((+document.body.dataset.updates || 0) + 1);
}

async function poll() {
  try {
    const r = await fetch("api/v1/status", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
  } catch (e) {
    document.body.classList.add("stale");
    $("updated").textContent = "gateway not reachable (" + e.message + ")";
  }
  setTimeout(poll, INTERVAL);
}

poll();
