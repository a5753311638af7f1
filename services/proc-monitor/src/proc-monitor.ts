/**
 * The proc-monitor's loop: follows this node's TaskStatus, samples each running task's anchor and
 * cgroup every interval, publishes TaskMetrics, and emits an `exited` event once per anchor that
 * is gone. Read-only towards tasks: it never signals and never talks to containerd.
 */
import { Publication, subscribe } from "@eve-tasks/bus";
import type { Bus, Outbox, Subscription } from "@eve-tasks/bus";
import { TaskSampler } from "@eve-tasks/procfs";
import type { AnchorReading, CgroupLayout, TaskSample } from "@eve-tasks/procfs";
import { forApp } from "@eve-tasks/runtime";
import type { Logger } from "@eve-tasks/runtime";
import { TaskMetricsSchema, TaskStatusSchema, cgroupsPathFor } from "@eve-tasks/schemas";
import type { TaskStatus } from "@eve-tasks/schemas";
import { anchorGoneEvent, anchorGoneEventId } from "./anchor-event.js";
import { taskMetricsOf } from "./task-metrics.js";

/** What the proc-monitor works with. */
export interface ProcMonitorOptions {
  bus: Bus;
  outbox: Outbox;
  logger: Logger;
  /** This node (`EVE_NODE`): statuses of other nodes' apps are ignored. */
  node: string;
  /** How often each task is sampled. */
  intervalMs: number;
  /** The host's cgroup layout. */
  layout: CgroupLayout;
  /** Default `/proc`. */
  procRoot?: string;
}

/** One task being sampled: an anchor (PID and start ticks) of one app. */
interface Watch {
  pid: number;
  startTicks: number | null;
  sampler: TaskSampler;
  /** Set once the anchor was found gone: sampling has stopped and the event was emitted. */
  gone: boolean;
  /** Whether sample problems were already logged (once per anchor). */
  problemsLogged: boolean;
}

/** One app of this node with a TaskStatus. */
interface App {
  uuid: string;
  log: Logger;
  /** The task being sampled; undefined when taskId is 0. */
  watch: Watch | undefined;
  /** Writes of this app's TaskMetrics, in order: an unpublish waits for a publish in flight. */
  writes: Promise<void>;
}

/** The proc-monitor. Call start(), and stop() on shutdown. */
export class ProcMonitor {
  readonly #opts: ProcMonitorOptions;
  readonly #log: Logger;
  readonly #metrics: Publication<typeof TaskMetricsSchema>;
  readonly #apps = new Map<string, App>();
  #statuses: Subscription<typeof TaskStatusSchema> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #tick: Promise<void> = Promise.resolve();
  #stopped = false;
  /** Whether the last publish failed: a NATS outage is logged once, and its end once. */
  #publishFailing = false;

