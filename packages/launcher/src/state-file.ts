/**
 * `<EVE_DATA_DIR>/launcher.json`: what the launcher started and owns (PIDs with their start
 * times), so tools and tests can see exactly what to expect, and a launcher that finds the file of
 * one that died can stop what it left behind.
 */
import { readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import type { ProcessRef } from "./proc.js";

/** Where a launcher is in its life. */
export type LauncherPhase = "starting" | "running" | "stopping" | "stopped";

/** A service (nats-server or containerd) the launcher uses. */
export interface ServiceRecord {
  /** False when it was given (NATS_URL / CONTAINERD_ADDRESS) and the launcher does not own it. */
  readonly startedByLauncher: boolean;
  /** Its process, when the launcher started it. */
  readonly process: ProcessRef | null;
  readonly logFile: string | null;
}

/** One worker. */
export interface WorkerRecord {
  readonly name: string;
  readonly main: string;
  readonly logFile: string;
  readonly state: string;
  /** The current process; null between runs. */
  readonly pid: number | null;
  readonly startTicks: number | null;
  readonly restarts: number;
  readonly startedAt: string | null;
  readonly lastExit: {
    readonly code: number | null;
    readonly signal: string | null;
    readonly at: string;
  } | null;
}

/** The content of launcher.json. */
export interface LauncherStateRecord {
  readonly schemaVersion: 1;
  readonly launcher: ProcessRef & { readonly startedAt: string; readonly phase: LauncherPhase };
  readonly keepTasks: boolean;
  readonly servicesDir: string;
  readonly dataDir: string;
  readonly runDir: string;
  readonly logDir: string;
  readonly nats: ServiceRecord & { readonly url: string | null; readonly storeDir: string | null };
  readonly containerd: ServiceRecord & { readonly address: string | null; readonly dir: string | null };
  readonly workers: Readonly<Record<string, WorkerRecord>>;
  /** Every live process the launcher owns, for tools: nats-server, containerd, workers. */
  readonly pids: readonly number[];
  readonly updatedAt: string;
}

/** The path of the state file in a data dir. */
export const stateFilePath = (dataDir: string): string => path.join(dataDir, "launcher.json");

/** Reads a state file; undefined when there is none or it is not readable JSON. */
export async function readStateFile(file: string): Promise<LauncherStateRecord | undefined> {
  try {
    const value = JSON.parse(await readFile(file, "utf8")) as LauncherStateRecord;
    return value.schemaVersion === 1 ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Writes the state file atomically (temp file + rename), one write at a time, the latest state winning. */
export class StateFileWriter {
  readonly #file: string;
  #queue: Promise<void> = Promise.resolve();
  #next: Promise<void> = Promise.resolve();
  #pending: (() => LauncherStateRecord) | undefined;

  constructor(file: string) {
    this.#file = file;
  }

  /** The file written. */
  get file(): string {
    return this.#file;
  }

  /** Schedules a write of what `snapshot` returns at write time; resolves once written, rejects if that write failed. */
  write(snapshot: () => LauncherStateRecord): Promise<void> {
    const queued = this.#pending !== undefined;
    this.#pending = snapshot;
    if (queued) return this.#next;
    this.#next = this.#queue.then(async () => {
      const take = this.#pending;
      this.#pending = undefined;
      if (take === undefined) return;
      const tmp = `${this.#file}.tmp`;
      await writeFile(tmp, JSON.stringify(take(), null, 2) + "\n");
      await rename(tmp, this.#file);
    });
    this.#queue = this.#next.catch(() => undefined);
    return this.#next;
  }
}
