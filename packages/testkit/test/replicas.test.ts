import { describe, expect, it } from "vitest";
import { planReplicas } from "../src/index.js";

describe("planReplicas", () => {
  it("gives a number to the workers that scale, one of the others", () => {
    expect(Object.fromEntries(planReplicas(3))).toEqual({
      "spec-builder": 3,
      "task-executor": 1,
      "proc-monitor": 1,
      "hypervisor-seed-fetcher": 3,
    });
  });

  it("takes a count per worker, unlisted ones 1", () => {
    expect(Object.fromEntries(planReplicas({ "spec-builder": 4 }))).toMatchObject({
      "spec-builder": 4,
      "hypervisor-seed-fetcher": 1,
    });
  });

  it("refuses a second executor or monitor on a node, unknown workers and bad counts", () => {
    expect(() => planReplicas({ "task-executor": 2 })).toThrow(/task-executor runs once per node/);
    expect(() => planReplicas({ "proc-monitor": 2 })).toThrow(/proc-monitor runs once per node/);
    expect(() => planReplicas({ nope: 1 } as never)).toThrow(/no worker "nope"/);
    for (const bad of [0, -1, 1.5, 17, Number.NaN])
      expect(() => planReplicas(bad)).toThrow(/whole number from 1 to 16/);
  });
});
