// graphile-py dashboard: the throughput chart (an SVG drawn from /metrics/history).

import { $, el, svg } from "./dom.js";

// The smallest of 1, 2, 5, 10, 20, 50, ... at or above value, for round axis labels.
function niceCeiling(value) {
  const power = 10 ** Math.floor(Math.log10(Math.max(value, 1)));
  for (const step of [1, 2, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

let shown = null;  // the last history drawn, to draw again at a new width

// Draw again at the container's width (the window, or the room the job panel leaves).
export function redrawChart() {
  if (shown) renderChart(shown);
}

export function renderChart(history) {
  shown = history;
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

