/**
 * What the status page shows, decided from what the bus said (pure: no I/O, no clock of its own).
 * The collector keeps the raw values; these functions turn them into the rows the browser
 * renders, and {@link diffRows} into the patches sent to it.
 */
import type {
  AppInstanceConfig,
  NetworkInstanceStatus,
  Seed,
  TaskEvent,
  TaskMetrics,
  TaskStatus,
} from "@eve-tasks/schemas";

/** How many recent events of an app the page keeps and shows. */
export const EVENTS_PER_APP = 5;

/** The workers every node runs, in the order the page lists them (services `eve-tasks-<worker>`). */
export const PAGE_WORKERS = [
  "spec-builder",
  "task-executor",
  "proc-monitor",
  "hypervisor-seed-fetcher",
] as const;

/** The NATS service name of worker `worker` (DESIGN "Operator surface"). */
export function serviceNameOf(worker: string): string {
  return `eve-tasks-${worker}`;
}

/** The worker a NATS service name belongs to, or undefined for a service that is not one of ours. */
export function workerOfService(serviceName: string): string | undefined {
  return serviceName.startsWith("eve-tasks-") && serviceName.length > "eve-tasks-".length
    ? serviceName.slice("eve-tasks-".length)
    : undefined;
}

/** One recent event, as shown under its app. */
export interface EventLine {
  readonly time: string;
  readonly type: string;
  readonly message: string;
}

/** One interface address of an app. */
export interface AddressLine {
  readonly name: string;
  readonly network: string;
  readonly ip: string;
  readonly mac: string;
}

/** One row of the apps table, keyed by the app's uuid. */
export interface AppRow {
  readonly uuid: string;
  /** displayName from the config; null when there is no (valid) config. */
  readonly name: string | null;
  readonly node: string | null;
  /** `container`, `vm` or `runtime <tools>`; null without a config. */
  readonly kind: string | null;
  readonly activate: boolean | null;
  /** TaskStatus.state; null before the executor wrote one. */
  readonly state: string | null;
  readonly waitingFor: string | null;
  readonly taskId: number | null;
  readonly restarts: number | null;
  /** memory.current of the task's cgroup (TaskMetrics), when measured and of the current task. */
  readonly memoryUsedBytes: number | null;
  /** The cgroup's limit: TaskMetrics' when measured, else TaskStatus'. */
  readonly memoryLimitBytes: number | null;
  readonly addresses: readonly AddressLine[];
  readonly error: string | null;
  readonly startedAt: string | null;
  readonly updatedAt: string | null;
  readonly events: readonly EventLine[];
}

/** A worker process the launcher supervises on this node (what `npm start` shows). */
export interface LocalWorker {
  /** The worker's name (`spec-builder`...). */
  readonly name: string;
  readonly pid: number | null;
  /** The supervisor's state: `running`, `backing-off`, `restarting`, `stopping`, `stopped`... */
  readonly state: string;
  readonly restarts: number;
  /** Age of its liveness file, when there is one. */
  readonly heartbeatAgeMs: number | null;
  /** The heartbeat is older than the launcher's stale limit. */
  readonly heartbeatStale: boolean;
}

/** One instance of a worker's NATS service, from `$SRV.INFO`. */
export interface ServiceInstance {
  /** The service name, `eve-tasks-<worker>`. */
  readonly name: string;
  readonly id: string;
  readonly version: string;
  /** From the metadata; null when missing. */
  readonly node: string | null;
  /** The Prometheus endpoint from the metadata; null when missing or not an http(s) URL. */
  readonly metricsUrl: string | null;
}

/** One row of the workers table, keyed by the worker's name. */
export interface WorkerRow {
  readonly name: string;
  /** Instances answering `$SRV.INFO` as `eve-tasks-<name>`; null when no service info at all. */
  readonly replicas: number | null;
  /** Processes the launcher runs on this node; null when the page has no launcher behind it. */
  readonly localProcesses: number | null;
  readonly health: "ok" | "degraded" | "down" | "unknown";
  /** What the health is made of, for a human. */
  readonly healthText: string;
  readonly restarts: number | null;
  readonly pids: readonly number[];
  readonly instances: readonly ServiceInstance[];
}

/** One row of the seeds table, keyed by `<Type>.<key>`. */
export interface SeedRow {
  readonly key: string;
  readonly kind: "hypervisor tools" | "image";
  readonly node: string;
  readonly ref: string;
  readonly state: string;
  readonly platform: string | null;
  readonly doneBytes: number | null;
  readonly totalBytes: number | null;
  readonly error: string | null;
}

/** One row of the network instances table, keyed by `<node>.<name>`. */
export interface NetworkRow {
  readonly key: string;
  readonly name: string;
  readonly node: string;
  readonly state: string;
  readonly bridge: string | null;
  readonly subnet: string;
  readonly gateway: string;
  readonly apps: number;
  readonly error: string | null;
}

