// graphile-py dashboard: plain JavaScript over the JSON API at /api/v1.
// Everything the server sends is put in the page with textContent, never as HTML.
"use strict";

const API = "/api/v1";
const REFRESH_MS = 5000;
const TOKEN_KEY = "graphile-py-dashboard-token";
const STATES = ["ready", "scheduled", "running", "retrying", "failed"];

const VIEWS = ["queue", "workers", "history"];

const state = {
  view: "queue",
  info: null,
  history: { filters: {}, pages: [null], nextBeforeId: null },
  filters: {},
  pages: [],        // before_id of each page shown so far (null for the newest)
  nextBeforeId: null,
  selected: null,   // id of the job in the detail panel
  timer: null,
};

const $ = (id) => document.getElementById(id);

// -- the token: ?token=... once, then sessionStorage (the URL is cleaned at once) -----------

(function takeTokenFromUrl() {
  const url = new URL(window.location.href);
  const token = url.searchParams.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
})();

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const init = { method: options.method || "GET", headers, credentials: "same-origin" };
  if (init.method !== "GET") headers["X-Requested-With"] = "graphile-py-dashboard";
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  const response = await fetch(API + path, init);
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (response.status === 401) {
    showLogin();
    throw new ApiError(401, "Sign in to continue.");
  }
  if (!response.ok) {
    const message = (data && data.message) || response.status + " " + response.statusText;
    throw new ApiError(response.status, message);
  }
  return data;
}

// -- small DOM helpers ------------------------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null) continue;
    if (name === "className") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attributes = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function fill(tbody, rows, emptyText, columns) {
  tbody.replaceChildren();
  if (rows.length === 0) {
    tbody.append(el("tr", { className: "empty" }, el("td", { colspan: columns }, emptyText)));
    return;
  }
  tbody.append(...rows);
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.abs(seconds);
  let text;
  if (s < 90) text = Math.round(s) + "s";
  else if (s < 5400) text = Math.round(s / 60) + "m";
  else if (s < 172800) text = (s / 3600).toFixed(1) + "h";
  else text = Math.round(s / 86400) + "d";
  return seconds < 0 ? "in " + text : text;
}

function when(iso) {
  if (!iso) return el("span", { className: "muted" }, "–");
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  const text = seconds >= 0 ? age(seconds) + " ago" : age(seconds);
  return el("time", { datetime: iso, title: iso }, text);
}

function badge(jobState) {
  return el("span", { className: "state state-" + jobState }, jobState);
}

function showBanner(message, kind = "error") {
  const banner = $("banner");
  banner.textContent = message;
  banner.className = "banner banner-" + kind;
  banner.hidden = false;
  if (kind !== "error") setTimeout(() => { banner.hidden = true; }, 4000);
}

function showLogin() {
  $("login").hidden = false;
  $("main").hidden = true;
  stopRefresh();
}

// -- rendering --------------------------------------------------------------------------------

function renderTotals(stats) {
  const cards = STATES.map((name) =>
    el("div", { className: "card card-" + name, dataset: { state: name } },
      el("div", { className: "card-value" }, stats.totals[name]),
      el("div", { className: "card-label" }, name)));
  cards.push(el("div", { className: "card", dataset: { state: "total" } },
    el("div", { className: "card-value" }, stats.totals.total),
    el("div", { className: "card-label" }, "total")));
  cards.push(el("div", { className: "card" },
    el("div", { className: "card-value" }, age(stats.oldest_ready_age_seconds)),
    el("div", { className: "card-label" }, "oldest ready job")));
  $("totals").replaceChildren(...cards);
}

function renderTasks(stats) {
  const rows = stats.tasks.map((task) => {
    const link = el("a", { href: "#" }, task.task);
    link.addEventListener("click", (event) => {
      event.preventDefault();
      setFilters({ task: task.task });
    });
    return el("tr", {},
      el("td", {}, link),
      ...["ready", "scheduled", "running", "retrying", "failed"].map((name) =>
        el("td", { className: "num" + (name === "failed" && task.counts.failed ? " bad" : "") },
          task.counts[name])),
      el("td", { className: "num" }, age(task.oldest_ready_age_seconds)));
  });
  fill($("tasks-table").tBodies[0], rows, "No jobs.", 7);
}

