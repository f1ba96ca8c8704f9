// graphile-py dashboard: a job's detail, in a panel at the side of the window (where the
// user is looking, whatever the page's scroll), at its own address #/jobs/ID.
//
// The panel is a list of sections, each a function of the job shown; to show something
// more (a task's payload schema, say), add a section with addDetailSection() or a field
// to JOB_FIELDS. A job that is gone (it succeeded, or was removed) but that the history
// remembers is shown from its recorded attempts instead.

import { api } from "./api.js";
import { redrawChart } from "./chart.js";
import { $, el, fill, showBanner } from "./dom.js";
import { badge, outcomeBadge, took, unservedMark, when } from "./format.js";
import { markSelected } from "./jobs.js";
import { leaveJob } from "./router.js";
import { state } from "./state.js";

// [label, job => value]; a value of null or undefined leaves the field out.
export const JOB_FIELDS = [
  ["state", (job) => badge(job.state)],
  ["worker", (job) => (job.unserved ? unservedMark(job.unserved, job.unserved) : undefined)],
  ["queue", (job) => job.queue_name || "–"],
  ["attempts", (job) => job.attempts + " of " + job.max_attempts],
  ["priority", (job) => job.priority],
  ["run at", (job) => when(job.run_at)],
  ["created", (job) => when(job.created_at)],
  ["updated", (job) => when(job.updated_at)],
  ["key", (job) => job.key || "–"],
  ["locked by", (job) => (job.locked_by ? el("span", {}, job.locked_by + " ", when(job.locked_at)) : "–")],
  ["flags", (job) => (job.flags.length ? job.flags.join(", ") : "–")],
  ["revision", (job) => job.revision],
];

// The same for a job that is gone: `last` is its latest recorded attempt.
export const GONE_FIELDS = [
  ["state", () => el("span", { className: "state state-gone" }, "gone")],
  ["queue", (_, last) => last.queue_name || "–"],
  ["key", (_, last) => last.key || "–"],
  ["last attempt", (_, last) => last.attempt + " of " + last.max_attempts + ", " + last.outcome],
  ["finished", (_, last) => when(last.finished_at)],
];

// What a section sees: { id, gone, job (null when gone), attempts, last (latest attempt) }.
export const DETAIL_SECTIONS = [
  { name: "fields", title: null, render: fieldsSection },
  { name: "payload", title: "Payload", render: payloadSection },
  { name: "payload-schema", title: "Payload schema", render: payloadSchemaSection },
  { name: "error", title: "Last error", render: errorSection },
  { name: "attempts", title: "Attempts recorded", render: attemptsSection },
];

// Add a section to every job's detail, after the one named `after` (else at the end).
export function addDetailSection(section, { after } = {}) {
  const at = DETAIL_SECTIONS.findIndex((s) => s.name === after);
  DETAIL_SECTIONS.splice(at < 0 ? DETAIL_SECTIONS.length : at + 1, 0, section);
}

function fieldsSection(detail) {
  const fields = detail.gone ? GONE_FIELDS : JOB_FIELDS;
  const items = [];
  for (const [name, value] of fields) {
    const shown = value(detail.job, detail.last);
    if (shown !== null && shown !== undefined) items.push(el("dt", {}, name), el("dd", {}, shown));
  }
  return el("dl", { id: "detail-fields", className: "fields" }, ...items);
}

function payloadSection(detail) {
  const text = !detail.gone
    ? JSON.stringify(detail.job.payload, null, 2)
    : detail.last.payload_stored
      ? "(kept in the history: " + detail.last.payload_bytes + " bytes; Replay reuses it)"
      : "(not kept: " + detail.last.payload_bytes + " bytes, over the history's payload limit)";
  return el("pre", { id: "detail-payload" }, text);
}

// A typed task's payload model as JSON schema; no section for untyped tasks (or when the
// dashboard was started without --tasks, and so knows no schema).
function payloadSchemaSection(detail) {
  const task = detail.gone ? detail.last.task_identifier : detail.job.task_identifier;
  const schema = state.payloadSchemas[task];
  return schema ? el("pre", { id: "detail-payload-schema" }, JSON.stringify(schema, null, 2)) : null;
}

// The whole error, line breaks kept: a task's traceback reads as Python printed it.
function errorSection(detail) {
  const error = detail.gone ? detail.last.error : detail.job.last_error;
  return el("pre", { id: "detail-error", className: error ? "traceback" : "muted" }, error || "–");
}

