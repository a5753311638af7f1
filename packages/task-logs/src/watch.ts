/**
 * Waiting for a log to change, for readers that follow it: one inotify watch (fs.watch) per log
 * directory however many readers wait on it, a deadline per reader, and a bound on how many
 * readers may wait at once, so followers cost the executor a timer each and nothing that grows.
 */
import { watch } from "node:fs";
import type { FSWatcher } from "node:fs";

/** Too many readers are waiting already. */
export class TooManyFollowersError extends Error {
  override readonly name = "TooManyFollowersError";
}

interface DirWatch {
  readonly watcher: FSWatcher | undefined;
  readonly waiters: Set<() => void>;
}

/** How often a wait looks again when no watch could be set up (or it missed an event). */
const RECHECK_MS = 1000;

/** Shared watches of log directories. */
export class LogWatchers {
  readonly #maxWaiters: number;
  readonly #dirs = new Map<string, DirWatch>();
  #waiting = 0;

  /** `maxWaiters`: readers that may wait at once on this node. */
  constructor(maxWaiters: number) {
    this.#maxWaiters = maxWaiters;
  }

  /** Readers waiting now. */
  get waiting(): number {
    return this.#waiting;
  }

  /**
   * Resolves when something in `dir` changes (a write, a rotation), after at most `timeoutMs`,
   * or when `signal` aborts, whichever comes first. The caller reads again in any case.
   *
   * @throws {TooManyFollowersError} when `maxWaiters` readers wait already.
   */
  wait(dir: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.#waiting >= this.#maxWaiters) {
      return Promise.reject(
        new TooManyFollowersError(
          `too many readers follow logs on this node (${this.#maxWaiters}); try again later`,
        ),
      );
    }
    const entry = this.#watch(dir);
    this.#waiting++;
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        if (!entry.waiters.delete(done)) return;
        this.#waiting--;
        if (entry.waiters.size === 0) {
          entry.watcher?.close();
          this.#dirs.delete(dir);
        }
        resolve();
      };
      entry.waiters.add(done);
      const timer = setTimeout(done, entry.watcher ? timeoutMs : Math.min(timeoutMs, RECHECK_MS));
      signal?.addEventListener("abort", done, { once: true });
      if (signal?.aborted) done();
    });
  }

  #watch(dir: string): DirWatch {
    const existing = this.#dirs.get(dir);
    if (existing) return existing;
    const waiters = new Set<() => void>();
    let watcher: FSWatcher | undefined;
    try {
      watcher = watch(dir, { persistent: false }, () => {
        for (const w of [...waiters]) w();
      });
      // The directory went away (the app was deleted): wake everyone; the next read says so.
      watcher.on("error", () => {
        for (const w of [...waiters]) w();
      });
    } catch {
      // No inotify watch (the directory is gone, or watches ran out): waits poll instead.
      watcher = undefined;
    }
    const entry = { watcher, waiters };
    this.#dirs.set(dir, entry);
    return entry;
  }

  /** Wakes every waiting reader (at a stop). */
  wakeAll(): void {
    for (const entry of [...this.#dirs.values()]) for (const w of [...entry.waiters]) w();
  }
}
