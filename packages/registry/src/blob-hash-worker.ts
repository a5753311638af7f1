/**
 * Worker thread of {@link BlobHasher}: hashes blobs by reading back what the main thread has
 * written to them (the page cache makes that a copy), so sha256 runs off the event loop and, with
 * several blobs at once, on several cores. Messages: `{ id, fd, upTo, final? }` hashes the
 * blob's bytes up to `upTo` and, when `final`, replies `{ id, digest }` (hex); `{ id, abort }`
 * forgets a job. Errors reply `{ id, error }`.
 */
import { createHash } from "node:crypto";
import type { Hash } from "node:crypto";
import { readSync } from "node:fs";
import { parentPort } from "node:worker_threads";

interface Job {
  hash: Hash;
  pos: number;
}

const jobs = new Map<number, Job>();
const buf = Buffer.allocUnsafe(1 << 20);
const port = parentPort;
if (!port) throw new Error("blob-hash-worker runs as a worker thread");

port.on("message", (m: { id: number; fd?: number; upTo?: number; final?: boolean; abort?: boolean }) => {
  if (m.abort) {
    jobs.delete(m.id);
    return;
  }
  let job = jobs.get(m.id);
  if (!job) {
    job = { hash: createHash("sha256"), pos: 0 };
    jobs.set(m.id, job);
  }
  try {
    const upTo = m.upTo ?? 0;
    while (job.pos < upTo) {
      const n = readSync(m.fd ?? -1, buf, 0, Math.min(buf.length, upTo - job.pos), job.pos);
      if (n === 0) throw new Error(`short read at byte ${job.pos} of ${upTo}`);
      job.hash.update(buf.subarray(0, n));
      job.pos += n;
    }
    if (m.final) {
      jobs.delete(m.id);
      port.postMessage({ id: m.id, digest: job.hash.digest("hex") });
    }
  } catch (err) {
    jobs.delete(m.id);
    port.postMessage({ id: m.id, error: (err as Error).message });
  }
});
