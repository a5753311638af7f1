/**
 * The act step: carries out one {@link Action} of the planner against containerd, the host and
 * the bus, in the design's call order (Containers.Create → Tasks.Create → Tasks.Wait issued →
 * Tasks.Start; the exit recorded before Tasks.Delete; a failed start rolled back), and publishes
 * TaskStatus and events at every transition. It decides nothing the planner could: each method
 * does what its action says.
 */
import type { Logger } from "pino";
import { backoffDelayMs } from "@eve-tasks/backoff";
import { exitSignal } from "@eve-tasks/containerd";
import { readProcStatSync } from "@eve-tasks/procfs";
import type { ReadyTaskConfig, StageError, TaskConfig, TaskStatus } from "@eve-tasks/schemas";
import type { MemoryLedger } from "./admission.js";
import type { AdmissionRefusal } from "./admission.js";
import type { AppState, LiveTask } from "./app-state.js";
import type { ExecutorTunables } from "./defaults.js";
import type { TaskHostResource, TearDownScope } from "./host-resources.js";
import type { Semaphore } from "./keyed-runner.js";
import { FRESH_LABELS, readLabels } from "./labels.js";
import type { LabelState, LabelView, LabelWriter } from "./labels.js";
import { planExit } from "./plan.js";
import type { Action, StopCause } from "./plan.js";
import type { NodeFacts } from "./node-facts.js";
import type { PreparedTask } from "./prepare-task.js";
import { isRuntimeError } from "./runtime.js";
import type { CreateTaskRequest, TaskRuntime } from "./runtime.js";
import { withStagedMounts } from "./staged-mounts.js";
import { executorError } from "./status.js";
import { builtFrom, sameError } from "./status-writer.js";
import type { StatusWriter, TaskEvents } from "./status-writer.js";
import { resolveStopKind, stopTask, stoppingMessage } from "./stop.js";
import type { StopStep } from "./stop.js";
import { qmpSocketPath } from "./runtime-task.js";
import { within } from "./within.js";

/** What the acts work with. */
export interface LifecycleDeps {
  readonly runtime: TaskRuntime;
  readonly labels: LabelWriter;
  readonly status: StatusWriter;
  readonly events: TaskEvents;
  readonly ledger: MemoryLedger;
  readonly facts: NodeFacts;
  readonly tunables: ExecutorTunables;
  readonly resources: readonly TaskHostResource[];
  readonly starts: Semaphore;
  readonly logger: Logger;
  readonly readOomKills: ((uuid: string) => Promise<number | null>) | undefined;
  /** Asks for a reconcile of `uuid` (its task exited, a wait must be issued again). */
  kick(uuid: string): void;
  /** `uuid` released its memory: apps waiting for memory get another look. */
  memoryReleased(uuid: string): void;
  /** The executor is closing: notices no longer wake reconciles. */
  closing(): boolean;
}

/** What a stop did, for whoever asked for it. */
export interface StopReport {
  uuid: string;
  taskId: number;
  /** The step that ended the task; null when it did not end (it was deleted anyway). */
  stoppedBy: StopStep | null;
  exitCode: number | null;
}

/** The task lifecycle: one method per action that acts. */
export class Lifecycle {
  readonly #d: LifecycleDeps;
  readonly #log: Logger;

  constructor(deps: LifecycleDeps) {
    this.#d = deps;
    this.#log = deps.logger;
  }

  // ---- tasks ------------------------------------------------------------------------------

