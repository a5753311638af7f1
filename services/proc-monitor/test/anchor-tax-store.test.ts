// The AnchorTax write path against the harness's real nats-server: the proc-monitor's tracker
// decides, writeAnchorTaxUpdate merges with compare-and-set, and two writers on separate
// connections (a restarted proc-monitor overlapping the old one) lose no peak, task or sample.
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { connectBus, ensureBuckets, kvKey } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { AnchorTaxRecordSchema, decodeValue } from "@eve-tasks/schemas";
import type {} from "../../../test/harness/global-setup.js";
import { AnchorTaxTracker, observationKey } from "../src/anchor-tax.js";
import type { AnchorTaxObservation } from "../src/anchor-tax.js";
import { anchorTaxTable, writeAnchorTaxUpdate } from "../src/anchor-tax-store.js";

const MiB = 2 ** 20;
const DIGEST = `sha256:${randomBytes(32).toString("hex")}`;
const TOOLS = `registry.example/eve/tools:1@${DIGEST}`;
const UUID = "6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10";
/** A node of this file only: no other test (or proc-monitor) writes its keys. */
const NODE = `taxstore-${randomBytes(3).toString("hex")}`;

function obs(aboveBytes: number, taskId: number, at: Date, guestMiB = 128): AnchorTaxObservation {
  return {
    node: NODE,
    toolsImage: TOOLS,
    toolsDigest: DIGEST,
    guestMiB,
    vcpus: 1,
    reservedTaxBytes: 376 * MiB,
    peakAboveGuestBytes: aboveBytes,
    peakTotalBytes: guestMiB * MiB + aboveBytes,
    at: at.toISOString(),
    task: { uuid: UUID, taskId, anchorStartTicks: taskId * 10 },
  };
}

describe("AnchorTax records in the real KV", () => {
  let a: Bus;
  let b: Bus;

  beforeAll(async () => {
    a = await connectBus({ servers: inject("natsUrl"), name: "anchor-tax-a" });
    b = await connectBus({ servers: inject("natsUrl"), name: "anchor-tax-b" });
    await ensureBuckets(a);
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  it("writes what the tracker decides and reads it back from $KV.proc-monitor.AnchorTax.<key>", async () => {
    const table = anchorTaxTable(a);
    const tracker = new AnchorTaxTracker();
    const t0 = Date.now();
    const first = tracker.observe(obs(40 * MiB, 101, new Date(t0)), t0)!;
    expect(first.key).toBe(`${NODE}.${DIGEST.slice(7)}.128`);
    const w1 = await writeAnchorTaxUpdate(table, first);
    expect(w1).toMatchObject({ previousPeakBytes: undefined, conflicts: 0 });
    tracker.committed(first, w1.record, t0);
    // Samples below a step are only counted; a step up is written with them.
    expect(tracker.observe(obs(40 * MiB + 1000, 101, new Date(t0 + 1)), t0 + 1)).toBeUndefined();
    const rise = tracker.observe(obs(46 * MiB, 101, new Date(t0 + 2)), t0 + 2)!;
    const w2 = await writeAnchorTaxUpdate(table, rise);
    expect(w2.previousPeakBytes).toBe(40 * MiB);
    tracker.committed(rise, w2.record, t0 + 2);

    // Read back as any subscriber would: the raw KV value, decoded with the one schema.
    const entry = await (await a.bucket("proc-monitor")).get(kvKey("AnchorTax", first.key));
    expect(entry?.operation).toBe("PUT");
    const d = decodeValue(AnchorTaxRecordSchema, entry!.value);
    expect(d.ok && d.value).toMatchObject({
      node: NODE,
      toolsImage: TOOLS,
      toolsDigest: DIGEST,
      guestMiB: 128,
      vcpus: 1,
      reservedTaxBytes: 376 * MiB,
      estimatedTaxBytes: (370 + 3 + 4) * MiB,
      peakAboveGuestBytes: 46 * MiB,
      peakTotalBytes: 174 * MiB,
      samples: 3,
      tasks: 1,
      recentTasks: [{ uuid: UUID, taskId: 101, anchorStartTicks: 1010 }],
    });
    expect(await table.get(first.key)).toEqual(d.ok ? d.value : undefined);
  });

  it("keeps the max, every task and every sample when two writers race on one key", async () => {
    const guestMiB = 256;
    const key = observationKey({ node: NODE, toolsDigest: DIGEST, guestMiB });
    const writers = [
      { table: anchorTaxTable(a), base: 1000 },
      { table: anchorTaxTable(b), base: 2000 },
    ];
    const now = Date.now();
    const peaks: number[] = [];
    // Each writer sees 6 tasks (a new task is always due), with peaks interleaved between them.
    const writes = writers.flatMap((w, wi) =>
      Array.from({ length: 6 }, (_, i) => {
        const peak = (10 + i * 7 + wi * 3) * MiB;
        peaks.push(peak);
        // Each update is its own tracker's first for that task: one per task, all at once.
        const tracker = new AnchorTaxTracker();
        const u = tracker.observe(obs(peak, w.base + i, new Date(now + i), guestMiB), now)!;
        return writeAnchorTaxUpdate(w.table, { ...u, samples: 5 });
      }),
    );
    const results = await Promise.all(writes);
    expect(
      results.reduce((n, r) => n + r.conflicts, 0),
      "12 writers at once must have collided",
    ).toBeGreaterThan(0);

    const stored = await anchorTaxTable(a).get(key);
    expect(stored).toMatchObject({
      guestMiB,
      peakAboveGuestBytes: Math.max(...peaks),
      peakTotalBytes: guestMiB * MiB + Math.max(...peaks),
      samples: 12 * 5,
      tasks: 12,
    });
    expect(new Set(stored!.recentTasks.map((t) => t.taskId)).size).toBe(12);
    // A lower peak from a "restarted" writer that sees a listed task again: counted, not re-counted.
    const again = new AnchorTaxTracker().observe(obs(1 * MiB, 1000, new Date(now), guestMiB), now)!;
    const w = await writeAnchorTaxUpdate(anchorTaxTable(b), again);
    expect(w.record).toMatchObject({ peakAboveGuestBytes: Math.max(...peaks), tasks: 12, samples: 61 });
  });
});
