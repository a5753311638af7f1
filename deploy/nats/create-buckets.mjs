#!/usr/bin/env node
// Creates (or checks) every eve-tasks bucket and the TASK_EVENTS stream, as an operator, before
// the workers start: with the bus's own configuration (file storage, 1 MiB values, history 1) and
// the replicas asked for. On a 3-node cluster run it once with `--replicas 3`; it also raises the
// replicas of a bucket that already exists with fewer (e.g. one a worker created, replicas 1).
// A bucket with another configuration is reported and left alone (exit 1), as the workers do.
//
//   NATS_URL=nats://127.0.0.1:4222 NATS_USER=admin NATS_PASSWORD_FILE=/var/lib/eve-tasks/nats-credentials/admin.password \
//     node deploy/nats/create-buckets.mjs [--replicas N]
//
// The credentials are the workers' convention: NATS_USER with NATS_PASSWORD_FILE (or NATS_PASSWORD),
// from the environment only (never from the command line, which `ps` shows).
// Run from the built project (`npm ci && npm run build`): it uses @eve-tasks/bus's configuration.
import process from "node:process";
import { parseArgs } from "node:util";
import { Kvm } from "@nats-io/kv";
import {
  BUCKET_CONFIG,
  EVENTS_STREAM_CONFIG,
  connectBus,
  ensureBucket,
  ensureEventsStream,
  streamOf,
} from "@eve-tasks/bus";
import { natsConnection } from "@eve-tasks/runtime";
import { agents } from "@eve-tasks/schemas";

const say = (line) => process.stdout.write(`${line}\n`);

async function streamInfo(jsm, name) {
  try {
    return await jsm.streams.info(name);
  } catch (err) {
    if (/stream not found/i.test(err.message)) return undefined;
    throw err;
  }
}

/** Raises a stream's replicas to `replicas` (never lowers them). */
async function raiseReplicas(jsm, name, info, replicas) {
  const have = info.config.num_replicas || 1;
  if (have >= replicas) {
    say(`${name}: exists, replicas ${have}`);
    return;
  }
  await jsm.streams.update(name, { ...info.config, num_replicas: replicas });
  say(`${name}: replicas ${have} -> ${replicas}`);
}

async function main() {
  const { values } = parseArgs({
    options: { replicas: { type: "string", default: "1" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    say("usage: NATS_URL=... NATS_USER=admin NATS_PASSWORD_FILE=... create-buckets.mjs [--replicas N]");
    return 0;
  }
  const replicas = Number(values.replicas);
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
    throw new Error(`--replicas must be an integer from 1 to 5, got ${values.replicas}`);
  }
  const env = (name) => process.env[name] || undefined;
  const bus = await connectBus({
    ...natsConnection({
      NATS_URL: env("NATS_URL") ?? "nats://127.0.0.1:4222",
      NATS_USER: env("NATS_USER"),
      NATS_PASSWORD: env("NATS_PASSWORD"),
      NATS_PASSWORD_FILE: env("NATS_PASSWORD_FILE"),
    }),
    name: "eve-tasks create-buckets",
  });
  const nc = bus.nc;
  try {
    // A standalone server accepts num_replicas 3 and keeps one copy: refuse rather than pretend.
    if (replicas > 1 && !nc.info?.cluster) {
      throw new Error(`--replicas ${replicas} needs a clustered nats-server; this one has no cluster`);
    }
    const { js, jsm } = bus;
    for (const agent of agents) {
      const name = streamOf(agent);
      const info = await streamInfo(jsm, name);
      if (info) {
        await ensureBucket(bus, agent);
        await raiseReplicas(jsm, name, info, replicas);
      } else {
        await new Kvm(js).create(agent, { ...BUCKET_CONFIG, replicas });
        say(`${name}: created, replicas ${replicas}`);
      }
    }
    const name = EVENTS_STREAM_CONFIG.name;
    const info = await streamInfo(jsm, name);
    if (info) {
      await ensureEventsStream(bus);
      await raiseReplicas(jsm, name, info, replicas);
    } else {
      await jsm.streams.add({
        ...EVENTS_STREAM_CONFIG,
        subjects: [...EVENTS_STREAM_CONFIG.subjects],
        num_replicas: replicas,
      });
      say(`${name}: created, replicas ${replicas}`);
    }
  } finally {
    await bus.close();
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`create-buckets: ${err.message}\n`);
    process.exit(1);
  },
);
