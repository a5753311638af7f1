/**
 * Seeds on one node: images pulled into the content store (`<dataDir>/content`) and unpacked
 * into `<dataDir>/seeds/<manifest hex>/rootfs`, one tree per platform manifest, shared by every
 * reference that resolves to it. A seed dir holds `rootfs/` and `seed.json` (what it was made
 * from); it is made in a staging dir, renamed into place, then made read-only (mode 0555; the
 * files keep the image's modes). Tasks use it only as an overlay's lower dir.
 */
import { createHash, randomBytes } from "node:crypto";
import {
  chmod,
  mkdir,
  readFile,
  readdir,
  realpath,
  rename,
  rm,
  stat,
  utimes,
  writeFile,
} from "node:fs/promises";
import path from "node:path";
import { RegistryClient } from "./client.js";
import { ContentStore } from "./content-store.js";
import type { GcResult } from "./content-store.js";
import { acquireLock } from "./lock.js";
import { DEFAULT_LIMITS } from "./limits.js";
import type { PullLimits } from "./limits.js";
import { imageLabels, imageProcess, parseImageConfig } from "./manifest.js";
import type { ImageProcess } from "./manifest.js";
import { DEFAULT_LAYER_CONCURRENCY, pullImage } from "./pull.js";
import type { PullProgress, PulledImage } from "./pull.js";
import { seedsInUse } from "./mountinfo.js";
import { applyLayer } from "./unpack.js";

/** A seed on disk: what `seed.json` holds. */
export interface SeedRecord {
  /** The reference it was first pulled by. */
  readonly ref: string;
  /** Platform manifest digest (the seed's identity). */
  readonly digest: string;
  readonly indexDigest: string | null;
  readonly platform: string;
  /** Absolute path of the read-only root filesystem. */
  readonly rootfsPath: string;
  /** The image's default process. */
  readonly process: ImageProcess;
  /**
   * The image config's labels (a runtime image's contract) and StopSignal. A seed.json written
   * before they were recorded is read with them taken from the config blob.
   */
  readonly labels: Readonly<Record<string, string>>;
  readonly stopSignal: string | null;
  readonly configDigest: string;
  readonly layerDigests: readonly string[];
  /** Compressed size (config + layers). */
  readonly sizeBytes: number;
  /** Uncompressed size of the layers. */
  readonly unpackedBytes: number;
  /** Entries skipped while unpacking (devices, FIFOs). */
  readonly skippedEntries: number;
  readonly createdAt: string;
}

/** Options of {@link SeedStore}. */
export interface SeedStoreOptions {
  /** `EVE_DATA_DIR`, absolute. */
  dataDir: string;
  client?: RegistryClient;
  limits?: PullLimits;
  /** fsync blobs before renaming them into place (default true). */
  durable?: boolean;
  /** Layers fetched at once (default {@link DEFAULT_LAYER_CONCURRENCY}). */
  concurrency?: number;
  /**
   * Directories `oci:<dir>` layouts may be read from (EVE_OCI_LAYOUT_ROOTS); default
   * {@link defaultOciLayoutRoots} of `dataDir`.
   */
  ociLayoutRoots?: readonly string[];
  onWarning?: (message: string) => void;
}

/**
 * Where `oci:<dir>` layouts may come from unless EVE_OCI_LAYOUT_ROOTS says otherwise: the
 * built-in tools images (`<dataDir>/tools-images`) and the node's volume roots
 * (EVE_VOLUME_ROOTS, default `<dataDir>/volumes`), like every other host path in config.
 */
export function defaultOciLayoutRoots(dataDir: string, volumeRoots?: readonly string[]): string[] {
  const data = path.resolve(dataDir);
  return [
    path.join(data, "tools-images"),
    ...(volumeRoots ?? [path.join(data, "volumes")]).map((r) => path.resolve(r)),
  ];
}

/** Options of one {@link SeedStore.ensure}. */
export interface EnsureOptions {
  /** `uname -m` architecture; default this machine's. */
  arch?: string;
  onProgress?: (p: PullProgress) => void;
  /** Called once when another process is pulling the same reference. */
  onWait?: (holderPid: number | undefined) => void;
  /** Called once the image is in the content store, before it is unpacked (what was fetched). */
  onPulled?: (image: PulledImage) => void;
  signal?: AbortSignal;
}

const SEED_FILE = "seed.json";

/** The node's seeds and content store. */
export class SeedStore {
  readonly dataDir: string;
  readonly content: ContentStore;
  readonly seedsDir: string;
  readonly client: RegistryClient;
  readonly limits: PullLimits;
  readonly ociLayoutRoots: readonly string[];
  readonly #concurrency: number;
  readonly #warn: (m: string) => void;

