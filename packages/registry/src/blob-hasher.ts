/**
 * sha256 of blobs off the main thread: a small pool of worker threads (see
 * `blob-hash-worker.ts`) hashes each blob by reading back what was written to its temp file as
 * it grows. The main thread only writes and counts; the digest still covers every byte, checked
 * before the blob is renamed into place. A worker idle for {@link BLOB_HASHER_IDLE_MS} ends, so a
 * node at rest does not keep a thread (and its V8 heap) per pool slot after its last pull.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";

/** How far the writer must get before the worker is told (fewer, larger reads). */
const ADVANCE_BYTES = 1 << 20;

/** How long a hashing worker with no job stays before it ends (the next job starts one again). */
export const BLOB_HASHER_IDLE_MS = 30_000;

interface Pending {
  resolve: (hex: string) => void;
  reject: (err: Error) => void;
}

/** One blob being hashed. */
export interface HashJob {
  /** The blob's first `bytes` bytes are written: they may be hashed. */
  advance(bytes: number): void;
  /** All `bytes` are written: resolves with the hex sha256 of them. */
  finish(bytes: number): Promise<string>;
  /** Drops the job (the blob is abandoned). */
  abort(): void;
}

interface Slot {
  worker: Worker;
  jobs: number;
  /** Ends the worker once it has had no job for the idle time. */
  idleTimer: NodeJS.Timeout | undefined;
  /** Ended on purpose (idle): its exit is no failure. */
  retired: boolean;
}

let nextId = 1;

/**
 * A pool of hashing workers, started on first use; idle workers do not keep the process alive,
 * and end after `idleMs` without a job.
 */
export class BlobHasher {
  readonly #size: number;
  readonly #idleMs: number;
  readonly #slots: Slot[] = [];
  readonly #pending = new Map<number, Pending>();

  constructor(size = Math.max(1, Math.min(2, availableParallelism())), idleMs = BLOB_HASHER_IDLE_MS) {
    this.#size = size;
    this.#idleMs = idleMs;
  }

  /** Worker threads running now. */
  get threads(): number {
    return this.#slots.length;
  }

  #slot(): Slot {
    if (this.#slots.length < this.#size) {
      const worker = new Worker(new URL("./blob-hash-worker.js", import.meta.url));
      worker.unref();
      const slot: Slot = { worker, jobs: 0, idleTimer: undefined, retired: false };
      worker.on("message", (m: { id: number; digest?: string; error?: string }) => {
        const p = this.#pending.get(m.id);
        if (!p) return;
        this.#pending.delete(m.id);
        if (m.digest !== undefined) p.resolve(m.digest);
        else p.reject(new Error(`hashing failed: ${m.error ?? "unknown"}`));
      });
      worker.on("error", (err) => this.#fail(slot, err));
      worker.on("exit", (code) => {
        if (!slot.retired) this.#fail(slot, new Error(`hashing worker exited with ${code}`));
      });
      this.#slots.push(slot);
      return slot;
    }
    return this.#slots.reduce((a, b) => (b.jobs < a.jobs ? b : a));
  }

  /** Ends an idle worker; the next job starts another. */
  #retire(slot: Slot): void {
    if (slot.jobs > 0) return;
    const i = this.#slots.indexOf(slot);
    if (i >= 0) this.#slots.splice(i, 1);
    slot.retired = true;
    void slot.worker.terminate();
  }

  /** A worker died: its jobs fail (their blobs are not kept) and it is replaced on next use. */
  #fail(slot: Slot, err: Error): void {
    const i = this.#slots.indexOf(slot);
    if (i >= 0) this.#slots.splice(i, 1);
    for (const [id, p] of this.#pending) {
      if ((p as Pending & { slot?: Slot }).slot === slot) {
        this.#pending.delete(id);
        p.reject(err);
      }
    }
  }

  /** Starts hashing the blob being written to `fd` (kept open until `finish` settles). */
  start(fd: number): HashJob {
    const slot = this.#slot();
    const id = nextId++;
    // A worker with jobs keeps the process alive (its caller awaits it); an idle one does not,
    // and ends after the idle time.
    clearTimeout(slot.idleTimer);
    slot.idleTimer = undefined;
    if (slot.jobs++ === 0) slot.worker.ref();
    let told = 0;
    let done = false;
    const end = (): void => {
      if (done) return;
      done = true;
      if (--slot.jobs === 0) {
        slot.worker.unref();
        slot.idleTimer = setTimeout(() => this.#retire(slot), this.#idleMs);
        slot.idleTimer.unref();
      }
    };
    return {
      advance(bytes) {
        if (done || bytes - told < ADVANCE_BYTES) return;
        told = bytes;
        slot.worker.postMessage({ id, fd, upTo: bytes });
      },
      finish: (bytes) =>
        new Promise<string>((resolve, reject) => {
          const settle = (f: () => void): void => {
            end();
            f();
          };
          const pending: Pending & { slot: Slot } = {
            slot,
            resolve: (hex) => settle(() => resolve(hex)),
            reject: (err) => settle(() => reject(err)),
          };
          this.#pending.set(id, pending);
          slot.worker.postMessage({ id, fd, upTo: bytes, final: true });
        }),
      abort() {
        if (done) return;
        end();
        slot.worker.postMessage({ id, abort: true });
      },
    };
  }
}
