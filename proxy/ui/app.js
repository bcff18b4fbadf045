// The memory page: reads and changes memories through the proxy's admin API only.
// Memory text is untrusted: it is only ever set with textContent, never parsed as HTML.
"use strict";

const PAGE_SIZE = 50;
const SVG = "http://www.w3.org/2000/svg";
const state = { user: "", proven: false, offset: 0, total: 0, query: "", rows: [], threshold: null };
const $ = (id) => document.getElementById(id);

// The browser sends the Basic credentials it was given for /ui with these calls by itself.
async function api(method, path, params, body) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== "" && value !== undefined) url.searchParams.set(key, value);
  }
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    throw new Error(`${method} ${url.pathname}: the proxy did not answer (${err.message})`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  if (!response.ok) {
    const reason = data && data.error ? data.error : response.statusText;
    throw new Error(`${method} ${url.pathname} failed (${response.status}): ${reason}`);
  }
  return data;
}

function showError(err) {
  const box = $("error");
  box.textContent = err ? String(err.message || err) : "";
  box.hidden = !err;
}

function userParam() {
  return state.proven ? {} : { user: state.user };
}

// A search hit carries the stored metadata; a list row the decoded fields: one shape here.
function fromHit(hit) {
  const m = hit.metadata || {};
  const time = m.event_at !== undefined ? m.event_at : m.created_at;
  return {
    id: hit.id, text: hit.text, time: time === undefined ? null : time,
    strength: m.strength !== undefined ? m.strength : 1, symbiosis: m.symbiosis,
    scored: m.symbiosis !== undefined, polarity: m.polarity || null, tier: m.tier || null,
    quadrant: m.quadrant || null, similarity: hit.score,
  };
}

function formatTime(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  return new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ");
}

function number(value, digits) {
  return typeof value === "number" ? value.toFixed(digits) : "—";
}

