/**
 * Seeds: root filesystems unpacked on one node by the hypervisor-seed-fetcher, published at
 * `$KV.hypervisor-seed-fetcher.HypervisorSeed.<node>.<name>` (hypervisor tools) and
 * `$KV.hypervisor-seed-fetcher.ImageSeed.<node>.<sha256 of "<ref> <arch>">` (app images). Both types
 * share {@link SeedSchema}.
 */
import { z } from "zod";
import { expected } from "./error-messages.js";
import {
  AbsolutePathSchema,
  DigestSchema,
  EnvObjectSchema,
  ImageRefSchema,
  NonNegativeIntSchema,
  SchemaVersionSchema,
  TimestampSchema,
} from "./primitives.js";

/** Seed states: being pulled, ready on the node, or failed. */
export const SeedStateSchema = z.enum(["PULLING", "READY", "FAILED"], {
  error: expected('must be "PULLING", "READY" or "FAILED"'),
});
/** A seed's state. */
export type SeedState = z.infer<typeof SeedStateSchema>;

/** An OCI platform `os/arch[/variant]`, e.g. `linux/amd64`, `linux/arm64/v8`. */
export const PlatformSchema = z
  .string({ error: expected("must be a string") })
  .regex(/^[a-z0-9]+\/[a-z0-9_]+(?:\/[a-z0-9]+)?$/, {
    error: "must be os/arch[/variant], such as linux/amd64",
  });

/**
 * The image config's process, normalised by the fetcher: `args` = Entrypoint + Cmd (may be empty:
 * the app must then give process.args), `env` as an object, `cwd` absolute (`/` when the image
 * has none), `user` as the image wrote it (`""` = root).
 */
export const SeedProcessSchema = z.object({
  args: z.array(z.string({ error: expected("must be a string") }), {
    error: expected("must be a list of strings"),
  }),
  env: EnvObjectSchema,
  cwd: AbsolutePathSchema,
  user: z.string({ error: expected("must be a string") }),
});
/** The process an image defines. */
export type SeedProcess = z.infer<typeof SeedProcessSchema>;

/** Bytes pulled so far; `totalBytes` is null while unknown. */
export const SeedProgressSchema = z.object({
  doneBytes: NonNegativeIntSchema,
  totalBytes: NonNegativeIntSchema.nullable(),
});

/** Why a seed failed, for a human, and when. */
export const SeedErrorSchema = z.object({
  message: z.string({ error: expected("must be a string") }).min(1, { error: "must not be empty" }),
  time: TimestampSchema,
});
/** A seed's error. */
export type SeedError = z.infer<typeof SeedErrorSchema>;

const seedShape = {
  schemaVersion: SchemaVersionSchema,
  ref: ImageRefSchema,
  digest: DigestSchema.nullable().meta({
    description: "digest of the platform manifest; null until resolved",
  }),
  indexDigest: DigestSchema.nullable().meta({
    description: "digest of the image index the manifest was chosen from; null if the ref names a manifest",
  }),
  platform: PlatformSchema.nullable(),
  rootfsPath: AbsolutePathSchema.nullable().meta({ description: "the unpacked read-only root on the node" }),
  process: SeedProcessSchema.nullable(),
  progress: SeedProgressSchema.nullable(),
  error: SeedErrorSchema.nullable(),
  labels: z
    .record(z.string(), z.string({ error: expected("must be a string") }), {
      error: expected("must be an object of strings"),
    })
    .nullable()
    .default(null)
    .meta({
      description:
        "the image config's org.lfedge.eve-tasks.* labels (at most 32, each at most 4096 characters): a runtime image's contract; null until resolved",
    }),
  stopSignal: z
    .string({ error: expected("must be a string") })
    .max(32, { error: "must be at most 32 characters" })
    .nullable()
    .default(null)
    .meta({ description: "the image config's StopSignal as written; null when it has none" }),
};

/**
 * A seed, a union on `state`. Every field is always present (`null` when not known; `labels` and
 * `stopSignal`, added with runtime images, read as null from a fetcher that wrote none). READY has
 * `digest`, `platform`, `rootfsPath` and `process`; FAILED has `error`; only FAILED has an error.
 */
export const SeedSchema = z.discriminatedUnion(
  "state",
  [
    z.object({
      ...seedShape,
      state: z.literal("PULLING"),
      error: z.null({ error: expected("only a FAILED seed has an error") }),
    }),
    z.object({
      ...seedShape,
      state: z.literal("READY"),
      digest: DigestSchema,
      platform: PlatformSchema,
      rootfsPath: AbsolutePathSchema,
      process: SeedProcessSchema,
      error: z.null({ error: expected("only a FAILED seed has an error") }),
    }),
    z.object({ ...seedShape, state: z.literal("FAILED"), error: SeedErrorSchema }),
  ],
  { error: expected('state must be "PULLING", "READY" or "FAILED"') },
);

/** A seed (HypervisorSeed or ImageSeed). */
export type Seed = z.infer<typeof SeedSchema>;
/** A hypervisor-tools seed. */
export const HypervisorSeedSchema = SeedSchema;
/** A hypervisor-tools seed. */
export type HypervisorSeed = Seed;
/** An app image seed. */
export const ImageSeedSchema = SeedSchema;
/** An app image seed. */
export type ImageSeed = Seed;
