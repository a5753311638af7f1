// The measured anchor tax, pure: a sample's tax, the TaskConfig view, the tracker's decisions and
// the merge of an update into the stored record.
import { describe, expect, it } from "vitest";
import {
  AnchorTaxRecordSchema,
  TOOLS_ANNOTATION,
  VM_ACCEL_ANNOTATION,
  VM_VCPUS_ANNOTATION,
  decodeValue,
  encodeValue,
  specSha256,
} from "@eve-tasks/schemas";
import type { AnchorTaxRecord, OciSpec } from "@eve-tasks/schemas";
import {
  AnchorTaxTracker,
  FLUSH_INTERVAL_MS,
  PEAK_STEP_BYTES,
  RETRY_AFTER_MS,
  TaskConfigViewSchema,
  anchorTaxPeakBytes,
  mergeAnchorTaxRecord,
  observationKey,
} from "../src/anchor-tax.js";
import type { AnchorTaxObservation, AnchorTaxUpdate } from "../src/anchor-tax.js";
import { taskMetricsOf } from "../src/task-metrics.js";

const MiB = 2 ** 20;
const UUID = "6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10";
const UUID2 = "7a2d2d2f-1d0b-4e54-8e3d-5b2c8d4f3a21";
const DIGEST = `sha256:${"ab".repeat(32)}`;
const TOOLS = `registry.example/eve/tools:1@${DIGEST}`;
const T0 = Date.parse("2024-05-01T12:00:00.000Z");
const iso = (ms: number): string => new Date(ms).toISOString();

/** A sample of a 128 MiB guest with 2 vCPUs reserving 376 MiB, `aboveMiB` above its RAM. */
function obs(aboveMiB: number, over: Partial<AnchorTaxObservation> = {}): AnchorTaxObservation {
  return {
    node: "local",
    toolsImage: TOOLS,
    toolsDigest: DIGEST,
    guestMiB: 128,
    vcpus: 2,
    reservedTaxBytes: 376 * MiB,
    peakAboveGuestBytes: Math.round(aboveMiB * MiB),
    peakTotalBytes: Math.round((128 + aboveMiB) * MiB),
    at: iso(T0),
    task: { uuid: UUID, taskId: 4242, anchorStartTicks: 1000 },
    ...over,
  };
}

/** Parses a merge result as the bus would store it. */
function stored(value: ReturnType<typeof mergeAnchorTaxRecord>): AnchorTaxRecord {
  const d = decodeValue(AnchorTaxRecordSchema, encodeValue(AnchorTaxRecordSchema, value));
  if (!d.ok) throw new Error(d.message);
  return d.value;
}

describe("anchorTaxPeakBytes", () => {
  it("is the peak above guest RAM (limit minus reserved tax): the issue's 174 MiB in all is 46 MiB", () => {
    expect(anchorTaxPeakBytes(174 * MiB, (128 + 376) * MiB, 376 * MiB)).toBe(46 * MiB);
  });

  it("is never below 0, and null when not a VM or not measured", () => {
    expect(anchorTaxPeakBytes(100 * MiB, (128 + 376) * MiB, 376 * MiB)).toBe(0);
    expect(anchorTaxPeakBytes(null, 504 * MiB, 376 * MiB)).toBeNull();
    expect(anchorTaxPeakBytes(174 * MiB, null, 376 * MiB)).toBeNull();
    expect(anchorTaxPeakBytes(174 * MiB, 504 * MiB, null)).toBeNull();
    expect(anchorTaxPeakBytes(174 * MiB, 376 * MiB, 376 * MiB)).toBeNull();
    // A VM with a tax of 0: everything above the limit's guest RAM.
    expect(anchorTaxPeakBytes(130 * MiB, 128 * MiB, 0)).toBe(2 * MiB);
  });

  it("rides along in TaskMetrics, valid for the schema", () => {
    const sample = {
      pid: 4242,
      sampledAt: new Date(T0),
      anchor: { alive: true as const, rssBytes: 160 * MiB },
      values: {
        cpuNs: 5,
        rssBytes: 160 * MiB,
        memoryUsageBytes: 170 * MiB,
        memoryPeakBytes: 174 * MiB,
        memoryLimitBytes: 504 * MiB,
        oomKills: 0,
        threads: 7,
      },
      measured: [
        "cpuNs",
        "rssBytes",
        "memoryUsageBytes",
        "memoryPeakBytes",
        "memoryLimitBytes",
        "oomKills",
        "threads",
      ] as const,
      problems: [],
    };
    const m = taskMetricsOf(
      UUID,
      { ...sample, measured: [...sample.measured] },
      {
        anchorTaxBytes: 376 * MiB,
        anchorTaxPeakBytes: 46 * MiB,
      },
    );
    expect(m).toMatchObject({ anchorTaxBytes: 376 * MiB, anchorTaxPeakBytes: 46 * MiB });
    expect(m.measured).not.toContain("anchorTaxPeakBytes");
    const container = taskMetricsOf(UUID, { ...sample, measured: [...sample.measured] });
    expect(container).toMatchObject({ anchorTaxBytes: null, anchorTaxPeakBytes: null });
  });
});

