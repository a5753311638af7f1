/**
 * The built-in hypervisor-tools image as a local OCI image layout: `<outDir>/<tag>/` holds
 * `oci-layout`, `index.json` (one manifest, annotated with its tag) and `blobs/sha256/` (the
 * manifest, the config and one gzip layer). The tag comes from the qemu package's version, so
 * each qemu version has its own layout; a layout that is there and intact is reused. A layout is
 * built in a temporary directory next to it and renamed into place, so a reader never sees half
 * of one.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { collectQemuRootfs } from "./collect.js";
import type { CollectOptions, QemuRootfs } from "./collect.js";
import { debianPackageVersion, QEMU_PACKAGE } from "./collect.js";
import { ToolsImageError } from "./errors.js";
import { DEFAULT_COMPRESSION_LEVEL, writeLayer } from "./layer.js";
import type { LayerProgress } from "./layer.js";

/** Media types written. */
export const MEDIA_TYPES = {
  index: "application/vnd.oci.image.index.v1+json",
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layer: "application/vnd.oci.image.layer.v1.tar+gzip",
} as const;

/** The annotation of index.json naming a manifest's tag. */
export const REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name";

/** Labels of the image config. */
export const LABELS = {
  hypervisor: "org.lfedge.eve-tasks.hypervisor",
  qemuVersion: "org.lfedge.eve-tasks.qemu-version",
  qemuPackage: "org.lfedge.eve-tasks.qemu-package",
} as const;

/** Manifest annotations with the layer's unpacked size and file count. */
const ANNOTATIONS = {
  files: "org.lfedge.eve-tasks.tools-image.files",
  unpackedBytes: "org.lfedge.eve-tasks.tools-image.unpacked-bytes",
} as const;

/** The PATH of the image's processes. */
export const IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Where the built-in images go under the data dir: `<EVE_DATA_DIR>/tools-images/qemu`. */
export function defaultToolsImageDir(dataDir: string): string {
  return path.resolve(dataDir, "tools-images", "qemu");
}

/**
 * The tag of the image of qemu `version`: `qemu-` and the Debian version without its epoch,
 * every character outside the OCI tag grammar (`[A-Za-z0-9_.-]`) made `-`, at most 128 long.
 * `1:7.2+dfsg-7+deb12u18+b3` → `qemu-7.2-dfsg-7-deb12u18-b3`.
 */
export function toolsImageTag(qemuVersion: string): string {
  const noEpoch = qemuVersion.replace(/^\d+:/, "");
  return `qemu-${noEpoch.replace(/[^A-Za-z0-9_.-]/g, "-")}`.slice(0, 128);
}

/** `oci:<layoutDir>:<tag>`. */
export function layoutRef(layoutDir: string, tag: string): string {
  return `oci:${layoutDir}:${tag}`;
}

/** Progress of a build: collecting the files, then writing the layer. */
export interface BuildProgress extends LayerProgress {
  readonly phase: "collecting" | "writing";
}

/** Options of {@link buildToolsImage}. */
export interface BuildOptions extends CollectOptions {
  /** The parent of the layouts (default dir: {@link defaultToolsImageDir}). */
  outDir: string;
  /** gzip level, 1–9 (default {@link DEFAULT_COMPRESSION_LEVEL}). */
  compressionLevel?: number;
  /** Build even when an intact layout is there (it is replaced). */
  force?: boolean;
  onProgress?: (p: BuildProgress) => void;
  signal?: AbortSignal;
}

