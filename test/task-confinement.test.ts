// A task as its own attacker: from inside a running task (real spec-builder and task-executor,
// private nats-server and containerd), a script tries what the README says a task cannot do, and
// the same probes run on the host first, so each shows it would have noticed the thing it looks
// for. The task tries to reach the node's NATS and containerd, to get past its capabilities, to
// mount, to open a device the node did not give it, to read a masked /proc file, to write
// /proc/sys, and looks at what its pid and network namespaces show; a task of 1 vCPU runs two busy
// loops against its CPU quota. Nothing here writes on the host.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_CAPABILITIES } from "@eve-tasks/oci-spec";
import { CgroupReader, cgroupDirsFor, detectCgroupLayout } from "@eve-tasks/procfs";
import { CONTAINERD_NAMESPACE } from "@eve-tasks/schemas";
import type { AppInstanceConfigInput } from "@eve-tasks/schemas";
import { makeRootfs, startNode, uuidMaker, waitFor } from "./harness/index.js";
import type { TestNode } from "./harness/index.js";

const run = promisify(execFile);
const newUuid = uuidMaker("c0f10e00");
const CAP_SYS_ADMIN = 21;
const CAP_SYS_RAWIO = 17;
const CAP_NET_ADMIN = 12;

/**
 * The probes run on the host and in the task, one `name=value` line each, for `/bin/busybox sh`.
 * `$1` is the NATS port, `$2` the path of containerd's socket on the host.
 */
const PROBES = [
  `b=/bin/busybox`,
  // NATS greets every client with INFO: any byte back means it was reached.
  `if $b printf 'PING\\r\\n' | $b nc -w 2 127.0.0.1 "$1" 2>/dev/null | $b grep -q INFO; then echo nats=reached; else echo nats=unreached; fi`,
  `if [ -e "$2" ]; then echo containerd=visible; else echo containerd=absent; fi`,
  `echo "capeff=$($b awk '/^CapEff/ {print $2}' /proc/self/status)"`,
  `echo "capbnd=$($b awk '/^CapBnd/ {print $2}' /proc/self/status)"`,
  `echo "nonewprivs=$($b awk '/^NoNewPrivs/ {print $2}' /proc/self/status)"`,
  // A masked path reads as empty (/proc/kcore does not exist on every kernel; timer_list does).
  `echo "timerlist=$($b head -c 16 /proc/timer_list 2>/dev/null | $b wc -c)"`,
  `echo "netdevs=$($b awk -F: 'NR>2 {gsub(/ /, "", $1); print $1}' /proc/net/dev | $b sort | $b tr '\\n' ,)"`,
];

/** Only in the task: these would change the host if run there. */
const TASK_ONLY_PROBES = [
  // Device nodes made anew in the task's /dev: /dev/null's (1:3) opens, so the node and its file
  // system are usable; /dev/kmsg's (1:11) is not among a task's devices and must not open.
  `if $b mknod /dev/null-probe c 1 3 2>/dev/null && $b mknod /dev/kmsg-probe c 1 11 2>/dev/null; then echo mknod=done; else echo mknod=failed; fi`,
  `if ( : < /dev/null-probe ) 2>/dev/null; then echo allowed=opened; else echo allowed=refused; fi`,
  `if ( : < /dev/kmsg-probe ) 2>/dev/null; then echo device=opened; else echo device=refused; fi`,
  `$b mkdir -p /out/m; if $b mount -t tmpfs none /out/m 2>/dev/null; then echo mount=done; $b umount /out/m; else echo mount=refused; fi`,
  `if (echo probe > /proc/sys/kernel/domainname) 2>/dev/null; then echo procsys=written; else echo procsys=refused; fi`,
  `echo "pid1=$($b tr '\\0' ' ' < /proc/1/cmdline | $b cut -c1-40)"`,
  `echo "pids=$($b ls /proc | $b grep -c '^[0-9]')"`,
];

