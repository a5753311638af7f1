// One grpc-js channel to containerd's socket: namespace metadata on every call, deadlines,
// AbortSignal cancellation, error wrapping, and cancellation of everything in flight on close().
import { resolve } from "node:path";
import grpc from "@grpc/grpc-js";
import { ContainerdError, toContainerdError } from "./errors.js";
import type { MethodDef } from "./proto.js";

/** Options every call takes. */
export interface CallOptions {
  /** Cancels the call; it then rejects with a CANCELLED {@link ContainerdError}. */
  signal?: AbortSignal;
  /** Deadline in ms from now; overrides the client's `callTimeoutMs`. 0: none. */
  timeoutMs?: number;
}

/** containerd's own server limit for both directions (its defaults in 1.6). */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/**
 * Channel options for a local unix socket. No keepalive pings (a local socket does not go stale
 * silently; containerd's server would answer too many pings with GOAWAY), message limits equal
 * to containerd's 16 MiB so a long container list does not hit grpc-js's 4 MiB default, and a
 * short reconnect back-off so a restarted containerd is found again within ~2 s.
 */
export const DEFAULT_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
  "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 2_000,
  "grpc.default_authority": "localhost",
};

/** `unix:<absolute path>` for a socket path; `unix:...` targets are kept as they are. */
export function grpcTarget(address: string): string {
  return address.startsWith("unix:") ? address : `unix:${resolve(address)}`;
}

interface Cancellable {
  cancel(): void;
}

/** Settings of an {@link Rpc}. */
export interface RpcOptions {
  address: string;
  namespace: string;
  /** Default deadline of unary calls that are not long-lived; 0: none. */
  callTimeoutMs: number;
  channelOptions?: grpc.ChannelOptions;
}

/** What a call is about, for errors and defaults. */
export interface CallContext {
  containerId?: string;
  options?: CallOptions | undefined;
  /** Tasks.Wait: no default deadline. */
  longLived?: boolean;
}

/** The transport under the service clients. Internal. */
export class Rpc {
  readonly namespace: string;
  readonly target: string;
  readonly #client: grpc.Client;
  readonly #callTimeoutMs: number;
  readonly #active = new Set<Cancellable>();
  #closed = false;

  constructor(options: RpcOptions) {
    this.namespace = options.namespace;
    this.target = grpcTarget(options.address);
    this.#callTimeoutMs = options.callTimeoutMs;
    this.#client = new grpc.Client(this.target, grpc.credentials.createInsecure(), {
      ...DEFAULT_CHANNEL_OPTIONS,
      ...options.channelOptions,
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  #metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set("containerd-namespace", this.namespace);
    return md;
  }

  #callOptions(ctx: CallContext): grpc.CallOptions {
    const timeoutMs = ctx.options?.timeoutMs ?? (ctx.longLived === true ? 0 : this.#callTimeoutMs);
    return timeoutMs > 0 ? { deadline: Date.now() + timeoutMs } : {};
  }

  /** The error for a call refused before it went out (closed client, aborted signal). */
  #refusal(method: string, ctx: CallContext): ContainerdError | undefined {
    const context = { method, namespace: this.namespace, containerId: ctx.containerId };
    if (this.#closed) return new ContainerdError("CANCELLED", "client closed", context);
    const signal = ctx.options?.signal;
    if (signal?.aborted === true) {
      return new ContainerdError("CANCELLED", "aborted", context, { cause: signal.reason });
    }
    return undefined;
  }

  /** Makes a unary call; rejects with a {@link ContainerdError}. */
  unary<Req extends object, Res>(
    method: MethodDef<Req, Res>,
    request: Req,
    ctx: CallContext = {},
  ): Promise<Res> {
    return new Promise<Res>((resolvePromise, reject) => {
      const refused = this.#refusal(method.label, ctx);
      if (refused !== undefined) {
        reject(refused);
        return;
      }
      const signal = ctx.options?.signal;
      const context = { method: method.label, namespace: this.namespace, containerId: ctx.containerId };
      const call = this.#client.makeUnaryRequest(
        method.path,
        method.serialize,
        method.deserialize,
        request,
        this.#metadata(),
        this.#callOptions(ctx),
        (err, response) => {
          this.#active.delete(call);
          signal?.removeEventListener("abort", onAbort);
          if (err !== null) {
            if (signal?.aborted === true) {
              reject(new ContainerdError("CANCELLED", "aborted", context, { cause: signal.reason }));
            } else if (this.#closed) {
              reject(new ContainerdError("CANCELLED", "client closed", context, { cause: err }));
            } else {
              reject(toContainerdError(err, context));
            }
          } else if (response === undefined) {
            reject(new ContainerdError("INTERNAL", "empty response", context));
          } else {
            resolvePromise(response);
          }
        },
      );
      const onAbort = (): void => call.cancel();
      this.#active.add(call);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /**
   * Opens a server stream. The caller owns it and must cancel it (and call `release`) when done;
   * {@link close} cancels it too. Throws a {@link ContainerdError} if the client is closed or
   * the signal already aborted.
   */
  serverStream<Req extends object, Res>(
    method: MethodDef<Req, Res>,
    request: Req,
    ctx: CallContext = {},
  ): { stream: grpc.ClientReadableStream<Res>; release: () => void } {
    const refused = this.#refusal(method.label, ctx);
    if (refused !== undefined) throw refused;
    const stream = this.#client.makeServerStreamRequest(
      method.path,
      method.serialize,
      method.deserialize,
      request,
      this.#metadata(),
      this.#callOptions({ ...ctx, longLived: true }),
    );
    this.#active.add(stream);
    return { stream, release: () => this.#active.delete(stream) };
  }

  /**
   * Resolves once the channel is connected, trying to connect until `timeoutMs` has passed;
   * rejects with an UNAVAILABLE {@link ContainerdError} otherwise.
   */
  waitForReady(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolvePromise, reject) => {
      const context = { method: "waitForReady", namespace: this.namespace };
      if (this.#closed) {
        reject(new ContainerdError("CANCELLED", "client closed", context));
        return;
      }
      this.#client.waitForReady(Date.now() + timeoutMs, (err) => {
        if (err === undefined || err === null) resolvePromise();
        else
          reject(
            new ContainerdError(
              "UNAVAILABLE",
              `not ready within ${timeoutMs} ms at ${this.target}: ${err.message}`,
              context,
              {
                cause: err,
              },
            ),
          );
      });
    });
  }

  /** Cancels every call in flight (they reject with CANCELLED) and closes the channel. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const call of this.#active) call.cancel();
    this.#active.clear();
    this.#client.close();
  }
}
