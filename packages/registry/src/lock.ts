/**
 * A lock between processes on one node: an exclusive lock file (O_CREAT|O_EXCL) holding the
 * holder's PID. A lock whose holder is dead is stale and taken over. Correctness never depends on
 * it (every write is to a unique temp name, verified, then renamed): it only keeps two workers
 * from doing the same pull at once.
 */
import { open, readFile, rename, stat, unlink } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { LockTimeoutError } from "./errors.js";

/** A held lock. */
export interface HeldLock {
  readonly path: string;
  /** Removes the lock file (only if it is still ours). Idempotent. */
  release(): Promise<void>;
}

/** Options of {@link acquireLock}. */
export interface LockOptions {
  /** Give up after this long (default 10 minutes: a large pull may hold a lock that long). */
  timeoutMs?: number;
  /** Pause between attempts (default 100 ms). */
  pollMs?: number;
  signal?: AbortSignal;
  /** Called once when the lock is busy, with the holder's PID. */
  onWait?: (holderPid: number | undefined) => void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function holderOf(path: string): Promise<{ pid: number | undefined; ageMs: number } | undefined> {
  try {
    const [text, st] = await Promise.all([readFile(path, "utf8"), stat(path)]);
    const pid = Number.parseInt(text.trim(), 10);
    return { pid: Number.isInteger(pid) && pid > 0 ? pid : undefined, ageMs: Date.now() - st.mtimeMs };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** Tries once; resolves with the lock, or undefined when another live process holds it. */
export async function tryLock(path: string): Promise<HeldLock | undefined> {
  const token = `${process.pid}\n`;
  try {
    const fh = await open(path, "wx", 0o644);
    try {
      await fh.writeFile(token);
    } finally {
      await fh.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    const h = await holderOf(path);
    if (h === undefined) return tryLock(path);
    // A holder that died, or a file whose writer died before writing its PID, is stale.
    const stale = h.pid === undefined ? h.ageMs > 5_000 : !alive(h.pid);
    if (!stale) return undefined;
    const aside = `${path}.stale.${process.pid}.${Date.now()}`;
    try {
      await rename(path, aside);
      await unlink(aside);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    return tryLock(path);
  }
  let released = false;
  return {
    path,
    async release() {
      if (released) return;
      released = true;
      const h = await holderOf(path);
      if (h?.pid === process.pid) await unlink(path).catch(() => undefined);
    },
  };
}

/** Waits for the lock at `path`; throws {@link LockTimeoutError} after `timeoutMs`. */
export async function acquireLock(path: string, options: LockOptions = {}): Promise<HeldLock> {
  const timeoutMs = options.timeoutMs ?? 600_000;
  const pollMs = options.pollMs ?? 100;
  const started = Date.now();
  let told = false;
  for (;;) {
    options.signal?.throwIfAborted();
    const held = await tryLock(path);
    if (held) return held;
    if (!told) {
      told = true;
      options.onWait?.((await holderOf(path))?.pid);
    }
    if (Date.now() - started >= timeoutMs) {
      throw new LockTimeoutError(path, (await holderOf(path))?.pid, Date.now() - started);
    }
    await sleep(pollMs, undefined, { signal: options.signal });
  }
}
