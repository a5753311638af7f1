/**
 * Applies image layers to a root filesystem, as overlayfs would stack them: whiteouts
 * (`.wh.<name>`) and opaque directories (`.wh..wh..opq`) remove lower-layer content; symlinks and
 * hardlinks are kept; ownership, modes and times preserved. Nothing lands outside the root:
 * absolute paths and `..` are refused, and so is a write through a symlink that leads outside.
 * Symlinks in parent paths are followed *inside* the root (an absolute target means the root's
 * own path), like containerd.
 *
 * Each layer is read twice, so that memory stays bounded whatever the layer holds:
 *
 * 1. a check pass: every entry name is validated, the entries and uncompressed bytes are counted
 *    against their caps, the uncompressed digest is checked against the config's
 *    `rootfs.diff_ids`, and the whiteouts and opaque markers are applied: before anything of the
 *    layer is written, so they can only hide lower layers, as the image spec says, wherever they
 *    come in the tar, with no memory of what the layer wrote;
 * 2. a write pass: the entries themselves, in order. Directory metadata is deferred to the end
 *    (see `deferred-dirs.ts`) and applied through fds that never follow a symlink.
 */
import { randomBytes } from "node:crypto";
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  renameSync,
  symlinkSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import type { BigIntStats } from "node:fs";
import { mkdir, open, rename, rm } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";
import { Transform } from "node:stream";
import type { TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createHash } from "node:crypto";
import tar from "tar-stream";
import type { Header as Headers } from "tar-stream";
import { decompressor } from "./decompress.js";
import { DeferredDirs } from "./deferred-dirs.js";
import {
  DigestMismatchError,
  LayerApplyError,
  LayerFormatError,
  RegistryError,
  TooLargeError,
  TooManyError,
  UnsafeLayerError,
} from "./errors.js";
import { DEFAULT_LIMITS, LIMIT_SETTINGS } from "./limits.js";
import type { LayerCompression } from "./manifest.js";

/** One layer to apply: its stored blob and what its uncompressed bytes must hash to. */
export interface LayerToApply {
  /** The compressed blob on disk (verified by the content store). */
  readonly blobPath: string;
  /** Its (compressed) digest, for messages. */
  readonly digest: string;
  readonly compression: LayerCompression;
  /** The config's `rootfs.diff_ids[i]`. */
  readonly diffId: string;
}

/** Options of {@link applyLayer} and {@link unpackLayers}. */
export interface UnpackOptions {
  /** Refuse a layer whose uncompressed tar is larger (default 16 GiB). */
  maxUnpackedLayerBytes?: number;
  /** Refuse a layer with more tar entries (default 1 000 000). */
  maxLayerEntries?: number;
  /** Refuse an image whose layers add up to more uncompressed bytes (default 64 GiB). */
  maxImageUnpackedBytes?: number;
  /** Uncompressed bytes of the image's layers applied before this one (for the image cap). */
  imageUnpackedBytesBefore?: number;
  /** chown entries to their uid/gid (default: when running as root). */
  preserveOwner?: boolean;
  /**
   * A directory for the unpacker's own files (deferred directory records past 1 MiB, replaced
   * directories until the layer is done), on the root's filesystem. Default: a fresh sibling of
   * the root, removed afterwards.
   */
  scratchDir?: string;
  /** Entries skipped (devices, FIFOs), one message each. */
  onWarning?: (message: string) => void;
  /** Called with each chunk's length of uncompressed data as it is written. */
  onBytes?: (n: number) => void;
}

/** What applying a layer did. */
export interface ApplyResult {
  entries: number;
  unpackedBytes: number;
  skipped: number;
  /** Deferred directory records dropped because the layer replaced their directory later. */
  droppedDirRecords: number;
}

/** A tar entry's body: read it, or resume() it to skip. */
interface Body extends AsyncIterable<unknown> {
  resume(): unknown;
}

const WHITEOUT = ".wh.";
const OPAQUE = ".wh..wh..opq";
const MAX_SYMLINK_HOPS = 40;
/** Largest uid or gid accepted (2^32 - 2; 2^32 - 1 means "no change" to chown). */
const MAX_ID = 2 ** 32 - 2;
/** How long the write pass runs before it lets the event loop breathe, ms. */
const YIELD_EVERY_MS = 20;
const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = constants;

