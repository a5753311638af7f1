/**
 * Memory admission: a task starts only if its memory limit (guest memory plus anchor tax) fits
 * what the node has left: the node's memory, minus the reserve, minus what tasks that exist hold.
 */

const MiB = 2 ** 20;

/** Why a task does not fit, with the numbers a user needs. */
export interface AdmissionRefusal {
  neededBytes: number;
  freeBytes: number;
  usableBytes: number;
  heldBytes: number;
  holders: number;
  message: string;
}

/** The node's memory as one app sees it: what every other task holds. */
export interface MemoryView {
  usableBytes: number;
  /** Held by every task but the app's own. */
  heldBytes: number;
  /** How many other tasks hold memory. */
  holders: number;
}

/** Whether `neededBytes` fit in `view`: null when they do, else why not. Pure. */
export function admissionRefusal(neededBytes: number, view: MemoryView): AdmissionRefusal | null {
  const free = view.usableBytes - view.heldBytes;
  if (neededBytes <= free) return null;
  const mib = (b: number): string => `${Math.round((b / MiB) * 10) / 10} MiB`;
  return {
    neededBytes,
    freeBytes: Math.max(0, free),
    usableBytes: view.usableBytes,
    heldBytes: view.heldBytes,
    holders: view.holders,
    message:
      `waiting for memory: needs ${mib(neededBytes)}, ${mib(Math.max(0, free))} free ` +
      `(${mib(view.usableBytes)} usable, ${mib(view.heldBytes)} held by ${view.holders} task(s))`,
  };
}

/** The memory tasks hold on this node, by app uuid. */
export class MemoryLedger {
  readonly #usableBytes: number;
  readonly #held = new Map<string, number>();

  /** `usableMiB`: the node's memory minus the reserve. */
  constructor(usableMiB: number) {
    this.#usableBytes = Math.max(0, usableMiB) * MiB;
  }

  get usableBytes(): number {
    return this.#usableBytes;
  }

  /** Bytes held by every task but `except`'s. */
  heldBytes(except?: string): number {
    return this.view(except).heldBytes;
  }

  /** The node's memory as `uuid` sees it (what every other task holds). */
  view(uuid?: string): MemoryView {
    let heldBytes = 0;
    let holders = 0;
    for (const [u, bytes] of this.#held) {
      if (u === uuid) continue;
      heldBytes += bytes;
      holders += 1;
    }
    return { usableBytes: this.#usableBytes, heldBytes, holders };
  }

  /**
   * Holds `bytes` for `uuid` if they fit (replacing what it held); returns null when held,
   * else why not. Synchronous, so two starts can never both take the last free bytes.
   */
  admit(uuid: string, bytes: number): AdmissionRefusal | null {
    const refusal = admissionRefusal(bytes, this.view(uuid));
    if (refusal === null) this.#held.set(uuid, bytes);
    return refusal;
  }

  /** Records memory a task already holds (adopted at start-up), whether or not it fits. */
  hold(uuid: string, bytes: number): void {
    this.#held.set(uuid, bytes);
  }

  /** Releases `uuid`'s memory; true if it held any. */
  release(uuid: string): boolean {
    return this.#held.delete(uuid);
  }

  holds(uuid: string): boolean {
    return this.#held.has(uuid);
  }
}
