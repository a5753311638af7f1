/**
 * Follows what the page shows: the app configs, task statuses and metrics, seeds and network
 * instances (KV watches), the recent task events (the TASK_EVENTS stream), and who answers
 * `$SRV.INFO`; keeps the rows current and hands out the rows that changed, at most every
 * {@link FLUSH_INTERVAL_MS}.
 *
 * TaskMetrics change for every task every interval, so they are followed only while someone
 * looks (a browser's stream, a `/state.json` read) and {@link METRICS_LINGER_MS} after: a node
 * with hundreds of tasks and no browser open does not decode them all the time. The periodic work
 * (flushing rows, asking `$SRV.INFO`, looking at the launcher's workers) runs in the same window
 * only, so an unwatched page wakes neither the launcher nor, with its `$SRV.INFO` requests, the
 * workers. Rows are not built while no stream listens; the changes wait in the dirty sets.
 */
import { readEvents, subscribe } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import {
  AppInstanceConfigSchema,
  NetworkInstanceStatusSchema,
  SeedSchema,
  TaskMetricsSchema,
  TaskStatusSchema,
} from "@eve-tasks/schemas";
import type {
  AppInstanceConfig,
  NetworkInstanceStatus,
  Seed,
  TaskMetrics,
  TaskStatus,
} from "@eve-tasks/schemas";
import type { Logger } from "pino";
import type { z } from "zod";
import { SECTION_NAMES, appRow, diffRows, networkRow, seedRow, withEvent, workerRows } from "./model.js";
import type {
  EventLine,
  LocalWorker,
  MetaRow,
  Patch,
  SectionName,
  Sections,
  ServiceInstance,
  Snapshot,
} from "./model.js";
import { pollServices } from "./services.js";
import type { ServicePoll } from "./services.js";

/** Changes reach browsers at most this often (a burst of metrics is one patch). */
export const FLUSH_INTERVAL_MS = 200;
/** How often `$SRV.INFO` is asked. */
export const SERVICE_POLL_INTERVAL_MS = 5_000;
/** Stream sequences read back at start for the apps' recent events. */
export const RECENT_EVENTS = 1_000;
/** Events of an app the page knows nothing else of are dropped after this long. */
export const ORPHAN_EVENTS_MS = 60_000;
/** TaskMetrics and the periodic work go on this long after the last browser left or the last look. */
export const METRICS_LINGER_MS = 60_000;

/** Options of {@link StatusCollector.warm}. */
export interface WarmOptions {
  /**
   * Also wait for fresh `$SRV.INFO` answers when the last ones are older than two poll intervals
   * (up to the poll's window): for a one-off read such as `/state.json`. A browser's stream does
   * not wait; the answers follow as a patch.
   */
  readonly freshServices?: boolean;
}

/** What the collector reads and from where. */
export interface CollectorOptions {
  readonly bus: Bus;
  readonly logger: Logger;
  /** The node the page belongs to (shown in its header). */
  readonly node: string;
  /** The NATS URL, without credentials (shown in its header). */
  readonly natsUrl: string;
  readonly natsUser: string | null;
  /** The launcher's worker processes; none when the page runs without a launcher. */
  readonly localWorkers?: () => readonly LocalWorker[];
  /** Default {@link pollServices} over the bus's connection. */
  readonly pollServices?: () => Promise<ServicePoll>;
  readonly servicePollIntervalMs?: number;
  readonly flushIntervalMs?: number;
  /** Default {@link METRICS_LINGER_MS}. */
  readonly metricsLingerMs?: number;
}

type Sent = { [K in SectionName]: Map<string, string> };

/** A table being followed. */
interface Followed {
  readonly synchronized: Promise<void>;
  close(): Promise<void>;
}

