/**
 * The environment variables the registry code reads, as a zod shape for a worker's env schema
 * (`z.object({ ...baseWorkerEnv, ...registryEnv })`), and how to build a seed store from them.
 * Nothing here reads `process.env`: callers pass the validated config (or the CLI's env).
 */
import { z } from "zod";
import { loadCredentials } from "./auth.js";
import { RegistryClient } from "./client.js";
import { pullLimits } from "./limits.js";
import { SeedStore, defaultOciLayoutRoots } from "./seed-store.js";

const bytes = (name: string) =>
  z
    .string()
    .regex(/^\d+$/, { error: `${name}: expected a positive number of bytes` })
    .transform(Number)
    .refine((n) => n > 0, { error: `${name}: expected a positive number of bytes` });

const count = (name: string) =>
  z
    .string()
    .regex(/^\d+$/, { error: `${name}: expected a positive whole number` })
    .transform(Number)
    .refine((n) => n > 0, { error: `${name}: expected a positive whole number` });

const paths = z.string().transform((s) =>
  s
    .split(":")
    .map((p) => p.trim())
    .filter((p) => p.length > 0),
);

/** The registry variables (all optional). */
export const registryEnv = {
  /** `host:port`s reached over plain HTTP, comma-separated; every other registry over HTTPS. */
  EVE_INSECURE_REGISTRIES: z
    .string()
    .transform((s) =>
      s
        .split(",")
        .map((h) => h.trim())
        .filter((h) => h.length > 0),
    )
    .optional(),
  /** A docker `config.json` with credentials per registry host. */
  EVE_REGISTRY_AUTH_FILE: z.string().min(1).optional(),
  EVE_REGISTRY_MAX_MANIFEST_BYTES: bytes("EVE_REGISTRY_MAX_MANIFEST_BYTES").optional(),
  EVE_REGISTRY_MAX_CONFIG_BYTES: bytes("EVE_REGISTRY_MAX_CONFIG_BYTES").optional(),
  EVE_REGISTRY_MAX_LAYER_BYTES: bytes("EVE_REGISTRY_MAX_LAYER_BYTES").optional(),
  EVE_REGISTRY_MAX_UNPACKED_LAYER_BYTES: bytes("EVE_REGISTRY_MAX_UNPACKED_LAYER_BYTES").optional(),
  EVE_REGISTRY_MAX_LAYER_ENTRIES: count("EVE_REGISTRY_MAX_LAYER_ENTRIES").optional(),
  EVE_REGISTRY_MAX_LAYERS: count("EVE_REGISTRY_MAX_LAYERS").optional(),
  EVE_REGISTRY_MAX_IMAGE_UNPACKED_BYTES: bytes("EVE_REGISTRY_MAX_IMAGE_UNPACKED_BYTES").optional(),
  /** Directories `oci:<dir>` layouts may be read from, colon-separated. */
  EVE_OCI_LAYOUT_ROOTS: paths.optional(),
  /** The node's volume roots (colon-separated): layouts may live there too unless EVE_OCI_LAYOUT_ROOTS is set. */
  EVE_VOLUME_ROOTS: paths.optional(),
};

/** The registry variables as an object schema. */
export const registryEnvSchema = z.object(registryEnv);

/** Validated registry variables. */
export type RegistryEnv = z.output<typeof registryEnvSchema>;

/** A seed store under `dataDir` configured by `env` (credentials read from the auth file now). */
export async function seedStoreFromEnv(
  dataDir: string,
  env: RegistryEnv,
  options: { onWarning?: (m: string) => void; durable?: boolean; concurrency?: number } = {},
): Promise<SeedStore> {
  const limits = pullLimits({
    maxManifestBytes: env.EVE_REGISTRY_MAX_MANIFEST_BYTES,
    maxConfigBytes: env.EVE_REGISTRY_MAX_CONFIG_BYTES,
    maxLayerBytes: env.EVE_REGISTRY_MAX_LAYER_BYTES,
    maxUnpackedLayerBytes: env.EVE_REGISTRY_MAX_UNPACKED_LAYER_BYTES,
    maxLayerEntries: env.EVE_REGISTRY_MAX_LAYER_ENTRIES,
    maxLayers: env.EVE_REGISTRY_MAX_LAYERS,
    maxImageUnpackedBytes: env.EVE_REGISTRY_MAX_IMAGE_UNPACKED_BYTES,
  });
  const client = new RegistryClient({
    credentials: await loadCredentials(env.EVE_REGISTRY_AUTH_FILE),
    insecureHosts: env.EVE_INSECURE_REGISTRIES ?? [],
    limits,
  });
  const ociLayoutRoots = env.EVE_OCI_LAYOUT_ROOTS ?? defaultOciLayoutRoots(dataDir, env.EVE_VOLUME_ROOTS);
  return new SeedStore({ dataDir, client, limits, ociLayoutRoots, ...options });
}
