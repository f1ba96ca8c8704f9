// graphile-py dashboard: what the buttons do (shown only when actions are allowed).

import { ApiError, api } from "./api.js";
import { $, showBanner } from "./dom.js";
import { count } from "./format.js";
import { goToJob } from "./router.js";
import { hooks, state } from "./state.js";

async function act(description, request) {
  try {
    const result = await request();
    showBanner(typeof description === "function" ? description(result) : description, "info");
  } catch (error) {
    showBanner(error.message);
  }
  await hooks.refresh();
}

function localToIso(value) {
  // datetime-local has no zone: it is the browser's local time.
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new ApiError(0, "Choose a date and time first.");
  return date.toISOString();
}

function readJobForm(form) {
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
  return body;
}

export function wireActions() {
  $("retry").addEventListener("click", () => {
    const id = state.selected;
    act("Job " + id + " will run now.", () => api("/jobs/" + id + "/retry", { method: "POST", body: {} }));
  });
  $("reschedule").addEventListener("click", () => {
    const id = state.selected;
    // Rescheduling keeps a job's attempts (as graphile-worker's reschedule_jobs does): a
    // job that has used them all stays failed, and the banner says so instead of "done".
    act((job) => job.state === "failed"
      ? "Job " + id + " was moved, but it stays permanently failed (attempt " + job.attempts
        + " of " + job.max_attempts + "): use Retry to run it again with its attempts reset."
      : "Job " + id + " rescheduled.", () =>
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
      goToJob(result.job.id);
      return result;
    });
  });
  $("retry-failed").addEventListener("click", () => {
    const body = { all_failed: true };
    if (state.filters.task) body.task = state.filters.task;
    if (state.filters.queue) body.queue = state.filters.queue;
    const scope = [body.task && "task " + body.task, body.queue && "queue " + body.queue].filter(Boolean).join(", ");
    if (!window.confirm("Retry every failed job" + (scope ? " of " + scope : "") + "?")) return;
    act((result) => count(result.changed.length, "failed job") + " retried.",
      () => api("/jobs/retry", { method: "POST", body }));
  });
  $("add-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target.elements;
    const said = (job) => (job.unserved
      ? "Job " + job.id + " added, but it may wait forever: " + job.unserved + "."
      : "Job " + job.id + " added.");
    act(said, async () => {
      const job = await api("/jobs", { method: "POST", body: readJobForm(form) });
      goToJob(job.id);
      return job;
    });
  });
}
