// The no-op task for Node graphile-worker's own CLI (bench.py runs `graphile-worker` with
// this directory's parent as its working directory): start+stop, and the CLI drain rows.
// It records the job id in memory; with BENCH_IDS_FILE set, the ids are written there
// when the process is asked to stop (the harness stops it only once the drain is
// complete) or exits, for the exactly-once check (cli_drain.py).
const { writeFileSync } = require("node:fs");

const ran = [];
const idsFile = process.env.BENCH_IDS_FILE;
if (idsFile) {
  const dump = () => writeFileSync(idsFile, ran.join("\n"));
  process.once("SIGINT", dump);
  process.once("SIGTERM", dump);
  process.on("exit", dump);
}

module.exports = async (_payload, helpers) => {
  ran.push(Number(helpers.job.id));
};