function attemptsSection(detail) {
  const table = el("table", { id: "detail-attempts" },
    el("thead", {}, el("tr", {}, ...["attempt", "outcome", "started", "took", "pool", "error"].map(
      (name) => el("th", { className: name === "took" ? "num" : null }, name)))),
    el("tbody"));
  const rows = detail.attempts.map((a) =>
    el("tr", { className: "attempt-row", dataset: { outcome: a.outcome, attempt: a.attempt } },
      el("td", {}, a.attempt + "/" + a.max_attempts),
      el("td", {}, outcomeBadge(a.outcome)),
      el("td", {}, when(a.started_at)),
      el("td", { className: "num" }, took(a.duration_seconds)),
      el("td", { className: "mono" }, a.pool_id),
      el("td", {}, a.error ? el("pre", { className: "attempt-error" }, a.error) : "–")));
  fill(table.tBodies[0], rows, "None recorded (workers record attempts with --history).");
  return table;
}

function render(detail) {
  const panel = $("detail");
  panel.dataset.loaded = "true";
  if (detail.gone) panel.dataset.gone = "true";
  else delete panel.dataset.gone;
  const task = detail.gone ? detail.last.task_identifier : detail.job.task_identifier;
  $("detail-title").textContent = "Job " + detail.id + " · " + task + (detail.gone ? " (gone)" : "");
  const sections = [];
  for (const section of DETAIL_SECTIONS) {
    const content = section.render(detail);
    if (!content) continue;
    sections.push(el("section", { className: "detail-section", dataset: { section: section.name } },
      section.title ? el("h3", {}, section.title) : null, content));
  }
  $("detail-sections").replaceChildren(...sections);
  const canAct = Boolean(state.info && state.info.allow_actions);
  $("detail-actions").hidden = !canAct;
  for (const id of ["retry", "reschedule", "remove"]) {
    $(id).hidden = detail.gone;
    $(id).disabled = !detail.gone && detail.job.state === "running";
  }
  $("reschedule-at").parentElement.hidden = detail.gone;
  setStatus(null);
}

function setStatus(kind, text, retry) {
  const status = $("detail-status");
  status.hidden = kind === null;
  status.className = "detail-status " + (kind || "");
  status.replaceChildren();
  if (kind === null) return;
  status.append(text);
  if (retry) {
    const button = el("button", { type: "button" }, "Try again");
    button.addEventListener("click", retry);
    status.append(" ", button);
  }
}

// Show job `id` in the panel (the address already says #/jobs/id).
export function openDetail(id) {
  const panel = $("detail");
  const same = state.selected === id && !panel.hidden;
  state.selected = id;
  markSelected();
  if (!same) {
    delete panel.dataset.loaded;
    delete panel.dataset.gone;
    $("detail-title").textContent = "Job " + id;
    $("detail-sections").replaceChildren();
    $("detail-actions").hidden = true;
    setStatus("loading", "Loading job " + id + "…");
    panel.hidden = false;
    document.body.classList.add("detail-open");
    redrawChart();
    // The list narrowed to make room, and grew taller: keep the row clicked in view.
    const row = document.querySelector("#view-" + state.view + ' tr[data-job-id="' + id + '"]');
    const box = row && row.getBoundingClientRect();
    if (box && (box.top < 0 || box.bottom > window.innerHeight)) {
      window.scrollBy(0, box.top - (window.innerHeight - box.height) / 2);
    }
    panel.scrollTop = 0;
    $("detail-title").focus({ preventScroll: true });
  }
  return loadDetail(id);
}

export function closeDetail() {
  state.selected = null;
  $("detail").hidden = true;
  document.body.classList.remove("detail-open");
  redrawChart();
  markSelected();
}

// (Re)load the job shown; on the auto-refresh, a failure keeps what is shown.
export async function loadDetail(id) {
  const panel = $("detail");
  try {
    let detail;
    try {
      const job = await api("/jobs/" + id);
      detail = { id, gone: false, job, attempts: job.history || [], last: null };
    } catch (error) {
      if (error.status !== 404) throw error;
      const timeline = await api("/jobs/" + id + "/attempts");  // gone, but maybe remembered
      const last = timeline.attempts[timeline.attempts.length - 1];
      detail = { id, gone: true, job: null, attempts: timeline.attempts, last };
    }
    if (state.selected === id) render(detail);
  } catch (error) {
    if (state.selected !== id || error.status === 401) return;
    if (error.status === 404) {
      if (panel.dataset.loaded) {
        // It was here a moment ago: a worker finished it, or someone removed it.
        closeDetail();
        leaveJob(state.view, { replace: true });
        showBanner("Job " + id + " no longer exists (it may have completed).", "info");
      } else {
        setStatus("failed", "There is no job " + id + ", and no recorded attempt of it"
          + " (it may have completed, or been removed).");
      }
      return;
    }
    const what = panel.dataset.loaded ? "Could not refresh job " : "Could not load job ";
    setStatus("failed", what + id + ": " + error.message, () => loadDetail(id));
  }
}

export function wireDetail(view) {
  $("detail-close").addEventListener("click", () => leaveJob(view()));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("detail").hidden) leaveJob(view());
  });
}
