/**
 * What the end-to-end tests share: where the built workers and the CLI are, fresh app uuids, a
 * wait on an app's TaskStatus, and running a node script to completion.
 */
import { spawn } from "node:child_process";
import { join, resolve } from "node:path";
import type { Subscription } from "@eve-tasks/bus";
import type { TaskStatus, TaskStatusSchema } from "@eve-tasks/schemas";
import { waitFor } from "./wait.js";

/** The repository's root. */
export const REPO_ROOT = resolve(import.meta.dirname, "..", "..");

/** The built entry points of the workers and of the CLI (`npx tsc -b` makes them). */
export const BUILT = {
  specBuilder: join(REPO_ROOT, "services/spec-builder/dist/main.js"),
  taskExecutor: join(REPO_ROOT, "services/task-executor/dist/main.js"),
  procMonitor: join(REPO_ROOT, "services/proc-monitor/dist/main.js"),
  seedFetcher: join(REPO_ROOT, "services/hypervisor-seed-fetcher/dist/main.js"),
  cli: join(REPO_ROOT, "packages/cli/dist/main.js"),
} as const;

/**
 * A maker of fresh app uuids `<prefix>-0000-4000-8000-<12 hex>` (time and a counter), so tests
 * never share keys, containers or cgroups. `prefix` is 8 hex digits naming the test file.
 */
export function uuidMaker(prefix: string): () => string {
  let seq = 0;
  return () => {
    const hex = (Date.now().toString(16) + (++seq).toString(16).padStart(4, "0")).slice(-12);
    return `${prefix}-0000-4000-8000-${hex.padStart(12, "0")}`;
  };
}

/** Waits on apps' TaskStatus as `statuses` (a subscription of the task-executor's table) sees it. */
export function statusWaiter(statuses: Subscription<typeof TaskStatusSchema>, defaultTimeoutMs = 30_000) {
  /** Resolves with the first status of `uuid` for which `pred` holds; the error shows the last one. */
  async function until(
    uuid: string,
    pred: (s: TaskStatus) => boolean,
    what: string,
    timeoutMs = defaultTimeoutMs,
  ): Promise<TaskStatus> {
    try {
      return await waitFor(
        () => {
          const s = statuses.get(uuid);
          return s !== undefined && pred(s) ? s : undefined;
        },
        { timeoutMs, message: `${uuid}: ${what}` },
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; last status ${JSON.stringify(statuses.get(uuid))}`, {
        cause: err,
      });
    }
  }
  return {
    until,
    running: (uuid: string) => until(uuid, (s) => s.state === "RUNNING", "never RUNNING"),
  };
}

/** What {@link statusWaiter} gives. */
export type StatusWaiter = ReturnType<typeof statusWaiter>;

/** How a script run by {@link runNode} ended. */
export interface NodeRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node <script> <args>` from the repository root to completion, `input` on its stdin. */
export function runNode(
  script: string,
  args: readonly string[],
  options: { env?: Record<string, string | undefined>; input?: string } = {},
): Promise<NodeRun> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [script, ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...options.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", fail);
    child.on("close", (code) => done({ code, stdout, stderr }));
    child.stdin.end(options.input ?? "");
  });
}
