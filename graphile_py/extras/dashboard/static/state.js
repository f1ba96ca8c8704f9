// graphile-py dashboard: the page's shared state and constants.

export const STATES = ["ready", "scheduled", "running", "retrying", "failed"];
export const VIEWS = ["queue", "workers", "history"];
export const REFRESH_MS = 5000;

export const state = {
  view: "queue",      // the tab shown (a job's detail opens over it)
  info: null,         // GET /info: version, schema, whether actions are allowed
  payloadSchemas: {}, // GET /payload-schemas: typed tasks' JSON schemas (dashboard --tasks)
  filters: {},
  pages: [null],      // before_id of each page of jobs shown so far (null for the newest)
  nextBeforeId: null,
  history: { filters: {}, pages: [null], nextBeforeId: null },
  selected: null,     // id of the job in the detail panel
  timer: null,
};

// Set by app.js: reload what the current tab shows (modules call it after a change).
export const hooks = { refresh: async () => {} };