/** Keeps the page's rows; {@link StatusCollector.open} starts it. */
export class StatusCollector {
  readonly #o: CollectorOptions;
  readonly #configs = new Map<string, AppInstanceConfig>();
  readonly #statuses = new Map<string, TaskStatus>();
  readonly #metrics = new Map<string, TaskMetrics>();
  readonly #events = new Map<string, { lines: EventLine[]; at: number }>();
  readonly #seeds = new Map<string, { type: "HypervisorSeed" | "ImageSeed"; key: string; seed: Seed }>();
  readonly #networks = new Map<string, NetworkInstanceStatus>();
  #services: ServicePoll | undefined;
  #servicesPolledAt: string | null = null;
  readonly #startedAt = new Date().toISOString();
  readonly #subs: Followed[] = [];
  readonly #abort = new AbortController();
  readonly #dirtyApps = new Set<string>();
  readonly #dirty = new Set<SectionName>();
  readonly #sent: Sent = {
    meta: new Map(),
    apps: new Map(),
    workers: new Map(),
    seeds: new Map(),
    networks: new Map(),
  };
  readonly #listeners = new Set<(patches: Patch[]) => void>();
  #timers: NodeJS.Timeout[] = [];
  /** The TaskMetrics watch while someone looks (see the module's comment). */
  #metricsWatch: Promise<Followed> | undefined;
  #metricsLinger: NodeJS.Timeout | undefined;
  #eventsDone: Promise<void> = Promise.resolve();
  #polling: Promise<void> = Promise.resolve();
  #polledAtMs = 0;
  #sweptAtMs = Date.now();

  private constructor(o: CollectorOptions) {
    this.#o = o;
  }

  /** Subscribes to everything, waits for the tables' current state, then follows changes. */
  static async open(o: CollectorOptions): Promise<StatusCollector> {
    const c = new StatusCollector(o);
    try {
      await c.#start();
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  async #start(): Promise<void> {
    const { bus } = this.#o;
    const app = (uuid: string): void => this.#appChanged(uuid);
    const table = this.#table.bind(this);
    const subs = await Promise.all([
      table(
        "controller",
        "AppInstanceConfig",
        AppInstanceConfigSchema,
        (k, v: AppInstanceConfig) => void (this.#configs.set(k, v), app(k)),
        (k) => void (this.#configs.delete(k), app(k)),
      ),
      table(
        "task-executor",
        "TaskStatus",
        TaskStatusSchema,
        (k, v: TaskStatus) => void (this.#statuses.set(k, v), app(k)),
        (k) => void (this.#statuses.delete(k), app(k)),
      ),
      ...(["HypervisorSeed", "ImageSeed"] as const).map((type) =>
        table(
          "hypervisor-seed-fetcher",
          type,
          SeedSchema,
          (k, v: Seed) =>
            void (this.#seeds.set(`${type}.${k}`, { type, key: k, seed: v }), this.#dirty.add("seeds")),
          (k) => void (this.#seeds.delete(`${type}.${k}`), this.#dirty.add("seeds")),
        ),
      ),
      table(
        "task-executor",
        "NetworkInstanceStatus",
        NetworkInstanceStatusSchema,
        (k, v: NetworkInstanceStatus) => void (this.#networks.set(k, v), this.#dirty.add("networks")),
        (k) => void (this.#networks.delete(k), this.#dirty.add("networks")),
      ),
    ]);
    this.#subs.push(...subs);
    await Promise.all(subs.map((s) => s.synchronized));
    this.#eventsDone = this.#followEvents();
    this.#dirty.add("meta");
    this.#dirty.add("workers");
    const status = bus.nc.status();
    void (async () => {
      for await (const s of status) {
        if (s.type === "disconnect" || s.type === "reconnect") {
          this.#disconnected = s.type === "disconnect";
          this.#dirty.add("meta");
        }
      }
    })().catch(() => undefined);
  }

  /**
   * Starts the periodic work if it is not running; resolves once the workers table is current
   * (at once, unless its last `$SRV.INFO` answers are older than two poll intervals). Never
   * rejects.
   */
  #wake(): Promise<void> {
    const pollMs = this.#o.servicePollIntervalMs ?? SERVICE_POLL_INTERVAL_MS;
    if (this.#timers.length === 0) {
      this.#timers.push(setInterval(() => this.#flush(), this.#o.flushIntervalMs ?? FLUSH_INTERVAL_MS));
      this.#timers.push(setInterval(() => this.#pollNext(), pollMs));
      // The launcher's view of its workers changes without telling: look every second.
      this.#timers.push(setInterval(() => this.#dirty.add("workers"), 1_000));
      for (const t of this.#timers) t.unref();
      this.#dirty.add("workers");
      if (Date.now() - this.#polledAtMs > pollMs) this.#pollNext();
    }
    return Date.now() - this.#polledAtMs > 2 * pollMs ? this.#polling : Promise.resolve();
  }

  /** Queues a poll after the one in flight; a failed poll is logged and the next one still runs. */
  #pollNext(): void {
    this.#polling = this.#polling
      .then(() => this.#poll())
      .catch((err: unknown) => this.#o.logger.warn({ err }, "status page: asking $SRV.INFO failed"));
  }

  /** Stops the periodic work (nobody looks). */
  #sleep(): void {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
  }

  #appChanged(uuid: string): void {
    this.#dirtyApps.add(uuid);
    this.#dirty.add("apps");
  }

  #table<S extends z.ZodType>(
    agent: string,
    type: string,
    schema: S,
    set: (key: string, value: z.infer<S>) => void,
    remove: (key: string) => void,
  ): Promise<Followed> {
    return subscribe(this.#o.bus, {
      agent,
      type,
      schema,
      onCreate: (k, v) => set(k, v),
      onModify: (k, v) => set(k, v),
      onDelete: (k) => remove(k),
      onInvalid: (i) => this.#o.logger.debug({ type, key: i.key, reason: i.reason }, i.message),
    });
  }

  /**
   * Makes the rows complete: follows TaskMetrics (if not yet) and starts the periodic work, and
   * resolves once the metrics' current values are in (and fresh `$SRV.INFO` answers, with
   * `freshServices`). Call before {@link snapshot} when someone is about to look. Both go on
   * until {@link METRICS_LINGER_MS} after the last look, or as long as a stream listens.
   */
  async warm(options: WarmOptions = {}): Promise<void> {
    if (this.#abort.signal.aborted) return;
    this.#linger();
    const polled = this.#wake();
    this.#metricsWatch ??= this.#table(
      "proc-monitor",
      "TaskMetrics",
      TaskMetricsSchema,
      (k, v: TaskMetrics) => void (this.#metrics.set(k, v), this.#appChanged(k)),
      (k) => void (this.#metrics.delete(k), this.#appChanged(k)),
    ).catch((err: unknown) => {
      this.#metricsWatch = undefined;
      throw err;
    });
    const watch = await this.#metricsWatch;
    await Promise.all([watch.synchronized, options.freshServices === true ? polled : undefined]);
  }

  /**
   * (Re)arms the end of the TaskMetrics watch and of the periodic work; they end only with no
   * stream listening.
   */
  #linger(): void {
    if (this.#metricsLinger) clearTimeout(this.#metricsLinger);
    this.#metricsLinger = setTimeout(() => {
      this.#metricsLinger = undefined;
      if (this.#listeners.size > 0) return;
      this.#sleep();
      const watch = this.#metricsWatch;
      this.#metricsWatch = undefined;
      void (async () => {
        // Cleared once the watch has stopped, so no late delivery refills it.
        await watch?.then((w) => w.close()).catch(() => undefined);
        if (this.#metricsWatch !== undefined) return; // someone looks again: the new watch refills it
        for (const uuid of this.#metrics.keys()) this.#appChanged(uuid);
        this.#metrics.clear();
      })();
    }, this.#o.metricsLingerMs ?? METRICS_LINGER_MS);
    this.#metricsLinger.unref();
  }

  async #followEvents(): Promise<void> {
    const { bus, logger } = this.#o;
    for (let attempt = 0; !this.#abort.signal.aborted; attempt++) {
      try {
        for await (const { event } of readEvents(bus, {
          recent: RECENT_EVENTS,
          follow: true,
          signal: this.#abort.signal,
        })) {
          const known = this.#events.get(event.uuid);
          this.#events.set(event.uuid, { lines: withEvent(known?.lines ?? [], event), at: Date.now() });
          this.#dirtyApps.add(event.uuid);
          this.#dirty.add("apps");
          this.#sweepOrphanEvents();
        }
        return;
      } catch (err) {
        if (this.#abort.signal.aborted) return;
        logger.warn({ err, attempt }, "reading task events failed; trying again");
        await new Promise((r) => setTimeout(r, Math.min(30_000, 1_000 * 2 ** Math.min(attempt, 5))));
      }
    }
  }

  async #poll(): Promise<void> {
    if (this.#abort.signal.aborted) return;
    const poll = this.#o.pollServices ?? (() => pollServices(this.#o.bus.nc));
    this.#services = await poll();
    this.#polledAtMs = Date.now();
    this.#servicesPolledAt = new Date(this.#polledAtMs).toISOString();
    this.#dirty.add("workers");
    this.#dirty.add("meta");
  }

  #meta(): MetaRow {
    const s = this.#services;
    return {
      node: this.#o.node,
      nats: this.#o.natsUrl,
      natsUser: this.#o.natsUser,
      connected: !this.#o.bus.nc.isClosed() && !this.#disconnected,
      serviceNote: s === undefined ? "asking $SRV.INFO" : s.ok ? null : s.reason,
      servicesPolledAt: this.#servicesPolledAt,
      startedAt: this.#startedAt,
    };
  }

  /** Between a "disconnect" and the next "reconnect" of the connection. */
  #disconnected = false;

  #rows<K extends SectionName>(section: K): Map<string, Sections[K] | null> {
    const rows = new Map<string, Sections[SectionName] | null>();
    switch (section) {
      case "meta":
        rows.set("meta", this.#meta());
        break;
      case "workers": {
        const services: readonly ServiceInstance[] | undefined = this.#services?.ok
          ? this.#services.instances
          : undefined;
        for (const r of workerRows(this.#o.localWorkers?.(), services)) rows.set(r.name, r);
        break;
      }
      case "seeds":
        for (const [k, s] of this.#seeds) rows.set(k, seedRow(s.type, s.key, s.seed));
        break;
      case "networks":
        for (const [k, n] of this.#networks) rows.set(k, networkRow(k, n));
        break;
      case "apps":
        for (const uuid of new Set([...this.#configs.keys(), ...this.#statuses.keys()]))
          rows.set(uuid, this.#appRow(uuid));
        break;
    }
    return rows as Map<string, Sections[K] | null>;
  }

  #appRow(uuid: string) {
    return appRow(
      uuid,
      this.#configs.get(uuid),
      this.#statuses.get(uuid),
      this.#metrics.get(uuid),
      this.#events.get(uuid)?.lines ?? [],
    );
  }

  /**
   * Drops the events of apps that have had neither config nor status for
   * {@link ORPHAN_EVENTS_MS} (deleted, or from before this page), at most once a second: called
   * as events arrive and at each flush, so it needs no timer of its own.
   */
  #sweepOrphanEvents(): void {
    const now = Date.now();
    if (now - this.#sweptAtMs < 1_000) return;
    this.#sweptAtMs = now;
    for (const [uuid, e] of this.#events) {
      if (!this.#configs.has(uuid) && !this.#statuses.has(uuid) && now - e.at > ORPHAN_EVENTS_MS)
        this.#events.delete(uuid);
    }
  }

  /** The changed rows since the last flush, to every listener. */
  #flush(): void {
    const patches: Patch[] = [];
    this.#sweepOrphanEvents();
    // Nobody to send rows to: the changes stay marked until someone listens.
    if (this.#listeners.size === 0) return;
    for (const section of SECTION_NAMES) {
      if (!this.#dirty.has(section)) continue;
      this.#dirty.delete(section);
      if (section === "apps") {
        const keys = [...this.#dirtyApps];
        this.#dirtyApps.clear();
        const rows = new Map(keys.map((k) => [k, this.#appRow(k)]));
        patches.push(...diffRows("apps", this.#sent.apps, rows, keys));
      } else {
        patches.push(...diffRows(section, this.#sent[section], this.#rows(section)));
      }
    }
    if (patches.length === 0) return;
    for (const l of this.#listeners) {
      try {
        l(patches);
      } catch (err) {
        this.#o.logger.warn({ err }, "status page listener failed");
      }
    }
  }

  /** Every row now (what a browser gets when it connects). */
  snapshot(): Snapshot {
    const out = {} as Record<SectionName, Record<string, unknown>>;
    for (const section of SECTION_NAMES) {
      out[section] = {};
      for (const [k, row] of this.#rows(section)) if (row !== null) out[section][k] = row;
    }
    return out as Snapshot;
  }

  /** Calls `listener` with the rows that changed after each flush; returns the unsubscribe. */
  onPatches(listener: (patches: Patch[]) => void): () => void {
    this.#listeners.add(listener);
    void this.warm().catch((err: unknown) =>
      this.#o.logger.warn({ err }, "status page: cannot follow TaskMetrics"),
    );
    return () => {
      if (this.#listeners.delete(listener) && this.#listeners.size === 0) this.#linger();
    };
  }

  /** Stops following (the bus stays open: it is the caller's). */
  async close(): Promise<void> {
    this.#abort.abort();
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    if (this.#metricsLinger) clearTimeout(this.#metricsLinger);
    this.#listeners.clear();
    const metrics = this.#metricsWatch;
    this.#metricsWatch = undefined;
    await Promise.all([
      ...this.#subs.map((s) => s.close()),
      metrics?.then((w) => w.close()).catch(() => undefined),
    ]);
    await this.#eventsDone.catch(() => undefined);
    await this.#polling.catch(() => undefined);
  }
}
