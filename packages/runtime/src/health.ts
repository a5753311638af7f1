/**
 * Liveness like EVE's touch files: each worker process rewrites `<dir>/<worker>.<pid>.alive`
 * every few seconds; the launcher (or any tool) reads their age.
 */
import { mkdir, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";

/** The content of one liveness file. */
export interface Heartbeat {
  readonly pid: number;
  readonly worker: string;
  /** ISO time of the last write. */
  readonly at: string;
  /** What the worker says it is doing, e.g. `starting`, `running`, `stopping`. */
  readonly state: string;
  /** The URL of its Prometheus endpoint (`http://127.0.0.1:<port>/metrics`), when it serves one. */
  readonly metrics?: string;
}

/** A heartbeat as read back, with its file and age. */
export interface HeartbeatReading extends Heartbeat {
  readonly file: string;
  /** Milliseconds since `at`, when read. */
  readonly ageMs: number;
}

/** Options of {@link startHeartbeat}. */
export interface HeartbeatOptions {
  /** Directory of the liveness files; created when missing. */
  dir: string;
  worker: string;
  /** Default 5 000 ms. */
  intervalMs?: number;
  /** Initial state; default `starting`. */
  state?: string;
  /** The metrics endpoint's URL, written into every beat. */
  metrics?: string | undefined;
}

/** A running heartbeat. */
export interface HeartbeatHandle {
  /** The liveness file. */
  readonly file: string;
  /** Changes the reported state and writes at once. */
  setState(state: string): Promise<void>;
  /** Writes now. */
  beat(): Promise<void>;
  /** Stops beating and removes the file. */
  stop(): Promise<void>;
}

const suffix = ".alive";

/** Starts writing `<dir>/<worker>.<pid>.alive` now and every `intervalMs` (the timer does not hold the process open). */
export async function startHeartbeat(opts: HeartbeatOptions): Promise<HeartbeatHandle> {
  const file = path.join(opts.dir, `${opts.worker}.${process.pid}${suffix}`);
  let state = opts.state ?? "starting";
  let stopped = false;
  await mkdir(opts.dir, { recursive: true });
  const write = async (): Promise<void> => {
    if (stopped) return;
    const body: Heartbeat = {
      pid: process.pid,
      worker: opts.worker,
      at: new Date().toISOString(),
      state,
      ...(opts.metrics !== undefined ? { metrics: opts.metrics } : {}),
    };
    // Write then rename, so a reader never sees half a file.
    const tmp = `${file}.tmp`;
    await writeFile(tmp, JSON.stringify(body) + "\n");
    await rename(tmp, file);
  };
  // One write at a time: the timer and setState() share the temporary file.
  let queue: Promise<void> = Promise.resolve();
  const beat = (): Promise<void> => {
    const next = queue.then(write);
    queue = next.catch(() => undefined);
    return next;
  };
  await beat();
  const timer = setInterval(() => void beat().catch(() => undefined), opts.intervalMs ?? 5_000);
  timer.unref();
  return {
    file,
    beat,
    async setState(next) {
      state = next;
      await beat();
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      await queue;
      await rm(file, { force: true });
      await rm(`${file}.tmp`, { force: true });
    },
  };
}

/** Reads every liveness file in `dir` (none when it does not exist); unreadable files are skipped. */
export async function readHeartbeats(dir: string, now: number = Date.now()): Promise<HeartbeatReading[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const readings: HeartbeatReading[] = [];
  for (const name of names.filter((n) => n.endsWith(suffix))) {
    const file = path.join(dir, name);
    try {
      const hb = JSON.parse(await readFile(file, "utf8")) as Partial<Heartbeat>;
      if (typeof hb.pid !== "number" || typeof hb.worker !== "string" || typeof hb.at !== "string") continue;
      readings.push({
        pid: hb.pid,
        worker: hb.worker,
        at: hb.at,
        state: typeof hb.state === "string" ? hb.state : "unknown",
        ...(typeof hb.metrics === "string" ? { metrics: hb.metrics } : {}),
        file,
        ageMs: Math.max(0, now - Date.parse(hb.at)),
      });
    } catch {
      // Removed between readdir and read, or not JSON: not a heartbeat.
    }
  }
  return readings;
}
