// The blob hasher's pool of worker threads: digests are right, and a worker with no job ends after
// the idle time (a node at rest keeps no hashing thread), while one with a job in hand never does.
// The hasher runs its workers from dist/ (a worker thread loads JavaScript), so the test does too.
import { createHash } from "node:crypto";
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import type { BlobHasher as BlobHasherType } from "../src/blob-hasher.js";

const { BlobHasher } = (await import(new URL("../dist/blob-hasher.js", import.meta.url).href)) as {
  BlobHasher: typeof BlobHasherType;
};

const dir = mkdtempSync(join(tmpdir(), "eve-blob-hasher-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Writes `data` to a new file and returns its open fd (read and write). */
function blobFile(name: string, data: Buffer): number {
  const fd = openSync(join(dir, name), "w+");
  writeSync(fd, data);
  return fd;
}

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

describe("BlobHasher", () => {
  it("hashes a blob, ends its idle worker after the idle time, and starts one for the next job", async () => {
    const hasher = new BlobHasher(1, 200);
    const data = Buffer.alloc(3 << 20, 7);
    const fd = blobFile("a", data);
    try {
      const job = hasher.start(fd);
      job.advance(2 << 20);
      expect(await job.finish(data.length)).toBe(sha256(data));
      expect(hasher.threads).toBe(1);
      await sleep(600);
      expect(hasher.threads).toBe(0);
      const again = hasher.start(fd);
      expect(hasher.threads).toBe(1);
      expect(await again.finish(1000)).toBe(sha256(data.subarray(0, 1000)));
    } finally {
      closeSync(fd);
    }
  });

  it("keeps a worker whose job outlasts the idle time", async () => {
    const hasher = new BlobHasher(1, 100);
    const data = Buffer.from("a blob written slowly");
    const fd = blobFile("b", data);
    try {
      const job = hasher.start(fd);
      await sleep(400);
      expect(hasher.threads).toBe(1);
      expect(await job.finish(data.length)).toBe(sha256(data));
    } finally {
      closeSync(fd);
    }
  });
});