/** A built (or reused) image. */
export interface ToolsImage {
  /** `oci:<layoutDir>:<tag>`: what HypervisorToolsConfig names. */
  readonly ref: string;
  /** `<outDir>/<tag>`, absolute. */
  readonly layoutDir: string;
  readonly outDir: string;
  readonly tag: string;
  readonly qemuVersion: string;
  /** False when an intact layout of this qemu version was reused. */
  readonly built: boolean;
  readonly manifestDigest: string;
  readonly configDigest: string;
  readonly layerDigest: string;
  /** Compressed bytes of the layer. */
  readonly layerSize: number;
  /** The uncompressed tar's digest (`rootfs.diff_ids[0]`). */
  readonly diffId: string;
  /** Bytes of the uncompressed tar. */
  readonly unpackedSize: number;
  /** Regular files in the image. */
  readonly files: number;
  /** From collecting (modules whose libraries are missing, dangling links); empty when reused. */
  readonly warnings: readonly string[];
}

const sha256 = (bytes: Uint8Array): string => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

function blobPath(layoutDir: string, digest: string): string {
  return path.join(layoutDir, "blobs", "sha256", digest.slice("sha256:".length));
}

/** Writes `bytes` to `file` and flushes it to disk. */
async function writeDurably(file: string, bytes: Uint8Array | string): Promise<void> {
  const fh = await open(file, "wx", 0o644);
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function fsyncPath(p: string): Promise<void> {
  const fh = await open(p, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function fileSha256(file: string): Promise<string> {
  const hash = createHash("sha256");
  await pipeline(createReadStream(file), hash);
  return `sha256:${hash.digest("hex")}`;
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

const isDigest = (d: unknown): d is string => typeof d === "string" && /^sha256:[a-f0-9]{64}$/.test(d);

/** Reads blob `d` and checks its size and digest; undefined when it is missing or wrong. */
async function readVerifiedBlob(layoutDir: string, d: Descriptor): Promise<Buffer | undefined> {
  try {
    const bytes = await readFile(blobPath(layoutDir, d.digest));
    return bytes.length === d.size && sha256(bytes) === d.digest ? bytes : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The image in layout `layoutDir` under `tag` if it is intact: index.json names the tag, and the
 * manifest, config and layer are there with their sizes and digests; with `qemuVersion`, the
 * config's label must say that version. Undefined otherwise (missing, partial, corrupt).
 */
export async function inspectToolsImage(
  layoutDir: string,
  tag: string,
  qemuVersion?: string,
): Promise<ToolsImage | undefined> {
  const dir = path.resolve(layoutDir);
  try {
    const layout = JSON.parse(await readFile(path.join(dir, "oci-layout"), "utf8")) as {
      imageLayoutVersion?: unknown;
    };
    if (layout.imageLayoutVersion !== "1.0.0") return undefined;
    const index = JSON.parse(await readFile(path.join(dir, "index.json"), "utf8")) as {
      manifests?: (Descriptor & { annotations?: Record<string, string> })[];
    };
    const entry = index.manifests?.find((m) => m.annotations?.[REF_NAME_ANNOTATION] === tag);
    if (!entry || !isDigest(entry.digest)) return undefined;
    const manifestBytes = await readVerifiedBlob(dir, entry);
    if (!manifestBytes) return undefined;
    const manifest = JSON.parse(manifestBytes.toString("utf8")) as {
      config?: Descriptor;
      layers?: Descriptor[];
      annotations?: Record<string, string>;
    };
    const layer = manifest.layers?.[0];
    if (!manifest.config || !isDigest(manifest.config.digest) || manifest.layers?.length !== 1 || !layer) {
      return undefined;
    }
    if (!isDigest(layer.digest)) return undefined;
    const configBytes = await readVerifiedBlob(dir, manifest.config);
    if (!configBytes) return undefined;
    const config = JSON.parse(configBytes.toString("utf8")) as {
      config?: { Labels?: Record<string, string> };
      rootfs?: { diff_ids?: string[] };
    };
    const version = config.config?.Labels?.[LABELS.qemuVersion];
    const diffId = config.rootfs?.diff_ids?.[0];
    if (version === undefined || !isDigest(diffId)) return undefined;
    if (qemuVersion !== undefined && version !== qemuVersion) return undefined;
    const layerFile = blobPath(dir, layer.digest);
    if ((await stat(layerFile)).size !== layer.size) return undefined;
    if ((await fileSha256(layerFile)) !== layer.digest) return undefined;
    return {
      ref: layoutRef(dir, tag),
      layoutDir: dir,
      outDir: path.dirname(dir),
      tag,
      qemuVersion: version,
      built: false,
      manifestDigest: entry.digest,
      configDigest: manifest.config.digest,
      layerDigest: layer.digest,
      layerSize: layer.size,
      diffId,
      unpackedSize: Number(manifest.annotations?.[ANNOTATIONS.unpackedBytes] ?? NaN),
      files: Number(manifest.annotations?.[ANNOTATIONS.files] ?? NaN),
      warnings: [],
    };
  } catch {
    return undefined;
  }
}

/** Removes temporary build dirs in `outDir` left by processes that are gone. */
async function removeStaleTemps(outDir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(outDir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^\.(?:tmp|old)-.*-(\d+)-[0-9a-f]{8}$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid) continue;
    try {
      process.kill(pid, 0);
      continue; // its builder is still running
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EPERM") continue;
    }
    await rm(path.join(outDir, name), { recursive: true, force: true });
  }
}

/** Writes the layout of `rootfs` into the (new, empty) directory `dir`. */
async function writeLayout(
  dir: string,
  rootfs: QemuRootfs,
  tag: string,
  options: BuildOptions,
): Promise<Omit<ToolsImage, "ref" | "layoutDir" | "outDir" | "built">> {
  const blobs = path.join(dir, "blobs", "sha256");
  await mkdir(blobs, { recursive: true });
  const layerTemp = path.join(dir, "layer.tmp");
  const layer = await writeLayer(rootfs.entries, layerTemp, {
    level: options.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL,
    signal: options.signal,
    onProgress: (p) => options.onProgress?.({ phase: "writing", ...p }),
  });
  await fsyncPath(layerTemp);
  await rename(layerTemp, blobPath(dir, layer.digest));

  const config = {
    architecture: rootfs.arch.oci,
    os: "linux",
    config: {
      Env: [`PATH=${IMAGE_PATH}`],
      Entrypoint: [rootfs.binary],
      WorkingDir: "/",
      Labels: {
        [LABELS.hypervisor]: "qemu",
        [LABELS.qemuPackage]: rootfs.packageName,
        [LABELS.qemuVersion]: rootfs.qemuVersion,
      },
    },
    rootfs: { type: "layers", diff_ids: [layer.diffId] },
    history: [
      {
        created_by: `eve-tasks-tools-image: ${rootfs.binary}, its libraries, modules and firmware from the Debian package ${rootfs.packageName} ${rootfs.qemuVersion}`,
      },
    ],
  };
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDigest = sha256(configBytes);
  await writeDurably(blobPath(dir, configDigest), configBytes);

  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.manifest,
    config: { mediaType: MEDIA_TYPES.config, digest: configDigest, size: configBytes.length },
    layers: [{ mediaType: MEDIA_TYPES.layer, digest: layer.digest, size: layer.size }],
    annotations: {
      [ANNOTATIONS.files]: String(rootfs.files),
      [ANNOTATIONS.unpackedBytes]: String(layer.uncompressedSize),
    },
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const manifestDigest = sha256(manifestBytes);
  await writeDurably(blobPath(dir, manifestDigest), manifestBytes);

  const index = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.index,
    manifests: [
      {
        mediaType: MEDIA_TYPES.manifest,
        digest: manifestDigest,
        size: manifestBytes.length,
        platform: { architecture: rootfs.arch.oci, os: "linux" },
        annotations: { [REF_NAME_ANNOTATION]: tag },
      },
    ],
  };
  await writeDurably(path.join(dir, "index.json"), JSON.stringify(index));
  await writeDurably(path.join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  await fsyncPath(blobs);
  await fsyncPath(dir);
  return {
    tag,
    qemuVersion: rootfs.qemuVersion,
    manifestDigest,
    configDigest,
    layerDigest: layer.digest,
    layerSize: layer.size,
    diffId: layer.diffId,
    unpackedSize: layer.uncompressedSize,
    files: rootfs.files,
    warnings: rootfs.warnings,
  };
}

/**
 * Builds the hypervisor-tools image of the host's qemu into `<outDir>/<tag>`, or reuses the
 * layout there when it is intact and of the same qemu version (`built: false`). Throws
 * QemuNotInstalledError (naming the apt-get command) when qemu is missing, ToolsImageError
 * otherwise.
 */
export async function buildToolsImage(options: BuildOptions): Promise<ToolsImage> {
  options.signal?.throwIfAborted();
  const outDir = path.resolve(options.outDir);
  const qemuVersion = await debianPackageVersion(options.packageName ?? QEMU_PACKAGE);
  const tag = toolsImageTag(qemuVersion);
  const layoutDir = path.join(outDir, tag);
  if (!options.force) {
    const existing = await inspectToolsImage(layoutDir, tag, qemuVersion);
    if (existing) return existing;
  }

  options.onProgress?.({ phase: "collecting", files: 0, totalFiles: 0, bytes: 0, totalBytes: 0 });
  const rootfs = await collectQemuRootfs(options);
  if (rootfs.qemuVersion !== qemuVersion) {
    throw new ToolsImageError(
      "BUILD_FAILED",
      `qemu changed while building (${qemuVersion} → ${rootfs.qemuVersion}); try again`,
      { context: { before: qemuVersion, after: rootfs.qemuVersion } },
    );
  }
  try {
    await mkdir(outDir, { recursive: true });
  } catch (err) {
    throw new ToolsImageError("BUILD_FAILED", `cannot create ${outDir}: ${(err as Error).message}`, {
      context: { outDir },
      cause: err,
    });
  }
  await removeStaleTemps(outDir);
  const suffix = `${process.pid}-${randomBytes(4).toString("hex")}`;
  const temp = path.join(outDir, `.tmp-${tag}-${suffix}`);
  await mkdir(temp, { mode: 0o755 });
  try {
    const written = await writeLayout(temp, rootfs, tag, options);
    if (!options.force) {
      // Another process (the launcher, the bin) may have finished the same build meanwhile.
      const theirs = await inspectToolsImage(layoutDir, tag, qemuVersion);
      if (theirs) {
        await rm(temp, { recursive: true, force: true });
        return theirs;
      }
    }
    // A layout still there is broken, or being replaced (force): move it aside first.
    const old = path.join(outDir, `.old-${tag}-${suffix}`);
    const hadOld = await rename(layoutDir, old).then(
      () => true,
      (err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") return false;
        throw err;
      },
    );
    try {
      await rename(temp, layoutDir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "EEXIST" && code !== "ENOTEMPTY") throw err;
      // Another process put an intact layout there meanwhile: use it.
      const theirs = await inspectToolsImage(layoutDir, tag, qemuVersion);
      if (!theirs) throw err;
      await rm(temp, { recursive: true, force: true });
      if (hadOld) await rm(old, { recursive: true, force: true });
      return theirs;
    }
    await fsyncPath(outDir);
    if (hadOld) await rm(old, { recursive: true, force: true });
    return { ...written, ref: layoutRef(layoutDir, tag), layoutDir, outDir, built: true };
  } catch (err) {
    await rm(temp, { recursive: true, force: true }).catch(() => undefined);
    options.signal?.throwIfAborted();
    if (err instanceof ToolsImageError || (err as Error).name === "AbortError") throw err;
    throw new ToolsImageError("BUILD_FAILED", `building ${layoutDir} failed: ${(err as Error).message}`, {
      context: { layoutDir },
      cause: err,
    });
  }
}
