/**
 * The sweep: what of ours exists on the node (task netns, bridges and app veths, nft tables,
 * dnsmasq processes), what a set of wanted apps and instances owns, and removing the rest.
 * Observing and removing act; deciding is {@link planSweep}, pure.
 */
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { ipBatchForce, nftApply, runCommand, inNetns } from "./exec.js";
import { listLinks } from "./bridge.js";
import { dnsmasqPaths } from "./dnsmasq-config.js";
import { dnsmasqPidFromFile, killPid } from "./dnsmasq.js";
import {
  BRIDGE_NAME_PATTERN,
  DEFAULT_NETNS_PREFIX,
  HOST_VETH_PATTERN,
  NETNS_DIR,
  NFT_TABLE_PREFIX,
  bridgeName,
  netnsName,
  netnsNamePattern,
  nftTableName,
} from "./names.js";

/** Things of ours found on the node. */
export interface SweepObservation {
  /** Task netns names (`eve-<uuid>`). */
  readonly netns: readonly string[];
  /** Bridges and app veths in the namespace where bridges live. */
  readonly links: readonly string[];
  /** nft tables named `eve_ni_…`, as `<family> <name>`. */
  readonly tables: readonly string[];
  /** Running dnsmasq processes of ours: instance name → PID. */
  readonly dnsmasq: ReadonlyMap<string, number>;
}

/** What the wanted apps and instances own. */
export interface SweepWanted {
  /** Running apps (their netns and veths stay): uuid → host-side veth names. */
  readonly running: ReadonlyMap<string, readonly string[]>;
  /** Instances that stay (bridge, tables, dnsmasq). */
  readonly instances: ReadonlySet<string>;
}

/** What the sweep removes. */
export interface SweepPlan {
  readonly netns: string[];
  readonly links: string[];
  readonly tables: string[];
  readonly dnsmasq: { instance: string; pid: number }[];
}

/** Lists what of ours exists. */
export async function observeSweep(o: {
  hostNetns: string | null;
  dataDir: string;
  runDir: string;
  netnsPrefix?: string | undefined;
}): Promise<SweepObservation> {
  const pattern = netnsNamePattern(o.netnsPrefix ?? DEFAULT_NETNS_PREFIX);
  const netns = (await readdir(NETNS_DIR).catch(() => [] as string[])).filter((n) => pattern.test(n)).sort();
  const links = (await listLinks(o.hostNetns))
    .map((l) => l.ifname)
    .filter((n) => BRIDGE_NAME_PATTERN.test(n) || HOST_VETH_PATTERN.test(n))
    .sort();
  const { stdout } = await runCommand(inNetns(o.hostNetns, ["nft", "-j", "list", "tables"]));
  const parsed = JSON.parse(stdout) as { nftables: { table?: { family: string; name: string } }[] };
  const tables = parsed.nftables
    .flatMap((e) =>
      e.table && e.table.name.startsWith(NFT_TABLE_PREFIX) ? [`${e.table.family} ${e.table.name}`] : [],
    )
    .sort();
  const dnsmasq = new Map<string, number>();
  const dir = join(o.dataDir, "dnsmasq");
  for (const instance of await readdir(dir).catch(() => [] as string[])) {
    const p = dnsmasqPaths(o.dataDir, o.runDir, instance);
    const pid = await dnsmasqPidFromFile(p.pidFile, p.conf);
    if (pid !== undefined) dnsmasq.set(instance, pid);
  }
  return { netns, links, tables, dnsmasq };
}

/** What to remove: everything observed that no wanted app or instance owns (pure). */
export function planSweep(
  seen: SweepObservation,
  wanted: SweepWanted,
  netnsPrefix = DEFAULT_NETNS_PREFIX,
): SweepPlan {
  const keepNetns = new Set([...wanted.running.keys()].map((u) => netnsName(u, netnsPrefix)));
  const keepLinks = new Set<string>([...wanted.instances].map(bridgeName));
  for (const ifs of wanted.running.values()) for (const n of ifs) keepLinks.add(n);
  const keepTables = new Set<string>();
  for (const i of wanted.instances)
    for (const f of ["inet", "bridge"]) keepTables.add(`${f} ${nftTableName(i)}`);
  return {
    netns: seen.netns.filter((n) => !keepNetns.has(n)),
    links: seen.links.filter((l) => !keepLinks.has(l)),
    tables: seen.tables.filter((t) => !keepTables.has(t)),
    dnsmasq: [...seen.dnsmasq]
      .filter(([i]) => !wanted.instances.has(i))
      .map(([instance, pid]) => ({ instance, pid })),
  };
}

/** Removes what `plan` lists: dnsmasq first, then tables, links and netns. */
export async function applySweep(hostNetns: string | null, plan: SweepPlan): Promise<void> {
  for (const d of plan.dnsmasq) await killPid(d.pid);
  if (plan.tables.length > 0) {
    await nftApply(hostNetns, plan.tables.map((t) => `delete table ${t}\n`).join(""));
  }
  await ipBatchForce(hostNetns, [
    ...plan.links.map((l) => `link del ${l}`),
    ...plan.netns.map((n) => `netns del ${n}`),
  ]);
}
