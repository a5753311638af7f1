#!/usr/bin/env node
// A client of eve-tasks that uses none of its code: nats.js (@nats-io/transport-node and
// @nats-io/kv) and what docs/contract.md says. It applies the app of app.json under a fresh uuid,
// watches its TaskStatus until RUNNING, prints its task events, deletes it and waits until its
// status is gone.
//
//   NATS_URL=nats://127.0.0.1:4222 NATS_USER=controller \
//   NATS_PASSWORD_FILE=.data/nats-credentials/controller.password node examples/clients/nats-client.mjs
//
// NATS_PASSWORD may be given instead of NATS_PASSWORD_FILE; without NATS_USER it connects without
// credentials (a server that asks for none). APP_FILE names another app config.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import process from "node:process";
import { setTimeout as sleep } from "node:timers/promises";
import { clearTimeout, setTimeout } from "node:timers";
import { URL } from "node:url";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";

const TIMEOUT_MS = 90_000;
const say = (line) => process.stdout.write(`${line}\n`);

const url = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const user = process.env.NATS_USER;
const pass =
  process.env.NATS_PASSWORD ??
  (process.env.NATS_PASSWORD_FILE ? readFileSync(process.env.NATS_PASSWORD_FILE, "utf8").trim() : undefined);
const appFile = process.env.APP_FILE ?? new URL("app.json", import.meta.url);

// The contract: a user may receive replies only on its own inbox prefix, `_INBOX_<user>`.
const nc = await connect({
  servers: url,
  ...(user ? { user, pass, inboxPrefix: `_INBOX_${user}` } : {}),
  name: "eve-tasks example (nats.js)",
});
say(`connected to ${url}${user ? ` as ${user}` : ""}`);

// One bucket per publishing agent: we write `controller`, the task-executor writes its statuses.
const kvm = new Kvm(nc);
const controller = await kvm.open("controller");
const executor = await kvm.open("task-executor");

const app = JSON.parse(readFileSync(appFile, "utf8"));
app.uuid = randomUUID(); // the key and the uuid field must be equal
const uuid = app.uuid;
say(`app ${uuid}`);

// Subscribe before applying, so nothing is missed: the status (a KV watch gives the current
// value, then changes) and the app's task events (a plain subscription: from now on).
const status = await executor.watch({ key: `TaskStatus.${uuid}` });
const events = nc.subscribe(`eve.events.${uuid}`);
const seen = [];
void (async () => {
  for await (const m of events) {
    const e = m.json();
    seen.push(e.type);
    say(`event ${e.type}: ${e.message}`);
  }
})();

let last = null;
// One iterator for both waits (leaving a for-await loop would stop the watch).
const changes = status[Symbol.asyncIterator]();
/** Reads status changes until `done(status or null when deleted)` holds. */
async function statusUntil(done, what) {
  const timer = setTimeout(() => {
    say(`timed out waiting for ${what}; last status ${JSON.stringify(last)}`);
    process.exit(1);
  }, TIMEOUT_MS);
  for (;;) {
    const next = await changes.next();
    if (next.done) throw new Error("the status watch ended");
    const e = next.value;
    const value = e.operation === "PUT" ? e.json() : null;
    if (value === null) say(`status ${uuid}: gone`);
    else if (value.state !== last?.state)
      say(`status ${uuid}: ${value.state}${value.taskId ? ` task ${value.taskId}` : ""}`);
    last = value;
    if (value?.error) say(`error (${value.error.source}): ${value.error.message}`);
    if (done(value)) break;
  }
  clearTimeout(timer);
  return last;
}

// Apply: a KV put is acknowledged (an error such as a missing bucket is not lost).
const revision = await controller.put(`AppInstanceConfig.${uuid}`, JSON.stringify(app));
say(`applied at revision ${revision}`);
const running = await statusUntil((s) => s?.state === "RUNNING" || s?.state === "FAILED", "RUNNING");
if (running?.state !== "RUNNING") {
  say(`the app did not run: ${running?.state}`);
  process.exit(1);
}
say(
  `RUNNING: anchor PID ${running.taskId}, memory limit ${running.memoryLimitBytes} bytes, log ${running.logPath}`,
);

// Delete: a KV delete; the executor stops the task, deletes its container, then its status.
await controller.delete(`AppInstanceConfig.${uuid}`);
say("deleted the config");
await statusUntil((s) => s === null, "the status to go");
// The last events (exited, deleted) may come a moment after the status.
await nc.flush();
await sleep(500);
say(`events seen: ${seen.join(", ")}`);
status.stop();
events.unsubscribe();
await nc.drain();
say("done");