  constructor(options: ProcMonitorOptions) {
    this.#opts = options;
    this.#log = options.logger;
    this.#metrics = new Publication(options.bus, {
      agent: "proc-monitor",
      type: "TaskMetrics",
      schema: TaskMetricsSchema,
    });
  }

  /** Apps currently sampled (for tests and logs). */
  get sampling(): number {
    let n = 0;
    for (const a of this.#apps.values()) if (a.watch && !a.watch.gone) n++;
    return n;
  }

  /**
   * Subscribes to TaskStatus; once it is synchronized, removes TaskMetrics of apps that no longer
   * have a TaskStatus (deleted while no proc-monitor ran) and starts the sampling loop.
   */
  async start(): Promise<void> {
    this.#statuses = await subscribe(this.#opts.bus, {
      agent: "task-executor",
      type: "TaskStatus",
      schema: TaskStatusSchema,
      onCreate: (uuid, s) => this.#onStatus(uuid, s),
      onModify: (uuid, s) => this.#onStatus(uuid, s),
      onDelete: (uuid) => this.#forget(uuid, "TaskStatus deleted"),
    });
    await this.#statuses.synchronized;
    await this.#removeOrphanMetrics(this.#statuses.getAll());
    this.#schedule(this.#opts.intervalMs);
    this.#log.info(
      { event: "synchronized", apps: this.#apps.size, intervalMs: this.#opts.intervalMs },
      "following TaskStatus; sampling",
    );
  }

  #onStatus(uuid: string, s: TaskStatus): void {
    if (s.node !== this.#opts.node) {
      // Not (or no longer) this node's: its metrics are another proc-monitor's to write.
      if (this.#apps.has(uuid)) this.#forget(uuid, `moved to node ${s.node}`, false);
      return;
    }
    let app = this.#apps.get(uuid);
    if (!app) {
      app = { uuid, log: forApp(this.#log, uuid), watch: undefined, writes: Promise.resolve() };
      this.#apps.set(uuid, app);
    }
    const w = app.watch;
    if (s.taskId === 0) {
      if (w) {
        this.#unwatch(app);
        // The last sample stays published: it says what the task used last.
        app.log.info(
          { event: "sampling-stopped", pid: w.pid, state: s.state },
          "no task (taskId 0): sampling stopped",
        );
      }
      return;
    }
    if (w && w.pid === s.taskId && w.startTicks === s.anchorStartTicks) return;
    if (w) this.#unwatch(app);
    this.#watch(app, s.taskId, s.anchorStartTicks);
  }

  #watch(app: App, pid: number, startTicks: number | null): void {
    const sampler = new TaskSampler({
      pid,
      anchorStartTicks: startTicks,
      cgroupsPath: cgroupsPathFor(app.uuid),
      layout: this.#opts.layout,
      procRoot: this.#opts.procRoot,
    });
    app.watch = { pid, startTicks, sampler, gone: false, problemsLogged: false };
    app.log.info(
      { event: "sampling-started", pid, anchorStartTicks: startTicks, cgroupsPath: sampler.cgroupsPath },
      startTicks === null
        ? "sampling the task (no anchorStartTicks in its status: PID reuse cannot be told)"
        : "sampling the task",
    );
    // The first sample at once, not at the next tick.
    this.#sampleApp(app);
  }

  /**
   * Stops sampling the app's task. With `lastLook`, the anchor is looked at once more: one that
   * is gone and not yet reported gets its event now. The executor often publishes the exit
   * (taskId 0, or a new PID) before the next sample would have seen it; every anchor the
   * proc-monitor followed still gets exactly one event from it.
   */
  #unwatch(app: App, lastLook = true): void {
    const w = app.watch;
    if (!w) return;
    app.watch = undefined;
    if (lastLook && !w.gone) {
      try {
        const anchor = w.sampler.anchor();
        if (!anchor.alive) {
          w.gone = true;
          this.#anchorGone(app, w, anchor, new Date());
        }
      } catch (err) {
        app.log.error({ event: "sample-failed", err, pid: w.pid }, "could not look at the anchor");
      }
    }
    w.sampler.close();
  }

  /** Stops sampling `uuid`; with `unpublish`, its TaskMetrics are removed too. */
  #forget(uuid: string, why: string, unpublish = true): void {
    const app = this.#apps.get(uuid);
    if (!app) {
      // Not followed (another node's), but TaskMetrics of a deleted app have no other owner.
      if (unpublish) this.#unpublish(uuid, forApp(this.#log, uuid), Promise.resolve(), why);
      return;
    }
    this.#apps.delete(uuid);
    this.#unwatch(app);
    if (unpublish) this.#unpublish(uuid, app.log, app.writes, why);
  }

  #unpublish(uuid: string, log: Logger, after: Promise<void>, why: string): void {
    void after
      .then(() => this.#metrics.unpublish(uuid))
      .then(
        () => log.info({ event: "metrics-unpublished", why }, `TaskMetrics removed: ${why}`),
        (err: unknown) => log.warn({ event: "unpublish-failed", err, why }, "could not remove TaskMetrics"),
      );
  }

  async #removeOrphanMetrics(statuses: ReadonlyMap<string, unknown>): Promise<void> {
    let published: Map<string, unknown>;
    try {
      published = await this.#metrics.getAll();
    } catch (err) {
      this.#log.warn(
        { event: "orphan-check-failed", err },
        "could not list TaskMetrics to remove stale ones",
      );
      return;
    }
    for (const uuid of published.keys()) {
      if (!statuses.has(uuid)) this.#forget(uuid, "no TaskStatus (deleted while the proc-monitor was away)");
    }
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      const started = Date.now();
      this.#tick = this.#sampleAll().finally(() =>
        this.#schedule(Math.max(0, this.#opts.intervalMs - (Date.now() - started))),
      );
    }, delayMs);
  }

  /** One round: every followed task sampled, then the writes of the round awaited. */
  async #sampleAll(): Promise<void> {
    for (const app of this.#apps.values()) this.#sampleApp(app);
    await Promise.all([...this.#apps.values()].map((a) => a.writes));
  }

  #sampleApp(app: App): void {
    const w = app.watch;
    if (!w || w.gone) return;
    let sample: TaskSample;
    try {
      sample = w.sampler.sample();
    } catch (err) {
      // Not a missing file (that is "not measured"): e.g. EACCES, or /proc text not understood.
      app.log.error({ event: "sample-failed", err, pid: w.pid }, "could not sample the task");
      return;
    }
    if (!sample.anchor.alive) {
      w.gone = true;
      w.sampler.close();
      this.#anchorGone(app, w, sample.anchor, sample.sampledAt);
      return;
    }
    if (sample.problems.length > 0 && !w.problemsLogged) {
      w.problemsLogged = true;
      app.log.warn(
        { event: "sample-problems", pid: w.pid, problems: sample.problems },
        "cgroup files not understood",
      );
    }
    const metrics = taskMetricsOf(app.uuid, sample);
    app.writes = app.writes.then(() => this.#publish(app, metrics));
  }

  #publish(app: App, metrics: ReturnType<typeof taskMetricsOf>): void {
    // A write queued before the app was forgotten (or its task replaced) is dropped.
    if (this.#apps.get(app.uuid) !== app || app.watch?.pid !== metrics.taskId) return;
    try {
      // A sample: a plain publish to the key's subject (stored, unacknowledged); one lost in an
      // outage is replaced by the next, and a round trip per task per interval is spared.
      this.#metrics.publishSample(app.uuid, metrics);
      if (this.#publishFailing) {
        this.#publishFailing = false;
        this.#log.info({ event: "publish-recovered" }, "publishing TaskMetrics again");
      }
    } catch (err) {
      if (!this.#publishFailing) {
        this.#publishFailing = true;
        app.log.warn(
          { event: "publish-failed", err },
          "cannot publish TaskMetrics; will keep trying each interval",
        );
      }
    }
  }

  #anchorGone(app: App, w: Watch, anchor: Extract<AnchorReading, { alive: false }>, time: Date): void {
    const gone = {
      uuid: app.uuid,
      anchorPid: w.pid,
      anchorStartTicks: w.startTicks,
      reason: anchor.reason,
      foundStartTicks: anchor.foundStartTicks,
      time,
    };
    const event = anchorGoneEvent(gone);
    app.log.info(
      {
        event: "anchor-gone",
        pid: w.pid,
        anchorStartTicks: w.startTicks,
        reason: gone.reason,
        foundStartTicks: gone.foundStartTicks,
      },
      event.message,
    );
    this.#opts.outbox
      .emit(event, anchorGoneEventId(gone))
      .catch((err: unknown) =>
        app.log.error({ event: "emit-failed", err }, "could not store the exited event in the outbox"),
      );
  }

  /** Stops the loop and the subscription, waits for writes in flight, releases every file handle. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#statuses?.close();
    await this.#tick;
    await Promise.all([...this.#apps.values()].map((a) => a.writes));
    for (const app of this.#apps.values()) this.#unwatch(app, false);
  }
}
