import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  HypervisorToolsConfigSchema,
  LogsReplySchema,
  LogsRequestSchema,
  StopTasksReplySchema,
  StopTasksRequestSchema,
  SeedSchema,
  SignalReplySchema,
  SignalRequestSchema,
  TaskEventSchema,
  TaskMetricsSchema,
  TaskStatusSchema,
  TASK_STATES,
} from "../src/index.js";
import { runningStatus, TIME, UUID } from "./fixtures.js";

function errorOf(schema: z.ZodType, input: unknown): string {
  const result = schema.safeParse(input);
  if (result.success) throw new Error(`expected ${JSON.stringify(input)} to be refused`);
  return z.prettifyError(result.error);
}

describe("TaskStatus", () => {
  it("accepts a RUNNING status and every state name", () => {
    expect(TaskStatusSchema.parse(runningStatus())).toEqual(runningStatus());
    expect(TASK_STATES).toEqual([
      "PENDING",
      "INSTALLED",
      "BOOTING",
      "RUNNING",
      "HALTING",
      "HALTED",
      "BROKEN",
      "FAILED",
      "UNKNOWN",
    ]);
  });

  it("requires nullable fields to be present as null, not missing", () => {
    const { exitCode: _, ...missing } = runningStatus();
    expect(errorOf(TaskStatusSchema, missing)).toMatch(/is required\s+→ at exitCode/);
  });

  it("describes an exit by signal", () => {
    const halted = {
      ...runningStatus(),
      state: "BROKEN",
      taskId: 0,
      anchorStartTicks: null,
      exitCode: 137,
      signal: "SIGKILL",
      oomKilled: true,
      finishedAt: TIME,
    };
    expect(TaskStatusSchema.parse(halted)).toMatchObject({ exitCode: 137, signal: "SIGKILL" });
    expect(errorOf(TaskStatusSchema, { ...halted, signal: "KILL" })).toContain("→ at signal");
    expect(errorOf(TaskStatusSchema, { ...halted, exitCode: null })).toContain("a signal needs an exitCode");
  });

  it("enforces the invariants every publisher keeps", () => {
    expect(errorOf(TaskStatusSchema, { ...runningStatus(), taskId: 0, anchorStartTicks: null })).toContain(
      "a RUNNING task has a taskId",
    );
    expect(errorOf(TaskStatusSchema, { ...runningStatus(), state: "HALTED", taskId: 0 })).toContain(
      "anchorStartTicks must be null when taskId is 0",
    );
    expect(errorOf(TaskStatusSchema, { ...runningStatus(), state: "FAILED" })).toContain(
      "a FAILED status carries the error",
    );
    expect(errorOf(TaskStatusSchema, { ...runningStatus(), state: "running" })).toContain(
      "must be one of PENDING",
    );
  });

  it("drops keys it does not know (a newer publisher may add some)", () => {
    expect(TaskStatusSchema.parse({ ...runningStatus(), futureField: 1 })).not.toHaveProperty("futureField");
  });
});

