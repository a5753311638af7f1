/**
 * AppInstanceConfig: the desired state of one app, published by users and controllers at
 * `$KV.controller.AppInstanceConfig.<uuid>`.
 */
import { z } from "zod";
import { AppInterfacesSchema } from "./app-interfaces.js";
import { expected, parseOptions } from "./error-messages.js";
import {
  AbsolutePathSchema,
  DurationMsSchema,
  EnvObjectSchema,
  ImageRefSchema,
  NameSchema,
  NonNegativeIntSchema,
  SchemaVersionSchema,
  UuidSchema,
  VersionLabelSchema,
} from "./primitives.js";
import { RestartPolicySchema } from "./restart-policy.js";

/** The node an app runs on when its config names none. */
export const DEFAULT_NODE = "local";
/** Default grace period between SIGTERM and SIGKILL when stopping a task, in milliseconds. */
export const DEFAULT_STOP_TIMEOUT_MS = 10_000;
/** Largest memory an app may ask for, in MiB (16 TiB); keeps byte arithmetic exact. */
export const MAX_MEMORY_MIB = 16 * 1024 * 1024;
/** Largest number of vCPUs an app may ask for. */
export const MAX_VCPUS = 1024;

/** `NOHYPER`: a native container; `HVM`: a VM whose anchor is qemu. */
export const VirtualizationSchema = z.enum(["NOHYPER", "HVM"], {
  error: expected('must be "NOHYPER" (native container) or "HVM" (VM)'),
});
/** Virtualization mode of an app. */
export type Virtualization = z.infer<typeof VirtualizationSchema>;

/**
 * CPU architecture, spelt as `uname -m` and `qemu-system-<arch>` spell it. When absent the
 * node's own architecture is used; a different one selects another image platform and an
 * emulator.
 */
export const ArchSchema = z.enum(["x86_64", "aarch64", "armv7l", "riscv64"], {
  error: expected('must be "x86_64", "aarch64", "armv7l" or "riscv64"'),
});
/** CPU architecture (`uname -m` spelling). */
export type Arch = z.infer<typeof ArchSchema>;

/** The OCI platform architecture (`amd64`, …) for each {@link Arch}. */
export const OCI_ARCH_FOR: Readonly<Record<Arch, string>> = {
  x86_64: "amd64",
  aarch64: "arm64",
  armv7l: "arm",
  riscv64: "riscv64",
};

/** A root filesystem in a user's volume (a host directory), bind-mounted. */
export const RootVolumeSchema = z.strictObject({
  path: AbsolutePathSchema.meta({
    description: "host directory holding the root filesystem; must resolve under EVE_VOLUME_ROOTS",
  }),
  readOnly: z.boolean({ error: expected("must be true or false") }).default(false),
});
/** A root filesystem pulled from an image (the image's config supplies the process defaults). */
export const RootImageSchema = z.strictObject({ ref: ImageRefSchema });
/** The host's own root filesystem, always read-only (an `rbind,ro` of `/`). */
export const RootHostSchema = z.strictObject({
  readOnly: z
    .literal(true, { error: expected("the host root is always read-only: readOnly must be true") })
    .default(true),
});

/** A root filesystem in a user's volume. */
export type RootVolume = z.infer<typeof RootVolumeSchema>;
/** A root filesystem from an image. */
export type RootImage = z.infer<typeof RootImageSchema>;
/** The host's root filesystem, read-only. */
export type RootHost = z.infer<typeof RootHostSchema>;

/** The root of a native container: exactly one of `volume`, `image`, `host`. */
export type Root =
  | { volume: RootVolume; image?: undefined; host?: undefined }
  | { image: RootImage; volume?: undefined; host?: undefined }
  | { host: RootHost; volume?: undefined; image?: undefined };

/** The three kinds of {@link Root}. */
export const ROOT_KINDS = ["volume", "image", "host"] as const;
/** Which kind of root an app has. */
export type RootKind = (typeof ROOT_KINDS)[number];

const RootObjectSchema = z
  .strictObject(
    {
      volume: RootVolumeSchema.optional(),
      image: RootImageSchema.optional(),
      host: RootHostSchema.optional(),
    },
    { error: expected() },
  )
  .superRefine((root, ctx) => {
    const given = ROOT_KINDS.filter((k) => root[k] !== undefined);
    if (given.length !== 1) {
      ctx.addIssue({
        code: "custom",
        message:
          given.length === 0
            ? "root must have exactly one of volume, image or host; it has none"
            : `root must have exactly one of volume, image or host; it has ${given.join(" and ")}`,
      });
    }
  })
  .meta({
    description: "exactly one of volume, image or host",
    oneOf: ROOT_KINDS.map((k) => ({ required: [k] })),
  });

