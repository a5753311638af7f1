/**
 * TaskStatus and task events: the executor's two outputs on the bus. The {@link StatusWriter}
 * keeps the last status it published per app and publishes only what changed; {@link TaskEvents}
 * puts events in the outbox.
 */
import type { Logger } from "pino";
import { Publication } from "@eve-tasks/bus";
import type { Bus, Outbox } from "@eve-tasks/bus";
import { jsonEqual, taskLogPath, messageTable } from "@eve-tasks/schemas";
import type {
  ReadyTaskConfig,
  StageError,
  TaskConfig,
  TaskEventType,
  TaskStatus,
  TaskStatusSchema,
} from "@eve-tasks/schemas";
import type { ExecutorObserver } from "./observer.js";
import type { PreparedTask } from "./prepare-task.js";
import { initialStatus } from "./status.js";

/** True when two stage errors say the same thing (their times aside). */
export function sameError(a: StageError | null | undefined, b: StageError | null | undefined): boolean {
  if (!a || !b) return a === b || (!a && !b);
  return a.source === b.source && a.message === b.message && a.configRevision === b.configRevision;
}

/** Fields describing the config the current task is (or would be) built from. */
export function builtFrom(
  d: ReadyTaskConfig,
  p: PreparedTask,
  rest: Partial<TaskStatus>,
): Partial<TaskStatus> {
  return {
    configRevision: d.configRevision,
    version: d.version,
    memoryLimitBytes: p.memoryLimitBytes,
    anchorTaxBytes: p.anchorTaxBytes,
    logPath: p.logPath,
    interfaces: p.network?.statuses ?? [],
    ...rest,
  };
}

/** Publishes each app's TaskStatus, remembering the last one. */
export class StatusWriter {
  readonly #publication: Publication<typeof TaskStatusSchema>;
  readonly #statuses = new Map<string, TaskStatus>();
  readonly #node: string;
  readonly #dataDir: string;

  constructor(bus: Bus, o: { node: string; dataDir: string }) {
    this.#publication = new Publication(bus, messageTable("TaskStatus"));
    this.#node = o.node;
    this.#dataDir = o.dataDir;
  }

  /** Loads the statuses this node published before (a restarted executor starts from them). */
  async load(): Promise<string[]> {
    const uuids: string[] = [];
    for (const [uuid, s] of await this.#publication.getAll()) {
      if (s.node !== this.#node) continue;
      this.#statuses.set(uuid, s);
      uuids.push(uuid);
    }
    return uuids;
  }

  /** The last status published for `uuid`. */
  get(uuid: string): TaskStatus | undefined {
    return this.#statuses.get(uuid);
  }

  /** The last status published for every app of this node. */
  all(): IterableIterator<TaskStatus> {
    return this.#statuses.values();
  }

  /**
   * Publishes `uuid`'s status with `patch` applied (over an initial one built from `desired` when
   * there is none yet). Nothing is sent when only the time would change; an error that says what
   * the current one says keeps the current one (and its time). A container nobody configured and
   * that never had a status (something else's, in the executor's namespace) gets none.
   */
  async publish(uuid: string, desired: TaskConfig | undefined, patch: Partial<TaskStatus>): Promise<void> {
    const current = this.#statuses.get(uuid);
    if (!current && !desired) return;
    const base =
      current ??
      initialStatus({
        uuid,
        node: this.#node,
        configRevision: desired?.configRevision ?? 1,
        version: desired?.version ?? null,
        logPath: taskLogPath(this.#dataDir, uuid),
        now: new Date(),
      });
    const next: TaskStatus = { ...base, ...patch, node: this.#node, updatedAt: new Date().toISOString() };
    if (next.taskId === 0) next.anchorStartTicks = null;
    if (current && patch.error && sameError(current.error, patch.error)) next.error = current.error;
    if (current && jsonEqual({ ...current, updatedAt: "" }, { ...next, updatedAt: "" })) return;
    this.#statuses.set(uuid, next);
    await this.#publication.publish(uuid, next);
  }

  /** Deletes `uuid`'s status key. */
  async unpublish(uuid: string): Promise<void> {
    await this.#publication.unpublish(uuid);
    this.#statuses.delete(uuid);
  }
}

/** Task events, through the outbox (kept through a NATS outage); without one, none are emitted. */
export class TaskEvents {
  readonly #outbox: Outbox | undefined;
  readonly #log: Logger;
  readonly #onEmit: ExecutorObserver["emitted"];

  constructor(outbox: Outbox | undefined, logger: Logger, onEmit?: ExecutorObserver["emitted"]) {
    this.#outbox = outbox;
    this.#log = logger;
    this.#onEmit = onEmit;
  }

  /** Emits one event; a failure is logged, never thrown (the status is what matters). */
  async emit(
    uuid: string,
    type: TaskEventType,
    message: string,
    fields: Record<string, string | number | boolean | null>,
  ): Promise<void> {
    if (!this.#outbox) return;
    this.#onEmit?.(type, fields);
    try {
      await this.#outbox.emit({
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
