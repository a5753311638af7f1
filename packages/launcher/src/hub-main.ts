#!/usr/bin/env node
/**
 * `npm run hub -- --devices dev1,dev2 [--dir .hub] [--port 5222] [--servers 3]`: a fleet's hub on
 * this machine (loopback), until Ctrl-C. Prints each device's EVE_HUB_LEAF_URL and the CLI's
 * NATS_URL; stops every server it started, by PID, on Ctrl-C.
 */
import path from "node:path";
import { parseArgs } from "node:util";
import { pino } from "pino";
import { installShutdown } from "@eve-tasks/runtime";
import { HUB_DEFAULTS, startHub } from "./hub.js";

const usage = `usage: npm run hub -- --devices <node>[,<node>...] [--dir <dir>] [--port <n>] [--servers <n>]

Starts a fleet's hub on loopback: <servers> nats-servers (default 3) in one cluster, JetStream
domain "hub", client ports <port>.. (default 5222), routes <port>+100.., leaf nodes <port>+200..;
passwords generated once under <dir>/nats-credentials (default ./.hub). Every device listed gets
a leaf user, its controller-<node> bucket, and its place among the sources of the hub's
task-executor bucket and TASK_EVENTS stream. Ctrl-C stops the servers. See docs/fleet.md.
`;

function fail(text: string): never {
  process.stderr.write(`eve-tasks hub: ${text}\n${usage}`);
  process.exit(2);
}

let values: { devices?: string; dir?: string; port?: string; servers?: string; help?: boolean };
try {
  ({ values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      devices: { type: "string" },
      dir: { type: "string" },
      port: { type: "string" },
      servers: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  }));
} catch (err) {
  fail((err as Error).message);
}
if (values.help) {
  process.stdout.write(usage);
  process.exit(0);
}
const devices = (values.devices ?? "")
  .split(",")
  .map((d) => d.trim())
  .filter(Boolean);
if (devices.length === 0) fail("--devices: name at least one device (its EVE_NODE)");
const port = Number(values.port ?? HUB_DEFAULTS.basePort);
const servers = Number(values.servers ?? HUB_DEFAULTS.servers);
if (!Number.isInteger(port) || port < 1 || port > 65000) fail(`--port: ${values.port}`);
if (!Number.isInteger(servers) || servers < 1 || servers > 5)
  fail(`--servers: 1 to 5, got ${values.servers}`);
const dir = path.resolve(values.dir ?? ".hub");
const logger = pino({ level: process.env.LOG_LEVEL ?? "warn" });
const lifecycle = installShutdown({ logger, signals: ["SIGINT", "SIGTERM", "SIGHUP"], graceMs: 30_000 });
try {
  const hub = await startHub({ dir, devices, servers, basePort: port, logger });
  lifecycle.onShutdown("stop the hub's servers", async () => {
    await hub.stop();
    process.stdout.write("hub stopped\n");
  });
  const lines = [
    `hub: ${hub.servers.length} server(s), JetStream domain hub, replicas ${hub.replicas}, data in ${hub.dir}`,
    ...hub.servers.map(
      (s) => `  ${s.name}  pid ${s.process?.pid}  clients ${s.clientUrl}  leaf nodes ${s.leafUrl}`,
    ),
    "",
    "the CLI against the hub:",
    `  NATS_URL=${hub.natsUrl} NATS_USER=controller NATS_PASSWORD_FILE=${hub.passwordFile("controller")} npx eve-tasks get`,
    "",
    "devices (each: npm start with these, plus its own EVE_DATA_DIR, EVE_RUN_DIR and EVE_NATS_PORT):",
  ];
  for (const d of devices) {
    lines.push(
      `  EVE_NODE=${d} EVE_HUB_LEAF_URL=${hub.leafUrls.replaceAll("nats-leaf://", `nats-leaf://device-${d}@`)} ` +
        `EVE_HUB_LEAF_PASSWORD_FILE=${hub.passwordFile(`device-${d}`)}`,
    );
  }
  if (hub.provisioning.bucketsCreated.length > 0)
    lines.push("", `created: ${hub.provisioning.bucketsCreated.join(", ")}`);
  lines.push("", "Ctrl-C stops the hub.");
  process.stdout.write(lines.join("\n") + "\n");
} catch (err) {
  process.stderr.write(`eve-tasks hub: cannot start: ${(err as Error).message}\n`);
  void lifecycle.exitAfterShutdown("start failed", 1);
}
await lifecycle.stopped;