/** Root of a native container; the refinement guarantees exactly one kind, hence the type. */
export const RootSchema = RootObjectSchema as unknown as z.ZodType<Root, z.input<typeof RootObjectSchema>>;

/** The kind of a validated {@link Root}. */
export function rootKindOf(root: Root): RootKind {
  if (root.volume) return "volume";
  if (root.image) return "image";
  return "host";
}

/** A host path mounted into the task at `mountPoint`. */
export const VolumeMountSchema = z.strictObject({
  path: AbsolutePathSchema.meta({ description: "host path; must resolve under EVE_VOLUME_ROOTS" }),
  mountPoint: AbsolutePathSchema.refine((p) => p !== "/", {
    error: "must not be '/': the root filesystem is given by root",
  }).meta({ description: "absolute path inside the task" }),
  readOnly: z.boolean({ error: expected("must be true or false") }).default(false),
});
/** A volume mount of an app. */
export type VolumeMount = z.infer<typeof VolumeMountSchema>;

const VolumeMountsSchema = z
  .array(VolumeMountSchema, { error: expected("must be a list of volumes") })
  .superRefine((mounts, ctx) => {
    const seen = new Set<string>();
    mounts.forEach((m, i) => {
      if (seen.has(m.mountPoint)) {
        ctx.addIssue({
          code: "custom",
          message: `mountPoint ${m.mountPoint} is used by an earlier volume`,
          path: [i, "mountPoint"],
        });
      }
      seen.add(m.mountPoint);
    });
  });

/** `user` or `user:group`, each a name or a number (`0:0`, `1000`, `nobody:nogroup`). */
export const UserSpecSchema = z
  .string({ error: expected("must be a string such as 0:0") })
  .regex(/^[^:\s]+(?::[^:\s]+)?$/, { error: 'must be "user" or "user:group", such as 0:0 or 1000:1000' });

/**
 * Overrides of the seed's (image's) process; each field given replaces the seed's. The built
 * spec's env always holds a default `PATH`.
 */
export const ProcessOverrideSchema = z.strictObject({
  args: z
    .array(z.string({ error: expected("must be a string") }), { error: "must be a list of strings" })
    .min(1, { error: "must hold at least the program to run" })
    .optional(),
  env: EnvObjectSchema.optional(),
  cwd: AbsolutePathSchema.optional().meta({ description: "working directory inside the task" }),
  user: UserSpecSchema.optional(),
});
/** Process overrides of an app. */
export type ProcessOverride = z.infer<typeof ProcessOverrideSchema>;

/** Resources of a native container. */
export const NativeResourcesSchema = z.strictObject(
  {
    memoryMiB: z
      .int({ error: expected("must be a whole number of MiB") })
      .min(1, { error: "must be at least 1 MiB" })
      .max(MAX_MEMORY_MIB, { error: `must be at most ${MAX_MEMORY_MIB} MiB (16 TiB)` })
      .meta({ description: "memory limit in MiB (2^20 bytes)" }),
    vcpus: z
      .int({ error: expected("must be a whole number of vCPUs") })
      .min(1, { error: "must be at least 1" })
      .max(MAX_VCPUS, { error: `must be at most ${MAX_VCPUS}` })
      .meta({ description: "CPUs: CFS quota = vcpus × period for a container, -smp for a VM" }),
    vmmOverheadMiB: z
      .never({
        error: "vmmOverheadMiB applies to VMs only (virtualization HVM); a native container has no tax",
      })
      .optional(),
  },
  { error: expected() },
);

/** Resources of a VM, with an optional anchor process tax override. */
export const VmResourcesSchema = NativeResourcesSchema.extend({
  vmmOverheadMiB: NonNegativeIntSchema.optional().meta({
    description: "anchor process tax in MiB (qemu's own memory); default ceil(370 + 3·vcpus + memoryMiB/40)",
  }),
});
/** Resources of an app; `vmmOverheadMiB` only for VMs. */
export type Resources = z.infer<typeof VmResourcesSchema>;

