// Finding and ending shim daemons: argv parsing, a /proc scan over a fixture tree, and real
// processes that look like shims (one exits on SIGTERM, one ignores it).
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { endShim, findShimDaemons, shimDaemonOf } from "@eve-tasks/executor";
import { fakeShim } from "./fake-shim.js";

const DAEMON = ["/usr/bin/containerd-shim-runc-v2", "-namespace", "ns", "-id", "app", "-address", "/c.sock"];

describe("shimDaemonOf", () => {
  it("reads a shim daemon's namespace, id and containerd address from its argv", () => {
    expect(shimDaemonOf(7, DAEMON)).toEqual({ pid: 7, namespace: "ns", id: "app", address: "/c.sock" });
    expect(
      shimDaemonOf(7, ["containerd-shim-runc-v2", "--namespace=ns", "-id=app", "--address", "/c.sock"]),
    ).toEqual({ pid: 7, namespace: "ns", id: "app", address: "/c.sock" });
  });

  it("is undefined for other programs, the start and delete commands, and a shim missing a flag", () => {
    expect(
      shimDaemonOf(7, ["/usr/bin/containerd", "-namespace", "ns", "-id", "app", "-address", "/c"]),
    ).toBeUndefined();
    expect(shimDaemonOf(7, [...DAEMON, "-publish-binary", "containerd", "start"])).toBeUndefined();
    expect(shimDaemonOf(7, [...DAEMON, "delete"])).toBeUndefined();
    expect(shimDaemonOf(7, DAEMON.slice(0, 5))).toBeUndefined();
    expect(shimDaemonOf(7, [])).toBeUndefined();
  });
});

describe("findShimDaemons", () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it("lists the daemons of one containerd and namespace only", async () => {
    dir = await mkdtemp(join(tmpdir(), "shims-"));
    const proc = async (pid: number, comm: string, argv: string[]) => {
      await mkdir(join(dir!, String(pid)));
      await writeFile(join(dir!, String(pid), "comm"), `${comm}\n`);
      await writeFile(join(dir!, String(pid), "cmdline"), `${argv.join("\0")}\0`);
    };
    await proc(10, "containerd-shim", DAEMON);
    await proc(11, "containerd-shim", [...DAEMON.slice(0, 4), "other", "-address", "/c.sock"]);
    await proc(12, "containerd-shim", [...DAEMON, "start"]);
    await proc(13, "containerd-shim", [...DAEMON.slice(0, 2), "other-ns", ...DAEMON.slice(3)]);
    await proc(14, "containerd-shim", [...DAEMON.slice(0, 6), "/another.sock"]);
    await proc(15, "bash", ["bash", ...DAEMON.slice(1)]);
    await writeFile(join(dir, "self"), "");
    const found = findShimDaemons("/c.sock", "ns", dir).sort((a, b) => a.pid - b.pid);
    expect(found.map((s) => [s.pid, s.id])).toEqual([
      [10, "app"],
      [11, "other"],
    ]);
  });
});

describe("endShim", () => {
  it("ends a shim with SIGTERM, or SIGKILL when it does not exit within the grace", async () => {
    for (const [ignoreTerm, signal] of [
      [false, "SIGTERM"],
      [true, "SIGKILL"],
    ] as const) {
      const id = `fake-${signal}`;
      const fake = fakeShim({ id, namespace: "ns", address: "/c.sock", ignoreTerm });
      try {
        const shim = await fake.ready();
        expect(shim).toMatchObject({ id, namespace: "ns", address: "/c.sock" });
        expect(await endShim(shim, { graceMs: 300 })).toEqual({ pid: shim.pid, id, signal });
        await fake.exited;
        // Already gone: nothing to end.
        expect(await endShim(shim, { graceMs: 300 })).toBeUndefined();
      } finally {
        fake.kill();
      }
    }
  });
});
