/**
 * Small building blocks shared by the message schemas: identifiers, names, paths, times and
 * counters. Each carries a human-readable error message naming what was expected.
 */
import { z } from "zod";
import { expected } from "./error-messages.js";

/** Every message of contract v1 carries `"schemaVersion": 1`. */
export const SchemaVersionSchema = z.literal(1, {
  error: expected("schemaVersion must be 1 (this is contract v1)"),
});

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * An app instance UUID in canonical lowercase 8-4-4-4-12 hex form (RFC 9562 text form). It is
 * the KV key, the containerd container ID and the cgroup leaf, so exactly one spelling is
 * accepted: uppercase hex would name a second app. Version and variant bits are not checked.
 */
export const UuidSchema = z
  .string({ error: expected("must be a string holding a UUID") })
  .regex(UUID_PATTERN, { error: "must be a lowercase UUID such as 6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10" })
  .meta({ format: "uuid" });

const NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * A node name or a hypervisor-tools name: 1–64 of `A-Z a-z 0-9 _ -`. It becomes one token of a
 * NATS subject or KV key (`eve.rpc.task-executor.<node>.signal`, `HypervisorSeed.<node>.<name>`),
 * so `.`, `*`, `>` and spaces are refused.
 */
export const NameSchema = z
  .string({ error: expected("must be a string") })
  .regex(NAME_PATTERN, { error: "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-' (no '.')" });

/**
 * An absolute POSIX path: starts with `/`, holds no NUL byte. Whether the path exists, resolves
 * (realpath) under `EVE_VOLUME_ROOTS` or escapes it with `..` or symlinks is a node-local fact
 * checked by the task-executor, not by the schema.
 */
export const AbsolutePathSchema = z
  .string({ error: expected("must be a string holding an absolute path") })
  .max(4096, { error: "must be at most 4096 characters (PATH_MAX)" })
  .refine((p) => p.startsWith("/"), { error: "must be an absolute path (starting with '/')" })
  .refine((p) => !p.includes("\0"), { error: "must not contain a NUL byte" })
  .meta({ pattern: "^/" });

/**
 * A point in time as an ISO 8601 UTC string, as `Date.prototype.toISOString()` writes it
 * (`2024-05-01T12:00:00.000Z`). Offsets other than `Z` are refused so strings sort as times.
 */
export const TimestampSchema = z.iso.datetime({
  error: expected("must be an ISO 8601 UTC time such as 2024-05-01T12:00:00.000Z"),
});

/** A whole number ≥ 0 that JavaScript holds exactly (≤ 2^53 − 1). */
export const NonNegativeIntSchema = z.int({ error: expected("must be a whole number") }).min(0, {
  error: "must be 0 or more",
});

/** A whole number ≥ 1 that JavaScript holds exactly (≤ 2^53 − 1). */
export const PositiveIntSchema = z.int({ error: expected("must be a whole number") }).min(1, {
  error: "must be 1 or more",
});

/**
 * A duration in milliseconds: a whole number from 0 to 2147483647 (about 24.8 days), the most
 * Node's `setTimeout` honours; a larger delay would fire at once.
 */
export const DurationMsSchema = z
  .int({ error: expected("must be a whole number of milliseconds") })
  .min(0, { error: "must be 0 or more milliseconds" })
  .max(2_147_483_647, { error: "must be at most 2147483647 ms (about 24.8 days, Node's timer limit)" });

/**
 * A monotonic counter that may outgrow 2^53 (e.g. CPU nanoseconds: 2^53 ns is 104 CPU-days): a
 * number ≥ 0 that is whole; beyond 2^53 it is exact to the nearest representable double.
 */
export const CounterSchema = z
  .number({ error: expected("must be a number") })
  .min(0, { error: "must be 0 or more" })
  .multipleOf(1, { error: "must be a whole number" });

/** A configuration revision: the KV revision an AppInstanceConfig was stored at (≥ 1). */
export const ConfigRevisionSchema = PositiveIntSchema.meta({
  description:
    "KV revision the AppInstanceConfig was stored at; a higher configRevision is newer (version is never compared)",
});

/** An opaque version label of a config, chosen by the user; never compared for order. */
export const VersionLabelSchema = z
  .string({ error: expected("must be a string") })
  .min(1, { error: "must not be empty" })
  .max(256, { error: "must be at most 256 characters" });

/**
 * A signal name as in `kill -l` with the `SIG` prefix: `SIGTERM`, `SIGKILL`, `SIGRTMIN+3`, or
 * `SIG<n>` for a number without a name.
 */
export const SignalNameSchema = z
  .string({ error: expected("must be a signal name such as SIGTERM") })
  .regex(/^SIG[A-Z0-9]+(?:[+-][0-9]+)?$/, { error: "must be a signal name such as SIGTERM or SIGKILL" });

/**
 * Environment variables as an object of strings. Names are non-empty and hold neither `=` nor
 * NUL; values hold no NUL. (Seeds and the OCI spec use the `NAME=value` list form instead.)
 */
export const EnvObjectSchema = z.record(
  z.string().regex(/^[^=\0]+$/),
  z
    .string({ error: expected("must be a string (environment values are strings)") })
    .refine((v) => !v.includes("\0"), {
      error: "must not contain a NUL byte",
    }),
  {
    error: (iss) =>
      iss.code === "invalid_key"
        ? "environment variable names must be non-empty and contain neither '=' nor NUL"
        : iss.code === "invalid_type"
          ? 'must be an object of strings, such as { "GREETING": "hi" }'
          : undefined,
  },
);

/**
 * A container image reference: `registry.example:5000/app:1`, `app@sha256:…`, or a local OCI
 * layout `oci:<dir>:<tag>`. Only the shape is checked here (non-empty, no whitespace); the
 * hypervisor-seed-fetcher parses it and reports a bad reference in the seed.
 */
export const ImageRefSchema = z
  .string({ error: expected("must be a string holding an image reference") })
  .min(1, { error: "must not be empty" })
  .max(1024, { error: "must be at most 1024 characters" })
  .regex(/^\S+$/, { error: "must not contain whitespace" });

/** An OCI content digest, `<algorithm>:<hex>` (e.g. `sha256:` + 64 hex digits). */
export const DigestSchema = z
  .string({ error: expected("must be a string holding a digest") })
  .regex(/^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/, {
    error: "must be an OCI digest such as sha256:<64 hex digits>",
  });

/** A lowercase hex SHA-256 (64 characters). */
export const Sha256HexSchema = z
  .string({ error: expected("must be a string") })
  .regex(/^[0-9a-f]{64}$/, { error: "must be 64 lowercase hex digits (a SHA-256)" });
