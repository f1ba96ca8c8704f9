// Node side of tests/interop/test_admin_and_keys_cross_runtime.py.
//
// Usage: node admin_driver.mjs <config.json>
//
// The config names the installed graphile-worker 0.18.0 package directory ("package"),
// the database ("connectionString", "schema") and a "mode":
//
//   "utils" - run "ops" in order through makeWorkerUtils() and print
//             "RESULTS <json array>", one entry per op: {"ok": value} or {"error": {...}}.
//             An op that fails does not stop the ones after it.
//   "run"   - run() continuously with the task "block" (concurrency from the config).
//             Prints "READY" once LISTEN is up. The task prints "STARTED <job id>" and
//             then waits until a "release <job id>" (or "release all") line arrives on
//             stdin, prints "FINISHED <job id>" and succeeds. A job id it has already
//             seen once is not blocked again. stdin EOF or a "stop" line releases every
//             waiting task and stops the runner gracefully; then it prints "STOPPED".
//
// Ops (values exactly as the JS API takes them; "runAt" is an ISO string):
//   {"op": "addJob", "identifier", "payload"?, "spec"?: {queueName, runAt, maxAttempts,
//        jobKey, jobKeyMode, priority, flags}}                   -> the returned job
//   {"op": "addJobs", "specs": [{identifier, payload, queueName, runAt, ...}],
//        "preserveRunAt"?: bool}                                 -> the returned jobs
//   {"op": "completeJobs", "ids"}                                -> the returned rows
//   {"op": "permanentlyFailJobs", "ids", "reason"?}              -> the returned rows
//   {"op": "rescheduleJobs", "ids", "options": {runAt, priority, attempts, maxAttempts}}
//   {"op": "forceUnlockWorkers", "ids"}                          -> null
//   {"op": "cleanup", "tasks"}                                   -> null
//   {"op": "sql", "text", "params"?}                             -> the result rows
// A key absent from an op is left undefined, so the JS helpers see exactly what a JS
// caller omitting it would pass.

import { EventEmitter } from "node:events";
import { readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const gw = await import(pathToFileURL(path.join(config.package, "dist", "index.js")).href);

const say = (line) => process.stdout.write(`${line}\n`);
const common = { connectionString: config.connectionString, schema: config.schema };

function withDate(object) {
  const copy = { ...object };
  if (typeof copy.runAt === "string") copy.runAt = new Date(copy.runAt);
  return copy;
}

async function perform(utils, op) {
  switch (op.op) {
    case "addJob":
      return utils.addJob(op.identifier, op.payload, withDate(op.spec ?? {}));
    case "addJobs":
      return utils.addJobs(op.specs.map(withDate), op.preserveRunAt);
    case "completeJobs":
      return utils.completeJobs(op.ids);
    case "permanentlyFailJobs":
      return utils.permanentlyFailJobs(op.ids, op.reason);
    case "rescheduleJobs":
      return utils.rescheduleJobs(op.ids, withDate(op.options ?? {}));
    case "forceUnlockWorkers":
      await utils.forceUnlockWorkers(op.ids);
      return null;
    case "cleanup":
      await utils.cleanup({ tasks: op.tasks });
      return null;
    case "sql":
      return utils.withPgClient(async (client) => (await client.query(op.text, op.params ?? [])).rows);
    default:
      throw new Error(`unknown op ${op.op}`);
  }
}

async function runUtils() {
  const results = [];
  const utils = await gw.makeWorkerUtils(common);
  try {
    for (const op of config.ops) {
      try {
        results.push({ ok: (await perform(utils, op)) ?? null });
      } catch (error) {
        results.push({
          error: {
            message: String(error?.message ?? error),
            code: error?.code ?? null,
            constraint: error?.constraint ?? null,
          },
        });
      }
    }
  } finally {
    await utils.release();
  }
  // pg returns bigint ids as strings and timestamps as Dates; JSON keeps both exact.
  say(`RESULTS ${JSON.stringify(results)}`);
}

async function runPool() {
  const waiting = new Map();
  const seen = new Set();
  let releaseEverything = false;
  const release = (id) => {
    const resolve = waiting.get(id);
    if (resolve) {
      waiting.delete(id);
      resolve();
    }
  };
  const releaseAll = () => {
    releaseEverything = true;
    for (const id of [...waiting.keys()]) release(id);
  };
  const block = async (_payload, helpers) => {
    const id = String(helpers.job.id);
    say(`STARTED ${id}`);
    if (!seen.has(id) && !releaseEverything) {
      seen.add(id);
      await new Promise((resolve) => waiting.set(id, resolve));
    }
    say(`FINISHED ${id}`);
  };

  const events = new EventEmitter();
  let ready = false;
  events.on("pool:listen:success", () => {
    if (!ready) {
      ready = true;
      say("READY");
    }
  });
  const runner = await gw.run({
    ...common,
    concurrency: config.concurrency ?? 1,
    pollInterval: config.pollInterval ?? 2000,
    noHandleSignals: true,
    events,
    taskList: { block },
  });
  let stopping = null;
  const stop = () => {
    releaseAll();
    stopping ??= runner.stop("stdin closed");
    return stopping;
  };
  process.stdin.setEncoding("utf8");
  let buffered = "";
  process.stdin.on("data", (chunk) => {
    buffered += chunk;
    const lines = buffered.split("\n");
    buffered = lines.pop();
    for (const raw of lines) {
      const line = raw.trim();
      if (line === "stop") stop();
      else if (line === "release all") releaseAll();
      else if (line.startsWith("release ")) release(line.slice("release ".length).trim());
    }
  });
  process.stdin.on("end", stop);
  process.stdin.resume();
  await runner.promise;
  await stop();
  say("STOPPED");
}

try {
  if (config.mode === "utils") await runUtils();
  else if (config.mode === "run") await runPool();
  else throw new Error(`unknown mode ${config.mode}`);
  process.exit(0);
} catch (error) {
  process.stderr.write(`admin_driver.mjs failed: ${error?.stack ?? error}\n`);
  process.exit(1);
}
