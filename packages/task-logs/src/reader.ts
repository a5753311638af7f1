/**
 * Reading a task's log files: listing them (a snapshot of names, inodes, sizes and times),
 * finding where the last N lines start, and reading one planned chunk. Files are opened without
 * following symlinks and checked to be the inode the plan names, so a rotation between the
 * listing and the read is noticed (and the read planned again), never misread.
 */
import { constants } from "node:fs";
import type { BigIntStats } from "node:fs";
import { lstat, open, readdir } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { LogCursor } from "@eve-tasks/schemas";
import { cursorPosition, endOf, laterOf, logFileNumber, planRead, sincePosition } from "./plan.js";
import type { LogFile, LogPosition, ReadPlan } from "./plan.js";

/** How far back a tail looks for its lines: a tail of more than this many bytes starts here. */
export const TAIL_SCAN_MAX_BYTES = 64 * 2 ** 20;

const SCAN_BLOCK_BYTES = 64 * 1024;

/**
 * How many numbers past the highest the directory listed a scan also looks at: rotations during
 * the scan move files up by one number each.
 */
const SCAN_PAST_HIGHEST = 2;

/**
 * The files of the log at `logPath` (`…/console.log`), oldest first; undefined when its directory
 * does not exist (the app never ran on this node, or was deleted). Only regular files count.
 *
 * A rotation renames files one number up (`console.log.1` → `.2`, then `console.log` → `.1`) and
 * may run during the listing. The files are therefore looked at newest name first
 * (`console.log`, `.1`, `.2`, …): a file that moves while the scan runs moves ahead of it and is
 * seen again, never missed (a reader's file would otherwise look rotated away). A file seen twice
 * keeps its later (older) place.
 */
export async function listLogFiles(logPath: string): Promise<LogFile[] | undefined> {
  const dir = dirname(logPath);
  const base = basename(logPath);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const highest = Math.max(0, ...names.map((name) => logFileNumber(base, name) ?? 0));
  const seen = new Map<string, LogFile>();
  for (let n = 0; n <= highest + SCAN_PAST_HIGHEST; n++) {
    const name = n === 0 ? base : `${base}.${n}`;
    try {
      const st = await lstat(join(dir, name), { bigint: true });
      if (!st.isFile()) continue;
      const file = { name, id: fileId(st), sizeBytes: Number(st.size), mtimeMs: Number(st.mtimeMs) };
      seen.delete(file.id);
      seen.set(file.id, file);
    } catch (err) {
      // Not there (yet, or any more): a rotation moves it to a number still ahead of the scan.
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
  return [...seen.values()].reverse();
}

/** A file's identity: inode and birth time, which a rename keeps and a new file never has. */
function fileId(st: BigIntStats): string {
  return `${st.ino}.${st.birthtimeNs}`;
}

/** Opens `file` of the log's directory, if it still is that file; undefined otherwise. */
async function openExact(dir: string, file: LogFile): Promise<FileHandle | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(join(dir, file.name), constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ELOOP") return undefined;
    throw err;
  }
  const st = await fh.stat({ bigint: true });
  if (fileId(st) !== file.id) {
    await fh.close();
    return undefined;
  }
  return fh;
}

/**
 * Where the last `lines` lines of the log start (a final newline ends the last line, it does not
 * start another), looking back at most {@link TAIL_SCAN_MAX_BYTES}. 0 lines: the end. Undefined
 * when a file changed under the scan (plan again).
 */
export async function tailPosition(
  logPath: string,
  files: readonly LogFile[],
  lines: number,
  maxScanBytes = TAIL_SCAN_MAX_BYTES,
): Promise<LogPosition | undefined> {
  const end = endOf(files);
  if (lines === 0 || files.length === 0) return end;
  const dir = dirname(logPath);
  let newlines = 0;
  let scanned = 0;
  let skipFinal = true;
  const block = Buffer.alloc(SCAN_BLOCK_BYTES);
  for (let index = files.length - 1; index >= 0; index--) {
    const file = files[index]!;
    if (file.sizeBytes === 0) continue;
    const fh = await openExact(dir, file);
    if (!fh) return undefined;
    try {
      let pos = file.sizeBytes;
      while (pos > 0) {
        if (scanned >= maxScanBytes) return { index, offset: pos };
        const n = Math.min(SCAN_BLOCK_BYTES, pos, maxScanBytes - scanned);
        pos -= n;
        const { bytesRead } = await fh.read(block, 0, n, pos);
        if (bytesRead !== n) return undefined;
        scanned += n;
        for (let i = n - 1; i >= 0; i--) {
          if (block[i] !== 0x0a) {
            skipFinal = false;
            continue;
          }
          if (skipFinal) {
            skipFinal = false;
            continue;
          }
          if (++newlines === lines) return { index, offset: pos + i + 1 };
        }
      }
    } finally {
      await fh.close();
    }
  }
  return { index: 0, offset: 0 };
}

/** Where to start, and how much at most. */
export interface ReadLogOptions {
  /** Continue where a previous read ended. */
  readonly cursor?: LogCursor | undefined;
  /** Without a cursor: start at the last N lines… */
  readonly tailLines?: number | undefined;
  /** …and/or at the first file written since this time (the later of the two). */
  readonly sinceMs?: number | undefined;
  /** The most bytes to return. */
  readonly maxBytes: number;
}

/** One read. */
export interface LogChunk {
  readonly data: Buffer;
  /** Where the next read starts; null while the log has no file. */
  readonly cursor: LogCursor | null;
  /** More is there already. */
  readonly more: boolean;
  /** Output that was rotated away before it could be read, or null. */
  readonly gap: string | null;
}

/** Tries before a read gives up on a log that keeps rotating under it. */
const ATTEMPTS = 5;

/**
 * Reads the next chunk of the log at `logPath`. Undefined when the log's directory does not exist.
 *
 * @throws {Error} when the log rotates under every attempt (a task writing faster than it can be
 *   read several times over).
 */
export async function readLogChunk(logPath: string, o: ReadLogOptions): Promise<LogChunk | undefined> {
  const dir = dirname(logPath);
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const files = await listLogFiles(logPath);
    if (files === undefined) return undefined;
    let plan: ReadPlan;
    if (o.cursor) {
      const { position, gap } = cursorPosition(files, o.cursor);
      plan = planRead(files, position, o.maxBytes, gap);
    } else {
      let start: LogPosition = { index: 0, offset: 0 };
      if (o.sinceMs !== undefined) start = sincePosition(files, o.sinceMs);
      if (o.tailLines !== undefined) {
        const tail = await tailPosition(logPath, files, o.tailLines);
        if (tail === undefined) continue;
        start = o.sinceMs !== undefined ? laterOf(start, tail) : tail;
      }
      plan = planRead(files, start, o.maxBytes);
    }
    if (plan.index === undefined || plan.length === 0) {
      return { data: Buffer.alloc(0), cursor: plan.next, more: plan.more, gap: plan.gap };
    }
    const fh = await openExact(dir, files[plan.index]!);
    if (!fh) continue;
    try {
      const data = Buffer.alloc(plan.length);
      const { bytesRead } = await fh.read(data, 0, plan.length, plan.offset);
      // A file never shrinks while it is the log's: fewer bytes means it was replaced; read again.
      if (bytesRead !== plan.length) continue;
      return { data, cursor: plan.next, more: plan.more, gap: plan.gap };
    } finally {
      await fh.close();
    }
  }
  throw new Error(`the log ${logPath} kept rotating while being read (${ATTEMPTS} attempts)`);
}

