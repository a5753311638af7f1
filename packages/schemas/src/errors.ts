/** Errors thrown by {@link encodeValue}: small classes with `name` set, for `instanceof` checks. */
import { z } from "zod";
import { describeBytes } from "./size.js";

/** Where a value was going, for messages: its message type and KV key, when known. */
export interface ValueContext {
  /** Message type name, e.g. `AppInstanceConfig`. */
  readonly type?: string | undefined;
  /** KV key (without the type), e.g. the app's uuid. */
  readonly key?: string | undefined;
}

function describeTarget(context: ValueContext): string {
  const type = context.type ?? "value";
  return context.key === undefined ? type : `${type} at key "${context.key}"`;
}

/** A value does not match its schema. `message` lists every issue with its field path. */
export class SchemaValidationError extends Error {
  override readonly name = "SchemaValidationError";
  /** Message type name, or `value` when unknown. */
  readonly typeName: string;
  /** KV key, when given. */
  readonly key: string | undefined;
  /** The zod issues, each with its `path`. */
  readonly issues: readonly z.core.$ZodIssue[];
  /** `z.prettifyError` of the issues: one line per issue, then `→ at <path>`. */
  readonly details: string;

  constructor(error: z.ZodError, context: ValueContext = {}) {
    const details = z.prettifyError(error);
    super(`invalid ${describeTarget(context)}:\n${details}`, { cause: error });
    this.typeName = context.type ?? "value";
    this.key = context.key;
    this.issues = error.issues;
    this.details = details;
  }
}

/** An encoded value exceeds the limit receivers accept. */
export class ValueTooLargeError extends Error {
  override readonly name = "ValueTooLargeError";
  /** Message type name, or `value` when unknown. */
  readonly typeName: string;
  /** KV key, when given. */
  readonly key: string | undefined;
  /** Size of the encoded value, in bytes. */
  readonly sizeBytes: number;
  /** The limit, in bytes. */
  readonly limitBytes: number;

  constructor(sizeBytes: number, limitBytes: number, context: ValueContext = {}) {
    super(`${describeTarget(context)} is ${sizeBytes} bytes; the limit is ${describeBytes(limitBytes)}`);
    this.typeName = context.type ?? "value";
    this.key = context.key;
    this.sizeBytes = sizeBytes;
    this.limitBytes = limitBytes;
  }
}

/** A name that cannot be a device's node name in a fleet (one subject token: a letter, then letters, digits, '-' or '_'). */
export class InvalidFleetNodeError extends Error {
  override readonly name = "InvalidFleetNodeError";
  constructor(readonly node: string) {
    super(`invalid node name ${JSON.stringify(node)}: a letter, then letters, digits, '-' or '_'`);
  }
}