  /** Issues Tasks.Wait for `pid` unless one is pending; its return wakes a reconcile. */
  ensureWait(app: AppState, pid: number): LiveTask {
    if (app.task?.pid === pid) return app.task;
    const { runtime, tunables } = this.#d;
    const exit = runtime.waitTask(app.uuid).then(
      (s) => {
        if (!this.#d.closing()) this.#d.kick(app.uuid);
        return s;
      },
      (err: unknown) => {
        if (app.task === live) app.task = undefined;
        if (!this.#d.closing() && !isRuntimeError(err, "not-found")) {
          this.#log.warn({ uuid: app.uuid, err }, "Tasks.Wait ended without an exit; checking again");
          setTimeout(() => this.#d.kick(app.uuid), tunables.waitRetryMs).unref();
        }
        return undefined;
      },
    );
    const live: LiveTask = { pid, exit, oomSeen: false, stopping: undefined };
    app.task = live;
    return live;
  }

  /**
   * Creates and starts a task (Tasks.Create → Tasks.Start, Tasks.Wait issued right behind it and
   * not awaited). Memory is held first; the host resources are set up alongside the container.
   * A failure rolls back what this call created and rejects the revision; a container that
   * appeared meanwhile (`exists`) and an unreachable containerd are thrown to the reconcile.
   */
  async start(
    app: AppState,
    d: ReadyTaskConfig,
    p: PreparedTask,
    action: Extract<Action, { kind: "start" }>,
  ): Promise<void> {
    const uuid = app.uuid;
    const { runtime, labels: writer, ledger, resources } = this.#d;
    // The planner saw the memory free; holding it is synchronous, so no other start takes it.
    const refusal = ledger.admit(uuid, p.memoryLimitBytes);
    if (refusal) return this.awaitMemory(app, d, p, refusal);
    const state: LabelState = { ended: "", restarts: action.restarts };
    let createdContainer = false;
    let pid = 0;
    let booting: Promise<void> = Promise.resolve();
    const created = (): Promise<void> =>
      this.#d.events.emit(
        uuid,
        "created",
        `task created with anchor PID ${pid}` +
          (p.runtime ? `; ${p.runtime.why}` : "") +
          (p.emulation ? `; ${p.emulation.arch} under ${p.emulation.binfmt.interpreter}` : ""),
        {
          anchorPid: pid,
          configRevision: d.configRevision,
          ...(p.runtime ? { accel: p.runtime.accel } : {}),
          ...(p.emulation ? { arch: p.emulation.arch, emulator: p.emulation.binfmt.interpreter } : {}),
        },
      );
    try {
      await this.#d.starts.use(async () => {
        const container = action.container
          ? // The spec is rebuilt with today's node facts (paths resolved again) at every start.
            writer.rebuild(d, p.spec, state)
          : writer.create(d, p.spec, state).then(() => {
              createdContainer = true;
            });
        await Promise.all([container, ...resources.map((r) => r.setUp(uuid, p))]);
        // The checked host paths are mounted from what was checked, only while Tasks.Create
        // runs; Tasks.Create takes the rootfs it is given (a root volume named by its open file).
        pid = (
          await withStagedMounts(
            p,
            (rootfs) => this.#createTask({ id: uuid, rootfs, ...p.io }, createdContainer),
            {
              uuid,
              onDetachError: (err) =>
                this.#log.warn({ uuid, err }, "cannot detach the staging mounts; retried at the next start"),
            },
          )
        ).pid;
        // What must hold before the task's own process runs (a network's filters).
        await Promise.all(resources.map((r) => r.beforeStart?.(uuid, p) ?? Promise.resolve()));
        // Tasks.Start goes out first; Tasks.Wait right behind it still sees any exit, since
        // containerd keeps a task's exit status until Tasks.Delete, which only this executor does.
        const starting = runtime.startTask(uuid);
        this.ensureWait(app, pid);
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
          await this.#d.status.publish(
            uuid,
            d,
            builtFrom(d, p, {
              state: "BOOTING",
              taskId: anchor,
              lastTaskId: anchor,
              anchorStartTicks: readProcStatSync(anchor)?.startTimeTicks ?? null,
              exitCode: null,
              signal: null,
              oomKilled: false,
              finishedAt: null,
              restarts: action.restarts.restartTimes.length,
              waitingFor: null,
              error: null,
            }),
          );
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
      // An unreachable containerd, or a container or task that appeared after the look (a killed
      // predecessor's call landing late): the reconcile looks again before acting.
      if (isRuntimeError(err, "unavailable") || (!createdContainer && !pid && isRuntimeError(err, "exists")))
        throw err;
      const message = `cannot start the task: ${(err as Error).message}`;
      this.#log.error({ uuid, err, anchorPid: pid }, message);
      if (pid) await this.discard(app, pid).catch(() => undefined);
      else await this.#tearDown(uuid, "task-deleted");
      // A container is never deleted under a task: that task could not be reached any more.
      if (createdContainer && !(await runtime.getTask(uuid).catch(() => undefined)))
        await runtime.deleteContainer(uuid).catch(() => undefined);
      this.#releaseMemory(uuid);
      // Tried again with back-off while the config stays the same; reported once.
      const previous = app.startFailure;
      const same = previous?.configRevision === d.configRevision && previous.specSha256 === d.specSha256;
      const attempts = same ? previous.attempts + 1 : 1;
      const retryInMs = backoffDelayMs(attempts, this.#d.tunables.startRetry);
      app.startFailure = {
        configRevision: d.configRevision,
        specSha256: d.specSha256,
        attempts,
        retryAtMs: Date.now() + retryInMs,
        message,
      };
      this.#log.info(
        { uuid, attempts, retryInMs },
        "the start will be tried again unless the config changes",
      );
      return this.reject(app, d, message, false);
    }
    app.startFailure = undefined;
    const startedAt = new Date().toISOString();
    const current = this.#d.status.get(uuid);
    await this.#d.status.publish(uuid, d, {
      state: "RUNNING",
      taskId: pid,
      lastTaskId: pid,
      startedAt,
      anchorStartTicks: current?.anchorStartTicks ?? readProcStatSync(pid)?.startTimeTicks ?? null,
    });
    this.#log.info(
      { uuid, event: "started", anchorPid: pid, configRevision: d.configRevision },
      "task running",
    );
    await created();
    await this.#d.events.emit(uuid, "started", `task started, anchor PID ${pid}`, {
      anchorPid: pid,
      configRevision: d.configRevision,
    });
    for (const r of resources) {
      await r
        .started?.(uuid, p)
        .catch((err: unknown) =>
          this.#log.warn({ uuid, err, resource: r.name }, "cannot tidy up after the start"),
        );
    }
  }

  /**
   * Tasks.Create, clearing first what containerd keeps of a task that is not this app's. An
   * executor killed while containerd carries out its calls can leave a task behind:
   * - a task whose container record was deleted: the container this start has just created
   *   (`containerIsNew`) is not its, so it is killed and deleted here;
   * - a shim still registered while Tasks.Get finds no task: Tasks.Delete clears that record.
   * Either way Tasks.Create would answer ALREADY_EXISTS for ever. A task of an older container
   * is not touched here: `exists` goes back to the reconcile, whose plan discards, finishes or
   * adopts it.
   */
  async #createTask(request: CreateTaskRequest, containerIsNew: boolean): Promise<{ pid: number }> {
    const { runtime, tunables } = this.#d;
    const uuid = request.id;
    try {
      return await runtime.createTask(request);
    } catch (err) {
      if (!isRuntimeError(err, "exists")) throw err;
      const there = await runtime.getTask(uuid);
      if (there && !containerIsNew) throw err;
      this.#log.warn(
        {
          uuid,
          event: "left-over-task-deleted",
          anchorPid: there?.pid ?? null,
          status: there?.status ?? null,
        },
        there
          ? `a task older than its container is left (anchor PID ${there.pid}): killing and deleting it`
          : "containerd keeps a record of a task that is not there: deleting it",
      );
      if (there && there.status !== "STOPPED") {
        const exited = runtime.waitTask(uuid).catch(() => undefined);
        await runtime.killTask(uuid, "SIGKILL", { all: true });
        await within(exited, tunables.killTimeoutMs);
      }
      await runtime.deleteTask(uuid);
      return await runtime.createTask(request);
    }
  }

  /** Kills and deletes a task that must not run (a failed start, a left-over created task). */
  async discard(app: AppState, pid: number): Promise<void> {
    const { runtime, tunables } = this.#d;
    const live = this.ensureWait(app, pid);
    await runtime.killTask(app.uuid, "SIGKILL", { all: true });
    await within(live.exit, tunables.killTimeoutMs);
    await runtime.deleteTask(app.uuid);
    app.task = undefined;
    this.#releaseMemory(app.uuid);
    await this.#tearDown(app.uuid, "task-deleted");
  }

  /**
   * Stops a task by its stop kind (see stop.ts), then records the exit, with the step that ended
   * it, and deletes the task. The container stays.
   */
  async stop(
    app: AppState,
    pid: number,
    reason: string,
    cause: StopCause,
    labels: LabelView | undefined,
  ): Promise<StopReport> {
    const uuid = app.uuid;
    const { runtime, tunables, facts } = this.#d;
    const live = this.ensureWait(app, pid);
    live.stopping = { by: undefined };
    await this.#d.status.publish(uuid, app.desired, { state: "HALTING" });
    const socket = qmpSocketPath(facts.runDir, uuid);
    const kind = resolveStopKind(labels?.stop, socket);
    const signal = labels?.stopSignal ?? "SIGTERM";
    const timeouts = {
      // A guest that never showed a sign of life cannot answer the power button: quit at once.
      stopTimeoutMs: cause === "boot-watchdog" ? 0 : app.stopTimeoutMs,
      quitTimeoutMs: tunables.vmQuitTimeoutMs,
      killTimeoutMs: tunables.killTimeoutMs,
      qmpConnectTimeoutMs: tunables.qmpConnectTimeoutMs,
    };
    this.#log.info({ uuid, event: "stopping", anchorPid: pid, kind, cause }, `stopping: ${reason}`);
    await this.#d.events.emit(uuid, "stopping", stoppingMessage(kind, reason, { ...timeouts, signal }), {
      anchorPid: pid,
      timeoutMs: timeouts.stopTimeoutMs,
      ...(kind === "qmp" ? { quitTimeoutMs: timeouts.quitTimeoutMs } : {}),
    });
    const outcome = await stopTask({
      runtime,
      id: uuid,
      kind,
      signal,
      qmpSocketPath: socket,
      exited: live.exit,
      ...timeouts,
      onStep: (step, message) =>
        this.#d.events.emit(uuid, step === "SIGKILL" ? "killed" : "stopping", message, {
          anchorPid: pid,
          step,
        }),
      onNoQmp: (error) =>
        this.#log.warn({ uuid, err: error }, `QMP unreachable; stopping the task with ${signal}`),
    });
    live.stopping = { by: outcome.by };
    if (!outcome.exited)
      this.#log.warn({ uuid, anchorPid: pid }, "no exit after SIGKILL; deleting the task anyway");
    const exit = await this.finish(app, pid, labels);
    return { uuid, taskId: pid, stoppedBy: outcome.exited ? outcome.by : null, exitCode: exit.code };
  }

  /**
   * Records a task's exit in TaskStatus and deletes the task (see `planExit` for what the exit
   * means). The exit status is what Tasks.Delete returns: TaskStatus says taskId 0 exactly when no
   * containerd task exists. `labels` (the container's, when the caller has them) spare a read.
   */
  async finish(app: AppState, pid: number, labels?: LabelView): Promise<{ code: number | null }> {
    const uuid = app.uuid;
    const { runtime } = this.#d;
    // OOM evidence first: Tasks.Delete takes the cgroup with it.
    const oomKills = this.#d.readOomKills ? await this.#d.readOomKills(uuid).catch(() => null) : null;
    const exit = await runtime.deleteTask(uuid);
    this.#releaseMemory(uuid);
    const live = app.task?.pid === pid ? app.task : undefined;
    app.task = undefined;
    const oomKilled = (live?.oomSeen ?? false) || (oomKills ?? 0) > 0;
    const requested = live?.stopping !== undefined;
    const stoppedBy = live?.stopping?.by;
    const code = exit === undefined ? null : Math.min(exit.exitStatus, 255);
    const signal = code === null ? null : exitSignal(code);
    const exitedAt = exit?.exitedAt ?? null;

    const d = app.desired;
    const needsHistory = !requested && d?.status === "READY";
    const history = needsHistory
      ? (labels ?? (await runtime.getContainer(uuid).then((c) => c && readLabels(c.labels))))
      : undefined;
    const outcome = planExit({
      desired: d,
      exit: { code, signal },
      requested,
      labels: history,
      exitedAtMs: exitedAt?.getTime(),
      nowMs: Date.now(),
    });
    const { decision, restarts } = outcome;
    const gaveUp = decision?.action === "give-up";
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
    const labelled = this.#d.labels
      .recordEnd(uuid, requested ? "stopped" : "exited", restarts)
      .catch((err: unknown) =>
        this.#log.warn({ uuid, err }, "cannot record in the container's labels how the task ended"),
      );
    const emitted = (async () => {
      await this.#d.events.emit(uuid, "exited", `anchor PID ${pid} ended: ${how}`, {
        anchorPid: pid,
        exitCode: code,
        signal,
        oomKilled,
        requested,
        ...(stoppedBy ? { stoppedBy } : {}),
      });
      if (decision && d?.status === "READY" && d.restartPolicy.mode !== "never") {
        const restarting = decision.action === "restart";
        this.#log.info(
          { uuid, event: restarting ? "restarting" : "not-restarting", mode: d.restartPolicy.mode },
          decision.message,
        );
        await this.#d.events.emit(uuid, restarting ? "restarting" : "not-restarting", decision.message, {
          mode: d.restartPolicy.mode,
          restartsInWindow: restarts?.restartTimes.length ?? 0,
          ...(decision.action === "restart" ? { delayMs: decision.delayMs, attempt: decision.attempt } : {}),
          gaveUp,
        });
      }
    })();
    try {
      await this.#d.status.publish(uuid, d, {
        state: outcome.state,
        taskId: 0,
        lastTaskId: pid,
        anchorStartTicks: null,
        exitCode: code,
        signal,
        oomKilled,
        finishedAt: (exitedAt ?? new Date()).toISOString(),
        ...(restarts ? { restarts: restarts.restartTimes.length } : {}),
        ...(gaveUp && d ? { error: executorError(decision.message, d.configRevision) } : {}),
      });
    } finally {
      // The task's host resources go after the status: nothing in it waits for them.
      await Promise.all([labelled, emitted, this.#tearDown(uuid, "task-deleted")]);
    }
    return { code };
  }

  // ---- containers and apps --------------------------------------------------------------------

  /** Deletes a container built from another spec (its task already stopped). */
  async replace(app: AppState): Promise<void> {
    await this.#d.runtime.deleteContainer(app.uuid);
  }

  /** The config is gone: delete the container, the task's host resources, then the status. */
  async remove(app: AppState, container: boolean): Promise<void> {
    const uuid = app.uuid;
    // Also what a start that never got a task (containerd unreachable) still held.
    this.#releaseMemory(uuid);
    if (container) await this.#d.runtime.deleteContainer(uuid);
    await this.#tearDown(uuid, "app-removed");
    if (this.#d.status.get(uuid)) {
      await this.#d.status.unpublish(uuid);
      this.#log.info({ uuid, event: "deleted" }, "app removed");
      await this.#d.events.emit(uuid, "deleted", "container and status deleted", {});
    }
  }

  /** `activate` is false: the container exists, no task (HALTED or BROKEN stay as they were). */
  async install(
    app: AppState,
    d: ReadyTaskConfig,
    p: PreparedTask,
    action: Extract<Action, { kind: "install" }>,
  ): Promise<void> {
    this.#releaseMemory(app.uuid);
    if (action.create) await this.#d.labels.create(d, p.spec, FRESH_LABELS);
    else if (action.relabel) await this.#d.labels.relabel(d, action.relabel);
    await this.#d.status.publish(
      app.uuid,
      d,
      builtFrom(d, p, { state: action.state, error: null, waitingFor: null }),
    );
  }

  /** The running task is what is wanted: keep it (same PID, no restart). */
  async adopt(
    app: AppState,
    d: ReadyTaskConfig,
    p: PreparedTask,
    action: Extract<Action, { kind: "adopt" }>,
  ): Promise<void> {
    const uuid = app.uuid;
    if (action.relabel) await this.#d.labels.relabel(d, action.relabel);
    this.ensureWait(app, action.pid);
    if (!this.#d.ledger.holds(uuid)) this.#d.ledger.hold(uuid, p.memoryLimitBytes);
    const current = this.#d.status.get(uuid);
    const ticks =
      current?.taskId === action.pid && current.anchorStartTicks !== null
        ? current.anchorStartTicks
        : (readProcStatSync(action.pid)?.startTimeTicks ?? null);
    await this.#d.status.publish(
      uuid,
      d,
      builtFrom(d, p, {
        state: "RUNNING",
        taskId: action.pid,
        lastTaskId: action.pid,
        anchorStartTicks: ticks,
        startedAt: current?.startedAt ?? null,
        restarts: action.restarts,
        error: null,
        waitingFor: null,
      }),
    );
  }

  /** It ended by itself; the restart policy's decision stands (the caller wakes at `dueAtMs`). */
  async awaitRestart(
    app: AppState,
    d: ReadyTaskConfig,
    p: PreparedTask,
    action: Extract<Action, { kind: "awaitRestart" }>,
  ): Promise<void> {
    if (action.relabel) await this.#d.labels.relabel(d, action.relabel);
    await this.#d.status.publish(
      app.uuid,
      d,
      builtFrom(d, p, {
        state: action.state,
        waitingFor: null,
        ...(action.keepError ? {} : { error: null }),
      }),
    );
  }

  /** PENDING until memory frees up: every exit and removal wakes the apps that wait. */
  async awaitMemory(
    app: AppState,
    d: ReadyTaskConfig,
    p: PreparedTask,
    refusal: AdmissionRefusal,
  ): Promise<void> {
    const uuid = app.uuid;
    const current = this.#d.status.get(uuid);
    if (!(current?.state === "PENDING" && current.waitingFor === "memory")) {
      this.#log.info(
        {
          uuid,
          event: "waiting-for-memory",
          neededBytes: refusal.neededBytes,
          freeBytes: refusal.freeBytes,
        },
        refusal.message,
      );
      await this.#d.events.emit(uuid, "received", refusal.message, {
        configRevision: d.configRevision,
        waitingFor: "memory",
        neededBytes: refusal.neededBytes,
        freeBytes: refusal.freeBytes,
      });
    }
    await this.#d.status.publish(
      uuid,
      d,
      builtFrom(d, p, { state: "PENDING", taskId: 0, waitingFor: "memory", error: null }),
    );
  }

  // ---- statuses only ----------------------------------------------------------------------

  /** The config carries an earlier stage's error: FAILED, or the error beside a running task. */
  async fail(app: AppState, d: TaskConfig, error: StageError, running: boolean): Promise<void> {
    if (running) return this.#d.status.publish(app.uuid, d, { error });
    await this.#d.status.publish(app.uuid, d, {
      state: "FAILED",
      configRevision: d.configRevision,
      version: d.version ?? null,
      taskId: 0,
      anchorStartTicks: null,
      waitingFor: null,
      error,
    });
  }

  /**
   * This revision cannot run here: keep a running task on its last good config, else FAILED. The
   * `error` event goes out when the error first shows, not again for the same error.
   */
  async reject(app: AppState, d: ReadyTaskConfig, message: string, running: boolean): Promise<void> {
    const error = executorError(message, d.configRevision);
    if (!sameError(this.#d.status.get(app.uuid)?.error, error)) {
      this.#log.warn({ uuid: app.uuid, configRevision: d.configRevision }, `config rejected: ${message}`);
      await this.#d.events.emit(app.uuid, "error", message, { configRevision: d.configRevision });
    }
    await this.fail(app, d, error, running);
  }

  /** The config waits for an earlier stage: PENDING, or `waitingFor` beside a running task. */
  async pending(
    app: AppState,
    d: TaskConfig,
    waitingFor: TaskStatus["waitingFor"],
    running: boolean,
  ): Promise<void> {
    if (running) return this.#d.status.publish(app.uuid, d, { waitingFor });
    await this.#d.status.publish(app.uuid, d, {
      state: "PENDING",
      configRevision: d.configRevision,
      version: d.version ?? null,
      waitingFor,
      error: null,
    });
  }

  /** containerd is unreachable: UNKNOWN (for an app that has a status); nothing is killed. */
  async unknown(app: AppState): Promise<void> {
    if (this.#d.status.get(app.uuid)) {
      await this.#d.status.publish(app.uuid, app.desired, { state: "UNKNOWN" });
    }
  }

  // ---- helpers ----------------------------------------------------------------------------

  #releaseMemory(uuid: string): void {
    if (this.#d.ledger.release(uuid)) this.#d.memoryReleased(uuid);
  }

  async #tearDown(uuid: string, scope: TearDownScope): Promise<void> {
    await Promise.all(
      this.#d.resources.map((r) =>
        r
          .tearDown(uuid, scope)
          .catch((err: unknown) =>
            this.#log.warn(
              { uuid, err, resource: r.name, scope },
              "cannot tear down a host resource of the task",
            ),
          ),
      ),
    );
  }
}
