// A task-executor error that quotes a config's value stays within the size every stage's message
// keeps, so TaskStatus.error never grows with a hostile path.
import { describe, expect, it } from "vitest";
import { MAX_DECODE_MESSAGE_CHARS } from "@eve-tasks/schemas";
import { executorError } from "../src/status.js";

describe("executorError", () => {
  it("keeps a short message as it is and cuts a long one, saying how much was cut", () => {
    expect(executorError("root volume /v/a does not exist", 3).message).toBe(
      "root volume /v/a does not exist",
    );
    const path = `/v/${"a".repeat(4090)}`;
    const long = executorError(`root volume ${path} does not exist`, 3);
    expect(long.message.length).toBeLessThanOrEqual(MAX_DECODE_MESSAGE_CHARS);
    expect(long.message).toMatch(/^root volume \/v\/a+… \(\d+ more characters\)$/);
    expect(long).toMatchObject({ source: "task-executor", configRevision: 3 });
  });
});
