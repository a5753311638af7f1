import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { dirname } from "node:path";
import { constants as osConstants } from "node:os";
import type { Logger } from "pino";
import { Publication, followEvents, subscribe } from "@eve-tasks/bus";
import type { Bus, EventFollower, Outbox, Subscription } from "@eve-tasks/bus";
import { exitSignal, isAlreadyExists, isNotFound, isUnavailable, specFromAny } from "@eve-tasks/containerd";
import type { Container, ContainerdClient, ExitStatus, Mount, Process } from "@eve-tasks/containerd";
import { readProcStatSync } from "@eve-tasks/procfs";
import { TaskConfigSchema, TaskStatusSchema, jsonEqual, specSha256, taskLogPath } from "@eve-tasks/schemas";
import type { ReadyTaskConfig, SignalReply, TaskConfig, TaskEventType, TaskStatus } from "@eve-tasks/schemas";
import { MemoryLedger } from "./admission.js";
import { NodeFactError } from "./errors.js";
import { KeyedRunner, Semaphore } from "./keyed-runner.js";
import { within } from "./within.js";
import { EXECUTOR_LABELS, NO_RESTARTS, labelsFor, readLabels, restartLabels } from "./labels.js";
import type { Ended, LabelView, RestartLabels } from "./labels.js";
import { decideRestart, inWindow } from "./restart-policy.js";
import type { NodeFacts } from "./node-facts.js";
import { prepareTask } from "./prepare-task.js";
import type { PreparedTask } from "./prepare-task.js";
import { sweepStagedMounts, withStagedMounts } from "./staged-mounts.js";
import { executorError, initialStatus } from "./status.js";
import { makeTaskDirs, removeTaskDir } from "./task-dirs.js";
import { stopVmByQmp } from "./vm-stop.js";
import type { StopStep } from "./vm-stop.js";
import { qmpSocketPath, vmRunDir } from "./vm-task.js";
import type { AccelDecider } from "./vm-task.js";

/** What the executor is built from. */
export interface TaskExecutorOptions {
  bus: Bus;
  /** A client on this node's containerd, in namespace `eve-user-apps`. */
  containerd: ContainerdClient;
  facts: NodeFacts;
  logger: Logger;
  /** Where task events go; without one, no events are emitted. */
  outbox?: Outbox;
  /** Tasks created and started at once (default 8). */
  startConcurrency?: number;
  /** How often every app is checked against containerd as a safety net (default 30 s; 0 = never). */
  relistIntervalMs?: number;
  /** How long the SIGKILL of a stop may take before the executor gives up waiting (default 10 s). */
  killTimeoutMs?: number;
  /** Chooses each VM's accelerator (see `AccelChooser`); without one, VM configs are refused. */
  accel?: AccelDecider;
  /** How long qemu may take to end after QMP `quit` before SIGKILL (default 5000 ms). */
  vmQuitTimeoutMs?: number;
  /**
   * Reads how many OOM kills the task's cgroup saw, before Tasks.Delete removes it (null when
   * not readable). Besides it, containerd's `/tasks/oom` events count as evidence.
   */
  readOomKills?: (uuid: string) => Promise<number | null>;
}

/** What the executor keeps per app between reconciles. */
interface AppState {
  readonly uuid: string;
  /** The latest TaskConfig for this node; undefined when deleted or for another node. */
  desired: TaskConfig | undefined;
  /** The last TaskStatus this executor published. */
  status: TaskStatus | undefined;
  /** The pending Tasks.Wait for the current task. */
  wait: { pid: number; exit: Promise<ExitStatus | undefined> } | undefined;
  /** A stop is in progress: the exit it causes is HALTED whatever its code. */
  stopping: boolean;
  /** The step of a stop in progress that ended the task (for its `exited` event). */
  stoppedBy: StopStep | undefined;
  /** First seen after the start-up listing, not reconciled yet: it has no container. */
  fresh: boolean;
  /** Stop timeout of the last READY config, for a stop after the config is gone. */
  stopTimeoutMs: number;
  retryDelayMs: number;
  retryTimer: NodeJS.Timeout | undefined;
  /** Wakes the reconcile that starts a restart the policy scheduled. */
  restartTimer: NodeJS.Timeout | undefined;
  /** containerd reported an OOM kill in the current task. */
  oomSeen: boolean;
  /** Waiting for memory: the "received" event was emitted for this wait. */
  waitingForMemory: boolean;
}

const DEFAULT_STOP_TIMEOUT_MS = 10_000;

/** The memory limit in a stored container spec, in bytes (0 when it has none). */
function memoryLimitOf(c: Container): number {
  if (!c.spec) return 0;
  try {
    const spec = specFromAny(c.spec) as { linux?: { resources?: { memory?: { limit?: unknown } } } };
    const limit = spec.linux?.resources?.memory?.limit;
    return typeof limit === "number" && limit > 0 ? limit : 0;
  } catch {
    return 0;
  }
}

