import type protobuf from "protobufjs";
import {
  anyFromWire,
  anyToWire,
  mountToWire,
  signalNumber,
  statusFromWire,
  timestampToDate,
} from "./convert.js";
import { ContainerdError } from "./errors.js";
import { methodDef } from "./proto.js";
import type { MethodDef } from "./proto.js";
import type { CallOptions, Rpc } from "./rpc.js";
import type { CreateTaskInput, CreatedTask, DeletedTask, ExitStatus, Process, ProcessInfo } from "./types.js";
import type {
  WireCreateTaskRequest,
  WireCreateTaskResponse,
  WireDeleteResponse,
  WireDeleteTaskRequest,
  WireEmpty,
  WireGetRequest,
  WireGetResponse,
  WireKillRequest,
  WireListPidsRequest,
  WireListPidsResponse,
  WireListTasksRequest,
  WireListTasksResponse,
  WireProcess,
  WireStartRequest,
  WireStartResponse,
  WireWaitRequest,
  WireWaitResponse,
} from "./wire.js";

const SERVICE = "containerd.services.tasks.v1.Tasks";

/** Options of `tasks.kill`. */
export interface KillOptions extends CallOptions {
  /** Signal every process in the container, not only the init process (runc kill --all). */
  all?: boolean;
}

/** Options of `tasks.list`. */
export interface ListTasksOptions extends CallOptions {
  /** Passed to containerd as ListTasksRequest.filter. */
  filter?: string;
}

/** containerd 1.6 leaves Process.container_id empty; for the init process `id` is the container ID. */
function processFromWire(p: WireProcess, containerId?: string): Process {
  return {
    containerId: p.container_id || containerId || p.id,
    id: p.id,
    pid: p.pid,
    status: statusFromWire(p.status),
    stdin: p.stdin,
    stdout: p.stdout,
    stderr: p.stderr,
    terminal: p.terminal,
    exitStatus: p.exit_status,
    exitedAt: timestampToDate(p.exited_at),
  };
}

/**
 * containerd's Tasks service, for a container's init process (the anchor). A task is created
 * (runc create: PID known, not running), started, signalled, waited for and deleted; the exit
 * status stays readable until Delete.
 */
export class TasksClient {
  readonly #rpc: Rpc;
  readonly #create: MethodDef<WireCreateTaskRequest, WireCreateTaskResponse>;
  readonly #start: MethodDef<WireStartRequest, WireStartResponse>;
  readonly #delete: MethodDef<WireDeleteTaskRequest, WireDeleteResponse>;
  readonly #get: MethodDef<WireGetRequest, WireGetResponse>;
  readonly #list: MethodDef<WireListTasksRequest, WireListTasksResponse>;
  readonly #kill: MethodDef<WireKillRequest, WireEmpty>;
  readonly #listPids: MethodDef<WireListPidsRequest, WireListPidsResponse>;
  readonly #wait: MethodDef<WireWaitRequest, WireWaitResponse>;

  /** @internal Use `ContainerdClient.tasks`. */
  constructor(rpc: Rpc, root: protobuf.Root) {
    this.#rpc = rpc;
    this.#create = methodDef(root, SERVICE, "Create");
    this.#start = methodDef(root, SERVICE, "Start");
    this.#delete = methodDef(root, SERVICE, "Delete");
    this.#get = methodDef(root, SERVICE, "Get");
    this.#list = methodDef(root, SERVICE, "List");
    this.#kill = methodDef(root, SERVICE, "Kill");
    this.#listPids = methodDef(root, SERVICE, "ListPids");
    this.#wait = methodDef(root, SERVICE, "Wait");
  }

  /**
   * Creates the container's task: mounts `rootfs` on the bundle, sets up IO and runs
   * `runc create`. The returned PID is the anchor's and is alive, but the process has not
   * exec'd yet. Issue {@link wait} before {@link start} so a fast exit is not missed.
   */
  async create(input: CreateTaskInput, options?: CallOptions): Promise<CreatedTask> {
    const res = await this.#rpc.unary(
      this.#create,
      {
        container_id: input.containerId,
        rootfs: (input.rootfs ?? []).map(mountToWire),
        stdin: input.stdin ?? "",
        stdout: input.stdout ?? "",
        stderr: input.stderr ?? "",
        terminal: input.terminal ?? false,
        ...(input.options !== undefined ? { options: anyToWire(input.options) } : {}),
        runtime_path: input.runtimePath ?? "",
      },
      { containerId: input.containerId, options },
    );
    return { containerId: res.container_id, pid: res.pid };
  }

  /** Starts the created task's init process; resolves with its PID. */
  async start(containerId: string, options?: CallOptions): Promise<{ pid: number }> {
    const res = await this.#rpc.unary(
      this.#start,
      { container_id: containerId, exec_id: "" },
      { containerId, options },
    );
    return { pid: res.pid };
  }

  /** Sends `signal` (a number or a name such as "SIGTERM") to the init process, or to all with `all`. */
  async kill(containerId: string, signal: number | NodeJS.Signals, options?: KillOptions): Promise<void> {
    await this.#rpc.unary(
      this.#kill,
      { container_id: containerId, exec_id: "", signal: signalNumber(signal), all: options?.all ?? false },
      { containerId, options },
    );
  }

  /**
   * Resolves when the init process has exited (at once if it already has). Long-lived: no
   * default deadline; cancel it with `signal`.
   */
  async wait(containerId: string, options?: CallOptions): Promise<ExitStatus> {
    const res = await this.#rpc.unary(
      this.#wait,
      { container_id: containerId, exec_id: "" },
      { containerId, options, longLived: true },
    );
    return { exitStatus: res.exit_status, exitedAt: timestampToDate(res.exited_at) };
  }

  /**
   * Deletes a stopped (or created, never started) task, unmounting its rootfs and removing its
   * cgroup; resolves with its exit status. Fails while the task runs (containerd 1.6 reports
   * that as UNKNOWN "cannot delete a running process"): kill and wait first. A created task
   * with file IO is deleted faster after SIGKILL and Wait (else the shim waits 2 s for its IO).
   */
  async delete(containerId: string, options?: CallOptions): Promise<DeletedTask> {
    const res = await this.#rpc.unary(this.#delete, { container_id: containerId }, { containerId, options });
    // containerd 1.6 leaves `id` empty for the init process.
    return {
      id: res.id || containerId,
      pid: res.pid,
      exitStatus: res.exit_status,
      exitedAt: timestampToDate(res.exited_at),
    };
  }

  /** The task's init process: PID, status, IO and exit; NOT_FOUND if the container has no task. */
  async get(containerId: string, options?: CallOptions): Promise<Process> {
    const res = await this.#rpc.unary(
      this.#get,
      { container_id: containerId, exec_id: "" },
      { containerId, options },
    );
    if (res.process === null) {
      throw new ContainerdError("INTERNAL", "response without a process", {
        method: this.#get.label,
        namespace: this.#rpc.namespace,
        containerId,
      });
    }
    return processFromWire(res.process, containerId);
  }

  /** Every task in the namespace. */
  async list(options?: ListTasksOptions): Promise<Process[]> {
    const res = await this.#rpc.unary(this.#list, { filter: options?.filter ?? "" }, { options });
    return res.tasks.map((p) => processFromWire(p));
  }

  /** The processes in the task's container (its cgroup). */
  async pids(containerId: string, options?: CallOptions): Promise<ProcessInfo[]> {
    const res = await this.#rpc.unary(
      this.#listPids,
      { container_id: containerId },
      { containerId, options },
    );
    return res.processes.map((p) => ({ pid: p.pid, info: anyFromWire(p.info) }));
  }
}
