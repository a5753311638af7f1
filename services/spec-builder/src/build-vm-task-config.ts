/**
 * The pure build of a VM (`virtualization: HVM`): the task's root is the hypervisor-tools seed
 * of this node, the anchor is `qemu-system-<arch>` with the app's memory, vCPUs, kernel, initrd,
 * command line and disks; the memory limit is guest RAM plus the anchor tax.
 */
import {
  SpecOptionError,
  buildSpec,
  qemuArgs,
  qemuProgramFor,
  vmGuestPaths,
  withAnnotations,
  withArgs,
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
  estimateAnchorTaxMiB,
  hypervisorSeedKey,
  specSha256,
} from "@eve-tasks/schemas";
import type { OciSpec, ReadyTaskConfig, TaskVolume, VmAppInstanceConfig } from "@eve-tasks/schemas";
import { failed } from "./failed-task-config.js";
import { networkAnnotations } from "./network.js";
import type { BuildContext, BuildOutcome } from "./outcome.js";
import { pendingOutcome, readyOutcome } from "./ready-outcome.js";

const MiB = 2 ** 20;

/** The PENDING message while no HypervisorToolsConfig of that name is published. */
export function noToolsConfigMessage(name: string): string {
  return (
    `waiting for hypervisor tools ${JSON.stringify(name)}: no HypervisorToolsConfig.${name} is published ` +
    `(npm start registers the built-in image as "default")`
  );
}

/** The PENDING message while the tools seed is not on the node yet. */
export function waitingForToolsMessage(node: string, name: string, ref: string | undefined): string {
  const what = ref === undefined ? "" : ` (${ref})`;
  return `waiting for the hypervisor-seed-fetcher on node ${node} to seed hypervisor tools ${JSON.stringify(name)}${what}`;
}

/**
 * Builds a VM's TaskConfig from its tools seed (`ctx.toolsSeed`, key
 * `hypervisorSeedKey(node, vm.hypervisorTools)`):
 *
 * - no seed → PENDING waitingFor "seed" (saying when no HypervisorToolsConfig of that name is
 *   published); PULLING → PENDING "pull"; FAILED → FAILED from the hypervisor-seed-fetcher;
 * - READY → the spec: qemu's arguments ({@link qemuArgs}) under the seed's PATH, root `0:0` in
 *   `/`, hostname = uuid, memory limit `(memoryMiB + taxMiB)` MiB, CPU quota `vcpus + 1` (the
 *   vCPU threads and qemu's own), annotations naming the tools image, the vCPUs and the accel
 *   asked for; the kernel, initrd and disks as volumes at {@link vmGuestPaths} for the executor's
 *   realpath check. The tax is `resources.vmmOverheadMiB`, else EVE's estimate (which a node's
 *   `EVE_VMM_OVERHEAD_MIB` may replace in the executor).
 */
export function buildVmTaskConfig(config: VmAppInstanceConfig, ctx: BuildContext): BuildOutcome {
  const identity = { node: config.node, version: config.version };
  const vm = config.vm;
  const tools = vm.hypervisorTools;
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
        ? `pulling hypervisor tools ${JSON.stringify(tools)} (${seed.ref})`
        : waitingForToolsMessage(config.node, tools, undefined),
    );
  }
  if (seed.state === "FAILED") {
    return failed(
      ctx,
      identity,
      "seed",
      `hypervisor tools ${JSON.stringify(tools)} (${seed.ref}): ${seed.error.message}`,
      "hypervisor-seed-fetcher",
    );
  }

  const { memoryMiB, vcpus } = config.resources;
  const anchorTaxMiB = config.resources.vmmOverheadMiB ?? estimateAnchorTaxMiB({ memoryMiB, vcpus });
  const volumes: TaskVolume[] = [];
  if (vm.kernel !== undefined)
    volumes.push({ path: vm.kernel, mountPoint: vmGuestPaths.kernel, readOnly: true });
  if (vm.initrd !== undefined)
    volumes.push({ path: vm.initrd, mountPoint: vmGuestPaths.initrd, readOnly: true });
  vm.disks.forEach((d, i) =>
    volumes.push({ path: d.path, mountPoint: vmGuestPaths.disk(i), readOnly: d.readOnly }),
  );

  let spec: OciSpec;
  let qemu: string;
  try {
    // The guest's architecture: the app's, else the tools image's platform (the node's own).
    const arch = config.arch ?? seed.platform.split("/")[1] ?? "";
    qemu = qemuProgramFor(arch);
    const args = qemuArgs(qemu, {
      name: config.uuid,
      memoryMiB,
      vcpus,
      kernel: vm.kernel !== undefined,
      initrd: vm.initrd !== undefined,
      cmdline: vm.cmdline,
      disks: vm.disks,
    });
    // Checked once, with the whole TaskConfig, when readyOutcome validates it for the bus.
    spec = buildSpec(
      withArgs(args),
      withEnv(seed.process.env),
      withCwd("/"),
      withUser("0:0"),
      withHostname(config.uuid),
      withMemoryLimitBytes((memoryMiB + anchorTaxMiB) * MiB),
      withCpus(vcpus + 1),
      withReadonlyRoot(false),
      withAnnotations({
        [TASK_LABELS.uuid]: config.uuid,
        [TOOLS_ANNOTATION]: `${seed.ref}@${seed.digest}`,
        [VM_VCPUS_ANNOTATION]: String(vcpus),
        [VM_ACCEL_ANNOTATION]: vm.accel,
        ...networkAnnotations(config.interfaces),
      }),
    ) as OciSpec;
  } catch (err) {
    if (err instanceof SpecOptionError) return failed(ctx, identity, "spec", `vm: ${err.reason}`);
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
    virtualization: "HVM",
    spec,
    specSha256: specSha256(spec),
    rootfs: { kind: "tools", seedKey: hypervisorSeedKey(config.node, tools), rootfsPath: seed.rootfsPath },
    volumes,
    memoryMiB,
    anchorTaxMiB,
    vm: {
      accel: vm.accel,
      anchorTaxFromApp: config.resources.vmmOverheadMiB !== undefined,
      qemu,
      vcpus,
    },
    restartPolicy: config.restartPolicy,
    stopTimeoutMs: config.stopTimeoutMs,
    interfaces: config.interfaces,
  };
  return readyOutcome(ctx, identity, taskConfig, "vm.cmdline or vm.disks");
}
