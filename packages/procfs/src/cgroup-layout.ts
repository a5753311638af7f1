/**
 * Where a cgroup's files are: the host's cgroup layout (v2 unified, or v1 with one hierarchy per
 * controller) and the directories of one cgroup path in it.
 */
import { existsSync, readFileSync, statfsSync } from "node:fs";
import { posix } from "node:path";
import { CgroupLayoutError } from "./errors.js";
import { parseMountinfo } from "./mountinfo.js";
import type { MountInfo } from "./mountinfo.js";

/** The v1 controllers the proc-monitor reads. */
export const V1_CONTROLLERS = ["memory", "cpuacct", "pids"] as const;
/** A v1 controller the proc-monitor reads. */
export type V1Controller = (typeof V1_CONTROLLERS)[number];

/** A mounted cgroup hierarchy: where it is mounted and which cgroup is its root. */
export interface CgroupMount {
  mountPoint: string;
  /** The cgroup at the mount point (`/` unless the mount is of a sub-tree, e.g. in a cgroup namespace). */
  root: string;
}

/** The host's cgroup layout. */
export type CgroupLayout =
  | { version: 2; unified: CgroupMount }
  | { version: 1; controllers: Partial<Record<V1Controller, CgroupMount>> };

/** The directories of one cgroup, per kind of file read (all the same directory on v2). */
export interface CgroupDirs {
  version: 1 | 2;
  /** memory.* files; undefined when v1 has no memory hierarchy. */
  memory: string | undefined;
  /** cpuacct.usage (v1) or cpu.stat (v2). */
  cpu: string | undefined;
  /** pids.current. */
  pids: string | undefined;
  /** A directory whose thread list (v1 `tasks`, v2 `cgroup.threads`) counts threads when pids.current is missing. */
  threads: string | undefined;
}

/** Cgroup v2's filesystem magic (statfs f_type). */
const CGROUP2_SUPER_MAGIC = 0x63677270;

/**
 * The layout from mount entries: v2 when a cgroup2 filesystem is mounted at `cgroupRoot`
 * (`/sys/fs/cgroup`); else v1 with the hierarchies (`cgroup` mounts) of memory, cpuacct
 * (alone or as `cpu,cpuacct`) and pids. A hybrid host (v1 controllers plus a cgroup2 at
 * `/sys/fs/cgroup/unified` holding no controller) is v1. Returns undefined when neither is found.
 */
export function cgroupLayoutFromMounts(
  mounts: readonly MountInfo[],
  cgroupRoot = "/sys/fs/cgroup",
): CgroupLayout | undefined {
  const unifiedAtRoot = mounts.find((m) => m.fsType === "cgroup2" && m.mountPoint === cgroupRoot);
  if (unifiedAtRoot) return { version: 2, unified: { mountPoint: cgroupRoot, root: unifiedAtRoot.root } };
  const controllers: Partial<Record<V1Controller, CgroupMount>> = {};
  for (const m of mounts) {
    if (m.fsType !== "cgroup") continue;
    for (const c of V1_CONTROLLERS) {
      // The first mount of a hierarchy wins (a hierarchy may be bind-mounted again elsewhere).
      if (m.superOptions.includes(c) && !controllers[c]) {
        controllers[c] = { mountPoint: m.mountPoint, root: m.root };
      }
    }
  }
  if (Object.keys(controllers).length > 0) return { version: 1, controllers };
  // A cgroup2 mounted somewhere else, and no v1 controller: a v2 host with an unusual mount point.
  const unified = mounts.find((m) => m.fsType === "cgroup2");
  if (unified) return { version: 2, unified: { mountPoint: unified.mountPoint, root: unified.root } };
  return undefined;
}

/** Options of {@link detectCgroupLayout}. */
export interface DetectCgroupLayoutOptions {
  /** Default `/proc/self/mountinfo`. */
  mountinfoPath?: string;
  /** Where cgroups are mounted; default `/sys/fs/cgroup`. */
  cgroupRoot?: string;
}

/**
 * Finds the host's cgroup layout from mountinfo; when that has no cgroup mount (or cannot be
 * read), from `cgroupRoot` itself: a cgroup2 filesystem there is v2, else the v1 controller
 * directories under it (`memory`, `cpuacct` or `cpu,cpuacct`, `pids`) that exist.
 *
 * @throws {CgroupLayoutError} when neither way finds a cgroup.
 */
export function detectCgroupLayout(options: DetectCgroupLayoutOptions = {}): CgroupLayout {
  const mountinfoPath = options.mountinfoPath ?? "/proc/self/mountinfo";
  const cgroupRoot = options.cgroupRoot ?? "/sys/fs/cgroup";
  let mountinfoProblem = "no cgroup mount in it";
  try {
    const layout = cgroupLayoutFromMounts(
      parseMountinfo(readFileSync(mountinfoPath, "utf8"), mountinfoPath),
      cgroupRoot,
    );
    if (layout) return layout;
  } catch (err) {
    mountinfoProblem = (err as Error).message;
  }
  try {
    if (statfsSync(cgroupRoot).type === CGROUP2_SUPER_MAGIC) {
      return { version: 2, unified: { mountPoint: cgroupRoot, root: "/" } };
    }
  } catch {
    // Not there: looked at below, and reported if nothing else is found.
  }
  const controllers: Partial<Record<V1Controller, CgroupMount>> = {};
  const candidates: Record<V1Controller, string[]> = {
    memory: ["memory"],
    cpuacct: ["cpuacct", "cpu,cpuacct", "cpuacct,cpu"],
    pids: ["pids"],
  };
  for (const c of V1_CONTROLLERS) {
    const dir = candidates[c].map((d) => posix.join(cgroupRoot, d)).find((d) => existsSync(d));
    if (dir) controllers[c] = { mountPoint: dir, root: "/" };
  }
  if (Object.keys(controllers).length > 0) return { version: 1, controllers };
  throw new CgroupLayoutError(
    mountinfoPath,
    `${mountinfoProblem}; and ${cgroupRoot} is neither a cgroup2 mount nor holds v1 controller directories`,
  );
}

/** The directory of cgroup `path` (e.g. `/eve-user-apps/<uuid>`) in a mounted hierarchy. */
export function dirInMount(mount: CgroupMount, path: string): string {
  const root = mount.root === "/" ? "" : mount.root;
  // A mount of a sub-tree (cgroup namespace, bind of a sub-cgroup): paths below its root are
  // relative to it; anything else is taken as relative to the mount point too.
  const rel = root && (path === root || path.startsWith(`${root}/`)) ? path.slice(root.length) : path;
  return posix.join(mount.mountPoint, rel);
}

/** The directories of cgroup `path` in `layout`. */
export function cgroupDirsFor(layout: CgroupLayout, path: string): CgroupDirs {
  if (layout.version === 2) {
    const dir = dirInMount(layout.unified, path);
    return { version: 2, memory: dir, cpu: dir, pids: dir, threads: dir };
  }
  const at = (c: V1Controller): string | undefined => {
    const m = layout.controllers[c];
    return m ? dirInMount(m, path) : undefined;
  };
  const memory = at("memory");
  const cpu = at("cpuacct");
  const pids = at("pids");
  return { version: 1, memory, cpu, pids, threads: pids ?? memory ?? cpu };
}