/** A guest disk image on the host. */
export const VmDiskSchema = z.strictObject({
  path: AbsolutePathSchema.meta({
    description: "host path of the disk image; must resolve under EVE_VOLUME_ROOTS",
  }),
  format: z
    .enum(["raw", "qcow2"], {
      error: expected('must be "raw" or "qcow2" (never guessed: probing formats is unsafe)'),
    })
    .meta({ description: "disk image format; required, because qemu's format probing is unsafe" }),
  readOnly: z.boolean({ error: expected("must be true or false") }).default(false),
});
/** A guest disk. */
export type VmDisk = z.infer<typeof VmDiskSchema>;

/** How a VM is accelerated: `kvm`, `tcg` (emulation), or `auto` (KVM only if a probe guest runs). */
export const AccelSchema = z.enum(["auto", "kvm", "tcg"], {
  error: expected('must be "auto", "kvm" or "tcg"'),
});
/** VM acceleration choice. */
export type Accel = z.infer<typeof AccelSchema>;

/** VM settings: the guest's kernel, initrd, command line and disks, and its hypervisor tools. */
export const VmSchema = z
  .strictObject(
    {
      kernel: AbsolutePathSchema.optional().meta({ description: "host path of the guest kernel" }),
      initrd: AbsolutePathSchema.optional().meta({ description: "host path of the guest initrd" }),
      cmdline: z
        .string({ error: expected("must be a string") })
        .max(4096, { error: "must be at most 4096 characters" })
        .optional(),
      disks: z.array(VmDiskSchema, { error: expected("must be a list of disks") }).default([]),
      hypervisorTools: NameSchema.default("default").meta({
        description: "name of the HypervisorToolsConfig whose image provides qemu",
      }),
      accel: AccelSchema.default("auto"),
    },
    { error: expected() },
  )
  .superRefine((vm, ctx) => {
    if (vm.kernel === undefined && vm.disks.length === 0) {
      ctx.addIssue({
        code: "custom",
        message: "a VM needs vm.kernel or at least one disk in vm.disks to boot",
      });
    }
    if (vm.kernel === undefined && vm.initrd !== undefined) {
      ctx.addIssue({ code: "custom", message: "vm.initrd needs vm.kernel", path: ["initrd"] });
    }
    if (vm.kernel === undefined && vm.cmdline !== undefined) {
      ctx.addIssue({ code: "custom", message: "vm.cmdline needs vm.kernel", path: ["cmdline"] });
    }
  });
/** VM settings with defaults applied. */
export type Vm = z.infer<typeof VmSchema>;

const commonShape = {
  schemaVersion: SchemaVersionSchema,
  uuid: UuidSchema.meta({ description: "the app's UUID; equals the KV key" }),
  version: VersionLabelSchema.meta({ description: "opaque version label; travels to TaskStatus and labels" }),
  displayName: z
    .string({ error: expected("must be a string") })
    .max(256, { error: "must be at most 256 characters" })
    .default("")
    .meta({ description: "a name for humans; changing only it never restarts the task" }),
  activate: z
    .boolean({ error: expected("must be true or false") })
    .default(true)
    .meta({ description: "true: run the task; false: stop it and keep the container" }),
  restartCounter: NonNegativeIntSchema.default(0).meta({
    description: "raise it to restart the task",
  }),
  node: NameSchema.default(DEFAULT_NODE).meta({ description: "node that runs the app" }),
  arch: ArchSchema.optional(),
  restartPolicy: RestartPolicySchema.prefault({}),
  stopTimeoutMs: DurationMsSchema.default(DEFAULT_STOP_TIMEOUT_MS).meta({
    description: "milliseconds between SIGTERM (or a VM's powerdown) and SIGKILL",
  }),
  interfaces: AppInterfacesSchema.default([]),
};

/**
 * The name of an artifact: its file name under `/eve/artifacts/` in the task, and its entry in
 * `EVE_TASK_ARTIFACTS` (comma-separated, hence no `,`; no `/`, so it names one file).
 */
export const ArtifactNameSchema = z
  .string({ error: expected("must be a string") })
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, {
    error:
      "must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-', starting with a letter or digit (a file name)",
  });

/**
 * A host file or directory a runtime task gets at `/eve/artifacts/<name>` (a JAR, a kernel, a
 * disk image): bind-mounted after the node resolves it with realpath under `EVE_VOLUME_ROOTS`.
 */
