/**
 * The anchor process of a task, watched by PID and start ticks: a PID alone is reused, PID plus
 * field 22 of /proc/<pid>/stat is not.
 */
import { readFileSync } from "node:fs";
import { ProcfsParseError } from "./errors.js";
import { PositionalFile, isGone } from "./positional-file.js";
import { parseProcStat } from "./stat.js";
import { pageSizeBytes, parseProcStatm } from "./statm.js";

/** Why an anchor counts as gone: no process (or a zombie), or another process has the PID. */
export type AnchorGoneReason = "gone" | "pid-reused";

/** What one look at the anchor found. */
export type AnchorReading =
  | {
      alive: true;
      /** Its resident set (statm's resident pages × page size), in bytes. */
      rssBytes: number;
    }
  | {
      alive: false;
      reason: AnchorGoneReason;
      /** The start ticks of the process that has the PID now (pid-reused only). */
      foundStartTicks?: number;
    };

type Gone = Extract<AnchorReading, { alive: false }>;

/**
 * Reads `/proc/<pid>/statm` of an anchor through a handle kept open (statm costs a fraction of
 * `status`, which the kernel builds from dozens of fields). Such a handle stays bound to the
 * process it was opened for: once that process is gone, reads fail (ESRCH) even if the PID is
 * reused. So the start ticks are checked when the handle is opened, and again only when a read
 * fails or shows no memory, to tell "gone" from "pid-reused". A zombie (state Z or X) counts as
 * gone: it has exited and only waits for its parent. Gone is final: later reads return the same
 * answer without I/O.
 */
export class AnchorReader {
  readonly pid: number;
  /** Field 22 of the expected process's stat; null checks nothing (any process with the PID). */
  readonly expectedStartTicks: number | null;
  readonly #procRoot: string;
  readonly #pageSizeBytes: number;
  readonly #statm: PositionalFile;
  #verified = false;
  #gone: Gone | undefined;

  constructor(
    pid: number,
    expectedStartTicks: number | null,
    procRoot = "/proc",
    pageSize = pageSizeBytes(),
  ) {
    this.pid = pid;
    this.expectedStartTicks = expectedStartTicks;
    this.#procRoot = procRoot;
    this.#pageSizeBytes = pageSize;
    this.#statm = new PositionalFile(`${procRoot}/${pid}/statm`, { reopen: false, initialBufferBytes: 128 });
  }

  /** Whether the anchor has been found gone (final). */
  get gone(): Gone | undefined {
    return this.#gone;
  }

  /** Looks at the anchor now. */
  read(): AnchorReading {
    if (this.#gone) return this.#gone;
    // At most: a stale handle found, reopened, verified, read again.
    for (let attempt = 0; attempt < 3; attempt++) {
      const text = this.#statm.read();
      if (text === undefined) {
        const found = this.#check();
        if (found) return this.#end(found);
        this.#statm.close(); // our handle was of an older process; the expected one is there
        this.#verified = false;
        continue;
      }
      const statm = parseProcStatm(text, this.#statm.path);
      if (!this.#verified || statm.sizePages === 0) {
        // Checked after the handle was opened: if the handle is of an earlier process with this
        // PID, that one has exited and the next read fails, which leads back here. No memory at
        // all: a zombie (or a kernel thread), which the check tells.
        const found = this.#check();
        if (found) return this.#end(found);
        if (!this.#verified) {
          this.#verified = true;
          continue;
        }
      }
      return { alive: true, rssBytes: statm.residentPages * this.#pageSizeBytes };
    }
    return this.#end({ alive: false, reason: "gone" });
  }

  /** Reads /proc/<pid>/stat afresh: undefined when the expected process is there and alive. */
  #check(): Gone | undefined {
    const file = `${this.#procRoot}/${this.pid}/stat`;
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      if (isGone(err)) return { alive: false, reason: "gone" };
      throw err;
    }
    const stat = parseProcStat(text);
    if (stat.pid !== this.pid) throw new ProcfsParseError(file, `holds PID ${stat.pid}`, text);
    if (this.expectedStartTicks !== null && stat.startTimeTicks !== this.expectedStartTicks) {
      return { alive: false, reason: "pid-reused", foundStartTicks: stat.startTimeTicks };
    }
    if (stat.state === "Z" || stat.state === "X") return { alive: false, reason: "gone" };
    return undefined;
  }

  #end(gone: Gone): Gone {
    this.#gone = gone;
    this.#statm.close();
    return gone;
  }

  /** Releases the handle. Idempotent. */
  close(): void {
    this.#statm.close();
  }
}
