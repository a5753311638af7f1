/**
 * The task-executor's reconciler: for every app of this node it drives containerd from the app's
 * TaskConfig and publishes TaskStatus at every transition.
 *
 * Each reconcile of an app is a loop: observe (containerd: the app's container and task), plan
 * (a pure decision: plan.ts), act (lifecycle.ts), until an action leaves nothing to do. Reconciles
 * are level-triggered and idempotent; those of one app never overlap and coalesce; different apps
 * proceed concurrently.
 */
import { join } from "node:path";
import { constants as osConstants } from "node:os";
import type { Logger } from "pino";
import { Backoff } from "@eve-tasks/backoff";
import { followEvents, subscribe } from "@eve-tasks/bus";
import type { Bus, EventFollower, Outbox, Subscription } from "@eve-tasks/bus";
import { messageTable } from "@eve-tasks/schemas";
import type { LogCursor, SignalReply, TaskConfig, TaskStatus, TaskConfigSchema } from "@eve-tasks/schemas";
import { logEndCursor } from "@eve-tasks/task-logs";
import { MemoryLedger } from "./admission.js";
import { newAppState } from "./app-state.js";
import type { AppState } from "./app-state.js";
import { executorDefaults } from "./defaults.js";
import type { ExecutorTunables } from "./defaults.js";
import { NodeFactError } from "./errors.js";
import { BootWatchdog, ownLinePrefixes, watchesBoot } from "./boot-watchdog.js";
import { binfmtEntries, taskDirs } from "./host-resources.js";
import type { TaskHostResource } from "./host-resources.js";
import { KeyedRunner, Semaphore } from "./keyed-runner.js";
import { LabelWriter, readLabels } from "./labels.js";
import { Lifecycle } from "./lifecycle.js";
import type { StopReport } from "./lifecycle.js";
import type { NodeFacts } from "./node-facts.js";
import type { ExecutorObserver, StartOutcome } from "./observer.js";
import { CHANGES_RUNTIME, NOTHING, plan } from "./plan.js";
import type { Action, Observed, Prepared } from "./plan.js";
import { prepareTask } from "./prepare-task.js";
import { RuntimeError, isRuntimeError } from "./runtime.js";
import type { TaskRuntime } from "./runtime.js";
import { executorError } from "./status.js";
import { relistKicks } from "./relist.js";
import { sweepStagedMounts } from "./staged-mounts.js";
import { StatusWriter, TaskEvents } from "./status-writer.js";
import type { TaskNetworks } from "./task-networks.js";
import { nodeArch } from "./runtime-task.js";
import type { AccelDecider } from "./runtime-task.js";
import type { PreparedTask } from "./prepare-task.js";

/** What the executor is built from; the tunables default to `EXECUTOR_DEFAULTS`. */
export interface TaskExecutorOptions extends Partial<ExecutorTunables> {
  bus: Bus;
  /** This node's containerd, in namespace `eve-user-apps` (see `containerdRuntime`). */
  runtime: TaskRuntime;
  facts: NodeFacts;
  logger: Logger;
  /** Where task events go; without one, no events are emitted. */
  outbox?: Outbox;
  /** Chooses each VM's accelerator (see `AccelChooser`); without one, VM configs are refused. */
  accel?: AccelDecider;
  /**
   * Reads how many OOM kills the task's cgroup saw, before Tasks.Delete removes it (null when
   * not readable). Besides it, containerd's `/tasks/oom` events count as evidence.
   */
  readOomKills?: (uuid: string) => Promise<number | null>;
  /**
   * What each task needs on the host besides containerd (see host-resources.ts). Default: the
   * task's directories; a resource given here comes after them.
   */
  hostResources?: readonly TaskHostResource[];
  /** Told of reconciles, actions, starts and events (the worker's metrics). */
  observer?: ExecutorObserver;
  /**
   * The node's network instances and the tasks' interfaces (a host resource too); without them,
   * an app with interfaces is refused.
   */
  networks?: TaskNetworks;
}

