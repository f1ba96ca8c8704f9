// graphile-py dashboard: plain JavaScript modules over the JSON API at /api/v1.
// This one starts the page: the tabs and addresses, the refresh every 5 s, the loading
// and failure states, the token. The other modules each draw one part of the page.

import { api, setToken, takeTokenFromUrl, whenUnauthorized } from "./api.js";
import { wireActions } from "./actions.js";
import { redrawChart, renderChart } from "./chart.js";
import { closeDetail, loadDetail, openDetail, wireDetail } from "./detail.js";
import { $, hideErrorBanner, showBanner, showFailed } from "./dom.js";
import { historyQuery, renderHistory, showHistoryNote, wireHistory } from "./history.js";
import { jobsQuery, renderJobs, wireJobs } from "./jobs.js";
import { renderOverview } from "./overview.js";
import { startRouter } from "./router.js";
import { REFRESH_MS, VIEWS, hooks, state } from "./state.js";
import { renderWorkers, showWorkersNote } from "./workers.js";

// Where a part's data goes: while one still says "Loading…", a failure says why there.
const TABLES = {
  stats: ["tasks-table", "queues-table", "pools-table"],
  jobs: ["jobs-table"],
  workers: ["workers-table"],
  history: ["history-table"],
};

function failed(part, error) {
  for (const id of TABLES[part] || []) {
    const tbody = $(id).tBodies[0];
    if (tbody.querySelector("tr.loading")) showFailed(tbody, error.message);
  }
  const placeholder = { stats: "totals", chart: "chart" }[part];
  if (placeholder && $(placeholder).querySelector(".loading")) {
    $(placeholder).replaceChildren(Object.assign(document.createElement("p"), {
      className: "failed", textContent: "Could not load: " + error.message,
    }));
  }
}

// Load the parts side by side; draw each that arrived; fail with the first error.
async function loadParts(parts) {
  const names = Object.keys(parts);
  const results = await Promise.allSettled(names.map((name) => parts[name].load()));
  let firstError = null;
  results.forEach((result, i) => {
    const name = names[i];
    if (result.status === "fulfilled") parts[name].render(result.value);
    else {
      if (result.reason.status === 401) throw result.reason;
      failed(name, result.reason);
      firstError = firstError || result.reason;
    }
  });
  if (firstError) throw firstError;
}

async function loadInfo() {
  state.info = await api("/info");
  state.payloadSchemas = await api("/payload-schemas");
  $("schema").textContent = "schema " + state.info.schema_name;
  $("mode").textContent = state.info.allow_actions ? "actions allowed" : "read-only";
  $("mode").className = "badge " + (state.info.allow_actions ? "badge-on" : "badge-off");
  $("retry-failed").hidden = !state.info.allow_actions;
  $("add-job").hidden = !state.info.allow_actions;
}

async function loadView(view) {
  if (view === "queue") {
    await loadParts({
      stats: { load: () => api("/stats"), render: renderOverview },
      jobs: { load: () => api(jobsQuery()), render: renderJobs },
      chart: { load: () => api("/metrics/history?bucket=60"), render: renderChart },
    });
  } else if (view === "workers") {
    const all = $("workers-all").checked ? "?all=true" : "";
    try {
      renderWorkers(await api("/workers" + all));
    } catch (error) {
      if (error.status === 401) throw error;
      failed("workers", error);
      showWorkersNote(error.message);  // e.g. the side schema is missing
    }
  } else {
    try {
      renderHistory(await api(historyQuery()));
    } catch (error) {
      if (error.status === 401) throw error;
      failed("history", error);
      showHistoryNote(error.message);
    }
  }
}

async function update() {
  const view = state.view;
  $("main").setAttribute("aria-busy", "true");
  try {
    if (!state.info) await loadInfo();
    await loadView(view);
    if (state.selected !== null) await loadDetail(state.selected);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    $("main").hidden = false;
    $("login").hidden = true;
    hideErrorBanner();
  } catch (error) {
    if (error.status === 401) return;
    const again = $("auto-refresh").checked ? " Trying again every " + REFRESH_MS / 1000 + " s." : "";
    showBanner(error.message + again);
    $("updated").textContent = "update failed " + new Date().toLocaleTimeString();
  } finally {
    $("main").removeAttribute("aria-busy");
  }
}

// One update at a time: a request made while one runs is served by one more afterwards.
let running = null;
let again = false;

function refresh() {
  if (running) {
    again = true;
    return running;
  }
  running = update().finally(() => {
    running = null;
    if (again) {
      again = false;
      refresh();
    }
  });
  return running;
}

function startRefresh() {
  stopRefresh();
  if ($("auto-refresh").checked) state.timer = setInterval(refresh, REFRESH_MS);
}

function stopRefresh() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
}

function showLogin() {
  $("login").hidden = false;
  $("main").hidden = true;
  stopRefresh();
}

function showView(name) {
  state.view = VIEWS.includes(name) ? name : "queue";
  for (const view of VIEWS) $("view-" + view).hidden = view !== state.view;
  for (const link of document.querySelectorAll("#tabs a")) {
    link.classList.toggle("current", link.dataset.view === state.view);
  }
}

let routed = false;

function route(where) {
  const before = state.view;
  if (where.job !== null) {
    openDetail(where.job);
  } else {
    if (state.selected !== null) closeDetail();
    showView(where.view);
  }
  if (!routed || state.view !== before) refresh();
  routed = true;
}

function init() {
  takeTokenFromUrl();
  whenUnauthorized(showLogin);
  hooks.refresh = refresh;
  $("refresh").addEventListener("click", refresh);
  $("auto-refresh").addEventListener("change", startRefresh);
  $("workers-all").addEventListener("change", refresh);
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    setToken($("token-input").value);
    state.info = null;
    refresh().then(startRefresh);
  });
  wireJobs();
  wireHistory();
  wireActions();
  wireDetail(() => state.view);
  window.addEventListener("resize", redrawChart);
  showView("queue");
  startRouter(route);
  startRefresh();
}

document.addEventListener("DOMContentLoaded", init);
