/**
 * The measured anchor tax, pure: a sample's tax (the cgroup's peak memory above guest RAM), what
 * the proc-monitor keeps of a TaskConfig, when an AnchorTax record is due, and how an update is
 * merged into the stored record (run inside a compare-and-set, so it must merge, never replace).
 */
import {
  ANCHOR_TAX_RECENT_TASKS,
  TaskConfigSchema,
  anchorTaxKey,
  estimateAnchorTaxMiB,
  readVmAnnotations,
} from "@eve-tasks/schemas";
import type { AnchorTaxRecord, AnchorTaxRecordInput, AnchorTaxTask, TaskConfig } from "@eve-tasks/schemas";

const MiB = 2 ** 20;

/** A write is due when the peak grew by at least this much over what is stored. */
export const PEAK_STEP_BYTES = MiB;
/** Samples (and rises below {@link PEAK_STEP_BYTES}) not yet written are written at least this often. */
export const FLUSH_INTERVAL_MS = 10 * 60_000;
/** After a failed write, the next one is not tried for this long (unless flushed). */
export const RETRY_AFTER_MS = 30_000;
/** How many task identities a tracker remembers per key (to tell a new task). */
const KNOWN_TASKS = 64;

/** What a sample adds to the measure of the tax besides the cgroup's peak. */
export interface TaxSampleExtras {
  /** The cgroup's memory now. */
  memoryUsageBytes: number | null;
  /** How much of the guest RAM the anchor holds now (smaps); null when unknown. */
  guestResidentBytes: number | null;
  /** The task's measure so far (a running max). */
  previousBytes: number | null;
}

/**
 * The measured tax of a VM's task: what its cgroup holds beyond the guest's RAM, never below 0.
 * Two lower bounds, the larger wins, and it never decreases over a task's samples:
 *
 * - the cgroup's peak minus the whole guest RAM (the memory limit minus the reserved tax): exact
 *   for a guest that touched all its RAM;
 * - the cgroup's memory now minus the guest RAM resident in qemu now: a guest touches its RAM
 *   lazily, and a 256 MiB guest that has booted may hold 120 MiB of it.
 *
 * Null when not a VM (`anchorTaxBytes` null), when the peak is missing, or when the limit is not
 * above the tax (no guest RAM can be told).
 */
export function anchorTaxPeakBytes(
  memoryPeakBytes: number | null,
  memoryLimitBytes: number | null,
  anchorTaxBytes: number | null,
  extras?: TaxSampleExtras,
): number | null {
  if (memoryPeakBytes === null || memoryLimitBytes === null || anchorTaxBytes === null) return null;
  const guestBytes = memoryLimitBytes - anchorTaxBytes;
  if (guestBytes <= 0) return null;
  let tax = Math.max(0, memoryPeakBytes - guestBytes, extras?.previousBytes ?? 0);
  if (extras && extras.memoryUsageBytes !== null && extras.guestResidentBytes !== null) {
    tax = Math.max(tax, extras.memoryUsageBytes - extras.guestResidentBytes);
  }
  return Math.min(tax, memoryPeakBytes);
}

/** What a READY VM TaskConfig of this node says about its task, for the AnchorTax record. */
export interface VmFacts {
  configRevision: number;
  /** `<ref>@<digest>`, the spec's tools annotation. */
  toolsImage: string;
  toolsDigest: string;
  guestMiB: number;
  vcpus: number;
}

/** What the proc-monitor keeps of a TaskConfig: a few numbers and strings, never the spec. */
export interface TaskConfigView {
  uuid: string;
  status: TaskConfig["status"];
  node: string;
  configRevision: number;
  /** A READY config of a runtime task (a VM, or any runtime with a tax to measure). */
  hvm: boolean;
  /** The facts of a READY VM config; null otherwise or when its annotations cannot be read. */
  vm: VmFacts | null;
  /** Why a READY VM config has no facts. */
  problem: string | null;
}

/** The view of a TaskConfig (see {@link TaskConfigView}). */
export function taskConfigView(c: TaskConfig): TaskConfigView {
  const base = { uuid: c.uuid, status: c.status, node: c.node, configRevision: c.configRevision };
  if (c.status !== "READY" || c.runtime === undefined)
    return { ...base, hvm: false, vm: null, problem: null };
  const a = readVmAnnotations(c.spec.annotations);
  const missing = [a.tools ? undefined : "tools", a.vcpus ? undefined : "vm.vcpus"].filter((m) => m);
  if (!a.tools || !a.vcpus) {
    return {
      ...base,
      hvm: true,
      vm: null,
      problem: `the spec has no readable org.lfedge.eve-tasks.${missing.join(" or org.lfedge.eve-tasks.")} annotation`,
    };
  }
  return {
    ...base,
    hvm: true,
    vm: {
      configRevision: c.configRevision,
      toolsImage: `${a.tools.ref}@${a.tools.digest}`,
      toolsDigest: a.tools.digest,
      guestMiB: c.memoryMiB,
      vcpus: a.vcpus,
    },
    problem: null,
  };
}

