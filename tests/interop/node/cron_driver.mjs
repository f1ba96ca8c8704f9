// Node side of tests/interop/test_cron_interop.py.
//
// Usage: node cron_driver.mjs <config.json>
//
// The config names the installed graphile-worker 0.18.0 package directory ("package")
// and a "mode":
//
//   "parse" - for each of "crontabs", run parseCrontab and print one JSON line:
//             [{"error": message} | {"items": [{task, identifier, options, payloadText,
//             ranges, matches}]}], where "payloadText" is JSON.stringify(payload),
//             "ranges" is the parsed match and "matches" says
//             whether the item matches each timestamp (ms since the epoch) in
//             "timestamps";
//   "run"   - print "LOADED", wait for a "go" line on stdin, then run() against
//             "connectionString"/"schema" with the "crontab" string and a task list
//             that does NOT contain the cron tasks (so their jobs stay in the table).
//             Prints "STARTED" on cron:started and stops when stdin closes (or on a
//             "stop" line), then prints "STOPPED".

import { EventEmitter } from "node:events";
import { readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const gw = await import(pathToFileURL(path.join(config.package, "dist", "index.js")).href);
const say = (line) => process.stdout.write(`${line}\n`);

function digest(ms) {
  const ts = new Date(ms);
  return {
    min: ts.getUTCMinutes(),
    hour: ts.getUTCHours(),
    date: ts.getUTCDate(),
    month: ts.getUTCMonth() + 1,
    dow: ts.getUTCDay(),
  };
}

function parseAll() {
  const digests = (config.timestamps ?? []).map(digest);
  const results = config.crontabs.map((text) => {
    let items;
    try {
      items = gw.parseCrontab(text);
    } catch (error) {
      return { error: error.message };
    }
    return {
      items: items.map((item) => ({
        task: item.task,
        identifier: item.identifier,
        options: item.options,
        payloadText: JSON.stringify(item.payload),
        ranges: item.match.parsedCronMatch,
        matches: digests.map((d) => item.match(d)),
      })),
    };
  });
  say(JSON.stringify(results));
}

function lines(onLine) {
  let buffer = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk) => {
    buffer += chunk;
    let index;
    while ((index = buffer.indexOf("\n")) >= 0) {
      onLine(buffer.slice(0, index).trim());
      buffer = buffer.slice(index + 1);
    }
  });
}

async function runCron() {
  const events = new EventEmitter();
  events.on("cron:started", () => say("STARTED"));
  let go;
  const ready = new Promise((resolve) => (go = resolve));
  let stopRequested;
  const stopSignal = new Promise((resolve) => (stopRequested = resolve));
  lines((line) => {
    if (line === "go") go();
    if (line === "stop") stopRequested();
  });
  process.stdin.on("end", () => {
    go();
    stopRequested();
  });
  process.stdin.resume();
  say("LOADED");
  await ready;
  const runner = await gw.run({
    connectionString: config.connectionString,
    schema: config.schema,
    concurrency: 1,
    noHandleSignals: true,
    pollInterval: 60_000,
    events,
    crontab: config.crontab,
    taskList: {
      not_a_cron_task: async () => {},
    },
  });
  await Promise.race([stopSignal, runner.promise]);
  await runner.stop();
  say("STOPPED");
}

try {
  if (config.mode === "parse") parseAll();
  else if (config.mode === "run") await runCron();
  else throw new Error(`unknown mode ${config.mode}`);
  process.exit(0);
} catch (error) {
  process.stderr.write(`cron_driver.mjs failed: ${error?.stack ?? error}\n`);
  process.exit(1);
}