/** Counts (and, when asked, hashes) uncompressed bytes, with a cap. */
class Tap extends Transform {
  readonly hash = createHash("sha256");
  bytes = 0;
  constructor(
    private readonly limit: number,
    private readonly tooLarge: (n: number) => Error,
    private readonly hashing: boolean,
    private readonly onBytes?: (n: number) => void,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      cb(this.tooLarge(this.bytes));
      return;
    }
    if (this.hashing) this.hash.update(chunk);
    this.onBytes?.(chunk.length);
    cb(null, chunk);
  }
}

/** `a/./b/` → ["a","b"]; refuses absolute paths, `..` and NUL bytes. */
function entryParts(layer: string, name: string, what = "path"): string[] {
  if (name.startsWith("/")) throw new UnsafeLayerError(layer, name, `has an absolute ${what}`);
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new UnsafeLayerError(layer, name, `has ".." in its ${what}`);
  if (parts.some((p) => p.includes("\0")))
    throw new UnsafeLayerError(layer, name, `has a NUL byte in its ${what}`);
  return parts;
}

function lstatOrUndefined(p: string): BigIntStats | undefined {
  return lstatSync(p, { bigint: true, throwIfNoEntry: false });
}

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** Reads a layer's tar entries from its blob (opened once for both passes). */
async function readEntries(
  blob: FileHandle,
  layer: LayerToApply,
  tap: Tap,
  each: (h: Headers, body: Body) => Promise<void>,
): Promise<number> {
  const extract = tar.extract();
  const feeding = pipeline(
    blob.createReadStream({ start: 0, autoClose: false, highWaterMark: 256 * 1024 }),
    decompressor(layer.compression),
    tap,
    extract,
  );
  // Observed below; this keeps an early failure from being an unhandled rejection meanwhile.
  feeding.catch(() => undefined);
  let entries = 0;
  try {
    for await (const entry of extract) {
      entries++;
      await each(entry.header, entry);
    }
    await feeding;
    return entries;
  } catch (err) {
    extract.destroy();
    const fed = await feeding.then(
      () => undefined,
      (e: unknown) => e,
    );
    if (err instanceof RegistryError) throw err;
    const cause = fed instanceof RegistryError ? fed : err;
    if (cause instanceof RegistryError) throw cause;
    const code = errnoOf(err);
    if (code !== undefined && !code.startsWith("Z_") && code !== "ERR_STREAM_PREMATURE_CLOSE") throw err;
    throw new LayerFormatError(layer.digest, (cause as Error).message, cause);
  }
}

/** The state of one layer being applied. */
class LayerApplier {
  skipped = 0;
  readonly dirs: DeferredDirs;
  #trashDir: string | undefined;
  #trashed = 0;
  /** Bumped whenever the tree's shape changes (removal, symlink): invalidates {@link #lastDir}. */
  #generation = 0;
  #lastDir: { key: string; generation: number; abs: string; rel: string[] } | undefined;

  constructor(
    readonly root: string,
    readonly scratch: string,
    readonly layer: string,
    readonly preserveOwner: boolean,
    readonly warn: (m: string) => void,
  ) {
    this.dirs = new DeferredDirs(path.join(scratch, "dirs.log"));
  }

  /** Wraps an unexpected fs error of `entry` into a typed one. */
  fail(entry: string, err: unknown): Error {
    return err instanceof RegistryError ? err : new LayerApplyError(this.layer, entry, err);
  }

