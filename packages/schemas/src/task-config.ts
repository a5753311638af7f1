/**
 * TaskConfig (internal): what the spec-builder publishes at `$KV.spec-builder.TaskConfig.<uuid>`
 * and the task-executor consumes. A union on `status`: READY carries a node-independent spec;
 * PENDING says the spec waits for a seed; FAILED carries only the error of a stage that failed
 * ("a stage that fails passes its error downstream").
 */
import { z } from "zod";
import { expected } from "./error-messages.js";
import { AppInterfacesSchema } from "./app-interfaces.js";
import { AccelSchema, MAX_MEMORY_MIB, VirtualizationSchema } from "./app-instance-config.js";
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
 * What the executor needs to know of a VM beyond its spec: the accelerator asked for (the
 * executor decides `auto` on the node and adds `-accel` and, for KVM, `/dev/kvm`), whether the
 * app set its own tax (else a node's `EVE_VMM_OVERHEAD_MIB` replaces the estimate), and the qemu
 * program the spec runs (checked in the tools seed before the task is created).
 */
export const TaskVmSchema = z.object({
  accel: AccelSchema,
  anchorTaxFromApp: z.boolean().meta({ description: "true when the app gave resources.vmmOverheadMiB" }),
  qemu: z
    .string()
    .regex(/^qemu-system-[a-z0-9_]+$/, { error: "must be a qemu-system-<arch> program name" })
    .meta({ description: "the device model, looked up in the tools seed's PATH" }),
  vcpus: z.int().min(1),
});
/** A VM's settings for the executor. */
export type TaskVm = z.infer<typeof TaskVmSchema>;

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
    anchorTaxMiB: NonNegativeIntSchema.meta({ description: "anchor process tax in MiB; 0 for NOHYPER" }),
    vm: TaskVmSchema.optional().meta({ description: "a VM's settings; absent for NOHYPER" }),
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
    if (c.virtualization === "NOHYPER" && c.anchorTaxMiB !== 0) {
      ctx.addIssue({
        code: "custom",
        message: "a native container (NOHYPER) has no anchor tax: must be 0",
        path: ["anchorTaxMiB"],
      });
    }
    if (c.virtualization === "NOHYPER" && c.rootfs.kind === "tools") {
      ctx.addIssue({
        code: "custom",
        message: "a native container cannot have a tools rootfs",
        path: ["rootfs", "kind"],
      });
    }
    if (c.virtualization === "NOHYPER" && c.vm !== undefined) {
      ctx.addIssue({ code: "custom", message: "a native container has no vm settings", path: ["vm"] });
    }
    if (c.virtualization === "HVM" && c.vm === undefined) {
      ctx.addIssue({ code: "custom", message: "a VM needs its vm settings", path: ["vm"] });
    }
    if (c.virtualization === "HVM" && c.rootfs.kind !== "tools") {
      ctx.addIssue({
        code: "custom",
        message: 'a VM\'s rootfs is its hypervisor-tools seed: kind must be "tools"',
        path: ["rootfs", "kind"],
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
