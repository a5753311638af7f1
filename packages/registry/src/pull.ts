/**
 * Pulls an image into the content store: resolves the reference (index → the platform's
 * manifest), stores manifest, index and config, then every layer, each verified by digest and
 * size while streaming (the digest in a worker thread, see blob-hasher.ts). Layers are fetched
 * several at a time.
 */
import type { ImageSource, RegistryClient } from "./client.js";
import type { ContentStore } from "./content-store.js";
import { InvalidManifestError, PlatformNotFoundError, RegistryError, TooManyError } from "./errors.js";
import { DEFAULT_LIMITS, LIMIT_SETTINGS } from "./limits.js";
import type { PullLimits } from "./limits.js";
import { layerCompression, parseImageConfig, parseManifest } from "./manifest.js";
import type { Descriptor, ImageConfig, ImageManifest, LayerCompression } from "./manifest.js";
import { layoutSource } from "./oci-layout.js";
import { formatPlatform, hostArch, platformFor, selectPlatform } from "./platform.js";
import { parseReference } from "./reference.js";
import type { ImageReference } from "./reference.js";

/**
 * Layers fetched at once by default: as skopeo and podman (containers/image) do; on one fast
 * link more streams keep both the network and the disk busy (measured in test/bench/README.md).
 */
export const DEFAULT_LAYER_CONCURRENCY = 6;

/** Bytes of a pull so far; `totalBytes` is null until the manifest is known. */
export interface PullProgress {
  doneBytes: number;
  totalBytes: number | null;
}

/** Options of {@link pullImage}. */
export interface PullOptions {
  /** A reference string or a parsed one. */
  ref: string | ImageReference;
  /** Architecture to select (`uname -m` or OCI spelling); default this machine's. */
  arch?: string;
  store: ContentStore;
  /** The registry client (needed for registry references). */
  client: RegistryClient;
  limits?: PullLimits;
  /**
   * Directories `oci:<dir>` layouts may be read from (absolute); a layout elsewhere is refused.
   * Default: none.
   */
  ociLayoutRoots?: readonly string[];
  /** Layers fetched at once (default {@link DEFAULT_LAYER_CONCURRENCY}). */
  concurrency?: number;
  /** Called as bytes arrive (often: throttle it). */
  onProgress?: (p: PullProgress) => void;
  signal?: AbortSignal;
}

/** A layer of a pulled image. */
export interface PulledLayer {
  readonly descriptor: Descriptor;
  readonly compression: LayerCompression;
  readonly diffId: string;
  readonly blobPath: string;
}

/** An image whose blobs are all in the content store. */
export interface PulledImage {
  /** The reference as given. */
  readonly ref: string;
  readonly reference: ImageReference;
  /** Digest of the platform manifest. */
  readonly digest: string;
  /** Digest of the index it was chosen from; null when the reference named a manifest. */
  readonly indexDigest: string | null;
  /** `os/arch[/variant]`. */
  readonly platform: string;
  readonly manifest: ImageManifest;
  readonly configDigest: string;
  readonly config: ImageConfig;
  readonly layers: readonly PulledLayer[];
  /** Config plus layers, compressed. */
  readonly totalBytes: number;
  /** What was actually fetched (the rest was in the store). */
  readonly fetchedBytes: number;
}

async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i] as T, i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** The {@link ImageSource} of a reference. */
export function sourceOf(
  reference: ImageReference,
  client: RegistryClient,
  limits: PullLimits,
  ociLayoutRoots: readonly string[] = [],
): ImageSource {
  return reference.kind === "registry"
    ? client.source(reference)
    : layoutSource(reference, limits, ociLayoutRoots);
}

