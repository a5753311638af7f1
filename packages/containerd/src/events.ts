import type { ClientReadableStream } from "@grpc/grpc-js";
import type protobuf from "protobufjs";
import { anyFromWire, mountFromWire, timestampToDate } from "./convert.js";
import { toContainerdError } from "./errors.js";
import { decodeMessage, methodDef } from "./proto.js";
import type { MethodDef } from "./proto.js";
import type { Rpc } from "./rpc.js";
import type { AnyMessage, ContainerRuntime, Mount } from "./types.js";
import type {
  WireContainerCreate,
  WireContainerDelete,
  WireContainerIdOnly,
  WireContainerUpdate,
  WireEnvelope,
  WireSubscribeRequest,
  WireTaskCreate,
  WireTaskDelete,
  WireTaskExit,
  WireTaskStart,
} from "./wire.js";

const SERVICE = "containerd.services.events.v1.Events";

/** An event as containerd sends it, payload still encoded. */
export interface EventEnvelope {
  timestamp: Date;
  namespace: string;
  /** `/tasks/exit`, `/containers/create`, `/images/update`... */
  topic: string;
  /** The payload: an Any with type URL `containerd.events.<Message>`, or null. */
  event: AnyMessage | null;
}

/** `/tasks/create`: the task exists (runc create done). */
export interface TaskCreatePayload {
  containerId: string;
  bundle: string;
  rootfs: Mount[];
  io: { stdin: string; stdout: string; stderr: string; terminal: boolean };
  checkpoint: string;
  pid: number;
}
/** `/tasks/start`. */
export interface TaskStartPayload {
  containerId: string;
  pid: number;
}
/** `/tasks/exit`: a process of the task exited (`id` = container ID for the init process). */
export interface TaskExitPayload {
  containerId: string;
  id: string;
  pid: number;
  exitStatus: number;
  exitedAt: Date | null;
}
/** `/tasks/delete`: the same fields as an exit. */
export type TaskDeletePayload = TaskExitPayload;
/** `/tasks/oom`, `/tasks/paused`, `/tasks/resumed`. */
export interface TaskContainerPayload {
  containerId: string;
}

/** The payload of `/tasks/exit` and `/tasks/delete`, which carry the same fields. */
function exitPayload(w: WireTaskExit | WireTaskDelete): TaskExitPayload {
  return {
    containerId: w.container_id,
    id: w.id,
    pid: w.pid,
    exitStatus: w.exit_status,
    exitedAt: timestampToDate(w.exited_at),
  };
}
/** `/containers/create`. */
export interface ContainerCreatePayload {
  id: string;
  image: string;
  runtime: ContainerRuntime;
}
/** `/containers/update`. */
export interface ContainerUpdatePayload {
  id: string;
  image: string;
  labels: Record<string, string>;
  snapshotKey: string;
}
/** `/containers/delete`. */
export interface ContainerDeletePayload {
  id: string;
}

interface EventOf<T extends string, P> {
  topic: T;
  namespace: string;
  timestamp: Date;
  payload: P;
}

/** A decoded containerd event; narrow on `topic`. */
export type ContainerdEvent =
  | EventOf<"/tasks/create", TaskCreatePayload>
  | EventOf<"/tasks/start", TaskStartPayload>
  | EventOf<"/tasks/exit", TaskExitPayload>
  | EventOf<"/tasks/delete", TaskDeletePayload>
  | EventOf<"/tasks/oom", TaskContainerPayload>
  | EventOf<"/tasks/paused", TaskContainerPayload>
  | EventOf<"/tasks/resumed", TaskContainerPayload>
  | EventOf<"/containers/create", ContainerCreatePayload>
  | EventOf<"/containers/update", ContainerUpdatePayload>
  | EventOf<"/containers/delete", ContainerDeletePayload>;

/** The topics {@link decodeEvent} knows. */
export type ContainerdEventTopic = ContainerdEvent["topic"];

type Decoder = (bytes: Uint8Array) => Pick<ContainerdEvent, "topic" | "payload">;

