/**
 * The proc-monitor's loop: follows this node's TaskStatus, samples each running task's anchor and
 * cgroup every interval, publishes TaskMetrics, and emits an `exited` event once per anchor that
 * is gone. For a VM it also measures the anchor tax (peak memory above guest RAM) and keeps the
 * AnchorTax record of its tools image and guest size, for which it follows this node's READY VM
 * TaskConfigs. Read-only towards tasks: it never signals and never talks to containerd.
 */
import { Publication, subscribe, waitForBucket } from "@eve-tasks/bus";
import type { Bus, Outbox, Subscription } from "@eve-tasks/bus";
import { TaskSampler, readGuestRamResidentBytes } from "@eve-tasks/procfs";
import type { AnchorReading, CgroupLayout, TaskSample } from "@eve-tasks/procfs";
import { forApp } from "@eve-tasks/runtime";
import type { Logger, Registry } from "@eve-tasks/runtime";
import { cgroupsPathFor, messageTable } from "@eve-tasks/schemas";
import type { TaskStatus, TaskMetricsSchema, TaskStatusSchema } from "@eve-tasks/schemas";
import { anchorGoneEvent, anchorGoneEventId } from "./anchor-event.js";
import { AnchorTaxTracker, TaskConfigViewSchema, anchorTaxPeakBytes, observationKey } from "./anchor-tax.js";
import type { AnchorTaxUpdate, TaskConfigView, VmFacts } from "./anchor-tax.js";
import { anchorTaxTable, writeAnchorTaxUpdate } from "./anchor-tax-store.js";
import type { AnchorTaxTable } from "./anchor-tax-store.js";
import { procMonitorMetrics } from "./metrics.js";
import type { ProcMonitorMetrics } from "./metrics.js";
import { taskMetricsOf } from "./task-metrics.js";
import type { SampleTax } from "./task-metrics.js";

const MiB = 2 ** 20;
const mib = (bytes: number): string => (bytes / MiB).toFixed(1);

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
  /** Samples of a VM not yet counted in its AnchorTax record are written at least this often. */
  anchorTaxFlushMs?: number;
  /** The worker's Prometheus registry (runWorker's); none: not exported. */
  metrics?: Registry;
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
  /** A VM's facts for its AnchorTax record, once its READY TaskConfig matched its status. */
  vm: (VmFacts & { key: string }) | undefined;
  /** A VM's measured tax so far (never decreases over the task's samples). */
  taxBytes: number | null;
}

/** One app of this node with a TaskStatus. */
interface App {
  uuid: string;
  log: Logger;
  /** The task being sampled; undefined when taskId is 0. */
  watch: Watch | undefined;
  /** From the latest TaskStatus: the memory limit, the anchor tax and the config revision. */
  memoryLimitBytes: number | null;
  anchorTaxBytes: number | null;
  configRevision: number;
  /** Writes of this app's TaskMetrics, in order: an unpublish waits for a publish in flight. */
  writes: Promise<void>;
}

/** The proc-monitor. Call start(), and stop() on shutdown. */
export class ProcMonitor {
  readonly #opts: ProcMonitorOptions;
  readonly #log: Logger;
  readonly #metrics: Publication<typeof TaskMetricsSchema>;
  readonly #apps = new Map<string, App>();
  readonly #taxRecords: AnchorTaxTable;
  readonly #taxTracker: AnchorTaxTracker;
  /** Writes of AnchorTax records in flight. */
  readonly #taxWrites = new Set<Promise<void>>();
  /** The latest READY VM TaskConfig of each app of this node, reduced to its facts. */
  readonly #vms = new Map<string, VmFacts>();
  /** Apps whose READY VM config could not be read (logged once per config revision). */
  readonly #vmProblems = new Map<string, number>();
  readonly #abort = new AbortController();
  #statuses: Subscription<typeof TaskStatusSchema> | undefined;
  #configs: Subscription<typeof TaskConfigViewSchema> | undefined;
  #configsStarting: Promise<void> = Promise.resolve();
  /** Whether the last AnchorTax write failed (logged once until one succeeds). */
  #taxFailing = false;
  #timer: NodeJS.Timeout | undefined;
  #tick: Promise<void> = Promise.resolve();
  #stopped = false;
  /** Whether the last publish failed: a NATS outage is logged once, and its end once. */
  #publishFailing = false;
  readonly #measured: ProcMonitorMetrics;

