/**
 * `eve-tasks tax`: the measured anchor tax of VMs (the proc-monitor's AnchorTax records) beside
 * the tax they reserved and EVE's estimate, one row per node, tools image and guest size.
 */
import type { Command } from "@commander-js/extra-typings";
import { AnchorTaxRecordSchema, parsePinnedRef } from "@eve-tasks/schemas";
import type { AnchorTaxRecord } from "@eve-tasks/schemas";
import type { CliContext } from "../context.js";
import { formatAge } from "../human.js";
import { readTable } from "../kv.js";
import type { InvalidStored } from "../kv.js";
import { withBus } from "../server.js";
import type { NatsTarget } from "../server.js";
import { renderTable } from "../table.js";

const MiB = 2 ** 20;

/** One AnchorTax record with what the table derives from it. */
export interface TaxRow {
  /** Its key: `<node>.<sha256 hex of the tools digest>.<guestMiB>`. */
  key: string;
  /** Reserved tax minus measured peak above guest RAM, in bytes (what the reservation leaves unused). */
  headroomBytes: number;
  /** Reserved tax divided by the measured peak above guest RAM; null when nothing was measured above it. */
  reservedPerMeasured: number | null;
  record: AnchorTaxRecord;
}

/** Options of `tax`. */
export interface TaxOptions {
  /** Only this node's records. */
  node: string | undefined;
  json: boolean;
  server: NatsTarget;
}

/** A row of `record` stored under `key`. */
export function taxRow(key: string, record: AnchorTaxRecord): TaxRow {
  const measured = record.peakAboveGuestBytes;
  return {
    key,
    headroomBytes: record.reservedTaxBytes - measured,
    reservedPerMeasured: measured > 0 ? record.reservedTaxBytes / measured : null,
    record,
  };
}

/**
 * The tools image, short: the last path part of its ref (`tools:1` of
 * `registry.example/eve/tools:1`, `layout:default` of `oci:/dir/layout:default`) and the first 12
 * digits of its digest.
 */
export function shortTools(toolsImage: string): string {
  const pinned = parsePinnedRef(toolsImage);
  if (!pinned) return toolsImage;
  const name = pinned.ref.slice(pinned.ref.lastIndexOf("/") + 1) || pinned.ref;
  return `${name}@${pinned.encoded.slice(0, 12)}`;
}

/** Bytes as MiB: whole MiB as `376Mi`, else one decimal (`45.9Mi`). */
export function formatMiB(bytes: number): string {
  const mib = bytes / MiB;
  return Number.isInteger(mib) ? `${mib}Mi` : `${mib.toFixed(1)}Mi`;
}

function ratio(r: TaxRow): string {
  if (r.reservedPerMeasured === null) return "-";
  const x = r.reservedPerMeasured;
  return `${x >= 10 ? x.toFixed(0) : x.toFixed(1)}x`;
}

/** Rows in a stable order: node, tools image, guest size. */
export function sortTaxRows(rows: TaxRow[]): TaxRow[] {
  return [...rows].sort(
    (a, b) =>
      a.record.node.localeCompare(b.record.node) ||
      a.record.toolsImage.localeCompare(b.record.toolsImage) ||
      a.record.guestMiB - b.record.guestMiB,
  );
}

/**
 * The table of `tax`: TOOLS, GUEST, VCPUS, RESERVED, EVE ESTIMATE, MEASURED PEAK (peak above guest
 * RAM), PEAK IN ALL (the cgroup's peak), RESERVED/MEASURED, SAMPLES, UPDATED; NODE first when the
 * rows are of more than one node.
 */
export function renderTaxTable(rows: readonly TaxRow[], now: Date): string {
  const nodes = new Set(rows.map((r) => r.record.node));
  const withNode = nodes.size > 1;
  const headers = [
    ...(withNode ? ["NODE"] : []),
    "TOOLS",
    "GUEST",
    "VCPUS",
    "RESERVED",
    "EVE ESTIMATE",
    "MEASURED PEAK",
    "PEAK IN ALL",
    "RESERVED/MEASURED",
    "SAMPLES",
    "UPDATED",
  ];
  return renderTable(
    headers,
    rows.map((r) => {
      const t = r.record;
      return [
        ...(withNode ? [t.node] : []),
        shortTools(t.toolsImage),
        `${t.guestMiB}Mi`,
        String(t.vcpus),
        formatMiB(t.reservedTaxBytes),
        formatMiB(t.estimatedTaxBytes),
        formatMiB(t.peakAboveGuestBytes),
        formatMiB(t.peakTotalBytes),
        ratio(r),
        String(t.samples),
        `${formatAge(now.getTime() - Date.parse(t.updatedAt))} ago`,
      ];
    }),
  );
}

/** The line `tax` prints when there is no record. */
export function noTaxRecordsMessage(node: string | undefined): string {
  const where = node === undefined ? "this node" : `node ${node}`;
  return (
    `no VM has run on ${where} yet: the proc-monitor records a VM's peak memory above its guest RAM ` +
    "per tools image and guest size while the VM runs\n"
  );
}

function invalidLine(i: InvalidStored): string {
  return `warning: AnchorTax.${i.key} (revision ${i.revision}) is invalid and ignored: ${i.message.split("\n").join(" ")}\n`;
}

/** Runs `tax`: reads every AnchorTax record (of `node`) and prints the table or JSON. */
export async function runTax(ctx: CliContext, o: TaxOptions): Promise<void> {
  const table = await withBus(o.server, (bus) =>
    readTable(bus, "proc-monitor", "AnchorTax", AnchorTaxRecordSchema),
  );
  const rows = sortTaxRows(
    [...table.values.values()]
      .filter((s) => o.node === undefined || s.value.node === o.node)
      .map((s) => taxRow(s.key, s.value)),
  );
  const invalid = table.invalid.filter((i) => o.node === undefined || i.key.startsWith(`${o.node}.`));
  ctx.err(invalid.map(invalidLine).join(""));
  if (o.json) {
    ctx.out(`${JSON.stringify(rows, null, 2)}\n`);
  } else if (rows.length === 0) {
    ctx.err(noTaxRecordsMessage(o.node));
  } else {
    ctx.out(renderTaxTable(rows, ctx.now()));
  }
}

/** Adds `tax` to the program. */
export function registerTax(
  program: Command<[], { server?: string }>,
  ctx: CliContext,
  server: () => NatsTarget,
): void {
  program
    .command("tax")
    .summary("compare VMs' reserved anchor tax with the measured one")
    .description(
      "List the proc-monitor's AnchorTax records, one per node, tools image and guest size: TOOLS (the " +
        "image's name and digest), GUEST (RAM), VCPUS, RESERVED (the tax the task ran with), EVE ESTIMATE " +
        "(ceil(370 + 3·vcpus + guest/40) MiB), MEASURED PEAK (the task cgroup's peak memory above guest " +
        "RAM, the largest seen), PEAK IN ALL (that peak with the guest), RESERVED/MEASURED, SAMPLES and " +
        "UPDATED. NODE is shown when records of several nodes are listed.",
    )
    .option("--node <name>", "only this node's records")
    .option("--json", "print a JSON array of { key, headroomBytes, reservedPerMeasured, record }")
    .action(async (opts) => {
      await runTax(ctx, { node: opts.node, json: opts.json === true, server: server() });
    });
}
