import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  ANCHOR_TAX_RECENT_TASKS,
  AnchorTaxRecordSchema,
  TOOLS_ANNOTATION,
  VM_ACCEL_ANNOTATION,
  VM_VCPUS_ANNOTATION,
  anchorTaxKey,
  decodeValue,
  encodeValue,
  formatPinnedRef,
  messageTypeNameOf,
  parsePinnedRef,
  parseVcpusAnnotation,
  readVmAnnotations,
  sha256Hex,
  toolsDigestToken,
} from "../src/index.js";
import { TIME, UUID } from "./fixtures.js";

const MiB = 2 ** 20;
const HEX = "3f2a9c0d1e2b".padEnd(64, "0");
const DIGEST = `sha256:${HEX}`;
const TOOLS = `registry.example:5000/eve/tools:1@${DIGEST}`;

function errorOf(input: unknown): string {
  const result = AnchorTaxRecordSchema.safeParse(input);
  if (result.success) throw new Error(`expected ${JSON.stringify(input)} to be refused`);
  return z.prettifyError(result.error);
}

describe("VM annotations", () => {
  it("are named as the spec-builder writes them", () => {
    expect(TOOLS_ANNOTATION).toBe("org.lfedge.eve-tasks.tools");
    expect(VM_VCPUS_ANNOTATION).toBe("org.lfedge.eve-tasks.vm.vcpus");
    expect(VM_ACCEL_ANNOTATION).toBe("org.lfedge.eve-tasks.vm.accel");
  });

  it("format and parse <ref>@<digest>, splitting at the last @", () => {
    expect(formatPinnedRef("registry.example:5000/eve/tools:1", DIGEST)).toBe(TOOLS);
    expect(parsePinnedRef(TOOLS)).toEqual({
      ref: "registry.example:5000/eve/tools:1",
      digest: DIGEST,
      algorithm: "sha256",
      encoded: HEX,
    });
    const pinnedRef = `tools@sha256:${"a".repeat(64)}`;
    expect(parsePinnedRef(`${pinnedRef}@${DIGEST}`)).toMatchObject({ ref: pinnedRef, digest: DIGEST });
    expect(parsePinnedRef(`oci:/var/lib/eve/layout:default@${DIGEST}`)?.ref).toBe(
      "oci:/var/lib/eve/layout:default",
    );
    for (const bad of ["tools:1", `@${DIGEST}`, "tools@", "tools@sha256", `to ols@${DIGEST}`, "tools@:abc"]) {
      expect(parsePinnedRef(bad), bad).toBeUndefined();
    }
    expect(() => formatPinnedRef("", DIGEST)).toThrow(TypeError);
    expect(() => formatPinnedRef("tools:1", "latest")).toThrow(/not a digest/);
  });

  it("read vCPUs and the accelerator, undefined when absent or malformed", () => {
    expect(parseVcpusAnnotation("2")).toBe(2);
    for (const bad of [undefined, "", "0", "-1", "1.5", "02", " 2", "two"]) {
      expect(parseVcpusAnnotation(bad), String(bad)).toBeUndefined();
    }
    expect(
      readVmAnnotations({
        [TOOLS_ANNOTATION]: TOOLS,
        [VM_VCPUS_ANNOTATION]: "4",
        [VM_ACCEL_ANNOTATION]: "tcg",
      }),
    ).toEqual({ tools: parsePinnedRef(TOOLS), vcpus: 4, accel: "tcg" });
    expect(readVmAnnotations(undefined)).toEqual({ tools: undefined, vcpus: undefined, accel: undefined });
    expect(readVmAnnotations({ [TOOLS_ANNOTATION]: "tools:1" }).tools).toBeUndefined();
  });
});

describe("AnchorTax", () => {
  // The VM: 376 MiB reserved for a 128 MiB guest; the peak measured was 174 MiB in all.
  const record = {
    schemaVersion: 1 as const,
    node: "local",
    toolsImage: TOOLS,
    toolsDigest: DIGEST,
    guestMiB: 128,
    vcpus: 2,
    reservedTaxBytes: 376 * MiB,
    estimatedTaxBytes: 380 * MiB,
    peakAboveGuestBytes: 46 * MiB,
    peakTotalBytes: 174 * MiB,
    peakAt: TIME,
    peakUuid: UUID,
    samples: 12,
    tasks: 1,
    recentTasks: [{ uuid: UUID, taskId: 4242, anchorStartTicks: 123456 }],
    firstSeenAt: TIME,
    updatedAt: TIME,
  };

  it("is keyed <node>.<sha256 hex of the tools digest>.<guestMiB>", () => {
    expect(anchorTaxKey("local", DIGEST, 128)).toBe(`local.${HEX}.128`);
    const sha512 = `sha512:${"b".repeat(128)}`;
    expect(toolsDigestToken(sha512)).toBe(sha256Hex(sha512));
    expect(anchorTaxKey("n1", sha512, 1024)).toMatch(/^n1\.[0-9a-f]{64}\.1024$/);
  });

  it("accepts a record and round-trips through the codec; is registered under the proc-monitor", () => {
    expect(AnchorTaxRecordSchema.parse(record)).toEqual(record);
    const decoded = decodeValue(AnchorTaxRecordSchema, encodeValue(AnchorTaxRecordSchema, record));
    expect(decoded).toEqual({ ok: true, value: record });
    expect(messageTypeNameOf(AnchorTaxRecordSchema)).toBe("AnchorTax");
  });

  it("accepts a peak below the guest's RAM, with the tax measured against the RAM it touched", () => {
    expect(
      AnchorTaxRecordSchema.parse({ ...record, peakAboveGuestBytes: 0, peakTotalBytes: 100 * MiB }),
    ).toMatchObject({ peakAboveGuestBytes: 0 });
    // A guest that touched 60 of its 128 MiB: 40 MiB beyond the RAM it holds.
    expect(
      AnchorTaxRecordSchema.parse({ ...record, peakAboveGuestBytes: 40 * MiB, peakTotalBytes: 100 * MiB }),
    ).toMatchObject({ peakAboveGuestBytes: 40 * MiB });
  });

  it("refuses records whose fields disagree", () => {
    expect(errorOf({ ...record, toolsImage: "tools:1" })).toContain("must be <ref>@<digest>");
    expect(errorOf({ ...record, toolsDigest: `sha256:${"c".repeat(64)}` })).toContain(
      "toolsDigest must be the digest of toolsImage",
    );
    expect(errorOf({ ...record, peakAboveGuestBytes: 45 * MiB })).toContain(
      "peakAboveGuestBytes must lie between max(0, peakTotalBytes - guestMiB · 2^20) and peakTotalBytes",
    );
    expect(errorOf({ ...record, tasks: 0 })).toContain("→ at tasks");
    const many = Array.from({ length: ANCHOR_TAX_RECENT_TASKS + 1 }, (_, i) => ({
      uuid: UUID,
      taskId: i + 1,
      anchorStartTicks: null,
    }));
    expect(errorOf({ ...record, tasks: 100, recentTasks: many })).toContain(
      `must list at most ${ANCHOR_TAX_RECENT_TASKS} tasks`,
    );
    expect(errorOf({ ...record, tasks: 1, recentTasks: many.slice(0, 2) })).toContain(
      "tasks counts at least the tasks listed",
    );
    expect(errorOf({ ...record, node: "a.b" })).toContain("→ at node");
    const { samples: _, ...missing } = record;
    expect(errorOf(missing)).toMatch(/→ at samples/);
  });
});