describe("TaskMetrics", () => {
  const metrics = {
    schemaVersion: 1,
    uuid: UUID,
    taskId: 4242,
    cpuNs: 2 ** 60,
    rssBytes: 1048576,
    memoryUsageBytes: 2097152,
    memoryPeakBytes: null,
    memoryLimitBytes: 67108864,
    oomKills: 0,
    threads: 3,
    sampledAt: TIME,
    measured: ["cpuNs", "rssBytes", "memoryUsageBytes", "memoryLimitBytes", "oomKills", "threads"],
  };

  it("accepts a sample, with a CPU counter beyond 2^53", () => {
    expect(TaskMetricsSchema.parse(metrics)).toEqual({
      ...metrics,
      anchorTaxBytes: null,
      anchorTaxPeakBytes: null,
    });
  });

  // A VM: 128 MiB guest, 376 MiB reserved, 174 MiB peak in all, so 46 MiB taken above the guest.
  const vm = {
    ...metrics,
    memoryPeakBytes: 174 * 1048576,
    memoryLimitBytes: (128 + 376) * 1048576,
    measured: [...metrics.measured, "memoryPeakBytes"],
    anchorTaxBytes: 376 * 1048576,
    anchorTaxPeakBytes: 46 * 1048576,
  };

  it("carries a VM's reserved and measured anchor tax; older publishers' samples parse as null", () => {
    expect(TaskMetricsSchema.parse(vm)).toEqual(vm);
    const { anchorTaxBytes: _a, anchorTaxPeakBytes: _b, ...older } = vm;
    expect(TaskMetricsSchema.parse(older)).toMatchObject({ anchorTaxBytes: null, anchorTaxPeakBytes: null });
    // A VM whose peak was not read: reserved only.
    expect(TaskMetricsSchema.parse({ ...metrics, anchorTaxBytes: vm.anchorTaxBytes })).toMatchObject({
      anchorTaxBytes: vm.anchorTaxBytes,
      anchorTaxPeakBytes: null,
    });
  });

  it("keeps the measured tax derived: not in measured, only with memoryPeakBytes and a reserved tax", () => {
    expect(errorOf(TaskMetricsSchema, { ...vm, measured: [...vm.measured, "anchorTaxPeakBytes"] })).toContain(
      "→ at measured[7]",
    );
    expect(errorOf(TaskMetricsSchema, { ...vm, anchorTaxBytes: null })).toContain(
      "anchorTaxPeakBytes is a VM's: it needs anchorTaxBytes",
    );
    expect(errorOf(TaskMetricsSchema, { ...metrics, anchorTaxBytes: 1, anchorTaxPeakBytes: 0 })).toContain(
      "it needs memoryPeakBytes",
    );
    expect(errorOf(TaskMetricsSchema, { ...vm, anchorTaxPeakBytes: vm.memoryPeakBytes + 1 })).toContain(
      "cannot be larger",
    );
    expect(errorOf(TaskMetricsSchema, { ...vm, anchorTaxPeakBytes: -1 })).toContain(
      "→ at anchorTaxPeakBytes",
    );
  });

  it("requires every value to be listed in measured", () => {
    expect(errorOf(TaskMetricsSchema, { ...metrics, memoryPeakBytes: 5 })).toContain(
      "memoryPeakBytes has a value but is not listed in measured",
    );
    expect(errorOf(TaskMetricsSchema, { ...metrics, measured: [...metrics.measured, "cpuNs"] })).toContain(
      "cpuNs is listed twice",
    );
    expect(errorOf(TaskMetricsSchema, { ...metrics, measured: ["load"] })).toContain("→ at measured[0]");
  });
});

describe("Seed", () => {
  const ready = {
    schemaVersion: 1,
    state: "READY",
    ref: "registry.example:5000/app:1",
    digest: `sha256:${"a".repeat(64)}`,
    indexDigest: null,
    platform: "linux/amd64",
    rootfsPath: "/var/lib/eve-tasks/seeds/app/rootfs",
    process: { args: ["/app"], env: { PATH: "/bin" }, cwd: "/", user: "" },
    progress: null,
    error: null,
    labels: { "org.lfedge.eve-tasks.runtime": "1" },
    stopSignal: "SIGTERM",
  };

  it("accepts a READY seed and requires what READY promises", () => {
    expect(SeedSchema.parse(ready)).toEqual(ready);
    // A seed from a fetcher that kept no labels reads with null ones.
    const { labels: _labels, stopSignal: _stop, ...older } = ready;
    expect(SeedSchema.parse(older)).toEqual({ ...ready, labels: null, stopSignal: null });
    expect(errorOf(SeedSchema, { ...ready, labels: { a: 1 } })).toContain("→ at labels.a");
    expect(errorOf(SeedSchema, { ...ready, rootfsPath: null })).toContain("→ at rootfsPath");
    expect(errorOf(SeedSchema, { ...ready, platform: "amd64" })).toContain("must be os/arch[/variant]");
  });

  it("accepts PULLING without results and FAILED with an error only", () => {
    const pulling = {
      ...ready,
      state: "PULLING",
      digest: null,
      platform: null,
      rootfsPath: null,
      process: null,
      progress: { doneBytes: 10, totalBytes: null },
    };
    expect(SeedSchema.parse(pulling).state).toBe("PULLING");
    expect(errorOf(SeedSchema, { ...pulling, error: { message: "x", time: TIME } })).toContain(
      "only a FAILED seed has an error",
    );
    expect(
      SeedSchema.parse({ ...pulling, state: "FAILED", error: { message: "manifest unknown", time: TIME } })
        .state,
    ).toBe("FAILED");
    expect(errorOf(SeedSchema, { ...pulling, state: "FAILED" })).toContain("→ at error");
  });
});

