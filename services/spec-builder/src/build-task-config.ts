/**
 * The pure build: one AppInstanceConfig revision → one TaskConfig (READY with a node-independent
 * OCI spec, or FAILED with the reason). No bus, no host: path existence, realpath and memory
 * admission are the executor's.
 */
import {
  SpecOptionError,
  buildSpec,
  withAnnotations,
  withArgs,
  withBindMount,
  withCpus,
  withCwd,
  withEnv,
  withHostname,
  withMemoryLimitBytes,
  withReadonlyRoot,
  withUser,
} from "@eve-tasks/oci-spec";
import type { SpecOpt } from "@eve-tasks/oci-spec";
import {
  EMULATORS_RUNTIME,
  TASK_LABELS,
  hypervisorSeedKey,
  imageSeedKey,
  isRuntimeApp,
  specSha256,
} from "@eve-tasks/schemas";
import type {
  AppInstanceConfig,
  NativeAppInstanceConfig,
  OciSpec,
  ReadyTaskConfig,
  SeedProcess,
  TaskEmulation,
  TaskRootfs,
} from "@eve-tasks/schemas";
import { buildRuntimeTaskConfig } from "./build-runtime-task-config.js";
import { networkAnnotations } from "./network.js";
import { failed, unreportable } from "./failed-task-config.js";
import { pendingOutcome, readyOutcome } from "./ready-outcome.js";
import type { BuildContext, BuildOutcome } from "./outcome.js";

/** Bytes in a MiB. */
const MiB = 2 ** 20;

/** The spec annotation that names the image (`<ref>@<manifest digest>`) of an image root. */
export const IMAGE_ANNOTATION = "org.lfedge.eve-tasks.image";

/** The PENDING message while no seed of `ref` is published for `node`. */
export function waitingForSeedMessage(node: string, ref: string): string {
  return `waiting for the hypervisor-seed-fetcher on node ${node} to pull ${ref}`;
}

/** The PENDING message while `ref` is being pulled. */
export function pullingMessage(ref: string): string {
  return `pulling ${ref}`;
}

/** The FAILED message of an image with no command when the app gives no `process.args`. */
export function noCommandMessage(ref: string): string {
  return `the image ${ref} defines no command (Entrypoint/Cmd): give process.args`;
}

/** The message of a FAILED TaskConfig for a volume or host root without `process.args`. */
export const ARGS_REQUIRED =
  "process.args is required: with a volume or host root there is no image config to supply a default command";

/**
 * Builds the TaskConfig of `config`, stored under `ctx.key` at KV revision `ctx.revision`:
 *
 * - the key is not a uuid → UNREPORTABLE;
 * - `uuid` differs from the key → FAILED "uuid … does not match the key …";
 * - a `runtime` section, or `virtualization: HVM` (a VM, the short form of a runtime) →
 *   {@link buildRuntimeTaskConfig};
 * - `root.image`, by its seed (`ctx.imageSeed`, the seed of the ref for the app's arch): none →
 *   PENDING waitingFor "seed"; PULLING →
 *   PENDING waitingFor "pull"; FAILED → FAILED with the seed's error (source
 *   `hypervisor-seed-fetcher`); READY → built with the image's process under the app's, see
 *   {@link imageProcess};
 * - a process or resource the spec cannot hold (a user name, no args) → FAILED naming the field;
 * - an app naming its `arch` while the node's `emulators` seed is being pulled → PENDING "pull";
 * - a TaskConfig over 64 KiB → FAILED "too large";
 * - else READY: the spec from {@link nativeSpecOpts}, `specSha256`, the rootfs, the volumes for the
 *   executor's realpath check, `memoryMiB`, `anchorTaxMiB` 0, the restart policy and stop timeout;
 *   for an app naming its `arch`, the emulation (the arch and the READY `emulators` seed, if any:
 *   the executor decides on the node whether it is needed).
 */
