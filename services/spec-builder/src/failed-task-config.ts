/**
 * FAILED TaskConfigs: a stage that fails passes its error downstream, so the executor shows it in
 * TaskStatus. Pure functions; no bus.
 */
import {
  DEFAULT_NODE,
  NameSchema,
  NativeAppInstanceConfigSchema,
  UuidSchema,
  VersionLabelSchema,
} from "@eve-tasks/schemas";
import type { DecodeFailureReason, ErrorSource, FailedTaskConfig } from "@eve-tasks/schemas";
import type { BuildContext, BuildOutcome, FailureReason } from "./outcome.js";

/** The identity fields of a config that could not be read as an AppInstanceConfig. */
export interface RawIdentity {
  /** The node named by the raw value, else `local`. */
  readonly node: string;
  /** The version label of the raw value, when it has a valid one. */
  readonly version: string | undefined;
}

/**
 * A schema that accepts any JSON object: the shape a raw AppInstanceConfig is read with when it
 * failed the real schema, to pick out `node` and `version` with {@link identityOf}. (Derived from
 * a schemas export, as this package does not depend on zod itself.)
 */
export const RawConfigSchema = NativeAppInstanceConfigSchema.pick({}).loose();

/**
 * The `node` and `version` of a raw (invalid) config value, each kept only when valid: `node`
 * decides which executor reports the error, so an unreadable one means the default node.
 */
export function identityOf(raw: unknown): RawIdentity {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    return { node: DEFAULT_NODE, version: undefined };
  }
  const fields = raw as { node?: unknown; version?: unknown };
  const node = NameSchema.safeParse(fields.node);
  const version = VersionLabelSchema.safeParse(fields.version);
  return {
    node: node.success ? node.data : DEFAULT_NODE,
    version: version.success ? version.data : undefined,
  };
}

/** The outcome for a key that is not a uuid: nothing can be written for it. */
export function unreportable(key: string): BuildOutcome | undefined {
  if (UuidSchema.safeParse(key).success) return undefined;
  return {
    status: "UNREPORTABLE",
    message:
      `the key ${JSON.stringify(key)} is not a lowercase UUID, so no TaskConfig can carry this config's ` +
      `error: publish each AppInstanceConfig under its own uuid`,
  };
}

/** A FAILED outcome for `ctx` with `message`, reported as from `source` (default `spec-builder`). */
export function failed(
  ctx: BuildContext,
  identity: RawIdentity,
  reason: FailureReason,
  message: string,
  source: ErrorSource = "spec-builder",
): BuildOutcome {
  const bad = unreportable(ctx.key);
  if (bad) return bad;
  const taskConfig: FailedTaskConfig = {
    schemaVersion: 1,
    uuid: ctx.key,
    configRevision: ctx.revision,
    node: identity.node,
    status: "FAILED",
    ...(identity.version === undefined ? {} : { version: identity.version }),
    error: {
      source,
      message,
      configRevision: ctx.revision,
      time: ctx.time.toISOString(),
    },
  };
  return { status: "FAILED", reason, taskConfig };
}

/** The message a FAILED TaskConfig carries for a value the decoder refused. */
export function invalidConfigMessage(reason: DecodeFailureReason, message: string): string {
  switch (reason) {
    case "too-large":
      return `AppInstanceConfig too large: ${message}`;
    case "malformed-json":
      return `invalid AppInstanceConfig: ${message}`;
    case "schema":
      return `invalid AppInstanceConfig:\n${message}`;
  }
}

/**
 * The FAILED outcome for a value the work queue could not decode: too large, malformed JSON, or
 * failing the schema (an unknown virtualization mode is a schema failure). `identity` comes from
 * the raw value when it is readable ({@link identityOf}).
 */
export function rejectInvalidConfig(
  invalid: { readonly reason: string; readonly message: string },
  identity: RawIdentity,
  ctx: BuildContext,
): BuildOutcome {
  const reason: DecodeFailureReason =
    invalid.reason === "too-large" || invalid.reason === "malformed-json" ? invalid.reason : "schema";
  return failed(ctx, identity, reason, invalidConfigMessage(reason, invalid.message));
}

/** The FAILED outcome after the work queue gave up on a change that kept failing. */
export function giveUp(err: unknown, identity: RawIdentity, ctx: BuildContext): BuildOutcome {
  const why = err instanceof Error ? err.message : String(err);
  return failed(
    ctx,
    identity,
    "gave-up",
    `the spec-builder gave up building this config after repeated failures: ${why}`,
  );
}

/**
 * Whether two FAILED TaskConfigs say the same thing, ignoring when the error was found, so a
 * change handled again (a redelivery, or a second message for the same key) does not rewrite it.
 */
export function sameFailure(a: FailedTaskConfig, b: FailedTaskConfig): boolean {
  return (
    a.uuid === b.uuid &&
    a.configRevision === b.configRevision &&
    a.node === b.node &&
    a.version === b.version &&
    a.error.source === b.error.source &&
    a.error.message === b.error.message
  );
}