function parse(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .trim()
      .split("\n")
      .filter((l) => l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

/** The bits set in a /proc/<pid>/status capability mask (hex). */
function capBits(hex: string): number[] {
  const mask = BigInt(`0x${hex}`);
  const bits: number[] = [];
  for (let i = 0; i < 64; i++) if ((mask >> BigInt(i)) & 1n) bits.push(i);
  return bits;
}

/** A native app of 1 vCPU whose root is the busybox volume, running `/bin/busybox sh -c <args>`. */
function busyboxApp(
  uuid: string,
  name: string,
  rootfs: string,
  shArgs: string[],
  volumes: { path: string; mountPoint: string; readOnly: boolean }[] = [],
): AppInstanceConfigInput {
  return {
    schemaVersion: 1,
    uuid,
    version: "1",
    displayName: name,
    virtualization: "NOHYPER",
    resources: { memoryMiB: 32, vcpus: 1 },
    root: { volume: { path: rootfs, readOnly: true } },
    volumes,
    process: { args: ["/bin/busybox", "sh", "-c", ...shArgs], cwd: "/", user: "0:0" },
  };
}

describe("a task, from inside", () => {
  let node: TestNode;
  let rootfs: string;
  let containerdSocket: string;
  const uuid = newUuid();

  beforeAll(async () => {
    node = await startNode({
      name: "confine",
      workers: ["spec-builder", "task-executor"],
      prepare: async ({ volumes }) => {
        rootfs = join(volumes, "busybox");
        const made = await makeRootfs(rootfs);
        if (made.source !== "busybox") throw new Error("this test needs Debian's busybox-static on the host");
        await mkdir(join(volumes, "out"));
        await mkdir(join(rootfs, "out")); // the mount point in the read-only root
      },
    });
    containerdSocket = node.containerdAddress.replace(/^unix:(\/\/)?/, "");
  }, 120_000);

  afterAll(async () => {
    await node?.stop();
  }, 120_000);

  it("the probes see, on the host, what they look for", async () => {
    const script = PROBES.join("\n");
    const { stdout } = await run(join(rootfs, "bin", "busybox"), [
      "sh",
      "-c",
      script.replaceAll("b=/bin/busybox", `b=${join(rootfs, "bin", "busybox")}`),
      "probe",
      String(node.nats.port),
      containerdSocket,
    ]);
    const host = parse(stdout);
    expect(host.nats).toBe("reached");
    expect(host.containerd).toBe("visible");
    expect(Number(host.timerlist)).toBe(16);
    expect(capBits(host.capeff ?? "0")).toContain(CAP_SYS_ADMIN);
    expect(host.netdevs?.split(",").filter(Boolean).length).toBeGreaterThan(1);
    // Root on the host opens /dev/kmsg (the same open as the task's, without a new node).
    expect(existsSync("/dev/kmsg")).toBe(true);
    const kmsg = await run(join(rootfs, "bin", "busybox"), ["sh", "-c", "( : < /dev/kmsg ) && echo opened"]);
    expect(kmsg.stdout.trim()).toBe("opened");
  });

  it("cannot reach the node's NATS or containerd, get past its capabilities, mount, open a device, or see the host", async () => {
    const out = join(node.volumes, "out", "probes.txt");
    const script = [...PROBES, ...TASK_ONLY_PROBES, `echo done=1`].join("\n");
    await node.configs.publish(
      uuid,
      busyboxApp(
        uuid,
        "confinement-probe",
        rootfs,
        [
          `(${script}) > /out/probes.tmp 2>&1; /bin/busybox mv /out/probes.tmp /out/probes.txt; trap 'exit 0' TERM; /bin/busybox sleep 3600 & wait`,
          "probe",
          String(node.nats.port),
          containerdSocket,
        ],
        [{ path: join(node.volumes, "out"), mountPoint: "/out", readOnly: false }],
      ),
    );
    const running = await node.until(
      uuid,
      (s) => s.state === "RUNNING" || s.state === "FAILED",
      "never RUNNING",
      60_000,
    );
    expect(running.error).toBeNull();
    const text = await waitFor(
      async () => {
        const t = await readFile(out, "utf8").catch(() => "");
        return t.includes("done=1") ? t : undefined;
      },
      { timeoutMs: 30_000, message: "the task never wrote its probes" },
    );
    const task = parse(text);

    expect(task.nats, "the node's NATS from the task").toBe("unreached");
    expect(task.containerd, "containerd's socket in the task").toBe("absent");
    const eff = capBits(task.capeff ?? "");
    expect(eff).toHaveLength(DEFAULT_CAPABILITIES.length);
    expect(eff).not.toContain(CAP_SYS_ADMIN);
    expect(eff).not.toContain(CAP_SYS_RAWIO);
    expect(eff).not.toContain(CAP_NET_ADMIN);
    expect(task.capbnd, "the bounding set is the effective one").toBe(task.capeff);
    expect(task.nonewprivs).toBe("1");
    expect(task.mknod).toBe("done");
    expect(task.allowed, "/dev/null made anew in the task").toBe("opened");
    expect(task.device, "/dev/kmsg made anew in the task").toBe("refused");
    expect(task.timerlist, "bytes of /proc/timer_list").toBe("0");
    expect(task.mount).toBe("refused");
    expect(task.procsys, "/proc/sys").toBe("refused");
    expect(task.netdevs, "network devices of a task without interfaces").toBe("lo,");
    expect(task.pid1, "PID 1 is the task's own anchor").toMatch(/^\/bin\/busybox sh -c/);
    expect(Number(task.pids), "processes the task sees").toBeLessThan(10);
  }, 120_000);

  it("cannot use more CPU than its vcpus: two busy loops in a 1-vCPU task stay near one core", async (ctx) => {
    if (availableParallelism() < 2) ctx.skip();
    const busy = newUuid();
    await node.configs.publish(
      busy,
      busyboxApp(busy, "confinement-cpu", rootfs, [
        "trap 'exit 0' TERM; (while :; do :; done) & (while :; do :; done) & wait",
      ]),
    );
    await node.until(busy, (s) => s.state === "RUNNING", "never RUNNING", 60_000);
    const cgroup = new CgroupReader(cgroupDirsFor(detectCgroupLayout(), `/${CONTAINERD_NAMESPACE}/${busy}`), [
      "cpuNs",
    ]);
    try {
      await sleep(500); // both loops running
      const before = cgroup.read().values.cpuNs;
      const t0 = process.hrtime.bigint();
      await sleep(2000);
      const after = cgroup.read().values.cpuNs;
      const wallNs = Number(process.hrtime.bigint() - t0);
      expect(before, "the task's CPU time").toBeTypeOf("number");
      const cores = ((after as number) - (before as number)) / wallNs;
      // Unlimited, the two loops would take two cores here; the quota holds them to one.
      expect(cores).toBeLessThan(1.2);
      expect(cores).toBeGreaterThan(0.3);
    } finally {
      cgroup.close();
      await node.configs.unpublish(busy);
    }
  }, 120_000);
});
