import { chmod, mkdir, realpath, stat } from "node:fs/promises";
import { totalmem } from "node:os";
import { readHardLimits } from "./host-limits.js";
import { isWithin } from "./host-paths.js";
import type { HardLimits } from "./host-limits.js";
import { NodeFactError } from "./errors.js";
import { isDeviceName } from "./policy.js";
import type { DeviceName, NodePolicy } from "./policy.js";
import { ensureTaskLogger } from "./task-log.js";
import type { TaskLogSettings } from "./task-log.js";
import { ensureTasksDir } from "./task-dirs.js";
import { nodeArch } from "./runtime-task.js";

/** What the executor knows of its node and applies to every task before creating it. */
export interface NodeFacts {
  /** This node's name (EVE_NODE): the executor acts only on apps for it. */
  readonly node: string;
  readonly dataDir: string;
  readonly runDir: string;
  /** EVE_VOLUME_ROOTS, each resolved with realpath. */
  readonly volumeRoots: readonly string[];
  /** The memory of the node (detected, or EVE_NODE_MEMORY_MIB). */
  readonly memoryMiB: number;
  /** EVE_MEMORY_RESERVE_MIB: kept for the system, never given to tasks. */
  readonly memoryReserveMiB: number;
  /** Hard rlimits runc can grant here. */
  readonly hardLimits: HardLimits;
  /** EVE_VMM_OVERHEAD_MIB: the anchor tax of VMs that do not set their own. */
  readonly vmmOverheadMiB?: number | undefined;
  /** What TaskConfigs may ask for on this node (EVE_ALLOW_HOST_ROOT, EVE_ALLOW_DEVICES). */
  readonly policy: NodePolicy;
  /** The task logger and its rotation (EVE_LOG_MAX_BYTES, EVE_LOG_FILES). */
  readonly taskLog: TaskLogSettings;
  /**
   * This node's architecture (`uname -m` spelling; default this machine's): a native app of
   * another runs under an emulator.
   */
  readonly arch?: string;
}

/** Inputs of {@link loadNodeFacts}, as the worker's config gives them. */
export interface NodeFactsOptions {
  node: string;
  dataDir: string;
  runDir: string;
  volumeRoots: readonly string[];
  nodeMemoryMiB?: number | undefined;
  memoryReserveMiB?: number | undefined;
  vmmOverheadMiB?: number | undefined;
  /** EVE_ALLOW_HOST_ROOT (the worker's config holds the default). */
  allowHostRoot: boolean;
  /** EVE_ALLOW_DEVICES: device names of `NODE_DEVICES`. */
  allowDevices: readonly string[];
  /** EVE_LOG_MAX_BYTES. */
  logMaxBytes: number;
  /** EVE_LOG_FILES. */
  logFiles: number;
  /** Told about volume roots that unprivileged host users can enter. */
  warn?: (message: string, fields: Record<string, unknown>) => void;
}

/** Mode of a volume root the executor creates: only root may enter. */
export const VOLUME_ROOT_MODE = 0o700;

/**
 * Gathers the node's facts once at start-up. Volume roots are created if missing (`0700`) and
 * resolved, so a symlinked root still matches. One inside the data dir (the default) is the
 * node's own and made `0700`; any other is the operator's: it keeps its mode, and a warning says
 * when others may enter it (a task running as root can leave setuid-root files in its volumes). `<dataDir>/tasks` is made `0711`. The task logger
 * is built if this node does not have it yet.
 *
 * @throws NodeFactError for an unknown device name or a logger that cannot be built.
 */
export async function loadNodeFacts(o: NodeFactsOptions): Promise<NodeFacts> {
  const devices: DeviceName[] = [];
  for (const name of o.allowDevices) {
    if (!isDeviceName(name)) {
      throw new NodeFactError(`EVE_ALLOW_DEVICES: unknown device ${JSON.stringify(name)} (known: kvm, tun)`);
    }
    devices.push(name);
  }
  const roots: string[] = [];
  await mkdir(o.dataDir, { recursive: true });
  const dataDir = await realpath(o.dataDir);
  for (const r of o.volumeRoots) {
    await mkdir(r, { recursive: true, mode: VOLUME_ROOT_MODE });
    const root = await realpath(r);
    let mode = (await stat(root)).mode & 0o777;
    // A root inside the data dir (the default, <EVE_DATA_DIR>/volumes) is the node's own.
    if ((mode & 0o077) !== 0 && isWithin(dataDir, root) && root !== dataDir) {
      await chmod(root, VOLUME_ROOT_MODE);
      mode = VOLUME_ROOT_MODE;
    }
    if ((mode & 0o011) !== 0) {
      o.warn?.(
        `volume root ${root} can be entered by host users other than root (mode ${mode.toString(8)}): a task can ` +
          `leave setuid-root files in its volumes; make it 0700`,
        { volumeRoot: root, mode: mode.toString(8) },
      );
    }
    roots.push(root);
  }
  await ensureTasksDir(o.dataDir);
  const loggerPath = await ensureTaskLogger(o.dataDir);
  return Object.freeze({
    node: o.node,
    dataDir: o.dataDir,
    runDir: o.runDir,
    volumeRoots: Object.freeze(roots),
    memoryMiB: o.nodeMemoryMiB ?? Math.floor(totalmem() / 2 ** 20),
    memoryReserveMiB: o.memoryReserveMiB ?? 0,
    hardLimits: await readHardLimits(),
    vmmOverheadMiB: o.vmmOverheadMiB,
    policy: Object.freeze({ allowHostRoot: o.allowHostRoot, devices: Object.freeze(devices) }),
    taskLog: Object.freeze({ loggerPath, maxBytes: o.logMaxBytes, files: o.logFiles }),
    arch: nodeArch(),
  });
}