function polarityOf(row) {
  return row.scored && row.polarity ? row.polarity : "unscored";
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function button(label, className, title, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.className = className;
  b.title = title;
  b.addEventListener("click", onClick);
  return b;
}

function rowElement(row) {
  const tr = document.createElement("tr");
  tr.dataset.id = row.id;
  tr.append(cell(row.text, "text"), cell(formatTime(row.time), "nowrap"));
  const now = typeof row.strength_now === "number";
  const strength = cell(number(now ? row.strength_now : row.strength, 2), "num strength");
  strength.title = now
    ? `after decay; stored ${number(row.strength, 2)}`
    : "stored strength (before decay)";
  tr.append(strength);
  tr.append(cell(row.scored ? number(row.symbiosis, 2) : "—", "num symbiosis"));
  const pol = document.createElement("td");
  const pill = document.createElement("span");
  pill.className = `pill ${polarityOf(row)}`;
  pill.textContent = row.scored && row.polarity ? row.polarity : "unscored";
  pol.className = "polarity";
  pol.append(pill);
  tr.append(pol, cell(row.tier || "—"), cell((row.quadrant || "—").replaceAll("_", " ")));
  const fb = document.createElement("td");
  fb.className = "nowrap";
  fb.append(
    button("Good", "feedback up", "This memory helped (feedback 1)", () => feedback(row, 1, tr)),
    " ",
    button("Bad", "feedback down", "This memory hurt (feedback 0)", () => feedback(row, 0, tr)),
  );
  const forgetCell = document.createElement("td");
  forgetCell.append(button("Forget", "forget", "Erase this memory", (e) => forget(row, tr, e)));
  tr.append(fb, forgetCell);
  return tr;
}

function render() {
  const body = $("memories").tBodies[0];
  body.replaceChildren(...state.rows.map(rowElement));
  drawChart(state.rows);
  const shown = state.rows.length;
  if (state.query) {
    $("status").textContent = `${shown} nearest to “${state.query}” for ${state.user || "default"}`;
  } else if (state.total === 0) {
    $("status").textContent = `No memories stored for ${state.user || "default"}.`;
  } else {
    const first = state.offset + 1;
    $("status").textContent =
      `${first}–${state.offset + shown} of ${state.total} memories of ${state.user}, newest first`;
  }
  $("newer").disabled = Boolean(state.query) || state.offset === 0;
  $("older").disabled = Boolean(state.query) || state.offset + shown >= state.total;
  $("clear").hidden = !state.query;
}

async function load() {
  showError(null);
  try {
    const page = await api("GET", "/memory/list", {
      ...userParam(), limit: PAGE_SIZE, offset: state.offset,
    });
    state.user = page.user;
    state.proven = page.proven;
    state.total = page.total;
    state.threshold = typeof page.threshold === "number" ? page.threshold : null;
    state.query = "";
    state.rows = page.memories;
    $("user").value = page.user;
    $("user").readOnly = page.proven;
    $("proven").hidden = !page.proven;
    render();
  } catch (err) {
    showError(err);
  }
}

async function search(query) {
  showError(null);
  try {
    const hits = await api("GET", "/memory/search", { ...userParam(), q: query, k: 50 });
    state.query = query;
    state.rows = hits.map(fromHit);
    render();
  } catch (err) {
    showError(err);
  }
}

async function feedback(row, score, tr) {
  showError(null);
  try {
    const result = await api("POST", "/memory/feedback", userParam(), { id: row.id, score });
    row.symbiosis = result.symbiosis;
    row.polarity = result.polarity;
    row.scored = true;
    tr.replaceWith(rowElement(row));
    drawChart(state.rows);
  } catch (err) {
    showError(err);
  }
}

// Forgetting is erasure: the first click arms the button, a second within 5 s erases.
async function forget(row, tr, event) {
  const b = event.currentTarget;
  if (!b.classList.contains("armed")) {
    b.classList.add("armed");
    b.textContent = "Erase?";
    setTimeout(() => {
      b.classList.remove("armed");
      b.textContent = "Forget";
    }, 5000);
    return;
  }
  showError(null);
  try {
    await api("DELETE", `/memory/${encodeURIComponent(row.id)}`, userParam());
    state.rows = state.rows.filter((r) => r.id !== row.id);
    if (!state.query) state.total -= 1;
    render();
  } catch (err) {
    showError(err);
  }
}

function svg(name, attrs, text) {
  const el = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (text !== undefined) el.textContent = text;
  return el;
}

// Symbiosis (y, 0..1) over time (x), one dot per memory coloured by polarity, area ~ strength.
function drawChart(rows) {
  const chart = $("chart");
  const W = 900, H = 240, L = 44, R = 16, T = 12, B = 30;
  const title = chart.querySelector("title");
  chart.replaceChildren(title);
  const points = rows.filter((r) => typeof r.time === "number");
  const times = points.map((r) => r.time);
  let t0 = Math.min(...times), t1 = Math.max(...times);
  if (!points.length) { t0 = Date.now() / 1000 - 86400; t1 = Date.now() / 1000; }
  if (t1 - t0 < 3600) { t0 -= 1800; t1 += 1800; }
  const pad = (t1 - t0) * 0.03; // keep the first and last dots off the axes
  t0 -= pad; t1 += pad;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (s) => T + (1 - s) * (H - T - B);
  for (const s of [0, 0.25, 0.5, 0.75, 1]) {
    chart.append(svg("line", { x1: L, x2: W - R, y1: y(s), y2: y(s), class: "grid" }));
    chart.append(svg("text", { x: L - 8, y: y(s) + 4, "text-anchor": "end" }, s.toFixed(2)));
  }
  if (state.threshold !== null) { // at or below it a memory is a repulsor
    const ty = y(state.threshold);
    chart.append(svg("line", { x1: L, x2: W - R, y1: ty, y2: ty, class: "mid threshold" }));
    chart.append(svg("text", { x: W - R, y: ty - 4, "text-anchor": "end", class: "note" },
      `threshold ${state.threshold.toFixed(2)}`));
  }
  chart.append(svg("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
  for (let i = 0; i <= 4; i += 1) {
    const t = t0 + ((t1 - t0) * i) / 4;
    const anchor = i === 0 ? "start" : i === 4 ? "end" : "middle";
    chart.append(svg("text", { x: x(t), y: H - 10, "text-anchor": anchor },
      formatTime(t).slice(0, 10)));
  }
  for (const r of points) {
    const score = r.scored && typeof r.symbiosis === "number" ? r.symbiosis : 0.5;
    const strength = typeof r.strength_now === "number" ? r.strength_now : r.strength;
    const radius = 3 + 6 * Math.sqrt(Math.max(0, Math.min(1, strength ?? 1)));
    const dot = svg("circle", { cx: x(r.time), cy: y(score), r: radius.toFixed(1),
      class: polarityOf(r), "data-id": r.id });
    dot.append(svg("title", {}, `${r.text.slice(0, 140)}\nsymbiosis ${number(score, 2)}`));
    chart.append(dot);
  }
  if (!points.length) {
    chart.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no memories"));
  }
}

function start() {
  const params = new URLSearchParams(location.search);
  state.user = params.get("user") || "";
  $("user").value = state.user;
  $("user-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.user = $("user").value.trim();
    state.offset = 0;
    load();
  });
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = $("q").value.trim();
    if (q) search(q); else load();
  });
  $("clear").addEventListener("click", () => { $("q").value = ""; load(); });
  $("newer").addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - PAGE_SIZE); load();
  });
  $("older").addEventListener("click", () => { state.offset += PAGE_SIZE; load(); });
  load();
}

document.addEventListener("DOMContentLoaded", start);