/** Resolves to undefined when containerd says the object is not there (already gone). */
async function unlessGone<T>(call: Promise<T>): Promise<T | undefined> {
  try {
    return await call;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/**
 * The task-executor's reconciler: for every app of this node it drives containerd from
 * the app's TaskConfig and publishes TaskStatus at every transition.
 *
 * Every reconcile is level-triggered and idempotent: it reads what containerd has
 * (container, task) and what is wanted (the latest TaskConfig), and does the steps in
 * between, in the design's call order. Reconciles of one app never overlap and coalesce;
 * different apps proceed concurrently.
 */
export class TaskExecutor {
  readonly #o: TaskExecutorOptions;
  readonly #log: Logger;
  readonly #status: Publication<typeof TaskStatusSchema>;
  readonly #apps = new Map<string, AppState>();
  readonly #runner: KeyedRunner;
  readonly #starts: Semaphore;
  #sub: Subscription<typeof TaskConfigSchema> | undefined;
  #synchronized = false;
  #stopping = false;
  #relist: NodeJS.Timeout | undefined;
  readonly #ledger: MemoryLedger;
  readonly #abort = new AbortController();
  #exitEvents: Promise<void> | undefined;
  #monitorEvents: EventFollower | undefined;

  constructor(options: TaskExecutorOptions) {
    this.#o = options;
    this.#log = options.logger;
    this.#status = new Publication(options.bus, {
      agent: "task-executor",
      type: "TaskStatus",
      schema: TaskStatusSchema,
    });
    this.#runner = new KeyedRunner((uuid) => this.#reconcile(uuid));
    this.#starts = new Semaphore(options.startConcurrency ?? 8);
    this.#ledger = new MemoryLedger(options.facts.memoryMiB - options.facts.memoryReserveMiB);
  }

  /**
   * Starts: loads the statuses it published before, follows TaskConfig until it is
   * synchronized, and only then looks at containerd and reconciles every app it finds
   * in either (adopting running tasks that match, removing containers nobody wants).
   * Resolves when that first pass is done.
   */
  async start(): Promise<void> {
    const node = this.#o.facts.node;
    // Staging mounts left by an executor that died while creating a task (staged-mounts.ts).
    const swept = await sweepStagedMounts(this.#o.facts.dataDir);
    if (swept.length > 0) {
      this.#log.warn({ event: "staging-swept", mounts: swept }, "detached staging mounts left behind");
    }
    for (const [uuid, s] of await this.#status.getAll()) {
      if (s.node === node) this.#app(uuid).status = s;
    }
    this.#sub = await subscribe(this.#o.bus, {
      agent: "spec-builder",
      type: "TaskConfig",
      schema: TaskConfigSchema,
      checkKey: (key, v) => (v.uuid === key ? null : `TaskConfig ${key} carries uuid ${v.uuid}`),
      onCreate: (key, v) => this.#desire(key, v),
      onModify: (key, v) => this.#desire(key, v),
      onDelete: (key) => this.#desire(key, undefined),
      onInvalid: (i) =>
        this.#log.error(
          { uuid: i.key, reason: i.reason, revision: i.revision },
          `unusable TaskConfig: ${i.message}`,
        ),
    });
    await this.#sub.synchronized;
    // Exits are learnt from Tasks.Wait, from containerd's events and from the proc-monitor's;
    // the relist below is the safety net. Any of them only wakes a reconcile, so a lost or
    // duplicated notice is harmless.
    this.#exitEvents = this.#followContainerdEvents();
    this.#monitorEvents = followEvents(
      this.#o.bus,
      (e) => {
        if (e.fields.source === "proc-monitor" && this.#apps.has(e.uuid)) this.#runner.kick(e.uuid);
      },
      { types: ["exited"] },
    );
    const containers = await this.#o.containerd.containers.list();
    for (const c of containers) this.#app(c.id);
    // Memory that existing tasks hold counts before any new task is admitted.
    const live = new Set(
      (await this.#o.containerd.tasks.list()).filter((t) => t.status !== "STOPPED").map((t) => t.id),
    );
    for (const c of containers) {
      if (live.has(c.id)) this.#ledger.hold(c.id, memoryLimitOf(c));
    }
    this.#synchronized = true;
    this.#log.info(
      { event: "resync", apps: this.#apps.size },
      "TaskConfig synchronized; reconciling every app",
    );
    for (const uuid of [...this.#apps.keys()]) this.#runner.kick(uuid);
    await this.#runner.idle();
    const every = this.#o.relistIntervalMs ?? 30_000;
    if (every > 0) {
      this.#relist = setInterval(() => {
        for (const uuid of this.#apps.keys()) this.#runner.kick(uuid);
      }, every);
    }
  }

  /** Stops reconciling; tasks keep running (containerd's shims own them). */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#abort.abort();
    if (this.#relist) clearInterval(this.#relist);
    for (const a of this.#apps.values()) {
      if (a.retryTimer) clearTimeout(a.retryTimer);
      if (a.restartTimer) clearTimeout(a.restartTimer);
    }
    await this.#monitorEvents?.close();
    await this.#exitEvents;
    await this.#sub?.close();
    await this.#runner.stop();
  }

  /**
   * Sends `signal` to the anchor of app `uuid` (the signal request). The reply only says
   * whether it was sent; what it does shows in TaskStatus and the events.
   */
  async signal(uuid: string, signal: string): Promise<SignalReply> {
    const app = this.#apps.get(uuid);
    const node = this.#o.facts.node;
    if (!app?.desired) return { accepted: false, error: `no app ${uuid} on node ${node}` };
    if (!(signal in osConstants.signals)) {
      return { accepted: false, error: `unknown signal ${signal} (use a name such as SIGHUP or SIGTERM)` };
    }
    const pid = app.status?.taskId ?? 0;
    if (pid === 0) {
      return {
        accepted: false,
        error: `app ${uuid} has no running task (state ${app.status?.state ?? "unknown"})`,
      };
    }
    try {
      await this.#o.containerd.tasks.kill(uuid, signal as NodeJS.Signals);
    } catch (err) {
      if (isNotFound(err)) return { accepted: false, error: `app ${uuid} has no running task` };
      throw err;
    }
    this.#log.info(
      { uuid, event: "signalled", anchorPid: pid, signal },
      `sent ${signal} to the anchor on request`,
    );
    await this.#event(uuid, "killed", `${signal} sent to anchor PID ${pid} on request`, {
      anchorPid: pid,
      signal,
      requested: true,
    });
    return { accepted: true, error: null };
  }

  /**
   * Follows containerd's `/tasks/exit` and `/tasks/oom` events, resubscribing with back-off
   * when the stream breaks (containerd restarted), until the executor stops.
   */
  async #followContainerdEvents(): Promise<void> {
    let backoffMs = 500;
    while (!this.#stopping) {
      const sub = this.#o.containerd.events.subscribe({
        filters: ['topic=="/tasks/exit"', 'topic=="/tasks/oom"'],
        signal: this.#abort.signal,
      });
      try {
        for await (const e of sub) {
          backoffMs = 500;
          if (e.topic === "/tasks/exit") {
            const { containerId, id } = e.payload;
            if (id === containerId && this.#apps.has(containerId)) this.#runner.kick(containerId);
          } else if (e.topic === "/tasks/oom") {
            const app = this.#apps.get(e.payload.containerId);
            if (app) {
              app.oomSeen = true;
              this.#log.warn({ uuid: app.uuid, event: "oom" }, "containerd reports an OOM kill in the task");
            }
          }
        }
      } catch (err) {
        if (this.#stopping) return;
        this.#log.warn({ err, retryInMs: backoffMs }, "containerd event stream broke; resubscribing");
      }
      if (this.#stopping) return;
      await new Promise((r) => setTimeout(r, backoffMs).unref());
      backoffMs = Math.min(backoffMs * 2, 10_000);
      // Anything that exited while the stream was down is found by a reconcile of every app.
      for (const uuid of this.#apps.keys()) this.#runner.kick(uuid);
    }
  }

  /** Resolves when no reconcile is running (for tests and benchmarks). */
  idle(): Promise<void> {
    return this.#runner.idle();
  }

  #app(uuid: string): AppState {
    let a = this.#apps.get(uuid);
    if (!a) {
      a = {
        uuid,
        desired: undefined,
        status: undefined,
        wait: undefined,
        stopping: false,
        stoppedBy: undefined,
        fresh: false,
        stopTimeoutMs: DEFAULT_STOP_TIMEOUT_MS,
        retryDelayMs: 0,
        retryTimer: undefined,
        restartTimer: undefined,
        oomSeen: false,
        waitingForMemory: false,
      };
      this.#apps.set(uuid, a);
    }
    return a;
  }

  #desire(uuid: string, config: TaskConfig | undefined): void {
    const ours = config && config.node === this.#o.facts.node ? config : undefined;
    if (!ours && !this.#apps.has(uuid)) return; // another node's app, never ours
    // An app first seen after the start-up listing has no container: this executor would
    // have made it (a containers.get and tasks.get saved on the way to a new task).
    const fresh = this.#synchronized && !this.#apps.has(uuid);
    const app = this.#app(uuid);
    if (fresh) app.fresh = true;
    app.desired = ours;
    if (ours?.status === "READY") app.stopTimeoutMs = ours.stopTimeoutMs;
    if (this.#synchronized) this.#runner.kick(uuid);
  }

  // ---- reconcile -------------------------------------------------------------------------

  async #reconcile(uuid: string): Promise<void> {
    const app = this.#apps.get(uuid);
    if (!app || this.#stopping) return;
    try {
      await this.#reconcileApp(app);
      app.retryDelayMs = 0;
    } catch (err) {
      if (this.#stopping) return;
      app.retryDelayMs = Math.min(Math.max(app.retryDelayMs * 2, 1000), 30_000);
      const log = this.#log.child({ uuid });
      if (isUnavailable(err)) {
        log.warn(
          { err, retryInMs: app.retryDelayMs },
          "containerd unreachable; state UNKNOWN, nothing killed",
        );
        if (app.status) await this.#publish(app, { state: "UNKNOWN" }).catch(() => undefined);
      } else {
        log.error({ err, retryInMs: app.retryDelayMs }, "reconcile failed; will retry");
        const rev = app.desired?.configRevision ?? app.status?.configRevision ?? 1;
        await this.#publish(app, { error: executorError((err as Error).message, rev) }).catch(
          () => undefined,
        );
      }
      if (app.retryTimer) clearTimeout(app.retryTimer);
      app.retryTimer = setTimeout(() => {
        app.retryTimer = undefined;
        this.#runner.kick(uuid);
      }, app.retryDelayMs);
    }
  }

  async #reconcileApp(app: AppState): Promise<void> {
    const fresh = app.fresh;
    app.fresh = false;
    try {
      await this.#reconcileFrom(app, fresh);
    } catch (err) {
      // Someone else made a container with this id after all: look before acting.
      if (fresh && isAlreadyExists(err)) return this.#reconcileFrom(app, false);
      throw err;
    }
  }

  async #reconcileFrom(app: AppState, fresh: boolean): Promise<void> {
    const uuid = app.uuid;
    const d = app.desired;
    // Both at once: a task lookup without a container is a cheap NOT_FOUND.
    let [container, task] = fresh
      ? [undefined, undefined]
      : await Promise.all([this.#getContainer(uuid), this.#getTask(uuid)]);
    if (!container) task = undefined;

    // A task that ended: record how (before Tasks.Delete, which takes the cgroup with it).
    if (task && task.status === "STOPPED") {
      await this.#finishTask(app, task.pid, container ? readLabels(container.labels) : undefined);
      task = undefined;
      container = await this.#getContainer(uuid);
    } else if (task && task.status === "CREATED") {
      // Left behind between Tasks.Create and Tasks.Start (an executor crash): roll back.
      await this.#discardTask(app, task.pid);
      task = undefined;
    }

    if (!d) return this.#remove(app, container, task);
    if (d.status === "FAILED") {
      if (task) return void (await this.#publish(app, { error: d.error }));
      return void (await this.#publish(app, {
        state: "FAILED",
        configRevision: d.configRevision,
        version: d.version ?? null,
        taskId: 0,
        anchorStartTicks: null,
        waitingFor: null,
        error: d.error,
      }));
    }
    if (d.status === "PENDING") {
      if (task) return void (await this.#publish(app, { waitingFor: d.waitingFor }));
      return void (await this.#publish(app, {
        state: "PENDING",
        configRevision: d.configRevision,
        version: d.version,
        waitingFor: d.waitingFor,
        error: null,
      }));
    }

    let prepared: PreparedTask;
    try {
      prepared = await prepareTask(d, this.#o.facts, this.#o.accel);
    } catch (err) {
      if (!(err instanceof NodeFactError)) throw err;
      this.#log.warn({ uuid, configRevision: d.configRevision }, `config rejected: ${err.message}`);
      return this.#reject(app, d, err.message, task !== undefined);
    }

    let labels = container ? readLabels(container.labels) : undefined;
    if (container && labels?.specSha256 === d.specSha256) {
      // An equal fingerprint keeps the container and its task: check it is really the spec's
      // (TaskConfig's schema does not, so that every other reader is spared the cost).
      const actual = specSha256(d.spec);
      if (actual !== d.specSha256) {
        const message =
          `TaskConfig revision ${d.configRevision} is inconsistent: its specSha256 ${d.specSha256} ` +
          `is not that of its spec (${actual}); not applied`;
        this.#log.warn({ uuid, configRevision: d.configRevision }, message);
        return this.#reject(app, d, message, task !== undefined);
      }
    } else if (container) {
      // Any change that alters the built spec replaces the task.
      if (task) await this.#stopTask(app, task.pid, "the spec changed: replacing the task");
      await this.#deleteContainer(uuid);
      container = undefined;
      labels = undefined;
      task = undefined;
    }

    if (!d.activate) {
      app.waitingForMemory = false;
      if (app.restartTimer) clearTimeout(app.restartTimer);
      app.restartTimer = undefined;
      let ended: Ended = labels?.ended ?? "";
      if (task) {
        await this.#stopTask(app, task.pid, "activate is false");
        ended = "stopped";
      }
      this.#releaseMemory(uuid);
      if (!container) {
        await this.#createContainer(d, prepared, "");
        return void (await this.#publish(
          app,
          this.#builtFrom(d, prepared, { state: "INSTALLED", error: null }),
        ));
      }
      await this.#updateLabels(uuid, labelsFor(d, ended));
      const state =
        app.status && ["HALTED", "BROKEN"].includes(app.status.state) ? app.status.state : "INSTALLED";
      return void (await this.#publish(
        app,
        this.#builtFrom(d, prepared, { state, error: null, waitingFor: null }),
      ));
    }

    let restartRequested = false;
    if (task && labels && labels.restartCounter < d.restartCounter) {
      await this.#stopTask(app, task.pid, `restart requested (restartCounter ${d.restartCounter})`);
      task = undefined;
      restartRequested = true;
    }

    if (task) {
      // Running, and it is what is wanted: adopt it as it is (same PID, no restart).
      if (labels && (labels.configRevision !== d.configRevision || labels.version !== d.version)) {
        await this.#updateLabels(
          uuid,
          labelsFor(d, "", { restartTimes: labels.restartTimes, restartDue: "" }),
        );
      }
      this.#ensureWait(app, task.pid);
      if (!this.#ledger.holds(uuid)) this.#ledger.hold(uuid, prepared.memoryLimitBytes);
      const ticks =
        app.status?.taskId === task.pid && app.status.anchorStartTicks !== null
          ? app.status.anchorStartTicks
          : (readProcStatSync(task.pid)?.startTimeTicks ?? null);
      return void (await this.#publish(
        app,
        this.#builtFrom(d, prepared, {
          state: "RUNNING",
          taskId: task.pid,
          lastTaskId: task.pid,
          anchorStartTicks: ticks,
          startedAt: app.status?.taskId === task.pid ? app.status.startedAt : (app.status?.startedAt ?? null),
          restarts: inWindow(d.restartPolicy, labels?.restartTimes ?? [], Date.now()).length,
          error: null,
          waitingFor: null,
        }),
      ));
    }

    const endedByItself =
      labels?.ended === "exited" && labels.restartCounter >= d.restartCounter && !restartRequested;
    if (endedByItself && labels) {
      // It exited by itself and no user action since asks for another run: the restart
      // policy's decision, recorded in the labels at the exit, stands.
      const restarts: RestartLabels = { restartTimes: labels.restartTimes, restartDue: labels.restartDue };
      if (labels.configRevision !== d.configRevision || labels.version !== d.version) {
        await this.#updateLabels(uuid, labelsFor(d, "exited", restarts));
      }
      const due = labels.restartDue;
      if (typeof due === "number") {
        const inMs = due - Date.now();
        if (inMs <= 0) {
          const now = Date.now();
          const times = [...inWindow(d.restartPolicy, labels.restartTimes, now), now];
          return this.#startTask(app, d, prepared, container, { restartTimes: times, restartDue: "" });
        }
        this.#scheduleRestart(app, inMs);
      }
      const state = app.status?.state === "BROKEN" || due === "gave-up" ? "BROKEN" : "HALTED";
      // A policy that gave up keeps its reason in `error` until the user acts.
      const keepError = due === "gave-up" && app.status?.error?.source === "task-executor";
      return void (await this.#publish(
        app,
        this.#builtFrom(d, prepared, {
          state,
          waitingFor: null,
          ...(keepError ? {} : { error: null }),
        }),
      ));
    }

    await this.#startTask(app, d, prepared, container, NO_RESTARTS);
  }

  /** Wakes a reconcile in `inMs` to start the restart the policy scheduled. */
  #scheduleRestart(app: AppState, inMs: number): void {
    if (app.restartTimer) clearTimeout(app.restartTimer);
    app.restartTimer = setTimeout(() => {
      app.restartTimer = undefined;
      if (!this.#stopping) this.#runner.kick(app.uuid);
    }, inMs);
  }

  /** Fields describing the config the current task is (or would be) built from. */
  #builtFrom(d: ReadyTaskConfig, p: PreparedTask, rest: Partial<TaskStatus>): Partial<TaskStatus> {
    return {
      configRevision: d.configRevision,
      version: d.version,
      memoryLimitBytes: p.memoryLimitBytes,
      anchorTaxBytes: p.anchorTaxBytes,
      logPath: p.logPath,
      ...rest,
    };
  }

  /** This revision cannot run: keep a running task on its last good config, else FAILED. */
  async #reject(app: AppState, d: ReadyTaskConfig, message: string, running: boolean): Promise<void> {
    const error = executorError(message, d.configRevision);
    await this.#event(app.uuid, "error", message, { configRevision: d.configRevision });
    if (running) return void (await this.#publish(app, { error }));
    await this.#publish(app, {
      state: "FAILED",
      configRevision: d.configRevision,
      version: d.version,
      taskId: 0,
      anchorStartTicks: null,
      waitingFor: null,
      error,
    });
  }

  // ---- containerd steps --------------------------------------------------------------------

  #getContainer(uuid: string): Promise<Container | undefined> {
    return unlessGone(this.#o.containerd.containers.get(uuid));
  }

  #getTask(uuid: string): Promise<Process | undefined> {
    return unlessGone(this.#o.containerd.tasks.get(uuid));
  }

  async #createContainer(
    d: ReadyTaskConfig,
    p: PreparedTask,
    ended: Ended,
    restarts: RestartLabels = NO_RESTARTS,
  ): Promise<void> {
    await this.#o.containerd.containers.create({
      id: d.uuid,
      labels: labelsFor(d, ended, restarts),
      spec: p.spec,
    });
  }

  /** The task no longer holds memory: apps waiting for memory get another look. */
  #releaseMemory(uuid: string): void {
    if (!this.#ledger.release(uuid)) return;
    for (const a of this.#apps.values()) {
      if (a.waitingForMemory && a.uuid !== uuid) this.#runner.kick(a.uuid);
    }
  }

  async #deleteContainer(uuid: string): Promise<void> {
    await unlessGone(this.#o.containerd.containers.delete(uuid));
  }

  async #updateLabels(uuid: string, labels: Record<string, string>): Promise<void> {
    await this.#o.containerd.containers.update(
      { id: uuid, labels },
      { fieldPaths: Object.keys(labels).map((k) => `labels.${k}`) },
    );
  }

  /** Issues Tasks.Wait for `pid` unless one is pending; its return wakes a reconcile. */
  #ensureWait(app: AppState, pid: number): void {
    if (app.wait?.pid === pid) return;
    const exit = this.#o.containerd.tasks.wait(app.uuid).then(
      (s) => {
        if (!this.#stopping) this.#runner.kick(app.uuid);
        return s;
      },
      (err: unknown) => {
        if (app.wait?.pid === pid) app.wait = undefined;
        if (!this.#stopping && !isNotFound(err)) {
          this.#log.warn({ uuid: app.uuid, err }, "Tasks.Wait ended without an exit; checking again");
          setTimeout(() => this.#runner.kick(app.uuid), 1000).unref();
        }
        return undefined;
      },
    );
    app.wait = { pid, exit };
  }

  /**
   * Creates and starts a task (Tasks.Create → Tasks.Start, Tasks.Wait issued right behind it and
   * not awaited). A failure rolls back what this call created and leaves the app FAILED.
   */
  async #startTask(
    app: AppState,
    d: ReadyTaskConfig,
    p: PreparedTask,
    existing: Container | undefined,
    restarts: RestartLabels,
  ): Promise<void> {
    const uuid = app.uuid;
    const tasks = this.#o.containerd.tasks;
    const refusal = this.#ledger.admit(uuid, p.memoryLimitBytes);
    if (refusal) {
      // PENDING until memory frees up: every exit and removal wakes the apps that wait.
      if (!app.waitingForMemory) {
        app.waitingForMemory = true;
        this.#log.info(
          {
            uuid,
            event: "waiting-for-memory",
            neededBytes: refusal.neededBytes,
            freeBytes: refusal.freeBytes,
          },
          refusal.message,
        );
        await this.#event(uuid, "received", refusal.message, {
          configRevision: d.configRevision,
          waitingFor: "memory",
          neededBytes: refusal.neededBytes,
          freeBytes: refusal.freeBytes,
        });
      }
      return void (await this.#publish(
        app,
        this.#builtFrom(d, p, { state: "PENDING", taskId: 0, waitingFor: "memory", error: null }),
      ));
    }
    app.waitingForMemory = false;
    app.oomSeen = false;
    if (app.restartTimer) clearTimeout(app.restartTimer);
    app.restartTimer = undefined;
    const labels = labelsFor(d, "", restarts);
    let createdContainer = false;
    let pid = 0;
    let booting: Promise<void> = Promise.resolve();
    const created = (): Promise<void> =>
      this.#event(uuid, "created", `task created with anchor PID ${pid}` + (p.vm ? `; ${p.vm.why}` : ""), {
        anchorPid: pid,
        configRevision: d.configRevision,
        ...(p.vm ? { accel: p.vm.accel } : {}),
      });
    try {
      await this.#starts.use(async () => {
        const container = existing
          ? // The spec is rebuilt with today's node facts (paths resolved again) at every start.
            this.#o.containerd.containers.update(
              { id: uuid, spec: p.spec, labels },
              { fieldPaths: ["spec", ...Object.keys(labels).map((k) => `labels.${k}`)] },
            )
          : this.#createContainer(d, p, "", restarts).then(() => {
              createdContainer = true;
            });
        await Promise.all([container, makeTaskDirs(p)]);
        // The checked host paths are mounted from what was checked, only while Tasks.Create runs.
        const create = (rootfs: Mount[]) =>
          tasks.create({ containerId: uuid, rootfs, stdout: p.logUri, stderr: p.logUri });
        const onDetachError = (err: Error) =>
          this.#log.warn({ uuid, err }, "cannot detach the staging mounts; retried at the next start");
        pid = (await withStagedMounts(p, create, { uuid, onDetachError })).pid;
        // Tasks.Start goes out first; Tasks.Wait right behind it still sees any exit, since
        // containerd keeps a task's exit status until Tasks.Delete, which only this executor does.
        const starting = tasks.start(uuid);
        this.#ensureWait(app, pid);
        // BOOTING goes out while Tasks.Start runs: statuses of one app leave this connection in
        // order, so RUNNING can never overtake it. It waits one turn of the event loop, so the
        // Start and Wait requests are on the socket before its work begins (http2 writes in the
        // loop's check phase). Its event waits until Tasks.Start has returned: the outbox's
        // fdatasync would compete with runc for the node's cores. A BOOTING that cannot be
        // published never fails the start (RUNNING follows; if NATS is gone, that one fails and
        // the reconcile is retried, adopting the task).
        const anchor = pid;
        booting = (async () => {
          await new Promise((r) => setImmediate(r));
          const status = this.#builtFrom(d, p, {
            state: "BOOTING",
            taskId: anchor,
            lastTaskId: anchor,
            anchorStartTicks: readProcStatSync(anchor)?.startTimeTicks ?? null,
            exitCode: null,
            signal: null,
            oomKilled: false,
            finishedAt: null,
            restarts: restarts.restartTimes.length,
            waitingFor: null,
            error: null,
          });
          await this.#publish(app, status);
        })().catch((err: unknown) => {
          this.#log.warn({ uuid, err, anchorPid: anchor }, "cannot publish BOOTING; RUNNING follows");
        });
        try {
          await starting;
        } finally {
          await booting;
        }
      });
    } catch (err) {
      if (pid) await created();
      if (isUnavailable(err) || (createdContainer === false && !existing && isAlreadyExists(err))) throw err;
      const message = `cannot start the task: ${(err as Error).message}`;
      this.#log.error({ uuid, err, anchorPid: pid }, message);
      if (pid) await this.#discardTask(app, pid).catch(() => undefined);
      if (createdContainer) await this.#deleteContainer(uuid).catch(() => undefined);
      this.#releaseMemory(uuid);
      return this.#reject(app, d, message, false);
    }
    const startedAt = new Date().toISOString();
    await this.#publish(app, {
      state: "RUNNING",
      taskId: pid,
      lastTaskId: pid,
      startedAt,
      anchorStartTicks: app.status?.anchorStartTicks ?? readProcStatSync(pid)?.startTimeTicks ?? null,
    });
    this.#log.info(
      { uuid, event: "started", anchorPid: pid, configRevision: d.configRevision },
      "task running",
    );
    await created();
    await this.#event(uuid, "started", `task started, anchor PID ${pid}`, {
      anchorPid: pid,
      configRevision: d.configRevision,
    });
  }

  /** Kills and deletes a task that must not run (a failed start, a left-over created task). */
  async #discardTask(app: AppState, pid: number): Promise<void> {
    const tasks = this.#o.containerd.tasks;
    this.#ensureWait(app, pid);
    await unlessGone(tasks.kill(app.uuid, "SIGKILL", { all: true }));
    await within(app.wait?.exit, this.#o.killTimeoutMs ?? 10_000);
    await unlessGone(tasks.delete(app.uuid));
    app.wait = undefined;
    this.#releaseMemory(app.uuid);
  }

  /**
   * Stops a task as the design says: a container gets SIGTERM to all its processes,
   * `stopTimeoutMs`, then SIGKILL; a VM (its QMP socket exists) gets QMP `system_powerdown`,
   * `stopTimeoutMs`, QMP `quit`, `vmQuitTimeoutMs`, then SIGKILL. Then records the exit, with the
   * step that ended it, and deletes the task. The container stays.
   */
  async #stopTask(app: AppState, pid: number, reason: string): Promise<void> {
    const uuid = app.uuid;
    const tasks = this.#o.containerd.tasks;
    app.stopping = true;
    try {
      await this.#publish(app, { state: "HALTING" });
      const socketPath = qmpSocketPath(this.#o.facts.runDir, uuid);
      const vm = existsSync(socketPath);
      const quitMs = this.#o.vmQuitTimeoutMs ?? 5000;
      await this.#event(
        uuid,
        "stopping",
        vm
          ? `stopping: ${reason} (QMP system_powerdown, quit after ${app.stopTimeoutMs} ms, SIGKILL ${quitMs} ms later)`
          : `stopping: ${reason}`,
        { anchorPid: pid, timeoutMs: app.stopTimeoutMs, ...(vm ? { quitTimeoutMs: quitMs } : {}) },
      );
      this.#ensureWait(app, pid);
      const wait = app.wait?.exit;
      let exited = false;
      let viaSignal = !vm;
      if (vm) {
        const result = await stopVmByQmp({
          socketPath,
          exited: wait,
          powerdownTimeoutMs: app.stopTimeoutMs,
          quitTimeoutMs: quitMs,
          onStep: async (step, previousError) => {
            if (step === "quit") {
              const why = previousError
                ? `system_powerdown failed (${previousError})`
                : `no exit ${app.stopTimeoutMs} ms after system_powerdown`;
              await this.#event(uuid, "stopping", `${why}: sent QMP quit`, { anchorPid: pid, step });
            }
          },
        });
        if (result.ended) {
          app.stoppedBy = result.ended;
          exited = true;
        } else if ("noQmp" in result) {
          // No QMP (qemu not answering on its socket): qemu also ends cleanly on SIGTERM.
          this.#log.warn({ uuid, err: result.noQmp }, "QMP unreachable; stopping the VM with SIGTERM");
          viaSignal = true;
        }
      }
      if (viaSignal) {
        await unlessGone(tasks.kill(uuid, "SIGTERM", { all: true }));
        exited = await within(wait, app.stopTimeoutMs);
        if (exited) app.stoppedBy = "SIGTERM";
      }
      if (!exited) {
        await unlessGone(tasks.kill(uuid, "SIGKILL", { all: true }));
        const after = viaSignal ? `${app.stopTimeoutMs} ms after SIGTERM` : `${quitMs} ms after QMP quit`;
        await this.#event(uuid, "killed", `no exit ${after}: sent SIGKILL`, {
          anchorPid: pid,
          step: "SIGKILL",
        });
        app.stoppedBy = "SIGKILL";
        exited = await within(wait, this.#o.killTimeoutMs ?? 10_000);
      }
      if (!exited)
        this.#log.warn({ uuid, anchorPid: pid }, "no exit after SIGKILL; deleting the task anyway");
      await this.#finishTask(app, pid);
    } finally {
      app.stopping = false;
      app.stoppedBy = undefined;
    }
  }

  /**
   * Records a task's exit in TaskStatus and deletes the task. HALTED when stopped on
   * request or exited 0; BROKEN when it exited non-zero by itself or the restart policy gave
   * up. The exit status is what Tasks.Delete returns: TaskStatus says taskId 0 exactly when no
   * containerd task exists. `labels` (the container's, when the caller has them) spare a read.
   */
  async #finishTask(app: AppState, pid: number, labels?: LabelView): Promise<void> {
    const uuid = app.uuid;
    // OOM evidence first: Tasks.Delete takes the cgroup with it.
    const oomKills = this.#o.readOomKills ? await this.#o.readOomKills(uuid).catch(() => null) : null;
    const exit: ExitStatus | undefined = await unlessGone(this.#o.containerd.tasks.delete(uuid));
    this.#releaseMemory(uuid);
    const exitedAt = exit?.exitedAt ?? null;
    app.wait = undefined;
    const oomKilled = app.oomSeen || (oomKills ?? 0) > 0;
    app.oomSeen = false;
    const requested = app.stopping;
    const code = exit === undefined ? null : Math.min(exit.exitStatus, 255);
    const signal = code === null ? null : exitSignal(code);

    // Ended by itself: the restart policy decides now, once per exit, and its decision goes
    // into the labels with how the task ended, so a restarted executor keeps to it.
    const d = app.desired?.status === "READY" ? app.desired : undefined;
    let restarts: RestartLabels | undefined;
    let decision: ReturnType<typeof decideRestart> | undefined;
    if (!requested && d) {
      const current = labels ?? (await this.#getContainer(uuid).then((c) => c && readLabels(c.labels)));
      const now = Date.now();
      const times = inWindow(d.restartPolicy, current?.restartTimes ?? [], now);
      decision = decideRestart(d.restartPolicy, { exitCode: code, signal }, times, now);
      const due =
        decision.action === "restart"
          ? (exitedAt?.getTime() ?? now) + decision.delayMs
          : decision.action === "give-up"
            ? "gave-up"
            : "";
      restarts = { restartTimes: times, restartDue: due };
    }
    const gaveUp = decision?.action === "give-up";
    const state = !gaveUp && (requested || code === 0) ? "HALTED" : "BROKEN";
    const stoppedBy = requested ? app.stoppedBy : undefined;
    const how =
      (code === null ? "exit status unknown" : signal ? `killed by ${signal}` : `exit code ${code}`) +
      (oomKilled ? " (out of memory: the kernel's OOM killer acted in the task)" : "") +
      (stoppedBy === "system_powerdown" || stoppedBy === "quit" ? ` after QMP ${stoppedBy}` : "");
    this.#log.info(
      { uuid, event: "exited", anchorPid: pid, exitCode: code, signal, oomKilled, requested },
      `task ended: ${how}`,
    );
    // The labels, the events and the status go out together. Events go to the outbox, which
    // keeps them through a NATS outage; a failed status publish makes the reconcile retry from
    // the status kept in memory (the task is deleted by then, so this is the only chance).
    const labelled = unlessGone(
      this.#updateLabels(uuid, {
        [EXECUTOR_LABELS.ended]: requested ? "stopped" : "exited",
        ...(restarts ? restartLabels(restarts) : {}),
      }),
    ).catch((err: unknown) =>
      this.#log.warn({ uuid, err }, "cannot record in the container's labels how the task ended"),
    );
    const emitted = (async () => {
      await this.#event(uuid, "exited", `anchor PID ${pid} ended: ${how}`, {
        anchorPid: pid,
        exitCode: code,
        signal,
        oomKilled,
        requested,
        ...(stoppedBy ? { stoppedBy } : {}),
      });
      if (decision && d && d.restartPolicy.mode !== "never") {
        const restarting = decision.action === "restart";
        this.#log.info(
          { uuid, event: restarting ? "restarting" : "not-restarting", mode: d.restartPolicy.mode },
          decision.message,
        );
        await this.#event(uuid, restarting ? "restarting" : "not-restarting", decision.message, {
          mode: d.restartPolicy.mode,
          restartsInWindow: restarts?.restartTimes.length ?? 0,
          ...(decision.action === "restart" ? { delayMs: decision.delayMs, attempt: decision.attempt } : {}),
          gaveUp,
        });
      }
    })();
    try {
      await this.#publish(app, {
        state,
        taskId: 0,
        lastTaskId: pid,
        anchorStartTicks: null,
        exitCode: code,
        signal,
        oomKilled,
        finishedAt: (exitedAt ?? new Date()).toISOString(),
        ...(restarts ? { restarts: restarts.restartTimes.length } : {}),
        ...(gaveUp && d && decision ? { error: executorError(decision.message, d.configRevision) } : {}),
      });
    } finally {
      await Promise.all([labelled, emitted]);
    }
  }

  /** The config is gone (or moved to another node): stop, delete the container, then the status. */
  async #remove(app: AppState, container: Container | undefined, task: Process | undefined): Promise<void> {
    const uuid = app.uuid;
    app.waitingForMemory = false;
    if (app.restartTimer) clearTimeout(app.restartTimer);
    app.restartTimer = undefined;
    if (task) await this.#stopTask(app, task.pid, "the config was deleted");
    // Also what a start that never got a task (containerd unreachable) still held.
    this.#releaseMemory(uuid);
    if (container) await this.#deleteContainer(uuid);
    if (app.status) {
      await this.#status.unpublish(uuid);
      await removeTaskDir(dirname(taskLogPath(this.#o.facts.dataDir, uuid)));
      await rm(vmRunDir(this.#o.facts.runDir, uuid), { recursive: true, force: true });
      this.#log.info({ uuid, event: "deleted" }, "app removed");
      await this.#event(uuid, "deleted", "container and status deleted", {});
    }
    if (!app.desired) this.#apps.delete(uuid);
  }

  // ---- publishing --------------------------------------------------------------------------

  /** Publishes the app's TaskStatus with `patch` applied; nothing is sent when only the time would change. */
  async #publish(app: AppState, patch: Partial<TaskStatus>): Promise<void> {
    const d = app.desired;
    const base =
      app.status ??
      initialStatus({
        uuid: app.uuid,
        node: this.#o.facts.node,
        configRevision: d?.configRevision ?? 1,
        version: d?.version ?? null,
        logPath: taskLogPath(this.#o.facts.dataDir, app.uuid),
        now: new Date(),
      });
    const next: TaskStatus = {
      ...base,
      ...patch,
      node: this.#o.facts.node,
      updatedAt: new Date().toISOString(),
    };
    if (next.taskId === 0) next.anchorStartTicks = null;
    if (app.status && jsonEqual({ ...app.status, updatedAt: "" }, { ...next, updatedAt: "" })) return;
    app.status = next;
    await this.#status.publish(app.uuid, next);
  }

  async #event(
    uuid: string,
    type: TaskEventType,
    message: string,
    fields: Record<string, string | number | boolean | null>,
  ): Promise<void> {
    if (!this.#o.outbox) return;
    try {
      await this.#o.outbox.emit({
        schemaVersion: 1,
        uuid,
        type,
        time: new Date().toISOString(),
        message,
        fields,
      });
    } catch (err) {
      this.#log.warn({ uuid, err, type }, "cannot record task event");
    }
  }
}
