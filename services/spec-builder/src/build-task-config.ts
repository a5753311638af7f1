/**
 * The pure build: one AppInstanceConfig revision → one TaskConfig (READY with a node-independent
 * OCI spec, or FAILED with the reason). No bus, no host: path existence, realpath and memory
 * admission are the executor's.
 */
import {
  SpecOptionError,
  buildSpec,
  toTaskSpec,
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
  TASK_LABELS,
  TaskConfigSchema,
  ValueTooLargeError,
  encodeValue,
  specSha256,
} from "@eve-tasks/schemas";
import type {
  AppInstanceConfig,
  NativeAppInstanceConfig,
  ReadyTaskConfig,
  TaskRootfs,
} from "@eve-tasks/schemas";
import { failed, unreportable } from "./failed-task-config.js";
import type { BuildContext, BuildOutcome } from "./outcome.js";

/** Bytes in a MiB. */
const MiB = 2 ** 20;

/** The message of a FAILED TaskConfig for a VM config. */
export const VM_NOT_SUPPORTED =
  'VM tasks (virtualization "HVM") are not supported yet: this spec-builder builds native containers ' +
  '(virtualization "NOHYPER") only';

/** The message of a FAILED TaskConfig for an image root. */
export function imageRootNotSupported(ref: string): string {
  return (
    `root.image (${JSON.stringify(ref)}) is not supported yet: image roots need an image seed from the ` +
    `hypervisor-seed-fetcher, which is not part of this version; use root.volume or root.host`
  );
}

/** The message of a FAILED TaskConfig for a volume or host root without `process.args`. */
export const ARGS_REQUIRED =
  "process.args is required: with a volume or host root there is no image config to supply a default command";

/**
 * Builds the TaskConfig of `config`, stored under `ctx.key` at KV revision `ctx.revision`:
 *
 * - the key is not a uuid → UNREPORTABLE;
 * - `uuid` differs from the key → FAILED "uuid … does not match the key …";
 * - `virtualization: HVM` or `root.image` → FAILED "not supported yet";
 * - a process or resource the spec cannot hold (a user name, no args) → FAILED naming the field;
 * - a TaskConfig over 64 KiB → FAILED "too large";
 * - else READY: the spec from {@link buildNativeSpec}, `specSha256`, the rootfs, the volumes for the
 *   executor's realpath check, `memoryMiB`, `anchorTaxMiB` 0, the restart policy and stop timeout.
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
  if (config.virtualization === "HVM") return failed(ctx, identity, "unsupported", VM_NOT_SUPPORTED);
  if (config.root.image) {
    return failed(ctx, identity, "unsupported", imageRootNotSupported(config.root.image.ref));
  }

  let opts: SpecOpt[];
  try {
    opts = nativeSpecOpts(config);
  } catch (err) {
    if (err instanceof SpecOptionError) return failed(ctx, identity, "spec", specOptionMessage(err));
    throw err;
  }
  const spec = toTaskSpec(buildSpec(...opts));
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
    rootfs: rootfsOf(config),
    volumes: config.volumes.map((v) => ({ path: v.path, mountPoint: v.mountPoint, readOnly: v.readOnly })),
    memoryMiB: config.resources.memoryMiB,
    anchorTaxMiB: 0,
    restartPolicy: config.restartPolicy,
    stopTimeoutMs: config.stopTimeoutMs,
  };
  try {
    encodeValue(TaskConfigSchema, taskConfig, { type: "TaskConfig", key: ctx.key });
  } catch (err) {
    if (err instanceof ValueTooLargeError) {
      return failed(
        ctx,
        identity,
        "output-too-large",
        `the built TaskConfig is ${err.sizeBytes} bytes, over the ${err.limitBytes}-byte (64 KiB) limit: ` +
          `shorten process.args, process.env or volumes`,
      );
    }
    throw err;
  }
  return { status: "READY", taskConfig };
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
    withArgs(process.args),
    withEnv(process.env ?? {}),
    withCwd(process.cwd ?? "/"),
    withUser(process.user ?? "0:0"),
    withHostname(config.uuid),
    withMemoryLimitBytes(config.resources.memoryMiB * MiB),
    withCpus(config.resources.vcpus),
    withReadonlyRoot(readOnlyRoot),
    ...config.volumes.map((v) =>
      withBindMount({ source: v.path, destination: v.mountPoint, readOnly: v.readOnly }),
    ),
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

/** The TaskConfig rootfs of a volume or host root. */
function rootfsOf(config: NativeAppInstanceConfig): TaskRootfs {
  if (config.root.volume) {
    return { kind: "volume", path: config.root.volume.path, readOnly: config.root.volume.readOnly };
  }
  return { kind: "host", readOnly: true };
}
