// graphile-py dashboard: addresses. Each tab has one (#/queue, #/workers, #/history; the
// older #queue forms still work) and so does each job (#/jobs/123), whose detail opens
// over the current tab; back and forward move between them.

import { VIEWS } from "./state.js";

export function parseHash(hash) {
  const path = hash.replace(/^#\/?/, "");
  const job = /^jobs\/([1-9][0-9]{0,15})$/.exec(path);
  if (job) return { view: null, job: Number(job[1]) };
  return { view: VIEWS.includes(path) ? path : "queue", job: null };
}

export const jobHash = (id) => "#/jobs/" + id;
export const viewHash = (view) => "#/" + view;

let onRoute = () => {};

// Call route(parsed) now and on every change of address.
export function startRouter(route) {
  onRoute = route;
  window.addEventListener("hashchange", () => onRoute(parseHash(location.hash)));
  onRoute(parseHash(location.hash));
}

// Open a job from the page: a new history entry, so Back returns to what was shown.
// Each entry remembers how many job entries lead back to a tab's own (depth), so that
// Close returns there in one step however many jobs were opened on the way.
export function goToJob(id) {
  if (location.hash === jobHash(id)) return;
  const here = history.state || {};
  const onJob = parseHash(location.hash).job !== null;
  const entry = onJob
    ? { depth: (here.depth || 0) + 1, base: Boolean(here.base) }
    : { depth: 1, base: true };
  history.pushState(entry, "", jobHash(id));
  onRoute(parseHash(location.hash));
}

// Close the job: back to the tab it was opened from, or (opened from a shared link, or
// gone) to the tab's own address in place of the job's.
export function leaveJob(view, { replace = false } = {}) {
  const here = history.state || {};
  if (!replace && here.base && here.depth > 0) {
    history.go(-here.depth);  // the hashchange that follows closes it
    return;
  }
  history.replaceState(null, "", viewHash(view));
  onRoute(parseHash(location.hash));
}
