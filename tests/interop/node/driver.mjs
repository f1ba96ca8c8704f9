// Node side of tests/interop/test_jobs_cross_runtime.py.
//
// Usage: node driver.mjs <config.json>
//
// The config names the installed graphile-worker 0.18.0 package directory ("package"),
// the database ("connectionString", "schema") and a "mode":
//
//   "add"  - add jobs with the real Node API ("ops", see addJobs below) and print
//            "ADDED <json array of job ids>";
//   "once" - runOnce() with the configured tasks, then print "DONE";
//   "run"  - run() continuously; print "READY" once LISTEN is up, and stop gracefully
//            when stdin closes (or on a "stop" line), then print "STOPPED".
//
// Every task records its execution in the table public.exec_log (created by the test):
// runtime 'node', the job id, the task name, the payload as JSON text, the attempt
// number, the job's last_error and created_at, and start/end times from the database's clock_timestamp().
// A task spec is {"sleepMs": n, "fail": "message"}; "fail" makes the task throw after
// recording itself.

import { EventEmitter } from "node:events";
import { readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const gw = await import(pathToFileURL(path.join(config.package, "dist", "index.js")).href);

const say = (line) => process.stdout.write(`${line}\n`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const common = { connectionString: config.connectionString, schema: config.schema };

function makeTask(name, spec) {
  return async (payload, helpers) => {
    const job = helpers.job;
    const {
      rows: [row],
    } = await helpers.query(
      `insert into public.exec_log
         (runtime, job_id, task, queue_name, payload, attempts, last_error, job_created_at,
          started_at)
       values ('node', $1::bigint, $2, $3, $4, $5, $6, $7, clock_timestamp())
       returning id`,
      [
        String(job.id),
        name,
        job.job_queue_id == null ? null : await helpers.getQueueName(job.job_queue_id),
        JSON.stringify(payload),
        job.attempts,
        job.last_error,
        job.created_at,
      ],
    );
    if (spec.sleepMs) await sleep(spec.sleepMs);
    await helpers.query(
      "update public.exec_log set finished_at = clock_timestamp() where id = $1",
      [row.id],
    );
    if (spec.fail) throw new Error(spec.fail);
  };
}

function taskList() {
  const tasks = {};
  for (const [name, spec] of Object.entries(config.tasks ?? {})) tasks[name] = makeTask(name, spec);
  return tasks;
}

function jobSpec(job) {
  const spec = {};
  if (job.queueName != null) spec.queueName = job.queueName;
  if (job.maxAttempts != null) spec.maxAttempts = job.maxAttempts;
  if (job.priority != null) spec.priority = job.priority;
  if (job.jobKey != null) spec.jobKey = job.jobKey;
  if (job.runAt != null) spec.runAt = new Date(job.runAt);
  return spec;
}

// ops: [{"via": "quickAddJob"|"addJob"|"addJobs"|"sql", "jobs": [{identifier, payload,
//        queueName?, maxAttempts?, priority?, jobKey?, runAt?}]}]
async function addJobs() {
  const ids = [];
  const utils = await gw.makeWorkerUtils(common);
  try {
    for (const op of config.ops) {
      if (op.via === "quickAddJob") {
        for (const job of op.jobs) {
          const added = await gw.quickAddJob(common, job.identifier, job.payload, jobSpec(job));
          ids.push(String(added.id));
        }
      } else if (op.via === "addJob") {
        for (const job of op.jobs) {
          const added = await utils.addJob(job.identifier, job.payload, jobSpec(job));
          ids.push(String(added.id));
        }
      } else if (op.via === "addJobs") {
        const added = await utils.addJobs(
          op.jobs.map((job) => ({ identifier: job.identifier, payload: job.payload, ...jobSpec(job) })),
        );
        for (const job of added) ids.push(String(job.id));
      } else if (op.via === "sql") {
        await utils.withPgClient(async (client) => {
          const fn = `${client.escapeIdentifier(config.schema)}.add_job`;
          for (const job of op.jobs) {
            const { rows } = await client.query(
              `select (${fn}($1, $2::json, queue_name => $3, max_attempts => $4)).id::text as id`,
              [job.identifier, JSON.stringify(job.payload), job.queueName ?? null, job.maxAttempts ?? null],
            );
            ids.push(rows[0].id);
          }
        });
      } else {
        throw new Error(`unknown op ${op.via}`);
      }
    }
  } finally {
    await utils.release();
  }
  say(`ADDED ${JSON.stringify(ids)}`);
}

async function runOnce() {
  await gw.runOnce({
    ...common,
    concurrency: config.concurrency ?? 1,
    noHandleSignals: true,
    taskList: taskList(),
  });
  say("DONE");
}

async function runContinuously() {
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
    taskList: taskList(),
  });
  let stopping = null;
  const stop = () => {
    stopping ??= runner.stop("stdin closed");
    return stopping;
  };
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk) => {
    if (chunk.split("\n").some((line) => line.trim() === "stop")) stop();
  });
  process.stdin.on("end", stop);
  process.stdin.resume();
  await runner.promise;
  await stop();
  say("STOPPED");
}

try {
  if (config.mode === "add") await addJobs();
  else if (config.mode === "once") await runOnce();
  else if (config.mode === "run") await runContinuously();
  else throw new Error(`unknown mode ${config.mode}`);
  process.exit(0);
} catch (error) {
  process.stderr.write(`driver.mjs failed: ${error?.stack ?? error}\n`);
  process.exit(1);
}
