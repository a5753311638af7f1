// Example values for the CLI's unit tests.
import { AppInstanceConfigSchema, TaskStatusSchema } from "@eve-tasks/schemas";
import type { AppInstanceConfig, AppInstanceConfigInput, TaskStatus } from "@eve-tasks/schemas";
import type { AppView, Stored } from "../src/index.js";

export const UUID = "6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10";
export const UUID2 = "7a2d2d2f-1d0b-4e54-8e3d-5b2c8d4f3a21";
export const NOW = new Date("2024-05-01T12:00:00.000Z");

/** A native container config (defaults applied). */
export function config(over: Partial<AppInstanceConfigInput> = {}): AppInstanceConfig {
  return AppInstanceConfigSchema.parse({
    schemaVersion: 1,
    uuid: UUID,
    version: "1",
    displayName: "hello",
    virtualization: "NOHYPER",
    resources: { memoryMiB: 64, vcpus: 1 },
    root: { volume: { path: "/var/lib/eve/volumes/hello/rootfs" } },
    ...over,
  });
}

/** A VM config (defaults applied). */
export function vmConfig(): AppInstanceConfig {
  return AppInstanceConfigSchema.parse({
    schemaVersion: 1,
    uuid: UUID2,
    version: "1",
    displayName: "vm",
    virtualization: "HVM",
    resources: { memoryMiB: 1024, vcpus: 2 },
    vm: { kernel: "/var/lib/eve/volumes/vm/vmlinuz" },
  });
}

/** A stored config, written `agoMs` before {@link NOW}. */
export function stored(value: AppInstanceConfig, revision = 7, agoMs = 90_000): Stored<AppInstanceConfig> {
  return { key: value.uuid, revision, writtenAt: new Date(NOW.getTime() - agoMs), value };
}

/** A RUNNING status started 5 minutes before {@link NOW}. */
export function running(over: Partial<TaskStatus> = {}): TaskStatus {
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
    memoryLimitBytes: 64 * 1048576,
    anchorTaxBytes: 0,
    logPath: `/data/tasks/${UUID}/console.log`,
    waitingFor: null,
    startedAt: new Date(NOW.getTime() - 300_000).toISOString(),
    finishedAt: null,
    updatedAt: NOW.toISOString(),
    error: null,
    ...over,
  });
}

/** A HALTED status: the task exited after SIGTERM. */
export function halted(over: Partial<TaskStatus> = {}): TaskStatus {
  return running({
    state: "HALTED",
    taskId: 0,
    anchorStartTicks: null,
    exitCode: 143,
    signal: "SIGTERM",
    finishedAt: NOW.toISOString(),
    ...over,
  });
}

/** An app view. */
export function app(c: AppInstanceConfig | undefined, s: TaskStatus | undefined, uuid = UUID): AppView {
  return { uuid: c?.uuid ?? s?.uuid ?? uuid, config: c ? stored(c) : undefined, status: s };
}
