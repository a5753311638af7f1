import { describe, expect, it } from "vitest";
import { RestartPolicySchema } from "@eve-tasks/schemas";
import { backoffFor, decideRestart, inWindow } from "../src/restart-policy.js";

const policy = (over: object = {}) => RestartPolicySchema.parse(over);

describe("restart policy decisions", () => {
  it("never restarts under never, whatever the exit", () => {
    const d = decideRestart(policy(), { exitCode: 1, signal: null }, [], 0);
    expect(d).toEqual({ action: "none", message: "ended with exit code 1; restart policy is never" });
  });

  it("on-failure restarts a failure or a signal but not a clean exit", () => {
    const p = policy({ mode: "on-failure" });
    expect(decideRestart(p, { exitCode: 0, signal: null }, [], 0).action).toBe("none");
    expect(decideRestart(p, { exitCode: 2, signal: null }, [], 0).action).toBe("restart");
    expect(decideRestart(p, { exitCode: 137, signal: "SIGKILL" }, [], 0).action).toBe("restart");
    // An exit status nobody could read is treated as a failure.
    expect(decideRestart(p, { exitCode: null, signal: null }, [], 0).action).toBe("restart");
  });

  it("always restarts a clean exit too", () => {
    expect(decideRestart(policy({ mode: "always" }), { exitCode: 0, signal: null }, [], 0).action).toBe(
      "restart",
    );
  });

  it("doubles the delay per restart in the window, capped at maxBackoffMs", () => {
    const p = policy({ mode: "always", backoffMs: 1000, maxBackoffMs: 5000, maxRestarts: 10 });
    expect([1, 2, 3, 4, 5].map((n) => backoffFor(p, n))).toEqual([1000, 2000, 4000, 5000, 5000]);
    const d = decideRestart(p, { exitCode: 1, signal: null }, [10, 20], 100);
    expect(d).toMatchObject({ action: "restart", attempt: 3, delayMs: 4000 });
    expect(d.message).toBe(
      "ended with exit code 1; restarting in 4000 ms (restart 3 of at most 10 within 600000 ms)",
    );
  });

  it("gives up at maxRestarts within the window, and forgets restarts that left it", () => {
    const p = policy({ mode: "on-failure", maxRestarts: 2, windowMs: 1000 });
    const given = decideRestart(p, { exitCode: 137, signal: "SIGKILL" }, [5000, 5500], 5900);
    expect(given).toEqual({
      action: "give-up",
      message:
        "ended with SIGKILL (exit status 137); restart policy gave up after 2 restart(s) within 1000 ms (maxRestarts 2)",
    });
    expect(inWindow(p, [5000, 5500], 6200)).toEqual([5500]);
    expect(decideRestart(p, { exitCode: 1, signal: null }, [5000, 5500], 6200)).toMatchObject({
      action: "restart",
      attempt: 2,
    });
  });

  it("gives up at once with maxRestarts 0", () => {
    expect(
      decideRestart(policy({ mode: "always", maxRestarts: 0 }), { exitCode: 0, signal: null }, [], 0).action,
    ).toBe("give-up");
  });
});
