// Property test of the config path, with real parts: random AppInstanceConfigs (valid ones,
// invalid ones, hostile strings, huge values, wrong types, unknown fields, raw bytes that are no
// JSON at all) are put into the controller bucket of a private nats-server, and the real
// spec-builder and task-executor (separate processes, a private containerd) handle them. For
// every app the last revision published must end in a status the user watches (TaskStatus, its
// `error` naming that revision when the config was refused), a task running on an earlier good
// revision keeps running beside a refused one, and neither worker ever exits.
// FC_SEED=<n> replays a run; EVE_FUZZ_RUNS sets the number of batches (default sized for CI).
import { join } from "node:path";
import fc from "fast-check";
import type { KV } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, ensureBuckets, subscribe } from "@eve-tasks/bus";
import type { Bus, Subscription } from "@eve-tasks/bus";
import { ContainerdClient } from "@eve-tasks/containerd";
import { cleanupContainerd, startContainerd } from "@eve-tasks/embedded";
import { CONTAINERD_NAMESPACE, messageTable } from "@eve-tasks/schemas";
import type { TaskConfig, TaskStatus, TaskConfigSchema, TaskStatusSchema } from "@eve-tasks/schemas";
import { identityOf } from "../services/spec-builder/src/failed-task-config.js";
import {
  BUILT,
  deferCleanup,
  makeRootfs,
  spawnReplicas,
  tempDir,
  uuidMaker,
  waitFor,
  withPrivateNats,
} from "./harness/index.js";
import type { Replicas } from "./harness/index.js";

/** Batches (fast-check runs); each publishes {@link APPS_PER_BATCH} apps at once. */
const RUNS = Number(process.env.EVE_FUZZ_RUNS ?? 5);
const APPS_PER_BATCH = 8;
const SEED = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
/** How long one app may take to show its last revision in TaskStatus. */
const SETTLE_MS = 25_000;
const echo = process.env.EVE_TEST_ECHO === "1";
const newUuid = uuidMaker("f0227e57");

/** `value`, printed as `text` in fast-check's reports (JSON.stringify ignores the symbol). */
function shown<T extends object>(value: T, text: string): T {
  Object.defineProperty(value, fc.toStringMethod, { value: () => text });
  return value;
}

/** Strings an attacker would try in any field. */
const HOSTILE_STRINGS = [
  "",
  " ",
  "../../../../etc/shadow",
  "/proc/self/root/etc/shadow",
  "/",
  "/dev/sda",
  "/run/containerd/containerd.sock",
  "a\u0000b",
  "\u0000",
  "$(reboot)",
  "`id`",
  "${PATH}",
  "'; rm -rf / #",
  "\n\r\t",
  "%s%n%x",
  "__proto__",
  "constructor",
  "\ud800",
  "💥",
  "local",
  "x".repeat(300),
  "y".repeat(5000),
  "root:root",
  "-1",
  "NaN",
];

/** Numbers at and past every limit. */
const HOSTILE_NUMBERS = [
  -1,
  0,
  1,
  1.5,
  -0.5,
  2 ** 31,
  2 ** 32,
  2 ** 53,
  2 ** 53 + 2,
  -(2 ** 53),
  1e308,
  -1e308,
  16 * 1024 * 1024 + 1,
  1025,
];

const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(...HOSTILE_STRINGS),
  fc.constantFrom(...HOSTILE_NUMBERS),
  fc.constantFrom(null, true, false, [], {}, [null], { volume: null }, { host: {} }, { image: {} }),
  fc.jsonValue({ maxDepth: 3 }),
  fc.string({ unit: "binary", maxLength: 40 }),
  // Values whose error message is much longer than the value: one issue per element.
  fc.integer({ min: 100, max: 4000 }).map((n) =>
    shown(
      Array.from({ length: n }, () => 0),
      `[0 × ${n}]`,
    ),
  ),
  fc
    .integer({ min: 100, max: 2000 })
    .map((n) =>
      shown(Object.fromEntries(Array.from({ length: n }, (_, i) => [`K${i}`, i])), `{K0…K${n - 1}}`),
    ),
  fc.integer({ min: 100, max: 1000 }).map((n) =>
    shown(
      Array.from({ length: n }, () => ({})),
      `[{} × ${n}]`,
    ),
  ),
);

