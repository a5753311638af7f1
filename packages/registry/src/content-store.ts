/**
 * The node's content store: blobs by digest under `<root>/blobs/sha256/<hex>`, shared by every
 * image. A blob is streamed to a unique temp file under `<root>/ingest/` while its sha256 and
 * size are checked, and renamed into place only when both match: unverified bytes never stay.
 * One pull lock per blob (`<root>/locks/<hex>.lock`) keeps two processes from fetching it at once.
 */
import { createHash, randomBytes } from "node:crypto";
import { chmod, mkdir, open, readFile, readdir, rename, stat, unlink, utimes } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { Transform, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { DigestMismatchError, InvalidManifestError, SizeMismatchError, TooLargeError } from "./errors.js";
import { BlobHasher } from "./blob-hasher.js";
import { acquireLock } from "./lock.js";
import type { LockOptions } from "./lock.js";

/** Options of one {@link ContentStore.ingest}. */
export interface IngestOptions {
  /** For messages: `layer sha256:… of 127.0.0.1:5000/app`. */
  what?: string;
  /** Refuse blobs over this size (checked against the descriptor before fetching). */
  maxBytes?: number;
  /** The setting that sets `maxBytes`, for the error message. */
  maxBytesSetting?: string;
  /** Called with each chunk's length as bytes arrive. */
  onBytes?: (n: number) => void;
  signal?: AbortSignal;
  lock?: Pick<LockOptions, "timeoutMs" | "onWait">;
}

/** What {@link ContentStore.gc} removed. */
export interface GcResult {
  removed: string[];
  freedBytes: number;
}

function hexOf(digest: string): string {
  const m = /^sha256:([a-f0-9]{64})$/.exec(digest);
  if (!m?.[1]) throw new InvalidManifestError("descriptor", `unsupported digest ${digest} (sha256 only)`);
  return m[1];
}

/** Counts bytes going through; fails as soon as more than `limit` arrive. */
class CountingTap extends Transform {
  bytes = 0;
  constructor(
    private readonly limit: number,
    private readonly onBytes: ((n: number) => void) | undefined,
    private readonly tooMany: (n: number) => Error,
  ) {
    super();
  }
  override _transform(
    chunk: Buffer,
    _enc: BufferEncoding,
    cb: (err?: Error | null, data?: Buffer) => void,
  ): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      cb(this.tooMany(this.bytes));
      return;
    }
    this.onBytes?.(chunk.length);
    cb(null, chunk);
  }
}

/** Writes to an open file, telling `onWritten` how many bytes are on it so far. */
class FileSink extends Writable {
  written = 0;
  constructor(
    private readonly fh: FileHandle,
    private readonly onWritten: (bytes: number) => void,
  ) {
    super({ highWaterMark: 1 << 20 });
  }
  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    const bufs = chunks.map((c) => c.chunk);
    const total = bufs.reduce((n, b) => n + b.length, 0);
    this.fh.writev(bufs).then(
      ({ bytesWritten }) => {
        if (bytesWritten !== total) {
          cb(new Error(`short write: ${bytesWritten} of ${total} bytes`));
          return;
        }
        this.written += bytesWritten;
        this.onWritten(this.written);
        cb();
      },
      (err: unknown) => cb(err as Error),
    );
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this._writev([{ chunk }], cb);
  }
}

/** The hashing workers shared by every content store of the process. */
const hasher = new BlobHasher();

/** The content store rooted at `root` (e.g. `<EVE_DATA_DIR>/content`). */
export class ContentStore {
  readonly root: string;
  /** fsync each blob before renaming it into place (default true). */
  readonly durable: boolean;

  constructor(root: string, options: { durable?: boolean } = {}) {
    this.root = root;
    this.durable = options.durable ?? true;
  }

  /** Where blob `digest` lives (whether or not it is there). */
  blobPath(digest: string): string {
    return path.join(this.root, "blobs", "sha256", hexOf(digest));
  }

  /** Whether blob `digest` is stored, with `size` bytes when given. */
  async has(digest: string, size?: number): Promise<boolean> {
    try {
      const st = await stat(this.blobPath(digest));
      return size === undefined || st.size === size;
    } catch {
      return false;
    }
  }