function renderQueues(stats) {
  const rows = stats.queues.map((queue) => {
    const link = el("a", { href: "#" }, queue.name);
    link.addEventListener("click", (event) => {
      event.preventDefault();
      setFilters({ queue: queue.name });
    });
    return el("tr", { className: queue.locked_at ? "locked" : "" },
      el("td", {}, link),
      el("td", { className: "num" }, queue.counts.ready + queue.counts.scheduled),
      el("td", { className: "num" }, queue.counts.running),
      el("td", { className: "num" }, queue.counts.retrying),
      el("td", { className: "num" }, queue.counts.failed),
      el("td", {}, queue.locked_by ? el("span", {}, queue.locked_by + " ", when(queue.locked_at)) : "–"));
  });
  fill($("queues-table").tBodies[0], rows, "No named queues.", 6);
  const pools = stats.pools.map((pool) =>
    el("tr", {},
      el("td", { className: "mono" }, pool.pool_id),
      el("td", { className: "num" }, pool.jobs),
      el("td", { className: "num" }, pool.queues),
      el("td", {}, age(pool.age_seconds) + " ago")));
  fill($("pools-table").tBodies[0], pools, "No pool holds a lock.", 4);
}

function renderJobs(list) {
  const rows = list.jobs.map((job) => {
    const row = el("tr", { className: "job-row", dataset: { jobId: job.id, state: job.state }, tabindex: "0" },
      el("td", { className: "num mono" }, job.id),
      el("td", {}, job.task_identifier),
      el("td", {}, job.queue_name || el("span", { className: "muted" }, "–")),
      el("td", {}, badge(job.state)),
      el("td", { className: "num" }, job.attempts + "/" + job.max_attempts),
      el("td", {}, when(job.run_at)),
      el("td", { className: "error-cell", title: job.last_error || "" }, firstLine(job.last_error)));
    if (job.id === state.selected) row.classList.add("selected");
    row.addEventListener("click", () => openJob(job.id));
    row.addEventListener("keydown", (event) => { if (event.key === "Enter") openJob(job.id); });
    return row;
  });
  fill($("jobs-table").tBodies[0], rows, "No jobs match.", 7);
  state.nextBeforeId = list.next_before_id;
  $("older").hidden = list.next_before_id === null;
  $("newest").hidden = state.pages.length <= 1;
}

function firstLine(text) {
  if (!text) return "";
  const line = text.split("\n")[0];
  return line.length > 120 ? line.slice(0, 117) + "…" : line;
}

function renderDetail(job) {
  $("detail").hidden = false;
  $("detail-title").textContent = "Job " + job.id + " · " + job.task_identifier;
  const fields = [
    ["state", badge(job.state)],
    ["queue", job.queue_name || "–"],
    ["attempts", job.attempts + " of " + job.max_attempts],
    ["priority", job.priority],
    ["run at", when(job.run_at)],
    ["created", when(job.created_at)],
    ["updated", when(job.updated_at)],
    ["key", job.key || "–"],
    ["locked by", job.locked_by ? el("span", {}, job.locked_by + " ", when(job.locked_at)) : "–"],
    ["flags", job.flags.length ? job.flags.join(", ") : "–"],
    ["revision", job.revision],
  ];
  $("detail-fields").replaceChildren(...fields.flatMap(([name, value]) =>
    [el("dt", {}, name), el("dd", {}, value)]));
  $("detail-payload").textContent = JSON.stringify(job.payload, null, 2);
  $("detail-error").textContent = job.last_error || "–";
  renderAttempts(job.history);
  const canAct = state.info && state.info.allow_actions;
  $("detail-actions").hidden = !canAct;
  for (const id of ["retry", "reschedule", "remove"]) {
    $(id).hidden = false;
    $(id).disabled = job.state === "running";
  }
  $("reschedule-at").parentElement.hidden = false;
}

