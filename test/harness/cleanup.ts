// Deferred cleanups: a resource made inside a test is released when that test finishes; one made
// in beforeAll (or at file level) when the test file finishes.
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, onTestFinished } from "vitest";
import { removeTreeSafely } from "@eve-tasks/embedded";

/** A cleanup step; errors are collected and reported after all steps ran. */
export type Cleanup = () => unknown;

const fileCleanups: Cleanup[] = [];

afterAll(async () => {
  const errors: unknown[] = [];
  // Last in, first out: later resources may depend on earlier ones.
  for (const cleanup of fileCleanups.splice(0).reverse()) {
    try {
      await cleanup();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length > 0)
    throw new AggregateError(errors, `harness cleanup failed: ${errors.map(String).join("; ")}`);
});

/**
 * Runs `cleanup` when the current test finishes, or, outside a test (beforeAll, file level),
 * when the test file finishes. Cleanups run last-in-first-out.
 */
export function deferCleanup(cleanup: Cleanup): void {
  try {
    onTestFinished(async () => {
      await cleanup();
    });
  } catch {
    fileCleanups.push(cleanup);
  }
}

/**
 * Makes a fresh directory under the OS temp dir (`eve-<prefix>XXXXXX`, short so unix socket paths
 * inside it stay under the 108-byte limit) and removes it when the test (or file) finishes.
 */
export async function tempDir(prefix = "t-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `eve-${prefix}`));
  deferCleanup(() => removeTreeSafely(dir));
  return dir;
}
