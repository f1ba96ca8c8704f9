// graphile-py dashboard: the Queue tab's overview: counts by state, tasks (and whether a
// worker serves each), named queues and the pools holding locks.

import { $, el, fill } from "./dom.js";
import { age, unservedMark, when } from "./format.js";
import { setFilters } from "./jobs.js";
import { STATES } from "./state.js";

const SERVED_TEXT = { unserved: "no live pool", unattempted: "never attempted", unknown: "?" };

export function renderOverview(stats) {
  renderTotals(stats);
  renderUnserved(stats);
  renderTasks(stats);
  renderQueues(stats);
}

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

function taskLink(name) {
  const link = el("a", { href: "#", className: "task-link" }, name);
  link.addEventListener("click", (event) => {
    event.preventDefault();
    setFilters({ task: name });
  });
  return link;
}

// Tasks with waiting jobs that no worker is known to serve: a job added with a typo
// would otherwise sit "ready" forever without a word.
function renderUnserved(stats) {
  const tasks = new Map(stats.tasks.map((task) => [task.task, task]));
  const items = (stats.unserved || []).map((name) => {
    const task = tasks.get(name);
    const waiting = task.counts.ready + task.counts.scheduled + task.counts.retrying;
    return el("li", { dataset: { task: name } },
      taskLink(name), " — " + waiting + " waiting job" + (waiting === 1 ? "" : "s") + ": ",
      task.service.note + ".");
  });
  $("unserved-list").replaceChildren(...items);
  $("unserved").hidden = items.length === 0;
}

function servedCell(service) {
  if (!service) return el("td", {}, "–");
  if (service.status === "served") {
    const text = service.pools.length ? service.pools.length + " pool" + (service.pools.length === 1 ? "" : "s") : "yes";
    return el("td", { title: service.note }, text);
  }
  if (service.status === "unknown") return el("td", { className: "muted", title: service.note }, "?");
  return el("td", {}, unservedMark(service.note, SERVED_TEXT[service.status]));
}

function renderTasks(stats) {
  const unserved = new Set(stats.unserved || []);
  const rows = stats.tasks.map((task) =>
    el("tr", { className: unserved.has(task.task) ? "unserved" : "", dataset: { task: task.task } },
      el("td", {}, taskLink(task.task)),
      ...STATES.map((name) =>
        el("td", { className: "num" + (name === "failed" && task.counts.failed ? " bad" : "") },
          task.counts[name])),
      el("td", { className: "num" }, age(task.oldest_ready_age_seconds)),
      servedCell(task.service)));
  fill($("tasks-table").tBodies[0], rows, "No jobs.");
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
  fill($("queues-table").tBodies[0], rows, "No named queues.");
  const pools = stats.pools.map((pool) =>
    el("tr", {},
      el("td", { className: "mono" }, pool.pool_id),
      el("td", { className: "num" }, pool.jobs),
      el("td", { className: "num" }, pool.queues),
      el("td", {}, age(pool.age_seconds) + " ago")));
  fill($("pools-table").tBodies[0], pools, "No pool holds a lock.");
}