describe("HypervisorToolsConfig, TaskEvent, SignalRequest, SignalReply", () => {
  it("checks a tools config", () => {
    expect(
      HypervisorToolsConfigSchema.parse({ schemaVersion: 1, image: "oci:/usr/share/eve-tasks/tools:latest" }),
    ).toBeDefined();
    expect(errorOf(HypervisorToolsConfigSchema, { schemaVersion: 1, image: "a b" })).toContain(
      "must not contain whitespace",
    );
  });

  it("checks an event and defaults its fields", () => {
    const event = { schemaVersion: 1, uuid: UUID, type: "exited", time: TIME, message: "exited with 0" };
    expect(TaskEventSchema.parse(event)).toEqual({ ...event, fields: {} });
    expect(errorOf(TaskEventSchema, { ...event, type: "boom" })).toContain("→ at type");
    expect(errorOf(TaskEventSchema, { ...event, fields: { nested: { a: 1 } } })).toContain(
      "→ at fields.nested",
    );
  });

  it("checks a signal request and reply", () => {
    expect(SignalRequestSchema.parse({ uuid: UUID, signal: "SIGHUP" })).toEqual({
      uuid: UUID,
      signal: "SIGHUP",
    });
    expect(errorOf(SignalRequestSchema, { uuid: UUID, signal: 9 })).toContain("→ at signal");
    expect(SignalReplySchema.parse({ accepted: false, error: "no task for this app" }).accepted).toBe(false);
    expect(errorOf(SignalReplySchema, { accepted: true, error: "x" })).toContain(
      "an accepted request has no error",
    );
    expect(errorOf(SignalReplySchema, { accepted: false, error: null })).toContain(
      "a refused request says why",
    );
  });
});

describe("replies are read leniently, requests strictly", () => {
  it("an older reader accepts a newer executor's logs and stop replies, dropping what it does not know", () => {
    const logs = {
      uuid: UUID,
      dataBase64: "aGk=",
      cursor: null,
      more: false,
      gap: { message: "rotated away", lostBytes: 10 },
      error: null,
      addedLater: 1,
    };
    const { addedLater: _dropped, ...known } = logs;
    expect(LogsReplySchema.parse(logs)).toEqual({ ...known, gap: { message: "rotated away" } });
    const stop = {
      accepted: true,
      error: null,
      stopped: [{ uuid: UUID, taskId: 42, stoppedBy: null, exitCode: 0, tookMs: 3 }],
      failed: [{ uuid: UUID, taskId: 43, error: "x", since: TIME }],
      node: "local",
    };
    const parsed = StopTasksReplySchema.parse(stop);
    expect(parsed).toEqual({
      accepted: true,
      error: null,
      stopped: [{ uuid: UUID, taskId: 42, stoppedBy: null, exitCode: 0 }],
      failed: [{ uuid: UUID, taskId: 43, error: "x" }],
    });
  });

  it("a user's request with an unknown field is refused, naming it", () => {
    expect(errorOf(StopTasksRequestSchema, { schemaVersion: 1, typo: 1 })).toContain("typo");
    expect(errorOf(LogsRequestSchema, { uuid: UUID, tailLine: 5 })).toContain("tailLine");
  });
});
