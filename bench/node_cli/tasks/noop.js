// The no-op task for the start+stop measurement of Node graphile-worker's own CLI
// (bench.py runs `graphile-worker --once` with this directory as its working directory).
module.exports = async () => {};
