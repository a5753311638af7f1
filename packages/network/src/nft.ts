/**
 * nftables rules of one network instance, rendered as one script for `nft -f`: it (re)creates the
 * instance's two tables — `inet eve_ni_<name>` (NAT, port maps, forward policy, ACLs) and
 * `bridge eve_ni_<name>` (each app port may only send from its own MAC and address, IPv4 and
 * ARP only) — in one transaction, so a reconcile replaces them atomically. Pure.
 *
 * Traffic between apps on one bridge reaches the inet forward hook through br_netfilter
 * (`net.bridge.bridge-nf-call-iptables=1`), so ACLs hold on the bridge too. ACLs are keyed by
 * the app's address, which the bridge table ties to the app's port (its host-side veth).
 */
import type { Acl, NetworkInstanceType, PortMap } from "@eve-tasks/schemas";
import { nftTableName } from "./names.js";

/** One app interface on the instance, as its rules need it. */
export interface RuleEndpoint {
  readonly uuid: string;
  /** The host-side veth on the bridge. */
  readonly hostIfName: string;
  readonly mac: string;
  readonly ip: string;
  readonly acls: readonly Acl[];
  readonly portMaps: readonly PortMap[];
}

/** What the rules of one instance depend on. */
export interface InstanceRules {
  readonly name: string;
  readonly type: NetworkInstanceType;
  readonly bridge: string;
  readonly subnet: string;
  readonly uplink: string | null;
  readonly endpoints: readonly RuleEndpoint[];
}

const q = (ifName: string) => `"${ifName}"`;

/** The nft statements of one ACL rule (in the app's `in_…` or `out_…` chain). */
export function aclStatement(acl: Acl): string {
  const parts: string[] = [];
  if (acl.remote !== undefined) parts.push(`ip ${acl.direction === "in" ? "saddr" : "daddr"} ${acl.remote}`);
  if (acl.protocol === "tcp" || acl.protocol === "udp") {
    parts.push(acl.port !== undefined ? `${acl.protocol} dport ${acl.port}` : `meta l4proto ${acl.protocol}`);
  } else if (acl.protocol === "icmp") {
    parts.push("meta l4proto icmp");
  }
  // First match wins: allow leaves this app's list (other checks, e.g. the peer's, still run).
  parts.push(acl.action === "drop" ? "drop" : "return");
  return parts.join(" ");
}

/** The script that replaces the instance's tables with these rules. */
export function renderInstanceRules(r: InstanceRules): string {
  const table = nftTableName(r.name);
  const br = q(r.bridge);
  const local = r.type === "local";
  const out: string[] = [`# eve-tasks: rules of network instance ${r.name}`];

  out.push(`table inet ${table}`, `delete table inet ${table}`, `table inet ${table} {`);
  if (local) {
    const dnat: string[] = [];
    for (const e of r.endpoints) {
      for (const pm of e.portMaps) {
        dnat.push(`fib daddr type local ${pm.protocol} dport ${pm.hostPort} dnat ip to ${e.ip}:${pm.port}`);
      }
    }
    out.push("  chain prerouting_nat {", "    type nat hook prerouting priority dstnat; policy accept;");
    out.push(...dnat.map((s) => `    ${s}`), "  }");
    out.push("  chain output_nat {", "    type nat hook output priority -100; policy accept;");
    out.push(...dnat.map((s) => `    ${s}`), "  }");
    out.push("  chain postrouting_nat {", "    type nat hook postrouting priority srcnat; policy accept;");
    // Hairpin: an app reaching a port map of its own bridge must see the reply come back via NAT.
    out.push(`    oifname ${br} ip saddr ${r.subnet} ct status dnat masquerade`);
    if (r.uplink !== null) out.push(`    oifname ${q(r.uplink)} ip saddr ${r.subnet} masquerade`);
    out.push("  }");
    // The host itself: apps reach only DHCP, DNS and ping on the gateway.
    out.push(
      "  chain input {",
      "    type filter hook input priority filter; policy accept;",
      `    iifname != ${br} return`,
      "    ct state established,related accept",
      "    udp dport { 53, 67 } accept",
      "    tcp dport 53 accept",
      "    icmp type echo-request accept",
      "    drop",
      "  }",
    );
  }
  out.push(
    "  chain forward {",
    "    type filter hook forward priority filter; policy accept;",
    `    iifname != ${br} oifname != ${br} return`,
    "    ct state established,related accept",
    "    ct state invalid drop",
  );
  if (local) {
    const exits = r.uplink !== null ? `{ ${br}, ${q(r.uplink)} }` : br;
    out.push(`    iifname ${br} oifname != ${exits} jump leaving`);
    out.push(`    iifname != ${br} oifname ${br} jump entering`);
  }
  for (const e of r.endpoints) {
    if (e.acls.some((a) => a.direction === "out"))
      out.push(`    iifname ${br} ip saddr ${e.ip} jump out_${e.hostIfName}`);
    if (e.acls.some((a) => a.direction === "in"))
      out.push(`    oifname ${br} ip daddr ${e.ip} jump in_${e.hostIfName}`);
  }
  out.push("  }");
  if (local) {
    // Deny by default between instances (and to the node's other links): only port maps cross.
    out.push("  chain leaving {", "    ct status dnat return", "    drop", "  }");
    out.push("  chain entering {", "    ct status dnat return", "    drop", "  }");
  }
  for (const e of r.endpoints) {
    for (const dir of ["in", "out"] as const) {
      const acls = e.acls.filter((a) => a.direction === dir);
      if (acls.length === 0) continue;
      out.push(`  chain ${dir}_${e.hostIfName} {`, `    # app ${e.uuid}`);
      out.push(...acls.map((a) => `    ${aclStatement(a)}`), "  }");
    }
  }
  out.push("}");

  out.push(`table bridge ${table}`, `delete table bridge ${table}`, `table bridge ${table} {`);
  out.push("  chain ports {", "    type filter hook prerouting priority filter; policy accept;");
  for (const e of r.endpoints) {
    const p = q(e.hostIfName);
    out.push(
      `    iifname ${p} ether saddr != ${e.mac} drop`,
      `    iifname ${p} ether type != { ip, arp } drop`,
      `    iifname ${p} ether type ip ip saddr != { ${e.ip}, 0.0.0.0 } drop`,
      `    iifname ${p} ether type arp arp saddr ip != { ${e.ip}, 0.0.0.0 } drop`,
    );
  }
  out.push("  }", "  chain to_ports {", "    type filter hook output priority filter; policy accept;");
  for (const e of r.endpoints) out.push(`    oifname ${q(e.hostIfName)} ether type != { ip, arp } drop`);
  out.push("  }", "  chain between_ports {", "    type filter hook forward priority filter; policy accept;");
  for (const e of r.endpoints) out.push(`    oifname ${q(e.hostIfName)} ether type != { ip, arp } drop`);
  out.push("  }", "}", "");
  return out.join("\n");
}

/** The script that removes the instance's tables (nothing when they are absent). */
export function renderDeleteRules(instance: string): string {
  const table = nftTableName(instance);
  return [
    `table inet ${table}`,
    `delete table inet ${table}`,
    `table bridge ${table}`,
    `delete table bridge ${table}`,
    "",
  ].join("\n");
}