describe("TaskConfigViewSchema", () => {
  function vmConfig(annotations: Record<string, string>, over: Record<string, unknown> = {}) {
    const spec: OciSpec = {
      ociVersion: "1.2.1",
      process: { args: ["qemu-system-x86_64"], cwd: "/", user: { uid: 0, gid: 0 } },
      root: { path: "rootfs", readonly: true },
      linux: {
        resources: { memory: { limit: (128 + 376) * MiB }, cpu: { period: 100000, quota: 300000 } },
      },
      annotations,
    };
    return {
      schemaVersion: 1,
      status: "READY",
      uuid: UUID,
      version: "1",
      configRevision: 7,
      node: "local",
      displayName: "vm",
      activate: true,
      restartCounter: 0,
      virtualization: "HVM",
      spec,
      specSha256: specSha256(spec),
      rootfs: { kind: "tools", seedKey: "local.default", rootfsPath: "/var/lib/eve-tasks/seeds/tools" },
      volumes: [],
      memoryMiB: 128,
      anchorTaxMiB: 376,
      runtime: {
        name: "default",
        accel: "tcg",
        stop: { method: "qmp" },
        devices: ["kvm", "tun"],
        taxFromApp: false,
        vcpus: 2,
      },
      restartPolicy: { mode: "never" },
      stopTimeoutMs: 10000,
      ...over,
    };
  }
  const annotations = { [TOOLS_ANNOTATION]: TOOLS, [VM_VCPUS_ANNOTATION]: "2", [VM_ACCEL_ANNOTATION]: "tcg" };
  const encode = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

  it("validates with the TaskConfig schema and keeps only a READY VM's facts", () => {
    const d = decodeValue(TaskConfigViewSchema, encode(vmConfig(annotations)));
    expect(d).toEqual({
      ok: true,
      value: {
        uuid: UUID,
        status: "READY",
        node: "local",
        configRevision: 7,
        hvm: true,
        vm: { configRevision: 7, toolsImage: TOOLS, toolsDigest: DIGEST, guestMiB: 128, vcpus: 2 },
        problem: null,
      },
    });
  });

  it("says why a READY VM has no facts, and keeps nothing of others", () => {
    const d = decodeValue(TaskConfigViewSchema, encode(vmConfig({ [VM_VCPUS_ANNOTATION]: "2" })));
    expect(d.ok && d.value).toMatchObject({ hvm: true, vm: null });
    expect(d.ok && d.value.problem).toBe("the spec has no readable org.lfedge.eve-tasks.tools annotation");
    const pending = {
      schemaVersion: 1,
      status: "PENDING",
      uuid: UUID,
      version: "1",
      configRevision: 8,
      node: "local",
      waitingFor: "seed",
      message: "waiting",
    };
    expect(decodeValue(TaskConfigViewSchema, encode(pending))).toMatchObject({
      ok: true,
      value: { status: "PENDING", hvm: false, vm: null },
    });
    // Still the one schema: a bad TaskConfig is refused, not reduced.
    expect(decodeValue(TaskConfigViewSchema, encode(vmConfig(annotations, { memoryMiB: 0 })))).toMatchObject({
      ok: false,
      reason: "schema",
    });
  });
});

