/** One task's usage: its anchor process (by PID and start ticks) plus its cgroup. */
import { AnchorReader } from "./anchor.js";
import type { AnchorReading } from "./anchor.js";
import { cgroupDirsFor } from "./cgroup-layout.js";
import type { CgroupLayout } from "./cgroup-layout.js";
import { CgroupReader, SAMPLE_FIELDS } from "./cgroup-reader.js";
import type { SampleField } from "./cgroup-reader.js";

/** Options of {@link TaskSampler}. */
export interface TaskSamplerOptions {
  /** The anchor PID (the task's ID). */
  pid: number;
  /** Field 22 of the anchor's /proc/<pid>/stat when it was started; null skips the PID-reuse check. */
  anchorStartTicks: number | null;
  /** The task's cgroup, e.g. `/eve-user-apps/<uuid>`. */
  cgroupsPath: string;
  /** The host's cgroup layout (see detectCgroupLayout). */
  layout: CgroupLayout;
  /** Default `/proc`; tests point it at a fixture tree. */
  procRoot?: string;
  /** Clock; default `new Date()`. */
  now?: () => Date;
}

/** One sample of a task. */
export interface TaskSample {
  pid: number;
  sampledAt: Date;
  /** The anchor: alive (with its status), or gone and why. */
  anchor: AnchorReading;
  /** Every field: the value read, null when not read (or read as "no limit"). */
  values: Record<SampleField, number | null>;
  /** The fields really read in this sample, in SAMPLE_FIELDS order (a read "no limit" is listed, as null). */
  measured: SampleField[];
  /** Files that exist but could not be parsed. */
  problems: string[];
}

/**
 * Samples one task, cheaply: every file is opened once and read with a positional read per sample.
 * rssBytes is the anchor's resident set (statm); every other value is the cgroup's. Call close() when done.
 */
export class TaskSampler {
  readonly pid: number;
  readonly anchorStartTicks: number | null;
  readonly cgroupsPath: string;
  readonly #anchor: AnchorReader;
  readonly #cgroup: CgroupReader;
  readonly #now: () => Date;

  constructor(options: TaskSamplerOptions) {
    this.pid = options.pid;
    this.anchorStartTicks = options.anchorStartTicks;
    this.cgroupsPath = options.cgroupsPath;
    this.#anchor = new AnchorReader(options.pid, options.anchorStartTicks, options.procRoot);
    this.#cgroup = new CgroupReader(cgroupDirsFor(options.layout, options.cgroupsPath));
    this.#now = options.now ?? (() => new Date());
  }

  /** Looks at the anchor only (e.g. a last look before sampling stops). */
  anchor(): AnchorReading {
    return this.#anchor.read();
  }

  /** Reads the anchor and the cgroup once. */
  sample(): TaskSample {
    const sampledAt = this.#now();
    const anchor = this.#anchor.read();
    const cgroup = this.#cgroup.read();
    const values = {} as Record<SampleField, number | null>;
    const measured: SampleField[] = [];
    for (const field of SAMPLE_FIELDS) {
      const v = field === "rssBytes" ? (anchor.alive ? anchor.rssBytes : undefined) : cgroup.values[field];
      values[field] = v ?? null;
      if (v !== undefined) measured.push(field);
    }
    return { pid: this.pid, sampledAt, anchor, values, measured, problems: cgroup.problems };
  }

  /** Releases every handle. Idempotent. */
  close(): void {
    this.#anchor.close();
    this.#cgroup.close();
  }
}
