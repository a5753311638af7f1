/**
 * A built-in runtime image as a local OCI image layout: `<outDir>/<tag>/` holds `oci-layout`,
 * `index.json` (one manifest, annotated with its tag) and `blobs/sha256/` (the manifest, the
 * config and one gzip layer). The tag names the main package's version and a digest of every
 * input (package versions, loader, options), so each set of inputs has its own layout; a layout
 * that is there and intact is reused. A layout is built in a temporary directory next to it and
 * renamed into place, so a reader never sees half of one.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { copyFile, link, mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { hostArch } from "./collect.js";
import type { CollectOptions, RootfsEntry } from "./collect.js";
import { ToolsImageError } from "./errors.js";
import { DEFAULT_COMPRESSION_LEVEL, writeLayer } from "./layer.js";
import type { LayerProgress } from "./layer.js";
import { LABELS, RECIPES, inputsDigest, recipeVersions, runtimeImageTag } from "./recipes.js";
import type { BuiltInRuntime, Collected } from "./recipes.js";

/** Media types written. */
export const MEDIA_TYPES = {
  index: "application/vnd.oci.image.index.v1+json",
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layer: "application/vnd.oci.image.layer.v1.tar+gzip",
} as const;

/** The annotation of index.json naming a manifest's tag. */
export const REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name";

/** Manifest annotations with the layer's unpacked size and file count. */
const ANNOTATIONS = {
  files: "org.lfedge.eve-tasks.tools-image.files",
  unpackedBytes: "org.lfedge.eve-tasks.tools-image.unpacked-bytes",
  /** JSON: the installed version of each package the image was made from. */
  packages: "org.lfedge.eve-tasks.tools-image.packages",
} as const;

/** Where the built-in images go under the data dir: `<EVE_DATA_DIR>/tools-images`. */
export function builtInImagesRoot(dataDir: string): string {
  return path.resolve(dataDir, "tools-images");
}

/** Where the layouts of built-in runtime `name` go: `<EVE_DATA_DIR>/tools-images/<name>`. */
export function defaultRuntimeImageDir(dataDir: string, name: BuiltInRuntime): string {
  return path.join(builtInImagesRoot(dataDir), name);
}

/** Where the layouts of the `default` runtime (qemu) go. */
export function defaultToolsImageDir(dataDir: string): string {
  return defaultRuntimeImageDir(dataDir, "default");
}

/** `oci:<layoutDir>:<tag>`. */
export function layoutRef(layoutDir: string, tag: string): string {
  return `oci:${layoutDir}:${tag}`;
}

/** Progress of a build: collecting the files, then writing the layer. */
export interface BuildProgress extends LayerProgress {
  readonly phase: "collecting" | "writing";
}

/** Options of {@link buildRuntimeImage}. */
export interface BuildOptions extends CollectOptions {
  /** The parent of the layouts (default dir: {@link defaultRuntimeImageDir}). */
  outDir: string;
  /** gzip level, 1–9 (default {@link DEFAULT_COMPRESSION_LEVEL}). */
  compressionLevel?: number;
  /** Build even when an intact layout is there (it is replaced). */
  force?: boolean;
  onProgress?: (p: BuildProgress) => void;
  signal?: AbortSignal;
}