export function buildTaskConfig(config: AppInstanceConfig, ctx: BuildContext): BuildOutcome {
  const bad = unreportable(ctx.key);
  if (bad) return bad;
  const identity = { node: config.node, version: config.version };
  if (config.uuid !== ctx.key) {
    return failed(
      ctx,
      identity,
      "uuid-mismatch",
      `uuid ${JSON.stringify(config.uuid)} does not match the key ${JSON.stringify(ctx.key)}: ` +
        `an AppInstanceConfig must be published under its own uuid`,
    );
  }
  if (isRuntimeApp(config) || config.virtualization === "HVM") return buildRuntimeTaskConfig(config, ctx);

  let opts: SpecOpt[];
  let rootfs: TaskRootfs;
  const image = config.root.image;
  if (image) {
    const seed = ctx.imageSeed;
    const ref = image.ref;
    if (seed === undefined || seed.state === "PULLING") {
      return pendingOutcome(
        ctx,
        config,
        seed ? "pull" : "seed",
        seed ? pullingMessage(ref) : waitingForSeedMessage(config.node, ref),
      );
    }
    if (seed.state === "FAILED") {
      return failed(ctx, identity, "seed", `${ref}: ${seed.error.message}`, "hypervisor-seed-fetcher");
    }
    const process = imageProcess(config, seed.process);
    if (process.args.length === 0) return failed(ctx, identity, "spec", noCommandMessage(ref));
    try {
      opts = [
        ...processSpecOpts(config, process, ref),
        ...commonSpecOpts(config, false),
        withAnnotations({ [TASK_LABELS.uuid]: config.uuid, [IMAGE_ANNOTATION]: `${ref}@${seed.digest}` }),
      ];
    } catch (err) {
      if (err instanceof SpecOptionError) return failed(ctx, identity, "spec", specOptionMessage(err));
      throw err;
    }
    rootfs = {
      kind: "image",
      seedKey: imageSeedKey(config.node, ref, config.arch),
      rootfsPath: seed.rootfsPath,
    };
  } else {
    try {
      opts = nativeSpecOpts(config);
    } catch (err) {
      if (err instanceof SpecOptionError) return failed(ctx, identity, "spec", specOptionMessage(err));
      throw err;
    }
    rootfs = rootfsOf(config);
  }
  let emulation: TaskEmulation | undefined;
  if (config.arch !== undefined) {
    const emulators = ctx.emulatorsSeed;
    if (emulators?.state === "PULLING") {
      return pendingOutcome(ctx, config, "pull", `pulling the emulators runtime (${emulators.ref})`);
    }
    emulation = {
      arch: config.arch,
      emulators:
        emulators?.state === "READY"
          ? { seedKey: hypervisorSeedKey(config.node, EMULATORS_RUNTIME), rootfsPath: emulators.rootfsPath }
          : null,
    };
  }
  // Checked once, with the whole TaskConfig, when readyOutcome validates it for the bus (a spec
  // lacking what every task needs is refused there, naming the `spec.…` field).
  const spec = buildSpec(...opts, withAnnotations(networkAnnotations(config.interfaces))) as OciSpec;
  const taskConfig: ReadyTaskConfig = {
    schemaVersion: 1,
    uuid: config.uuid,
    configRevision: ctx.revision,
    node: config.node,
    status: "READY",
    version: config.version,
    displayName: config.displayName,
    activate: config.activate,
    restartCounter: config.restartCounter,
    virtualization: "NOHYPER",
    spec,
    specSha256: specSha256(spec),
    rootfs,
    volumes: config.volumes.map((v) => ({ path: v.path, mountPoint: v.mountPoint, readOnly: v.readOnly })),
    memoryMiB: config.resources.memoryMiB,
    anchorTaxMiB: 0,
    ...(emulation ? { emulation } : {}),
    restartPolicy: config.restartPolicy,
    stopTimeoutMs: config.stopTimeoutMs,
    interfaces: config.interfaces,
  };
  return readyOutcome(ctx, identity, taskConfig, "process.args, process.env or volumes");
}

/** A container's process with every field decided. */
export interface ResolvedProcess {
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string;
  /** `uid` or `uid:gid` (a name is refused when the spec is built). */
  readonly user: string;
}

/**
 * The process of an image-root app: the image's (as the seed normalised it) overridden field by
 * field by the app's `process`: `args` the app's when given, else the image's (Entrypoint + Cmd;
 * may be empty); `env` the image's with the app's over it; `cwd` and `user` the app's when given,
 * else the image's, an empty image user meaning root (`0:0`).
 */
