/**
 * The narrow view of containerd the executor works through: containers (metadata and labels),
 * tasks (create, start, wait, kill, delete) and exit/OOM notices, all in one namespace. The
 * executor, the KVM probe and the tests that exercise them take a {@link TaskRuntime};
 * {@link containerdRuntime} is the implementation over `@eve-tasks/containerd`, the only one.
 */
import {
  ContainerdError,
  hasCode,
  isAlreadyExists,
  isNotFound,
  isUnavailable,
  specFromAny,
} from "@eve-tasks/containerd";
import type { ContainerdClient, Mount } from "@eve-tasks/containerd";
import { endShim, findShimDaemons } from "./leaked-shims.js";
import type { EndedShim } from "./leaked-shims.js";

/** What a {@link RuntimeError} means for the caller. */
export type RuntimeErrorKind =
  /** The runtime cannot be reached: nothing is known, nothing may be concluded from it. */
  | "unavailable"
  /** The object (container, task) is already there. */
  | "exists"
  /** The object is not there. */
  | "not-found";

/** A runtime call failed in a way the executor acts on; `cause` is the runtime's own error. */
export class RuntimeError extends Error {
  override readonly name = "RuntimeError";
  constructor(
    readonly kind: RuntimeErrorKind,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** True for a {@link RuntimeError} of `kind`. */
export function isRuntimeError(err: unknown, kind: RuntimeErrorKind): err is RuntimeError {
  return err instanceof RuntimeError && err.kind === kind;
}

/** A container: its labels (the executor's memory across restarts). */
export interface RuntimeContainer {
  readonly id: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** A container with the memory limit of its stored spec (0 when it has none). */
export interface ListedContainer extends RuntimeContainer {
  readonly memoryLimitBytes: number;
}

/** The state of a task's init process (the anchor). */
export type RuntimeTaskStatus = "CREATED" | "RUNNING" | "STOPPED" | "PAUSED" | "PAUSING" | "UNKNOWN";

/** A task: the container it runs in, its anchor PID and state. */
export interface RuntimeTask {
  readonly id: string;
  readonly pid: number;
  readonly status: RuntimeTaskStatus;
}

/** How an anchor ended: 128+N for signal N, 255 when unknown. */
export interface RuntimeExit {
  readonly exitStatus: number;
  readonly exitedAt: Date | null;
}

/** A notice from the runtime: a task's anchor exited, or the kernel's OOM killer acted in it. */
export type RuntimeEvent =
  { readonly topic: "exit"; readonly id: string } | { readonly topic: "oom"; readonly id: string };

/** What Tasks.Create needs: the root filesystem mounts and where the anchor's output goes. */
export interface CreateTaskRequest {
  readonly id: string;
  readonly rootfs: readonly Mount[];
  /** URIs (`file://`, `binary://`) or FIFO paths; empty for /dev/null. */
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * The executor's runtime. "Not there" is an answer, not an error: getters resolve undefined,
 * deletes and kills of absent objects succeed. Failures the caller acts on reject with a
 * {@link RuntimeError}; anything else rejects with the runtime's own error.
 */
export interface TaskRuntime {
  getContainer(id: string): Promise<RuntimeContainer | undefined>;
  listContainers(): Promise<ListedContainer[]>;
  /** Every container's id and labels only (cheaper than {@link listContainers}: no spec is read). */
  listContainerLabels(): Promise<RuntimeContainer[]>;
  createContainer(c: { id: string; labels: Record<string, string>; spec: object }): Promise<void>;
  /** Sets the given label keys (others stay) and, when given, replaces the spec. */
  updateContainer(id: string, update: { labels: Record<string, string>; spec?: object }): Promise<void>;
  deleteContainer(id: string): Promise<void>;
  getTask(id: string): Promise<RuntimeTask | undefined>;
  listTasks(): Promise<RuntimeTask[]>;
  /** Creates the task (its anchor exists, stopped before exec) and returns the anchor PID. */
  createTask(request: CreateTaskRequest): Promise<{ pid: number }>;
  startTask(id: string): Promise<void>;
  /** Resolves when the anchor has exited (the status stays readable until {@link deleteTask}). */
  waitTask(id: string): Promise<RuntimeExit>;
  /** Signals the anchor, or with `all` every process of the task; false when there is no task. */
  killTask(id: string, signal: NodeJS.Signals, options?: { all?: boolean }): Promise<boolean>;
  /** Deletes the task; resolves its exit, or undefined when there was no task. */
  deleteTask(id: string): Promise<RuntimeExit | undefined>;
  /** Exit and OOM notices until `signal` aborts; a broken stream rejects (resubscribe). */
  events(signal: AbortSignal): AsyncIterable<RuntimeEvent>;
  /**
   * Resolves once no call the runtime still carries out for an earlier one is in flight (a
   * deleted task's shim clean-up): a caller about to close the connection awaits it, so no such
   * call is cut short.
   */
  settled(): Promise<void>;
  /**
   * Ends the runtime's helper processes that serve no task: shims a client's Tasks.Create left
   * behind when it went away mid-start (see leaked-shims.ts). Only while nothing creates tasks.
   */
  endLeakedShims(): Promise<EndedShim[]>;
}

/** The memory limit in a stored container spec, in bytes (0 when it has none). */
function memoryLimitOf(spec: Parameters<typeof specFromAny>[0] | null): number {
  if (!spec) return 0;
  try {
    const s = specFromAny(spec) as { linux?: { resources?: { memory?: { limit?: unknown } } } };
    const limit = s.linux?.resources?.memory?.limit;
    return typeof limit === "number" && limit > 0 ? limit : 0;
  } catch {
    return 0;
  }
}

/** containerd's errors the executor acts on, as {@link RuntimeError}s; others as they are. */
function translate(err: unknown): unknown {
  if (!(err instanceof ContainerdError)) return err;
  const kind: RuntimeErrorKind | undefined = isUnavailable(err)
    ? "unavailable"
    : isAlreadyExists(err)
      ? "exists"
      : isNotFound(err)
        ? "not-found"
        : undefined;
  return kind ? new RuntimeError(kind, (err as Error).message, { cause: err }) : err;
}

async function call<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    throw translate(err);
  }
}

async function unlessGone<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw translate(err);
  }
}

