// `eve-tasks tax`: the pure table, and the command in-process against AnchorTax records in the
// harness's real nats-server (written as the proc-monitor's table stores them).
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Publication, connectBus, ensureBuckets } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { AnchorTaxRecordSchema, anchorTaxKey } from "@eve-tasks/schemas";
import type { AnchorTaxRecord, AnchorTaxRecordInput } from "@eve-tasks/schemas";
import type {} from "../../../test/harness/global-setup.js";
import {
  formatMiB,
  noTaxRecordsMessage,
  renderTaxTable,
  runTax,
  shortTools,
  sortTaxRows,
  taxRow,
} from "../src/commands/tax.js";
import type { TaxRow } from "../src/commands/tax.js";
import { natsTarget, runCli } from "../src/index.js";
import type { CliContext } from "../src/index.js";
import { NOW, UUID } from "./fixtures.js";

const MiB = 2 ** 20;
const HEX = "3f2a9c0d1e2b".padEnd(64, "7");
const DIGEST = `sha256:${HEX}`;

/** The VM: a 128 MiB guest, 376 MiB reserved, 174 MiB peak in all. */
function record(node: string, over: Partial<AnchorTaxRecordInput> = {}): AnchorTaxRecord {
  return AnchorTaxRecordSchema.parse({
    schemaVersion: 1,
    node,
    toolsImage: `registry.example:5000/eve/tools:1@${DIGEST}`,
    toolsDigest: DIGEST,
    guestMiB: 128,
    vcpus: 1,
    reservedTaxBytes: 376 * MiB,
    estimatedTaxBytes: 377 * MiB,
    peakAboveGuestBytes: 46 * MiB,
    peakTotalBytes: 174 * MiB,
    peakAt: new Date(NOW.getTime() - 600_000).toISOString(),
    peakUuid: UUID,
    samples: 42,
    tasks: 2,
    recentTasks: [
      { uuid: UUID, taskId: 4242, anchorStartTicks: 1 },
      { uuid: UUID, taskId: 4343, anchorStartTicks: 2 },
    ],
    firstSeenAt: new Date(NOW.getTime() - 3_600_000).toISOString(),
    updatedAt: new Date(NOW.getTime() - 300_000).toISOString(),
    ...over,
  });
}

function rowOf(r: AnchorTaxRecord): TaxRow {
  return taxRow(anchorTaxKey(r.node, r.toolsDigest, r.guestMiB), r);
}

function fakeContext(now = NOW) {
  let out = "";
  let err = "";
  const ctx: CliContext = {
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    readStdin: () => Promise.resolve(new Uint8Array()),
    readFile: () => Promise.reject(new Error("no files")),
    env: {},
    now: () => now,
    signal: new AbortController().signal,
  };
  return { ctx, out: () => out, err: () => err };
}

describe("tax table", () => {
  it("shows reserved, EVE's estimate and the measured peak side by side", () => {
    expect(renderTaxTable([rowOf(record("local"))], NOW)).toBe(
      "TOOLS                  GUEST   VCPUS   RESERVED   EVE ESTIMATE   MEASURED PEAK   PEAK IN ALL   RESERVED/MEASURED   SAMPLES   UPDATED\n" +
        "tools:1@3f2a9c0d1e2b   128Mi   1       376Mi      377Mi          46Mi            174Mi         8.2x                42        5m ago\n",
    );
  });

  it("adds NODE for several nodes, sorts rows, and writes partial MiB and ratios readably", () => {
    const rows = sortTaxRows([
      rowOf(
        record("n2", {
          guestMiB: 1024,
          peakTotalBytes: 1024 * MiB + 60_000_000,
          peakAboveGuestBytes: 60_000_000,
        }),
      ),
      rowOf(record("n1", { peakAboveGuestBytes: 0, peakTotalBytes: 100 * MiB })),
      rowOf(record("n2")),
    ]);
    expect(rows.map((r) => `${r.record.node}/${r.record.guestMiB}`)).toEqual(["n1/128", "n2/128", "n2/1024"]);
    const lines = renderTaxTable(rows, NOW).split("\n");
    expect(lines[0]).toMatch(/^NODE {3}TOOLS/);
    expect(lines[1]).toMatch(/^n1 .* 0Mi .* 100Mi .* - /);
    expect(lines[3]).toMatch(/^n2 .* 1024Mi .* 57\.2Mi .* 1081\.2Mi .* 6\.6x /);
    expect(rows[0]).toMatchObject({ headroomBytes: 376 * MiB, reservedPerMeasured: null });
  });

  it("shortens the tools image to its name and 12 digest digits", () => {
    expect(shortTools(`oci:/var/lib/eve-tasks/tools-layout:default@${DIGEST}`)).toBe(
      "tools-layout:default@3f2a9c0d1e2b",
    );
    expect(shortTools(`tools@${DIGEST}`)).toBe("tools@3f2a9c0d1e2b");
    expect(formatMiB(376 * MiB)).toBe("376Mi");
    expect(formatMiB(46.25 * MiB)).toBe("46.3Mi");
  });
});