/** The page's header: where it reads from and whether it can. */
export interface MetaRow {
  readonly node: string;
  readonly nats: string;
  readonly natsUser: string | null;
  readonly connected: boolean;
  /** Why the last `$SRV` poll found nothing, or null. */
  readonly serviceNote: string | null;
  readonly servicesPolledAt: string | null;
  readonly startedAt: string;
}

/** The page's tables. */
export interface Sections {
  meta: MetaRow;
  apps: AppRow;
  workers: WorkerRow;
  seeds: SeedRow;
  networks: NetworkRow;
}

/** A table's name. */
export type SectionName = keyof Sections;

/** The order sections are sent in. */
export const SECTION_NAMES: readonly SectionName[] = ["meta", "apps", "workers", "seeds", "networks"];

/** A change of one row: its new value, or null when it is gone. */
export interface Patch<K extends SectionName = SectionName> {
  readonly section: K;
  readonly key: string;
  readonly row: Sections[K] | null;
}

/** What the browser gets on connect: every row of every table. */
export type Snapshot = { [K in SectionName]: Record<string, Sections[K]> };

const kindOf = (c: AppInstanceConfig): string => {
  // `runtime` (contract v2, "Runtimes are images") is read when present, whatever the schema version.
  const tools = (c as { runtime?: { tools?: unknown } }).runtime?.tools;
  if (typeof tools === "string") return `runtime ${tools}`;
  return c.virtualization === "HVM" ? "vm" : "container";
};

/**
 * The apps row of `uuid` from what is known of it; null when neither a config nor a status is
 * there (the app is gone). Metrics count only when they are of the status's current task.
 */
export function appRow(
  uuid: string,
  config: AppInstanceConfig | undefined,
  status: TaskStatus | undefined,
  metrics: TaskMetrics | undefined,
  events: readonly EventLine[],
): AppRow | null {
  if (config === undefined && status === undefined) return null;
  const current =
    metrics !== undefined && status !== undefined && status.taskId > 0 && metrics.taskId === status.taskId;
  const used = current ? metrics.memoryUsageBytes : null;
  const limit = (current ? metrics.memoryLimitBytes : null) ?? status?.memoryLimitBytes ?? null;
  return {
    uuid,
    name: config?.displayName ? config.displayName : null,
    node: config?.node ?? status?.node ?? null,
    kind: config === undefined ? null : kindOf(config),
    activate: config?.activate ?? null,
    state: status?.state ?? null,
    waitingFor: status?.waitingFor ?? null,
    taskId: status?.taskId ?? null,
    restarts: status?.restarts ?? null,
    memoryUsedBytes: used,
    memoryLimitBytes: limit,
    addresses: (status?.interfaces ?? []).map((i) => ({
      name: i.name,
      network: i.network,
      ip: i.ip,
      mac: i.mac,
    })),
    error: status?.error ? `${status.error.source}: ${status.error.message}` : null,
    startedAt: status?.startedAt ?? null,
    updatedAt: status?.updatedAt ?? null,
    events: [...events],
  };
}

/** `events` with `event` added, newest last, at most {@link EVENTS_PER_APP}, in time order. */
export function withEvent(events: readonly EventLine[], event: TaskEvent): EventLine[] {
  const line: EventLine = { time: event.time, type: event.type, message: event.message };
  const all = [...events, line].sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
  return all.slice(-EVENTS_PER_APP);
}

/** The seeds row of a `HypervisorSeed` or `ImageSeed` value at `key` (`<node>.<name>`). */
export function seedRow(type: "HypervisorSeed" | "ImageSeed", key: string, seed: Seed): SeedRow {
  const dot = key.indexOf(".");
  return {
    key: `${type}.${key}`,
    kind: type === "HypervisorSeed" ? "hypervisor tools" : "image",
    node: dot > 0 ? key.slice(0, dot) : key,
    ref: seed.ref,
    state: seed.state,
    platform: seed.platform,
    doneBytes: seed.progress?.doneBytes ?? null,
    totalBytes: seed.progress?.totalBytes ?? null,
    error: seed.error?.message ?? null,
  };
}

/** The network instances row of a NetworkInstanceStatus at `key` (`<node>.<name>`). */
export function networkRow(key: string, n: NetworkInstanceStatus): NetworkRow {
  return {
    key,
    name: n.name,
    node: n.node,
    state: n.state,
    bridge: n.bridge,
    subnet: n.subnet,
    gateway: n.gateway,
    apps: n.apps.length,
    error: n.error ? n.error.message : null,
  };
}

