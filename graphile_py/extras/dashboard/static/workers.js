// graphile-py dashboard: the Workers tab: registered pools, and lock holders that never
// registered (Node workers, older graphile-py).

import { $, el, fill } from "./dom.js";
import { age, count, when } from "./format.js";

export function renderWorkers(report) {
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
        ? el("span", {}, pool.lost_by + " ", when(pool.lost_at), " (" + count(pool.jobs_rescued || 0, "job") + " released)")
        : "–")));
  fill($("workers-table").tBodies[0], rows, "No registered worker pool is running.");
  const holders = report.unregistered.map((holder) =>
    el("tr", {},
      el("td", { className: "mono" }, holder.pool_id),
      el("td", { className: "num" }, holder.jobs),
      el("td", { className: "num" }, holder.queues),
      el("td", {}, age(holder.age_seconds) + " ago")));
  fill($("unregistered-table").tBodies[0], holders, "");
  $("unregistered").hidden = holders.length === 0;
}

// The side schema may be missing (a database migrated by Node): say so in the tab.
export function showWorkersNote(message) {
  $("workers-note").textContent = message;
  $("workers-note").hidden = false;
}