describe("mergeAnchorTaxRecord", () => {
  const update = (best: AnchorTaxObservation, o: Partial<AnchorTaxUpdate> = {}): AnchorTaxUpdate => ({
    key: observationKey(best),
    best,
    samples: 1,
    tasks: [best.task],
    firstAt: best.at,
    at: iso(T0 + 1000),
    ...o,
  });

  it("creates a record from the first update, with EVE's estimate for that guest and vCPUs", () => {
    const r = stored(mergeAnchorTaxRecord(undefined, update(obs(46), { samples: 3 })));
    expect(r).toEqual({
      schemaVersion: 1,
      node: "local",
      toolsImage: TOOLS,
      toolsDigest: DIGEST,
      guestMiB: 128,
      vcpus: 2,
      reservedTaxBytes: 376 * MiB,
      estimatedTaxBytes: (370 + 6 + 4) * MiB,
      peakAboveGuestBytes: 46 * MiB,
      peakTotalBytes: 174 * MiB,
      peakAt: iso(T0),
      peakUuid: UUID,
      samples: 3,
      tasks: 1,
      recentTasks: [{ uuid: UUID, taskId: 4242, anchorStartTicks: 1000 }],
      firstSeenAt: iso(T0),
      updatedAt: iso(T0 + 1000),
    });
    expect(observationKey(obs(46))).toBe(`local.${"ab".repeat(32)}.128`);
  });

  it("keeps the larger peak with the task that set it, adds samples, counts new tasks once", () => {
    const first = stored(mergeAnchorTaxRecord(undefined, update(obs(46))));
    const other = { uuid: UUID2, taskId: 777, anchorStartTicks: 5 };
    // Another task, 4 vCPUs, a higher peak: it becomes the record's peak.
    const higher = stored(
      mergeAnchorTaxRecord(
        first,
        update(obs(60, { task: other, vcpus: 4, reservedTaxBytes: 400 * MiB, at: iso(T0 + 5000) }), {
          samples: 2,
          at: iso(T0 + 6000),
        }),
      ),
    );
    expect(higher).toMatchObject({
      peakAboveGuestBytes: 60 * MiB,
      peakTotalBytes: 188 * MiB,
      peakUuid: UUID2,
      peakAt: iso(T0 + 5000),
      vcpus: 4,
      reservedTaxBytes: 400 * MiB,
      estimatedTaxBytes: (370 + 12 + 4) * MiB,
      samples: 3,
      tasks: 2,
      firstSeenAt: iso(T0),
      updatedAt: iso(T0 + 6000),
    });
    expect(higher.recentTasks.map((t) => t.uuid)).toEqual([UUID, UUID2]);
    // The first task again with a lower peak (e.g. from a restarted proc-monitor): counts only.
    const lower = stored(mergeAnchorTaxRecord(higher, update(obs(50), { samples: 4 })));
    expect(lower).toMatchObject({
      peakAboveGuestBytes: 60 * MiB,
      peakUuid: UUID2,
      vcpus: 4,
      samples: 7,
      tasks: 2,
    });
  });

  it("lists the latest 16 tasks and counts all of them", () => {
    let r = stored(mergeAnchorTaxRecord(undefined, update(obs(46))));
    for (let i = 1; i <= 20; i++) {
      const task = { uuid: UUID, taskId: 5000 + i, anchorStartTicks: i };
      r = stored(mergeAnchorTaxRecord(r, update(obs(46, { task }))));
    }
    expect(r.tasks).toBe(21);
    expect(r.recentTasks).toHaveLength(16);
    expect(r.recentTasks.at(-1)?.taskId).toBe(5020);
  });
});

