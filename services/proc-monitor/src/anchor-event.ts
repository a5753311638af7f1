/** The event the proc-monitor emits when a task's anchor is gone. */
import type { AnchorGoneReason } from "@eve-tasks/procfs";
import type { TaskEventInput } from "@eve-tasks/schemas";

/** Which anchor, and what was found. */
export interface AnchorGone {
  uuid: string;
  anchorPid: number;
  anchorStartTicks: number | null;
  reason: AnchorGoneReason;
  /** Start ticks of the process that has the PID now (pid-reused). */
  foundStartTicks?: number;
  time: Date;
}

/**
 * The message id of the event about one anchor: the same for every proc-monitor process, so one
 * restarted while the anchor's status is unchanged re-emits it and JetStream's duplicate window
 * stores it once.
 */
export function anchorGoneEventId(g: Pick<AnchorGone, "uuid" | "anchorPid" | "anchorStartTicks">): string {
  return `proc-monitor.exited.${g.uuid}.${g.anchorPid}.${g.anchorStartTicks ?? "unknown"}`;
}

/**
 * An `exited` TaskEvent: `fields` says it comes from the proc-monitor, which anchor (PID and start
 * ticks) and why (`gone`: no such process, or a zombie; `pid-reused`: another process has the PID).
 */
export function anchorGoneEvent(g: AnchorGone): TaskEventInput {
  const why =
    g.reason === "gone"
      ? "is gone"
      : `is gone: PID ${g.anchorPid} now belongs to another process (start ticks ${g.foundStartTicks ?? "?"}, expected ${g.anchorStartTicks ?? "?"})`;
  return {
    schemaVersion: 1,
    uuid: g.uuid,
    type: "exited",
    time: g.time.toISOString(),
    message: `anchor PID ${g.anchorPid} ${why} (seen by proc-monitor)`,
    fields: {
      source: "proc-monitor",
      anchorPid: g.anchorPid,
      anchorStartTicks: g.anchorStartTicks,
      reason: g.reason,
    },
  };
}
