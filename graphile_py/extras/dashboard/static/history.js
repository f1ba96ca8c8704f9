// graphile-py dashboard: the History tab: recorded attempts (workers run with --history).

import { $, el, fill, showLoading } from "./dom.js";
import { firstLine, outcomeBadge, took, when } from "./format.js";
import { opensJob } from "./jobs.js";
import { hooks, state } from "./state.js";

const FILTERS = ["task", "queue", "outcome", "since", "job_id", "limit"];

export function historyQuery() {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(state.history.filters)) {
    if (!value) continue;
    if (name === "since") params.set("since", new Date(Date.now() - Number(value) * 1000).toISOString());
    else params.set(name, value);
  }
  const before = state.history.pages[state.history.pages.length - 1];
  if (before) params.set("before_id", before);
  return "/history?" + params.toString();
}

export function renderHistory(page) {
  const rows = page.attempts.map((a) => opensJob(
    el("tr", { className: "attempt-row clickable", dataset: { attemptId: a.id, jobId: a.job_id, outcome: a.outcome }, tabindex: "0" },
      el("td", { className: "num mono" }, a.job_id),
      el("td", {}, a.task_identifier),
      el("td", {}, a.queue_name || el("span", { className: "muted" }, "–")),
      el("td", {}, a.attempt + "/" + a.max_attempts),
      el("td", {}, outcomeBadge(a.outcome)),
      el("td", {}, when(a.finished_at)),
      el("td", { className: "num" }, took(a.duration_seconds)),
      el("td", { className: "mono" }, a.pool_id),
      el("td", { className: "error-cell", title: a.error || "" }, firstLine(a.error))),
    a.job_id));
  fill($("history-table").tBodies[0], rows, "No attempt matches.");
  showHistoryNote(page.note || "");
  state.history.nextBeforeId = page.next_before_id;
  $("history-older").hidden = page.next_before_id === null;
  $("history-newest").hidden = state.history.pages.length <= 1;
}

export function showHistoryNote(message) {
  $("history-note").textContent = message;
  $("history-note").hidden = !message;
}

function applyHistoryFilters() {
  const form = $("history-filters");
  state.history.filters = {};
  for (const name of FILTERS) state.history.filters[name] = form.elements[name].value.trim();
  state.history.pages = [null];
  showLoading($("history-table").tBodies[0]);
  hooks.refresh();
}

export function wireHistory() {
  const form = $("history-filters");
  state.history.filters = { limit: form.elements.limit.value };
  form.addEventListener("submit", (event) => { event.preventDefault(); applyHistoryFilters(); });
  form.addEventListener("reset", () => setTimeout(applyHistoryFilters, 0));
  $("history-older").addEventListener("click", () => {
    if (state.history.nextBeforeId === null) return;
    state.history.pages.push(state.history.nextBeforeId);
    showLoading($("history-table").tBodies[0]);
    hooks.refresh();
  });
  $("history-newest").addEventListener("click", () => {
    state.history.pages = [null];
    showLoading($("history-table").tBodies[0]);
    hooks.refresh();
  });
}
