/**
 * TaskConfig (internal): what the spec-builder publishes at `$KV.spec-builder.TaskConfig.<uuid>`
 * and the task-executor consumes. A union on `status`: READY carries a node-independent spec;
 * PENDING says the spec waits for a seed; FAILED carries only the error of a stage that failed
 * ("a stage that fails passes its error downstream").
 */
import { z } from "zod";
import { expected } from "./error-messages.js";
import { AppInterfacesSchema } from "./app-interfaces.js";
import { AccelSchema, ArchSchema, MAX_MEMORY_MIB, VirtualizationSchema } from "./app-instance-config.js";
import { OciSpecSchema } from "./oci-spec.js";
import {
  AbsolutePathSchema,
  ConfigRevisionSchema,
  DurationMsSchema,
  NameSchema,
  NonNegativeIntSchema,
  SchemaVersionSchema,
  Sha256HexSchema,
  UuidSchema,
  VersionLabelSchema,
} from "./primitives.js";
import { RestartPolicySchema } from "./restart-policy.js";
import { RuntimeDeviceSchema, RuntimeStopSchema } from "./runtime-image.js";
import { StageErrorSchema } from "./stage-error.js";

/**
 * A seed's KV key without its type: `<node>.<name>` for a HypervisorSeed, `<node>.<sha256 of
 * the ref>` for an ImageSeed (see `hypervisorSeedKey` and `imageSeedKey`).
 */
export const SeedKeySchema = z
  .string({ error: expected("must be a string") })
  .regex(/^[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,64}$/, {
    error: "must be a seed key <node>.<name or sha256>",
  });

/**
 * Where the task's root filesystem comes from. `volume`: a user's directory, bind-mounted (the
 * executor realpath-checks `path`); `host`: `/` as `rbind,ro`; `image` / `tools`: an overlay whose
 * read-only lower layer is the seed's `rootfsPath` (the executor checks the seed is still the
 * one named by `seedKey`).
 */
export const TaskRootfsSchema = z.discriminatedUnion(
  "kind",
  [
    z.object({ kind: z.literal("volume"), path: AbsolutePathSchema, readOnly: z.boolean() }),
    z.object({ kind: z.literal("host"), readOnly: z.literal(true) }),
    z.object({ kind: z.literal("image"), seedKey: SeedKeySchema, rootfsPath: AbsolutePathSchema }),
    z.object({ kind: z.literal("tools"), seedKey: SeedKeySchema, rootfsPath: AbsolutePathSchema }),
  ],
  { error: expected('kind must be "volume", "host", "image" or "tools"') },
);
/** Where a task's root filesystem comes from. */
export type TaskRootfs = z.infer<typeof TaskRootfsSchema>;

/**
 * A host path the executor bind-mounts at `mountPoint` after resolving it with realpath and
 * checking it lies under `EVE_VOLUME_ROOTS` (volumes of a container; kernel, initrd and disks of
 * a VM).
 */
export const TaskVolumeSchema = z.object({
  path: AbsolutePathSchema,
  mountPoint: AbsolutePathSchema,
  readOnly: z.boolean(),
});
/** A host path to bind-mount into the task. */
export type TaskVolume = z.infer<typeof TaskVolumeSchema>;

/**
 * What the executor needs to know of a runtime task (one whose root is a runtime image's seed and
 * whose anchor its loader execs) beyond its spec: which runtime, the accelerator asked for (the
 * executor decides `auto` on the node and sets `EVE_TASK_ACCEL`), how to stop it and the devices
 * its image declares, as the spec-builder read them from the seed (the executor reads them again
 * from the seed on the node and trusts only those), and whether the app set its own tax (else a
 * node's `EVE_VMM_OVERHEAD_MIB` replaces a tax the image declares).
 */
export const TaskRuntimeSchema = z.object({
  name: NameSchema.meta({ description: "the HypervisorToolsConfig name of the runtime" }),
  accel: AccelSchema,
  stop: RuntimeStopSchema,
  devices: z.array(RuntimeDeviceSchema),
  taxFromApp: z.boolean().meta({ description: "true when the app gave resources.vmmOverheadMiB" }),
  vcpus: z.int().min(1),
});
/** A runtime task's settings for the executor. */
export type TaskRuntime = z.infer<typeof TaskRuntimeSchema>;

/**
 * A native app that names its architecture: the architecture, and the node's `emulators` seed
 * when it is READY (the executor registers its emulator for `arch` with binfmt_misc when `arch`
 * is not the node's own; without one, such an app fails on that node).
 */
export const TaskEmulationSchema = z.object({
  arch: ArchSchema,
  emulators: z.object({ seedKey: SeedKeySchema, rootfsPath: AbsolutePathSchema }).nullable(),
});
/** A native app's architecture and the emulators that may run it. */
export type TaskEmulation = z.infer<typeof TaskEmulationSchema>;