  constructor(options: ProcMonitorOptions) {
    this.#opts = options;
    this.#log = options.logger;
    this.#metrics = new Publication(options.bus, messageTable("TaskMetrics"));
    this.#taxRecords = anchorTaxTable(options.bus);
    this.#taxTracker = new AnchorTaxTracker({ flushIntervalMs: options.anchorTaxFlushMs });
    this.#measured = procMonitorMetrics(() => this.sampling, options.metrics);
  }

  /** Apps currently sampled (for tests and logs). */
  get sampling(): number {
    let n = 0;
    for (const a of this.#apps.values()) if (a.watch && !a.watch.gone) n++;
    return n;
  }

  /**
   * Subscribes to TaskStatus; once it is synchronized, removes TaskMetrics of apps that no longer
   * have a TaskStatus (deleted while no proc-monitor ran) and starts the sampling loop. TaskConfig
   * (for the AnchorTax records of VMs) is followed in the background: until it can be read,
   * everything else works and VMs' records wait.
   */
  async start(): Promise<void> {
    this.#configsStarting = this.#followTaskConfigs();
    this.#statuses = await subscribe(this.#opts.bus, {
      ...messageTable("TaskStatus"),
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

  /**
   * Follows TaskConfig (the spec-builder's bucket, waited for) and keeps the facts of this node's
   * READY VM configs. A failure (e.g. no permission to read the bucket) is logged: TaskMetrics go
   * on, VMs get no AnchorTax record.
   */
  async #followTaskConfigs(): Promise<void> {
    try {
      await waitForBucket(this.#opts.bus, "spec-builder", { signal: this.#abort.signal });
      if (this.#stopped) return;
      this.#configs = await subscribe(this.#opts.bus, {
        agent: "spec-builder",
        type: "TaskConfig",
        schema: TaskConfigViewSchema,
        checkKey: (uuid, c) => (c.uuid === uuid ? null : `uuid ${c.uuid} is not the key's`),
        onCreate: (uuid, c) => this.#onTaskConfig(uuid, c),
        onModify: (uuid, c) => this.#onTaskConfig(uuid, c),
        onDelete: (uuid) => {
          this.#vms.delete(uuid);
          this.#vmProblems.delete(uuid);
        },
        // The executor reports configs it cannot use; here they only lack an AnchorTax record.
        onInvalid: (i) =>
          this.#log.debug({ event: "task-config-invalid", uuid: i.key, reason: i.reason }, i.message),
      });
      if (this.#stopped) await this.#configs.close();
    } catch (err) {
      if (this.#stopped) return;
      this.#log.warn(
        { event: "anchor-tax-disabled", err },
        "cannot follow TaskConfig (bucket spec-builder): VMs' anchor tax is not recorded in AnchorTax",
      );
    }
  }

  #onTaskConfig(uuid: string, c: TaskConfigView): void {
    // A PENDING or FAILED revision leaves the task of the last READY one running: keep its facts.
    if (c.status !== "READY") return;
    if (c.node !== this.#opts.node || !c.hvm) {
      this.#vms.delete(uuid);
      this.#vmProblems.delete(uuid);
      return;
    }
    if (c.vm) {
      this.#vms.set(uuid, c.vm);
      this.#vmProblems.delete(uuid);
      return;
    }
    this.#vms.delete(uuid);
    if (this.#vmProblems.get(uuid) !== c.configRevision) {
      this.#vmProblems.set(uuid, c.configRevision);
      forApp(this.#log, uuid).warn(
        { event: "anchor-tax-unknown-vm", configRevision: c.configRevision },
        `no AnchorTax record for this VM: ${c.problem ?? "its TaskConfig cannot be read"}`,
      );
    }
  }

  /** Writes AnchorTax updates with compare-and-set (merging into what is stored), in the background. */
  #writeTaxUpdates(updates: readonly AnchorTaxUpdate[]): void {
    for (const u of updates) {
      const write: Promise<void> = writeAnchorTaxUpdate(this.#taxRecords, u)
        .then(
          ({ record: rec, previousPeakBytes, conflicts }) => {
            this.#taxTracker.committed(u, rec, Date.now());
            if (this.#taxFailing) {
              this.#taxFailing = false;
              this.#log.info({ event: "anchor-tax-recovered" }, "writing AnchorTax records again");
            }
            const rose = previousPeakBytes === undefined || rec.peakAboveGuestBytes > previousPeakBytes;
            forApp(this.#log, u.best.task.uuid)[rose ? "info" : "debug"](
              {
                event: "anchor-tax-recorded",
                key: u.key,
                peakAboveGuestBytes: rec.peakAboveGuestBytes,
                reservedTaxBytes: rec.reservedTaxBytes,
                samples: rec.samples,
                tasks: rec.tasks,
                conflicts,
              },
              `anchor tax of a ${rec.guestMiB} MiB guest of ${rec.toolsImage}: peak ${mib(rec.peakAboveGuestBytes)} MiB ` +
                `above guest RAM, ${mib(rec.reservedTaxBytes)} MiB reserved (${rec.samples} samples, ${rec.tasks} tasks)`,
            );
          },
          (err: unknown) => {
            this.#taxTracker.failed(u, Date.now());
            if (!this.#taxFailing) {
              this.#taxFailing = true;
              this.#log.warn(
                { event: "anchor-tax-write-failed", err, key: u.key },
                "cannot write an AnchorTax record; its samples stay counted for the next write",
              );
            }
          },
        )
        .finally(() => this.#taxWrites.delete(write));
      this.#taxWrites.add(write);
    }
  }

  #onStatus(uuid: string, s: TaskStatus): void {
    if (s.node !== this.#opts.node) {
      // Not (or no longer) this node's: its metrics are another proc-monitor's to write.
      if (this.#apps.has(uuid)) this.#forget(uuid, `moved to node ${s.node}`, false);
      return;
    }
    let app = this.#apps.get(uuid);
    if (!app) {
      app = {
        uuid,
        log: forApp(this.#log, uuid),
        watch: undefined,
        writes: Promise.resolve(),
        memoryLimitBytes: null,
        anchorTaxBytes: null,
        configRevision: s.configRevision,
      };
      this.#apps.set(uuid, app);
    }
    app.memoryLimitBytes = s.memoryLimitBytes;
    app.anchorTaxBytes = s.anchorTaxBytes;
    app.configRevision = s.configRevision;
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
    app.watch = {
      pid,
      startTicks,
      sampler,
      gone: false,
      problemsLogged: false,
      vm: undefined,
      taxBytes: null,
    };
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
    // Samples of a VM not yet counted in its AnchorTax record are written now.
    if (w.vm) this.#writeTaxUpdates(this.#taxTracker.flush(Date.now(), w.vm.key));
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
    const end = this.#measured.roundDuration.startTimer();
    for (const app of this.#apps.values()) this.#sampleApp(app);
    await Promise.all([...this.#apps.values()].map((a) => a.writes));
    end();
  }

  #sampleApp(app: App): void {
    const w = app.watch;
    if (!w || w.gone) return;
    let sample: TaskSample;
    try {
      sample = w.sampler.sample();
    } catch (err) {
      // Not a missing file (that is "not measured"): e.g. EACCES, or /proc text not understood.
      this.#measured.sampleErrors.inc();
      app.log.error({ event: "sample-failed", err, pid: w.pid }, "could not sample the task");
      return;
    }
    if (!sample.anchor.alive) {
      w.gone = true;
      w.sampler.close();
      this.#measured.anchorsGone.inc();
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
    const tax = this.#taxOf(app, w, sample);
    const metrics = taskMetricsOf(app.uuid, sample, tax);
    app.writes = app.writes.then(() => this.#publish(app, metrics));
    if (tax.anchorTaxPeakBytes !== null) this.#observeTax(app, w, sample, tax.anchorTaxPeakBytes);
  }

  /**
   * The anchor tax of a sample: reserved from the TaskStatus, measured as the cgroup's peak above
   * guest RAM. A task is a VM when its status reserves a tax, or its READY config is a VM's (a VM
   * may run with a tax of 0).
   */
  #taxOf(app: App, w: Watch, sample: TaskSample): SampleTax {
    const reserved = app.anchorTaxBytes;
    const vm = reserved !== null && (reserved > 0 || this.#vms.has(app.uuid));
    if (!vm) return { anchorTaxBytes: null, anchorTaxPeakBytes: null };
    const guestBytes = app.memoryLimitBytes === null ? null : app.memoryLimitBytes - reserved;
    const measured = anchorTaxPeakBytes(sample.values.memoryPeakBytes, app.memoryLimitBytes, reserved, {
      memoryUsageBytes: sample.values.memoryUsageBytes,
      guestResidentBytes:
        guestBytes !== null && guestBytes > 0 ? readGuestRamResidentBytes(w.pid, guestBytes) : null,
      previousBytes: w.taxBytes,
    });
    if (measured !== null) w.taxBytes = measured;
    return { anchorTaxBytes: reserved, anchorTaxPeakBytes: measured };
  }

  /**
   * Counts a VM's sample towards its AnchorTax record, and writes the record when the tracker says
   * so. The VM's facts (tools image, vCPUs, guest size) are taken once per task from its READY
   * TaskConfig, when that config's revision is the status's and its guest size the status's
   * memory limit minus the tax; until then the task has no record.
   */
  #observeTax(app: App, w: Watch, sample: TaskSample, peakAboveGuestBytes: number): void {
    const reserved = app.anchorTaxBytes;
    const limit = app.memoryLimitBytes;
    const peakTotal = sample.values.memoryPeakBytes;
    if (reserved === null || limit === null || peakTotal === null) return;
    if (!w.vm) {
      const facts = this.#vms.get(app.uuid);
      if (
        !facts ||
        facts.configRevision !== app.configRevision ||
        facts.guestMiB * MiB !== limit - reserved
      ) {
        return;
      }
      w.vm = { ...facts, key: observationKey({ ...facts, node: this.#opts.node }) };
      app.log.info(
        {
          event: "anchor-tax-measuring",
          key: w.vm.key,
          toolsImage: facts.toolsImage,
          guestMiB: facts.guestMiB,
        },
        `measuring the anchor tax of a ${facts.guestMiB} MiB guest of ${facts.toolsImage}`,
      );
    }
    const observation = {
      node: this.#opts.node,
      toolsImage: w.vm.toolsImage,
      toolsDigest: w.vm.toolsDigest,
      guestMiB: w.vm.guestMiB,
      vcpus: w.vm.vcpus,
      reservedTaxBytes: reserved,
      peakAboveGuestBytes,
      peakTotalBytes: peakTotal,
      at: sample.sampledAt.toISOString(),
      task: { uuid: app.uuid, taskId: w.pid, anchorStartTicks: w.startTicks },
    };
    const update = this.#taxTracker.observe(observation, Date.now());
    if (update) this.#writeTaxUpdates([update]);
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
      this.#measured.publishErrors.inc();
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

  /**
   * Stops the loop and the subscriptions, waits for writes in flight, writes the VMs' samples not
   * yet counted in their AnchorTax records (for at most 2 s), releases every file handle.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#abort.abort();
    clearTimeout(this.#timer);
    await this.#statuses?.close();
    await this.#configsStarting;
    await this.#configs?.close();
    await this.#tick;
    await Promise.all([...this.#apps.values()].map((a) => a.writes));
    for (const app of this.#apps.values()) this.#unwatch(app, false);
    const flushed = (async () => {
      await Promise.all([...this.#taxWrites]);
      this.#writeTaxUpdates(this.#taxTracker.flush(Date.now()));
      await Promise.all([...this.#taxWrites]);
    })();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([flushed, new Promise((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
  }
}
