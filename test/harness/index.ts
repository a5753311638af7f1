/**
 * Helpers for integration tests: the shared services' endpoints, per-test nats-servers, worker
 * replicas as separate processes, polling, temp dirs and test root filesystems. Everything a
 * helper starts is stopped by PID when the test (or file) finishes.
 */
export { harnessEnv } from "./env.js";
export type { HarnessEnv } from "./env.js";
export { deferCleanup, tempDir } from "./cleanup.js";
export type { Cleanup } from "./cleanup.js";
export { withPrivateNats } from "./private-nats.js";
export type { PrivateNats, PrivateNatsOptions } from "./private-nats.js";
export { spawnReplicas } from "./replicas.js";
export type {
  JsonObject,
  Replica,
  ReplicaExit,
  ReplicaLine,
  Replicas,
  SpawnReplicasOptions,
} from "./replicas.js";
export { waitFor } from "./wait.js";
export type { WaitForOptions } from "./wait.js";
export { makeRootfs, ROOTFS_COMMANDS } from "./rootfs.js";
export type { TestRootfs } from "./rootfs.js";
export { BUILT, REPO_ROOT, runNode, statusWaiter, uuidMaker } from "./e2e.js";
export type { NodeRun, StatusWaiter } from "./e2e.js";
export { startNode } from "./node.js";
export type { NodeDirs, StartNodeOptions, TestNode, WorkerName } from "./node.js";
