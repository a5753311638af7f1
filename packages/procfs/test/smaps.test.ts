import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { ProcfsParseError, guestRamResidentBytes, readGuestRamResidentBytes } from "@eve-tasks/procfs";

const MiB = 2 ** 20;

// Shaped like a qemu's smaps: a 256 MiB anonymous block (guest RAM), the 1 GiB TCG code buffer,
// a library, and a named mapping of the guest's size that is not plain guest RAM.
const SMAPS = `55d0c0000000-55d0c0021000 r--p 00000000 08:01 1234                       /usr/bin/qemu-system-x86_64
Size:                132 kB
Rss:                 132 kB
7f1e1fe00000-7f1e2fe00000 rw-p 00000000 00:00 0 
Size:             262144 kB
Rss:              122880 kB
Pss:              122880 kB
7f1e30000000-7f1e6ffff000 rwxp 00000000 00:00 0 
Size:            1048572 kB
Rss:               47104 kB
7f1e80000000-7f1e90000000 rw-s 00000000 00:01 77                         /memfd:ram (deleted)
Size:             262144 kB
Rss:                4096 kB
`;

describe("guest RAM resident in qemu (smaps)", () => {
  it("sums the Rss of the anonymous mappings of exactly the guest's size", () => {
    expect(guestRamResidentBytes(SMAPS, 256 * MiB)).toBe(120 * MiB);
    expect(guestRamResidentBytes(SMAPS, 128 * MiB)).toBeNull();
  });

  it("refuses an Rss line it does not understand", () => {
    const bad = SMAPS.replace("Rss:              122880 kB", "Rss:              lots");
    expect(() => guestRamResidentBytes(bad, 256 * MiB)).toThrow(ProcfsParseError);
  });

  it("reads a live process, and gives null for one that is gone", async () => {
    // A process with no mapping of that size: null, not an error.
    const child = spawn("sleep", ["30"], { stdio: "ignore" });
    try {
      await new Promise((r) => child.once("spawn", r));
      expect(readGuestRamResidentBytes(child.pid!, 3 * 1024 * MiB + 4096)).toBeNull();
    } finally {
      child.kill("SIGKILL");
    }
    expect(readGuestRamResidentBytes(2 ** 22 + 7, 256 * MiB)).toBeNull();
  });
});
