// Test helpers: network namespaces, links and processes the tests make themselves, each removed
// by the name (or PID) it was given when the test (or file) finishes.
import type { ChildProcess } from "node:child_process";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, readdir } from "node:fs/promises";
import { join } from "node:path";
import { deferCleanup, tempDir } from "../../../test/harness/index.js";
import { NETNS_HELPER_LIBS, NETNS_HELPER_SOURCE, inNetns, runCommand } from "../src/index.js";

/** A short random tag, so every name a test makes is its own. */
export function tag(): string {
  return randomBytes(3).toString("hex");
}

/** Creates netns `name` with loopback up; deleted when the test finishes. */
export async function makeNetns(name: string): Promise<string> {
  await runCommand(["ip", "netns", "add", name]);
  deferCleanup(() => runCommand(["ip", "netns", "del", name]).catch(() => undefined));
  await runCommand(["ip", "-n", name, "link", "set", "lo", "up"]);
  return name;
}

/** Runs `argv` inside netns `ns`; resolves with stdout. */
export async function inNs(ns: string, argv: readonly string[], timeoutMs = 10_000): Promise<string> {
  return (await runCommand(inNetns(ns, argv), { timeoutMs })).stdout;
}

/** Whether `argv` inside `ns` exits 0. */
export async function succeeds(ns: string, argv: readonly string[], timeoutMs = 10_000): Promise<boolean> {
  return inNs(ns, argv, timeoutMs).then(
    () => true,
    () => false,
  );
}

/**
 * A veth between `a` (named `aName`, address `aAddr`) and `b` (`bName`, `bAddr`), both up;
 * it goes with the namespaces.
 */
export async function vethBetween(
  a: string,
  aName: string,
  aAddr: string | null,
  b: string,
  bName: string,
  bAddr: string | null,
): Promise<void> {
  await runCommand(["ip", "-n", a, "link", "add", aName, "type", "veth", "peer", "name", bName, "netns", b]);
  for (const [ns, n, addr] of [
    [a, aName, aAddr],
    [b, bName, bAddr],
  ] as const) {
    if (addr !== null) await runCommand(["ip", "-n", ns, "addr", "add", addr, "dev", n]);
    await runCommand(["ip", "-n", ns, "link", "set", n, "up"]);
  }
}

/** Starts `argv` in netns `ns` as a child; killed by PID when the test finishes. */
export function startIn(ns: string, argv: readonly string[]): ChildProcess {
  const [cmd, ...args] = inNetns(ns, argv) as [string, ...string[]];
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  deferCleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;
    }
  });
  return child;
}

let helper: Promise<string> | undefined;

/**
 * The netns helper, built with gcc (as the executor does) once per test file into a directory
 * removed when the file finishes. Call it from beforeAll.
 */
export function netnsHelperBinary(): Promise<string> {
  helper ??= (async () => {
    const dir = await tempDir("nsh-");
    const bin = join(dir, "eve-netns");
    await runCommand([
      "gcc",
      "-O2",
      "-std=c11",
      "-Wall",
      "-Wextra",
      "-o",
      bin,
      NETNS_HELPER_SOURCE,
      ...NETNS_HELPER_LIBS,
    ]);
    return bin;
  })();
  return helper;
}

/** A temp dir dnsmasq (user nobody) can enter, for the run dir. */
export async function searchableTempDir(prefix: string): Promise<string> {
  const dir = await tempDir(prefix);
  await chmod(dir, 0o755);
  return dir;
}

/** Task netns names with `prefix` now present. */
export async function netnsWithPrefix(prefix: string): Promise<string[]> {
  return (await readdir("/run/netns").catch(() => [] as string[])).filter((n) => n.startsWith(prefix)).sort();
}

/** Links in `ns` (names). */
export async function linksIn(ns: string): Promise<string[]> {
  const out = await runCommand(["ip", "-n", ns, "-json", "link", "show"]);
  return (JSON.parse(out.stdout) as { ifname: string }[]).map((l) => l.ifname).sort();
}

/** nft tables in `ns`, as `<family> <name>`. */
export async function tablesIn(ns: string): Promise<string[]> {
  const out = await inNs(ns, ["nft", "-j", "list", "tables"]);
  const parsed = JSON.parse(out) as { nftables: { table?: { family: string; name: string } }[] };
  return parsed.nftables.flatMap((e) => (e.table ? [`${e.table.family} ${e.table.name}`] : [])).sort();
}

/** GETs `url` from inside `ns` (with node: busybox-static's wget crashes in the host's mount namespace). */
export async function httpGet(ns: string, url: string, timeoutMs = 3000): Promise<string> {
  const script =
    "fetch(process.argv[1],{signal:AbortSignal.timeout(Number(process.argv[2]))}).then(r=>r.text())" +
    ".then(t=>process.stdout.write(t),e=>{console.error(String(e.cause??e));process.exit(1)})";
  return inNs(ns, [process.execPath, "-e", script, url, String(timeoutMs)], timeoutMs + 5000);
}

/** Whether `url` answers from inside `ns` within `timeoutMs`. */
export async function httpReachable(ns: string, url: string, timeoutMs = 2000): Promise<boolean> {
  return httpGet(ns, url, timeoutMs).then(
    () => true,
    () => false,
  );
}
