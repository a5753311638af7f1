/**
 * The OCI runtime spec (`config.json`) as it travels in a TaskConfig: the node-independent part
 * the spec-builder writes, which the task-executor completes with node-local facts
 * (`linux.cgroupsPath`, mounts, rlimit clamps, devices). Objects are loose: keys not named here
 * pass through unchanged, so anything the OCI runtime spec allows may be added.
 */
import { z } from "zod";
import { expected } from "./error-messages.js";

/** A uint32 user or group ID. */
const IdSchema = z
  .int({ error: expected("must be a whole number") })
  .min(0, { error: "must be 0 to 4294967295" })
  .max(4_294_967_295, { error: "must be 0 to 4294967295" });

const StringListSchema = z.array(z.string({ error: expected("must be a string") }), {
  error: expected("must be a list of strings"),
});

const CapabilityListSchema = z.array(
  z.string().regex(/^CAP_[A-Z_]+$/, { error: "must be a capability name such as CAP_NET_BIND_SERVICE" }),
  { error: expected("must be a list of capability names") },
);

/** The spec's process: what the anchor runs, as whom, with which limits. */
export const OciProcessSchema = z.looseObject({
  args: StringListSchema.min(1, { error: "must hold at least the program to run" }),
  env: z
    .array(z.string().regex(/^[^=\0]+=[^\0]*$/, { error: 'must be "NAME=value"' }), {
      error: 'must be a list of "NAME=value" strings',
    })
    .optional(),
  cwd: z
    .string({ error: expected("must be a string") })
    .startsWith("/", { error: "must be an absolute path" }),
  user: z.looseObject({
    uid: IdSchema,
    gid: IdSchema,
    additionalGids: z.array(IdSchema).optional(),
    umask: IdSchema.optional(),
  }),
  capabilities: z
    .looseObject({
      bounding: CapabilityListSchema.optional(),
      effective: CapabilityListSchema.optional(),
      inheritable: CapabilityListSchema.optional(),
      permitted: CapabilityListSchema.optional(),
      ambient: CapabilityListSchema.optional(),
    })
    .optional(),
  rlimits: z
    .array(
      z.looseObject({
        type: z.string().regex(/^RLIMIT_[A-Z]+$/, { error: "must be an rlimit name such as RLIMIT_NOFILE" }),
        hard: z.int({ error: expected("must be a whole number (at most 2^53 − 1)") }).min(0),
        soft: z.int({ error: expected("must be a whole number (at most 2^53 − 1)") }).min(0),
      }),
    )
    .optional(),
  noNewPrivileges: z.boolean().optional(),
  terminal: z.boolean().optional(),
});

/** A mount of the spec. */
export const OciMountSchema = z.looseObject({
  destination: z
    .string({ error: expected("must be a string") })
    .startsWith("/", { error: "must be an absolute path" }),
  type: z.string().optional(),
  source: z.string().optional(),
  options: StringListSchema.optional(),
});

/** A Linux namespace of the spec; `path` joins an existing one. */
export const OciNamespaceSchema = z.looseObject({
  type: z.enum(["mount", "pid", "network", "uts", "ipc", "user", "cgroup", "time"], {
    error: expected("must be one of mount, pid, network, uts, ipc, user, cgroup, time"),
  }),
  path: z.string().optional(),
});

/** The Linux part of the spec. Memory and CPU limits are required: every task has them. */
export const OciLinuxSchema = z.looseObject({
  namespaces: z.array(OciNamespaceSchema).optional(),
  resources: z.looseObject({
    memory: z.looseObject({
      limit: z
        .int({ error: expected("must be a whole number of bytes") })
        .min(1, { error: "must be at least 1 byte" })
        .meta({ description: "memory.max of the task's cgroup, in bytes" }),
    }),
    cpu: z.looseObject({
      period: z
        .int({ error: expected("must be a whole number of microseconds") })
        .min(1, { error: "must be at least 1 µs" })
        .meta({ description: "CFS period in microseconds (100000)" }),
      quota: z
        .int({ error: expected("must be a whole number of microseconds") })
        .min(1, { error: "must be at least 1 µs" })
        .meta({ description: "CFS quota in microseconds per period (period × vcpus)" }),
    }),
  }),
  cgroupsPath: z.string().optional().meta({ description: "set by the task-executor: /eve-user-apps/<uuid>" }),
  maskedPaths: StringListSchema.optional(),
  readonlyPaths: StringListSchema.optional(),
});

/**
 * An OCI runtime spec with what every task needs: `root`, `process.args`, `process.cwd`,
 * `process.user`, `linux.resources.memory.limit` and `linux.resources.cpu`. Unknown keys pass.
 */
export const OciSpecSchema = z.looseObject({
  ociVersion: z
    .string({ error: expected("must be a string such as 1.2.1") })
    .min(1, { error: "must not be empty" }),
  process: OciProcessSchema,
  root: z.looseObject({
    path: z
      .string({ error: expected("must be a string") })
      .min(1, { error: "must not be empty" })
      .meta({
        description:
          'the rootfs directory relative to the bundle: "rootfs" (mounts come through Tasks.Create)',
      }),
    readonly: z.boolean().optional(),
  }),
  hostname: z.string().optional(),
  mounts: z.array(OciMountSchema).optional(),
  linux: OciLinuxSchema,
  annotations: z
    .record(z.string(), z.string({ error: expected("annotation values are strings") }))
    .optional(),
});

/** An OCI runtime spec (node-independent part; unknown keys kept). */
export type OciSpec = z.infer<typeof OciSpecSchema>;
/** The process of an OCI runtime spec. */
export type OciProcess = z.infer<typeof OciProcessSchema>;
/** A mount of an OCI runtime spec. */
export type OciMount = z.infer<typeof OciMountSchema>;