describe("eve-tasks tax against the real KV", () => {
  const node = `taxcli-${randomBytes(3).toString("hex")}`;
  const other = `${node}-b`;
  let bus: Bus;
  let server: string;

  beforeAll(async () => {
    server = inject("natsUrl");
    bus = await connectBus({ servers: server, name: "tax-cli-test" });
    await ensureBuckets(bus);
    const table = new Publication(bus, {
      agent: "proc-monitor",
      type: "AnchorTax",
      schema: AnchorTaxRecordSchema,
    });
    for (const r of [
      record(node),
      record(node, { guestMiB: 512, peakTotalBytes: 560 * MiB, peakAboveGuestBytes: 48 * MiB }),
      record(other),
    ]) {
      await table.publish(anchorTaxKey(r.node, r.toolsDigest, r.guestMiB), r);
    }
    // A value that fails the schema: warned about, never shown.
    const kv = await bus.bucket("proc-monitor");
    await kv.put(`AnchorTax.${node}.${"0".repeat(64)}.64`, JSON.stringify({ schemaVersion: 1, node }));
  });

  afterAll(async () => {
    await bus?.close();
  });

  it("prints a node's records as a table, warning about an invalid one", async () => {
    const f = fakeContext();
    const code = await runCli(f.ctx, ["node", "eve-tasks", "--server", server, "tax", "--node", node]);
    expect(code).toBe(0);
    const lines = f.out().trimEnd().split("\n");
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(
      /^TOOLS +GUEST +VCPUS +RESERVED +EVE ESTIMATE +MEASURED PEAK +PEAK IN ALL +RESERVED\/MEASURED +SAMPLES +UPDATED$/,
    );
    expect(lines[1]).toMatch(
      /^tools:1@3f2a9c0d1e2b +128Mi +1 +376Mi +377Mi +46Mi +174Mi +8\.2x +42 +5m ago$/,
    );
    expect(lines[2]).toMatch(
      /^tools:1@3f2a9c0d1e2b +512Mi +1 +376Mi +377Mi +48Mi +560Mi +7\.8x +42 +5m ago$/,
    );
    expect(f.err()).toMatch(
      new RegExp(`^warning: AnchorTax\\.${node}\\.0{64}\\.64 \\(revision \\d+\\) is invalid and ignored: `),
    );
  });

  it("prints JSON with the key, headroom and ratio of each record", async () => {
    const f = fakeContext();
    await runTax(f.ctx, { node: other, json: true, server: natsTarget(server, {}, "read") });
    const rows = JSON.parse(f.out()) as TaxRow[];
    expect(rows).toEqual([
      {
        key: `${other}.${HEX}.128`,
        headroomBytes: 330 * MiB,
        reservedPerMeasured: 376 / 46,
        record: record(other),
      },
    ]);
  });

  it("says why there is nothing to show", async () => {
    const f = fakeContext();
    await runTax(f.ctx, { node: `${node}-none`, json: false, server: natsTarget(server, {}, "read") });
    expect(f.out()).toBe("");
    expect(f.err()).toBe(noTaxRecordsMessage(`${node}-none`));
    expect(f.err()).toContain("no VM has run on node");
    expect(noTaxRecordsMessage(undefined)).toMatch(/^no VM has run on this node yet/);
    const j = fakeContext();
    await runTax(j.ctx, { node: `${node}-none`, json: true, server: natsTarget(server, {}, "read") });
    expect(j.out()).toBe("[]\n");
  });
});