/** Paths of the fields a mutation may touch (and a few that do not exist). */
const PATHS = [
  "schemaVersion",
  "uuid",
  "version",
  "displayName",
  "activate",
  "restartCounter",
  "node",
  "arch",
  "virtualization",
  "resources",
  "resources.memoryMiB",
  "resources.vcpus",
  "resources.vmmOverheadMiB",
  "root",
  "root.volume",
  "root.volume.path",
  "root.volume.readOnly",
  "root.image",
  "root.image.ref",
  "root.host",
  "volumes",
  "process",
  "process.args",
  "process.args.0",
  "process.env",
  "process.env.X",
  "process.cwd",
  "process.user",
  "restartPolicy",
  "restartPolicy.mode",
  "restartPolicy.maxRestarts",
  "stopTimeoutMs",
  "interfaces",
  "vm",
  "vm.kernel",
  "unknownField",
  "resources.unknown",
  "__proto__",
];

type Mutation = { op: "set"; path: string; value: unknown } | { op: "delete"; path: string };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant("set" as const), path: fc.constantFrom(...PATHS), value: hostileValue }),
  fc.record({ op: fc.constant("delete" as const), path: fc.constantFrom(...PATHS) }),
);

/** One revision of an app: a (possibly mutated) config object, or raw bytes. */
type Revision =
  { kind: "config"; mutations: Mutation[] } | { kind: "raw"; body: string } | { kind: "uuid-of-other" };

const RAW_BODIES = [
  "",
  "{",
  "null",
  "[]",
  '"a string"',
  "1e999",
  "{}",
  '{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}',
  "\u00ff\u00fe",
  "[".repeat(5000) + "]".repeat(5000),
  JSON.stringify({ pad: "z".repeat(70_000) }),
  JSON.stringify({ pad: "z".repeat(60_000), virtualization: "v".repeat(4000) }),
];

const revision: fc.Arbitrary<Revision> = fc.oneof(
  { weight: 3, arbitrary: fc.constant<Revision>({ kind: "config", mutations: [] }) },
  {
    weight: 6,
    arbitrary: fc
      .array(mutation, { minLength: 1, maxLength: 3 })
      .map((m) => ({ kind: "config" as const, mutations: m })),
  },
  { weight: 2, arbitrary: fc.constantFrom(...RAW_BODIES).map((body) => ({ kind: "raw" as const, body })) },
  { weight: 1, arbitrary: fc.constant({ kind: "uuid-of-other" as const }) },
);

/** An app's history: one to three revisions, published in order. */
const appHistory = fc.array(revision, { minLength: 1, maxLength: 3 });