function showView(name) {
  state.view = VIEWS.includes(name) ? name : "queue";
  for (const view of VIEWS) $("view-" + view).hidden = view !== state.view;
  for (const link of document.querySelectorAll("#tabs a")) {
    link.classList.toggle("current", link.dataset.view === state.view);
  }
}

// The smallest of 1, 2, 5, 10, 20, 50, ... at or above value, for round axis labels.
function niceCeiling(value) {
  const power = 10 ** Math.floor(Math.log10(Math.max(value, 1)));
  for (const step of [1, 2, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

function renderChart(history) {
  const chart = $("chart");
  const bucketMs = history.bucket * 1000;
  const now = Date.now();
  const slots = Math.round(history.window / history.bucket);
  const lastSlot = Math.floor(now / bucketMs);
  const firstSlot = lastSlot - slots + 1;
  const byslot = new Map();
  for (const point of history.points) byslot.set(Math.floor(Date.parse(point.t) / bucketMs), point);
  const bars = [];
  let max = 1;
  const totals = { created: 0, completed: 0, failed: 0 };
  for (let slot = firstSlot; slot <= lastSlot; slot++) {
    const point = byslot.get(slot) || null;
    if (point) {
      max = Math.max(max, point.completed + point.failed, point.created);
      for (const name of Object.keys(totals)) totals[name] += point[name];
    }
    bars.push({ slot, point });
  }
  // Drawn at the container's own width, so text keeps its size instead of scaling.
  max = niceCeiling(max);
  const width = Math.max(chart.clientWidth, 320), height = 200, left = 40, bottom = 20, top = 8;
  const plotW = width - left - 8, plotH = height - bottom - top;
  const barW = plotW / slots;
  const y = (value) => top + plotH - (value / max) * plotH;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart-svg" });
  for (const fraction of [0, 0.5, 1]) {
    const value = Math.round(max * fraction);
    root.append(svg("line", { x1: left, x2: width - 8, y1: y(value), y2: y(value), class: "grid" }));
    const label = svg("text", { x: left - 6, y: y(value) + 4, class: "axis", "text-anchor": "end" });
    label.textContent = value;
    root.append(label);
  }
  const createdPath = [];
  bars.forEach(({ slot, point }, i) => {
    const x = left + i * barW;
    if (!point) return;
    const done = svg("rect", { x: x + 1, width: Math.max(barW - 2, 1), y: y(point.completed), height: plotH + top - y(point.completed), class: "bar-completed" });
    const failed = svg("rect", { x: x + 1, width: Math.max(barW - 2, 1), y: y(point.completed + point.failed), height: y(point.completed) - y(point.completed + point.failed), class: "bar-failed" });
    const title = svg("title");
    title.textContent = new Date(slot * bucketMs).toLocaleTimeString() + ": " + point.completed + " completed, " + point.failed + " failed, " + point.created + " created";
    done.append(title);
    failed.append(title.cloneNode(true));
    root.append(done, failed);
    createdPath.push((createdPath.length ? "L" : "M") + (x + barW / 2).toFixed(1) + " " + y(point.created).toFixed(1));
  });
  if (createdPath.length) root.append(svg("path", { d: createdPath.join(" "), class: "line-created" }));
  for (const minutesAgo of [60, 45, 30, 15, 0]) {
    const x = left + plotW - (minutesAgo * 60 / history.window) * plotW;
    const label = svg("text", { x: Math.min(Math.max(x, left + 12), width - 20), y: height - 4, class: "axis", "text-anchor": "middle" });
    label.textContent = minutesAgo ? "-" + minutesAgo + "m" : "now";
    root.append(label);
  }
  chart.replaceChildren(root);
  $("chart-legend").replaceChildren(
    el("span", { className: "key key-completed" }, totals.completed + " completed"),
    el("span", { className: "key key-failed" }, totals.failed + " failed"),
    el("span", { className: "key key-created" }, totals.created + " created"));
  const note = history.last_error
    ? "Sampling failed: " + history.last_error
    : "Per " + Math.round(history.bucket) + " s, sampled every " + history.interval + " s since the dashboard started.";
  $("chart-note").textContent = note;
}

// -- loading ----------------------------------------------------------------------------------

function jobsQuery() {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(state.filters)) if (value) params.set(name, value);
  const before = state.pages[state.pages.length - 1];
  if (before) params.set("before_id", before);
  return "/jobs?" + params.toString();
}

async function refresh() {
  try {
    if (!state.info) {
      state.info = await api("/info");
      $("schema").textContent = "schema " + state.info.schema_name;
      $("mode").textContent = state.info.allow_actions ? "actions allowed" : "read-only";
      $("mode").className = "badge " + (state.info.allow_actions ? "badge-on" : "badge-off");
      $("retry-failed").hidden = !state.info.allow_actions;
      $("add-job").hidden = !state.info.allow_actions;
    }
    if (state.view === "queue") {
      const [stats, jobs, history] = await Promise.all([
        api("/stats"), api(jobsQuery()), api("/metrics/history?bucket=60"),
      ]);
      renderTotals(stats);
      renderTasks(stats);
      renderQueues(stats);
      renderJobs(jobs);
      renderChart(history);
    } else if (state.view === "workers") {
      try {
        renderWorkers(await api("/workers" + ($("workers-all").checked ? "?all=true" : "")));
      } catch (error) {
        if (error.status === 401) throw error;
        $("workers-note").textContent = error.message;  // e.g. the side schema is missing
        $("workers-note").hidden = false;
      }
    } else {
      try {
        renderHistory(await api(historyQuery()));
      } catch (error) {
        if (error.status === 401) throw error;
        $("history-note").textContent = error.message;
        $("history-note").hidden = false;
      }
    }
    if (state.selected !== null) await loadDetail(state.selected, true);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    $("main").hidden = false;
    $("login").hidden = true;
    if ($("banner").className.includes("banner-error")) $("banner").hidden = true;
  } catch (error) {
    if (error.status !== 401) showBanner(error.message);
  }
}

async function loadDetail(id, quiet) {
  try {
    delete $("detail").dataset.gone;
    try {
      renderDetail(await api("/jobs/" + id));
    } catch (error) {
      if (error.status !== 404) throw error;
      renderGone(await api("/jobs/" + id + "/attempts"));  // gone, but maybe remembered
    }
  } catch (error) {
    if (error.status === 404) {
      state.selected = null;
      $("detail").hidden = true;
      if (!quiet) showBanner("Job " + id + " no longer exists (it may have completed).", "info");
    } else if (!quiet) {
      showBanner(error.message);
    }
  }
}

function openJob(id) {
  state.selected = id;
  for (const row of document.querySelectorAll(".job-row")) {
    row.classList.toggle("selected", Number(row.dataset.jobId) === id);
  }
  loadDetail(id, false);
}

function setFilters(filters) {
  const form = $("filters");
  for (const name of ["task", "queue", "state", "key"]) form.elements[name].value = filters[name] || "";
  applyFilters();
}

function applyFilters() {
  const form = $("filters");
  state.filters = {};
  for (const name of ["task", "queue", "state", "key", "limit"]) state.filters[name] = form.elements[name].value.trim();
  state.pages = [null];
  refresh();
}

function startRefresh() {
  stopRefresh();
  if ($("auto-refresh").checked) state.timer = setInterval(refresh, REFRESH_MS);
}

function stopRefresh() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
}

// -- actions ----------------------------------------------------------------------------------

async function act(description, request) {
  try {
    const result = await request();
    showBanner(typeof description === "function" ? description(result) : description, "info");
  } catch (error) {
    showBanner(error.message);
  }
  await refresh();
}

function localToIso(value) {
  // datetime-local has no zone: it is the browser's local time.
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new ApiError(0, "Choose a date and time first.");
  return date.toISOString();
}

function wireActions() {
  $("retry").addEventListener("click", () => {
    const id = state.selected;
    act("Job " + id + " will run now.", () => api("/jobs/" + id + "/retry", { method: "POST", body: {} }));
  });
  $("reschedule").addEventListener("click", () => {
    const id = state.selected;
    act("Job " + id + " rescheduled.", () =>
      api("/jobs/" + id + "/reschedule", { method: "POST", body: { run_at: localToIso($("reschedule-at").value) } }));
  });
  $("remove").addEventListener("click", () => {
    const id = state.selected;
    if (!window.confirm("Remove job " + id + "? This cannot be undone.")) return;
    act("Job " + id + " removed.", () => api("/jobs/" + id, { method: "DELETE" }));
  });
  $("replay").addEventListener("click", () => {
    const id = state.selected;
    act((result) => "Job " + id + " replayed as job " + result.job.id + ".", async () => {
      const result = await api("/jobs/" + id + "/replay", { method: "POST", body: {} });
      state.selected = result.job.id;
      return result;
    });
  });
  $("retry-failed").addEventListener("click", () => {
    const body = { all_failed: true };
    if (state.filters.task) body.task = state.filters.task;
    if (state.filters.queue) body.queue = state.filters.queue;
    const scope = [body.task && "task " + body.task, body.queue && "queue " + body.queue].filter(Boolean).join(", ");
    if (!window.confirm("Retry every failed job" + (scope ? " of " + scope : "") + "?")) return;
    act((result) => result.changed.length + " failed job(s) retried.",
      () => api("/jobs/retry", { method: "POST", body }));
  });
  $("add-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target.elements;
    act("Job added.", async () => {
      let payload;
      try {
        payload = JSON.parse(form.payload.value || "null");
      } catch (error) {
        throw new ApiError(0, "The payload is not valid JSON: " + error.message);
      }
      const body = { task: form.task.value.trim(), payload };
      if (form.queue.value.trim()) body.queue = form.queue.value.trim();
      if (form.run_at.value) body.run_at = localToIso(form.run_at.value);
      if (form.max_attempts.value) body.max_attempts = Number(form.max_attempts.value);
      if (form.priority.value) body.priority = Number(form.priority.value);
      if (form.key.value.trim()) body.key = form.key.value.trim();
      const flags = form.flags.value.split(",").map((f) => f.trim()).filter(Boolean);
      if (flags.length) body.flags = flags;
      const job = await api("/jobs", { method: "POST", body });
      state.selected = job.id;
    });
  });
}