  /**
   * The real path of directory `parts` inside the root, following symlinks within the root.
   * With `create`, missing directories are made (0755) and a non-directory in the way replaced.
   * Refuses a path that leads outside. Undefined when (without `create`) something is missing.
   */
  resolveDir(
    entry: string,
    parts: readonly string[],
    create: boolean,
  ): { abs: string; rel: string[] } | undefined {
    const key = parts.join("/");
    const last = this.#lastDir;
    if (last !== undefined && last.key === key && last.generation === this.#generation) return last;
    const queue = [...parts];
    const cur: string[] = [];
    let hops = 0;
    while (queue.length > 0) {
      const c = queue.shift() as string;
      if (c === "." || c === "") continue;
      if (c === "..") {
        if (cur.length === 0) {
          throw new UnsafeLayerError(
            this.layer,
            entry,
            "would be written through a symlink that points outside the root filesystem",
          );
        }
        cur.pop();
        continue;
      }
      const abs = path.join(this.root, ...cur, c);
      const st = lstatOrUndefined(abs);
      if (st === undefined) {
        if (!create) return undefined;
        mkdirSync(abs, { mode: 0o755 });
        cur.push(c);
        continue;
      }
      if (st.isSymbolicLink()) {
        if (++hops > MAX_SYMLINK_HOPS)
          throw new UnsafeLayerError(this.layer, entry, "goes through too many symlinks");
        const target = readlinkSync(abs);
        if (target.startsWith("/")) cur.length = 0;
        queue.unshift(...target.split("/"));
        continue;
      }
      if (st.isDirectory()) {
        cur.push(c);
        continue;
      }
      if (!create) return undefined;
      // A lower layer's file where this layer puts a directory: the directory replaces it.
      this.#removeSync(abs, st);
      mkdirSync(abs, { mode: 0o755 });
      cur.push(c);
    }
    const found = { key, generation: this.#generation, abs: path.join(this.root, ...cur), rel: cur };
    this.#lastDir = found;
    return found;
  }

  /**
   * Removes what is at `abs` before something replaces it. A directory is moved to the trash,
   * not deleted: its inode stays taken until the deferred directory records are applied, so a
   * record made for it can never match a new directory at the same path.
   */
  #removeSync(abs: string, st: BigIntStats): void {
    this.#generation++;
    if (!st.isDirectory()) {
      unlinkSync(abs);
      return;
    }
    if (this.#trashDir === undefined) {
      this.#trashDir = path.join(this.scratch, "trash");
      mkdirSync(this.#trashDir, { mode: 0o700 });
    }
    renameSync(abs, path.join(this.#trashDir, String(this.#trashed++)));
  }

  /** Check pass: a whiteout or opaque marker, applied before the layer writes anything. */
  async marker(entry: string, dirParts: string[], base: string): Promise<void> {
    const dir = this.resolveDir(entry, dirParts, false);
    if (base === OPAQUE) {
      // Everything in the directory so far comes from lower layers: it all goes.
      if (!dir) return;
      for (const child of readdirSync(dir.abs)) await this.#removeAsync(path.join(dir.abs, child));
      return;
    }
    const name = base.slice(WHITEOUT.length);
    if (name === "" || name === "." || name === "..") {
      throw new UnsafeLayerError(this.layer, entry, "is a whiteout of its own directory");
    }
    if (dir) await this.#removeAsync(path.join(dir.abs, name));
  }

  async #removeAsync(abs: string): Promise<void> {
    this.#generation++;
    await rm(abs, { recursive: true, force: true });
  }

  #own(fd: number, h: Headers): void {
    if (this.preserveOwner) fchownSync(fd, h.uid ?? 0, h.gid ?? 0);
  }

  /** Write pass: applies one entry (markers were applied by the check pass). */
  async entry(h: Headers, body: Body): Promise<void> {
    const name = h.name;
    const parts = entryParts(this.layer, name);
    const base = parts[parts.length - 1];
    const type = h.type ?? "file";
    if (base === undefined) {
      // The root itself ("./"): its metadata only.
      body.resume();
      if (type === "directory") this.#deferDir("", lstatSync(this.root, { bigint: true }), h);
      return;
    }
    if (base.startsWith(WHITEOUT)) {
      body.resume();
      return;
    }
    if (type === "character-device" || type === "block-device" || type === "fifo") {
      body.resume();
      this.skipped++;
      this.warn(`layer ${this.layer}: skipped ${type} ${name} (device nodes and FIFOs are not created)`);
      return;
    }
    const dir = this.resolveDir(name, parts.slice(0, -1), true);
    if (!dir) throw new UnsafeLayerError(this.layer, name, "has no parent directory");
    const abs = path.join(dir.abs, base);
    const rel = [...dir.rel, base].join("/");
    const mode = (h.mode ?? 0o644) & 0o7777;
    const mtime = (h.mtime?.getTime() ?? 0) / 1000;

    switch (type) {
      case "directory": {
        let st = lstatOrUndefined(abs);
        if (st && !st.isDirectory()) {
          this.#removeSync(abs, st);
          st = undefined;
        }
        if (!st) {
          mkdirSync(abs, { mode: 0o755 });
          st = lstatSync(abs, { bigint: true });
        }
        this.#deferDir(rel, st, h);
        body.resume();
        return;
      }
      case "file":
      case "contiguous-file": {
        const fd = this.#create(abs);
        try {
          for await (const chunk of body) {
            const b = chunk as Buffer;
            for (let off = 0; off < b.length;) off += writeSync(fd, b, off, b.length - off);
          }
          this.#own(fd, h);
          fchmodSync(fd, mode); // after chown, which clears set-id bits
          futimesSync(fd, mtime, mtime);
        } finally {
          closeSync(fd);
        }
        return;
      }
      case "symlink": {
        body.resume();
        const existing = lstatOrUndefined(abs);
        if (existing) this.#removeSync(abs, existing);
        this.#generation++;
        symlinkSync(h.linkname ?? "", abs);
        if (this.preserveOwner) lchownSync(abs, h.uid ?? 0, h.gid ?? 0);
        lutimesSync(abs, mtime, mtime);
        return;
      }
      case "link": {
        body.resume();
        const targetParts = entryParts(this.layer, h.linkname ?? "", "hardlink target");
        const tBase = targetParts[targetParts.length - 1];
        const tDir = tBase === undefined ? undefined : this.resolveDir(name, targetParts.slice(0, -1), false);
        const tAbs = tDir && tBase !== undefined ? path.join(tDir.abs, tBase) : undefined;
        const tSt = tAbs === undefined ? undefined : lstatOrUndefined(tAbs);
        if (tAbs === undefined || tSt === undefined) {
          throw new UnsafeLayerError(
            this.layer,
            name,
            `is a hardlink to "${h.linkname ?? ""}", which does not exist`,
          );
        }
        if (tSt.isDirectory()) throw new UnsafeLayerError(this.layer, name, "is a hardlink to a directory");
        if (tAbs === abs) return;
        const existing = lstatOrUndefined(abs);
        if (existing) this.#removeSync(abs, existing);
        linkSync(tAbs, abs);
        return;
      }
      default: {
        body.resume();
        this.skipped++;
        this.warn(`layer ${this.layer}: skipped ${name} of unsupported type ${String(type)}`);
      }
    }
  }

  /** A new file at `abs` open for writing, replacing what was there; never through a symlink. */
  #create(abs: string): number {
    const flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;
    try {
      return openSync(abs, flags, 0o600);
    } catch (err) {
      if (errnoOf(err) !== "EEXIST") throw err;
    }
    this.#removeSync(abs, lstatSync(abs, { bigint: true }));
    return openSync(abs, flags, 0o600);
  }

  #deferDir(rel: string, st: BigIntStats, h: Headers): void {
    this.dirs.add({
      rel,
      dev: st.dev,
      ino: st.ino,
      mode: (h.mode ?? 0o755) & 0o7777,
      uid: h.uid ?? 0,
      gid: h.gid ?? 0,
      mtimeMs: h.mtime?.getTime() ?? 0,
    });
  }

