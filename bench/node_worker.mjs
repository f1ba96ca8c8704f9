// Node side of the benchmark (bench.py starts it with `node node_worker.mjs <config.json>`).
//
// The config names the installed graphile-worker 0.18.0 package directory ("package"),
// the database ("dsn") and a "mode":
//
//   "run"  - a worker pool (run()) with "concurrency" and "maxPoolSize"; "batched" adds
//            localQueue.size 500, completeJobBatchDelay 0 and failJobBatchDelay 0. Prints
//            "READY" once its LISTEN connection is up; on a "stop" line (or stdin closing)
//            stops gracefully, writes the ids its noop task ran to "idsFile" and prints
//            "STOPPED <count>".
//   "bulk" - one WorkerUtils.addJobs() call of "count" jobs; prints "TIME <seconds>".
//   "one"  - "count" WorkerUtils.addJob() calls one after the other; prints "TIME <seconds>".
//
// Tasks (the same as py_worker.py's):
//   noop    - pushes the job id onto an in-memory array (no I/O, no database access);
//   latency - as its first line reads CLOCK_MONOTONIC (process.hrtime.bigint()), then
//             prints "RAN <job id> <ns>".
//
// Success lines are not logged (NO_LOG_SUCCESS=1, set by bench.py, as in graphile-worker's
// own perfTest); everything else uses graphile-worker's default logger.

import { EventEmitter } from "node:events";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const gw = await import(pathToFileURL(path.join(config.package, "dist", "index.js")).href);
const say = (line) => process.stdout.write(`${line}\n`);

async function runWorker() {
  const executed = [];
  const taskList = {
    noop: async (_payload, helpers) => {
      executed.push(Number(helpers.job.id));
    },
    latency: async (_payload, helpers) => {
      const now = process.hrtime.bigint();
      say(`RAN ${helpers.job.id} ${now}`);
    },
  };
  const events = new EventEmitter();
  let ready = false;
  events.on("pool:listen:success", () => {
    if (!ready) {
      ready = true;
      say("READY");
    }
  });
  const options = {
    connectionString: config.dsn,
    concurrency: config.concurrency,
    maxPoolSize: config.maxPoolSize,
    noHandleSignals: true,
    events,
    taskList,
  };
  if (config.batched) {
    options.preset = {
      worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 },
    };
  }
  const runner = await gw.run(options);
  let stopping = null;
  const stop = () => {
    stopping ??= runner.stop("stop requested by bench.py");
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
  writeFileSync(config.idsFile, executed.join("\n"));
  say(`STOPPED ${executed.length}`);
}

async function enqueue(mode) {
  const utils = await gw.makeWorkerUtils({ connectionString: config.dsn });
  try {
    // Warm-up: connection, prepared statements, plan cache.
    for (let i = 0; i < 5; i++) await utils.addJob("warmup", { i });
    await utils.addJobs([0, 1, 2, 3, 4].map((i) => ({ identifier: "warmup", payload: { i } })));
    let elapsed;
    if (mode === "bulk") {
      const specs = [];
      for (let i = 0; i < config.count; i++) specs.push({ identifier: "noop", payload: { i } });
      const started = performance.now();
      const jobs = await utils.addJobs(specs);
      elapsed = (performance.now() - started) / 1000;
      if (jobs.length !== config.count) throw new Error(`added ${jobs.length} of ${config.count}`);
    } else {
      const started = performance.now();
      for (let i = 0; i < config.count; i++) await utils.addJob("noop", { i });
      elapsed = (performance.now() - started) / 1000;
    }
    say(`TIME ${elapsed.toFixed(6)}`);
    say(`ADDED ${config.count}`);
  } finally {
    await utils.release();
  }
}

try {
  if (config.mode === "run") await runWorker();
  else if (config.mode === "bulk" || config.mode === "one") await enqueue(config.mode);
  else throw new Error(`unknown mode ${config.mode}`);
  process.exit(0);
} catch (error) {
  process.stderr.write(`node_worker.mjs failed: ${error?.stack ?? error}\n`);
  process.exit(1);
}
