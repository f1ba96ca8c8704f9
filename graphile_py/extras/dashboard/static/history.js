// graphile-py dashboard: the worker pools, the job history and a job's attempts.
// Loaded with app.js, whose helpers (el, fill, when, age, state, ...) it uses.
"use strict";

// A job that is gone (it succeeded, or was removed) and that history remembers.
function renderGone(timeline) {
  const last = timeline.attempts[timeline.attempts.length - 1];
  $("detail").hidden = false;
  $("detail").dataset.gone = "true";
  $("detail-title").textContent = "Job " + timeline.job_id + " · " + last.task_identifier + " (gone)";
  const fields = [
    ["state", el("span", { className: "state state-gone" }, "gone")],
    ["queue", last.queue_name || "–"],
    ["key", last.key || "–"],
    ["last attempt", last.attempt + " of " + last.max_attempts + ", " + last.outcome],
    ["finished", when(last.finished_at)],
  ];
  $("detail-fields").replaceChildren(...fields.flatMap(([name, value]) =>
    [el("dt", {}, name), el("dd", {}, value)]));
  $("detail-payload").textContent = last.payload_stored
    ? "(kept in the history: " + last.payload_bytes + " bytes; Replay reuses it)"
    : "(not kept: " + last.payload_bytes + " bytes, over the history's payload limit)";
  $("detail-error").textContent = last.error || "–";
  renderAttempts(timeline.attempts);
  const canAct = state.info && state.info.allow_actions;
  $("detail-actions").hidden = !canAct;
  for (const id of ["retry", "reschedule", "remove"]) $(id).hidden = true;
  $("reschedule-at").parentElement.hidden = true;
}

function renderAttempts(attempts) {
  const rows = (attempts || []).map((a) =>
    el("tr", { className: "attempt-row", dataset: { outcome: a.outcome, attempt: a.attempt } },
      el("td", {}, a.attempt + "/" + a.max_attempts),
      el("td", {}, outcomeBadge(a.outcome)),
      el("td", {}, when(a.started_at)),
      el("td", { className: "num" }, took(a.duration_seconds)),
      el("td", { className: "mono" }, a.pool_id),
      el("td", {}, a.error ? el("pre", { className: "attempt-error" }, a.error) : "–")));
  fill($("detail-attempts").tBodies[0], rows,
    "None recorded (workers record attempts with --history).", 6);
}

function outcomeBadge(outcome) {
  return el("span", { className: "state outcome-" + outcome }, outcome);
}

function took(seconds) {
  return seconds < 10 ? seconds.toFixed(3) + "s" : age(seconds);
}

// -- workers and history ------------------------------------------------------------------------

function renderWorkers(report) {
  const alive = report.pools.filter((pool) => pool.state === "alive").length;
  $("workers-summary").textContent = alive + " alive";
  $("workers-note").hidden = true;
  const rows = report.pools.map((pool) =>
    el("tr", { className: "pool-row", dataset: { poolId: pool.id, state: pool.state } },
      el("td", { className: "mono" }, pool.id),
      el("td", {}, el("span", { className: "state pool-" + pool.state }, pool.state)),
      el("td", {}, pool.hostname),
      el("td", { className: "num" }, pool.pid),
      el("td", {}, pool.version),
      el("td", { className: "num", title: pool.tasks.join(", ") }, pool.concurrency),
      el("td", { className: pool.state === "overdue" ? "bad" : "" }, age(pool.heartbeat_age_seconds) + " ago"),
      el("td", { className: "num" }, pool.running_jobs),
      el("td", { className: "num" }, pool.jobs_succeeded),
      el("td", { className: "num" + (pool.jobs_failed ? " bad" : "") }, pool.jobs_failed),
      el("td", {}, when(pool.started_at)),
      el("td", {}, pool.lost_by
        ? el("span", {}, pool.lost_by + " ", when(pool.lost_at), " (" + (pool.jobs_rescued || 0) + " jobs released)")
        : "–")));
  fill($("workers-table").tBodies[0], rows, "No registered worker pool is running.", 12);
  const holders = report.unregistered.map((holder) =>
    el("tr", {},
      el("td", { className: "mono" }, holder.pool_id),
      el("td", { className: "num" }, holder.jobs),
      el("td", { className: "num" }, holder.queues),
      el("td", {}, age(holder.age_seconds) + " ago")));
  fill($("unregistered-table").tBodies[0], holders, "", 4);
  $("unregistered").hidden = holders.length === 0;
}

function historyQuery() {
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

function renderHistory(page) {
  const rows = page.attempts.map((a) => {
    const row = el("tr", { className: "attempt-row clickable", dataset: { attemptId: a.id, jobId: a.job_id, outcome: a.outcome }, tabindex: "0" },
      el("td", { className: "num mono" }, a.job_id),
      el("td", {}, a.task_identifier),
      el("td", {}, a.queue_name || el("span", { className: "muted" }, "–")),
      el("td", {}, a.attempt + "/" + a.max_attempts),
      el("td", {}, outcomeBadge(a.outcome)),
      el("td", {}, when(a.finished_at)),
      el("td", { className: "num" }, took(a.duration_seconds)),
      el("td", { className: "mono" }, a.pool_id),
      el("td", { className: "error-cell", title: a.error || "" }, firstLine(a.error)));
    row.addEventListener("click", () => openJob(a.job_id));
    row.addEventListener("keydown", (event) => { if (event.key === "Enter") openJob(a.job_id); });
    return row;
  });
  fill($("history-table").tBodies[0], rows, "No attempt matches.", 9);
  $("history-note").textContent = page.note || "";
  $("history-note").hidden = !page.note;
  state.history.nextBeforeId = page.next_before_id;
  $("history-older").hidden = page.next_before_id === null;
  $("history-newest").hidden = state.history.pages.length <= 1;
}

function applyHistoryFilters() {
  const form = $("history-filters");
  state.history.filters = {};
  for (const name of ["task", "queue", "outcome", "since", "job_id", "limit"]) {
    state.history.filters[name] = form.elements[name].value.trim();
  }
  state.history.pages = [null];
  refresh();
}
