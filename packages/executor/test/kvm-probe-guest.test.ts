// The KVM probe guest: its sector, its qemu arguments, and that it really boots and prints its
// marker under TCG (the accelerator that works everywhere; nested KVM may hang).
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { KVM_PROBE_MARKER, kvmProbeDisk, probeQemuArgs } from "@eve-tasks/executor";
import { QemuProcesses } from "../../../test/harness/qemu-process.js";

const procs = new QemuProcesses();
afterEach(() => procs.cleanup());

describe("kvmProbeDisk", () => {
  it("is one 512-byte sector: code, the marker line, zeros, the boot signature", () => {
    const disk = kvmProbeDisk();
    expect(disk.length).toBe(512);
    expect([disk[510], disk[511]]).toEqual([0x55, 0xaa]);
    expect(disk[0]).toBe(0xfa); // cli
    // mov si, imm16 points at the message, loaded at 0x7c00.
    expect(disk[6]).toBe(0xbe);
    const msgAt = disk.readUInt16LE(7) - 0x7c00;
    expect(disk.subarray(msgAt, msgAt + KVM_PROBE_MARKER.length + 3).toString("latin1")).toBe(
      `${KVM_PROBE_MARKER}\r\n\0`,
    );
    expect(disk.subarray(msgAt + KVM_PROBE_MARKER.length + 3, 510).every((b) => b === 0)).toBe(true);
    // mov dx, 0x3f8
    expect([disk[9], disk.readUInt16LE(10)]).toEqual([0xba, 0x3f8]);
  });

  it("returns a fresh copy each time", () => {
    const a = kvmProbeDisk();
    a[0] = 0;
    expect(kvmProbeDisk()[0]).toBe(0xfa);
  });
});

describe("probeQemuArgs", () => {
  it("boots the disk read-only with COM1 on stdout and no default devices", () => {
    const args = probeQemuArgs({ accel: "kvm", diskPath: "/eve/probe/probe.img" });
    expect(args.slice(0, 2)).toEqual(["-accel", "kvm"]);
    expect(args.join(" ")).toContain("-nodefaults");
    expect(args.join(" ")).toContain("-serial stdio");
    expect(args.join(" ")).toContain("-display none");
    expect(args[args.indexOf("-drive") + 1]).toBe(
      "file=/eve/probe/probe.img,format=raw,if=floppy,readonly=on",
    );
  });

  it("doubles commas in the disk path (qemu's option syntax)", () => {
    const args = probeQemuArgs({ accel: "tcg", diskPath: "/a,b/p.img" });
    expect(args[args.indexOf("-drive") + 1]).toMatch(/^file=\/a,,b\/p\.img,format=raw/);
  });
});

describe("the probe guest under TCG", () => {
  it("prints exactly the marker line on qemu's stdout", async () => {
    const dir = await procs.tempDir();
    const diskPath = join(dir, "probe,disk.img");
    await writeFile(diskPath, kvmProbeDisk());
    const started = Date.now();
    const q = procs.start(probeQemuArgs({ accel: "tcg", diskPath }));
    const deadline = started + 10_000;
    let lines: string[] = [];
    while (Date.now() < deadline) {
      lines = q.stdout().split("\r\n");
      if (lines.length > 1 || q.child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const elapsed = Date.now() - started;
    expect(q.child.exitCode, `qemu exited: ${q.stderr()}`).toBeNull();
    expect(lines[0], `stdout ${JSON.stringify(q.stdout())}, stderr ${q.stderr()}`).toBe(KVM_PROBE_MARKER);
    expect(elapsed).toBeLessThan(10_000);
    // Then it halts: nothing more comes.
    await new Promise((r) => setTimeout(r, 200));
    expect(q.stdout()).toBe(`${KVM_PROBE_MARKER}\r\n`);
    expect(q.child.exitCode).toBeNull();
  });
});
