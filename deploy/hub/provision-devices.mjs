#!/usr/bin/env node
// On the hub, as admin: every device's bucket controller-<node> (replicas --replicas, 3 on a hub
// of three servers) and every device as a source of the hub's task-executor bucket and
// TASK_EVENTS stream (created when missing). Idempotent; run it when a device joins (after
// render-hub.mjs and a reload). `npm run hub` does the same at its start.
//
//   NATS_URL=nats://hub-1:4222,nats://hub-2:4222 NATS_USER=admin NATS_PASSWORD_FILE=/var/lib/eve-tasks/nats-credentials/admin.password \
//     node deploy/hub/provision-devices.mjs --device dev1 --device dev2 --replicas 3
//
// A device's own side (its controller mirror) is made by `npm start` in device mode; under
// systemd run this on the device against its own nats-server with --device-mirror <node>.
import process from "node:process";
import { parseArgs } from "node:util";
import { connectBus, ensureControllerMirror, ensureDevicesOnHub } from "@eve-tasks/bus";
import { natsConnection } from "@eve-tasks/runtime";
import { pino } from "pino";

const { values } = parseArgs({
  options: {
    device: { type: "string", multiple: true, default: [] },
    replicas: { type: "string", default: "3" },
    "device-mirror": { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
const say = (line) => process.stdout.write(`${line}\n`);
if (values.help) {
  say(
    "usage: NATS_URL=... NATS_USER=admin NATS_PASSWORD_FILE=... provision-devices.mjs (--device <node> ... [--replicas N] | --device-mirror <node>)",
  );
  process.exit(0);
}
let bus;
try {
  const conn = natsConnection({ NATS_URL: process.env.NATS_URL ?? "nats://127.0.0.1:4222", ...process.env });
  bus = await connectBus({ ...conn, name: "eve-tasks-provision-devices", logger: pino({ level: "warn" }) });
  if (values["device-mirror"] !== undefined) {
    const outcome = await ensureControllerMirror(bus, values["device-mirror"]);
    say(`controller: mirror of the hub's controller-${values["device-mirror"]}: ${outcome}`);
  } else {
    const replicas = Number(values.replicas);
    if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5)
      throw new Error(`--replicas: 1 to 5, got ${values.replicas}`);
    if (values.device.length === 0) throw new Error("give at least one --device");
    const r = await ensureDevicesOnHub(bus, values.device, { replicas });
    say(
      `buckets created: ${r.bucketsCreated.join(", ") || "none"}; sources added: ${r.sourcesAdded.join(", ") || "none"}`,
    );
  }
} catch (err) {
  process.stderr.write(`provision-devices: ${err.message}\n`);
  process.exitCode = 1;
} finally {
  await bus?.close();
}
