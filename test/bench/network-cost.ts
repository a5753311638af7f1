// Scenario (net): what an interface adds to publish → RUNNING. The real executor is restarted with
// EVE_NET_NS naming a netns this scenario creates (bridges, rules and dnsmasq live there) and a
// task netns prefix of its own; a `local` instance is published; then apps with one interface on
// it and apps without one are published alternately, one at a time, each measured from publish to
// RUNNING and deleted. Then the same for `burst` apps at once. Everything it creates goes at the end.
import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { chmod } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Publication } from "@eve-tasks/bus";
import { messageTable } from "@eve-tasks/schemas";
import { log } from "./env.js";
import type { BenchEnv } from "./env.js";
import { median, nowMs, percentile, r1, r3 } from "./stats.js";
import type { ScenarioResult } from "./result.js";

/** The added median per task the issue asks for, in ms. */
const TARGET_ADDED_MS = 15;

function ip(...args: string[]): void {
  const r = spawnSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr.toString()}`);
}

export async function networkCost(
  env: BenchEnv,
  o: { n: number; burst: number; settleMs: number },
): Promise<ScenarioResult[]> {
  const tag = randomUUID().slice(0, 6);
  const host = `nwbench${tag}`;
  const prefix = `eve-nwbench${tag}-`;
  ip("netns", "add", host);
  const instances = new Publication(env.bus, messageTable("NetworkInstanceConfig"));
  try {
    // dnsmasq drops to nobody: the run dir and its parents must be searchable.
    await chmod(env.dir, 0o711);
    await chmod(join(env.dir, "run"), 0o711);
    await env.restartWorker("task-executor", { EVE_NET_NS: host, EVE_NETNS_PREFIX: prefix });
    await instances.publish("bench", {
      schemaVersion: 1,
      name: "bench",
      node: "local",
      type: "local",
      subnet: "10.123.0.0/16",
      gateway: "10.123.0.1",
    });
    await sleep(1000);

    const one = async (withInterface: boolean): Promise<number> => {
      const uuid = randomUUID();
      const app = env.app(uuid);
      const t0 = nowMs();
      await env.configs.publish(
        uuid,
        withInterface ? { ...app, interfaces: [{ name: "eth0", network: "bench" }] } : app,
      );
      await env.seen.when(uuid, "RUNNING", 60_000);
      const ms = nowMs() - t0;
      await env.configs.unpublish(uuid);
      await env.seen.when(uuid, "deleted", 60_000);
      await sleep(o.settleMs);
      return ms;
    };
    for (let i = 0; i < 3; i++) {
      await one(true);
      await one(false);
    }
    const withNet: number[] = [];
    const without: number[] = [];
    for (let i = 0; i < o.n; i++) {
      // Alternating which goes first, so drift hits both.
      if (i % 2 === 0) {
        withNet.push(await one(true));
        without.push(await one(false));
      } else {
        without.push(await one(false));
        withNet.push(await one(true));
      }
    }

    const burst = async (withInterface: boolean): Promise<number> => {
      const uuids = Array.from({ length: o.burst }, () => randomUUID());
      const t0 = nowMs();
      await Promise.all(
        uuids.map((u) =>
          env.configs.publish(
            u,
            withInterface ? { ...env.app(u), interfaces: [{ name: "eth0", network: "bench" }] } : env.app(u),
          ),
        ),
      );
      await Promise.all(uuids.map((u) => env.seen.when(u, "RUNNING", 300_000)));
      const ms = nowMs() - t0;
      await Promise.all(uuids.map((u) => env.configs.unpublish(u)));
      await Promise.all(uuids.map((u) => env.seen.when(u, "deleted", 300_000)));
      await sleep(o.settleMs);
      return ms;
    };
    const burstWith = await burst(true);
    const burstWithout = await burst(false);

    const added = median(withNet) - median(without);
    log(
      `net: publish → RUNNING median ${r1(median(withNet))} ms with one interface, ` +
        `${r1(median(without))} ms without (+${r1(added)} ms); ${o.burst} at once: ` +
        `${r1(burstWith)} ms vs ${r1(burstWithout)} ms`,
    );
    return [
      {
        scenario: "net: one app, one interface vs none",
        n: o.n,
        medianMs: r1(median(withNet)),
        p95Ms: r1(percentile(withNet, 95)),
        baselineMedianMs: r1(median(without)),
        baselineP95Ms: r1(percentile(without, 95)),
        ratio: r3(median(withNet) / median(without)),
        target: `+${TARGET_ADDED_MS} ms`,
        met: added <= TARGET_ADDED_MS,
        baseline: "the same app without interfaces, alternating",
        addedMedianMs: r1(added),
      },
      {
        scenario: `net: ${o.burst} apps at once, one interface each vs none`,
        n: o.burst,
        medianMs: r1(burstWith),
        p95Ms: r1(burstWith),
        baselineMedianMs: r1(burstWithout),
        baselineP95Ms: r1(burstWithout),
        ratio: r3(burstWith / burstWithout),
        target: `+${TARGET_ADDED_MS} ms per app`,
        met: (burstWith - burstWithout) / o.burst <= TARGET_ADDED_MS,
        baseline: "the same burst without interfaces",
        addedPerAppMs: r1((burstWith - burstWithout) / o.burst),
      },
    ];
  } finally {
    await instances.unpublish("bench").catch(() => undefined);
    await sleep(2000);
    // The executor goes back to the node's own netns; nothing of ours may stay in the bench's.
    await env.restartWorker("task-executor").catch((err: unknown) => log(String(err)));
    spawnSync("ip", ["netns", "del", host]);
  }
}