const identityShape = {
  schemaVersion: SchemaVersionSchema,
  uuid: UuidSchema,
  configRevision: ConfigRevisionSchema,
  node: NameSchema,
};

/** A built, node-independent task: what to run, for which config revision. */
export const ReadyTaskConfigSchema = z
  .object({
    ...identityShape,
    status: z.literal("READY"),
    version: VersionLabelSchema,
    displayName: z.string(),
    activate: z.boolean(),
    restartCounter: NonNegativeIntSchema,
    virtualization: VirtualizationSchema,
    spec: OciSpecSchema,
    specSha256: Sha256HexSchema.meta({
      description: "sha256Hex(canonicalJson(spec)); the task-executor checks it before keeping a task by it",
    }),
    rootfs: TaskRootfsSchema,
    volumes: z.array(TaskVolumeSchema),
    memoryMiB: z
      .int()
      .min(1)
      .max(MAX_MEMORY_MIB)
      .meta({ description: "the app's memory in MiB, without the tax" }),
    anchorTaxMiB: NonNegativeIntSchema.meta({
      description: "anchor process tax in MiB; 0 without a runtime (an emulated app's is the node's)",
    }),
    runtime: TaskRuntimeSchema.optional().meta({
      description: "a runtime task's settings; absent for a native container",
    }),
    emulation: TaskEmulationSchema.optional().meta({
      description: "a native app that names its arch; absent otherwise",
    }),
    restartPolicy: RestartPolicySchema,
    stopTimeoutMs: DurationMsSchema,
    interfaces: AppInterfacesSchema.default([]).meta({
      description:
        "the app's network interfaces; the task-executor gives the task its netns, addresses and rules",
    }),
  })
  // specSha256 is not recomputed here, on every parse of every TaskConfig (a quarter of its
  // cost): the task-executor checks it where it decides something by it (an equal fingerprint
  // keeps a running task).
  .superRefine((c, ctx) => {
    if (c.runtime === undefined && c.anchorTaxMiB !== 0) {
      ctx.addIssue({
        code: "custom",
        message: "a native container (no runtime) has no anchor tax: must be 0",
        path: ["anchorTaxMiB"],
      });
    }
    if (c.runtime === undefined && c.rootfs.kind === "tools") {
      ctx.addIssue({
        code: "custom",
        message: "a native container (no runtime) cannot have a tools rootfs",
        path: ["rootfs", "kind"],
      });
    }
    if (c.runtime !== undefined && c.rootfs.kind !== "tools") {
      ctx.addIssue({
        code: "custom",
        message: "a runtime task's rootfs is its runtime image's seed: kind must be \"tools\"",
        path: ["rootfs", "kind"],
      });
    }
    if (c.runtime !== undefined && c.emulation !== undefined) {
      ctx.addIssue({
        code: "custom",
        message: "a runtime task runs its runtime natively: it has no emulation",
        path: ["emulation"],
      });
    }
  });

/** The spec is waiting for a seed to appear (`seed`) or an image pull to finish (`pull`). */
export const PendingTaskConfigSchema = z.object({
  ...identityShape,
  status: z.literal("PENDING"),
  version: VersionLabelSchema,
  waitingFor: z.enum(["seed", "pull"], { error: expected('must be "seed" or "pull"') }),
  message: z.string().meta({ description: "for a human, e.g. which image is being pulled" }),
});

/** A stage before the executor rejected this config revision; nothing of it may run. */
export const FailedTaskConfigSchema = z
  .object({
    ...identityShape,
    status: z.literal("FAILED"),
    version: VersionLabelSchema.optional().meta({ description: "absent when the config was unreadable" }),
    error: StageErrorSchema,
  })
  .refine((c) => c.error.configRevision === c.configRevision, {
    error: "error.configRevision must equal configRevision",
    path: ["error", "configRevision"],
  });

/** TaskConfig: READY, PENDING or FAILED, a union on `status`. */
export const TaskConfigSchema = z.discriminatedUnion(
  "status",
  [ReadyTaskConfigSchema, PendingTaskConfigSchema, FailedTaskConfigSchema],
  { error: expected('status must be "READY", "PENDING" or "FAILED"') },
);

/** A TaskConfig. */
export type TaskConfig = z.infer<typeof TaskConfigSchema>;
/** A TaskConfig as a publisher may write it. */
export type TaskConfigInput = z.input<typeof TaskConfigSchema>;
/** A READY TaskConfig. */
export type ReadyTaskConfig = z.infer<typeof ReadyTaskConfigSchema>;
/** A PENDING TaskConfig. */
export type PendingTaskConfig = z.infer<typeof PendingTaskConfigSchema>;
/** A FAILED TaskConfig. */
export type FailedTaskConfig = z.infer<typeof FailedTaskConfigSchema>;