/** `obj` with `m` applied (paths with dots; an own `__proto__` key is a real key). */
function mutate(obj: Record<string, unknown>, m: Mutation): void {
  const parts = m.path.split(".");
  let at: unknown = obj;
  for (const p of parts.slice(0, -1)) {
    if (typeof at !== "object" || at === null) return;
    const rec = at as Record<string, unknown>;
    if (!Object.hasOwn(rec, p) || typeof rec[p] !== "object" || rec[p] === null) {
      if (m.op === "delete") return;
      Object.defineProperty(rec, p, { value: {}, enumerable: true, writable: true, configurable: true });
    }
    at = rec[p];
  }
  if (typeof at !== "object" || at === null) return;
  const last = parts[parts.length - 1]!;
  const rec = at as Record<string, unknown>;
  if (m.op === "delete") delete rec[last];
  else
    Object.defineProperty(rec, last, {
      value: m.value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
}

describe("random AppInstanceConfigs through the real spec-builder and task-executor", () => {
  let bus: Bus;
  let kv: KV;
  let containerd: ContainerdClient;
  let statuses: Subscription<typeof TaskStatusSchema>;
  let taskConfigs: Subscription<typeof TaskConfigSchema>;
  let workers: { specBuilder: Replicas; executor: Replicas };
  let rootfs: string;
  const published = new Set<string>();

  beforeAll(async () => {
    const dir = await tempDir("fuzz-");
    const volumes = join(dir, "volumes");
    rootfs = join(volumes, "busybox");
    await makeRootfs(rootfs);
    // Its own containerd too: an executor removes the containers no TaskConfig of its bus wants.
    const [nats, ctrd] = await Promise.all([withPrivateNats(), startContainerd({ dir: join(dir, "ctrd") })]);
    deferCleanup(async () => {
      await cleanupContainerd(ctrd.address, [CONTAINERD_NAMESPACE]).catch(() => undefined);
      await ctrd.stop();
    });
    const env = {
      NATS_URL: nats.url,
      CONTAINERD_ADDRESS: ctrd.address,
      EVE_DATA_DIR: join(dir, "data"),
      EVE_RUN_DIR: join(dir, "run"),
      EVE_VOLUME_ROOTS: volumes,
      EVE_NODE_MEMORY_MIB: "4096",
      LOG_LEVEL: "info",
    };
    bus = await connectBus({ servers: nats.url, name: "config-fuzz" });
    await ensureBuckets(bus);
    kv = await bus.bucket("controller");
    containerd = new ContainerdClient({ address: env.CONTAINERD_ADDRESS, namespace: CONTAINERD_NAMESPACE });
    workers = {
      specBuilder: spawnReplicas({ entry: BUILT.specBuilder, name: "spec-builder", env, echo }),
      executor: spawnReplicas({ entry: BUILT.taskExecutor, name: "task-executor", env, echo }),
    };
    await workers.executor.waitForLine((l) => l.json?.event === "resynced", 60_000);
    statuses = await subscribe(bus, {
      ...messageTable("TaskStatus"),
      onCreate: () => undefined,
    });
    taskConfigs = await subscribe(bus, {
      ...messageTable("TaskConfig"),
      onCreate: () => undefined,
    });
  }, 90_000);

  afterAll(async () => {
    await Promise.all(
      [...published].map((uuid) => kv.delete(`AppInstanceConfig.${uuid}`).catch(() => undefined)),
    );
    if (published.size > 0) {
      await waitFor(
        async () => {
          const left = (await containerd.containers.list()).filter((c) => published.has(c.id));
          return left.length === 0;
        },
        { timeoutMs: 60_000, message: "containers of the fuzzed apps left after deleting their configs" },
      );
    }
    await statuses?.close();
    await taskConfigs?.close();
    await bus?.close();
    containerd?.close();
  }, 90_000);

  /** A valid app that runs until SIGTERM. */
  function base(uuid: string): Record<string, unknown> {
    return {
      schemaVersion: 1,
      uuid,
      version: "1",
      displayName: "fuzz",
      activate: true,
      virtualization: "NOHYPER",
      resources: { memoryMiB: 16, vcpus: 1 },
      root: { volume: { path: rootfs, readOnly: true } },
      process: { args: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"], cwd: "/", user: "0:0" },
      stopTimeoutMs: 2000,
    };
  }

  /** The bytes of revision `r` of app `uuid`. */
  function bodyOf(uuid: string, r: Revision): string {
    switch (r.kind) {
      case "raw":
        return r.body;
      case "uuid-of-other":
        return JSON.stringify({ ...base(uuid), uuid: newUuid() });
      case "config": {
        const obj = base(uuid);
        for (const m of r.mutations) mutate(obj, m);
        return JSON.stringify(obj);
      }
    }
  }

  /** Why revision `revision` (stored as `body`) of one app does not show yet, or undefined when it does. */
  function problem(
    uuid: string,
    revision: number,
    body: string,
    before: TaskStatus | undefined,
  ): string | undefined {
    const tc: TaskConfig | undefined = taskConfigs.get(uuid);
    if (tc === undefined || tc.configRevision !== revision) {
      return `TaskConfig at ${tc?.configRevision ?? "none"}, not ${revision}`;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(body);
    } catch {
      raw = undefined;
    }
    // An app of another node is that node's executor's: its TaskConfig is the status here.
    if (identityOf(raw).node !== "local") return undefined;
    const s: TaskStatus | undefined = statuses.get(uuid);
    if (s === undefined) return "no TaskStatus";
    const shown = s.configRevision === revision || s.error?.configRevision === revision;
    if (!shown) return `TaskStatus at ${s.configRevision}, error at ${s.error?.configRevision ?? "none"}`;
    if (["BOOTING", "HALTING", "UNKNOWN"].includes(s.state)) return `TaskStatus still ${s.state}`;
    if (s.state === "PENDING" && s.waitingFor === null) return "PENDING waiting for nothing";
    if (tc.status === "FAILED") {
      if (s.error === null) return "a FAILED TaskConfig but no error in TaskStatus";
      if (s.error.message !== tc.error.message) return "TaskStatus shows another error than the TaskConfig";
      // A task running on the previous revision keeps running beside a refused one.
      if (before?.state === "RUNNING" && before.error === null && before.configRevision === revision - 1) {
        if (s.state !== "RUNNING" || s.taskId !== before.taskId) {
          return `the refused revision ended the task that was running (${before.taskId} → ${s.state} ${s.taskId})`;
        }
      }
    }
    return undefined;
  }

  /** Publishes one app's history, each revision given a few seconds, and waits until the last shows. */
  async function runApp(history: Revision[]): Promise<void> {
    const uuid = newUuid();
    published.add(uuid);
    for (const [i, r] of history.entries()) {
      const body = bodyOf(uuid, r);
      const before = statuses.get(uuid);
      const revision = await kv.put(`AppInstanceConfig.${uuid}`, body);
      const lastOne = i === history.length - 1;
      const settled = () => problem(uuid, revision, body, before);
      await waitFor(() => settled() === undefined, {
        timeoutMs: lastOne ? SETTLE_MS : 5_000,
        intervalMs: 100,
      }).catch(() => {
        if (!lastOne) return;
        throw new Error(
          `app ${uuid}: ${settled()}\n  history: ${JSON.stringify(history).slice(0, 2000)}\n` +
            `  TaskConfig: ${JSON.stringify(taskConfigs.get(uuid))?.slice(0, 1000)}\n` +
            `  TaskStatus: ${JSON.stringify(statuses.get(uuid))?.slice(0, 1000)}`,
        );
      });
    }
  }

  it(
    "every app ends in a status for its last revision and no worker exits",
    async () => {
      const started = Date.now();
      await fc.assert(
        fc.asyncProperty(
          fc.array(appHistory, { minLength: APPS_PER_BATCH, maxLength: APPS_PER_BATCH }),
          async (apps) => {
            await Promise.all(apps.map((h) => runApp(h)));
            for (const w of [workers.specBuilder, workers.executor]) {
              expect(w.replicas[0]!.child.exitCode, `${w.replicas[0]!.pid} exited`).toBeNull();
              expect(w.replicas[0]!.child.signalCode).toBeNull();
            }
          },
        ),
        {
          numRuns: RUNS,
          seed: SEED,
          endOnFailure: true,
          // The counterexamples hold 60 KB values: report the replay and the first failure only.
          asyncReporter: (run) => {
            if (!run.failed) return Promise.resolve();
            const cause =
              run.errorInstance instanceof Error ? run.errorInstance.message : String(run.errorInstance);
            throw new Error(
              `property failed (replay with FC_SEED=${run.seed}, path ${run.counterexamplePath}): ${cause.slice(0, 4000)}`,
            );
          },
        },
      );
      // A crash shows as a fatal log line or as text that is no log line (a stack trace).
      const fatal = [...workers.specBuilder.lines, ...workers.executor.lines].filter(
        (l) => l.json?.level === "fatal" || (l.json === undefined && l.text.trim() !== ""),
      );
      expect(fatal.map((l) => l.text)).toEqual([]);
      console.log(
        `config fuzz: ${RUNS} batches of ${APPS_PER_BATCH} apps (seed ${SEED}) in ${Date.now() - started} ms`,
      );
    },
    RUNS * (SETTLE_MS + 15_000),
  );

  it("logs a config under a key that is not a uuid (no TaskStatus can carry it) and goes on", async () => {
    // (Keys starting with `_` are reserved for the bus and never handed to the spec-builder.)
    const keys = ["not-a-uuid", "F0227E57-0000-4000-8000-00000000000A", "a-b_c"];
    for (const key of keys) await kv.put(`AppInstanceConfig.${key}`, JSON.stringify({ uuid: key }));
    for (const key of keys) {
      await workers.specBuilder.waitForLine(
        (l) => l.json?.event === "config-unreportable" && l.json.uuid === key,
        20_000,
      );
      await kv.delete(`AppInstanceConfig.${key}`);
    }
    // The worker is still there and still builds.
    const uuid = newUuid();
    published.add(uuid);
    const revision = await kv.put(`AppInstanceConfig.${uuid}`, JSON.stringify(base(uuid)));
    await waitFor(() => taskConfigs.get(uuid)?.configRevision === revision, { timeoutMs: 20_000 });
    expect(workers.specBuilder.replicas[0]!.child.exitCode).toBeNull();
    expect(taskConfigs.get("not-a-uuid")).toBeUndefined();
  });
});