export const RuntimeArtifactSchema = z.strictObject({
  name: ArtifactNameSchema,
  path: AbsolutePathSchema.meta({
    description: "host path of the artifact; must resolve under EVE_VOLUME_ROOTS",
  }),
  readOnly: z
    .boolean({ error: expected("must be true or false") })
    .default(true)
    .meta({ description: "mounted read-only (default) or read-write" }),
  format: z
    .string({ error: expected("must be a string") })
    .regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, {
      error: 'must be a format name such as "raw" or "qcow2" (lowercase letters, digits, _ and -)',
    })
    .optional()
    .meta({
      description:
        "what the artifact is, for the loader (EVE_TASK_ARTIFACT_FORMATS), e.g. a disk's raw or qcow2",
    }),
});
/** An artifact of a runtime app. */
export type RuntimeArtifact = z.infer<typeof RuntimeArtifactSchema>;

/** At most this many artifacts per app. */
export const MAX_ARTIFACTS = 64;

/**
 * The app's `runtime` section: which runtime image runs it (`tools`, the name of a
 * HypervisorToolsConfig), the artifacts it gets, and what its loader reads besides them.
 */
export const RuntimeSectionSchema = z.strictObject(
  {
    tools: NameSchema.meta({ description: "name of the HypervisorToolsConfig whose image is the runtime" }),
    artifacts: z
      .array(RuntimeArtifactSchema, { error: expected("must be a list of artifacts") })
      .max(MAX_ARTIFACTS, { error: `must hold at most ${MAX_ARTIFACTS} artifacts` })
      .default([])
      .superRefine((artifacts, ctx) => {
        const seen = new Set<string>();
        artifacts.forEach((a, i) => {
          if (seen.has(a.name)) {
            ctx.addIssue({
              code: "custom",
              message: `name ${a.name} is used by an earlier artifact`,
              path: [i, "name"],
            });
          }
          seen.add(a.name);
        });
      }),
    cmdline: z
      .string({ error: expected("must be a string") })
      .max(4096, { error: "must be at most 4096 characters" })
      .optional()
      .meta({ description: "EVE_TASK_CMDLINE: a guest kernel's command line, for a VM runtime" }),
    accel: AccelSchema.default("auto").meta({
      description: "for a runtime that may use KVM: the accelerator asked for (EVE_TASK_ACCEL)",
    }),
  },
  { error: expected() },
);
/** A runtime section with defaults applied. */
export type RuntimeSection = z.infer<typeof RuntimeSectionSchema>;

/** The process of a runtime app: arguments after the loader's command, and environment. */
export const RuntimeProcessSchema = z.strictObject({
  args: z
    .array(z.string({ error: expected("must be a string") }), { error: "must be a list of strings" })
    .optional()
    .meta({ description: "given to the loader after its own command (the runtime passes them on)" }),
  env: EnvObjectSchema.optional(),
  cwd: z.never({ error: "a runtime task's working directory is its image's: remove process.cwd" }).optional(),
  user: z.never({ error: "a runtime task runs as its image's user: remove process.user" }).optional(),
});

/** A native container (`virtualization: "NOHYPER"`): needs `root`, has no `vm`. */
export const NativeAppInstanceConfigSchema = z.strictObject({
  ...commonShape,
  virtualization: z.literal("NOHYPER"),
  resources: NativeResourcesSchema,
  root: RootSchema,
  volumes: VolumeMountsSchema.default([]),
  process: ProcessOverrideSchema.optional(),
  vm: z.never({ error: 'vm is for VMs only: set virtualization to "HVM" or remove vm' }).optional(),
  runtime: z
    .never({ error: "an app with a runtime has no root: remove root (and volumes) or runtime" })
    .optional(),
});

/** A VM (`virtualization: "HVM"`): needs `vm`, has no `root` (its root is the tools seed). */
export const VmAppInstanceConfigSchema = z.strictObject({
  ...commonShape,
  virtualization: z.literal("HVM"),
  resources: VmResourcesSchema,
  vm: VmSchema,
  root: z
    .never({
      error:
        "a VM has no root: its task's root is the hypervisor-tools seed; give the guest's disks in vm.disks",
    })
    .optional(),
  volumes: z
    .array(VolumeMountSchema)
    .max(0, { error: "a VM cannot mount volumes; give the guest disks in vm.disks" })
    .default([]),
  process: z
    .never({ error: "a VM's process is the device model (qemu); use vm.cmdline for the guest" })
    .optional(),
  runtime: z
    .never({
      error: "vm is the short form of a runtime: give either vm or runtime (with artifacts), not both",
    })
    .optional(),
});