/**
 * TaskConfig as the proc-monitor keeps it: validated with the one TaskConfig schema, then reduced
 * to a few fields ({@link TaskConfigView}), so no spec is held in memory.
 */
export const TaskConfigViewSchema = TaskConfigSchema.transform(taskConfigView);

/** One sample of a VM task whose facts are known. */
export interface AnchorTaxObservation {
  node: string;
  toolsImage: string;
  toolsDigest: string;
  guestMiB: number;
  vcpus: number;
  /** The tax the task runs with (its TaskStatus.anchorTaxBytes). */
  reservedTaxBytes: number;
  peakAboveGuestBytes: number;
  peakTotalBytes: number;
  /** When the sample was taken (ISO). */
  at: string;
  task: AnchorTaxTask;
}

/** The key of an observation's record. */
export function observationKey(o: Pick<AnchorTaxObservation, "node" | "toolsDigest" | "guestMiB">): string {
  return anchorTaxKey(o.node, o.toolsDigest, o.guestMiB);
}

/** What to merge into one record: the best sample since the last write, counts and tasks. */
export interface AnchorTaxUpdate {
  key: string;
  /** The sample with the highest peak since the last write (else the latest one). */
  best: AnchorTaxObservation;
  /** Samples since the last write. */
  samples: number;
  /** Tasks this writer saw that the record may not know yet. */
  tasks: AnchorTaxTask[];
  /** When the first of those samples was taken (ISO): a new record's firstSeenAt. */
  firstAt: string;
  /** When the update is written (ISO). */
  at: string;
}

const taskId = (t: AnchorTaxTask): string => `${t.uuid}/${t.taskId}/${t.anchorStartTicks ?? "-"}`;

/**
 * The record after `u`: created from `u` when there is none; otherwise the peak is the larger
 * of both (with the vCPUs, reserved tax and estimate of the task that set it), samples add up,
 * and tasks not listed yet are counted and listed (the latest {@link ANCHOR_TAX_RECENT_TASKS}).
 * Being a merge, it can be retried on a compare-and-set conflict with the newer record.
 */
export function mergeAnchorTaxRecord(
  current: AnchorTaxRecord | undefined,
  u: AnchorTaxUpdate,
): AnchorTaxRecordInput {
  const b = u.best;
  const fromBest = {
    toolsImage: b.toolsImage,
    vcpus: b.vcpus,
    reservedTaxBytes: b.reservedTaxBytes,
    estimatedTaxBytes: estimateAnchorTaxMiB({ memoryMiB: b.guestMiB, vcpus: b.vcpus }) * MiB,
    peakAboveGuestBytes: b.peakAboveGuestBytes,
    peakTotalBytes: b.peakTotalBytes,
    peakAt: b.at,
    peakUuid: b.task.uuid,
  };
  const listed = new Set((current?.recentTasks ?? []).map(taskId));
  const added: AnchorTaxTask[] = [];
  for (const t of u.tasks) {
    if (listed.has(taskId(t))) continue;
    listed.add(taskId(t));
    added.push(t);
  }
  if (current === undefined) {
    return {
      schemaVersion: 1,
      node: b.node,
      toolsDigest: b.toolsDigest,
      guestMiB: b.guestMiB,
      ...fromBest,
      samples: u.samples,
      tasks: Math.max(1, added.length),
      recentTasks: (added.length > 0 ? added : [b.task]).slice(-ANCHOR_TAX_RECENT_TASKS),
      firstSeenAt: u.firstAt < u.at ? u.firstAt : u.at,
      updatedAt: u.at,
    };
  }
  const rises =
    b.peakAboveGuestBytes > current.peakAboveGuestBytes ||
    (b.peakAboveGuestBytes === current.peakAboveGuestBytes && b.peakTotalBytes > current.peakTotalBytes);
  return {
    ...current,
    ...(rises ? fromBest : {}),
    samples: current.samples + u.samples,
    tasks: current.tasks + added.length,
    recentTasks: [...current.recentTasks, ...added].slice(-ANCHOR_TAX_RECENT_TASKS),
    updatedAt: u.at > current.updatedAt ? u.at : current.updatedAt,
  };
}

/** What a tracker knows of one key. */
interface KeyState {
  /** The peak stored, as last written or read back; -1 before the first write. */
  storedPeakBytes: number;
  /** Tasks the stored record is known to list (the latest {@link KNOWN_TASKS}). */
  known: Set<string>;
  /** Tasks seen and not yet written, by id. */
  pendingTasks: Map<string, AnchorTaxTask>;
  pendingSamples: number;
  /** The best sample since the last write. */
  best: AnchorTaxObservation | undefined;
  /** The latest sample. */
  latest: AnchorTaxObservation;
  /** When the first sample not yet written was taken (ISO). */
  firstAt: string | undefined;
  lastWriteMs: number;
  /** No write is started before this time (after a failed one). */
  retryAtMs: number;
  inFlight: boolean;
}

