/**
 * The fleet's buckets and streams (DESIGN.md "Public contract v2 → Fleet"): a hub (JetStream
 * domain `hub`) holds each device's desired state in bucket `controller-<node>` and aggregates
 * every device's TaskStatus (bucket `task-executor`) and events (stream `TASK_EVENTS`) through
 * stream sources from each device's domain; a device (a leaf node, JetStream domain = its node
 * name) has a `controller` bucket that is a mirror of the hub's `controller-<node>`.
 *
 * Decide in pure functions (the configs, {@link planDeviceSources}), act in the `ensure…`
 * functions. Tried on nats-server 2.9.10: cross-domain mirrors and sources of KV streams, a
 * mirror keeping the origin's sequence numbers (so a device's KV revisions, and hence
 * `configRevision`, are the hub's), several sources of the same stream name from different
 * domains, sources resuming from their last sequence after a leaf outage.
 */
import { DiscardPolicy, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import type { StreamConfig, StreamInfo, StreamSource, StreamSourceInfo } from "@nats-io/jetstream";
import {
  EVENTS_STREAM,
  HUB_DOMAIN,
  assertFleetNode,
  fleetDeliverPrefix,
  hubControllerBucket,
  nodeOfHubControllerBucket,
} from "@eve-tasks/schemas";
import { BUCKET_CONFIG, EVENTS_STREAM_CONFIG } from "./buckets.js";
import type { Bus } from "./connection.js";
import { ConfigMismatchError } from "./errors.js";
import { streamOf } from "./keys.js";
import { isStreamNotFound } from "./table-keys.js";

export { HUB_DOMAIN, fleetDeliverPrefix };

/** The JetStream API prefix of a domain, as a stream source's `external.api`. */
export function domainApi(domain: string): string {
  return `$JS.${domain}.API`;
}

/** The stream of a device's `controller` bucket: a mirror of the hub's `controller-<node>`. */
export function controllerMirrorConfig(node: string): Partial<StreamConfig> & { name: string } {
  return {
    name: streamOf("controller"),
    storage: BUCKET_CONFIG.storage,
    max_msg_size: BUCKET_CONFIG.maxValueSize,
    max_msgs_per_subject: BUCKET_CONFIG.history,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.New,
    allow_rollup_hdrs: true,
    allow_direct: true,
    num_replicas: 1,
    mirror: {
      name: streamOf(hubControllerBucket(node)),
      external: { api: domainApi(HUB_DOMAIN), deliver: fleetDeliverPrefix(node, "mirror") },
    },
  };
}

/** Whether an existing stream is the mirror {@link controllerMirrorConfig} describes. */
export function isControllerMirrorOf(config: Partial<StreamConfig>, node: string): boolean {
  const m = config.mirror;
  return (
    m !== undefined &&
    m !== null &&
    m.name === streamOf(hubControllerBucket(node)) &&
    m.external?.api === domainApi(HUB_DOMAIN)
  );
}

async function info(bus: Bus, stream: string): Promise<StreamInfo | undefined> {
  try {
    return await bus.jsm.streams.info(stream);
  } catch (err) {
    if (isStreamNotFound(err)) return undefined;
    throw err;
  }
}

/** What {@link ensureControllerMirror} found or did. */
export type ControllerMirrorOutcome = "created" | "exists" | "replaced-empty";

/**
 * On a device: makes its `controller` bucket the mirror of the hub's `controller-<node>`. An
 * empty plain bucket (a node that ran alone before, with nothing published) is replaced; one
 * holding values is refused, since its desired state would be lost: it must be published to the
 * hub first. Works while the hub is unreachable (the mirror catches up once the leaf is up).
 *
 * @throws {ConfigMismatchError} when `controller` exists as something else.
 */
export async function ensureControllerMirror(bus: Bus, node: string): Promise<ControllerMirrorOutcome> {
  const wanted = controllerMirrorConfig(node);
  const existing = await info(bus, wanted.name);
  if (existing !== undefined) {
    if (isControllerMirrorOf(existing.config, node)) return "exists";
    if (existing.config.mirror || existing.state.messages > 0) {
      throw new ConfigMismatchError(`bucket controller`, [
        existing.config.mirror
          ? `it mirrors ${existing.config.mirror.name}, expected ${wanted.mirror!.name} of domain ${HUB_DOMAIN}`
          : `it is a plain bucket holding ${existing.state.messages} value(s) published on this node, ` +
            `while in device mode (EVE_HUB_LEAF_URL) it must mirror the hub's ${hubControllerBucket(node)}: ` +
            `publish those apps to the hub (eve-tasks apply against the hub), then remove the local bucket ` +
            `(nats stream rm ${wanted.name})`,
      ]);
    }
    await bus.jsm.streams.delete(wanted.name);
    await bus.jsm.streams.add(wanted);
    return "replaced-empty";
  }
  await bus.jsm.streams.add(wanted);
  return "created";
}

/** The source of a device's stream `stream` on the hub. */
export function deviceSource(stream: string, node: string): StreamSource {
  return {
    name: stream,
    external: { api: domainApi(node), deliver: fleetDeliverPrefix(node, "source") },
  };
}

/** The domain a hub stream's source comes from (its `external.api`), or undefined for a local one. */
export function sourceDomain(source: Partial<StreamSource>): string | undefined {
  const m = /^\$JS\.([^.]+)\.API$/.exec(source.external?.api ?? "");
  return m?.[1];
}

/**
 * The sources a hub aggregate stream must have for `nodes`, given the ones it has: those it has,
 * plus one per node not yet there (never removes one: a device taken out of the fleet is removed
 * by an operator, its history kept).
 */
export function planDeviceSources(
  stream: string,
  existing: readonly StreamSource[],
  nodes: readonly string[],
): { sources: StreamSource[]; added: string[] } {
  const have = new Set(existing.filter((s) => s.name === stream).map((s) => sourceDomain(s)));
  const added = nodes.filter((n, i) => !have.has(n) && nodes.indexOf(n) === i);
  return { sources: [...existing, ...added.map((n) => deviceSource(stream, n))], added };
}

/** The hub's aggregate of every device's TaskStatus: bucket `task-executor` with sources. */
export function hubStatusStreamConfig(
  sources: StreamSource[],
  replicas: number,
): Partial<StreamConfig> & { name: string } {
  return {
    name: streamOf("task-executor"),
    subjects: ["$KV.task-executor.>"],
    storage: BUCKET_CONFIG.storage,
    max_msg_size: BUCKET_CONFIG.maxValueSize,
    max_msgs_per_subject: BUCKET_CONFIG.history,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.New,
    allow_rollup_hdrs: true,
    allow_direct: true,
    num_replicas: replicas,
    sources,
  };
}

/** The hub's aggregate of every device's events: stream `TASK_EVENTS` with sources. */
export function hubEventsStreamConfig(
  sources: StreamSource[],
  replicas: number,
): Partial<StreamConfig> & { name: string } {
  return {
    ...EVENTS_STREAM_CONFIG,
    storage: StorageType.File,
    subjects: [...EVENTS_STREAM_CONFIG.subjects],
    num_replicas: replicas,
    sources,
  };
}

/** What {@link ensureDevicesOnHub} did. */
export interface HubProvisioning {
  /** `controller-<node>` buckets created. */
  readonly bucketsCreated: string[];
  /** Devices added as sources of `task-executor` and `TASK_EVENTS`. */
  readonly sourcesAdded: string[];
}

/**
 * On the hub, as admin: the bucket `controller-<node>` of every device (replicas as given: 3 on
 * a hub of three or more servers), and every device as a source of the hub's `task-executor`
 * bucket and `TASK_EVENTS` stream (created when missing). Idempotent; run by one provisioner at a
 * time (two concurrent updates of one stream's sources would race: the later wins).
 */
export async function ensureDevicesOnHub(
  bus: Bus,
  nodes: readonly string[],
  options: { replicas: number },
): Promise<HubProvisioning> {
  for (const n of nodes) assertFleetNode(n);
  const bucketsCreated: string[] = [];
  for (const n of nodes) {
    const name = streamOf(hubControllerBucket(n));
    if ((await info(bus, name)) === undefined) {
      await bus.jsm.streams.add({
        name,
        subjects: [`$KV.${hubControllerBucket(n)}.>`],
        storage: BUCKET_CONFIG.storage,
        max_msg_size: BUCKET_CONFIG.maxValueSize,
        max_msgs_per_subject: BUCKET_CONFIG.history,
        retention: RetentionPolicy.Limits,
        discard: DiscardPolicy.New,
        allow_rollup_hdrs: true,
        allow_direct: true,
        deny_delete: true,
        num_replicas: options.replicas,
      });
      bucketsCreated.push(hubControllerBucket(n));
    }
  }
  const added = new Set<string>();
  for (const [stream, configOf] of [
    [streamOf("task-executor"), hubStatusStreamConfig],
    [EVENTS_STREAM, hubEventsStreamConfig],
  ] as const) {
    const existing = await info(bus, stream);
    if (existing === undefined) {
      const plan = planDeviceSources(stream, [], nodes);
      await bus.jsm.streams.add(configOf(plan.sources, options.replicas));
      plan.added.forEach((n) => added.add(n));
      continue;
    }
    const plan = planDeviceSources(stream, existing.config.sources ?? [], nodes);
    if (plan.added.length === 0) continue;
    await bus.jsm.streams.update(stream, { ...existing.config, sources: plan.sources });
    plan.added.forEach((n) => added.add(n));
  }
  return { bucketsCreated, sourcesAdded: [...added] };
}

/** A device as the hub sees it. */
export interface HubDevice {
  readonly node: string;
  /** The hub has a `controller-<node>` bucket for it. */
  readonly hasBucket: boolean;
  /** ms since the hub's `task-executor` source last heard from the device (null: never). */
  readonly statusSourceActiveMs: number | null;
  /** Messages the source is behind, as the hub last knew. */
  readonly statusSourceLag: number | null;
  /** The source's error, if any (e.g. the leaf is down). */
  readonly statusSourceError: string | null;
}

/** The devices the hub knows: from its `controller-<node>` buckets and its status sources. */
export async function listHubDevices(bus: Bus): Promise<HubDevice[]> {
  const nodes = new Map<string, { hasBucket: boolean; source?: StreamSourceInfo }>();
  for await (const name of bus.jsm.streams.names()) {
    const node = name.startsWith("KV_") ? nodeOfHubControllerBucket(name.slice(3)) : undefined;
    if (node !== undefined) nodes.set(node, { hasBucket: true });
  }
  const status = await info(bus, streamOf("task-executor"));
  for (const s of status?.sources ?? []) {
    const node = sourceDomain(s);
    if (node === undefined) continue;
    nodes.set(node, { hasBucket: nodes.get(node)?.hasBucket ?? false, source: s });
  }
  return [...nodes]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([node, v]) => ({
      node,
      hasBucket: v.hasBucket,
      statusSourceActiveMs: v.source && v.source.active >= 0 ? Math.round(v.source.active / 1e6) : null,
      statusSourceLag: v.source ? v.source.lag : null,
      statusSourceError: v.source?.error ? (v.source.error.description ?? "error") : null,
    }));
}
