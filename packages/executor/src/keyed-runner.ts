/**
 * Runs one reconcile at a time per key, coalescing: a kick while a key's reconcile runs
 * marks it dirty and it runs once more afterwards, from the latest state (as EVE's
 * per-domain workers do). Different keys run concurrently.
 */
export class KeyedRunner {
  readonly #running = new Map<string, Promise<void>>();
  readonly #dirty = new Set<string>();
  readonly #run: (key: string) => Promise<void>;
  #stopped = false;

  constructor(run: (key: string) => Promise<void>) {
    this.#run = run;
  }

  /** Asks for `key` to be reconciled soon. */
  kick(key: string): void {
    if (this.#stopped) return;
    if (this.#running.has(key)) {
      this.#dirty.add(key);
      return;
    }
    const p = this.#loop(key).finally(() => this.#running.delete(key));
    this.#running.set(key, p);
  }

  async #loop(key: string): Promise<void> {
    do {
      this.#dirty.delete(key);
      await this.#run(key);
    } while (this.#dirty.has(key) && !this.#stopped);
  }

  /** Keys being reconciled now. */
  get busy(): number {
    return this.#running.size;
  }

  /** Resolves when nothing is running. */
  async idle(): Promise<void> {
    while (this.#running.size) await Promise.allSettled([...this.#running.values()]);
  }

  /** Takes no new kicks; waits for what runs. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.idle();
  }
}

/** A counting semaphore: at most `n` holders at once. */
export class Semaphore {
  #free: number;
  readonly #waiters: (() => void)[] = [];
  constructor(n: number) {
    this.#free = n;
  }
  async use<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((r) => this.#waiters.push(r));
    try {
      return await fn();
    } finally {
      const next = this.#waiters.shift();
      if (next) next();
      else this.#free++;
    }
  }
}
