// graphile-py dashboard: how times, durations, states and errors are shown.

import { el } from "./dom.js";

// "1 job", "2 jobs": a count with its noun (logs.plural's twin).
export function count(n, noun, nouns) {
  return n + " " + (n === 1 ? noun : nouns || noun + "s");
}

export function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.abs(seconds);
  let text;
  if (s < 90) text = Math.round(s) + "s";
  else if (s < 5400) text = Math.round(s / 60) + "m";
  else if (s < 172800) text = (s / 3600).toFixed(1) + "h";
  else text = Math.round(s / 86400) + "d";
  return seconds < 0 ? "in " + text : text;
}

export function when(iso) {
  if (!iso) return el("span", { className: "muted" }, "–");
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  const text = seconds >= 0 ? age(seconds) + " ago" : age(seconds);
  return el("time", { datetime: iso, title: iso }, text);
}

export function took(seconds) {
  return seconds < 10 ? seconds.toFixed(3) + "s" : age(seconds);
}

export function badge(jobState) {
  return el("span", { className: "state state-" + jobState }, jobState);
}

export function outcomeBadge(outcome) {
  return el("span", { className: "state outcome-" + outcome }, outcome);
}

// A waiting job (or task) that no worker is known to serve; the note says what is known.
export function unservedMark(note, text = "no worker") {
  return el("span", { className: "unserved-mark", title: note }, "⚠ " + text);
}

export function firstLine(text) {
  if (!text) return "";
  const line = text.split("\n")[0];
  return line.length > 120 ? line.slice(0, 117) + "…" : line;
}
