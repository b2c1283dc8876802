// The dashboard of `modulatio serve`: no build step, no library, no CDN.
// The token is kept in this tab's sessionStorage and sent as a header (no cookies).
// Live through GET /v1/events (Server-Sent Events read with fetch, since EventSource
// cannot send a header); each event refreshes what it touches, never a polling loop.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE = 100;
const state = { status: "executing", offset: 0, lastId: null, tailAbort: null,
                refreshTimer: null, eventsShown: 0 };

function token() { return sessionStorage.getItem("modulatio-token"); }

async function api(path, options = {}) {
  const r = await fetch(path, { ...options,
    headers: { ...(options.headers || {}), Authorization: "Bearer " + token() } });
  if (r.status === 401) { showLogin("The token was refused."); throw new Error("401"); }
  return r;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "onclick") e.addEventListener("click", v);
    else if (v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function showLogin(message) {
  $("board").hidden = true; $("login").hidden = false; $("logout").hidden = true;
  $("login-error").textContent = message || "";
  $("token").focus();
}

async function start() {
  const r = await fetch("/v1/status", { headers: { Authorization: "Bearer " + token() } });
  if (!r.ok) { showLogin(r.status === 401 ? "The token was refused." : "Error " + r.status); return; }
  $("login").hidden = true; $("board").hidden = false; $("logout").hidden = false;
  renderStatus(await r.json());
  await loadPlans();
  follow();
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.max(0, Math.round(seconds));
  return s < 90 ? s + " s" : s < 5400 ? Math.round(s / 60) + " min" : Math.round(s / 3600) + " h";
}

// Lists are rebuilt on each event: the keyboard focus is put back on the same control.
function focusedControl() {
  const f = document.activeElement;
  if (!f || f.tagName !== "BUTTON") return null;
  const row = f.closest("[data-plan],[data-ticket]");
  const where = f.dataset.status ? `button[data-status="${f.dataset.status}"]`
    : row ? `[data-${row.dataset.ticket ? "ticket" : "plan"}="${row.dataset.ticket || row.dataset.plan}"]` : null;
  return where && { where, text: f.textContent };
}

function refocus(control) {
  if (!control) return;
  for (const e of document.querySelectorAll(control.where)) {
    const b = e.tagName === "BUTTON" ? e
      : [...e.querySelectorAll("button")].find((x) => x.textContent === control.text);
    if (b) { b.focus(); return; }
  }
}

function renderStatus(s) {
  const focused = focusedControl();
  $("vault").textContent = s.vault || "";
  const counts = (s.counts && s.counts.by_status) || {};
  const tabs = $("counts"); tabs.replaceChildren();
  for (const name of ["executing", "approved", "paused", "draft", "completed", "failed",
                      "aborted"]) {
    const b = el("button", { type: "button", role: "tab", "data-status": name,
                             "aria-selected": String(state.status === name),
                             onclick: () => { state.status = name; state.offset = 0;
                                              renderStatus(s); loadPlans(); } },
                 `${name} ${counts[name] || 0}`);
    tabs.append(b);
  }
  const running = $("running"); running.replaceChildren();
  for (const p of s.executing || []) {
    const step = p.step_index ?? p.done ?? 0;
    running.append(el("li", { "data-plan": p.id },
      el("span", { class: "title" }, `${p.id} · ${p.title || ""}`),
      el("span", { class: "muted" }, `step ${step + 1}/${p.total ?? "?"}`),
      el("span", { class: "elapsed", "data-since": p.step_started_at || "" }, ""),
      el("button", { type: "button", onclick: () => tail(p.id, step) }, "Follow output")));
  }
  tickElapsed();
  if (!running.children.length) running.append(el("li", { class: "muted" }, "nothing runs"));
  const tickets = $("tickets"); tickets.replaceChildren();
  for (const t of s.tickets || []) {
    tickets.append(el("li", { "data-ticket": t.id },
      el("span", { class: "title" }, `${t.plan}: ${t.reason || ""}`),
      el("span", { class: "badge warn" }, t.severity || ""),
      el("button", { type: "button", onclick: () => decide(t.id, "approve") }, "Approve"),
      el("button", { type: "button", onclick: () => decide(t.id, "decline") }, "Decline")));
  }
  if (!tickets.children.length) tickets.append(el("li", { class: "muted" }, "no open ticket"));
  const daemons = $("daemons"); daemons.replaceChildren();
  for (const d of s.daemons || []) {
    daemons.append(el("li", {},
      el("span", { class: "title" }, `${d.host} pid ${d.pid}`),
      el("span", { class: "badge " + (d.state === "live" ? "ok" : "warn") }, d.state || ""),
      el("span", { class: "muted" }, "heartbeat " + ago(d.age_s) + " ago"),
      d.active_plan ? el("span", {}, d.active_plan) : ""));
  }
  if (!daemons.children.length) daemons.append(el("li", { class: "muted" }, "no daemon"));
  loadPools();
  const cron = $("cron"); cron.replaceChildren();
  for (const c of [...(s.cron || []), ...(s.triggers || [])]) {
    cron.append(el("li", {}, el("span", { class: "title" }, c.id),
      el("span", { class: "muted" }, c.schedule || c.kind || ""),
      el("span", {}, c.next_fire ? "next " + c.next_fire : (c.enabled === false ? "disabled" : ""))));
  }
  if (!cron.children.length) cron.append(el("li", { class: "muted" }, "no entry"));
  const pause = (s.control && s.control.pause) || {};
  const projects = Object.keys(pause.projects || {});
  $("paused").hidden = !pause.vault && !projects.length;
  $("paused").textContent = pause.vault ? "vault paused: " + (pause.vault.reason || pause.vault.by || "")
    : projects.length ? "paused: " + projects.join(", ") : "";
  $("pause-vault").hidden = !!pause.vault;
  $("resume-vault").hidden = !pause.vault;
  const slots = (s.control && s.control.slots) || [];
  const waiting = (s.control && s.control.waiting_for_slot) || [];
  $("slots").textContent = slots.length || waiting.length
    ? `slots in use ${slots.length}; waiting for a slot ${waiting.length}` : "";
  refocus(focused);
}

async function loadPools() {
  const r = await api("/v1/workers");
  if (!r.ok) return;
  const w = await r.json();
  const list = $("pools"); list.replaceChildren();
  for (const p of w.pools || []) {
    list.append(el("li", {}, el("span", { class: "title" }, `pool ${p.pid} on ${p.host}`),
      el("span", {}, `${p.running ?? "?"} of ${p.size ?? "?"} workers`)));
  }
  for (const h of w.hosts || []) {
    if (!(w.pools || []).some((p) => p.host === h.host))
      list.append(el("li", { class: "muted" }, `${h.host}: ${h.error ? "size refused" : h.size + " workers wanted"}, no pool runs`));
  }
}

async function loadPlans() {
  const q = new URLSearchParams({ status: state.status, offset: state.offset, limit: PAGE });
  const r = await api("/v1/plans?" + q);
  const page = await r.json();
  const list = $("plans"); list.replaceChildren();
  for (const p of page.items) {
    list.append(el("li", { "data-plan": p.id, "data-status": p.status },
      el("span", { class: "title" }, `${p.id} · ${p.title}`),
      el("progress", { max: p.total || 1, value: p.done, "aria-label": `${p.done} of ${p.total} steps` }),
      el("span", { class: "muted" }, `${p.done}/${p.total}`)));
  }
  if (!page.items.length) list.append(el("li", { class: "muted" }, "none"));
  $("page").textContent = page.total ? `${state.offset + 1}–${state.offset + page.items.length} of ${page.total}` : "";
  $("prev").disabled = state.offset === 0;
  $("next").disabled = state.offset + PAGE >= page.total;
}

async function decide(ticket, decision) {
  const r = await api(`/v1/tickets/${encodeURIComponent(ticket)}/${decision}`, { method: "POST" });
  if (!r.ok) alert((await r.json()).error);
  refreshSoon();
}

async function setPause(on) {
  const r = await api(on ? "/v1/pause" : "/v1/resume", { method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(on ? { reason: "from the dashboard" } : {}) });
  if (!r.ok) alert((await r.json()).error);
  refreshSoon();
}

async function tail(plan, index) {
  if (state.tailAbort) state.tailAbort.abort();
  const abort = new AbortController(); state.tailAbort = abort;
  $("tail-box").hidden = false;
  $("tail-title").textContent = `${plan} step ${index + 1}`;
  const out = $("tail"); out.textContent = "";
  try {
    const r = await api(`/v1/plans/${encodeURIComponent(plan)}/logs/${index}`, { signal: abort.signal });
    if (!r.ok) { out.textContent = (await r.json()).error; return; }
    const reader = r.body.getReader(); const text = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out.textContent += text.decode(value, { stream: true });
      out.scrollTop = out.scrollHeight;
    }
  } catch (e) { if (e.name !== "AbortError") out.textContent += "\n[" + e.message + "]"; }
}