describe("AnchorTaxTracker", () => {
  it("writes for a new task, then only when the peak grows by a step, then to flush the count", () => {
    const t = new AnchorTaxTracker();
    const first = t.observe(obs(40), T0);
    expect(first).toMatchObject({ samples: 1, tasks: [obs(40).task] });
    // One write per key at a time: samples meanwhile are counted.
    expect(t.observe(obs(40.5), T0 + 1)).toBeUndefined();
    t.committed(first!, stored(mergeAnchorTaxRecord(undefined, first!)), T0 + 2);
    // A rise below the step is not written...
    expect(t.observe(obs(40.8), T0 + 3)).toBeUndefined();
    // ...a rise of a step is, with every sample since the last write and the best of them.
    const rise = t.observe(obs(40 + PEAK_STEP_BYTES / MiB + 0.1), T0 + 4);
    expect(rise).toMatchObject({ samples: 3, tasks: [] });
    expect(rise!.best.peakAboveGuestBytes).toBe(Math.round((41 + 0.1) * MiB));
    t.committed(rise!, stored(mergeAnchorTaxRecord(undefined, rise!)), T0 + 5);
    expect(t.observe(obs(41), T0 + 6)).toBeUndefined();
    // The samples counted since are written once the flush interval has passed.
    expect(t.observe(obs(41), T0 + 5 + FLUSH_INTERVAL_MS)).toMatchObject({ samples: 2, tasks: [] });
  });

  it("writes when a task the record does not list is seen, and flushes a key's count on demand", () => {
    const t = new AnchorTaxTracker();
    const a = t.observe(obs(40), T0)!;
    t.committed(a, stored(mergeAnchorTaxRecord(undefined, a)), T0);
    const task = { uuid: UUID2, taskId: 9, anchorStartTicks: null };
    expect(t.observe(obs(30, { task }), T0 + 1)).toMatchObject({ tasks: [task], samples: 1 });
    expect(t.flush(T0 + 2)).toEqual([]); // in flight
    const other = obs(10, { guestMiB: 256, peakTotalBytes: 266 * MiB });
    const b = t.observe(other, T0 + 3)!;
    t.committed(b, stored(mergeAnchorTaxRecord(undefined, b)), T0 + 3);
    t.observe(other, T0 + 4);
    expect(t.flush(T0 + 5, observationKey(other))).toMatchObject([
      { key: observationKey(other), samples: 1 },
    ]);
  });

  it("learns the stored peak and listed tasks from the record it wrote (another writer's too)", () => {
    const t = new AnchorTaxTracker();
    const u = t.observe(obs(40), T0)!;
    // Another proc-monitor stored a higher peak meanwhile: the merge kept it, and this one learns it.
    const theirs = stored(
      mergeAnchorTaxRecord(undefined, { ...u, best: obs(80, { task: { ...u.best.task, taskId: 1 } }) }),
    );
    t.committed(u, stored(mergeAnchorTaxRecord(theirs, u)), T0);
    expect(t.observe(obs(60), T0 + 1)).toBeUndefined();
    expect(t.observe(obs(81), T0 + 2)).toBeDefined();
  });

  it("keeps everything pending after a failed write and retries later", () => {
    const t = new AnchorTaxTracker();
    const u = t.observe(obs(40), T0)!;
    t.failed(u, T0);
    expect(t.inFlight(u.key)).toBe(false);
    expect(t.observe(obs(40), T0 + 1)).toBeUndefined();
    expect(t.observe(obs(42), T0 + RETRY_AFTER_MS)).toMatchObject({ samples: 3, tasks: [u.best.task] });
  });
});
