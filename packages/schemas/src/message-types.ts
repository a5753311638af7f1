/** Which agent publishes which message type, and the schema of each type's values. */
import type { z } from "zod";
import { AnchorTaxRecordSchema } from "./anchor-tax-record.js";
import { AppInstanceConfigSchema } from "./app-instance-config.js";
import { HypervisorToolsConfigSchema } from "./hypervisor-tools-config.js";
import { NetworkInstanceConfigSchema } from "./network-instance-config.js";
import { NetworkInstanceStatusSchema } from "./network-instance-status.js";
import { SeedSchema } from "./seed.js";
import { TaskConfigSchema } from "./task-config.js";
import { TaskMetricsSchema } from "./task-metrics.js";
import { TaskStatusSchema } from "./task-status.js";

/**
 * The publishing agents; each owns the JetStream KV bucket named after it and is its only
 * writer. `controller` is what users and controllers publish as.
 */
export const agents = [
  "controller",
  "spec-builder",
  "task-executor",
  "proc-monitor",
  "hypervisor-seed-fetcher",
] as const;

/** A publishing agent (and the name of its KV bucket). */
export type Agent = (typeof agents)[number];

/** Whether `name` is one of the {@link agents}. */
export function isAgent(name: string): name is Agent {
  return (agents as readonly string[]).includes(name);
}

/** What the registry says about one message type. */
export interface MessageTypeInfo {
  /** The agent publishing values of the type, i.e. the bucket holding them. */
  readonly agent: Agent;
  /** What the key after `<Type>.` is, for humans: `<uuid>`, `<name>`, `<node>.<name>`, … */
  readonly key: string;
  /** The zod schema every value of the type is validated with, on publish and on receipt. */
  readonly schema: z.ZodType;
}

/**
 * Every KV message type: its publishing agent, its key and its schema. A value of type `T` with
 * key `k` lives in bucket `agent` at key `T.k`, i.e. subject `$KV.<agent>.<T>.<k>`.
 */
export const messageTypes = {
  AppInstanceConfig: { agent: "controller", key: "<uuid>", schema: AppInstanceConfigSchema },
  HypervisorToolsConfig: { agent: "controller", key: "<name>", schema: HypervisorToolsConfigSchema },
  NetworkInstanceConfig: { agent: "controller", key: "<name>", schema: NetworkInstanceConfigSchema },
  TaskConfig: { agent: "spec-builder", key: "<uuid>", schema: TaskConfigSchema },
  TaskStatus: { agent: "task-executor", key: "<uuid>", schema: TaskStatusSchema },
  NetworkInstanceStatus: {
    agent: "task-executor",
    key: "<node>.<name>",
    schema: NetworkInstanceStatusSchema,
  },
  TaskMetrics: { agent: "proc-monitor", key: "<uuid>", schema: TaskMetricsSchema },
  AnchorTax: {
    agent: "proc-monitor",
    key: "<node>.<sha256 hex of the tools digest>.<guestMiB>",
    schema: AnchorTaxRecordSchema,
  },
  HypervisorSeed: { agent: "hypervisor-seed-fetcher", key: "<node>.<name>", schema: SeedSchema },
  ImageSeed: {
    agent: "hypervisor-seed-fetcher",
    key: '<node>.<sha256 of "<ref> <arch>">',
    schema: SeedSchema,
  },
} as const satisfies Record<string, MessageTypeInfo>;

/** A KV message type name. */
export type MessageTypeName = keyof typeof messageTypes;

/** The value type (defaults applied) of message type `T`. */
export type MessageOf<T extends MessageTypeName> = z.output<(typeof messageTypes)[T]["schema"]>;

/** What a publisher may write for message type `T` (defaulted fields optional). */
export type MessageInputOf<T extends MessageTypeName> = z.input<(typeof messageTypes)[T]["schema"]>;

/** A message type as a table: its agent (the bucket), its name (the keys' first token), its schema. */
export interface MessageTable<T extends MessageTypeName> {
  readonly agent: (typeof messageTypes)[T]["agent"];
  readonly type: T;
  readonly schema: (typeof messageTypes)[T]["schema"];
}

/**
 * Message type `type` as publications and subscriptions take it, so that no call site restates
 * its agent or schema: `new Publication(bus, messageTable("TaskStatus"))`.
 */
export function messageTable<T extends MessageTypeName>(type: T): MessageTable<T> {
  const { agent, schema } = messageTypes[type];
  return { agent, type, schema };
}

/** The message type names whose values `agent` publishes. */
export function messageTypesOf(agent: Agent): MessageTypeName[] {
  return (Object.keys(messageTypes) as MessageTypeName[]).filter((t) => messageTypes[t].agent === agent);
}

/** The name of the message type validated by `schema` (the first, for the shared seed schema). */
export function messageTypeNameOf(schema: z.ZodType): MessageTypeName | undefined {
  return (Object.keys(messageTypes) as MessageTypeName[]).find((t) => messageTypes[t].schema === schema);
}
