// The boot watchdog's decisions (pure), its reading of a console log that grows and rotates
// (real files), and the node's KVM verdict it leaves behind (AccelChooser.distrust).
import { appendFile, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AccelChooser,
  BootWatchdog,
  checkBoot,
  guestSignOfLife,
  kvmVerdictPath,
  ownLinePrefixes,
  verdictApplies,
  watchesBoot,
} from "@eve-tasks/executor";
import type { CachedProbe, TaskRuntime } from "@eve-tasks/executor";
import { logEndCursor } from "@eve-tasks/task-logs";

const OWN = ownLinePrefixes("qemu-system-x86_64");

describe("guestSignOfLife: what counts as the guest's output", () => {
  it("nothing, blank lines and the runtime's own lines are no sign of life", () => {
    expect(guestSignOfLife("", OWN)).toBeUndefined();
    expect(guestSignOfLife("\n\r\n  \n", OWN)).toBeUndefined();
    expect(
      guestSignOfLife(
        "qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.80000001H:ECX.svm [bit 2]\n" +
          "eve-tasks loader (default): something\n",
        OWN,
      ),
    ).toBeUndefined();
  });

  it("any other line is: firmware, kernel or init", () => {
    expect(guestSignOfLife("qemu-system-x86_64: warning: x\nSeaBIOS (version 1.16.2)\n", OWN)).toBe(
      "SeaBIOS (version 1.16.2)",
    );
    expect(guestSignOfLife("[    0.000000] Linux version 6.1.0\r\n", OWN)).toBe(
      "[    0.000000] Linux version 6.1.0",
    );
    expect(guestSignOfLife("EVE-TASKS-GUEST-UP\n", OWN)).toBe("EVE-TASKS-GUEST-UP");
  });

  it("a line still being written counts once it cannot become one of the runtime's own", () => {
    expect(guestSignOfLife("qemu-sys", OWN)).toBeUndefined();
    expect(guestSignOfLife("eve-", OWN)).toBeUndefined();
    expect(guestSignOfLife("qemu-system-x86_64: warn", OWN)).toBeUndefined();
    expect(guestSignOfLife("[    0.0", OWN)).toBe("[    0.0");
    expect(guestSignOfLife("quiet", OWN)).toBe("quiet");
  });
});

describe("checkBoot: the watchdog's decision at one look", () => {
  const at = { startedAtMs: 1_000, deadlineMs: 20_000 };

  it("alive as soon as there is a sign, even past the deadline", () => {
    expect(checkBoot({ ...at, nowMs: 2_000, sign: "x" })).toEqual({ kind: "alive", line: "x" });
    expect(checkBoot({ ...at, nowMs: 60_000, sign: "x" })).toEqual({ kind: "alive", line: "x" });
  });

  it("waits until the deadline, then falls back, naming the deadline", () => {
    expect(checkBoot({ ...at, nowMs: 20_999, sign: undefined })).toEqual({ kind: "wait", untilMs: 21_000 });
    const c = checkBoot({ ...at, nowMs: 21_000, sign: undefined });
    expect(c.kind).toBe("fallback");
    expect(c.kind === "fallback" && c.reason).toBe(
      "a VM under KVM (auto) showed no sign of life within 20000 ms: nothing from its guest on the serial console",
    );
  });
});

describe("watchesBoot: which tasks are watched", () => {
  it("only KVM chosen on the probe's word, and only with a deadline", () => {
    expect(watchesBoot({ accel: "kvm", watchBoot: true }, 60_000)).toBe(true);
    expect(watchesBoot({ accel: "kvm", watchBoot: true }, 0)).toBe(false);
    expect(watchesBoot({ accel: "kvm" }, 60_000)).toBe(false); // kvm asked explicitly
    expect(watchesBoot({ accel: "tcg" }, 60_000)).toBe(false);
    expect(watchesBoot(undefined, 60_000)).toBe(false); // a native container
  });
});

