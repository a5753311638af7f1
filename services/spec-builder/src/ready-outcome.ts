/** The READY and PENDING outcomes every kind of app ends in. */
import { TaskConfigSchema, ValueTooLargeError, encodeValueText } from "@eve-tasks/schemas";
import type { EncodedValue } from "@eve-tasks/schemas";
import type { ReadyTaskConfig } from "@eve-tasks/schemas";
import { failed } from "./failed-task-config.js";
import type { RawIdentity } from "./failed-task-config.js";
import type { BuildContext, BuildOutcome } from "./outcome.js";

/** A PENDING outcome: the app's build waits for a seed (`seed`) or a pull (`pull`). */
export function pendingOutcome(
  ctx: BuildContext,
  identity: { uuid: string; node: string; version: string },
  waitingFor: "seed" | "pull",
  message: string,
): BuildOutcome {
  return {
    status: "PENDING",
    taskConfig: {
      schemaVersion: 1,
      uuid: identity.uuid,
      configRevision: ctx.revision,
      node: identity.node,
      status: "PENDING",
      version: identity.version,
      waitingFor,
      message,
    },
  };
}

/**
 * The READY outcome of `taskConfig`, validated and encoded once for the write, or FAILED "too
 * large" when it would be over 64 KiB on the bus; `shorten` says what the user can shorten.
 */
export function readyOutcome(
  ctx: BuildContext,
  identity: RawIdentity,
  taskConfig: ReadyTaskConfig,
  shorten: string,
): BuildOutcome {
  let encoded: EncodedValue;
  try {
    encoded = encodeValueText(TaskConfigSchema, taskConfig, { type: "TaskConfig", key: ctx.key });
  } catch (err) {
    if (err instanceof ValueTooLargeError) {
      return failed(
        ctx,
        identity,
        "output-too-large",
        `the built TaskConfig is ${err.sizeBytes} bytes, over the ${err.limitBytes}-byte (64 KiB) limit: ` +
          `shorten ${shorten}`,
      );
    }
    throw err;
  }
  return { status: "READY", taskConfig, encoded };
}
