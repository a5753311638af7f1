/**
 * How much of a VM's guest RAM is resident in its qemu: the Rss of the anonymous mapping(s) of
 * exactly the guest's size in `/proc/<pid>/smaps` (qemu maps guest RAM as one anonymous block;
 * a guest touches it lazily, so a big guest that has booted holds only part of it).
 */
import { readFileSync } from "node:fs";
import { ProcfsParseError } from "./errors.js";

const HEADER = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ (\d+)(?:\s+(.*))?$/;

/**
 * The resident bytes of the anonymous mappings of exactly `guestBytes` in smaps text, or null
 * when there is none (not a qemu, or guest RAM backed otherwise).
 *
 * @throws {ProcfsParseError} for an Rss line that is not `Rss: <n> kB`.
 */
export function guestRamResidentBytes(smaps: string, guestBytes: number): number | null {
  let inGuestRam = false;
  let total: number | null = null;
  for (const line of smaps.split("\n")) {
    const header = HEADER.exec(line);
    if (header) {
      const size = parseInt(header[2]!, 16) - parseInt(header[1]!, 16);
      // Anonymous: inode 0 and no path (a named one, e.g. a memfd, is not plain guest RAM).
      inGuestRam = size === guestBytes && header[3] === "0" && (header[4] ?? "") === "";
      continue;
    }
    if (inGuestRam && line.startsWith("Rss:")) {
      const m = /^Rss:\s+(\d+) kB$/.exec(line);
      if (!m) throw new ProcfsParseError("/proc/<pid>/smaps", "expected `Rss: <n> kB`", line);
      total = (total ?? 0) + Number(m[1]) * 1024;
      inGuestRam = false;
    }
  }
  return total;
}

/** {@link guestRamResidentBytes} of process `pid`; null when it is gone or has no such mapping. */
export function readGuestRamResidentBytes(pid: number, guestBytes: number): number | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps`, "utf8");
  } catch {
    return null;
  }
  return guestRamResidentBytes(text, guestBytes);
}