  constructor(options: SeedStoreOptions) {
    this.dataDir = path.resolve(options.dataDir);
    this.content = new ContentStore(path.join(this.dataDir, "content"), { durable: options.durable });
    this.seedsDir = path.join(this.dataDir, "seeds");
    this.client = options.client ?? new RegistryClient({ limits: options.limits });
    this.limits = options.limits ?? DEFAULT_LIMITS;
    this.#concurrency = options.concurrency ?? DEFAULT_LAYER_CONCURRENCY;
    this.ociLayoutRoots = (options.ociLayoutRoots ?? defaultOciLayoutRoots(this.dataDir)).map((r) =>
      path.resolve(r),
    );
    this.#warn = options.onWarning ?? (() => undefined);
  }

  /**
   * Makes the seeds dir and the content store, 0700 like containerd's snapshot and content
   * dirs: a seed holds the image's files with the image's modes, set-uid-root ones included,
   * and only root may reach them (the kernel reaches an overlay's lower dir as the mounter).
   * Run on each use, so a data dir made by an older version is tightened too.
   */
  async #prepare(): Promise<void> {
    await mkdir(this.seedsDir, { recursive: true, mode: 0o700 });
    await chmod(this.seedsDir, 0o700);
    await this.content.prepare();
  }

  /** Seed dir names used as overlay lower dirs in any of `files` (unreadable ones skipped). */
  async #mountedSeeds(files: readonly string[]): Promise<Set<string>> {
    const seedsReal = await realpath(this.seedsDir).catch(() => this.seedsDir);
    const used = new Set<string>();
    for (const f of files) {
      const text = await readFile(f, "utf8").catch(() => "");
      for (const name of seedsInUse(text, seedsReal)) used.add(name);
      if (seedsReal !== this.seedsDir) for (const name of seedsInUse(text, this.seedsDir)) used.add(name);
    }
    return used;
  }

  /** The seed dir of manifest `digest`. */
  seedDir(digest: string): string {
    return path.join(this.seedsDir, digest.replace(/^sha256:/, ""));
  }

  /** Pulls `ref` into the content store only (no unpack). */
  pull(ref: string, options: EnsureOptions = {}): Promise<PulledImage> {
    return pullImage({
      ref,
      arch: options.arch,
      store: this.content,
      client: this.client,
      limits: this.limits,
      concurrency: this.#concurrency,
      ociLayoutRoots: this.ociLayoutRoots,
      onProgress: options.onProgress,
      signal: options.signal,
    });
  }

  /**
   * Makes sure `ref` is pulled and unpacked: resolves the reference (the registry is asked every
   * time: a tag may have moved), fetches missing blobs, unpacks when this manifest has no seed
   * yet. One process at a time per reference on the node; others wait.
   */
  async ensure(ref: string, options: EnsureOptions = {}): Promise<SeedRecord> {
    await this.#prepare();
    const refHash = createHash("sha256").update(ref).digest("hex");
    const lock = await acquireLock(path.join(this.content.root, "locks", `ref-${refHash}.lock`), {
      signal: options.signal,
      onWait: options.onWait,
    });
    try {
      const image = await this.pull(ref, options);
      options.onPulled?.(image);
      return await this.unpack(image);
    } finally {
      await lock.release();
    }
  }

  /** Unpacks a pulled image into its seed dir, unless it is there already. */
  async unpack(image: PulledImage): Promise<SeedRecord> {
    const dir = this.seedDir(image.digest);
    const existing = await this.read(image.digest);
    if (existing) return existing;
    await this.#prepare();
    const staging = path.join(
      this.seedsDir,
      `.staging-${image.digest.slice(7, 19)}-${process.pid}-${randomBytes(4).toString("hex")}`,
    );
    const rootfs = path.join(staging, "rootfs");
    await mkdir(rootfs, { recursive: true, mode: 0o755 });
    try {
      let unpackedBytes = 0;
      let skipped = 0;
      for (const l of image.layers) {
        const r = await applyLayer(
          rootfs,
          { blobPath: l.blobPath, digest: l.descriptor.digest, compression: l.compression, diffId: l.diffId },
          {
            maxUnpackedLayerBytes: this.limits.maxUnpackedLayerBytes,
            maxLayerEntries: this.limits.maxLayerEntries,
            maxImageUnpackedBytes: this.limits.maxImageUnpackedBytes,
            imageUnpackedBytesBefore: unpackedBytes,
            scratchDir: path.join(staging, "scratch"),
            onWarning: this.#warn,
          },
        );
        unpackedBytes += r.unpackedBytes;
        skipped += r.skipped;
      }
      await rm(path.join(staging, "scratch"), { recursive: true, force: true });
      const record: SeedRecord = {
        ref: image.ref,
        digest: image.digest,
        indexDigest: image.indexDigest,
        platform: image.platform,
        rootfsPath: path.join(dir, "rootfs"),
        process: imageProcess(image.config),
        ...imageLabels(image.config),
        configDigest: image.configDigest,
        layerDigests: image.layers.map((l) => l.descriptor.digest),
        sizeBytes: image.totalBytes,
        unpackedBytes,
        skippedEntries: skipped,
        createdAt: new Date().toISOString(),
      };
      await writeFile(path.join(staging, SEED_FILE), `${JSON.stringify(record, null, 2)}\n`, { mode: 0o444 });
      await chmod(staging, 0o555);
      try {
        await rename(staging, dir);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
        await rm(staging, { recursive: true, force: true });
        const other = await this.read(image.digest);
        if (other) return other;
        throw err;
      }
      return record;
    } catch (err) {
      await rm(staging, { recursive: true, force: true }).catch(() => undefined);
      throw err;
    }
  }

  /**
   * The seed of manifest `digest`, if it is on disk. A record written before labels were kept
   * gets them from its config blob (empty when that is gone too).
   */
  async read(digest: string): Promise<SeedRecord | undefined> {
    let record: SeedRecord;
    try {
      const text = await readFile(path.join(this.seedDir(digest), SEED_FILE), "utf8");
      record = JSON.parse(text) as SeedRecord;
    } catch {
      return undefined;
    }
    if (record.labels !== undefined) return record;
    const fromConfig = await this.content
      .readVerified(record.configDigest)
      .then((bytes) => imageLabels(parseImageConfig(bytes)))
      .catch(() => ({ labels: {}, stopSignal: null }));
    return { ...record, ...fromConfig };
  }

  /** Every seed on disk. */
  async list(): Promise<SeedRecord[]> {
    const names = await readdir(this.seedsDir).catch(() => [] as string[]);
    const out: SeedRecord[] = [];
    for (const n of names) {
      if (!/^[a-f0-9]{64}$/.test(n)) continue;
      const r = await this.read(`sha256:${n}`);
      if (r) out.push(r);
    }
    return out;
  }

  /**
   * Garbage collection: removes seeds whose manifest digest is not in `keep` and that no live
   * overlay mount uses as a lower dir (a task still running on it: see `mountinfo.ts`; the
   * mount tables read are `mountinfoFiles`, default init's and this process's), once they have
   * been unused for `graceMs` (default 10 min): each run marks every seed in use by touching its
   * dir, so the grace counts from the last time a run saw it in use (a container being created
   * from it, a task about to restart on it) or from its creation. Then stale staging dirs, then
   * every blob no remaining seed uses.
   */
  async gc(
    keep: ReadonlySet<string>,
    options: { graceMs?: number; mountinfoFiles?: readonly string[] } = {},
  ): Promise<{ seedsRemoved: string[]; seedsMounted: string[]; blobs: GcResult }> {
    const graceMs = options.graceMs ?? 10 * 60_000;
    const seedsRemoved: string[] = [];
    const seedsMounted: string[] = [];
    const lock = await acquireLock(path.join(this.content.root, "locks", "gc.lock"), {
      timeoutMs: 60_000,
    }).catch(() => undefined);
    if (!lock) return { seedsRemoved, seedsMounted, blobs: { removed: [], freedBytes: 0 } };
    try {
      const mounted = await this.#mountedSeeds(
        options.mountinfoFiles ?? ["/proc/1/mountinfo", "/proc/self/mountinfo"],
      );
      const now = Date.now();
      const kept = new Set<string>();
      for (const name of await readdir(this.seedsDir).catch(() => [] as string[])) {
        const abs = path.join(this.seedsDir, name);
        const st = await stat(abs).catch(() => undefined);
        if (!st) continue;
        if (name.startsWith(".staging-")) {
          const pid = Number(name.split("-")[2]);
          let running = false;
          try {
            process.kill(pid, 0);
            running = true;
          } catch {
            running = false;
          }
          if (!running) await rm(abs, { recursive: true, force: true });
          continue;
        }
        if (!/^[a-f0-9]{64}$/.test(name)) continue;
        const digest = `sha256:${name}`;
        const record = await this.read(digest);
        const inUse = keep.has(digest) || mounted.has(name);
        if (mounted.has(name)) seedsMounted.push(digest);
        if (inUse) await utimes(abs, new Date(now), new Date(now)).catch(() => undefined);
        if (inUse || now - st.mtimeMs < graceMs) {
          if (record) {
            for (const d of [
              record.digest,
              record.indexDigest,
              record.configDigest,
              ...record.layerDigests,
            ]) {
              if (d) kept.add(d);
            }
          }
          continue;
        }
        await rm(abs, { recursive: true, force: true });
        seedsRemoved.push(digest);
      }
      const blobs = await this.content.gc(kept, { graceMs });
      return { seedsRemoved, seedsMounted, blobs };
    } finally {
      await lock.release();
    }
  }
}
