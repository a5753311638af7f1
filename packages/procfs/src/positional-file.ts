import { closeSync, openSync, readSync } from "node:fs";

/** Error codes that mean "the file, or what it describes, is not there (any more)". */
const GONE_CODES = new Set(["ENOENT", "ENODEV", "ESRCH", "ENOTDIR"]);

/** True when `err` says the file (or the process or cgroup behind it) does not exist. */
export function isGone(err: unknown): boolean {
  return GONE_CODES.has((err as NodeJS.ErrnoException | undefined)?.code ?? "");
}

/** Options of {@link PositionalFile}. */
export interface PositionalFileOptions {
  /**
   * On a read that says the object behind an open handle is gone (ENODEV for a removed cgroup,
   * ESRCH for an exited process), close and open the path again once: right for a cgroup file
   * (the cgroup may be made again under the same path), wrong for `/proc/<pid>/*` (the PID
   * may now be another process's). Default true.
   */
  reopen?: boolean;
  /** Initial buffer size; it doubles while a read fills it. Default 256. */
  initialBufferBytes?: number;
}

/**
 * A /proc or cgroupfs file kept open and read again and again with positional reads at offset 0
 * into one reused buffer: one pread per sample, no open/close, no new buffer.
 *
 * The reads are synchronous on purpose: these files are made by the kernel from memory when read
 * (they never wait for a disk), and a synchronous pread costs a few microseconds where an
 * asynchronous one also costs a round trip through libuv's thread pool, which is most of the work
 * when hundreds of files are read each second.
 */
export class PositionalFile {
  readonly path: string;
  readonly #reopen: boolean;
  #fd: number | undefined;
  #buf: Buffer;

  constructor(path: string, options: PositionalFileOptions = {}) {
    this.path = path;
    this.#reopen = options.reopen ?? true;
    this.#buf = Buffer.allocUnsafe(options.initialBufferBytes ?? 256);
  }

  /** Whether a handle is open now. */
  get isOpen(): boolean {
    return this.#fd !== undefined;
  }

  /**
   * The file's whole text now, or undefined when it does not exist or what it describes is gone
   * (after one reopen, when allowed). Other errors (EACCES, EIO...) are thrown.
   */
  read(): string | undefined {
    for (let attempt = 0; attempt < 2; attempt++) {
      const fresh = this.#fd === undefined;
      if (fresh && !this.#open()) return undefined;
      try {
        return this.#readAll(this.#fd!);
      } catch (err) {
        if (!isGone(err)) throw err;
        this.close();
        if (fresh || !this.#reopen) return undefined;
      }
    }
    return undefined;
  }

  #open(): boolean {
    try {
      this.#fd = openSync(this.path, "r");
      return true;
    } catch (err) {
      if (isGone(err)) return false;
      throw err;
    }
  }

  #readAll(fd: number): string {
    for (;;) {
      const n = readSync(fd, this.#buf, 0, this.#buf.length, 0);
      // A read that fills the buffer may have been cut short: read it all again, bigger.
      if (n < this.#buf.length) return this.#buf.toString("utf8", 0, n);
      this.#buf = Buffer.allocUnsafe(this.#buf.length * 2);
    }
  }

  /** Closes the handle (the next read opens the path again). Idempotent. */
  close(): void {
    if (this.#fd === undefined) return;
    const fd = this.#fd;
    this.#fd = undefined;
    try {
      closeSync(fd);
    } catch {
      // A close error leaves nothing to do: the descriptor is released either way.
    }
  }
}
