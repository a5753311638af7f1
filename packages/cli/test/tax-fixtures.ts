// What the tax tests share: AnchorTax records like the proc-monitor stores, and a CLI context
// that records its output.
import { AnchorTaxRecordSchema } from "@eve-tasks/schemas";
import type { AnchorTaxRecord, AnchorTaxRecordInput } from "@eve-tasks/schemas";
import type { CliContext } from "../src/index.js";
import { NOW, UUID } from "./fixtures.js";

export const MiB = 2 ** 20;
export const HEX = "3f2a9c0d1e2b".padEnd(64, "7");
export const DIGEST = `sha256:${HEX}`;

/** The VM: a 128 MiB guest, 376 MiB reserved, 174 MiB peak in all. */
export function record(node: string, over: Partial<AnchorTaxRecordInput> = {}): AnchorTaxRecord {
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

export function fakeContext(now = NOW) {
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
