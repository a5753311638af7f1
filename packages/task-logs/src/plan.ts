/**
 * Where to read next in a task's log, decided from a snapshot of its files (pure: no I/O).
 *
 * A task's log is `console.log` plus the rotated `console.log.1` … `console.log.<n>` (higher is
 * older); read oldest first they are the tail of the task's output. Rotation renames files,
 * which keeps their identity (inode and birth time: an inode alone is reused at once by the next
 * file created): a position is (file, offset), and it stays valid until its file is rotated out
 * of existence, when the reader is told of the gap and continues at the oldest file still there.
 */
import type { LogCursor } from "@eve-tasks/schemas";

/** One file of a log as stat saw it. */
export interface LogFile {
  /** Its name, e.g. `console.log.2`. */
  readonly name: string;
  /** Its identity: `<inode>.<birth time in ns>` (bigint stat; birth time 0 where the filesystem has none). */
  readonly id: string;
  readonly sizeBytes: number;
  readonly mtimeMs: number;
}

/** A position in a snapshot: a file's index (oldest first) and an offset in it. */
export interface LogPosition {
  readonly index: number;
  readonly offset: number;
}

/** What to read now. */
export interface ReadPlan {
  /** The file to read from (an index into the snapshot), or undefined when there is nothing to read. */
  readonly index: number | undefined;
  readonly offset: number;
  /** Bytes to read (0: caught up). */
  readonly length: number;
  /** Where the next read starts, or null while the log has no file. */
  readonly next: LogCursor | null;
  /** Whether more is there after this read already (ask again at once). */
  readonly more: boolean;
  /** Why output between the cursor and this read is missing, or null. */
  readonly gap: string | null;
}

/**
 * The number of `name` among the files of log `base`: 0 for `base` itself, n for `base.<n>`;
 * undefined for any other name.
 */
export function logFileNumber(base: string, name: string): number | undefined {
  if (name === base) return 0;
  if (!name.startsWith(`${base}.`)) return undefined;
  const suffix = name.slice(base.length + 1);
  return /^[1-9]\d{0,5}$/.test(suffix) ? Number(suffix) : undefined;
}

/**
 * The files of a log, oldest first, from directory entries: `console.log.<n>` by descending n,
 * then `console.log`. Other names are not the log's.
 */
export function orderLogFiles<T extends { readonly name: string }>(base: string, entries: readonly T[]): T[] {
  return entries
    .map((entry) => ({ n: logFileNumber(base, entry.name), entry }))
    .filter((x): x is { n: number; entry: T } => x.n !== undefined)
    .sort((a, b) => b.n - a.n)
    .map((x) => x.entry);
}

/** The position right after the last byte of the log. */
export function endOf(files: readonly LogFile[]): LogPosition {
  const last = files.length - 1;
  return { index: last, offset: files[last]?.sizeBytes ?? 0 };
}

/**
 * The start of the first file written at or after `sinceMs` (whatever it holds was written no
 * earlier than the previous file's last write): the log holds no timestamps, so `since` selects
 * whole files and the first may begin before it. None: the end (nothing was written since).
 */
export function sincePosition(files: readonly LogFile[], sinceMs: number): LogPosition {
  const index = files.findIndex((f) => f.mtimeMs >= sinceMs);
  return index < 0 ? endOf(files) : { index, offset: 0 };
}

/** The later of two positions. */
export function laterOf(a: LogPosition, b: LogPosition): LogPosition {
  return a.index > b.index || (a.index === b.index && a.offset >= b.offset) ? a : b;
}

/** Where a cursor points in a snapshot, or the gap that replaced it. */
export function cursorPosition(
  files: readonly LogFile[],
  cursor: LogCursor,
): { position: LogPosition; gap: string | null } {
  const index = files.findIndex((f) => f.id === cursor.file);
  if (index < 0) {
    return {
      position: { index: 0, offset: 0 },
      gap:
        files.length === 0
          ? "the log was removed"
          : "output was lost here: the log rotated past this reader (its file was removed before it was read)",
    };
  }
  const file = files[index]!;
  if (cursor.offset > file.sizeBytes) {
    return {
      position: { index, offset: 0 },
      gap: `the log file shrank below this reader's position (${cursor.offset} > ${file.sizeBytes} bytes)`,
    };
  }
  return { position: { index, offset: cursor.offset }, gap: null };
}

/**
 * What to read from `start` (at most `maxBytes`, within one file): a position at the end of a
 * rotated file moves on to the start of the next (rotated files no longer grow).
 */
export function planRead(
  files: readonly LogFile[],
  start: LogPosition,
  maxBytes: number,
  gap: string | null = null,
): ReadPlan {
  if (files.length === 0) return { index: undefined, offset: 0, length: 0, next: null, more: false, gap };
  let { index, offset } = start;
  while (index < files.length - 1 && offset >= files[index]!.sizeBytes) {
    index++;
    offset = 0;
  }
  const file = files[index]!;
  const length = Math.max(0, Math.min(maxBytes, file.sizeBytes - offset));
  const end = offset + length;
  const more = end < file.sizeBytes || files.slice(index + 1).some((f) => f.sizeBytes > 0);
  return { index, offset, length, next: { file: file.id, offset: end }, more, gap };
}