function init() {
  $("refresh").addEventListener("click", refresh);
  $("auto-refresh").addEventListener("change", startRefresh);
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); applyFilters(); });
  $("filters").addEventListener("reset", () => setTimeout(applyFilters, 0));
  $("older").addEventListener("click", () => {
    if (state.nextBeforeId === null) return;
    state.pages.push(state.nextBeforeId);
    refresh();
  });
  $("newest").addEventListener("click", () => { state.pages = [null]; refresh(); });
  $("detail-close").addEventListener("click", () => {
    state.selected = null;
    $("detail").hidden = true;
    for (const row of document.querySelectorAll(".job-row.selected")) row.classList.remove("selected");
  });
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value);
    state.info = null;
    refresh().then(startRefresh);
  });
  $("history-filters").addEventListener("submit", (event) => { event.preventDefault(); applyHistoryFilters(); });
  $("history-filters").addEventListener("reset", () => setTimeout(applyHistoryFilters, 0));
  $("history-older").addEventListener("click", () => {
    if (state.history.nextBeforeId === null) return;
    state.history.pages.push(state.history.nextBeforeId);
    refresh();
  });
  $("history-newest").addEventListener("click", () => { state.history.pages = [null]; refresh(); });
  $("workers-all").addEventListener("change", refresh);
  window.addEventListener("hashchange", () => { showView(location.hash.slice(1)); refresh(); });
  showView(location.hash.slice(1));
  state.history.filters = { limit: $("history-filters").elements.limit.value };
  wireActions();
  const form = $("filters");
  state.filters = { limit: form.elements.limit.value };
  state.pages = [null];
  refresh().then(startRefresh);
}

document.addEventListener("DOMContentLoaded", init);