/** What a node stop ({@link TaskExecutor.stopTasks}) did. */
export interface NodeStopResult {
  stopped: StopReport[];
  /** Tasks still there after the stop, with why. */
  failed: { uuid: string; taskId: number; error: string }[];
}

/** The executor. */
export class TaskExecutor {
  readonly #o: TaskExecutorOptions;
  readonly #t: ExecutorTunables;
  readonly #log: Logger;
  readonly #runtime: TaskRuntime;
  readonly #status: StatusWriter;
  readonly #apps = new Map<string, AppState>();
  readonly #runner: KeyedRunner;
  readonly #ledger: MemoryLedger;
  readonly #resources: readonly TaskHostResource[];
  readonly #act: Lifecycle;
  readonly #events: TaskEvents;
  readonly #abort = new AbortController();
  readonly #observer: ExecutorObserver;
  readonly #watchdog = new BootWatchdog();
  #sub: Subscription<typeof TaskConfigSchema> | undefined;
  #synchronized = false;
  #closing = false;
  #nodeStopping = false;
  readonly #nodeStops: StopReport[] = [];
  #relist: NodeJS.Timeout | undefined;
  #runtimeEvents: Promise<void> | undefined;
  #monitorEvents: EventFollower | undefined;

  constructor(options: TaskExecutorOptions) {
    this.#o = options;
    this.#t = executorDefaults(options);
    this.#log = options.logger;
    this.#runtime = options.runtime;
    const facts = options.facts;
    this.#status = new StatusWriter(options.bus, { node: facts.node, dataDir: facts.dataDir });
    this.#runner = new KeyedRunner((uuid) => this.#reconcile(uuid));
    this.#ledger = new MemoryLedger(facts.memoryMiB - facts.memoryReserveMiB);
    this.#resources = [
      taskDirs(facts),
      binfmtEntries({
        linksDir: join(facts.dataDir, "binfmt"),
        onRegistered: (uuid, e) =>
          this.#log.info(
            { uuid, event: "binfmt-registered", arch: e.arch, emulator: e.interpreter, entry: e.name },
            `registered the emulator for ${e.arch} with binfmt_misc`,
          ),
      }),
      ...(options.networks ? [options.networks] : []),
      ...(options.hostResources ?? []),
    ];
    this.#observer = options.observer ?? {};
    this.#events = new TaskEvents(
      options.outbox,
      options.logger,
      this.#observer.emitted?.bind(this.#observer),
    );
    this.#act = new Lifecycle({
      runtime: this.#runtime,
      labels: new LabelWriter(this.#runtime),
      status: this.#status,
      events: this.#events,
      ledger: this.#ledger,
      facts,
      tunables: this.#t,
      resources: this.#resources,
      starts: new Semaphore(this.#t.startConcurrency),
      logger: options.logger,
      readOomKills: options.readOomKills,
      kick: (uuid) => this.#runner.kick(uuid),
      memoryReleased: (uuid) => this.#memoryReleased(uuid),
      closing: () => this.#closing,
    });
  }

  /**
   * Starts: detaches the staging mounts a crashed executor left (`sweepStagedMounts`), loads
   * the statuses it published before, follows TaskConfig until it is
   * synchronized, and only then looks at containerd and reconciles every app it finds
   * in either (adopting running tasks that match, removing containers nobody wants) and every
   * app a host resource holds something for. Resolves when that first pass is done.
   */
  async start(): Promise<void> {
    // Staging mounts left by an executor that died while creating a task (staged-mounts.ts):
    // detached before any reconcile can stage or remove a task dir.
    const swept = await sweepStagedMounts(this.#o.facts.dataDir);
    if (swept.length > 0) {
      this.#log.warn({ event: "staging-swept", mounts: swept }, "detached staging mounts left behind");
    }
    for (const uuid of await this.#status.load()) this.#app(uuid);
    this.#sub = await subscribe(this.#o.bus, {
      ...messageTable("TaskConfig"),
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
    this.#runtimeEvents = this.#followRuntimeEvents();
    this.#monitorEvents = followEvents(
      this.#o.bus,
      (e) => {
        if (e.fields.source === "proc-monitor" && this.#apps.has(e.uuid)) this.#runner.kick(e.uuid);
      },
      { types: ["exited"] },
    );
    const [containers, tasks] = await Promise.all([
      this.#runtime.listContainers(),
      this.#runtime.listTasks(),
    ]);
    await this.#endLeakedShims();
    for (const c of containers) this.#app(c.id);
    // Memory that existing tasks hold counts before any new task is admitted.
    const live = new Set(tasks.filter((t) => t.status !== "STOPPED").map((t) => t.id));
    for (const c of containers) {
      if (live.has(c.id)) this.#ledger.hold(c.id, c.memoryLimitBytes);
    }
    // The networks: instances applied (with the endpoints of every app already configured),
    // then what no wanted app or instance owns swept, before any task starts.
    await this.#o.networks?.start({
      kick: (uuid) => this.#runner.kick(uuid),
      apps: [...this.#apps.values()].flatMap((a) => (a.desired?.status === "READY" ? [a.desired] : [])),
      configured: new Set([...this.#apps.values()].flatMap((a) => (a.desired ? [a.uuid] : []))),
      live,
    });
    // The start-up sweep: what a host resource holds for an app nobody wants goes the way of a
    // deleted app's.
    for (const r of this.#resources) for (const uuid of await r.owners()) this.#app(uuid);
    this.#synchronized = true;
    this.#log.info(
      { event: "resync", apps: this.#apps.size },
      "TaskConfig synchronized; reconciling every app",
    );
    for (const uuid of [...this.#apps.keys()]) this.#runner.kick(uuid);
    await this.#runner.idle();
    if (this.#t.relistIntervalMs > 0) {
      this.#relist = setInterval(() => void this.#relistOnce(), this.#t.relistIntervalMs);
    }
  }

  /**
   * Before any task is created: ends the shims an earlier executor's Tasks.Create left without a
   * task when it died mid-start (leaked-shims.ts). A failure is logged; nothing depends on it.
   */
  async #endLeakedShims(): Promise<void> {
    try {
      for (const shim of await this.#runtime.endLeakedShims()) {
        this.#log.warn(
          { uuid: shim.id, event: "leaked-shim-ended", shimPid: shim.pid, signal: shim.signal },
          "ended a containerd shim left without a task (its Tasks.Create was cut short)",
        );
      }
    } catch (err) {
      this.#log.warn({ event: "leaked-shims-unchecked", err }, "could not look for leaked containerd shims");
    }
  }

  /**
   * The safety net under the exit notices: one listing of containerd's containers and tasks,
   * and a reconcile of every app that is not running steadily as wanted (see relist.ts).
   */
  async #relistOnce(): Promise<void> {
    let kicks: string[];
    try {
      const [containers, tasks] = await Promise.all([
        this.#runtime.listContainerLabels(),
        this.#runtime.listTasks(),
      ]);
      kicks = relistKicks({
        apps: this.#apps.values(),
        status: (uuid) => this.#status.get(uuid),
        containers,
        tasks,
        nodeStopping: this.#nodeStopping,
      });
    } catch {
      // containerd unreachable: each app's reconcile says so (UNKNOWN) and retries.
      kicks = [...this.#apps.keys()];
    }
    if (this.#closing) return;
    for (const uuid of kicks) this.#runner.kick(uuid);
  }

  /** Stops reconciling; tasks keep running (containerd's shims own them). */
  async stop(): Promise<void> {
    this.#closing = true;
    this.#abort.abort();
    this.#watchdog.close();
    if (this.#relist) clearInterval(this.#relist);
    for (const a of this.#apps.values()) this.#clearWake(a);
    await this.#monitorEvents?.close();
    await this.#runtimeEvents;
    await this.#sub?.close();
    await this.#runner.stop();
    // A task deletion reported early still finishes in containerd (the shim's shut-down): the
    // connection must outlive it, or containerd cuts it short and the shim stays behind.
    await this.#runtime.settled();
  }

  /**
   * Stops every task of this node (the launcher's Ctrl-C), each by its stop kind as any other
   * stop, and from then on starts nothing: containers stay, their labels say "stopped on
   * request", so the next executor on this node starts them again. Tasks in the namespace that
   * no config names are stopped too. Resolves when every stop is done.
   */
  async stopTasks(): Promise<NodeStopResult> {
    this.#nodeStopping = true;
    this.#nodeStops.length = 0;
    for (const a of this.#apps.values()) this.#clearWake(a);
    for (const t of await this.#runtime.listTasks()) this.#app(t.id);
    for (const uuid of this.#apps.keys()) this.#runner.kick(uuid);
    await this.#runner.idle();
    const stopped = [...this.#nodeStops];
    const failed = (await this.#runtime.listTasks()).map((t) => ({
      uuid: t.id,
      taskId: t.pid,
      error: `still there after the stop (${t.status})`,
    }));
    this.#log.info(
      { event: "node-stopped", stopped: stopped.length, failed: failed.length },
      "the node's tasks are stopped; nothing starts until the executor restarts",
    );
    return { stopped, failed };
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
    const status = this.#status.get(uuid);
    const pid = status?.taskId ?? 0;
    if (pid === 0) {
      return {
        accepted: false,
        error: `app ${uuid} has no running task (state ${status?.state ?? "unknown"})`,
      };
    }
    if (!(await this.#runtime.killTask(uuid, signal as NodeJS.Signals))) {
      return { accepted: false, error: `app ${uuid} has no running task` };
    }
    this.#log.info(
      { uuid, event: "signalled", anchorPid: pid, signal },
      `sent ${signal} to the anchor on request`,
    );
    await this.#events.emit(uuid, "killed", `${signal} sent to anchor PID ${pid} on request`, {
      anchorPid: pid,
      signal,
      requested: true,
    });
    return { accepted: true, error: null };
  }

  /** How many apps of this node are in each state, and what PENDING ones wait for (for metrics). */
  tasksByState(): { state: TaskStatus["state"]; waitingFor: string | null; count: number }[] {
    const counts = new Map<
      string,
      { state: TaskStatus["state"]; waitingFor: string | null; count: number }
    >();
    for (const s of this.#status.all()) {
      const waitingFor = s.state === "PENDING" ? s.waitingFor : null;
      const key = `${s.state} ${waitingFor ?? ""}`;
      const c = counts.get(key) ?? { state: s.state, waitingFor, count: 0 };
      c.count++;
      counts.set(key, c);
    }
    return [...counts.values()];
  }

  /** Resolves when no reconcile is running (for tests and benchmarks). */
  idle(): Promise<void> {
    return this.#runner.idle();
  }

  /**
   * Follows the runtime's exit and OOM notices, resubscribing with back-off when the stream
   * breaks (containerd restarted), until the executor stops.
   */
  async #followRuntimeEvents(): Promise<void> {
    const backoff = new Backoff(this.#t.eventsResubscribe);
    while (!this.#closing) {
      try {
        for await (const e of this.#runtime.events(this.#abort.signal)) {
          backoff.reset();
          const app = this.#apps.get(e.id);
          if (!app) continue;
          if (e.topic === "exit") this.#runner.kick(e.id);
          else if (app.task) {
            app.task.oomSeen = true;
            this.#log.warn({ uuid: app.uuid, event: "oom" }, "containerd reports an OOM kill in the task");
          }
        }
      } catch (err) {
        if (this.#closing) return;
        this.#log.warn({ err }, "containerd event stream broke; resubscribing");
      }
      if (this.#closing) return;
      await new Promise((r) => setTimeout(r, backoff.next()).unref());
      // Anything that exited while the stream was down is found by a reconcile of every app.
      for (const uuid of this.#apps.keys()) this.#runner.kick(uuid);
    }
  }

  #app(uuid: string): AppState {
    let a = this.#apps.get(uuid);
    if (!a) {
      a = newAppState(uuid, this.#t);
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

  /** The memory `uuid` held is free: apps waiting for memory get another look. */
  #memoryReleased(uuid: string): void {
    for (const a of this.#apps.values()) {
      if (a.uuid === uuid) continue;
      const s = this.#status.get(a.uuid);
      if (s?.state === "PENDING" && s.waitingFor === "memory") this.#runner.kick(a.uuid);
    }
  }

  // ---- wake-ups ---------------------------------------------------------------------------

  #clearWake(app: AppState): void {
    if (app.wake) clearTimeout(app.wake.timer);
    app.wake = undefined;
  }

  /** Wakes a reconcile of `app` at `atMs` (the earliest of what is asked wins). */
  #wakeAt(app: AppState, atMs: number): void {
    if (this.#closing) return;
    if (app.wake && app.wake.atMs <= atMs) return;
    this.#clearWake(app);
    const timer = setTimeout(
      () => {
        app.wake = undefined;
        this.#runner.kick(app.uuid);
      },
      Math.max(0, atMs - Date.now()),
    );
    app.wake = { atMs, timer };
  }

  // ---- boot watchdog ----------------------------------------------------------------------

  /** Watches the VM task just started for `app` (see boot-watchdog.ts). */
  #watchBoot(app: AppState, p: PreparedTask, mark: LogCursor | null): void {
    const uuid = app.uuid;
    const pid = app.task?.pid;
    if (pid === undefined) return;
    const deadlineMs = this.#t.vmBootDeadlineMs;
    this.#watchdog.watch({
      uuid,
      pid,
      logPath: p.logPath,
      mark,
      startedAtMs: Date.now(),
      deadlineMs,
      ownPrefixes: ownLinePrefixes(`qemu-system-${nodeArch()}`),
      current: () => !this.#closing && app.task?.pid === pid,
      onAlive: (line, afterMs) =>
        this.#log.info(
          { uuid, event: "boot-alive", anchorPid: pid, afterMs },
          `the guest is alive under KVM after ${afterMs} ms: ${JSON.stringify(line.slice(0, 120))}`,
        ),
      onFallback: (reason) => {
        this.#bootFallback(app, pid, deadlineMs, reason).catch((err: unknown) =>
          this.#log.error({ uuid, err, anchorPid: pid }, "cannot fall back to TCG"),
        );
      },
    });
  }

  /**
   * The act of the boot watchdog's decision: the node's verdict becomes "KVM is not usable" (so
   * the restart, and every later `auto` VM, gets TCG), the `accel-fallback` event says so, and
   * the reconcile stops the task by the one stop (a requested stop: not the app's failure) and
   * starts it again.
   */
  async #bootFallback(app: AppState, pid: number, deadlineMs: number, reason: string): Promise<void> {
    const uuid = app.uuid;
    if (this.#closing || app.task?.pid !== pid) return;
    const accel = this.#o.accel;
    if (!accel?.distrust) {
      this.#log.warn({ uuid, anchorPid: pid }, `${reason}; this executor cannot change its KVM verdict`);
      return;
    }
    await accel
      .distrust(reason)
      .catch((err: unknown) =>
        this.#log.error(
          { uuid, err },
          "cannot record the KVM verdict on disk; it holds until the executor restarts",
        ),
      );
    const message =
      `${reason}: restarting it under TCG; this node's KVM verdict is now "not usable" ` +
      "(every VM under auto gets TCG until the node reboots)";
    this.#log.warn({ uuid, event: "accel-fallback", anchorPid: pid, deadlineMs }, message);
    await this.#events.emit(uuid, "accel-fallback", message, {
      anchorPid: pid,
      deadlineMs,
      from: "kvm",
      to: "tcg",
    });
    app.bootFallback = {
      pid,
      reason: `no sign of life under KVM within ${deadlineMs} ms, restarting under TCG`,
    };
    this.#runner.kick(uuid);
  }

  // ---- reconcile --------------------------------------------------------------------------

  async #reconcile(uuid: string): Promise<void> {
    const app = this.#apps.get(uuid);
    if (!app || this.#closing) return;
    this.#clearWake(app);
    const started = performance.now();
    const took = (): number => (performance.now() - started) / 1000;
    try {
      await this.#converge(app);
      app.retries.reset();
      this.#observer.reconciled?.(took(), "ok");
    } catch (err) {
      if (this.#closing) return;
      const unavailable = isRuntimeError(err, "unavailable");
      this.#observer.reconciled?.(took(), unavailable ? "unavailable" : "error");
      const retryInMs = app.retries.next();
      const log = this.#log.child({ uuid });
      if (unavailable) {
        log.warn({ err, retryInMs }, "containerd unreachable; state UNKNOWN, nothing killed");
        await this.#act.unknown(app).catch(() => undefined);
      } else {
        log.error({ err, retryInMs }, "reconcile failed; will retry");
        const rev = app.desired?.configRevision ?? this.#status.get(uuid)?.configRevision ?? 1;
        await this.#status
          .publish(uuid, app.desired, { error: executorError((err as Error).message, rev) })
          .catch(() => undefined);
      }
      this.#wakeAt(app, Date.now() + retryInMs);
    }
  }

  /** Observe → plan → act until an action leaves nothing more to do. */
  async #converge(app: AppState): Promise<void> {
    const uuid = app.uuid;
    let fresh = app.fresh;
    app.fresh = false;
    let lookedAgain = false;
    let observed: Observed | undefined;
    let prepared: { for: TaskConfig; result: Prepared } | undefined;
    for (let step = 0; step < this.#t.maxStepsPerReconcile; step++) {
      observed ??= fresh ? NOTHING : await this.#observe(uuid);
      const d = app.desired;
      const ready = prepared && prepared.for === d ? prepared.result : undefined;
      const action = plan({
        desired: d,
        observed,
        prepared: ready,
        status: this.#status.get(uuid),
        memory: this.#ledger.view(uuid),
        startFailure: app.startFailure,
        nodeStopping: this.#nodeStopping,
        bootFallback: app.bootFallback,
        nowMs: Date.now(),
      });
      if (action.kind === "prepare" && d?.status === "READY") {
        prepared = { for: d, result: await this.#prepare(d) };
        continue;
      }
      try {
        await this.#perform(app, d, action, observed, ready);
      } catch (err) {
        // A container or task with this id appeared after the look (made by a predecessor that
        // was killed while containerd carried out its call): look again before acting, once.
        if (!lookedAgain && isRuntimeError(err, "exists")) {
          lookedAgain = true;
          fresh = false;
          observed = undefined;
          continue;
        }
        throw err;
      }
      if (!CHANGES_RUNTIME.has(action.kind)) return;
      fresh = false;
      observed = undefined;
    }
    throw new Error(`no steady state after ${this.#t.maxStepsPerReconcile} steps; trying again later`);
  }

  /** The app's container and task as containerd has them (both at once: a task lookup is cheap). */
  async #observe(uuid: string): Promise<Observed> {
    try {
      const [container, task] = await Promise.all([
        this.#runtime.getContainer(uuid),
        this.#runtime.getTask(uuid),
      ]);
      if (!container) return { reachable: true };
      return {
        reachable: true,
        container: { labels: container.labels, view: readLabels(container.labels) },
        ...(task ? { task: { pid: task.pid, status: task.status } } : {}),
      };
    } catch (err) {
      if (isRuntimeError(err, "unavailable")) return { reachable: false, error: err.message };
      throw err;
    }
  }

  /** The node's facts applied to `d`, or why this node cannot run it. */
  async #prepare(d: Extract<TaskConfig, { status: "READY" }>): Promise<Prepared> {
    try {
      const task = await prepareTask(d, this.#o.facts, this.#o.accel);
      if (d.interfaces.length === 0 && !this.#o.networks) return { ok: true, task };
      const networks = this.#o.networks;
      if (!networks) {
        return {
          ok: false,
          message: `node ${this.#o.facts.node} runs no networks: an app with interfaces cannot run here`,
        };
      }
      const net = await networks.resolve(d);
      switch (net.kind) {
        case "none":
          return { ok: true, task };
        case "waiting":
          this.#log.info({ uuid: d.uuid, event: "waiting-for-network" }, net.message);
          return { ok: false, message: net.message, waitingFor: "network" };
        case "invalid":
          return { ok: false, message: net.message };
        case "ready":
          return { ok: true, task: networks.prepared(task, net.resolved, d.uuid) };
      }
    } catch (err) {
      if (err instanceof NodeFactError) return { ok: false, message: err.message };
      throw err;
    }
  }

  async #perform(
    app: AppState,
    d: TaskConfig | undefined,
    action: Action,
    observed: Observed,
    prepared: Prepared | undefined,
  ): Promise<void> {
    const act = this.#act;
    const labels = observed.reachable ? observed.container?.view : undefined;
    if (action.kind !== "hold" && action.kind !== "prepare") this.#observer.acted?.(action.kind);
    switch (action.kind) {
      case "finish":
        await act.finish(app, action.pid, labels);
        return;
      case "discard":
        await act.discard(app, action.pid);
        return;
      case "stop": {
        const report = await act.stop(app, action.pid, action.reason, action.cause, labels);
        if (action.cause === "node") this.#nodeStops.push(report);
        if (action.cause === "boot-watchdog") app.bootFallback = undefined;
        return;
      }
      case "replace":
        return act.replace(app);
      case "remove":
        await act.remove(app, action.container);
        if (!app.desired) {
          this.#clearWake(app);
          this.#apps.delete(app.uuid);
        }
        return;
      case "unknown":
        // To the reconcile's error path: UNKNOWN, tried again with back-off, nothing killed.
        throw new RuntimeError("unavailable", action.error);
      case "hold":
      case "prepare":
        return;
      case "fail":
        if (d) await act.fail(app, d, action.error, action.running);
        return;
      case "pending":
        if (d) await act.pending(app, d, action.waitingFor, action.running);
        return;
    }
    // The rest need the READY config and its prepared task.
    if (d?.status !== "READY" || !prepared)
      throw new Error(`${action.kind} planned without a prepared config`);
    if (!prepared.ok) {
      if (action.kind === "reject") await act.reject(app, d, action.message, action.running);
      return;
    }
    const p = prepared.task;
    switch (action.kind) {
      case "reject":
        return act.reject(app, d, action.message, action.running);
      case "install":
        return act.install(app, d, p, action);
      case "adopt":
        return act.adopt(app, d, p, action);
      case "awaitRestart":
        await act.awaitRestart(app, d, p, action);
        if (action.dueAtMs !== undefined) this.#wakeAt(app, action.dueAtMs);
        return;
      case "awaitMemory":
        return act.awaitMemory(app, d, p, action.refusal);
      case "awaitRetry":
        this.#wakeAt(app, action.retryAtMs);
        return;
      case "start": {
        const started = performance.now();
        let outcome: StartOutcome | undefined = "error";
        // A VM given KVM on the probe's word is watched from here: its console log's output
        // after this mark must show the guest alive by the deadline.
        const mark = watchesBoot(p.runtime, this.#t.vmBootDeadlineMs)
          ? await logEndCursor(p.logPath)
          : undefined;
        try {
          await act.start(app, d, p, action);
          const s = this.#status.get(app.uuid);
          // Neither RUNNING nor failed: memory was taken meanwhile and it waits (not a start).
          outcome = app.startFailure ? "failed" : s?.state === "RUNNING" ? "ok" : undefined;
        } finally {
          if (outcome) this.#observer.started?.((performance.now() - started) / 1000, outcome);
        }
        if (app.startFailure) this.#wakeAt(app, app.startFailure.retryAtMs);
        if (mark !== undefined && outcome === "ok") this.#watchBoot(app, p, mark);
        return;
      }
    }
  }
}