/**
 * The {@link TaskRuntime} over a containerd client (its namespace is the runtime's).
 *
 * Tasks.Delete in containerd returns only after the shim has shut down and containerd has run
 * the shim binary's `delete` once more (its clean-up after any shim disconnect), which costs as
 * much again as the delete itself. The task is gone before that: the shim has run `runc delete`,
 * forgotten the task and sent `/tasks/delete`. So `deleteTask` resolves at that event once a
 * Tasks.Get confirms there is no task (when the event stream runs, see `events`), and the rest
 * of the call finishes behind it: any later call on the same id waits for it first, so a restart
 * never meets the old bundle.
 */
export function containerdRuntime(client: ContainerdClient): TaskRuntime {
  const { containers, tasks, events } = client;
  /** Deletes in flight: the whole Tasks.Delete call, by container id. */
  const settling = new Map<string, Promise<unknown>>();
  /** Deletes waiting for their `/tasks/delete` event, by container id. */
  const deleted = new Map<string, (exit: RuntimeExit) => void>();
  /** Ids whose Tasks.Create this client gave up on mid-call: it may have left a shim behind. */
  const cutShort = new Set<string>();
  /** Ends the shims of this socket and namespace (of `id` only, if given) that hold no task. */
  const endLeaked = async (id?: string): Promise<EndedShim[]> => {
    // A shim's `-address` is containerd's socket path, as the client was given it.
    const address = client.target.replace(/^unix:(\/\/)?/, "");
    const shims = findShimDaemons(address, client.namespace).filter((s) => id === undefined || s.id === id);
    const ended = await Promise.all(
      shims.map(async (shim) => {
        // A shim whose task containerd knows is in use; only one without a task is leaked.
        if (settling.has(shim.id) || (await unlessGone(tasks.get(shim.id))) !== undefined) return undefined;
        return endShim(shim);
      }),
    );
    return ended.filter((e) => e !== undefined);
  };
  /** Runs `f` once the last delete of `id` has finished (its result does not matter here). */
  const after = <T>(id: string, f: () => Promise<T>): Promise<T> => {
    const busy = settling.get(id);
    return busy ? busy.then(f, f) : f();
  };
  const confirmGone = async (id: string): Promise<boolean> =>
    (await unlessGone(tasks.get(id)).catch(() => "unknown" as const)) === undefined;
  const deleteTask = (id: string): Promise<RuntimeExit | undefined> => {
    let onEvent: (exit: RuntimeExit) => void = () => undefined;
    const seen = new Promise<RuntimeExit | undefined>((resolve) => {
      onEvent = (exit) => void confirmGone(id).then((gone) => resolve(gone ? exit : whole));
    });
    const whole = after(id, () => {
      deleted.set(id, onEvent);
      return unlessGone(tasks.delete(id));
    });
    const tracked: Promise<void> = whole
      .then(
        () => undefined,
        () => undefined,
      )
      .then(() => {
        if (settling.get(id) === tracked) settling.delete(id);
      });
    settling.set(id, tracked);
    return Promise.race([whole, seen]).finally(() => {
      if (deleted.get(id) === onEvent) deleted.delete(id);
    });
  };
  return {
    getContainer: (id) => unlessGone(containers.get(id)).then((c) => c && { id: c.id, labels: c.labels }),
    listContainers: () =>
      call(containers.list()).then((cs) =>
        cs.map((c) => ({ id: c.id, labels: c.labels, memoryLimitBytes: memoryLimitOf(c.spec) })),
      ),
    listContainerLabels: () => call(containers.listLabels()),
    createContainer: (c) => after(c.id, () => call(containers.create(c))).then(() => undefined),
    updateContainer: (id, u) =>
      call(
        containers.update(
          { id, labels: u.labels, ...(u.spec ? { spec: u.spec } : {}) },
          {
            fieldPaths: [...(u.spec ? ["spec"] : []), ...Object.keys(u.labels).map((k) => `labels.${k}`)],
          },
        ),
      ).then(() => undefined),
    deleteContainer: async (id) => {
      await after(id, () => unlessGone(containers.delete(id)));
      // Without its container the id gets no task from this client: a shim its cut-short
      // create left would stay for good.
      if (cutShort.delete(id)) await endLeaked(id).catch(() => undefined);
    },
    getTask: (id) =>
      unlessGone(tasks.get(id)).then((t) => t && { id: t.containerId, pid: t.pid, status: t.status }),
    listTasks: () =>
      call(tasks.list()).then((ts) => ts.map((t) => ({ id: t.containerId, pid: t.pid, status: t.status }))),
    createTask: (r) =>
      after(r.id, () =>
        call(tasks.create({ containerId: r.id, rootfs: r.rootfs, stdout: r.stdout, stderr: r.stderr })),
      ).then(
        (t) => ({ pid: t.pid }),
        (err: unknown) => {
          const cause = err instanceof RuntimeError ? err.cause : err;
          if (hasCode(cause, "DEADLINE_EXCEEDED") || hasCode(cause, "CANCELLED")) cutShort.add(r.id);
          throw err;
        },
      ),
    startTask: (id) => call(tasks.start(id)).then(() => undefined),
    waitTask: (id) => call(tasks.wait(id)),
    killTask: (id, signal, options) =>
      unlessGone(tasks.kill(id, signal, options).then(() => true)).then((sent) => sent === true),
    deleteTask,
    settled: async () => {
      while (settling.size > 0) await Promise.all(settling.values());
    },
    endLeakedShims: () => endLeaked(),
    async *events(signal) {
      const sub = events.subscribe({
        filters: ['topic=="/tasks/exit"', 'topic=="/tasks/oom"', 'topic=="/tasks/delete"'],
        signal,
      });
      try {
        for await (const e of sub) {
          if (e.topic === "/tasks/delete") {
            // The runc shim leaves `id` empty in the init process's TaskDelete.
            if (e.payload.id === "" || e.payload.id === e.payload.containerId)
              deleted.get(e.payload.containerId)?.({
                exitStatus: e.payload.exitStatus,
                exitedAt: e.payload.exitedAt,
              });
          } else if (e.topic === "/tasks/exit") {
            // An exec'd process's exit names its own id; only the anchor's matters here.
            if (e.payload.id === e.payload.containerId) yield { topic: "exit", id: e.payload.containerId };
          } else if (e.topic === "/tasks/oom") {
            yield { topic: "oom", id: e.payload.containerId };
          }
        }
      } catch (err) {
        throw translate(err);
      }
    },
  };
}