  /** Directory modes, owners and times; then the trash goes. */
  async finish(): Promise<number> {
    const r = this.dirs.apply(this.root, this.preserveOwner, (rel, err) => this.fail(rel || ".", err));
    if (this.#trashDir !== undefined) await rm(this.#trashDir, { recursive: true, force: true });
    return r.dropped;
  }
}

/** Checks what every entry's header says before anything is written (check pass). */
function checkHeader(layer: string, h: Headers): string[] {
  const parts = entryParts(layer, h.name);
  if (h.type === "link") entryParts(layer, h.linkname ?? "", "hardlink target");
  for (const [what, id] of [
    ["uid", h.uid],
    ["gid", h.gid],
  ] as const) {
    if (id !== undefined && (!Number.isInteger(id) || id < 0 || id > MAX_ID)) {
      throw new UnsafeLayerError(layer, h.name, `has an invalid ${what} ${id}`);
    }
  }
  if (h.mtime !== undefined && !Number.isFinite(h.mtime.getTime())) {
    throw new UnsafeLayerError(layer, h.name, "has an invalid modification time");
  }
  return parts;
}

/**
 * Applies one layer to `root` in place (a staging dir: on an error, throw the dir away).
 * Throws UnsafeLayerError, LayerFormatError, DigestMismatchError (diff_id), TooLargeError,
 * TooManyError or LayerApplyError.
 */
export async function applyLayer(
  root: string,
  layer: LayerToApply,
  options: UnpackOptions = {},
): Promise<ApplyResult> {
  const layerMax = options.maxUnpackedLayerBytes ?? DEFAULT_LIMITS.maxUnpackedLayerBytes;
  const entriesMax = options.maxLayerEntries ?? DEFAULT_LIMITS.maxLayerEntries;
  const imageMax = options.maxImageUnpackedBytes ?? DEFAULT_LIMITS.maxImageUnpackedBytes;
  const before = options.imageUnpackedBytesBefore ?? 0;
  const preserveOwner = options.preserveOwner ?? process.getuid?.() === 0;
  const ownScratch = options.scratchDir === undefined;
  const scratch =
    options.scratchDir ??
    path.join(
      path.dirname(root),
      `.${path.basename(root)}.scratch-${process.pid}-${randomBytes(4).toString("hex")}`,
    );
  await mkdir(scratch, { recursive: !ownScratch, mode: 0o700 });
  const applier = new LayerApplier(
    root,
    scratch,
    layer.digest,
    preserveOwner,
    options.onWarning ?? (() => undefined),
  );
  const limit = Math.min(layerMax, imageMax - before);
  const tooLarge = (n: number): Error =>
    layerMax <= imageMax - before
      ? new TooLargeError(
          `layer ${layer.digest} uncompressed`,
          n,
          layerMax,
          LIMIT_SETTINGS.maxUnpackedLayerBytes,
        )
      : new TooLargeError(
          `the image's uncompressed layers (with layer ${layer.digest})`,
          before + n,
          imageMax,
          LIMIT_SETTINGS.maxImageUnpackedBytes,
        );
  const blob = await open(layer.blobPath, "r");
  try {
    // 1. Check pass: names, caps, diff_id; whiteouts and opaque markers applied.
    const check = new Tap(limit, tooLarge, true);
    let seen = 0;
    const entries = await readEntries(blob, layer, check, async (h, body) => {
      if (++seen > entriesMax) {
        throw new TooManyError(
          `layer ${layer.digest}`,
          `more than ${entriesMax}`,
          "entries",
          entriesMax,
          LIMIT_SETTINGS.maxLayerEntries,
        );
      }
      const parts = checkHeader(layer.digest, h);
      body.resume();
      const base = parts[parts.length - 1];
      if (base?.startsWith(WHITEOUT)) {
        try {
          await applier.marker(h.name, parts.slice(0, -1), base);
        } catch (err) {
          throw applier.fail(h.name, err);
        }
      }
    });
    const diffId = `sha256:${check.hash.digest("hex")}`;
    if (diffId !== layer.diffId) {
      throw new DigestMismatchError(
        `uncompressed layer ${layer.digest} (config rootfs.diff_ids)`,
        layer.diffId,
        diffId,
      );
    }

    // 2. Write pass: the entries, then the deferred directory metadata.
    const write = new Tap(
      check.bytes,
      () => new LayerFormatError(layer.digest, "changed between its two reads"),
      false,
      options.onBytes,
    );
    let lastYield = performance.now();
    const written = await readEntries(blob, layer, write, async (h, body) => {
      try {
        await applier.entry(h, body);
      } catch (err) {
        throw applier.fail(h.name, err);
      }
      if (performance.now() - lastYield > YIELD_EVERY_MS) {
        await new Promise((ok) => setImmediate(ok));
        lastYield = performance.now();
      }
    });
    if (written !== entries || write.bytes !== check.bytes) {
      throw new LayerFormatError(layer.digest, "changed between its two reads");
    }
    const droppedDirRecords = await applier.finish();
    return { entries, unpackedBytes: check.bytes, skipped: applier.skipped, droppedDirRecords };
  } finally {
    await blob.close();
    applier.dirs.dispose();
    if (ownScratch) await rm(scratch, { recursive: true, force: true });
    else await rm(path.join(scratch, "trash"), { recursive: true, force: true });
  }
}

/**
 * Unpacks `layers` bottom to top into `target`: into a fresh staging dir next to it, renamed into
 * place when every layer applied and verified. If `target` appears meanwhile (another process
 * unpacked the same image), the staging dir is dropped and `target` kept.
 */
export async function unpackLayers(
  target: string,
  layers: readonly LayerToApply[],
  options: UnpackOptions = {},
): Promise<{ unpackedBytes: number; skipped: number; created: boolean }> {
  const staging = `${target}.unpack-${process.pid}-${randomBytes(4).toString("hex")}`;
  await mkdir(path.dirname(target), { recursive: true });
  await mkdir(staging, { mode: 0o755 });
  let unpackedBytes = 0;
  let skipped = 0;
  try {
    for (const layer of layers) {
      const r = await applyLayer(staging, layer, { ...options, imageUnpackedBytesBefore: unpackedBytes });
      unpackedBytes += r.unpackedBytes;
      skipped += r.skipped;
    }
    try {
      await rename(staging, target);
      return { unpackedBytes, skipped, created: true };
    } catch (err) {
      const code = errnoOf(err);
      if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
      await rm(staging, { recursive: true, force: true });
      return { unpackedBytes, skipped, created: false };
    }
  } catch (err) {
    await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
}
