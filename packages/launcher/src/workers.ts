/** Which workers exist: `<servicesDir>/<name>/dist/main.js`. */
import { access, readdir } from "node:fs/promises";
import path from "node:path";

/** The project's workers, in start order. */
export const KNOWN_WORKERS = [
  "spec-builder",
  "task-executor",
  "proc-monitor",
  "hypervisor-seed-fetcher",
] as const;

/**
 * Node options per worker. The proc-monitor publishes a sample per task per interval, and with
 * V8's default young generation (16 MiB semi-spaces) that churn alone kept it above its 80 MB
 * memory target (92 MB measured with 200 tasks); 2 MiB semi-spaces hold it at 73 MB with the same
 * CPU (test/bench/README.md). deploy/systemd's unit passes the same option.
 */
export const WORKER_NODE_OPTIONS: Readonly<Record<string, readonly string[]>> = {
  "proc-monitor": ["--max-semi-space-size=2"],
};

/**
 * The glibc malloc setting every Node process of the node runs with (GLIBC_TUNABLES): `npm start`
 * gives it to the launcher, the launcher to its workers, deploy/systemd's units to theirs. glibc
 * raises its mmap threshold each time a large block is freed (up to 32 MiB); larger buffers then
 * come from the heap, and stay there once freed. A launcher that had built the runtime images kept
 * ~60 MB it no longer used, an executor that had started 500 tasks tens of MB. A fixed threshold
 * (glibc's initial 128 KiB) hands such buffers back to the kernel when they are freed.
 */
export const MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=131072";

/** GLIBC_TUNABLES with {@link MALLOC_TUNABLES} added, unless `current` sets the threshold itself. */
export function withMallocTunables(current: string | undefined): string {
  if (current === undefined || current === "") return MALLOC_TUNABLES;
  if (/(^|:)glibc\.malloc\.mmap_threshold=/.test(current)) return current;
  return `${current}:${MALLOC_TUNABLES}`;
}

/** The node options worker `name` runs with. */
export function workerNodeOptions(name: string): readonly string[] {
  return WORKER_NODE_OPTIONS[name] ?? [];
}

/** A worker found on disk. */
export interface WorkerEntry {
  readonly name: string;
  /** Its entry point. */
  readonly main: string;
}

/** What {@link discoverWorkers} found. */
export interface Discovery {
  readonly workers: readonly WorkerEntry[];
  /** Known workers with no `dist/main.js` (not written or not built yet). */
  readonly missing: readonly string[];
}

const exists = async (file: string): Promise<boolean> =>
  access(file).then(
    () => true,
    () => false,
  );

/**
 * Every folder of `servicesDir` with a `dist/main.js` is a worker: the known ones first in their
 * order, then any others by name.
 */
export async function discoverWorkers(servicesDir: string): Promise<Discovery> {
  let names: string[] = [];
  try {
    names = (await readdir(servicesDir, { withFileTypes: true }))
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const known: readonly string[] = KNOWN_WORKERS;
  const ordered = [...known, ...names.filter((n) => !known.includes(n)).sort()];
  const workers: WorkerEntry[] = [];
  const missing: string[] = [];
  for (const name of ordered) {
    const main = path.join(servicesDir, name, "dist", "main.js");
    if (await exists(main)) workers.push({ name, main });
    else if (known.includes(name)) missing.push(name);
  }
  return { workers, missing };
}

/** One process the launcher supervises: a replica of a worker. */
export interface WorkerProcessEntry extends WorkerEntry {
  /** The worker (its NATS user, its node options): `spec-builder`. */
  readonly worker: string;
  /** 1-based; the first replica keeps the worker's name, the others are `<worker>-<n>`. */
  readonly replica: number;
}

/**
 * The processes to run: every discovered worker `replicas.get(name) ?? 1` times, in the
 * discovered order. A worker named in `replicas` but not found is returned in `unknown`.
 */
export function planWorkerProcesses(
  workers: readonly WorkerEntry[],
  replicas: ReadonlyMap<string, number>,
): { processes: WorkerProcessEntry[]; unknown: string[] } {
  const processes: WorkerProcessEntry[] = [];
  for (const w of workers) {
    const n = replicas.get(w.name) ?? 1;
    for (let r = 1; r <= n; r++) {
      processes.push({ name: r === 1 ? w.name : `${w.name}-${r}`, main: w.main, worker: w.name, replica: r });
    }
  }
  const unknown = [...replicas.keys()].filter((k) => !workers.some((w) => w.name === k));
  return { processes, unknown };
}
