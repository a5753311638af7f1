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
    let sum = 0;
    for (const [uuid, bytes] of this.#held) if (uuid !== except) sum += bytes;
    return sum;
  }

  /**
   * Holds `bytes` for `uuid` if they fit (replacing what it held); returns null when held,
   * else why not. Synchronous, so two starts can never both take the last free bytes.
   */
  admit(uuid: string, bytes: number): AdmissionRefusal | null {
    const held = this.heldBytes(uuid);
    const free = this.#usableBytes - held;
    if (bytes <= free) {
      this.#held.set(uuid, bytes);
      return null;
    }
    const holders = [...this.#held.keys()].filter((u) => u !== uuid).length;
    const mib = (b: number): string => `${Math.round((b / MiB) * 10) / 10} MiB`;
    return {
      neededBytes: bytes,
      freeBytes: Math.max(0, free),
      usableBytes: this.#usableBytes,
      heldBytes: held,
      holders,
      message:
        `waiting for memory: needs ${mib(bytes)}, ${mib(Math.max(0, free))} free ` +
        `(${mib(this.#usableBytes)} usable, ${mib(held)} held by ${holders} task(s))`,
    };
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
