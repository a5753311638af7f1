/**
 * AnchorTax: the measured anchor tax of VMs on one node, per hypervisor-tools image (by digest)
 * and guest size, published by the proc-monitor at
 * `$KV.proc-monitor.AnchorTax.<node>.<sha256 hex of the tools digest>.<guestMiB>`.
 *
 * The measured tax of a sample is the task cgroup's peak memory (memory.peak, v1
 * memory.max_usage_in_bytes) minus the guest's RAM, never below 0. A record keeps the largest
 * seen over every task and sample of its key, beside the tax those tasks reserved and EVE's
 * estimate, so the reservation can be compared with what qemu really took.
 */
import { z } from "zod";
import { MAX_MEMORY_MIB } from "./app-instance-config.js";
import { sha256Hex } from "./canonical-json.js";
import {
  DigestSchema,
  ImageRefSchema,
  NameSchema,
  NonNegativeIntSchema,
  PositiveIntSchema,
  SchemaVersionSchema,
  TimestampSchema,
  UuidSchema,
} from "./primitives.js";
import { parsePinnedRef } from "./vm-annotations.js";

/** How many of the latest tasks a record lists in `recentTasks`. */
export const ANCHOR_TAX_RECENT_TASKS = 16;

/**
 * The digest token of an AnchorTax key: the hex of a `sha256:<hex>` digest, else (another
 * algorithm) the sha256 hex of the whole digest string, so the token is always 64 hex digits.
 */
export function toolsDigestToken(digest: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
  return m ? m[1]! : sha256Hex(digest);
}

/**
 * Key (within type AnchorTax) of the record of tools image `toolsDigest` and a guest of
 * `guestMiB` on `node`: `<node>.<sha256 hex of the digest>.<guestMiB>`.
 */
export function anchorTaxKey(node: string, toolsDigest: string, guestMiB: number): string {
  return `${node}.${toolsDigestToken(toolsDigest)}.${guestMiB}`;
}

/** One task (anchor) a record has seen: app, anchor PID and its start ticks. */
export const AnchorTaxTaskSchema = z.object({
  uuid: UuidSchema,
  taskId: PositiveIntSchema.meta({ description: "the anchor PID" }),
  anchorStartTicks: NonNegativeIntSchema.nullable().meta({
    description: "field 22 of /proc/<taskId>/stat; null when the status had none",
  }),
});
/** A task a record has seen. */
export type AnchorTaxTask = z.infer<typeof AnchorTaxTaskSchema>;

/** The measured anchor tax of one tools image and guest size on one node. */
export const AnchorTaxRecordSchema = z
  .object({
    schemaVersion: SchemaVersionSchema,
    node: NameSchema,
    toolsImage: ImageRefSchema.meta({
      description: "the tools image as `<ref>@<digest>` (the spec's org.lfedge.eve-tasks.tools annotation)",
    }),
    toolsDigest: DigestSchema.meta({ description: "the tools image's manifest digest" }),
    guestMiB: PositiveIntSchema.max(MAX_MEMORY_MIB, { error: `must be at most ${MAX_MEMORY_MIB}` }).meta({
      description: "the guest's RAM in MiB (the app's memoryMiB)",
    }),
    vcpus: PositiveIntSchema.meta({ description: "vCPUs of the task that set the peak" }),
    reservedTaxBytes: NonNegativeIntSchema.meta({
      description: "the anchor tax the task that set the peak ran with (its TaskStatus.anchorTaxBytes)",
    }),
    estimatedTaxBytes: NonNegativeIntSchema.meta({
      description: "EVE's estimate for guestMiB and vcpus, estimateAnchorTaxMiB · 2^20",
    }),
    peakAboveGuestBytes: NonNegativeIntSchema.meta({
      description:
        "the measured tax: the most memory a task's cgroup held beyond the guest's RAM (TaskMetrics.anchorTaxPeakBytes), max over every task",
    }),
    peakTotalBytes: NonNegativeIntSchema.meta({
      description: "the cgroup's peak memory when peakAboveGuestBytes was set",
    }),
    peakAt: TimestampSchema.meta({ description: "when that sample was taken" }),
    peakUuid: UuidSchema.meta({ description: "the app whose task set the peak" }),
    samples: NonNegativeIntSchema.meta({ description: "samples taken into account" }),
    tasks: PositiveIntSchema.meta({ description: "distinct tasks (anchors) seen" }),
    recentTasks: z
      .array(AnchorTaxTaskSchema)
      .max(ANCHOR_TAX_RECENT_TASKS, { error: `must list at most ${ANCHOR_TAX_RECENT_TASKS} tasks` })
      .meta({ description: `the latest tasks seen, oldest first (at most ${ANCHOR_TAX_RECENT_TASKS})` }),
    firstSeenAt: TimestampSchema.meta({ description: "when the first sample of the first task was taken" }),
    updatedAt: TimestampSchema.meta({ description: "when this record was written" }),
  })
  .superRefine((r, ctx) => {
    const pinned = parsePinnedRef(r.toolsImage);
    if (pinned === undefined) {
      ctx.addIssue({
        code: "custom",
        message: "must be <ref>@<digest>, such as registry.example/eve/tools:1@sha256:<64 hex digits>",
        path: ["toolsImage"],
      });
    } else if (pinned.digest !== r.toolsDigest) {
      ctx.addIssue({
        code: "custom",
        message: `toolsDigest must be the digest of toolsImage (${pinned.digest})`,
        path: ["toolsDigest"],
      });
    }
    const guestBytes = r.guestMiB * 2 ** 20;
    if (
      r.peakAboveGuestBytes < Math.max(0, r.peakTotalBytes - guestBytes) ||
      r.peakAboveGuestBytes > r.peakTotalBytes
    ) {
      ctx.addIssue({
        code: "custom",
        message:
          "peakAboveGuestBytes must lie between max(0, peakTotalBytes - guestMiB · 2^20) and peakTotalBytes",
        path: ["peakAboveGuestBytes"],
      });
    }
    if (r.tasks < r.recentTasks.length) {
      ctx.addIssue({
        code: "custom",
        message: "tasks counts at least the tasks listed in recentTasks",
        path: ["tasks"],
      });
    }
  });

/** The measured anchor tax of one tools image and guest size on one node. */
export type AnchorTaxRecord = z.infer<typeof AnchorTaxRecordSchema>;
/** An AnchorTax record as a publisher may write it. */
export type AnchorTaxRecordInput = z.input<typeof AnchorTaxRecordSchema>;
