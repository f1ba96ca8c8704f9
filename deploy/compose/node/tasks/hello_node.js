// A Node graphile-worker 0.18 task beside the Python workers: same database, same schema.
// Add one with `graphile-py add-job hello_node '{"name": "node"}'`.
module.exports = async (payload, helpers) => {
  helpers.logger.info(`Hello from Node, ${payload.name || "world"}`);
};
