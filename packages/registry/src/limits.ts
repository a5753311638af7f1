/** Caps on what a pull accepts, so a hostile or broken registry cannot fill the node. */

/** Caps on manifest and layer sizes. */
export interface PullLimits {
  /** Largest manifest or index accepted, in bytes (default 4 MiB, what registries must accept). */
  readonly maxManifestBytes: number;
  /** Largest image config accepted, in bytes (default 8 MiB). */
  readonly maxConfigBytes: number;
  /** Largest compressed layer accepted, in bytes (default 8 GiB). */
  readonly maxLayerBytes: number;
  /** Largest uncompressed layer accepted, in bytes (default 16 GiB). */
  readonly maxUnpackedLayerBytes: number;
}

/** The default caps. */
export const DEFAULT_LIMITS: PullLimits = Object.freeze({
  maxManifestBytes: 4 * 2 ** 20,
  maxConfigBytes: 8 * 2 ** 20,
  maxLayerBytes: 8 * 2 ** 30,
  maxUnpackedLayerBytes: 16 * 2 ** 30,
});

/** The environment variable naming each cap, for error messages. */
export const LIMIT_SETTINGS: Readonly<Record<keyof PullLimits, string>> = {
  maxManifestBytes: "EVE_REGISTRY_MAX_MANIFEST_BYTES",
  maxConfigBytes: "EVE_REGISTRY_MAX_CONFIG_BYTES",
  maxLayerBytes: "EVE_REGISTRY_MAX_LAYER_BYTES",
  maxUnpackedLayerBytes: "EVE_REGISTRY_MAX_UNPACKED_LAYER_BYTES",
};

/** Limits with `overrides` applied over the defaults. */
export function pullLimits(overrides: Partial<PullLimits> = {}): PullLimits {
  const out: Record<string, number> = { ...DEFAULT_LIMITS };
  for (const [k, v] of Object.entries(overrides)) if (typeof v === "number") out[k] = v;
  return out as unknown as PullLimits;
}