/** A built (or reused) image. */
export interface RuntimeImage {
  /** Which built-in runtime. */
  readonly name: BuiltInRuntime;
  /** `oci:<layoutDir>:<tag>`: what HypervisorToolsConfig names. */
  readonly ref: string;
  /** `<outDir>/<tag>`, absolute. */
  readonly layoutDir: string;
  readonly outDir: string;
  readonly tag: string;
  /** The installed version of each package it was made from. */
  readonly packages: Readonly<Record<string, string>>;
  /** The cache key: sha256 hex of every input ({@link LABELS.builtInInputs}). */
  readonly inputs: string;
  /** False when an intact layout of the same inputs was reused. */
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

/** The `default` runtime's image (qemu); `qemuVersion` is its qemu package's version. */
export type ToolsImage = RuntimeImage & { readonly qemuVersion: string };

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
 * manifest, config and layer are there with their sizes and digests; the config says it is the
 * built-in runtime `name` and, with `inputs`, made from those inputs. Undefined otherwise
 * (missing, partial, corrupt, another runtime's).
 */
export async function inspectRuntimeImage(
  name: BuiltInRuntime,
  layoutDir: string,
  tag: string,
  inputs?: string,
): Promise<RuntimeImage | undefined> {
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
    const labels = config.config?.Labels ?? {};
    const madeFrom = labels[LABELS.builtInInputs];
    const diffId = config.rootfs?.diff_ids?.[0];
    if (labels[LABELS.builtIn] !== name || madeFrom === undefined || !isDigest(diffId)) return undefined;
    if (inputs !== undefined && madeFrom !== inputs) return undefined;
    const layerFile = blobPath(dir, layer.digest);
    if ((await stat(layerFile)).size !== layer.size) return undefined;
    if ((await fileSha256(layerFile)) !== layer.digest) return undefined;
    const packages = JSON.parse(manifest.annotations?.[ANNOTATIONS.packages] ?? "{}") as Record<
      string,
      string
    >;
    return {
      name,
      ref: layoutRef(dir, tag),
      layoutDir: dir,
      outDir: path.dirname(dir),
      tag,
      packages,
      inputs: madeFrom,
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
    const m = /^\.(?:tmp|old|work)-.*-(\d+)-[0-9a-f]{8}$/.exec(name);
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

/** What {@link writeLayout} writes besides the files. */
interface LayoutInputs {
  readonly name: BuiltInRuntime;
  readonly tag: string;
  readonly packages: Readonly<Record<string, string>>;
  readonly inputs: string;
  readonly architecture: string;
}

/** Writes the layout of `collected` into the (new, empty) directory `dir`. */
async function writeLayout(
  dir: string,
  collected: Collected,
  what: LayoutInputs,
  options: BuildOptions,
): Promise<Omit<RuntimeImage, "ref" | "layoutDir" | "outDir" | "built">> {
  const blobs = path.join(dir, "blobs", "sha256");
  await mkdir(blobs, { recursive: true });
  const layerTemp = path.join(dir, "layer.tmp");
  const layer = await writeLayer(collected.entries, layerTemp, {
    level: options.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL,
    signal: options.signal,
    onProgress: (p) => options.onProgress?.({ phase: "writing", ...p }),
  });
  await fsyncPath(layerTemp);
  await rename(layerTemp, blobPath(dir, layer.digest));

  const config = {
    architecture: what.architecture,
    os: "linux",
    config: {
      ...collected.config,
      Labels: {
        ...collected.config.Labels,
        [LABELS.builtIn]: what.name,
        [LABELS.builtInInputs]: what.inputs,
      },
    },
    rootfs: { type: "layers", diff_ids: [layer.diffId] },
    history: [{ created_by: collected.createdBy }],
  };
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDigest = sha256(configBytes);
  await writeDurably(blobPath(dir, configDigest), configBytes);

  const files = countFiles(collected.entries);
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.manifest,
    config: { mediaType: MEDIA_TYPES.config, digest: configDigest, size: configBytes.length },
    layers: [{ mediaType: MEDIA_TYPES.layer, digest: layer.digest, size: layer.size }],
    annotations: {
      [ANNOTATIONS.files]: String(files),
      [ANNOTATIONS.unpackedBytes]: String(layer.uncompressedSize),
      [ANNOTATIONS.packages]: JSON.stringify(what.packages),
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
        platform: { architecture: what.architecture, os: "linux" },
        annotations: { [REF_NAME_ANNOTATION]: what.tag },
      },
    ],
  };
  await writeDurably(path.join(dir, "index.json"), JSON.stringify(index));
  await writeDurably(path.join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  await fsyncPath(blobs);
  await fsyncPath(dir);
  return {
    name: what.name,
    tag: what.tag,
    packages: what.packages,
    inputs: what.inputs,
    manifestDigest,
    configDigest,
    layerDigest: layer.digest,
    layerSize: layer.size,
    diffId: layer.diffId,
    unpackedSize: layer.uncompressedSize,
    files,
    warnings: collected.warnings,
  };
}

function countFiles(entries: readonly RootfsEntry[]): number {
  return entries.filter((e) => e.type === "file").length;
}

/**
 * Builds built-in runtime `name` from the host's Debian packages into `<outDir>/<tag>`, or reuses
 * the layout there when it is intact and made from the same inputs (`built: false`). Throws
 * PackageNotInstalledError (QemuNotInstalledError for qemu), naming the apt-get command, when a
 * package is missing; ToolsImageError otherwise.
 */
export async function buildRuntimeImage(name: BuiltInRuntime, options: BuildOptions): Promise<RuntimeImage> {
  options.signal?.throwIfAborted();
  const recipe = RECIPES[name];
  const arch = hostArch();
  const outDir = path.resolve(options.outDir);
  const qemu: CollectOptions = {
    ...(options.binary !== undefined ? { binary: options.binary } : {}),
    ...(options.packageName !== undefined ? { packageName: options.packageName } : {}),
    ...(options.moduleDir !== undefined ? { moduleDir: options.moduleDir } : {}),
    ...(options.firmwareDirs !== undefined ? { firmwareDirs: options.firmwareDirs } : {}),
  };
  const versions = await recipeVersions(recipe, qemu);
  const inputs = inputsDigest(recipe, versions, await recipe.extraInputs({ qemu }), arch);
  const mainVersion = Object.values(versions)[0] ?? "0";
  const tag = runtimeImageTag(recipe.tagPrefix, mainVersion, inputs);
  const layoutDir = path.join(outDir, tag);
  if (!options.force) {
    const existing = await inspectRuntimeImage(name, layoutDir, tag, inputs);
    if (existing) return existing;
  }

  options.onProgress?.({ phase: "collecting", files: 0, totalFiles: 0, bytes: 0, totalBytes: 0 });
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
  const work = path.join(outDir, `.work-${tag}-${suffix}`);
  await mkdir(temp, { mode: 0o755 });
  await mkdir(work, { mode: 0o700 });
  try {
    const collected = await recipe.collect({ arch, workDir: work, signal: options.signal, qemu }, versions);
    const after = await recipeVersions(recipe, qemu);
    if (JSON.stringify(after) !== JSON.stringify(versions)) {
      throw new ToolsImageError(
        "BUILD_FAILED",
        `packages changed while building (${JSON.stringify(versions)} → ${JSON.stringify(after)}); try again`,
        { context: { before: versions, after } },
      );
    }
    const written = await writeLayout(
      temp,
      collected,
      { name, tag, packages: versions, inputs, architecture: arch.oci },
      options,
    );
    await rm(work, { recursive: true, force: true });
    if (!options.force) {
      // Another process (the launcher, the bin) may have finished the same build meanwhile.
      const theirs = await inspectRuntimeImage(name, layoutDir, tag, inputs);
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
      const theirs = await inspectRuntimeImage(name, layoutDir, tag, inputs);
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
    await rm(work, { recursive: true, force: true }).catch(() => undefined);
    options.signal?.throwIfAborted();
    if (err instanceof ToolsImageError || (err as Error).name === "AbortError") throw err;
    throw new ToolsImageError("BUILD_FAILED", `building ${layoutDir} failed: ${(err as Error).message}`, {
      context: { layoutDir },
      cause: err,
    });
  }
}

/**
 * The `default` runtime's image: qemu-system-x86_64 and its loader ({@link buildRuntimeImage}
 * of `default`), with its qemu version.
 */
export async function buildToolsImage(options: BuildOptions): Promise<ToolsImage> {
  const image = await buildRuntimeImage("default", options);
  const qemuVersion = image.packages[options.packageName ?? "qemu-system-x86"] ?? "";
  return { ...image, qemuVersion };
}

/**
 * Makes `image` (built in a cache outside the data dir) available as a layout under
 * `<dataDir>/tools-images/<name>/<tag>`, where the seed fetcher reads `oci:` layouts by default:
 * its files hard-linked (copied when the cache is on another file system), in a temporary
 * directory renamed into place. Returns the image as it is there; an intact layout already there
 * is used as it is.
 */
export async function installRuntimeImage(image: RuntimeImage, dataDir: string): Promise<RuntimeImage> {
  const outDir = defaultRuntimeImageDir(dataDir, image.name);
  const layoutDir = path.join(outDir, image.tag);
  if (path.resolve(image.layoutDir) === layoutDir) return image;
  const there = await inspectRuntimeImage(image.name, layoutDir, image.tag, image.inputs);
  if (there) return { ...there, built: image.built };
  await mkdir(outDir, { recursive: true });
  await removeStaleTemps(outDir);
  const temp = path.join(outDir, `.tmp-${image.tag}-${process.pid}-${randomBytes(4).toString("hex")}`);
  try {
    await mkdir(path.join(temp, "blobs", "sha256"), { recursive: true });
    const files = [
      "oci-layout",
      "index.json",
      ...(await readdir(path.join(image.layoutDir, "blobs", "sha256"))).map((b) => `blobs/sha256/${b}`),
    ];
    for (const f of files) {
      const from = path.join(image.layoutDir, f);
      const to = path.join(temp, f);
      await link(from, to).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== "EXDEV" && err.code !== "EPERM") throw err;
        await copyFile(from, to);
      });
    }
    await rename(temp, layoutDir).catch((err: NodeJS.ErrnoException) => {
      // EEXIST, ENOTEMPTY: another process put it there meanwhile (checked below).
      if (err.code !== "EEXIST" && err.code !== "ENOTEMPTY") throw err;
    });
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
  const installed = await inspectRuntimeImage(image.name, layoutDir, image.tag, image.inputs);
  if (!installed) {
    throw new ToolsImageError("BUILD_FAILED", `the layout copied to ${layoutDir} is not intact`, {
      context: { layoutDir, from: image.layoutDir },
    });
  }
  return { ...installed, built: image.built };
}
