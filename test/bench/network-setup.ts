// Benchmark: what setting up one task's network costs (netns + veth on an instance's bridge,
// address, route) and its parts, against raw baselines measured in the same run: spawning a
// process that does nothing, and `ip netns add` + one veth by hand. Everything lives in
// namespaces this script creates and removes. Needs root.
//
// Run: node --import tsx test/bench/network-setup.ts   Knobs: BENCH_NET_N=50 (tasks per round),
// BENCH_NET_HELPER=1 (built by the netns helper, as the executor does, instead of ip batches).
// The executor's default path (bridges in its own netns, no nsenter on the host side) is measured
// in a throw-away netns: BENCH_NET_HOST=current unshare --net -- node --import tsx test/bench/network-setup.ts
// One JSON line on stdout; a readable summary on stderr.
import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readlinkSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AppInterfacesSchema, NetworkInstanceConfigSchema } from "@eve-tasks/schemas";
import { ensureNetnsHelper } from "@eve-tasks/executor";
import { NodeNetwork } from "@eve-tasks/network";
import { median, percentile } from "./stats.js";

const n = Number(process.env.BENCH_NET_N ?? "50");
const tag = randomUUID().slice(0, 6);
const current = process.env.BENCH_NET_HOST === "current";
if (current && readlinkSync("/proc/self/ns/net") === readlinkSync(`/proc/${process.ppid}/ns/net`)) {
  throw new Error("BENCH_NET_HOST=current only inside a netns of its own (unshare --net)");
}
const host = `nwb${tag}-host`;
const prefix = `eve-nwb${tag}-`;

function sh(argv: string[], input?: string): void {
  const r = spawnSync(argv[0] ?? "", argv.slice(1), { input, stdio: ["pipe", "ignore", "pipe"] });
  if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr?.toString() ?? ""}`);
}

function timed(fn: () => void): number {
  const t = performance.now();
  fn();
  return performance.now() - t;
}

const dir = await mkdtemp(join(tmpdir(), "eve-nwb-"));
await chmod(dir, 0o755);
if (!current) sh(["ip", "netns", "add", host]);
const hostArgs = current ? [] : ["-n", host];
// BENCH_NET_HELPER=1: built by the netns helper (as the executor does), else by ip batches.
const netnsHelper = process.env.BENCH_NET_HELPER === "1" ? await ensureNetnsHelper(dir) : undefined;
const net = new NodeNetwork({
  hostNetns: current ? null : host,
  dataDir: join(dir, "data"),
  runDir: join(dir, "run"),
  netnsPrefix: prefix,
  ...(netnsHelper !== undefined ? { netnsHelper } : {}),
});
try {
  const ni = NetworkInstanceConfigSchema.parse({
    schemaVersion: 1,
    name: "bench",
    type: "local",
    subnet: "10.60.0.0/16",
    gateway: "10.60.0.1",
  });
  await net.applyInstance(ni, []);
  const instances = new Map([[ni.name, ni]]);

  // Baselines: a process doing nothing; the same kernel work by hand with one command each.
  const spawnTrue = Array.from({ length: n }, () => timed(() => sh(["/bin/true"])));
  const byHand: number[] = [];
  for (let i = 0; i < n; i++) {
    const ns = `${prefix}raw${i}`;
    byHand.push(
      timed(() => {
        sh(["ip", "netns", "add", ns]);
        sh([
          "ip",
          ...hostArgs,
          "link",
          "add",
          `evraw${i}`,
          "type",
          "veth",
          "peer",
          "name",
          "eth0",
          "netns",
          ns,
        ]);
      }),
    );
    sh(["ip", ...hostArgs, "link", "del", `evraw${i}`]);
    sh(["ip", "netns", "del", ns]);
  }

  // Ours: IPAM + the batches (one shell), then teardown.
  const totals: number[] = [];
  const setupMs: number[] = [];
  const ipamMs: number[] = [];
  const teardownMs: number[] = [];
  for (let i = 0; i < n; i++) {
    const uuid = randomUUID();
    const t0 = performance.now();
    const r = await net.resolveApp(
      {
        uuid,
        displayName: `b${i}`,
        virtualization: "NOHYPER",
        interfaces: AppInterfacesSchema.parse([{ name: "eth0", network: "bench" }]),
      },
      instances,
    );
    const t1 = performance.now();
    const { timings } = await net.setupTask(r, join(dir, "tasks", uuid));
    totals.push(performance.now() - t0);
    ipamMs.push(t1 - t0);
    setupMs.push(timings.totalMs);
    const t2 = performance.now();
    await net.teardownTask(
      uuid,
      r.statuses.map((s) => s.hostIfName),
    );
    teardownMs.push(performance.now() - t2);
    await net.releaseApp(uuid);
  }
  const m = (xs: number[]) => Math.round(median(xs) * 10) / 10;
  const result = {
    scenario: current
      ? "network-setup (bridges in the current netns)"
      : "network-setup (bridges in a named netns)",
    n,
    medianMs: m(totals),
    p95Ms: Math.round(percentile(totals, 95) * 10) / 10,
    baselineMedianMs: m(byHand),
    baselineP95Ms: Math.round(percentile(byHand, 95) * 10) / 10,
    ratio: Math.round((median(totals) / median(byHand)) * 1000) / 1000,
    target: "≤ 15 ms median added per task (publish → RUNNING; measured with the executor later)",
    baseline: "ip netns add + one veth into it, by hand (2 commands)",
    parts: {
      ipamMs: m(ipamMs),
      batchesMs: m(setupMs),
      teardownMs: m(teardownMs),
      spawnTrueMs: m(spawnTrue),
    },
    load: (await import("node:os")).loadavg()[0],
  };
  console.log(JSON.stringify(result));
  process.stderr.write(
    `network setup per task: median ${result.medianMs} ms (p95 ${result.p95Ms}); by hand ${result.baselineMedianMs} ms; ` +
      `parts: IPAM ${result.parts.ipamMs}, batches ${result.parts.batchesMs}, ` +
      `teardown ${result.parts.teardownMs}; spawning /bin/true ${result.parts.spawnTrueMs} ms; load ${(result.load ?? 0).toFixed(1)}\n`,
  );
} finally {
  await net.deleteInstance("bench").catch(() => undefined);
  await net.close();
  if (!current) spawnSync("ip", ["netns", "del", host]);
  await rm(dir, { recursive: true, force: true });
}