/**
 * Decides when an AnchorTax record is written: when a task is seen that the record does not list
 * (as far as this process knows), when the peak grew by {@link PEAK_STEP_BYTES} over what is
 * stored, and otherwise at most every {@link FLUSH_INTERVAL_MS} or on {@link flush} (a task
 * stopped, shutdown) to count the samples. One write per key at a time. No I/O: the caller writes
 * the update and reports {@link committed} or {@link failed}.
 */
export class AnchorTaxTracker {
  readonly #keys = new Map<string, KeyState>();
  readonly #flushIntervalMs: number;

  constructor(options: { flushIntervalMs?: number } = {}) {
    this.#flushIntervalMs = options.flushIntervalMs ?? FLUSH_INTERVAL_MS;
  }

  /** Counts a sample; returns the update to write now, if one is due. */
  observe(o: AnchorTaxObservation, nowMs: number): AnchorTaxUpdate | undefined {
    const key = observationKey(o);
    let st = this.#keys.get(key);
    if (!st) {
      st = {
        storedPeakBytes: -1,
        known: new Set(),
        pendingTasks: new Map(),
        pendingSamples: 0,
        best: undefined,
        latest: o,
        firstAt: undefined,
        lastWriteMs: nowMs,
        retryAtMs: 0,
        inFlight: false,
      };
      this.#keys.set(key, st);
    }
    st.pendingSamples++;
    st.latest = o;
    st.firstAt ??= o.at;
    if (!st.best || o.peakAboveGuestBytes > st.best.peakAboveGuestBytes) st.best = o;
    const id = taskId(o.task);
    if (!st.known.has(id)) st.pendingTasks.set(id, o.task);
    if (st.inFlight || nowMs < st.retryAtMs) return undefined;
    const due =
      st.pendingTasks.size > 0 ||
      st.best.peakAboveGuestBytes >= st.storedPeakBytes + PEAK_STEP_BYTES ||
      nowMs - st.lastWriteMs >= this.#flushIntervalMs;
    return due ? this.#take(key, st, nowMs) : undefined;
  }

  /** The updates of every key (or of `key`) with samples not yet written and no write in flight. */
  flush(nowMs: number, key?: string): AnchorTaxUpdate[] {
    const out: AnchorTaxUpdate[] = [];
    for (const [k, st] of this.#keys) {
      if (key !== undefined && k !== key) continue;
      if (st.inFlight || (st.pendingSamples === 0 && st.pendingTasks.size === 0)) continue;
      out.push(this.#take(k, st, nowMs));
    }
    return out;
  }

  #take(key: string, st: KeyState, nowMs: number): AnchorTaxUpdate {
    st.inFlight = true;
    return {
      key,
      best: st.best ?? st.latest,
      samples: st.pendingSamples,
      tasks: [...st.pendingTasks.values()],
      firstAt: st.firstAt ?? st.latest.at,
      at: new Date(nowMs).toISOString(),
    };
  }

  /** `u` was written; `stored` is the record now stored. */
  committed(u: AnchorTaxUpdate, stored: AnchorTaxRecord, nowMs: number): void {
    const st = this.#keys.get(u.key);
    if (!st) return;
    st.inFlight = false;
    st.lastWriteMs = nowMs;
    st.pendingSamples = Math.max(0, st.pendingSamples - u.samples);
    st.firstAt = st.pendingSamples > 0 ? st.latest.at : undefined;
    st.storedPeakBytes = stored.peakAboveGuestBytes;
    if (st.best && st.best.peakAboveGuestBytes <= stored.peakAboveGuestBytes) st.best = undefined;
    for (const t of [...u.tasks, ...stored.recentTasks]) {
      const id = taskId(t);
      st.pendingTasks.delete(id);
      st.known.delete(id);
      st.known.add(id);
    }
    while (st.known.size > KNOWN_TASKS) st.known.delete(st.known.values().next().value!);
  }

  /**
   * `u` could not be written: everything stays pending, to be written with the next update, which
   * {@link observe} starts no sooner than {@link RETRY_AFTER_MS} from now.
   */
  failed(u: AnchorTaxUpdate, nowMs: number): void {
    const st = this.#keys.get(u.key);
    if (!st) return;
    st.inFlight = false;
    st.retryAtMs = nowMs + RETRY_AFTER_MS;
  }

  /** Whether a write of `key` is in flight (for tests). */
  inFlight(key: string): boolean {
    return this.#keys.get(key)?.inFlight ?? false;
  }
}
