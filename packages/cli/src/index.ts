/**
 * @eve-tasks/cli: the `eve-tasks` command (apply, get, watch, stop, start, restart, delete) as
 * small modules that run without a TTY, plus its pure output helpers.
 */
export * from "./errors.js";
export * from "./human.js";
export * from "./table.js";
export * from "./context.js";
export * from "./server.js";
export * from "./kv.js";
export * from "./apps.js";
export * from "./config-input.js";
export * from "./load-apps.js";
export * from "./get-view.js";
export * from "./watch-lines.js";
export * from "./wait-status.js";
export * from "./commands/apply.js";
export * from "./commands/get.js";
export * from "./commands/watch.js";
export * from "./commands/lifecycle.js";
export * from "./program.js";
export * from "./commands/networks.js";