/** Pulls `ref` into `store`; see the module comment. */
export async function pullImage(options: PullOptions): Promise<PulledImage> {
  const limits = options.limits ?? DEFAULT_LIMITS;
  const reference = typeof options.ref === "string" ? parseReference(options.ref) : options.ref;
  const ref = reference.raw;
  const source = sourceOf(reference, options.client, limits, options.ociLayoutRoots);
  const store = options.store;
  const wanted = platformFor(options.arch ?? hostArch());
  const progress: PullProgress = { doneBytes: 0, totalBytes: null };
  const report = (): void => options.onProgress?.({ ...progress });
  report();

  const top = await source.getManifest(undefined);
  let doc = parseManifest(top.bytes, top.contentType);
  let manifestBytes = top;
  let indexDigest: string | null = null;
  let platform = formatPlatform(wanted);
  if (doc.kind === "index") {
    indexDigest = top.digest;
    await store.putBytes(top.digest, top.bytes);
    const entry = selectPlatform(ref, doc.index, wanted);
    platform = entry.platform ? formatPlatform(entry.platform) : platform;
    manifestBytes = await source.getManifest(entry.digest);
    if (manifestBytes.digest !== entry.digest) {
      throw new InvalidManifestError("manifest", `${entry.digest} arrived as ${manifestBytes.digest}`);
    }
    doc = parseManifest(manifestBytes.bytes, manifestBytes.contentType ?? entry.mediaType);
    if (doc.kind !== "manifest")
      throw new InvalidManifestError("image index", `entry ${entry.digest} is an index itself`);
  }
  const manifest = doc.manifest;
  const digest = manifestBytes.digest;
  await store.putBytes(digest, manifestBytes.bytes);

  // Everything that can be refused is refused before the first layer byte is fetched.
  if (manifest.layers.length > limits.maxLayers) {
    throw new TooManyError(
      `image ${ref}`,
      manifest.layers.length,
      "layers",
      limits.maxLayers,
      LIMIT_SETTINGS.maxLayers,
    );
  }
  const compressions = manifest.layers.map((l) => layerCompression(l.mediaType));
  for (const l of manifest.layers) {
    if (l.size > limits.maxLayerBytes) {
      throw new RegistryError(
        "TOO_LARGE",
        `layer ${l.digest} of ${ref} is too large: ${l.size} bytes, over the limit of ${limits.maxLayerBytes} bytes (${LIMIT_SETTINGS.maxLayerBytes})`,
        { context: { ref, sizeBytes: l.size, limitBytes: limits.maxLayerBytes } },
      );
    }
  }
  progress.totalBytes = manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0);
  report();
  let fetchedBytes = 0;
  const ingest = async (d: Descriptor, what: string, maxBytes: number, setting: string): Promise<string> => {
    let counted = 0;
    try {
      const r = await store.ingest(d.digest, d.size, () => source.openBlob(d, options.signal), {
        what: `${what} ${d.digest} of ${ref}`,
        maxBytes,
        maxBytesSetting: setting,
        signal: options.signal,
        onBytes: (n) => {
          counted += n;
          progress.doneBytes += n;
          report();
        },
      });
      if (r.fetched) fetchedBytes += d.size;
      else {
        progress.doneBytes += d.size - counted;
        report();
      }
      return r.path;
    } catch (err) {
      progress.doneBytes -= counted;
      throw err;
    }
  };

  await ingest(manifest.config, "config", limits.maxConfigBytes, LIMIT_SETTINGS.maxConfigBytes);
  const config = parseImageConfig(await store.readVerified(manifest.config.digest));
  if (doc.kind === "manifest" && indexDigest === null) {
    // A single manifest: its config says which platform it is for.
    const arch = config.architecture;
    if (
      arch !== undefined &&
      arch !== "" &&
      (arch !== wanted.architecture || (config.os ?? "linux") !== wanted.os)
    ) {
      const have = formatPlatform({ os: config.os ?? "linux", architecture: arch, variant: config.variant });
      throw new PlatformNotFoundError(ref, formatPlatform(wanted), [have]);
    }
    if (arch)
      platform = formatPlatform({ os: config.os ?? "linux", architecture: arch, variant: config.variant });
  }
  const diffIds = config.rootfs.diff_ids;
  if (diffIds.length !== manifest.layers.length) {
    throw new InvalidManifestError(
      "image config",
      `${manifest.layers.length} layers in the manifest but ${diffIds.length} rootfs.diff_ids in the config`,
    );
  }
  const paths = await mapLimit(manifest.layers, options.concurrency ?? DEFAULT_LAYER_CONCURRENCY, (l) =>
    ingest(l, "layer", limits.maxLayerBytes, LIMIT_SETTINGS.maxLayerBytes),
  );
  const layers: PulledLayer[] = manifest.layers.map((descriptor, i) => ({
    descriptor,
    compression: compressions[i] as LayerCompression,
    diffId: diffIds[i] as string,
    blobPath: paths[i] as string,
  }));
  return {
    ref,
    reference,
    digest,
    indexDigest,
    platform,
    manifest,
    configDigest: manifest.config.digest,
    config,
    layers,
    totalBytes: progress.totalBytes,
    fetchedBytes,
  };
}

export { DEFAULT_LIMITS };