/**
 * Where the log at `logPath` ends now, as a cursor: a reader starting there sees only what is
 * written after this call, across rotations. Null while the log has no file (or no directory):
 * then everything written later is new, and {@link readLogFrom} with null reads it from the start.
 */
export async function logEndCursor(logPath: string): Promise<LogCursor | null> {
  return (await readLogChunk(logPath, { tailLines: 0, maxBytes: 0 }))?.cursor ?? null;
}

/** What {@link readLogFrom} read. */
export interface LogSpan {
  /** The output from the cursor on, file after file (at most `maxBytes`). */
  readonly data: Buffer;
  /** Where the next read starts; null while the log has no file. */
  readonly cursor: LogCursor | null;
  /** Output between the cursor and `data` that was rotated away before it could be read, or null. */
  readonly gap: string | null;
}

/**
 * Reads the log at `logPath` from `cursor` (null: from its oldest file's start) until caught up
 * or `maxBytes` were read, across as many files as that takes: one {@link readLogChunk} reads
 * within one file. Empty when the log's directory does not exist.
 */
export async function readLogFrom(
  logPath: string,
  cursor: LogCursor | null,
  maxBytes: number,
): Promise<LogSpan> {
  const parts: Buffer[] = [];
  let bytes = 0;
  let next = cursor;
  let gap: string | null = null;
  while (bytes < maxBytes) {
    const chunk = await readLogChunk(logPath, { cursor: next ?? undefined, maxBytes: maxBytes - bytes });
    if (chunk === undefined) break;
    parts.push(chunk.data);
    bytes += chunk.data.length;
    gap ??= chunk.gap;
    next = chunk.cursor;
    if (!chunk.more) break;
  }
  return { data: Buffer.concat(parts), cursor: next, gap };
}
