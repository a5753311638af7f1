/** Caps on what a pull accepts, so a hostile or broken registry or image cannot fill the node. */

/** Caps on manifest, layer and image sizes and counts. */
export interface PullLimits {
  /** Largest manifest or index accepted, in bytes (default 4 MiB, what registries must accept). */
  readonly maxManifestBytes: number;
  /** Largest image config accepted, in bytes (default 8 MiB). */
  readonly maxConfigBytes: number;
  /** Largest compressed layer accepted, in bytes (default 8 GiB). */
  readonly maxLayerBytes: number;
  /** Largest uncompressed layer accepted, in bytes (default 16 GiB). */
  readonly maxUnpackedLayerBytes: number;
  /** Most tar entries in one layer (default 1 000 000). */
  readonly maxLayerEntries: number;
  /** Most layers in one image (default 500, overlayfs's own stacking limit). */
  readonly maxLayers: number;
  /** Largest sum of an image's uncompressed layers, in bytes (default 64 GiB). */
  readonly maxImageUnpackedBytes: number;
}

/** The default caps: far above what real images need, low enough to keep a node standing. */
export const DEFAULT_LIMITS: PullLimits = Object.freeze({
  maxManifestBytes: 4 * 2 ** 20,
  maxConfigBytes: 8 * 2 ** 20,
  maxLayerBytes: 8 * 2 ** 30,
  maxUnpackedLayerBytes: 16 * 2 ** 30,
  maxLayerEntries: 1_000_000,
  maxLayers: 500,
  maxImageUnpackedBytes: 64 * 2 ** 30,
});

/** The environment variable naming each cap, for error messages. */
export const LIMIT_SETTINGS: Readonly<Record<keyof PullLimits, string>> = {
  maxManifestBytes: "EVE_REGISTRY_MAX_MANIFEST_BYTES",
  maxConfigBytes: "EVE_REGISTRY_MAX_CONFIG_BYTES",
  maxLayerBytes: "EVE_REGISTRY_MAX_LAYER_BYTES",
  maxUnpackedLayerBytes: "EVE_REGISTRY_MAX_UNPACKED_LAYER_BYTES",
  maxLayerEntries: "EVE_REGISTRY_MAX_LAYER_ENTRIES",
  maxLayers: "EVE_REGISTRY_MAX_LAYERS",
  maxImageUnpackedBytes: "EVE_REGISTRY_MAX_IMAGE_UNPACKED_BYTES",
};

/** Limits with `overrides` applied over the defaults. */
export function pullLimits(overrides: Partial<PullLimits> = {}): PullLimits {
  const out: Record<string, number> = { ...DEFAULT_LIMITS };
  for (const [k, v] of Object.entries(overrides)) if (typeof v === "number") out[k] = v;
  return out as unknown as PullLimits;
}