function decoders(root: protobuf.Root): ReadonlyMap<string, Decoder> {
  const type = (name: string): protobuf.Type => root.lookupType(`containerd.events.${name}`);
  const containerOnly =
    (topic: "/tasks/oom" | "/tasks/paused" | "/tasks/resumed", name: string): Decoder =>
    (bytes) => ({
      topic,
      payload: { containerId: decodeMessage<WireContainerIdOnly>(type(name), bytes).container_id },
    });
  return new Map<string, Decoder>([
    [
      "containerd.events.TaskCreate",
      (bytes) => {
        const w = decodeMessage<WireTaskCreate>(type("TaskCreate"), bytes);
        return {
          topic: "/tasks/create",
          payload: {
            containerId: w.container_id,
            bundle: w.bundle,
            rootfs: w.rootfs.map(mountFromWire),
            io: w.io ?? { stdin: "", stdout: "", stderr: "", terminal: false },
            checkpoint: w.checkpoint,
            pid: w.pid,
          },
        };
      },
    ],
    [
      "containerd.events.TaskStart",
      (bytes) => {
        const w = decodeMessage<WireTaskStart>(type("TaskStart"), bytes);
        return { topic: "/tasks/start", payload: { containerId: w.container_id, pid: w.pid } };
      },
    ],
    [
      "containerd.events.TaskExit",
      (bytes) => ({
        topic: "/tasks/exit",
        payload: exitPayload(decodeMessage<WireTaskExit>(type("TaskExit"), bytes)),
      }),
    ],
    [
      "containerd.events.TaskDelete",
      (bytes) => ({
        topic: "/tasks/delete",
        payload: exitPayload(decodeMessage<WireTaskDelete>(type("TaskDelete"), bytes)),
      }),
    ],
    ["containerd.events.TaskOOM", containerOnly("/tasks/oom", "TaskOOM")],
    ["containerd.events.TaskPaused", containerOnly("/tasks/paused", "TaskPaused")],
    ["containerd.events.TaskResumed", containerOnly("/tasks/resumed", "TaskResumed")],
    [
      "containerd.events.ContainerCreate",
      (bytes) => {
        const w = decodeMessage<WireContainerCreate>(type("ContainerCreate"), bytes);
        return {
          topic: "/containers/create",
          payload: {
            id: w.id,
            image: w.image,
            runtime: { name: w.runtime?.name ?? "", options: anyFromWire(w.runtime?.options) },
          },
        };
      },
    ],
    [
      "containerd.events.ContainerUpdate",
      (bytes) => {
        const w = decodeMessage<WireContainerUpdate>(type("ContainerUpdate"), bytes);
        return {
          topic: "/containers/update",
          payload: { id: w.id, image: w.image, labels: w.labels, snapshotKey: w.snapshot_key },
        };
      },
    ],
    [
      "containerd.events.ContainerDelete",
      (bytes) => ({
        topic: "/containers/delete",
        payload: { id: decodeMessage<WireContainerDelete>(type("ContainerDelete"), bytes).id },
      }),
    ],
  ]);
}

/**
 * Decodes an envelope's payload by its type URL (the part after the last "/" is the message
 * name, e.g. `containerd.events.TaskExit`). Null for payloads this client has no definition of,
 * or whose topic does not match the payload type.
 */
export type EventDecoder = (envelope: EventEnvelope) => ContainerdEvent | null;

function makeDecoder(root: protobuf.Root): EventDecoder {
  const table = decoders(root);
  return (envelope) => {
    if (envelope.event === null) return null;
    const typeUrl = envelope.event.typeUrl;
    const decode = table.get(typeUrl.slice(typeUrl.lastIndexOf("/") + 1));
    if (decode === undefined) return null;
    const decoded = decode(envelope.event.value);
    if (decoded.topic !== envelope.topic) return null;
    return { ...decoded, namespace: envelope.namespace, timestamp: envelope.timestamp } as ContainerdEvent;
  };
}

function envelopeFromWire(w: WireEnvelope): EventEnvelope {
  return {
    timestamp: timestampToDate(w.timestamp) ?? new Date(0),
    namespace: w.namespace,
    topic: w.topic,
    event: anyFromWire(w.event),
  };
}

/** Options of `events.subscribe`. */
export interface SubscribeOptions {
  /**
   * containerd event filters, any of which may match, e.g. `topic=="/tasks/exit"`,
   * `topic~="^/tasks/"`. Default: every event.
   */
  filters?: readonly string[];
  /** Ends the subscription: iteration then finishes without an error. */
  signal?: AbortSignal;
  /**
   * containerd does not scope Events.Subscribe by namespace; by default the client adds
   * `namespace=="<its namespace>"` to every filter. True: events of every namespace.
   */
  allNamespaces?: boolean;
}

