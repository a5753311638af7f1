/**
 * @eve-tasks/schemas: zod schemas of every message of the public contract v1 (and the internal
 * TaskConfig), the names the contract fixes, the size rule, and the one decoder every worker uses.
 */
export * from "./error-messages.js";
export * from "./primitives.js";
export * from "./restart-policy.js";
export * from "./stage-error.js";
export * from "./ipv4.js";
export * from "./network-primitives.js";
export * from "./app-interfaces.js";
export * from "./app-instance-config.js";
export * from "./network-instance-config.js";
export * from "./network-instance-status.js";
export * from "./hypervisor-tools-config.js";
export * from "./runtime-image.js";
export * from "./task-status.js";
export * from "./task-metrics.js";
export * from "./seed.js";
export * from "./task-event.js";
export * from "./signal-request.js";
export * from "./signal-reply.js";
export * from "./stop-tasks.js";
export * from "./operator-surface.js";
export * from "./oci-spec.js";
export * from "./task-config.js";
export * from "./canonical-json.js";
export * from "./names.js";
export * from "./anchor-tax.js";
export * from "./size.js";
export * from "./errors.js";
export * from "./codec.js";
export * from "./json-syntax.js";
export * from "./message-types.js";
export * from "./json-schema.js";
export * from "./vm-annotations.js";
export * from "./anchor-tax-record.js";
