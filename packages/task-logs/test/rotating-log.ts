/**
 * A log written and rotated the way the task logger (packages/executor/native/eve-task-logger.c)
 * does it: append to `console.log`; on rotation rename `console.log.<n-2>` → `.<n-1>` … `console.log`
 * → `.1` (the oldest is replaced) and start a new `console.log` (with one file kept, the old one is
 * removed first: a new file, never the old one truncated). For tests of readers; the e2e tests use
 * the real logger.
 */
import { appendFileSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export class RotatingLog {
  readonly path: string;
  /** Everything ever written, in order. */
  written = "";
  /** How much of `written` (from its start) rotation has removed. */
  discarded = 0;

  constructor(
    readonly dir: string,
    readonly files: number,
  ) {
    mkdirSync(dir, { recursive: true });
    this.path = join(dir, "console.log");
  }

  write(text: string): void {
    appendFileSync(this.path, text);
    this.written += text;
  }

  rotate(): void {
    const oldest = this.files === 1 ? this.path : `${this.path}.${this.files - 1}`;
    try {
      this.discarded += readFileSync(oldest).length;
    } catch {
      // not there yet
    }
    if (this.files === 1) rmSync(this.path, { force: true });
    for (let i = this.files - 1; i >= 1; i--) {
      const from = i - 1 === 0 ? this.path : `${this.path}.${i - 1}`;
      try {
        renameSync(from, `${this.path}.${i}`);
      } catch {
        // not there yet
      }
    }
    writeFileSync(this.path, "");
  }
}
