// Profiling preload for the workers (BENCH_TRACE=1): `node --import tsx --import <this file>
// services/<name>/dist/main.js`. It wraps, in the worker's own module instances, the calls the
// publish-to-running path makes (containerd RPCs, NATS KV get/put, Publication, the executor's
// reconcile kicks, the outbox's emit and fdatasync) and records start and end times, and when
// bytes naming an app reach one of the worker's sockets (`socket.data`). Nothing of
// the workers' code is changed. Records are kept in memory and written to BENCH_TRACE_FILE (JSON
// lines) when the process exits, so tracing adds no I/O to the path it measures.
import { writeFileSync } from "node:fs";
import { open, unlink } from "node:fs/promises";
import { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Bucket } from "@nats-io/kv";
import { Outbox, Publication } from "@eve-tasks/bus";
import { ContainersClient, TasksClient } from "@eve-tasks/containerd";
import { KeyedRunner } from "@eve-tasks/executor";

/** One traced call: worker, operation, the app's uuid when known, start and end (epoch ms). */
export interface TraceRecord {
  w: string;
  op: string;
  k: string | undefined;
  s: number;
  e: number;
}

/** One instant on two clocks, and the worker's PID (which names its CPU profile file). */
export interface TraceClock {
  pid: number;
  epochMs: number;
  monotonicUs: number;
}

const worker = /services\/([^/]+)\//.exec(process.argv[1] ?? "")?.[1] ?? `pid-${process.pid}`;
const file = process.env.BENCH_TRACE_FILE;
const records: TraceRecord[] = [];
const now = (): number => performance.timeOrigin + performance.now();
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

function keyOf(arg: unknown): string | undefined {
  if (typeof arg === "string") return UUID.exec(arg)?.[0];
  if (typeof arg === "object" && arg !== null) {
    const o = arg as { id?: unknown; containerId?: unknown; uuid?: unknown };
    return keyOf(o.id ?? o.containerId ?? o.uuid);
  }
  return undefined;
}

type AnyFn = (this: unknown, ...args: unknown[]) => unknown;

/** Replaces `proto[name]` with a wrapper recording each call (sync or async). */
function wrap(proto: object, name: string, op: string): void {
  const target = proto as Record<string, AnyFn>;
  const original = target[name];
  if (typeof original !== "function") throw new Error(`trace-hooks: no method ${op}`);
  target[name] = function (this: unknown, ...args: unknown[]): unknown {
    const s = now();
    const k = keyOf(args[0]);
    const done = (): void => {
      records.push({ w: worker, op, k, s, e: now() });
    };
    const out = original.apply(this, args);
    if (out instanceof Promise) {
      out.then(done, done);
      return out;
    }
    done();
    return out;
  };
}

for (const m of ["create", "get", "update", "delete", "list"])
  wrap(ContainersClient.prototype, m, `containers.${m}`);
for (const m of ["create", "start", "get", "kill", "delete", "wait"])
  wrap(TasksClient.prototype, m, `tasks.${m}`);
for (const m of ["get", "put", "create", "update", "delete"]) wrap(Bucket.prototype, m, `kv.${m}`);
for (const m of ["publish", "putIfNewer", "deleteIfNotNewer", "unpublish", "get"]) {
  wrap(Publication.prototype, m, `publication.${m}`);
}
wrap(Outbox.prototype, "emit", "outbox.emit");
wrap(KeyedRunner.prototype, "kick", "executor.kick");

// FileHandle is not exported: take its prototype from a handle.
const probePath = join(tmpdir(), `eve-bench-trace-${process.pid}`);
const probe = await open(probePath, "w");
const fileHandleProto = Object.getPrototypeOf(probe) as object;
await probe.close();
await unlink(probePath);
wrap(fileHandleProto, "datasync", "fs.datasync");
wrap(fileHandleProto, "sync", "fs.sync");

// When the bytes naming an app reach the worker (a TaskConfig at the executor, a change at the
// spec-builder): the gap to the next traced call is the worker's own receive-and-decode time.
const socketProto = Socket.prototype as unknown as Record<string, AnyFn>;
const emit = socketProto.emit!;
socketProto.emit = function (this: unknown, event: unknown, ...args: unknown[]): unknown {
  if (event === "data" && Buffer.isBuffer(args[0])) {
    const t = now();
    const k = UUID.exec(args[0].toString("latin1"))?.[0];
    if (k !== undefined) records.push({ w: worker, op: "socket.data", k, s: t, e: t });
  }
  return emit.apply(this, [event, ...args]);
};

process.on("exit", () => {
  if (!file) return;
  writeFileSync(file, records.map((r) => JSON.stringify(r)).join("\n") + "\n", { flag: "a" });
  // The same instant on both clocks: the records' (epoch ms) and a V8 CPU profile's (monotonic
  // µs), so `profile-windows.ts` can cut this worker's profile (BENCH_CPU_PROF) to the records.
  const clock: TraceClock = {
    pid: process.pid,
    epochMs: now(),
    monotonicUs: Number(process.hrtime.bigint() / 1000n),
  };
  writeFileSync(`${file}.clock.json`, JSON.stringify(clock) + "\n");
});
