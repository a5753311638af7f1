/**
 * @eve-tasks/registry: an OCI distribution client (references, auth, manifests, indexes,
 * platforms), the node's verified content store, the layer unpacker, and the seed store that
 * puts them together for the hypervisor-seed-fetcher and `eve-tasks pull`.
 */
export * from "./errors.js";
export * from "./reference.js";
export * from "./manifest.js";
export * from "./platform.js";
export * from "./auth.js";
export * from "./limits.js";
export { RegistryClient, sha256Digest } from "./client.js";
export type { FetchedManifest, ImageSource, RegistryClientOptions } from "./client.js";
export { layoutSource } from "./oci-layout.js";
export { ContentStore } from "./content-store.js";
export type { GcResult, IngestOptions } from "./content-store.js";
export { acquireLock, tryLock } from "./lock.js";
export type { HeldLock, LockOptions } from "./lock.js";
export { ZstdDecompressStream, decompressor } from "./decompress.js";
export { applyLayer, unpackLayers } from "./unpack.js";
export type { ApplyResult, LayerToApply, UnpackOptions } from "./unpack.js";
export { DEFAULT_LAYER_CONCURRENCY, pullImage, sourceOf } from "./pull.js";
export type { PullOptions, PullProgress, PulledImage, PulledLayer } from "./pull.js";
export { SeedStore, defaultOciLayoutRoots } from "./seed-store.js";
export { lowerDirs, overlayLowerDirs, seedsInUse } from "./mountinfo.js";
export type { EnsureOptions, SeedRecord, SeedStoreOptions } from "./seed-store.js";
export { registryEnv, registryEnvSchema, seedStoreFromEnv } from "./env.js";
export type { RegistryEnv } from "./env.js";
