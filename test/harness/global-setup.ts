// vitest globalSetup: one nats-server (JetStream, random loopback port) and one private
// containerd (own root, state and sockets) for the whole run, handed to tests via inject().
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { cleanupContainerd, removeTreeSafely, startContainerd, startNatsServer } from "@eve-tasks/embedded";
import type { RunningContainerd, RunningNatsServer } from "@eve-tasks/embedded";
import { RUNTIME_CACHE, buildAllRuntimes } from "./runtimes.js";
import { removeStaleShimSockets, shimSocketFiles } from "./shim-sockets.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Client URL of the shared nats-server (JetStream on), e.g. nats://127.0.0.1:41234. */
    natsUrl: string;
    /** gRPC unix socket of the shared private containerd. */
    containerdAddress: string;
    /** The run's temp directory (logs: nats/nats-server.log, containerd/containerd.log). */
    harnessDir: string;
  }
}

/** Set EVE_TEST_KEEP=1 to keep the temp dir (logs, stores) after the run. */
const keep = process.env.EVE_TEST_KEEP === "1";

function log(line: string): void {
  process.stderr.write(`[harness] ${line}\n`);
}

/**
 * Starts the shared services and provides `natsUrl`, `containerdAddress` and `harnessDir`.
 * Returns the teardown: removes every containerd task and container (so no shim outlives the
 * run), stops containerd and nats-server by their PIDs, removes the sockets killed shims left
 * (see shim-sockets.ts), removes the temp dir.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started = Date.now();
  const shimSocketsBefore = shimSocketFiles();
  // The built-in runtime images, once per run (cached per package version across runs), before
  // any test: many test files use them, and launchers started by tests link them from here.
  await buildAllRuntimes(log);
  process.env.EVE_RUNTIME_IMAGE_CACHE = RUNTIME_CACHE;
  // Short: the containerd sockets live directly in it (108-byte limit on socket paths).
  const dir = await mkdtemp(join(tmpdir(), "eve-tasks-test-"));
  // Both at once; if either fails, stop the one that did start.
  const [natsResult, containerdResult] = await Promise.allSettled([
    startNatsServer({ storeDir: join(dir, "nats"), serverName: "eve-tasks-test" }),
    startContainerd({ dir: join(dir, "containerd"), socketDir: dir }),
  ]);
  if (natsResult.status === "rejected" || containerdResult.status === "rejected") {
    await Promise.allSettled([
      natsResult.status === "fulfilled" ? natsResult.value.stop() : undefined,
      containerdResult.status === "fulfilled" ? containerdResult.value.stop() : undefined,
    ]);
    const failures: unknown[] = [];
    for (const r of [natsResult, containerdResult]) if (r.status === "rejected") failures.push(r.reason);
    const reasons = failures.map((f) => (f instanceof Error ? f.message : String(f)));
    throw new Error(
      `test harness could not start its services (logs kept in ${dir}). It needs root and nats-server, containerd and runc installed (run \`npm run prerequisites\`).\n${reasons.join("\n")}`,
      { cause: failures[0] },
    );
  }
  const nats: RunningNatsServer = natsResult.value;
  const containerd: RunningContainerd = containerdResult.value;

  project.provide("natsUrl", nats.url);
  project.provide("containerdAddress", containerd.address);
  project.provide("harnessDir", dir);
  log(
    `nats-server ${nats.url} (PID ${nats.pid}), containerd ${containerd.address} (PID ${containerd.pid}), ready in ${Date.now() - started} ms; dir ${dir}`,
  );

  return async function teardown(): Promise<void> {
    const stopping = Date.now();
    const errors: unknown[] = [];
    try {
      await cleanupContainerd(containerd.address);
    } catch (err) {
      errors.push(err);
    }
    for (const stop of [() => containerd.stop(), () => nats.stop()]) {
      try {
        await stop();
      } catch (err) {
        errors.push(err);
      }
    }
    const stale = removeStaleShimSockets(shimSocketsBefore);
    if (stale.length > 0)
      log(`removed ${stale.length} shim socket(s) no process listened on: ${stale.join(", ")}`);
    if (keep || errors.length > 0) log(`kept ${dir}`);
    else await removeTreeSafely(dir);
    log(`services stopped in ${Date.now() - stopping} ms`);
    if (errors.length > 0) {
      throw new AggregateError(errors, `test harness teardown failed: ${errors.map(String).join("; ")}`);
    }
  };
}
