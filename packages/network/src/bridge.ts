/**
 * An instance's bridge in the namespace where bridges live: observed with `ip -json`, planned as
 * `ip -batch` lines from what is there (pure), applied in one command. `local`: the gateway
 * address on the bridge, IPv4 forwarding on the bridge and uplink; `switch`: the uplink enslaved.
 */
import { parseCidr } from "@eve-tasks/schemas";
import type { NetworkInstanceType } from "@eve-tasks/schemas";
import { ipBatch, ipBatchForce, ipJson, runCommand, inNetns } from "./exec.js";
import { HOST_VETH_PATTERN } from "./names.js";

/** A link as `ip -json -details link show` reports it (the fields used here). */
export interface ObservedLink {
  readonly ifname: string;
  readonly address?: string;
  readonly mtu?: number;
  readonly master?: string;
  readonly flags?: readonly string[];
  readonly linkinfo?: { readonly info_kind?: string };
}

/** An address as `ip -json addr show` reports it. */
interface ObservedAddrInfo {
  readonly ifname: string;
  readonly addr_info?: readonly { family: string; local: string; prefixlen: number }[];
}

/** The bridge an instance needs. */
export interface BridgePlan {
  readonly type: NetworkInstanceType;
  readonly bridge: string;
  readonly mac: string;
  readonly mtu: number;
  /** `local`: the gateway address on the bridge. */
  readonly gateway: string;
  readonly subnet: string;
  readonly uplink: string | null;
}

/** What is there now, for {@link planBridge}. */
export interface BridgeObservation {
  /** Every link in the namespace. */
  readonly links: readonly ObservedLink[];
  /** IPv4 addresses on the bridge (`a.b.c.d/len`), if it exists. */
  readonly bridgeAddresses: readonly string[];
}

/** Every link in `netns` (`ip -json -details link show`). */
export function listLinks(netns: string | null): Promise<ObservedLink[]> {
  return ipJson<ObservedLink[]>(netns, ["-details", "link", "show"]);
}

/** What {@link planBridge} decides. */
export interface BridgeCommands {
  readonly lines: string[];
  /** `/proc/sys` paths (under net/) to set to 1. */
  readonly sysctls: string[];
}

/** The commands that make the bridge what `plan` says, given what is there (pure). */
export function planBridge(plan: BridgePlan, seen: BridgeObservation): BridgeCommands {
  const lines: string[] = [];
  const br = seen.links.find((l) => l.ifname === plan.bridge);
  if (br === undefined) {
    lines.push(`link add name ${plan.bridge} address ${plan.mac} mtu ${plan.mtu} type bridge`);
  } else {
    if (br.address !== plan.mac) lines.push(`link set ${plan.bridge} address ${plan.mac}`);
    if (br.mtu !== plan.mtu) lines.push(`link set ${plan.bridge} mtu ${plan.mtu}`);
  }
  const want = plan.type === "local" ? [`${plan.gateway}/${parseCidr(plan.subnet).prefixLength}`] : [];
  for (const a of seen.bridgeAddresses) if (!want.includes(a)) lines.push(`addr del ${a} dev ${plan.bridge}`);
  for (const a of want) if (!seen.bridgeAddresses.includes(a)) lines.push(`addr add ${a} dev ${plan.bridge}`);
  // Ports other than app veths that should not be there (an uplink of a former switch).
  for (const l of seen.links) {
    if (
      l.master === plan.bridge &&
      !HOST_VETH_PATTERN.test(l.ifname) &&
      !(plan.type === "switch" && l.ifname === plan.uplink)
    ) {
      lines.push(`link set ${l.ifname} nomaster`);
    }
  }
  if (plan.type === "switch" && plan.uplink !== null) {
    const up = seen.links.find((l) => l.ifname === plan.uplink);
    if (up?.master !== plan.bridge) lines.push(`link set ${plan.uplink} master ${plan.bridge}`);
    if (!up?.flags?.includes("UP")) lines.push(`link set ${plan.uplink} up`);
  }
  if (br === undefined || !br.flags?.includes("UP")) lines.push(`link set ${plan.bridge} up`);
  const sysctls = ["net/bridge/bridge-nf-call-iptables"];
  if (plan.type === "local") {
    sysctls.push(`net/ipv4/conf/${plan.bridge}/forwarding`);
    if (plan.uplink !== null) sysctls.push(`net/ipv4/conf/${plan.uplink}/forwarding`);
  }
  return { lines, sysctls };
}

/** Observes the namespace and makes the bridge what `plan` says (idempotent). */
export async function ensureBridge(netns: string | null, plan: BridgePlan): Promise<void> {
  const links = await listLinks(netns);
  let bridgeAddresses: string[] = [];
  if (links.some((l) => l.ifname === plan.bridge)) {
    const info = await ipJson<ObservedAddrInfo[]>(netns, ["-4", "addr", "show", "dev", plan.bridge]);
    bridgeAddresses = (info[0]?.addr_info ?? [])
      .filter((a) => a.family === "inet")
      .map((a) => `${a.local}/${a.prefixlen}`);
  }
  const cmds = planBridge(plan, { links, bridgeAddresses });
  await ipBatch(netns, cmds.lines);
  await setSysctlsToOne(netns, cmds.sysctls);
}

/** Sets each `/proc/sys/<path>` to 1 inside `netns`, in one process. */
export async function setSysctlsToOne(netns: string | null, paths: readonly string[]): Promise<void> {
  if (paths.length === 0) return;
  const script = 'for p in "$@"; do printf 1 > "/proc/sys/$p" || exit 1; done';
  await runCommand(inNetns(netns, ["sh", "-c", script, "sh", ...paths]));
}

/** Deletes a bridge (its ports are released; idempotent). */
export async function deleteBridge(netns: string | null, bridge: string): Promise<void> {
  await ipBatchForce(netns, [`link del ${bridge}`]);
}