export function imageProcess(config: NativeAppInstanceConfig, image: SeedProcess): ResolvedProcess {
  const app = config.process ?? {};
  const user = app.user ?? image.user;
  return {
    args: app.args ?? image.args,
    env: { ...image.env, ...app.env },
    cwd: app.cwd ?? image.cwd,
    user: user === "" ? "0:0" : user,
  };
}

/**
 * The spec options of a process, in order: args, env (over the default PATH), cwd, user. With
 * `imageRef`, a refused user that came from the image (not the app) says so.
 */
function processSpecOpts(
  config: NativeAppInstanceConfig,
  process: ResolvedProcess,
  imageRef?: string,
): SpecOpt[] {
  let user: SpecOpt;
  try {
    user = withUser(process.user);
  } catch (err) {
    if (imageRef !== undefined && config.process?.user === undefined && err instanceof SpecOptionError) {
      throw new SpecOptionError(
        "withUser",
        process.user,
        `not given, and the user of the image ${imageRef} is refused: ${err.reason}`,
      );
    }
    throw err;
  }
  return [withArgs(process.args), withEnv(process.env), withCwd(process.cwd), user];
}

/**
 * The spec options every native container has after its process: hostname = uuid, memory limit =
 * `memoryMiB` MiB, CPU quota = `vcpus` × period, the root's read-only flag, one bind mount per
 * volume (the host path as given: the executor resolves it).
 */
function commonSpecOpts(config: NativeAppInstanceConfig, readOnlyRoot: boolean): SpecOpt[] {
  return [
    withHostname(config.uuid),
    withMemoryLimitBytes(config.resources.memoryMiB * MiB),
    withCpus(config.resources.vcpus),
    withReadonlyRoot(readOnlyRoot),
    ...config.volumes.map((v) =>
      withBindMount({ source: v.path, destination: v.mountPoint, readOnly: v.readOnly }),
    ),
  ];
}

/**
 * The spec options of a native container with a volume or host root, in order: args, env (over
 * the default PATH), cwd (default `/`), user (default `0:0`), hostname = uuid, memory limit =
 * `memoryMiB` MiB, CPU quota = `vcpus` × period, the root's read-only flag, one bind mount per
 * volume (the host path as given: the executor resolves it), and the uuid annotation.
 *
 * @throws {SpecOptionError} for a value a spec cannot hold, with a `process.*` field named by
 *   {@link specOptionMessage}.
 */
export function nativeSpecOpts(config: NativeAppInstanceConfig): SpecOpt[] {
  const process = config.process ?? {};
  if (process.args === undefined) throw new SpecOptionError("withArgs", undefined, ARGS_REQUIRED);
  const readOnlyRoot = config.root.volume ? config.root.volume.readOnly : true;
  return [
    ...processSpecOpts(config, {
      args: process.args,
      env: process.env ?? {},
      cwd: process.cwd ?? "/",
      user: process.user ?? "0:0",
    }),
    ...commonSpecOpts(config, readOnlyRoot),
    withAnnotations({ [TASK_LABELS.uuid]: config.uuid }),
  ];
}

/** Which config field each option's argument comes from, for messages. */
const FIELD_OF_OPTION: Readonly<Record<string, string>> = {
  withArgs: "process.args",
  withEnv: "process.env",
  withCwd: "process.cwd",
  withUser: "process.user",
  withHostname: "uuid",
  withMemoryLimitBytes: "resources.memoryMiB",
  withCpus: "resources.vcpus",
  withBindMount: "volumes",
};

/** A FAILED message for a refused option value, naming the config field: `process.user: …`. */
export function specOptionMessage(err: SpecOptionError): string {
  if (err.reason === ARGS_REQUIRED) return ARGS_REQUIRED;
  const field = FIELD_OF_OPTION[err.option] ?? err.option;
  return `${field}: ${err.reason}`;
}

/** The TaskConfig rootfs of a volume or host root (an image root's comes from its seed). */
function rootfsOf(config: NativeAppInstanceConfig): TaskRootfs {
  if (config.root.volume) {
    return { kind: "volume", path: config.root.volume.path, readOnly: config.root.volume.readOnly };
  }
  return { kind: "host", readOnly: true };
}