/** A metrics URL worth a link: http or https only (a `javascript:` URL from the bus is not). */
export function safeHttpUrl(value: unknown): string | null {
  if (typeof value !== "string" || value.length > 2048) return null;
  try {
    const u = new URL(value);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch {
    return null;
  }
}

/** The instance of a `$SRV.INFO` reply, or undefined when it is not a usable one. */
export function serviceInstanceOf(info: unknown): ServiceInstance | undefined {
  if (typeof info !== "object" || info === null) return undefined;
  const i = info as { name?: unknown; id?: unknown; version?: unknown; metadata?: unknown };
  if (typeof i.name !== "string" || typeof i.id !== "string") return undefined;
  const meta =
    typeof i.metadata === "object" && i.metadata !== null ? (i.metadata as Record<string, unknown>) : {};
  return {
    name: i.name,
    id: i.id,
    version: typeof i.version === "string" ? i.version : "",
    node: typeof meta.node === "string" ? meta.node : null,
    metricsUrl: safeHttpUrl(meta.metrics),
  };
}

/**
 * The workers table: every worker the launcher runs or a service answers for. `services` is
 * undefined when no `$SRV` answer was had at all (no worker offers a service yet, or the poll
 * failed): then "no service info", and health is the launcher's alone.
 *
 * Health: `down` when a worker has no live process and no service instance; `degraded` when a
 * process is not running or its heartbeat is stale, or a running process answers no `$SRV`
 * while services are otherwise seen; `ok` otherwise; `unknown` with neither source.
 */
export function workerRows(
  local: readonly LocalWorker[] | undefined,
  services: readonly ServiceInstance[] | undefined,
): WorkerRow[] {
  const names = new Set<string>(PAGE_WORKERS);
  for (const w of local ?? []) names.add(w.name);
  for (const s of services ?? []) {
    const w = workerOfService(s.name);
    if (w !== undefined) names.add(w);
  }
  const rows: WorkerRow[] = [];
  for (const name of names) {
    const procs = local?.filter((w) => w.name === name);
    const instances = services
      ?.filter((s) => s.name === serviceNameOf(name))
      .sort((a, b) => `${a.node ?? ""}/${a.id}`.localeCompare(`${b.node ?? ""}/${b.id}`));
    if (local !== undefined && procs?.length === 0 && (instances?.length ?? 0) === 0) {
      // Not run here and not heard of anywhere: a known worker that is not built, say.
      if (!(PAGE_WORKERS as readonly string[]).includes(name)) continue;
    }
    const running = procs?.filter((p) => p.state === "running") ?? [];
    const stale = running.filter((p) => p.heartbeatStale);
    const notes: string[] = [];
    let health: WorkerRow["health"];
    if (procs === undefined && instances === undefined) {
      health = "unknown";
      notes.push("no launcher and no service info");
    } else {
      const live = running.length + (procs === undefined ? (instances?.length ?? 0) : 0);
      if (procs !== undefined) {
        notes.push(`${running.length}/${procs.length} running here`);
        for (const p of procs.filter((p) => p.state !== "running"))
          notes.push(`pid ${p.pid ?? "-"} ${p.state}`);
        if (stale.length > 0) notes.push(`${stale.length} heartbeat(s) stale`);
      }
      if (instances === undefined) notes.push("no service info");
      else notes.push(`${instances.length} answering $SRV`);
      if (live === 0 && (instances?.length ?? 0) === 0) health = "down";
      else if (
        (procs !== undefined && (running.length < procs.length || stale.length > 0)) ||
        (procs !== undefined && instances !== undefined && running.length > 0 && instances.length === 0)
      )
        health = "degraded";
      else health = "ok";
    }
    rows.push({
      name,
      replicas: instances === undefined ? null : instances.length,
      localProcesses: procs === undefined ? null : procs.length,
      health,
      healthText: notes.join("; "),
      restarts: procs === undefined ? null : procs.reduce((n, p) => n + p.restarts, 0),
      pids: (procs ?? []).flatMap((p) => (p.pid === null ? [] : [p.pid])),
      instances: instances ?? [],
    });
  }
  return rows;
}

/** A canonical text of a row, to tell whether it changed since it was last sent. */
export function rowText(row: unknown): string {
  return JSON.stringify(row);
}

/**
 * The patches that turn what was last sent (`sent`: key → {@link rowText}) into `rows`, for the
 * keys in `keys` (all of `rows` and `sent` when omitted); updates `sent` to match.
 */
export function diffRows<K extends SectionName>(
  section: K,
  sent: Map<string, string>,
  rows: ReadonlyMap<string, Sections[K] | null>,
  keys?: Iterable<string>,
): Patch<K>[] {
  const patches: Patch<K>[] = [];
  const todo = keys === undefined ? new Set([...sent.keys(), ...rows.keys()]) : new Set(keys);
  for (const key of todo) {
    const row = rows.get(key) ?? null;
    if (row === null) {
      if (sent.delete(key)) patches.push({ section, key, row: null });
      continue;
    }
    const text = rowText(row);
    if (sent.get(key) === text) continue;
    sent.set(key, text);
    patches.push({ section, key, row });
  }
  return patches;
}
