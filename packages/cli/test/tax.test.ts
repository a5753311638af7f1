// `eve-tasks tax`: the pure table (the command against a real KV is tax-kv.e2e.test.ts).
import { describe, expect, it } from "vitest";
import { anchorTaxKey } from "@eve-tasks/schemas";
import type { AnchorTaxRecord } from "@eve-tasks/schemas";
import { formatMiB, renderTaxTable, shortTools, sortTaxRows, taxRow } from "../src/commands/tax.js";
import type { TaxRow } from "../src/commands/tax.js";
import { DIGEST, MiB, record } from "./tax-fixtures.js";
import { NOW } from "./fixtures.js";

function rowOf(r: AnchorTaxRecord): TaxRow {
  return taxRow(anchorTaxKey(r.node, r.toolsDigest, r.guestMiB), r);
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