  /**
   * Makes the store's dirs; the root is 0700 (as containerd keeps its content store): blobs of
   * private images stay unreadable to the node's other users.
   */
  async #dirs(): Promise<void> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    await chmod(this.root, 0o700);
    await Promise.all(
      ["blobs/sha256", "ingest", "locks"].map((d) => mkdir(path.join(this.root, d), { recursive: true })),
    );
  }

  /** Makes the store's dirs (see {@link ContentStore.ingest}); idempotent. */
  prepare(): Promise<void> {
    return this.#dirs();
  }

  #tempPath(hex: string): string {
    return path.join(this.root, "ingest", `${hex}.${process.pid}.${randomBytes(4).toString("hex")}`);
  }

  /**
   * Stores blob `digest` of `size` bytes from `open()` unless it is already there, under its pull
   * lock. Resolves with the blob's path and whether it was fetched (false: already stored).
   * Throws DigestMismatchError / SizeMismatchError / TooLargeError, keeping nothing.
   */
  async ingest(
    digest: string,
    size: number,
    openStream: () => Promise<Readable>,
    options: IngestOptions = {},
  ): Promise<{ path: string; fetched: boolean }> {
    const hex = hexOf(digest);
    const target = this.blobPath(digest);
    const what = options.what ?? `blob ${digest}`;
    if (options.maxBytes !== undefined && size > options.maxBytes) {
      throw new TooLargeError(what, size, options.maxBytes, options.maxBytesSetting ?? "maxBytes");
    }
    if (await this.has(digest, size)) {
      await this.#touch(target);
      return { path: target, fetched: false };
    }
    await this.#dirs();
    const lock = await acquireLock(path.join(this.root, "locks", `${hex}.lock`), {
      ...options.lock,
      signal: options.signal,
    });
    try {
      if (await this.has(digest, size)) return { path: target, fetched: false };
      const temp = this.#tempPath(hex);
      const fh = await open(temp, "wx+", 0o444);
      // sha256 in a worker thread, reading back what is written (see blob-hasher.ts).
      const job = hasher.start(fh.fd);
      let closed = false;
      try {
        const tap = new CountingTap(
          size,
          options.onBytes,
          (n) => new SizeMismatchError(what, size, `more than ${n - 1}`),
        );
        const source = await openStream();
        await pipeline(source, tap, new FileSink(fh, (n) => job.advance(n)), { signal: options.signal });
        if (tap.bytes !== size) throw new SizeMismatchError(what, size, tap.bytes);
        const [hexActual] = await Promise.all([job.finish(size), this.durable ? fh.datasync() : undefined]);
        closed = true;
        await fh.close();
        const actual = `sha256:${hexActual}`;
        if (actual !== digest) throw new DigestMismatchError(what, digest, actual);
        await rename(temp, target);
        return { path: target, fetched: true };
      } catch (err) {
        job.abort();
        if (!closed) await fh.close().catch(() => undefined);
        await unlink(temp).catch(() => undefined);
        throw err;
      }
    } finally {
      await lock.release();
    }
  }

  /** Marks a reused blob as recently used, so a concurrent gc's grace period covers it. */
  async #touch(file: string): Promise<void> {
    const now = new Date();
    await utimes(file, now, now).catch(() => undefined);
  }

  /** Stores `bytes` (a manifest or config already read and checked) as blob `digest`. */
  async putBytes(digest: string, bytes: Uint8Array): Promise<string> {
    const target = this.blobPath(digest);
    if (await this.has(digest, bytes.length)) {
      await this.#touch(target);
      return target;
    }
    const actual = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
    if (actual !== digest) throw new DigestMismatchError(`blob ${digest}`, digest, actual);
    await this.#dirs();
    const temp = this.#tempPath(hexOf(digest));
    try {
      const fh = await open(temp, "wx+", 0o444);
      try {
        await fh.writeFile(bytes);
        if (this.durable) await fh.datasync();
      } finally {
        await fh.close();
      }
      await rename(temp, target);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
    return target;
  }

  /** Reads a whole stored blob, re-checking its digest (for small blobs: manifests, configs). */
  async readVerified(digest: string): Promise<Buffer> {
    const bytes = await readFile(this.blobPath(digest));
    const actual = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
    if (actual !== digest) throw new DigestMismatchError(`stored blob ${digest}`, digest, actual);
    return bytes;
  }

  /** Every stored blob with its size and modification time. */
  async list(): Promise<{ digest: string; sizeBytes: number; mtimeMs: number }[]> {
    const dir = path.join(this.root, "blobs", "sha256");
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return [];
    }
    const out: { digest: string; sizeBytes: number; mtimeMs: number }[] = [];
    for (const name of names) {
      if (!/^[a-f0-9]{64}$/.test(name)) continue;
      try {
        const st = await stat(path.join(dir, name));
        out.push({ digest: `sha256:${name}`, sizeBytes: st.size, mtimeMs: st.mtimeMs });
      } catch {
        // removed meanwhile
      }
    }
    return out;
  }

  /**
   * Removes every blob not in `keep`, except blobs younger than `graceMs` (a pull in progress
   * has not recorded its blobs yet) and blobs whose pull lock is held; and stale temp files.
   */
  async gc(keep: ReadonlySet<string>, options: { graceMs?: number } = {}): Promise<GcResult> {
    const graceMs = options.graceMs ?? 10 * 60_000;
    const now = Date.now();
    const result: GcResult = { removed: [], freedBytes: 0 };
    for (const b of await this.list()) {
      if (keep.has(b.digest) || now - b.mtimeMs < graceMs) continue;
      const lockFile = path.join(this.root, "locks", `${hexOf(b.digest)}.lock`);
      if (
        await stat(lockFile).then(
          () => true,
          () => false,
        )
      )
        continue;
      try {
        await unlink(this.blobPath(b.digest));
        result.removed.push(b.digest);
        result.freedBytes += b.sizeBytes;
      } catch {
        // removed by another process
      }
    }
    const ingest = path.join(this.root, "ingest");
    for (const name of await readdir(ingest).catch(() => [] as string[])) {
      const pid = Number(name.split(".")[1]);
      const file = path.join(ingest, name);
      const st = await stat(file).catch(() => undefined);
      if (!st || now - st.mtimeMs < graceMs) continue;
      let running: boolean;
      try {
        process.kill(pid, 0);
        running = true;
      } catch {
        running = false;
      }
      if (!running) await unlink(file).catch(() => undefined);
    }
    return result;
  }
}
