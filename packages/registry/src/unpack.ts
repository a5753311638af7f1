/**
 * Applies image layers to a root filesystem, as overlayfs would stack them: whiteouts
 * (`.wh.<name>`) and opaque directories (`.wh..wh..opq`, wherever it comes in the tar: it hides
 * only what lower layers put in the directory) remove lower-layer content; symlinks and hardlinks
 * are kept; ownership, modes and times preserved. Nothing lands outside the root: absolute paths,
 * `..`, and writes through a symlink that leads outside are refused. Symlinks in parent paths
 * are followed *inside* the root (an absolute target means the root's own path), like containerd.
 * Each layer's uncompressed digest is checked against the config's `rootfs.diff_ids`.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import {
  chmod,
  chown,
  lchown,
  link,
  lstat,
  open,
  lutimes,
  mkdir,
  readdir,
  readlink,
  rename,
  rm,
  symlink,
  unlink,
  utimes,
} from "node:fs/promises";
import path from "node:path";
import { Transform } from "node:stream";
import type { TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import type { Header as Headers } from "tar-stream";
import { decompressor } from "./decompress.js";
import {
  DigestMismatchError,
  LayerFormatError,
  RegistryError,
  TooLargeError,
  UnsafeLayerError,
} from "./errors.js";
import { LIMIT_SETTINGS } from "./limits.js";
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
  /** chown entries to their uid/gid (default: when running as root). */
  preserveOwner?: boolean;
  /** Entries skipped (devices, FIFOs), one message each. */
  onWarning?: (message: string) => void;
  /** Called with each chunk's length of uncompressed data. */
  onBytes?: (n: number) => void;
}

/** What applying a layer did. */
export interface ApplyResult {
  entries: number;
  unpackedBytes: number;
  skipped: number;
}

/** A tar entry's body: read it, or resume() it to skip. */
interface Body extends AsyncIterable<unknown> {
  resume(): unknown;
}

const WHITEOUT = ".wh.";
const OPAQUE = ".wh..wh..opq";
const MAX_SYMLINK_HOPS = 40;

/** Counts and hashes uncompressed bytes, with a cap. */
class DiffTap extends Transform {
  readonly hash = createHash("sha256");
  bytes = 0;
  constructor(
    private readonly limit: number,
    private readonly tooLarge: (n: number) => Error,
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
    this.hash.update(chunk);
    this.onBytes?.(chunk.length);
    cb(null, chunk);
  }
}

/** `a/./b/` → ["a","b"]; refuses absolute paths and `..`. */
function entryParts(layer: string, name: string, what = "path"): string[] {
  if (name.startsWith("/")) throw new UnsafeLayerError(layer, name, `has an absolute ${what}`);
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new UnsafeLayerError(layer, name, `has ".." in its ${what}`);
  if (parts.some((p) => p.includes("\0")))
    throw new UnsafeLayerError(layer, name, `has a NUL byte in its ${what}`);
  return parts;
}