describe("BootWatchdog: reading a console log since a task's start", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "eve-boot-watchdog-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("BootWatchdog reports a guest that speaks, and one that stays silent past its deadline", async () => {
    const speaks = join(dir, "speaks.log");
    const silent = join(dir, "silent.log");
    await writeFile(speaks, "old output\n");
    await writeFile(silent, "old output\n");
    const dog = new BootWatchdog({ pollMs: 20 });
    const seen: string[] = [];
    const done = async (uuid: string, log: string, deadlineMs: number) => {
      const mark = await logEndCursor(log);
      return new Promise<void>((resolve) => {
        dog.watch({
          uuid,
          pid: 1,
          logPath: log,
          mark,
          startedAtMs: Date.now(),
          deadlineMs,
          ownPrefixes: OWN,
          current: () => true,
          onAlive: (line) => {
            seen.push(`${uuid} alive: ${line}`);
            resolve();
          },
          onFallback: (reason) => {
            seen.push(`${uuid} fallback: ${reason}`);
            resolve();
          },
        });
      });
    };
    const a = done("a", speaks, 5_000);
    const b = done("b", silent, 300);
    await appendFile(silent, "qemu-system-x86_64: warning: only qemu talks\n");
    // The guest speaks after the logger rotated its log: console output since the start spans both files.
    setTimeout(() => {
      void (async () => {
        await appendFile(speaks, "qemu-system-x86_64: warning: x\n");
        await rename(speaks, `${speaks}.1`);
        await writeFile(speaks, "EVE-TASKS-GUEST-UP\n");
      })();
    }, 100);
    await Promise.all([a, b]);
    dog.close();
    expect(seen.sort()).toEqual([
      "a alive: EVE-TASKS-GUEST-UP",
      "b fallback: a VM under KVM (auto) showed no sign of life within 300 ms: nothing from its guest on the serial console",
    ]);
  });

  it("BootWatchdog stops watching a task that is no longer the app's", async () => {
    const log = join(dir, "gone.log");
    const dog = new BootWatchdog({ pollMs: 10 });
    let called = false;
    let looks = 0;
    dog.watch({
      uuid: "c",
      pid: 1,
      logPath: log,
      mark: await logEndCursor(log),
      startedAtMs: Date.now(),
      deadlineMs: 50,
      ownPrefixes: OWN,
      current: () => ++looks < 3,
      onAlive: () => (called = true),
      onFallback: () => (called = true),
    });
    await new Promise((r) => setTimeout(r, 200));
    dog.close();
    expect(called).toBe(false);
    expect(looks).toBe(3);
  });
});

describe("the node's KVM verdict after a fallback", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "eve-kvm-verdict-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("a probe's verdict holds for its tools seed; the watchdog's for every seed of this boot", () => {
    const probe: CachedProbe = {
      usable: true,
      reason: "r",
      elapsedMs: 1,
      bootId: "b1",
      toolsRoot: "/seeds/x",
      probedAt: "t",
    };
    expect(verdictApplies(probe, "b1", "/seeds/x")).toBe(true);
    expect(verdictApplies(probe, "b1", "/seeds/y")).toBe(false);
    expect(verdictApplies(probe, "b2", "/seeds/x")).toBe(false);
    const watchdog: CachedProbe = { ...probe, usable: false, toolsRoot: "", by: "boot-watchdog" };
    expect(verdictApplies(watchdog, "b1", "/seeds/y")).toBe(true);
    expect(verdictApplies(watchdog, "b2", "/seeds/y")).toBe(false);
  });

  it("distrust: auto gets TCG from then on, and kvm-probe.json says KVM is not usable, with why", async () => {
    // The probe's yes for this boot, as the probe writes it; a device that exists stands for /dev/kvm.
    const bootId = (await readFile("/proc/sys/kernel/random/boot_id", "utf8")).trim();
    const tools = { toolsRoot: "/seeds/x", qemu: "/usr/bin/qemu-system-x86_64" };
    await writeFile(
      kvmVerdictPath(dir),
      JSON.stringify({
        usable: true,
        reason: "the probe guest came up under KVM in 300 ms",
        elapsedMs: 300,
        bootId,
        toolsRoot: tools.toolsRoot,
        probedAt: new Date().toISOString(),
        by: "probe",
      }),
    );
    const chooser = () =>
      new AccelChooser({
        // Never called: every decision below comes from the verdict on disk or in memory.
        runtime: undefined as unknown as TaskRuntime,
        dataDir: dir,
        logger: pino({ level: "silent" }),
        kvmDevice: "/dev/null",
      });
    const c = chooser();
    expect(await c.decide("auto", tools)).toMatchObject({ accel: "kvm", watchBoot: true });
    expect(await c.decide("kvm", tools)).toEqual({ accel: "kvm", why: "vm.accel=kvm: KVM" });
    await c.distrust("a VM under KVM (auto) showed no sign of life within 20000 ms");
    const after = await c.decide("auto", tools);
    expect(after).toEqual({
      accel: "tcg",
      why: "auto: TCG, KVM is not usable here (a VM under KVM (auto) showed no sign of life within 20000 ms)",
    });
    const file = JSON.parse(await readFile(kvmVerdictPath(dir), "utf8")) as CachedProbe;
    expect(file).toMatchObject({
      usable: false,
      reason: "a VM under KVM (auto) showed no sign of life within 20000 ms",
      bootId,
      by: "boot-watchdog",
    });
    // A new executor (its restart) reads it, for any tools seed; kvm asked explicitly stays kvm.
    expect((await chooser().decide("auto", { ...tools, toolsRoot: "/seeds/other" })).accel).toBe("tcg");
    expect((await chooser().decide("kvm", tools)).accel).toBe("kvm");
  });
});
