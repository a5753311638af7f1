/** The AnchorTax table in the proc-monitor's bucket, and the one way an update is written to it. */
import { Publication } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { messageTable } from "@eve-tasks/schemas";
import type { AnchorTaxRecord, AnchorTaxRecordSchema } from "@eve-tasks/schemas";
import { mergeAnchorTaxRecord } from "./anchor-tax.js";
import type { AnchorTaxUpdate } from "./anchor-tax.js";

/** The AnchorTax table: `$KV.proc-monitor.AnchorTax.<node>.<sha256 hex of the tools digest>.<guestMiB>`. */
export type AnchorTaxTable = Publication<typeof AnchorTaxRecordSchema>;

/** Opens the AnchorTax table of the proc-monitor's bucket. */
export function anchorTaxTable(bus: Bus): AnchorTaxTable {
  return new Publication(bus, messageTable("AnchorTax"));
}

/** What writing an update did. */
export interface AnchorTaxWrite {
  /** The record now stored. */
  record: AnchorTaxRecord;
  /** The peak stored before (undefined when the record was created). */
  previousPeakBytes: number | undefined;
  /** Compare-and-set conflicts retried. */
  conflicts: number;
}

/**
 * Merges `u` into the stored record with compare-and-set on its KV revision, retried on conflict
 * with the newer record (see `updateKey`): two proc-monitors writing one key (a restart
 * overlapping the old process) never lose a peak, a task or a sample count. A stored value that
 * fails the schema is replaced.
 */
export async function writeAnchorTaxUpdate(
  table: AnchorTaxTable,
  u: AnchorTaxUpdate,
): Promise<AnchorTaxWrite> {
  let previousPeakBytes: number | undefined;
  const r = await table.update(u.key, (current) => {
    previousPeakBytes = current.value?.peakAboveGuestBytes;
    return mergeAnchorTaxRecord(current.value, u);
  });
  return { record: r.value, previousPeakBytes, conflicts: r.conflicts };
}