async function lstatOrUndefined(p: string): Promise<Awaited<ReturnType<typeof lstat>> | undefined> {
  try {
    return await lstat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** Applies layers in order; state of one layer being applied. */
class LayerApplier {
  /** Paths (relative, `/`-joined) this layer wrote. */
  readonly written = new Set<string>();
  /** Every ancestor directory of a path this layer wrote. */
  readonly ancestors = new Set<string>();
  /** Directory metadata, applied after the layer (children change a directory's times). */
  readonly dirs: { abs: string; header: Headers }[] = [];
  skipped = 0;

  constructor(
    readonly root: string,
    readonly layer: string,
    readonly preserveOwner: boolean,
    readonly warn: (m: string) => void,
  ) {}

  #mark(rel: string): void {
    this.written.add(rel);
    const parts = rel.split("/");
    for (let i = 1; i < parts.length; i++) this.ancestors.add(parts.slice(0, i).join("/"));
  }

  /**
   * The real path of directory `parts` inside the root, following symlinks within the root.
   * With `create`, missing directories are made (0755). Refuses a path that leads outside.
   * Resolves undefined when (without `create`) something is missing.
   */
  async resolveDir(
    entry: string,
    parts: readonly string[],
    create: boolean,
  ): Promise<{ abs: string; rel: string[] } | undefined> {
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
      const st = await lstatOrUndefined(abs);
      if (st === undefined) {
        if (!create) return undefined;
        await mkdir(abs, { mode: 0o755 });
        cur.push(c);
        continue;
      }
      if (st.isSymbolicLink()) {
        if (++hops > MAX_SYMLINK_HOPS)
          throw new UnsafeLayerError(this.layer, entry, "goes through too many symlinks");
        const target = await readlink(abs);
        const targetParts = target.split("/");
        if (target.startsWith("/")) cur.length = 0;
        queue.unshift(...targetParts);
        continue;
      }
      if (st.isDirectory()) {
        cur.push(c);
        continue;
      }
      if (!create) return undefined;
      // A lower layer's file where this layer puts a directory: the directory replaces it.
      await unlink(abs);
      await mkdir(abs, { mode: 0o755 });
      cur.push(c);
    }
    return { abs: path.join(this.root, ...cur), rel: cur };
  }

  /** Removes whatever is at `abs` (not following a final symlink). */
  async #remove(abs: string): Promise<void> {
    await rm(abs, { recursive: true, force: true });
  }

  /** `.wh.<name>`: removes `<name>` from lower layers. */
  async whiteout(entry: string, dirParts: string[], name: string): Promise<void> {
    if (name === "" || name === "." || name === "..") {
      throw new UnsafeLayerError(this.layer, entry, "is a whiteout of its own directory");
    }
    const dir = await this.resolveDir(entry, dirParts, false);
    if (!dir) return;
    const rel = [...dir.rel, name].join("/");
    if (this.written.has(rel)) return; // a whiteout hides lower layers only
    await this.#remove(path.join(dir.abs, name));
  }

  /** `.wh..wh..opq`: empties the directory of what lower layers put there (recursively). */
  async opaque(entry: string, dirParts: string[]): Promise<void> {
    const dir = await this.resolveDir(entry, dirParts, false);
    if (!dir) return;
    await this.#prune(dir.abs, dir.rel.join("/"));
  }

  async #prune(abs: string, rel: string): Promise<void> {
    for (const child of await readdir(abs, { withFileTypes: true })) {
      const childRel = rel === "" ? child.name : `${rel}/${child.name}`;
      const childAbs = path.join(abs, child.name);
      const isDir = child.isDirectory();
      if (this.written.has(childRel) || this.ancestors.has(childRel)) {
        if (isDir) await this.#prune(childAbs, childRel);
        continue;
      }
      await this.#remove(childAbs);
    }
  }

  async #own(abs: string, h: Headers, isSymlink: boolean): Promise<void> {
    if (!this.preserveOwner) return;
    const uid = h.uid ?? 0;
    const gid = h.gid ?? 0;
    if (isSymlink) await lchown(abs, uid, gid);
    else await chown(abs, uid, gid);
  }

  async #times(abs: string, h: Headers, isSymlink: boolean): Promise<void> {
    const mtime = h.mtime ?? new Date(0);
    if (isSymlink) await lutimes(abs, mtime, mtime).catch(() => undefined);
    else await utimes(abs, mtime, mtime);
  }

  /** Applies one tar entry. */
  async entry(h: Headers, body: Body): Promise<void> {
    const name = h.name;
    const parts = entryParts(this.layer, name);
    const base = parts[parts.length - 1];
    if (base === undefined) {
      // The root itself ("./"): its metadata only.
      if (h.type === "directory") this.dirs.push({ abs: this.root, header: h });
      body.resume();
      return;
    }
    const dirParts = parts.slice(0, -1);
    if (base.startsWith(WHITEOUT)) {
      body.resume();
      if (base === OPAQUE) await this.opaque(name, dirParts);
      else await this.whiteout(name, dirParts, base.slice(WHITEOUT.length));
      return;
    }
    const type = h.type ?? "file";
    if (type === "character-device" || type === "block-device" || type === "fifo") {
      body.resume();
      this.skipped++;
      this.warn(`layer ${this.layer}: skipped ${type} ${name} (device nodes and FIFOs are not created)`);
      return;
    }
    const dir = await this.resolveDir(name, dirParts, true);
    if (!dir) throw new UnsafeLayerError(this.layer, name, "has no parent directory");
    const abs = path.join(dir.abs, base);
    const rel = [...dir.rel, base].join("/");
    const existing = await lstatOrUndefined(abs);
    const mode = (h.mode ?? 0o644) & 0o7777;

    switch (type) {
      case "directory": {
        if (existing && !existing.isDirectory()) await this.#remove(abs);
        if (!existing || !existing.isDirectory()) await mkdir(abs, { mode: 0o755 });
        this.#mark(rel);
        this.dirs.push({ abs, header: h });
        body.resume();
        return;
      }
      case "file":
      case "contiguous-file": {
        if (existing) await this.#remove(abs);
        const fh = await open(abs, "wx", 0o600);
        try {
          for await (const chunk of body) await fh.write(chunk as Buffer);
        } finally {
          await fh.close();
        }
        await this.#own(abs, h, false);
        await chmod(abs, mode); // after chown, which clears setuid bits
        await this.#times(abs, h, false);
        this.#mark(rel);
        return;
      }
      case "symlink": {
        body.resume();
        if (existing) await this.#remove(abs);
        await symlink(h.linkname ?? "", abs);
        await this.#own(abs, h, true);
        await this.#times(abs, h, true);
        this.#mark(rel);
        return;
      }
      case "link": {
        body.resume();
        const targetParts = entryParts(this.layer, h.linkname ?? "", "hardlink target");
        const tBase = targetParts[targetParts.length - 1];
        const tDir =
          tBase === undefined ? undefined : await this.resolveDir(name, targetParts.slice(0, -1), false);
        const tAbs = tDir && tBase !== undefined ? path.join(tDir.abs, tBase) : undefined;
        const tSt = tAbs === undefined ? undefined : await lstatOrUndefined(tAbs);
        if (tAbs === undefined || tSt === undefined) {
          throw new UnsafeLayerError(
            this.layer,
            name,
            `is a hardlink to "${h.linkname ?? ""}", which does not exist`,
          );
        }
        if (tSt.isDirectory()) throw new UnsafeLayerError(this.layer, name, "is a hardlink to a directory");
        if (tAbs === abs) return;
        if (existing) await this.#remove(abs);
        await link(tAbs, abs);
        this.#mark(rel);
        return;
      }
      default: {
        body.resume();
        this.skipped++;
        this.warn(`layer ${this.layer}: skipped ${name} of unsupported type ${String(type)}`);
      }
    }
  }

  /** Directory modes, owners and times, deepest first. */
  async finish(): Promise<void> {
    for (const d of this.dirs.reverse()) {
      await this.#own(d.abs, d.header, false);
      await chmod(d.abs, (d.header.mode ?? 0o755) & 0o7777);
      await this.#times(d.abs, d.header, false);
    }
  }
}

