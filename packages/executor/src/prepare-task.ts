import { join } from "node:path";
import { cgroupsPathFor, taskLogPath } from "@eve-tasks/schemas";
import type { OciSpec, ReadyTaskConfig } from "@eve-tasks/schemas";
import type { Mount } from "@eve-tasks/containerd";
import { NodeFactError } from "./errors.js";
import { clampRlimits } from "./host-limits.js";
import { resolveUnderRoots } from "./host-paths.js";
import type { NodeFacts } from "./node-facts.js";

/** A task ready for containerd: the final spec, its root filesystem mounts and where its output goes. */
export interface PreparedTask {
  spec: OciSpec;
  /** Tasks.Create's rootfs mounts; the spec's root.path is `rootfs` (no snapshotter). */
  rootfs: Mount[];
  /** The task directory: `<EVE_DATA_DIR>/tasks/<uuid>`. */
  taskDir: string;
  /** `<taskDir>/console.log`: stdout and stderr of the anchor. */
  logPath: string;
  memoryLimitBytes: number;
  anchorTaxBytes: number;
}

const MiB = 2 ** 20;

/**
 * Applies the node's facts to a node-independent TaskConfig: resolves every host path
 * (root and volumes) with realpath and checks it against EVE_VOLUME_ROOTS, mounting the
 * resolved path; checks the memory against the node; sets the cgroup path, the memory
 * limit, and rlimits the host can grant. Does not touch containerd.
 *
 * @throws NodeFactError with a message for the app's TaskStatus.
 */
export async function prepareTask(config: ReadyTaskConfig, facts: NodeFacts): Promise<PreparedTask> {
  const spec = structuredClone(config.spec);
  const uuid = config.uuid;

  const totalMiB = config.memoryMiB + config.anchorTaxMiB;
  const usableMiB = facts.memoryMiB - facts.memoryReserveMiB;
  if (totalMiB > usableMiB) {
    const tax = config.anchorTaxMiB
      ? ` (${config.memoryMiB} MiB + ${config.anchorTaxMiB} MiB anchor tax)`
      : "";
    const reserve = facts.memoryReserveMiB ? ` after the ${facts.memoryReserveMiB} MiB reserve` : "";
    throw new NodeFactError(
      `needs ${totalMiB} MiB of memory${tax} but node ${facts.node} has ${usableMiB} MiB${reserve}`,
      uuid,
    );
  }

  let rootfs: Mount[];
  const root = config.rootfs;
  switch (root.kind) {
    case "volume": {
      const source = await resolveUnderRoots(root.path, facts.volumeRoots, "root volume", "directory");
      rootfs = [{ type: "bind", source, options: ["rbind", root.readOnly ? "ro" : "rw"] }];
      break;
    }
    case "host":
      // A bare "/" as root fails at pivot_root, so "/" is bind-mounted. Not recursively (the
      // design said rbind): a recursive bind drags in every host mount below / (the task
      // would see the host's /run, /tmp, even containerd's own state), "ro" would apply to
      // the top mount only, and the shim cannot unmount it afterwards (EBUSY). The task
      // gets the root filesystem itself, read-only, plus its spec's own /proc, /dev, /sys.
      rootfs = [{ type: "bind", source: "/", options: ["bind", "ro"] }];
      break;
    case "image":
    case "tools":
      throw new NodeFactError(
        `a ${root.kind} root filesystem needs a seed from the hypervisor-seed-fetcher, which this node does not run yet`,
        uuid,
      );
  }
  spec.root = { ...spec.root, path: "rootfs" };

  // Volumes: mount what their paths resolve to, never the path as given.
  const mounts = [...(spec.mounts ?? [])];
  const sources = await Promise.all(
    config.volumes.map((v) => resolveUnderRoots(v.path, facts.volumeRoots, `volume ${v.mountPoint}`)),
  );
  for (const [n, v] of config.volumes.entries()) {
    const source = sources[n]!;
    const options = ["rbind", v.readOnly ? "ro" : "rw"];
    const i = mounts.findIndex((m) => m.destination === v.mountPoint);
    const mount = { destination: v.mountPoint, type: "bind", source, options };
    if (i >= 0) mounts[i] = { ...mounts[i], ...mount };
    else mounts.push(mount);
  }
  spec.mounts = mounts;

  const memoryLimitBytes = totalMiB * MiB;
  spec.linux = {
    ...spec.linux,
    cgroupsPath: cgroupsPathFor(uuid),
    resources: {
      ...spec.linux.resources,
      memory: { ...spec.linux.resources.memory, limit: memoryLimitBytes },
    },
  };
  if (spec.process.rlimits)
    spec.process = { ...spec.process, rlimits: clampRlimits(spec.process.rlimits, facts.hardLimits) };

  const logPath = taskLogPath(facts.dataDir, uuid);
  return {
    spec,
    rootfs,
    taskDir: join(facts.dataDir, "tasks", uuid),
    logPath,
    memoryLimitBytes,
    anchorTaxBytes: config.anchorTaxMiB * MiB,
  };
}