/**
 * A live Events.Subscribe stream. The call is open from the moment of `subscribe`; events are
 * buffered until iterated. Iterate it once. Iteration ends without an error when the signal
 * aborts, {@link close} is called, the loop breaks, or the client closes; it throws a
 * {@link ContainerdError} if the stream fails (e.g. UNAVAILABLE when containerd stops):
 * events are not persisted by containerd, so resubscribe and reconcile by listing.
 */
export class EventSubscription<T> implements AsyncIterable<T> {
  readonly #stream: ClientReadableStream<WireEnvelope> | null;
  readonly #map: (envelope: EventEnvelope) => T | null;
  readonly #release: () => void;
  readonly #signal: AbortSignal | undefined;
  readonly #namespace: string;
  readonly #clientClosed: () => boolean;
  #closed = false;
  #iterated = false;

  /** @internal Use `ContainerdClient.events`. */
  constructor(
    stream: ClientReadableStream<WireEnvelope> | null,
    map: (envelope: EventEnvelope) => T | null,
    release: () => void,
    signal: AbortSignal | undefined,
    namespace: string,
    clientClosed: () => boolean,
  ) {
    this.#stream = stream;
    this.#map = map;
    this.#release = release;
    this.#signal = signal;
    this.#namespace = namespace;
    this.#clientClosed = clientClosed;
    if (stream === null) {
      this.#closed = true;
      return;
    }
    // An 'error' without a listener would crash the process before iteration starts.
    stream.on("error", () => undefined);
    // Once the call has a status nothing is left to cancel: stop tracking it.
    stream.on("status", release);
    signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  readonly #onAbort = (): void => this.close();

  /** Ends the subscription (idempotent); a running iteration finishes. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stream?.cancel();
    this.#finish();
  }

  #finish(): void {
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#release();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    if (this.#iterated) throw new Error("an EventSubscription can be iterated only once");
    this.#iterated = true;
    const stream = this.#stream;
    if (stream === null) return;
    try {
      for await (const wire of stream as AsyncIterable<WireEnvelope>) {
        const item = this.#map(envelopeFromWire(wire));
        if (item !== null) yield item;
      }
    } catch (err) {
      // Cancelled by us (abort, close(), client closed): a clean end.
      if (this.#closed || this.#clientClosed()) return;
      throw toContainerdError(err, { method: "Events.Subscribe", namespace: this.#namespace });
    } finally {
      this.close();
    }
  }
}

/** containerd's Events service (Subscribe only). */
export class EventsClient {
  readonly #rpc: Rpc;
  readonly #subscribe: MethodDef<WireSubscribeRequest, WireEnvelope>;
  /** Decodes an envelope from {@link subscribeRaw} into a typed event, or null. */
  readonly decode: EventDecoder;

  /** @internal Use `ContainerdClient.events`. */
  constructor(rpc: Rpc, root: protobuf.Root) {
    this.#rpc = rpc;
    this.#subscribe = methodDef(root, SERVICE, "Subscribe");
    this.decode = makeDecoder(root);
  }

  #filters(options: SubscribeOptions): string[] {
    const filters = [...(options.filters ?? [])];
    if (options.allNamespaces === true) return filters;
    const scope = `namespace==${JSON.stringify(this.#rpc.namespace)}`;
    return filters.length === 0 ? [scope] : filters.map((f) => `${scope},${f}`);
  }

  #open<T>(options: SubscribeOptions, map: (envelope: EventEnvelope) => T | null): EventSubscription<T> {
    if (options.signal?.aborted === true) {
      return new EventSubscription<T>(
        null,
        map,
        () => undefined,
        undefined,
        this.#rpc.namespace,
        () => true,
      );
    }
    const { stream, release } = this.#rpc.serverStream(this.#subscribe, { filters: this.#filters(options) });
    const rpc = this.#rpc;
    return new EventSubscription<T>(stream, map, release, options.signal, rpc.namespace, () => rpc.closed);
  }

  /**
   * Subscribes to events of the topics in {@link ContainerdEvent}, decoded; envelopes of other
   * topics are skipped (use {@link subscribeRaw} for those).
   */
  subscribe(options: SubscribeOptions = {}): EventSubscription<ContainerdEvent> {
    return this.#open(options, this.decode);
  }

  /** Subscribes to every matching event with its payload still encoded. */
  subscribeRaw(options: SubscribeOptions = {}): EventSubscription<EventEnvelope> {
    return this.#open(options, (envelope) => envelope);
  }
}