/**
 * Applies one layer to `root` in place (a staging dir: on an error, throw the dir away).
 * Throws UnsafeLayerError, LayerFormatError, DigestMismatchError (diff_id) or TooLargeError.
 */
export async function applyLayer(
  root: string,
  layer: LayerToApply,
  options: UnpackOptions = {},
): Promise<ApplyResult> {
  const limit = options.maxUnpackedLayerBytes ?? 16 * 2 ** 30;
  const preserveOwner = options.preserveOwner ?? process.getuid?.() === 0;
  const applier = new LayerApplier(root, layer.digest, preserveOwner, options.onWarning ?? (() => undefined));
  const tap = new DiffTap(
    limit,
    (n) =>
      new TooLargeError(`layer ${layer.digest} uncompressed`, n, limit, LIMIT_SETTINGS.maxUnpackedLayerBytes),
    options.onBytes,
  );
  const extract = tar.extract();
  const feeding = pipeline(createReadStream(layer.blobPath), decompressor(layer.compression), tap, extract);
  // Observed below; this keeps an early failure from being an unhandled rejection meanwhile.
  feeding.catch(() => undefined);
  let entries = 0;
  try {
    for await (const entry of extract) {
      entries++;
      await applier.entry(entry.header, entry);
    }
    await feeding;
  } catch (err) {
    extract.destroy();
    await feeding.catch(() => undefined);
    if (err instanceof RegistryError) throw err;
    const fed = await feeding.then(
      () => undefined,
      (e: unknown) => e,
    );
    const cause = fed instanceof RegistryError ? fed : err;
    if (cause instanceof RegistryError) throw cause;
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== undefined && !code.startsWith("Z_") && code !== "ERR_STREAM_PREMATURE_CLOSE") throw err;
    throw new LayerFormatError(layer.digest, (cause as Error).message, cause);
  }
  const diffId = `sha256:${tap.hash.digest("hex")}`;
  if (diffId !== layer.diffId) {
    throw new DigestMismatchError(
      `uncompressed layer ${layer.digest} (config rootfs.diff_ids)`,
      layer.diffId,
      diffId,
    );
  }
  await applier.finish();
  return { entries, unpackedBytes: tap.bytes, skipped: applier.skipped };
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
      const r = await applyLayer(staging, layer, options);
      unpackedBytes += r.unpackedBytes;
      skipped += r.skipped;
    }
    try {
      await rename(staging, target);
      return { unpackedBytes, skipped, created: true };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
      await rm(staging, { recursive: true, force: true });
      return { unpackedBytes, skipped, created: false };
    }
  } catch (err) {
    await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
}
