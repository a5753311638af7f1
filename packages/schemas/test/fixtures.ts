// Example messages shared by the tests. `designExample` is DESIGN.md's AppInstanceConfig verbatim.
import type { AppInstanceConfigInput, OciSpec, TaskStatus } from "../src/index.js";
import { specSha256 } from "../src/index.js";

export const UUID = "6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10";
export const TIME = "2024-05-01T12:00:00.000Z";

export const designExampleJson = `{
  "schemaVersion": 1,
  "uuid": "6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10",
  "version": "1",
  "displayName": "hello",
  "activate": true,
  "restartCounter": 0,
  "node": "local",
  "arch": "x86_64",
  "virtualization": "NOHYPER",
  "resources": { "memoryMiB": 64, "vcpus": 1 },
  "root": { "volume": { "path": "/var/lib/eve/volumes/hello/rootfs", "readOnly": false } },
  "volumes": [ { "path": "/var/lib/eve/volumes/hello/data", "mountPoint": "/data", "readOnly": false } ],
  "process": { "args": ["/bin/sh", "-c", "trap 'exit 0' TERM; echo hello; sleep 3600 & wait"],
               "env": { "GREETING": "hi" }, "cwd": "/", "user": "0:0" },
  "restartPolicy": { "mode": "never" },
  "stopTimeoutMs": 10000
}`;

/** The smallest native container config a user may write. */
export function minimalNative(): AppInstanceConfigInput {
  return {
    schemaVersion: 1,
    uuid: UUID,
    version: "1",
    virtualization: "NOHYPER",
    resources: { memoryMiB: 64, vcpus: 1 },
    root: { image: { ref: "registry.example:5000/app:1" } },
  };
}

/** A small VM config. */
export function minimalVm(): AppInstanceConfigInput {
  return {
    schemaVersion: 1,
    uuid: UUID,
    version: "2",
    virtualization: "HVM",
    resources: { memoryMiB: 512, vcpus: 2 },
    vm: {
      kernel: "/var/lib/eve/volumes/vm/vmlinuz",
      disks: [{ path: "/var/lib/eve/volumes/vm/disk.qcow2", format: "qcow2" }],
    },
  };
}

/** A node-independent spec as the spec-builder would write it. */
export function ociSpec(): OciSpec {
  return {
    ociVersion: "1.2.1",
    process: {
      args: ["/bin/sh", "-c", "echo hello"],
      env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hi"],
      cwd: "/",
      user: { uid: 0, gid: 0 },
      noNewPrivileges: true,
      terminal: false,
    },
    root: { path: "rootfs", readonly: false },
    hostname: UUID,
    mounts: [{ destination: "/proc", type: "proc", source: "proc" }],
    linux: {
      namespaces: [{ type: "pid" }, { type: "mount" }, { type: "network" }],
      resources: { memory: { limit: 64 * 1048576 }, cpu: { period: 100000, quota: 100000 } },
      maskedPaths: ["/proc/kcore"],
      readonlyPaths: ["/proc/sys"],
    },
    annotations: { "org.example/x": "y" },
  };
}

/** A READY TaskConfig for the design example, with a correct specSha256. */
export function readyTaskConfig(): Record<string, unknown> {
  const spec = ociSpec();
  return {
    schemaVersion: 1,
    status: "READY",
    uuid: UUID,
    version: "1",
    configRevision: 7,
    node: "local",
    displayName: "hello",
    activate: true,
    restartCounter: 0,
    virtualization: "NOHYPER",
    spec,
    specSha256: specSha256(spec),
    rootfs: { kind: "volume", path: "/var/lib/eve/volumes/hello/rootfs", readOnly: false },
    volumes: [{ path: "/var/lib/eve/volumes/hello/data", mountPoint: "/data", readOnly: false }],
    memoryMiB: 64,
    anchorTaxMiB: 0,
    restartPolicy: { mode: "never", maxRestarts: 5, windowMs: 600000, backoffMs: 1000, maxBackoffMs: 60000 },
    stopTimeoutMs: 10000,
  };
}

/** A RUNNING TaskStatus. */
export function runningStatus(): TaskStatus {
  return {
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
    memoryLimitBytes: 67108864,
    anchorTaxBytes: 0,
    logPath: `/var/lib/eve-tasks/tasks/${UUID}/console.log`,
    waitingFor: null,
    startedAt: TIME,
    finishedAt: null,
    updatedAt: TIME,
    error: null,
    interfaces: [],
  };
}
