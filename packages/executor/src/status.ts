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

/** A task-executor error about `configRevision`, for TaskStatus.error. */
export function executorError(message: string, configRevision: number, now = new Date()): StageError {
  return { source: "task-executor", message, configRevision, time: now.toISOString() };
}