function tickElapsed() {
  for (const e of document.querySelectorAll("[data-since]")) {
    const since = Date.parse(e.dataset.since);
    e.textContent = isNaN(since) ? "" : ago((Date.now() - since) / 1000);
  }
}
setInterval(tickElapsed, 1000);

function refreshSoon() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(async () => {
    const r = await api("/v1/status"); renderStatus(await r.json()); loadPlans();
  }, 150);
}

function showEvent(e) {
  const list = $("events");
  const what = [e.ts, e.event, e.plan || e.ticket || e.entry || "", e.status || e.outcome || ""]
    .filter(Boolean).join(" · ");
  list.prepend(el("li", {}, what));
  while (list.children.length > 200) list.lastChild.remove();
}

async function follow() {
  for (;;) {
    try {
      const headers = state.lastId ? { "Last-Event-ID": state.lastId } : {};
      const r = await api("/v1/events", { headers });
      $("live").textContent = "live"; $("live").className = "badge ok";
      const reader = r.body.getReader(); const text = new TextDecoder(); let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += text.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
          let id = null, data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("id: ")) id = line.slice(4);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (!data) continue;
          if (id) state.lastId = id;
          showEvent(JSON.parse(data)); refreshSoon();
        }
      }
    } catch (e) { if (e.message === "401") return; }
    $("live").textContent = "reconnecting"; $("live").className = "badge warn";
    await new Promise((ok) => setTimeout(ok, 1000));
  }
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("modulatio-token", $("token").value.trim());
  $("token").value = "";
  start();
});
$("logout").addEventListener("click", () => { sessionStorage.removeItem("modulatio-token"); location.reload(); });
$("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); loadPlans(); });
$("next").addEventListener("click", () => { state.offset += PAGE; loadPlans(); });
$("pause-vault").addEventListener("click", () => setPause(true));
$("resume-vault").addEventListener("click", () => setPause(false));
if (token()) start(); else showLogin();
