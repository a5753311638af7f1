// Fixtures shared by the executor's unit tests: a READY TaskConfig and a TaskStatus.
import { RestartPolicySchema, specSha256 } from "@eve-tasks/schemas";
import type { OciSpec, ReadyTaskConfig, RestartPolicyInput, TaskStatus } from "@eve-tasks/schemas";

export const UUID = "6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10";
export const MiB = 2 ** 20;
export const NOW = 1_800_000_000_000;

export function spec(args = ["/bin/sh"]): OciSpec {
  return {
    ociVersion: "1.0.2",
    process: { args, cwd: "/", user: { uid: 0, gid: 0 } },
    root: { path: "rootfs", readonly: false },
    linux: { resources: { memory: { limit: 64 * MiB }, cpu: { period: 100000, quota: 100000 } } },
  };
}

export function ready(
  over: Partial<Omit<ReadyTaskConfig, "restartPolicy">> & { restartPolicy?: RestartPolicyInput } = {},
): ReadyTaskConfig {
  const s = over.spec ?? spec();
  return {
    schemaVersion: 1,
    status: "READY",
    uuid: UUID,
    configRevision: 7,
    node: "local",
    version: "1",
    displayName: "t",
    activate: true,
    restartCounter: 0,
    virtualization: "NOHYPER",
    spec: s,
    specSha256: specSha256(s),
    rootfs: { kind: "volume", path: "/v/rootfs", readOnly: false },
    volumes: [],
    memoryMiB: 64,
    anchorTaxMiB: 0,
    stopTimeoutMs: 10000,
    interfaces: [],
    ...over,
    restartPolicy: RestartPolicySchema.parse(over.restartPolicy ?? {}),
  };
}

export function status(state: TaskStatus["state"], over: Partial<TaskStatus> = {}): TaskStatus {
  return {
    schemaVersion: 1,
    uuid: UUID,
    version: "1",
    configRevision: 7,
    node: "local",
    state,
    taskId: 0,
    lastTaskId: 0,
    anchorStartTicks: null,
    exitCode: null,
    signal: null,
    oomKilled: false,
    restarts: 0,
    memoryLimitBytes: 64 * MiB,
    anchorTaxBytes: 0,
    logPath: "/log",
    waitingFor: null,
    startedAt: null,
    finishedAt: null,
    updatedAt: "2027-01-01T00:00:00.000Z",
    error: null,
    interfaces: [],
    ...over,
  };
}
