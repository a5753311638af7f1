import { createHash } from "node:crypto";
import { realpath, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { cgroupsPathFor, taskLogPath } from "@eve-tasks/schemas";
import type { OciSpec, ReadyTaskConfig } from "@eve-tasks/schemas";
import type { Mount } from "@eve-tasks/containerd";
import type { ResolvedAppNetwork } from "@eve-tasks/network";
import { NodeFactError } from "./errors.js";
import { clampRlimits } from "./host-limits.js";
import { isWithin, resolveUnderRoots } from "./host-paths.js";
import type { NodeFacts } from "./node-facts.js";
import { enforcePolicy } from "./policy.js";
import { stagingPath } from "./staged-mounts.js";
import type { StagedMount } from "./staged-mounts.js";
import { taskLogUri } from "./task-log.js";
import { applyRuntimeFacts, emulationFacts, nodeArch } from "./runtime-task.js";
import type { AccelDecider, EmulationFacts, RuntimeFacts } from "./runtime-task.js";

/** A task ready for containerd: the final spec, its root filesystem mounts and where its output goes. */
export interface PreparedTask {
  spec: OciSpec;
  /** Tasks.Create's rootfs mounts; the spec's root.path is `rootfs` (no snapshotter). */
  rootfs: Mount[];
  /** The task directory: `<EVE_DATA_DIR>/tasks/<uuid>`. */
  taskDir: string;
  /** `<taskDir>/console.log`: stdout and stderr of the anchor. */
  logPath: string;
  /**
   * Tasks.Create's stdout and stderr: both the task logger writing `logPath`, rotated by size
   * (`binary://…`, see `taskLogUri`).
   */
  io: { stdout: string; stderr: string };
  /**
   * The checked host paths (a root volume, volumes) to stage for Tasks.Create: the spec and
   * `rootfs` name their staging paths, which exist only inside `withStagedMounts`.
   */
  staged: StagedMount[];
  /**
   * Directories to create (recursively) before Tasks.Create, besides `taskDir`: an overlay
   * root's upper and work dirs, under `taskDir` (they go with it when the app is deleted).
   */
  dirs: string[];
  /**
   * An image or tools root's `<taskDir>/overlay/<key>`, holding its upper and work dirs; `<key>`
   * names the seed (the lower layer), so a task on another image gets a fresh upper dir.
   */
  overlayDir?: string;
  memoryLimitBytes: number;
  anchorTaxBytes: number;
  /**
   * A runtime task's node facts (accelerator and why, stop, tax, devices); undefined for a native
   * container.
   */
  runtime?: RuntimeFacts;
  /** An emulated native task's emulator (to register with binfmt_misc before Tasks.Create). */
  emulation?: EmulationFacts;
  /** The task's interfaces, resolved (the `netns` host resource builds them); none: loopback only. */
  network?: ResolvedAppNetwork;
}

const MiB = 2 ** 20;

/** Options of a volume's bind mount: recursive, and read-only, nosuid and nodev all the way down. */
export function volumeMountOptions(readOnly: boolean): string[] {
  return readOnly
    ? ["rbind", "ro", "rro", "nosuid", "nodev", "rnosuid", "rnodev"]
    : ["rbind", "rw", "nosuid", "nodev", "rnosuid", "rnodev"];
}

/**
 * Applies the node's facts to a node-independent TaskConfig. First the node's policy
 * (`enforcePolicy`: nothing the spec-builder would not write). Then it resolves every host path
 * (root and volumes) with realpath and checks it against EVE_VOLUME_ROOTS; each is listed in
 * `staged`, to be mounted from what was checked (see `withStagedMounts`): a root volume by the
 * shim, bound alone (its submounts stay out, as for the host root); a volume by runc, from the
 * staging path the spec names, bound recursively with {@link volumeMountOptions}. An image or
 * tools root is an overlay whose lower dir is the seed's root (resolved, and inside
 * `<dataDir>/seeds`) and whose upper and work dirs are the task's, per seed
 * (`<taskDir>/overlay/<key of the seed>/{upper,work}`, listed in `dirs`). It checks the memory
 * against the node, sets the cgroup path, the memory limit, rlimits the host can grant, and the
 * task logger as Tasks.Create's stdout and stderr. Does not touch containerd or create anything.
 *
 * @throws NodeFactError with a message for the app's TaskStatus.
 */
export async function prepareTask(
  config: ReadyTaskConfig,
  facts: NodeFacts,
  accel?: AccelDecider,
): Promise<PreparedTask> {
  // Copy on write: each change below replaces the part of the spec it changes (root, mounts,
  // linux, process) instead of editing it, so the TaskConfig's own spec is never modified and
  // no deep copy is needed (structuredClone of a spec was ~0.2 ms of an idle executor, on the
  // way to Containers.Create).
  enforcePolicy(config, facts.policy);
  const spec: OciSpec = { ...config.spec };
  const uuid = config.uuid;

  const taskDir = join(facts.dataDir, "tasks", uuid);
  const dirs: string[] = [];
  let overlayDir: string | undefined;
  const staged: StagedMount[] = [];
  let rootfs: Mount[];
  let seedLower: string | undefined;
  const root = config.rootfs;
  switch (root.kind) {
    case "volume": {
      const source = await resolveUnderRoots(root.path, facts.volumeRoots, "root volume", "directory");
      // The shim mounts it (in this mount namespace) from the path opened and checked again.
      staged.push({ what: "root volume", source, via: "shim", recursive: false, directory: true });
      rootfs = [{ type: "bind", source, options: ["bind", root.readOnly ? "ro" : "rw"] }];
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
    case "tools": {
      // The seed is the read-only lower layer; the task writes to its own upper dir.
      const lower = await seedRoot(root.rootfsPath, root.seedKey, facts.dataDir, uuid);
      seedLower = lower;
      // Per seed: a new image never sees what a task on the old one wrote.
      overlayDir = join(taskDir, "overlay", overlayKey(lower));
      const upper = join(overlayDir, "upper");
      const work = join(overlayDir, "work");
      const bad = [lower, upper, work].find((d) => /[,:]/.test(d));
      if (bad !== undefined) {
        throw new NodeFactError(
          `${bad} holds a ',' or ':', which an overlay mount's options cannot carry: ` +
            `move EVE_DATA_DIR to a path without them`,
          uuid,
        );
      }
      dirs.push(upper, work);
      rootfs = [
        {
          type: "overlay",
          source: "overlay",
          options: [`lowerdir=${lower}`, `upperdir=${upper}`, `workdir=${work}`],
        },
      ];
      break;
    }
  }
  spec.root = { ...spec.root, path: "rootfs" };

  // Volumes: mount what their paths resolve to, never the path as given, through a staging path.
  // The policy let through only bind mounts at volume mount points: each is rebuilt here whole.
  const mounts = [...(spec.mounts ?? [])];
  const sources = await Promise.all(
    config.volumes.map((v) => resolveUnderRoots(v.path, facts.volumeRoots, `volume ${v.mountPoint}`)),
  );
  for (const [n, v] of config.volumes.entries()) {
    const what = `volume ${v.mountPoint}`;
    const target = stagingPath(taskDir, `volume-${n}`);
    staged.push({ what, source: sources[n]!, via: "staging", target, recursive: true, directory: false });
    const mount = {
      destination: v.mountPoint,
      type: "bind",
      source: target,
      options: volumeMountOptions(v.readOnly),
    };
    const i = mounts.findIndex((m) => m.destination === v.mountPoint);
    if (i >= 0) mounts[i] = mount;
    else mounts.push(mount);
  }
  spec.mounts = mounts;

  let runtime: RuntimeFacts | undefined;
  if (config.runtime) {
    if (seedLower === undefined) {
      throw new NodeFactError("a runtime task needs its runtime image's seed as root", uuid);
    }
    runtime = await applyRuntimeFacts(config, spec, seedLower, { ...facts, accel });
    if (runtime.qmpDir !== undefined) dirs.push(runtime.qmpDir);
  }
  const emulators = config.emulation?.emulators;
  const emulation = await emulationFacts(
    config,
    emulators && config.emulation?.arch !== (facts.arch ?? nodeArch())
      ? await seedRoot(emulators.rootfsPath, emulators.seedKey, facts.dataDir, uuid)
      : undefined,
    { nodeArch: facts.arch ?? nodeArch() },
  );

  // The anchor tax: the runtime's (see applyRuntimeFacts), or an emulated task's emulator's.
  const taxMiB = runtime?.taxMiB ?? emulation?.taxMiB ?? 0;
  const totalMiB = config.memoryMiB + taxMiB;
  const usableMiB = facts.memoryMiB - facts.memoryReserveMiB;
  if (totalMiB > usableMiB) {
    const tax = taxMiB ? ` (${config.memoryMiB} MiB + ${taxMiB} MiB anchor tax)` : "";
    const reserve = facts.memoryReserveMiB ? ` after the ${facts.memoryReserveMiB} MiB reserve` : "";
    throw new NodeFactError(
      `needs ${totalMiB} MiB of memory${tax} but node ${facts.node} has ${usableMiB} MiB${reserve}`,
      uuid,
    );
  }

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
  const log = taskLogUri(facts.taskLog, logPath);
  return {
    spec,
    rootfs,
    taskDir,
    logPath,
    io: { stdout: log, stderr: log },
    staged,
    dirs,
    ...(overlayDir !== undefined ? { overlayDir } : {}),
    memoryLimitBytes,
    anchorTaxBytes: taxMiB * MiB,
    ...(runtime ? { runtime } : {}),
    ...(emulation ? { emulation } : {}),
  };
}

/** The name of the overlay dir of a task on the seed root `lower` (resolved): 16 hex digits. */
function overlayKey(lower: string): string {
  return createHash("sha256").update(lower).digest("hex").slice(0, 16);
}

/**
 * The seed root `rootfsPath` as the kernel will see it (realpath), which must be a directory
 * inside `<dataDir>/seeds`: the hypervisor-seed-fetcher of this node unpacks seeds there, and
 * nothing else may become a task's lower layer.
 *
 * @throws NodeFactError when it is elsewhere or not on this node.
 */
async function seedRoot(rootfsPath: string, seedKey: string, dataDir: string, uuid: string): Promise<string> {
  const seedsDir = resolve(dataDir, "seeds");
  // The seeds dir itself may be reached through a symlink (a data dir moved elsewhere).
  const seedsReal = await realpath(seedsDir).catch(() => seedsDir);
  let lower: string;
  try {
    lower = await realpath(rootfsPath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new NodeFactError(
      `the seed's root ${rootfsPath} is not on this node: ${code ?? (err as Error).message} ` +
        `(seed ${seedKey}; the hypervisor-seed-fetcher of this node unpacks seeds under ${seedsDir})`,
      uuid,
      { cause: err },
    );
  }
  if (!isWithin(seedsReal, lower) || lower === seedsReal) {
    const via = lower === rootfsPath ? "" : ` (it resolves to ${lower})`;
    throw new NodeFactError(
      `the seed's root ${rootfsPath} is outside ${seedsDir}${via}: only the node's seeds can be a task's root`,
      uuid,
    );
  }
  if (!(await stat(lower)).isDirectory()) {
    throw new NodeFactError(`the seed's root ${rootfsPath} is not a directory`, uuid);
  }
  return lower;
}
