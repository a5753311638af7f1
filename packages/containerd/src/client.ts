import type { ChannelOptions } from "@grpc/grpc-js";
import { ContainersClient } from "./containers.js";
import { EventsClient } from "./events.js";
import { NamespacesClient } from "./namespaces.js";
import { methodDef, protoRoot } from "./proto.js";
import type { MethodDef } from "./proto.js";
import { Rpc } from "./rpc.js";
import type { CallOptions } from "./rpc.js";
import { TasksClient } from "./tasks.js";
import type { VersionInfo } from "./types.js";
import type { WireEmpty, WireVersionResponse } from "./wire.js";

/** Options of {@link ContainerdClient}. */
export interface ContainerdClientOptions {
  /** containerd's gRPC socket: a path (`/run/containerd/containerd.sock`) or a `unix:` target. */
  address: string;
  /** containerd namespace of every call (the `containerd-namespace` header), e.g. `eve-user-apps`. */
  namespace: string;
  /** Default deadline of each unary call except `tasks.wait`, in ms; 0: none. Default 60 000. */
  callTimeoutMs?: number;
  /** grpc-js channel options, merged over {@link DEFAULT_CHANNEL_OPTIONS}. */
  channelOptions?: ChannelOptions;
}

/**
 * A client of one containerd, scoped to one namespace, over one gRPC channel on its unix
 * socket. Constructing it does not connect (the first call does; {@link waitForReady} waits for
 * it). Every method returns a promise and rejects with a `ContainerdError`. Call {@link close}
 * when done: it cancels calls in flight and ends event subscriptions.
 *
 * ```ts
 * const client = new ContainerdClient({ address: "/run/containerd/containerd.sock", namespace: "eve-user-apps" });
 * await client.containers.create({ id, labels, spec });
 * const { pid } = await client.tasks.create({ containerId: id, rootfs, stdout: fileUri(log), stderr: fileUri(log) });
 * const exited = client.tasks.wait(id);
 * await client.tasks.start(id);
 * ```
 */
export class ContainerdClient {
  /** The namespace of every call. */
  readonly namespace: string;
  /** The gRPC target (`unix:/path`). */
  readonly target: string;
  /** Containers: create, get, list, update, delete. */
  readonly containers: ContainersClient;
  /** Tasks: create, start, kill, wait, delete, get, list, pids. */
  readonly tasks: TasksClient;
  /** Events: subscribe. */
  readonly events: EventsClient;
  /** Namespaces: list, delete. */
  readonly namespaces: NamespacesClient;
  readonly #rpc: Rpc;
  readonly #version: MethodDef<WireEmpty, WireVersionResponse>;

  constructor(options: ContainerdClientOptions) {
    if (options.namespace === "") throw new TypeError("ContainerdClient: namespace must not be empty");
    const root = protoRoot();
    this.#rpc = new Rpc({
      address: options.address,
      namespace: options.namespace,
      callTimeoutMs: options.callTimeoutMs ?? 60_000,
      channelOptions: options.channelOptions,
    });
    this.namespace = this.#rpc.namespace;
    this.target = this.#rpc.target;
    this.#version = methodDef(root, "containerd.services.version.v1.Version", "Version");
    this.containers = new ContainersClient(this.#rpc, root);
    this.tasks = new TasksClient(this.#rpc, root);
    this.events = new EventsClient(this.#rpc, root);
    this.namespaces = new NamespacesClient(this.#rpc, root);
  }

  /** containerd's version and revision. */
  async version(options?: CallOptions): Promise<VersionInfo> {
    const res = await this.#rpc.unary(this.#version, {}, { options });
    return { version: res.version, revision: res.revision };
  }

  /**
   * Waits until containerd answers, for at most `timeoutMs` (connection attempts are retried
   * with a short back-off, so this also waits for a containerd that is still starting), and
   * returns its version. Rejects with an UNAVAILABLE `ContainerdError` when time runs out.
   */
  async waitForReady(timeoutMs = 10_000): Promise<VersionInfo> {
    const deadline = Date.now() + timeoutMs;
    await this.#rpc.waitForReady(timeoutMs);
    return this.version({ timeoutMs: Math.max(1, deadline - Date.now()) });
  }

  /** True once {@link close} has been called. */
  get closed(): boolean {
    return this.#rpc.closed;
  }

  /** Cancels calls in flight and subscriptions, and closes the channel. Idempotent. */
  close(): void {
    this.#rpc.close();
  }
}
