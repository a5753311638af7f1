#!/usr/bin/env node
// Renders permissions.conf (the NATS users and their subject permissions) for the nodes whose
// workers use this nats-server, from the one source both `npm start` and deploy/ use
// (@eve-tasks/embedded's renderNatsPermissions). The hypervisor-seed-fetcher's durable consumers
// are named after the node, so the controller and viewer users are denied exactly the ones of the
// nodes given here.
//
//   node deploy/nats/render-permissions.mjs --node <EVE_NODE> [--node <another> ...] \
//     > /etc/eve-tasks/nats/permissions.conf
//   node deploy/nats/render-permissions.mjs --check --node local deploy/nats/permissions.conf
//
// --check compares a file with the render instead (exit 1 and the first difference when they differ).
// Run from the built project (`npm ci && npm run build`).
import { readFile } from "node:fs/promises";
import process from "node:process";
import { parseArgs } from "node:util";
import { renderNatsPermissions } from "@eve-tasks/embedded";

const { values, positionals } = parseArgs({
  options: {
    node: { type: "string", multiple: true, default: [] },
    check: { type: "boolean", default: false },
    help: { type: "boolean", short: "h" },
  },
  allowPositionals: true,
});
if (values.help) {
  process.stdout.write("usage: render-permissions.mjs --node <name> [--node <name> ...] [--check <file>]\n");
  process.exit(0);
}
try {
  if (values.node.length === 0)
    throw new Error("give at least one --node (the EVE_NODE of the workers using this server)");
  const text = renderNatsPermissions({ nodes: values.node });
  if (!values.check) {
    process.stdout.write(text);
    process.exit(0);
  }
  const file = positionals[0];
  if (file === undefined) throw new Error("--check needs the file to compare");
  const have = (await readFile(file, "utf8")).split("\n");
  const want = text.split("\n");
  const at = want.findIndex((line, i) => have[i] !== line);
  if (at === -1 && have.length === want.length) process.exit(0);
  const line = at === -1 ? want.length : at;
  process.stderr.write(
    `render-permissions: ${file} is not the render for nodes ${values.node.join(", ")}; first difference at line ${line + 1}:\n` +
      `  file:   ${have[line] ?? "(end of file)"}\n  render: ${want[line] ?? "(end of render)"}\n`,
  );
  process.exit(1);
} catch (err) {
  process.stderr.write(`render-permissions: ${err.message}\n`);
  process.exit(1);
}
