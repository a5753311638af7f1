// Example bus values for the status page's tests.
import {
  AppInstanceConfigSchema,
  NetworkInstanceStatusSchema,
  SeedSchema,
  TaskEventSchema,
  TaskMetricsSchema,
  TaskStatusSchema,
} from "@eve-tasks/schemas";
import type {
  AppInstanceConfig,
  AppInstanceConfigInput,
  NetworkInstanceStatus,
  Seed,
  TaskEvent,
  TaskMetrics,
  TaskStatus,
} from "@eve-tasks/schemas";

export const UUID = "6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10";
export const NOW = "2024-05-01T12:00:00.000Z";
export const MIB = 1048576;

export function config(over: Partial<AppInstanceConfigInput> = {}): AppInstanceConfig {
  return AppInstanceConfigSchema.parse({
    schemaVersion: 1,
    uuid: UUID,
    version: "1",
    displayName: "hello",
    virtualization: "NOHYPER",
    resources: { memoryMiB: 64, vcpus: 1 },
    root: { host: { readOnly: true } },
    ...over,
  });
}

export function status(over: Partial<TaskStatus> = {}): TaskStatus {
  return TaskStatusSchema.parse({
    schemaVersion: 1,
    uuid: UUID,
    version: "1",
    configRevision: 7,
    node: "local",
    state: "RUNNING",
    taskId: 4242,
    lastTaskId: 4242,
    anchorStartTicks: 123456,
    exitCode: null,
    signal: null,
    oomKilled: false,
    restarts: 0,
    memoryLimitBytes: 64 * MIB,
    anchorTaxBytes: 0,
    logPath: `/data/tasks/${UUID}/console.log`,
    waitingFor: null,
    startedAt: NOW,
    finishedAt: null,
    updatedAt: NOW,
    error: null,
    ...over,
  });
}

export function metrics(over: Partial<TaskMetrics> = {}): TaskMetrics {
  return TaskMetricsSchema.parse({
    schemaVersion: 1,
    uuid: UUID,
    taskId: 4242,
    cpuNs: 1000,
    rssBytes: 2 * MIB,
    memoryUsageBytes: 3 * MIB,
    memoryPeakBytes: 4 * MIB,
    memoryLimitBytes: 64 * MIB,
    oomKills: 0,
    threads: 1,
    sampledAt: NOW,
    measured: [
      "cpuNs",
      "rssBytes",
      "memoryUsageBytes",
      "memoryPeakBytes",
      "memoryLimitBytes",
      "oomKills",
      "threads",
    ],
    ...over,
  });
}

export function event(type: TaskEvent["type"], time: string, message: string = type, uuid = UUID): TaskEvent {
  return TaskEventSchema.parse({ schemaVersion: 1, uuid, type, time, message });
}

export function seed(over: Record<string, unknown> = {}): Seed {
  return SeedSchema.parse({
    schemaVersion: 1,
    state: "PULLING",
    ref: "registry.example:5000/app:1",
    digest: null,
    indexDigest: null,
    platform: null,
    rootfsPath: null,
    process: null,
    progress: { doneBytes: 10, totalBytes: 100 },
    error: null,
    ...over,
  });
}

export function network(over: Partial<NetworkInstanceStatus> = {}): NetworkInstanceStatus {
  return NetworkInstanceStatusSchema.parse({
    schemaVersion: 1,
    name: "lan",
    node: "local",
    state: "READY",
    bridge: "bn1",
    subnet: "10.88.0.0/24",
    gateway: "10.88.0.1",
    apps: [UUID],
    error: null,
    ...over,
  });
}
