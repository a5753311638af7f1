/**
 * A lease on a KV key: at most one holder at a time, kept by renewing it with compare-and-set.
 * The task-executor holds `TaskExecutorLease.<node>` in its own bucket, so a second executor for
 * the same node (on this machine or another one talking to the same NATS) refuses to start
 * instead of racing the first over containerd. KV create and update with the expected revision
 * are atomic in JetStream, so two starting at once cannot both win.
 *
 * Who holds a lease that was not released (a crash): on the same host (same boot), the holder's
 * PID and start time tell at once whether it is still alive; from another host, it is taken over
 * once it has not been renewed for its TTL.
 */
import { z } from "zod";
import type { KvEntry } from "@nats-io/kv";
import type { Bus } from "./connection.js";
import { BusError } from "./errors.js";
import { assertTypeName, assertUserKey, kvKey } from "./keys.js";

/** The value of a lease key. */
export const LeaseValueSchema = z.object({
  schemaVersion: z.literal(1),
  pid: z.number().int(),
  /** Field 22 of /proc/<pid>/stat: a PID alone is reused. */
  startTicks: z.number().int().nullable(),
  host: z.string(),
  /** /proc/sys/kernel/random/boot_id: a PID means nothing after a reboot. */
  bootId: z.string(),
  acquiredAt: z.string(),
  renewedAt: z.string(),
  ttlMs: z.number().int().positive(),
});
export type LeaseValue = z.infer<typeof LeaseValueSchema>;

/** Who is asking. */
export interface LeaseClaimant {
  readonly pid: number;
  readonly startTicks: number | null;
  readonly host: string;
  readonly bootId: string;
}

/** What to do about an existing lease. */
export type LeaseDecision = { take: true; why: string } | { take: false; why: string };

/**
 * Decides whether `me` may take a lease found as `existing` (undefined: none, or a deleted
 * key), last written `ageMs` ago by the server's clock. `isAlive(pid, startTicks)` checks a
 * process of this host.
 */
export function decideLease(
  existing: LeaseValue | "unreadable" | undefined,
  ageMs: number,
  me: LeaseClaimant,
  isAlive: (pid: number, startTicks: number | null) => boolean,
): LeaseDecision {
  if (existing === undefined) return { take: true, why: "no holder" };
  if (existing === "unreadable") return { take: true, why: "the lease key held no readable lease" };
  if (existing.pid === me.pid && existing.bootId === me.bootId && existing.host === me.host)
    return { take: true, why: "held by this process already" };
  const held = `pid ${existing.pid} on host ${existing.host}, renewed ${Math.round(ageMs / 1000)} s ago`;
  if (existing.host === me.host && existing.bootId === me.bootId) {
    return isAlive(existing.pid, existing.startTicks)
      ? { take: false, why: `held by ${held}, which is running` }
      : { take: true, why: `its holder (${held}) is gone` };
  }
  if (ageMs > existing.ttlMs) return { take: true, why: `its holder (${held}) stopped renewing it` };
  return {
    take: false,
    why: `held by ${held} (another host or boot: taken over only once not renewed for ${existing.ttlMs / 1000} s)`,
  };
}

/** Whether `value` was written by `me` (the same process of the same host and boot). */
function isMine(value: LeaseValue, me: LeaseClaimant): boolean {
  return (
    value.pid === me.pid &&
    value.startTicks === me.startTicks &&
    value.host === me.host &&
    value.bootId === me.bootId
  );
}

/** What a renewal that failed means, once the lease key has been read again. */
export type RenewalCheck =
  | { kind: "ours"; revision: number; why: string }
  | { kind: "lost"; why: string }
  | { kind: "unknown"; why: string };

/**
 * Decides what a failed renewal means from the key read right after it: `read` is undefined when
 * NATS could not be asked, null when the key has no value (never written, deleted or purged).
 * A renewal can fail and still have been stored (its acknowledgement lost or late, or a slower
 * renewal of ours landing first): when the stored lease is still this process's, it is held, at
 * the stored revision.
 */
export function checkRenewal(
  read: { value: LeaseValue | "unreadable"; revision: number } | null | undefined,
  me: LeaseClaimant,
): RenewalCheck {
  if (read === undefined) return { kind: "unknown", why: "NATS did not answer" };
  if (read === null) return { kind: "lost", why: "the lease was removed" };
  if (read.value === "unreadable") return { kind: "lost", why: "the lease key holds no readable lease" };
  if (isMine(read.value, me))
    return { kind: "ours", revision: read.revision, why: "the stored lease is ours" };
  return { kind: "lost", why: `it is held by pid ${read.value.pid} on host ${read.value.host} now` };
}

/** Another holder has the lease. */
export class LeaseHeldError extends BusError {
  override name = "LeaseHeldError";
  constructor(
    readonly key: string,
    readonly why: string,
  ) {
    super(`lease ${key} ${why}`);
  }
}

