import { boundedMessage } from "@eve-tasks/schemas";
import type { StageError, TaskStatus } from "@eve-tasks/schemas";

/** The TaskStatus of an app the executor has not published anything for yet. */
export function initialStatus(o: {
  uuid: string;
  node: string;
  configRevision: number;
  version: string | null;
  logPath: string;
  now: Date;
}): TaskStatus {
  return {
    schemaVersion: 1,
    uuid: o.uuid,
    version: o.version,
    configRevision: o.configRevision,
    node: o.node,
    state: "PENDING",
    taskId: 0,
    lastTaskId: 0,
    anchorStartTicks: null,
    exitCode: null,
    signal: null,
    oomKilled: false,
    restarts: 0,
    memoryLimitBytes: null,
    anchorTaxBytes: null,
    logPath: o.logPath,
    waitingFor: null,
    startedAt: null,
    finishedAt: null,
    updatedAt: o.now.toISOString(),
    error: null,
    interfaces: [],
  };
}

/**
 * A task-executor error about `configRevision`, for TaskStatus.error: at most
 * MAX_DECODE_MESSAGE_CHARS characters like every stage's message (it may quote a host path of a
 * config, up to 4096 characters itself).
 */
export function executorError(message: string, configRevision: number, now = new Date()): StageError {
  return {
    source: "task-executor",
    message: boundedMessage(message),
    configRevision,
    time: now.toISOString(),
  };
}