/**
 * An app run by a runtime image (`runtime`): the image's loader is the anchor, the app's files
 * are artifacts. It has neither `root` nor `vm`; `virtualization` may be left out (either value
 * is accepted and changes nothing: the runtime image decides what runs).
 */
export const RuntimeAppInstanceConfigSchema = z.strictObject({
  ...commonShape,
  virtualization: VirtualizationSchema.optional().meta({
    description: "optional for a runtime app, and informational: the runtime image decides what runs",
  }),
  resources: VmResourcesSchema,
  runtime: RuntimeSectionSchema,
  process: RuntimeProcessSchema.optional(),
  root: z
    .never({ error: "an app with a runtime has no root: its task's root is the runtime image's seed" })
    .optional(),
  vm: z.never({ error: "vm is the short form of a runtime: give either vm or runtime, not both" }).optional(),
  volumes: z
    .array(VolumeMountSchema)
    .max(0, {
      error: "a runtime app mounts no volumes: give host files and directories as runtime.artifacts",
    })
    .optional(),
});

/** Native containers and VMs: the union on `virtualization` of contract v1. */
const ClassicAppInstanceConfigSchema = z.discriminatedUnion(
  "virtualization",
  [NativeAppInstanceConfigSchema, VmAppInstanceConfigSchema],
  {
    error: (iss) => {
      if (iss.code !== "invalid_union" || !("note" in iss) || iss.note !== "No matching discriminator") {
        return undefined;
      }
      const input: unknown = iss.input;
      const got =
        typeof input === "object" && input !== null && "virtualization" in input
          ? `; got ${JSON.stringify(input.virtualization)}`
          : "; it is missing";
      return `virtualization must be "NOHYPER" (native container) or "HVM" (VM)${got} (an app run by a runtime image has a runtime section instead)`;
    },
  },
);

/** Whether `input` is written as a runtime app: an object with a `runtime` key. */
function isRuntimeInput(input: unknown): boolean {
  return typeof input === "object" && input !== null && !Array.isArray(input) && "runtime" in input;
}

/**
 * The desired state of one app: a native container or a VM (a union on `virtualization`), or an
 * app run by a runtime image (it has a `runtime` section). Parsing applies the defaults: node
 * "local", activate true, restartCounter 0, displayName "", volumes [], restartPolicy never
 * (maxRestarts 5, windowMs 600000, backoffMs 1000, maxBackoffMs 60000), stopTimeoutMs 10000,
 * interfaces []; for VMs vm.disks [], vm.hypervisorTools "default", vm.accel "auto"; for runtime
 * apps runtime.artifacts [] (each readOnly true), runtime.accel "auto".
 *
 * The two kinds are told apart by the `runtime` key, and a config that fails is reported with the
 * issues of its own kind only, exactly as that kind's schema words them (a union would say only
 * "Invalid input").
 */
export const AppInstanceConfigSchema = z.union(
  [ClassicAppInstanceConfigSchema, RuntimeAppInstanceConfigSchema],
  {
    error: (iss) => {
      if (iss.code !== "invalid_union") return undefined;
      const kind = isRuntimeInput(iss.input)
        ? RuntimeAppInstanceConfigSchema
        : ClassicAppInstanceConfigSchema;
      const again = kind.safeParse(iss.input, parseOptions);
      if (again.success) return undefined;
      // prettifyError prefixes each issue with "✖ "; the union's own issue gets that prefix again.
      return z.prettifyError(again.error).replace(/^✖ /, "");
    },
  },
);

/** An AppInstanceConfig with every default applied. */
export type AppInstanceConfig = z.infer<typeof AppInstanceConfigSchema>;
/** An AppInstanceConfig as a user may write it (defaulted fields optional). */
export type AppInstanceConfigInput = z.input<typeof AppInstanceConfigSchema>;
/** A native container's config. */
export type NativeAppInstanceConfig = z.infer<typeof NativeAppInstanceConfigSchema>;
/** A VM's config. */
export type VmAppInstanceConfig = z.infer<typeof VmAppInstanceConfigSchema>;
/** A runtime app's config. */
export type RuntimeAppInstanceConfig = z.infer<typeof RuntimeAppInstanceConfigSchema>;

/** Whether a parsed config is a runtime app's. */
export function isRuntimeApp(config: AppInstanceConfig): config is RuntimeAppInstanceConfig {
  return "runtime" in config && config.runtime !== undefined;
}
