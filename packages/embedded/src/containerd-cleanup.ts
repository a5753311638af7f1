import { execFile } from "node:child_process";
import { ContainerdCleanupError } from "./errors.js";
import { findExecutable, pathWithSbin } from "./executables.js";
import { errorMessage } from "./process.js";

/** Options of {@link cleanupContainerd}. */
export interface CleanupContainerdOptions {
  /** The `ctr` executable; default `ctr` (PATH, then the sbin directories). */
  ctrBinary?: string;
  /** Timeout of each ctr command; default 30 000 ms. */
  commandTimeoutMs?: number;
}

/** What {@link cleanupContainerd} removed, per namespace. */
export interface CleanupContainerdResult {
  namespaces: ReadonlyArray<{
    namespace: string;
    /** Tasks killed with SIGKILL and deleted. */
    tasks: readonly string[];
    /** Containers deleted. */
    containers: readonly string[];
  }>;
}

/** Output of one ctr run. */
interface CtrOutput {
  stdout: string;
  stderr: string;
}

const NOT_FOUND = /not found|no such/i;

/**
 * Test teardown: with `ctr`, SIGKILLs and deletes every task and deletes every container in every
 * namespace of the containerd at `address` (or only in `namespaces`), so no task or shim outlives
 * the run (they survive a containerd stop otherwise). "Not found" is tolerated (something else
 * removed it first). Every item is attempted; failures are collected into one
 * {@link ContainerdCleanupError}. Images, snapshots and content are left alone.
 */
export async function cleanupContainerd(
  address: string,
  namespaces?: readonly string[],
  options: CleanupContainerdOptions = {},
): Promise<CleanupContainerdResult> {
  const ctrName = options.ctrBinary ?? "ctr";
  const ctr = findExecutable(ctrName);
  if (ctr === undefined) {
    throw new ContainerdCleanupError(
      `cannot clean up containerd: ${ctrName} not found (it comes with containerd)`,
      {
        context: { address, ctr: ctrName },
      },
    );
  }
  const timeoutMs = options.commandTimeoutMs ?? 30_000;
  const run = (args: readonly string[]): Promise<CtrOutput> =>
    runCtr(ctr, ["--address", address, ...args], timeoutMs);

  const targets = namespaces ?? listLines((await run(["namespaces", "list", "--quiet"])).stdout);
  const failures: Array<{ namespace: string; id: string; step: string; error: string }> = [];
  const result: Array<{ namespace: string; tasks: string[]; containers: string[] }> = [];

  for (const namespace of targets) {
    const ns = ["--namespace", namespace];
    const tasks: string[] = [];
    const containers: string[] = [];
    let taskIds: string[];
    let containerIds: string[];
    try {
      taskIds = listLines((await run([...ns, "tasks", "list", "--quiet"])).stdout);
      containerIds = listLines((await run([...ns, "containers", "list", "--quiet"])).stdout);
    } catch (err) {
      failures.push({ namespace, id: "", step: "list", error: errorMessage(err) });
      continue;
    }
    // Tasks first: a container with a live task cannot be deleted. `tasks delete --force`
    // sends SIGKILL to all its processes, waits for the exit, then deletes the task (and its shim).
    for (const id of taskIds) {
      try {
        await run([...ns, "tasks", "delete", "--force", id]);
        tasks.push(id);
      } catch (err) {
        if (!NOT_FOUND.test(errorMessage(err))) {
          failures.push({ namespace, id, step: "tasks delete --force", error: errorMessage(err) });
        }
      }
    }
    for (const id of containerIds) {
      try {
        await run([...ns, "containers", "delete", id]);
        containers.push(id);
      } catch (err) {
        if (!NOT_FOUND.test(errorMessage(err))) {
          failures.push({ namespace, id, step: "containers delete", error: errorMessage(err) });
        }
      }
    }
    result.push({ namespace, tasks, containers });
  }

  if (failures.length > 0) {
    throw new ContainerdCleanupError(
      `cleaning up containerd at ${address} failed for ${failures.length} item(s): ${failures
        .map((f) => `${f.namespace}/${f.id} ${f.step}: ${f.error}`)
        .join("; ")}`,
      { context: { address, failures, removed: result } },
    );
  }
  return { namespaces: result };
}

function listLines(text: string): string[] {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");
}

function runCtr(ctr: string, args: readonly string[], timeoutMs: number): Promise<CtrOutput> {
  return new Promise((resolve, reject) => {
    execFile(
      ctr,
      [...args],
      {
        timeout: timeoutMs,
        killSignal: "SIGKILL",
        maxBuffer: 16 * 1024 * 1024,
        env: { ...process.env, PATH: pathWithSbin(process.env.PATH) },
      },
      (err, stdout, stderr) => {
        if (err) {
          const detail = stderr.trim() || err.message;
          reject(
            new ContainerdCleanupError(`ctr ${args.join(" ")}: ${detail}`, {
              context: { args, stderr, timedOut: err.killed },
              cause: err,
            }),
          );
          return;
        }
        resolve({ stdout, stderr });
      },
    );
  });
}
