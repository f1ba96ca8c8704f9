// graphile-py dashboard: the jobs table, its filters and its pages.

import { $, el, fill, showLoading } from "./dom.js";
import { badge, firstLine, unservedMark, when } from "./format.js";
import { goToJob } from "./router.js";
import { hooks, state } from "./state.js";

const FILTERS = ["task", "queue", "state", "key"];

export function jobsQuery() {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(state.filters)) if (value) params.set(name, value);
  const before = state.pages[state.pages.length - 1];
  if (before) params.set("before_id", before);
  return "/jobs?" + params.toString();
}

// Make a table row open its job with a click or Enter.
export function opensJob(row, id) {
  row.addEventListener("click", () => goToJob(id));
  row.addEventListener("keydown", (event) => { if (event.key === "Enter") goToJob(id); });
  return row;
}

export function renderJobs(list) {
  const rows = list.jobs.map((job) => {
    const dataset = { jobId: job.id, state: job.state };
    if (job.unserved) dataset.unserved = "true";
    const row = el("tr", { className: "job-row", dataset, tabindex: "0" },
      el("td", { className: "num mono" }, job.id),
      el("td", {}, job.task_identifier),
      el("td", {}, job.queue_name || el("span", { className: "muted" }, "–")),
      el("td", {}, badge(job.state), job.unserved ? unservedMark(job.unserved) : null),
      el("td", { className: "num" }, job.attempts + "/" + job.max_attempts),
      el("td", {}, when(job.run_at)),
      el("td", { className: "error-cell", title: job.last_error || "" }, firstLine(job.last_error)));
    if (job.id === state.selected) row.classList.add("selected");
    return opensJob(row, job.id);
  });
  fill($("jobs-table").tBodies[0], rows, "No jobs match.");
  state.nextBeforeId = list.next_before_id;
  $("older").hidden = list.next_before_id === null;
  $("newest").hidden = state.pages.length <= 1;
}

export function markSelected() {
  for (const row of document.querySelectorAll(".job-row")) {
    row.classList.toggle("selected", Number(row.dataset.jobId) === state.selected);
  }
}

export function setFilters(filters) {
  const form = $("filters");
  for (const name of FILTERS) form.elements[name].value = filters[name] || "";
  applyFilters();
}

function applyFilters() {
  const form = $("filters");
  state.filters = {};
  for (const name of [...FILTERS, "limit"]) state.filters[name] = form.elements[name].value.trim();
  state.pages = [null];
  showLoading($("jobs-table").tBodies[0]);
  hooks.refresh();
}

export function wireJobs() {
  const form = $("filters");
  state.filters = { limit: form.elements.limit.value };
  state.pages = [null];
  form.addEventListener("submit", (event) => { event.preventDefault(); applyFilters(); });
  form.addEventListener("reset", () => setTimeout(applyFilters, 0));
  $("older").addEventListener("click", () => {
    if (state.nextBeforeId === null) return;
    state.pages.push(state.nextBeforeId);
    showLoading($("jobs-table").tBodies[0]);
    hooks.refresh();
  });
  $("newest").addEventListener("click", () => {
    state.pages = [null];
    showLoading($("jobs-table").tBodies[0]);
    hooks.refresh();
  });
}
