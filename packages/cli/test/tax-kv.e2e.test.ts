// `eve-tasks tax` in-process against AnchorTax records in the harness's real nats-server
// (written as the proc-monitor's table stores them). Runs in the e2e project.
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Publication, connectBus, ensureBuckets } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { anchorTaxKey, messageTable } from "@eve-tasks/schemas";
import type {} from "../../../test/harness/global-setup.js";
import { noTaxRecordsMessage, runTax } from "../src/commands/tax.js";
import type { TaxRow } from "../src/commands/tax.js";
import { natsTarget, runCli } from "../src/index.js";
import { HEX, MiB, fakeContext, record } from "./tax-fixtures.js";

describe("eve-tasks tax against the real KV", () => {
  const node = `taxcli-${randomBytes(3).toString("hex")}`;
  const other = `${node}-b`;
  let bus: Bus;
  let server: string;

  beforeAll(async () => {
    server = inject("natsUrl");
    bus = await connectBus({ servers: server, name: "tax-cli-test" });
    await ensureBuckets(bus);
    const table = new Publication(bus, messageTable("AnchorTax"));
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
