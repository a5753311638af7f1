import { readFileSync } from "node:fs";
import { endianness } from "node:os";
import { ProcfsParseError } from "./errors.js";

/** `/proc/<pid>/statm` (see proc(5)): memory in pages. Far cheaper to read than `status`. */
export interface ProcStatm {
  sizePages: number;
  residentPages: number;
  sharedPages: number;
  textPages: number;
  dataPages: number;
}

/** Parses the text of `/proc/<pid>/statm`. A process without memory (a zombie) has all zeros. */
export function parseProcStatm(text: string, file = "/proc/<pid>/statm"): ProcStatm {
  const f = text.trim().split(" ").map(Number);
  if (f.length < 7 || !f.every((n) => Number.isSafeInteger(n) && n >= 0)) {
    throw new ProcfsParseError(file, "not 7 page counts", text);
  }
  return { sizePages: f[0]!, residentPages: f[1]!, sharedPages: f[2]!, textPages: f[3]!, dataPages: f[5]! };
}

const AT_PAGESZ = 6;
let pageSize: number | undefined;

/**
 * The kernel's page size in bytes (4 KiB on x86-64; 4, 16 or 64 KiB on arm64), from this
 * process's auxiliary vector (AT_PAGESZ in /proc/self/auxv); 4096 if that cannot be read.
 */
export function pageSizeBytes(): number {
  if (pageSize !== undefined) return pageSize;
  pageSize = 4096;
  try {
    const auxv = readFileSync("/proc/self/auxv");
    const word = process.arch === "arm" || process.arch === "ia32" ? 4 : 8;
    const le = endianness() === "LE";
    const at = (off: number): number =>
      word === 8
        ? Number(le ? auxv.readBigUInt64LE(off) : auxv.readBigUInt64BE(off))
        : le
          ? auxv.readUInt32LE(off)
          : auxv.readUInt32BE(off);
    for (let off = 0; off + 2 * word <= auxv.length; off += 2 * word) {
      if (at(off) === AT_PAGESZ) {
        pageSize = at(off + word);
        break;
      }
    }
  } catch {
    // No /proc/self/auxv: keep the default.
  }
  return pageSize;
}
