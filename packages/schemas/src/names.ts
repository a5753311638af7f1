/** Names on the bus and on the node that the public contract fixes. */
import { join } from "node:path";
import { sha256Hex } from "./canonical-json.js";
import { InvalidFleetNodeError } from "./errors.js";

/** JetStream stream holding every task event. */
export const EVENTS_STREAM = "TASK_EVENTS";
/** Subjects of {@link EVENTS_STREAM}: `eve.events.<uuid>`. */
export const EVENTS_SUBJECTS = "eve.events.*";

/** Subject of the events of app `uuid`: `eve.events.<uuid>`. */
export function eventSubject(uuid: string): string {
  return `eve.events.${uuid}`;
}

/** Request subject to signal anchors on `node`: `eve.rpc.task-executor.<node>.signal`. */
export function signalSubject(node: string): string {
  return `eve.rpc.task-executor.${node}.signal`;
}

/**
 * Where a request to `node`'s task-executor (signal, logs) asks for its reply:
 * `<inbox prefix>.fleet.<node>` and a unique token after it. Below the requester's own inbox (so
 * only it receives the reply), and naming the node, so a fleet's hub can let device `node`'s leaf
 * connection send exactly the replies to requests made to it, and see no one else's
 * (docs/fleet.md "Logs and signals from the hub").
 */
export function nodeReplyPrefix(inboxPrefix: string, node: string): string {
  return `${inboxPrefix}.fleet.${node}`;
}

/** Request subject to stop every task of `node`: `eve.rpc.task-executor.<node>.stop-tasks`. */
export function stopTasksSubject(node: string): string {
  return `eve.rpc.task-executor.${node}.stop-tasks`;
}

/** containerd namespace of every app container and task. */
export const CONTAINERD_NAMESPACE = "eve-user-apps";

/** containerd runtime of every task. */
export const CONTAINERD_RUNTIME = "io.containerd.runc.v2";

/** Type URL of the runtime spec in a container's `Any`. */
export const OCI_SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/** The cgroup (`linux.cgroupsPath`) of app `uuid`: `/eve-user-apps/<uuid>`. */
export function cgroupsPathFor(uuid: string): string {
  return `/${CONTAINERD_NAMESPACE}/${uuid}`;
}

/**
 * Labels on every container, enough to rebuild the executor's view from containerd alone:
 * the app's uuid, its config's version label, its configRevision (decimal) and specSha256.
 */
export const TASK_LABELS = {
  uuid: "org.lfedge.eve-tasks.uuid",
  version: "org.lfedge.eve-tasks.version",
  configRevision: "org.lfedge.eve-tasks.config-revision",
  specSha256: "org.lfedge.eve-tasks.spec-sha256",
} as const;

/** The console log of app `uuid`: `<dataDir>/tasks/<uuid>/console.log`. */
export function taskLogPath(dataDir: string, uuid: string): string {
  return join(dataDir, "tasks", uuid, "console.log");
}

/** Key (within type HypervisorSeed) of the hypervisor tools `name` on `node`: `<node>.<name>`. */
export function hypervisorSeedKey(node: string, name: string): string {
  return `${node}.${name}`;
}

/**
 * Key (within type ImageSeed) of image `ref` for architecture `arch` on `node`:
 * `<node>.<sha256Hex("<ref> <arch>")>`. Without `arch` (an app that names none, so runs on the
 * node's own architecture, which a spec-builder cannot know) it is contract v1's
 * `<node>.<sha256Hex(ref)>`; the fetcher publishes such a seed under both keys.
 */
export function imageSeedKey(node: string, ref: string, arch?: string): string {
  return arch === undefined ? `${node}.${sha256Hex(ref)}` : `${node}.${sha256Hex(`${ref} ${arch}`)}`;
}

/**
 * The reply-subject prefix of NATS user `user`: `_INBOX_<user>`. Every client connecting as a
 * user sets it as its inbox prefix and the server lets each user subscribe to its own prefix
 * only, so replies and consumer deliveries (other users' reads) never reach another user.
 */
export function natsInboxPrefix(user: string): string {
  return `_INBOX_${user}`;
}

/** The durable consumer on `KV_controller` that every spec-builder replica shares. */
export const SPEC_BUILDER_DURABLE = "spec-builder";

/**
 * The durable consumers on `KV_controller` that the hypervisor-seed-fetchers of `node` share:
 * one over HypervisorToolsConfig, one over AppInstanceConfig (image roots).
 */
export function seedFetcherDurables(node: string): { tools: string; images: string } {
  return { tools: `hypervisor-seed-fetcher-${node}-tools`, images: `hypervisor-seed-fetcher-${node}-images` };
}

/** Key (within type NetworkInstanceStatus) of network instance `name` on `node`: `<node>.<name>`. */
export function networkInstanceStatusKey(node: string, name: string): string {
  return `${node}.${name}`;
}

/** The JetStream domain of a fleet's hub (DESIGN.md "Public contract v2 → Fleet"). */
export const HUB_DOMAIN = "hub";

/** A device's node name in a fleet: one subject token, usable in stream, user and consumer names. */
export const FLEET_NODE_PATTERN = /^[A-Za-z][A-Za-z0-9_-]*$/;

/** Whether `node` can be a device's name in a fleet ({@link FLEET_NODE_PATTERN}). */
export function isFleetNode(node: string): boolean {
  return FLEET_NODE_PATTERN.test(node);
}

/** @throws {InvalidFleetNodeError} when `node` cannot be a device's name in a fleet. */
export function assertFleetNode(node: string): void {
  if (!isFleetNode(node)) throw new InvalidFleetNodeError(node);
}

/**
 * The hub's bucket holding device `node`'s desired state: `controller-<node>`.
 * @throws {InvalidFleetNodeError} for a name that cannot be a device's.
 */
export function hubControllerBucket(node: string): string {
  assertFleetNode(node);
  return `controller-${node}`;
}

/** The device a hub bucket `controller-<node>` is for, or undefined for any other bucket name. */
export function nodeOfHubControllerBucket(bucket: string): string | undefined {
  const m = /^controller-(.+)$/.exec(bucket);
  return m !== null && isFleetNode(m[1]!) ? m[1] : undefined;
}

/**
 * The delivery subject prefix of `node`'s cross-domain stream traffic: the hub's sources of the
 * device's streams deliver on `eve.fleet.<node>.s.…`, the device's mirror of its hub bucket on
 * `eve.fleet.<node>.m.…`, so the hub can allow each device's leaf user exactly its own.
 */
export function fleetDeliverPrefix(node: string, kind: "mirror" | "source"): string {
  return `eve.fleet.${node}.${kind === "mirror" ? "m" : "s"}`;
}