/** A held lease. */
export interface Lease {
  /** Stops renewing and deletes the key if still ours. */
  release(): Promise<void>;
}

/** Options of {@link acquireLease}. */
export interface LeaseOptions {
  /** The bucket (the claimant's own). */
  readonly agent: string;
  /** The table, e.g. `TaskExecutorLease`, and the key, e.g. the node. */
  readonly type: string;
  readonly key: string;
  readonly claimant: LeaseClaimant;
  readonly isAlive: (pid: number, startTicks: number | null) => boolean;
  /** Default 15 s; renewed every third of it. */
  readonly ttlMs?: number;
  /** Called once when a renewal finds someone else holding it, or no lease (we must stop). */
  readonly onLost: (why: string) => void;
}

/**
 * Takes the lease or throws {@link LeaseHeldError} saying who holds it. While held, renews it
 * every `ttlMs / 3`, one renewal at a time. A renewal that fails is judged by reading the key
 * again ({@link checkRenewal}): NATS unreachable, retried at the next tick (the lease is not
 * given up for an outage); the stored lease still this process's (a renewal stored but not
 * acknowledged in time), held on; another holder or no lease, `onLost`.
 */
export async function acquireLease(bus: Bus, o: LeaseOptions): Promise<Lease> {
  assertTypeName(o.type);
  assertUserKey(o.key);
  const ttlMs = o.ttlMs ?? 15_000;
  const full = kvKey(o.type, o.key);
  const kv = await bus.bucket(o.agent);
  const now = new Date().toISOString();
  const value = (acquiredAt: string): LeaseValue => ({
    schemaVersion: 1,
    ...o.claimant,
    acquiredAt,
    renewedAt: new Date().toISOString(),
    ttlMs,
  });
  /** The lease a stored entry holds (undefined: none, the key deleted or purged). */
  const leaseOf = (e: KvEntry | null): LeaseValue | "unreadable" | undefined => {
    if (e === null || e.operation !== "PUT") return undefined;
    const parsed = LeaseValueSchema.safeParse(
      (() => {
        try {
          return e.json();
        } catch {
          return null;
        }
      })(),
    );
    return parsed.success ? parsed.data : "unreadable";
  };
  let taken: number | undefined;
  for (let attempt = 0; taken === undefined; attempt++) {
    const e = await kv.get(full);
    const existing = leaseOf(e);
    const ageMs = e === null ? 0 : Math.max(0, Date.now() - e.created.getTime());
    const d = decideLease(existing, ageMs, o.claimant, o.isAlive);
    if (!d.take) throw new LeaseHeldError(full, d.why);
    try {
      const body = JSON.stringify(value(now));
      taken = e === null ? await kv.create(full, body) : await kv.update(full, body, e.revision);
      bus.logger.info({ event: "lease-acquired", key: full, why: d.why }, `lease ${full} taken (${d.why})`);
    } catch (err) {
      // Someone wrote it between our read and write: look again (they may be the holder now).
      if (attempt >= 5) throw err;
    }
  }
  let revision: number = taken;
  let stopped = false;
  let lost = false;
  /**
   * The renewal in flight: the next tick skips rather than race it with the same revision, and
   * release waits for it, so that its delete names the last revision.
   */
  let renewing: Promise<void> | undefined;
  /** The lease stored now: undefined when NATS did not answer, null when there is none. */
  const readStored = async (): Promise<
    { value: LeaseValue | "unreadable"; revision: number } | null | undefined
  > => {
    const e = await kv.get(full).catch(() => undefined);
    if (e === undefined) return undefined;
    const stored = leaseOf(e);
    return e === null || stored === undefined ? null : { value: stored, revision: e.revision };
  };
  const renew = async (): Promise<void> => {
    try {
      revision = await kv.update(full, JSON.stringify(value(now)), revision);
    } catch (err) {
      if (lost) return;
      const check = checkRenewal(await readStored(), o.claimant);
      if (check.kind === "ours") {
        revision = check.revision;
      } else if (stopped) {
        return;
      } else if (check.kind === "unknown") {
        bus.logger.warn({ err, key: full }, "cannot renew the lease (NATS unreachable?); will retry");
      } else {
        lost = true;
        o.onLost(`lease ${full} was lost while this process held it: ${check.why}`);
      }
    }
  };
  const timer = setInterval(
    () => {
      if (stopped || lost || renewing) return;
      renewing = renew().finally(() => {
        renewing = undefined;
      });
    },
    Math.max(100, Math.floor(ttlMs / 3)),
  );
  timer.unref();
  return {
    async release() {
      stopped = true;
      clearInterval(timer);
      await renewing;
      if (lost) return;
      await kv.delete(full, { previousSeq: revision }).catch(() => undefined);
    },
  };
}
