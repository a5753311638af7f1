/**
 * NetworkInstanceStatus: what the task-executor made of one network instance on its node,
 * published at `$KV.task-executor.NetworkInstanceStatus.<node>.<name>`.
 */
import { z } from "zod";
import { expected } from "./error-messages.js";
import { IfNameSchema, Ipv4AddressSchema, Ipv4SubnetSchema } from "./network-primitives.js";
import { NameSchema, SchemaVersionSchema, UuidSchema } from "./primitives.js";
import { StageErrorSchema } from "./stage-error.js";

/** `READY`: the bridge, its rules and (local) dnsmasq are up; `FAILED`: `error` says why not. */
export const NetworkInstanceStateSchema = z.enum(["READY", "FAILED"], {
  error: expected('must be "READY" or "FAILED"'),
});
/** The state of a network instance. */
export type NetworkInstanceState = z.infer<typeof NetworkInstanceStateSchema>;

/** The state of one network instance on one node. */
export const NetworkInstanceStatusSchema = z
  .object({
    schemaVersion: SchemaVersionSchema,
    name: NameSchema,
    node: NameSchema,
    state: NetworkInstanceStateSchema,
    bridge: IfNameSchema.nullable().meta({
      description: "the instance's bridge on the node; null if none exists",
    }),
    subnet: Ipv4SubnetSchema,
    gateway: Ipv4AddressSchema,
    apps: z
      .array(UuidSchema, { error: expected("must be a list of app UUIDs") })
      .default([])
      .meta({ description: "the apps with an interface on the instance" }),
    error: StageErrorSchema.nullable().meta({
      description: "why the instance is FAILED, or what is wrong with its latest config; else null",
    }),
  })
  .superRefine((s, ctx) => {
    if (s.state === "FAILED" && s.error === null) {
      ctx.addIssue({
        code: "custom",
        message: "a FAILED status carries the error that caused it",
        path: ["error"],
      });
    }
  });

/** The state of one network instance. */
export type NetworkInstanceStatus = z.infer<typeof NetworkInstanceStatusSchema>;
