import { mkdir, realpath } from "node:fs/promises";
import { totalmem } from "node:os";
import { join } from "node:path";
import { readHardLimits } from "./host-limits.js";
import type { HardLimits } from "./host-limits.js";

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
}

/**
 * Gathers the node's facts once at start-up. Volume roots are created if missing (they
 * are the operator's configuration) and resolved, so a symlinked root still matches.
 */
export async function loadNodeFacts(o: NodeFactsOptions): Promise<NodeFacts> {
  const roots: string[] = [];
  for (const r of o.volumeRoots) {
    await mkdir(r, { recursive: true });
    roots.push(await realpath(r));
  }
  await mkdir(join(o.dataDir, "tasks"), { recursive: true });
  return Object.freeze({
    node: o.node,
    dataDir: o.dataDir,
    runDir: o.runDir,
    volumeRoots: Object.freeze(roots),
    memoryMiB: o.nodeMemoryMiB ?? Math.floor(totalmem() / 2 ** 20),
    memoryReserveMiB: o.memoryReserveMiB ?? 0,
    hardLimits: await readHardLimits(),
    vmmOverheadMiB: o.vmmOverheadMiB,
  });
}
