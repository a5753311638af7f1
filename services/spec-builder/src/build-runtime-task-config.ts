/**
 * The pure build of a runtime task: an app with a `runtime` section, or a VM (`virtualization:
 * HVM` with `vm`, which is the short form of runtime `vm.hypervisorTools` with artifacts `kernel`,
 * `initrd` and `disk<n>`). Nothing here knows any particular runtime: the runtime image's seed
 * gives the loader (its Entrypoint + Cmd, the task's command), the stop method, the tax and the
 * devices (its labels); the task gets the contract's `EVE_TASK_*` environment and its artifacts at
 * `/eve/artifacts/<name>`.
 */
import {
  QMP_SOCKET_IN_TASK,
  SpecOptionError,
  artifactPath,
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
import {
  TASK_LABELS,
  TOOLS_ANNOTATION,
  VM_ACCEL_ANNOTATION,
  VM_VCPUS_ANNOTATION,
  hypervisorSeedKey,
  isRuntimeApp,
  readRuntimeLabels,
  runtimeTaxMiB,
  specSha256,
} from "@eve-tasks/schemas";
import type {
  Accel,
  OciSpec,
  ReadyTaskConfig,
  RuntimeAppInstanceConfig,
  RuntimeArtifact,
  TaskVolume,
  VmAppInstanceConfig,
} from "@eve-tasks/schemas";
import { networkAnnotations } from "./network.js";
import { failed } from "./failed-task-config.js";
import type { BuildContext, BuildOutcome } from "./outcome.js";
import { pendingOutcome, readyOutcome } from "./ready-outcome.js";

const MiB = 2 ** 20;

/** The PENDING message while no HypervisorToolsConfig of that name is published. */
export function noToolsConfigMessage(name: string): string {
  return (
    `waiting for runtime ${JSON.stringify(name)}: no HypervisorToolsConfig.${name} is published ` +
    `(npm start registers the built-in runtimes default, jvm and emulators)`
  );
}

/** The PENDING message while the runtime's seed is not on the node yet. */
export function waitingForToolsMessage(node: string, name: string, ref: string | undefined): string {
  const what = ref === undefined ? "" : ` (${ref})`;
  return `waiting for the hypervisor-seed-fetcher on node ${node} to seed runtime ${JSON.stringify(name)}${what}`;
}

/** The prefix of the contract's environment variables; an app may not set them. */
export const EVE_TASK_ENV_PREFIX = "EVE_TASK_";

/** What a runtime task is asked for: the runtime section, or what a VM's `vm` section means. */
export interface RuntimeRequest {
  /** The HypervisorToolsConfig name. */
  readonly tools: string;
  readonly artifacts: readonly RuntimeArtifact[];
  readonly cmdline: string | undefined;
  readonly accel: Accel;
  /** Arguments after the loader's command (the app's `process.args`). */
  readonly args: readonly string[];
  /** The app's `process.env`, over the image's. */
  readonly env: Readonly<Record<string, string>>;
  /** The TaskConfig's (informational) virtualization. */
  readonly virtualization: "NOHYPER" | "HVM";
  /** Where the artifacts come from in the config, for messages: `runtime.artifacts` or `vm`. */
  readonly artifactsField: string;
}

/**
 * The runtime request of a runtime app, or of a VM: `vm` is runtime `vm.hypervisorTools` with
 * artifacts `kernel` and `initrd` (read-only) and `disk<n>` (with the disk's format and
 * read-only flag), `EVE_TASK_CMDLINE` = `vm.cmdline` and the accelerator `vm.accel`.
 */
export function runtimeRequestOf(config: VmAppInstanceConfig | RuntimeAppInstanceConfig): RuntimeRequest {
  if (isRuntimeApp(config)) {
    return {
      tools: config.runtime.tools,
      artifacts: config.runtime.artifacts,
      cmdline: config.runtime.cmdline,
      accel: config.runtime.accel,
      args: config.process?.args ?? [],
      env: config.process?.env ?? {},
      virtualization: config.virtualization ?? "NOHYPER",
      artifactsField: "runtime.artifacts",
    };
  }
  const vm = config.vm;
  const artifacts: RuntimeArtifact[] = [];
  if (vm.kernel !== undefined) artifacts.push({ name: "kernel", path: vm.kernel, readOnly: true });
  if (vm.initrd !== undefined) artifacts.push({ name: "initrd", path: vm.initrd, readOnly: true });
  vm.disks.forEach((d, i) =>
    artifacts.push({ name: `disk${i}`, path: d.path, readOnly: d.readOnly, format: d.format }),
  );
  return {
    tools: vm.hypervisorTools,
    artifacts,
    cmdline: vm.cmdline,
    accel: vm.accel,
    args: [],
    env: {},
    virtualization: "HVM",
    artifactsField: "vm",
  };
}

/** OCI architectures in `uname -m` spelling (what EVE_TASK_ARCH says). */
const UNAME_ARCH: Readonly<Record<string, string>> = {
  amd64: "x86_64",
  arm64: "aarch64",
  arm: "armv7l",
  riscv64: "riscv64",
};

/**
 * The contract's environment of a runtime task that the spec-builder knows (the node adds
 * `EVE_TASK_ACCEL` and `EVE_TASK_NICS`): `EVE_TASK_UUID`, `EVE_TASK_MEMORY_MIB`,
 * `EVE_TASK_VCPUS`, `EVE_TASK_ARCH`, `EVE_TASK_ARTIFACTS` (names, comma-separated, in order),
 * `EVE_TASK_ARTIFACT_FORMATS` (`<name>=<format>,…` of those with a format), `EVE_TASK_CMDLINE`
 * when given, `EVE_TASK_QMP_SOCKET` for a runtime stopped by QMP.
 */
export function runtimeTaskEnv(o: {
  uuid: string;
  memoryMiB: number;
  vcpus: number;
  arch: string;
  artifacts: readonly RuntimeArtifact[];
  cmdline: string | undefined;
  qmp: boolean;
}): Record<string, string> {
  const env: Record<string, string> = {
    EVE_TASK_UUID: o.uuid,
    EVE_TASK_MEMORY_MIB: String(o.memoryMiB),
    EVE_TASK_VCPUS: String(o.vcpus),
    EVE_TASK_ARCH: o.arch,
    EVE_TASK_ARTIFACTS: o.artifacts.map((a) => a.name).join(","),
    EVE_TASK_ARTIFACT_FORMATS: o.artifacts
      .flatMap((a) => (a.format === undefined ? [] : [`${a.name}=${a.format}`]))
      .join(","),
  };
  if (o.cmdline !== undefined) env.EVE_TASK_CMDLINE = o.cmdline;
  if (o.qmp) env.EVE_TASK_QMP_SOCKET = QMP_SOCKET_IN_TASK;
  return env;
}

/**
 * Builds a runtime task's TaskConfig from its runtime's seed (`ctx.toolsSeed`, key
 * `hypervisorSeedKey(node, tools)`):
 *
 * - no seed → PENDING waitingFor "seed" (saying when no HypervisorToolsConfig of that name is
 *   published); PULLING → PENDING "pull"; FAILED → FAILED from the hypervisor-seed-fetcher;
 * - an image without the runtime label, or with a label this node cannot use, or without a loader
 *   (no Entrypoint/Cmd) → FAILED saying so;
 * - `process.env` setting an `EVE_TASK_*` variable → FAILED (the contract's variables are the
 *   node's);
 * - READY → the spec: the loader with the app's args after it, the image's env with the app's
 *   and the contract's `EVE_TASK_*` over it, the image's working directory and user (root when
 *   it names none), hostname = uuid, memory limit `(memoryMiB + taxMiB)` MiB (the tax the app's
 *   `resources.vmmOverheadMiB`, else what the image declares), CPU quota `vcpus + 1` (the
 *   runtime's own threads besides the guest's or the program's), annotations naming the runtime
 *   image pinned, the vCPUs and the accel asked for, a bind mount per artifact at
 *   `/eve/artifacts/<name>` (the host path as given: the executor resolves it), and the artifacts
 *   as volumes for the executor's realpath check.
 */
export function buildRuntimeTaskConfig(
  config: VmAppInstanceConfig | RuntimeAppInstanceConfig,
  ctx: BuildContext,
): BuildOutcome {
  const identity = { node: config.node, version: config.version };
  const request = runtimeRequestOf(config);
  const tools = request.tools;
  const seed = ctx.toolsSeed;
  if (seed === undefined || seed.state === "PULLING") {
    if (seed === undefined && ctx.toolsConfigured === false) {
      return pendingOutcome(ctx, config, "seed", noToolsConfigMessage(tools));
    }
    return pendingOutcome(
      ctx,
      config,
      seed ? "pull" : "seed",
      seed
        ? `pulling runtime ${JSON.stringify(tools)} (${seed.ref})`
        : waitingForToolsMessage(config.node, tools, undefined),
    );
  }
  const runtime = `runtime ${JSON.stringify(tools)} (${seed.ref})`;
  if (seed.state === "FAILED") {
    return failed(ctx, identity, "seed", `${runtime}: ${seed.error.message}`, "hypervisor-seed-fetcher");
  }
  const labels = readRuntimeLabels(seed.labels, seed.stopSignal);
  if (!labels.ok) {
    const why =
      seed.labels === null
        ? "its seed was made by a hypervisor-seed-fetcher that kept no labels: publish its HypervisorToolsConfig again"
        : labels.message;
    return failed(ctx, identity, "runtime", `${runtime} cannot run tasks: ${why}`);
  }
  const image = labels.facts;
  if (seed.process.args.length === 0) {
    return failed(
      ctx,
      identity,
      "runtime",
      `${runtime} cannot run tasks: its image defines no loader (Entrypoint/Cmd)` +
        (Object.keys(image.emulators).length > 0
          ? "; it provides emulators for native apps of another arch"
          : ""),
    );
  }
  const forbidden = Object.keys(request.env).filter((k) => k.startsWith(EVE_TASK_ENV_PREFIX));
  if (forbidden.length > 0) {
    return failed(
      ctx,
      identity,
      "spec",
      `process.env: ${forbidden.join(", ")}: variables starting with ${EVE_TASK_ENV_PREFIX} are the runtime contract's, set by the node`,
    );
  }

  const { memoryMiB, vcpus } = config.resources;
  const taxFromApp = config.resources.vmmOverheadMiB !== undefined;
  const anchorTaxMiB = config.resources.vmmOverheadMiB ?? runtimeTaxMiB(image.tax, { memoryMiB, vcpus });
  const platformArch = seed.platform.split("/")[1] ?? "";
  const arch = config.arch ?? UNAME_ARCH[platformArch] ?? platformArch;
  const volumes: TaskVolume[] = request.artifacts.map((a) => ({
    path: a.path,
    mountPoint: artifactPath(a.name),
    readOnly: a.readOnly,
  }));
  const env = {
    ...seed.process.env,
    ...request.env,
    ...runtimeTaskEnv({
      uuid: config.uuid,
      memoryMiB,
      vcpus,
      arch,
      artifacts: request.artifacts,
      cmdline: request.cmdline,
      qmp: image.stop.method === "qmp",
    }),
  };

  let spec: OciSpec;
  try {
    const user = seed.process.user === "" ? "0:0" : seed.process.user;
    // Checked once, with the whole TaskConfig, when readyOutcome validates it for the bus.
    spec = buildSpec(
      withArgs([...seed.process.args, ...request.args]),
      withEnv(env),
      withCwd(seed.process.cwd),
      withUser(user),
      withHostname(config.uuid),
      withMemoryLimitBytes((memoryMiB + anchorTaxMiB) * MiB),
      withCpus(vcpus + 1),
      withReadonlyRoot(false),
      ...volumes.map((v) =>
        withBindMount({ source: v.path, destination: v.mountPoint, readOnly: v.readOnly }),
      ),
      withAnnotations({
        [TASK_LABELS.uuid]: config.uuid,
        [TOOLS_ANNOTATION]: `${seed.ref}@${seed.digest}`,
        [VM_VCPUS_ANNOTATION]: String(vcpus),
        [VM_ACCEL_ANNOTATION]: request.accel,
        ...networkAnnotations(config.interfaces),
      }),
    ) as OciSpec;
  } catch (err) {
    if (err instanceof SpecOptionError) {
      const where = err.option === "withUser" ? `the user of ${runtime}` : "process";
      return failed(ctx, identity, "spec", `${where}: ${err.reason}`);
    }
    throw err;
  }

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
    virtualization: request.virtualization,
    spec,
    specSha256: specSha256(spec),
    rootfs: { kind: "tools", seedKey: hypervisorSeedKey(config.node, tools), rootfsPath: seed.rootfsPath },
    volumes,
    memoryMiB,
    anchorTaxMiB,
    runtime: {
      name: tools,
      accel: request.accel,
      stop: image.stop,
      devices: [...image.devices],
      taxFromApp,
      vcpus,
    },
    restartPolicy: config.restartPolicy,
    stopTimeoutMs: config.stopTimeoutMs,
    interfaces: config.interfaces,
  };
  return readyOutcome(
    ctx,
    identity,
    taskConfig,
    request.artifactsField === "vm" ? "vm.cmdline or vm.disks" : "process.args, process.env or runtime",
  );
}
