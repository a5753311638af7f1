/**
 * dnsmasq of a `local` instance, the pure part: its config file, its static DHCP leases and its
 * DNS names. One dnsmasq per instance, bound to the instance's bridge only, answering DHCP with
 * static leases only (the IPAM's addresses) and DNS for the apps' names, forwarding other names
 * to the instance's `dns` servers and never reading the host's /etc/resolv.conf or /etc/hosts.
 */
import { join } from "node:path";
import { parseCidr, intToIpv4 } from "@eve-tasks/schemas";

/** Where one instance's dnsmasq keeps its files. */
export interface DnsmasqPaths {
  /** The config file (read as root at start). */
  readonly conf: string;
  /** Static leases `mac,ip,name`, re-read on SIGHUP by the unprivileged dnsmasq. */
  readonly dhcpHosts: string;
  /** DNS names `ip name…`, re-read on SIGHUP by the unprivileged dnsmasq. */
  readonly dnsHosts: string;
  /** dnsmasq's pid file. */
  readonly pidFile: string;
  /** dnsmasq's lease database. */
  readonly leaseFile: string;
  /** dnsmasq's log. */
  readonly logFile: string;
}

/**
 * The files of instance `name`: pid, leases and log under `<dataDir>/dnsmasq/<name>/`; config,
 * leases and names under `<runDir>/dnsmasq/<name>/`, which must be world-searchable because
 * dnsmasq drops to user nobody before reading them.
 */
export function dnsmasqPaths(dataDir: string, runDir: string, name: string): DnsmasqPaths {
  const d = join(dataDir, "dnsmasq", name);
  const r = join(runDir, "dnsmasq", name);
  return {
    conf: join(r, "dnsmasq.conf"),
    dhcpHosts: join(r, "dhcp-hosts"),
    dnsHosts: join(r, "hosts"),
    pidFile: join(d, "dnsmasq.pid"),
    leaseFile: join(d, "leases"),
    logFile: join(d, "dnsmasq.log"),
  };
}

/** What an instance's dnsmasq config depends on. */
export interface DnsmasqInstance {
  readonly name: string;
  readonly bridge: string;
  readonly subnet: string;
  readonly gateway: string;
  readonly mtu: number;
  /** Upstream DNS servers. */
  readonly dns: readonly string[];
}

/** One app interface's lease and names. */
export interface DnsmasqHost {
  readonly mac: string;
  readonly ip: string;
  /** DNS names of the address; the first is the DHCP hostname. */
  readonly names: readonly string[];
}

/** The lease time dnsmasq hands out; the address never changes, renewals are cheap. */
export const DHCP_LEASE_TIME = "1h";

/** The config file of an instance's dnsmasq. */
export function renderDnsmasqConf(ni: DnsmasqInstance, paths: DnsmasqPaths): string {
  const c = parseCidr(ni.subnet);
  const lines = [
    `# eve-tasks: dnsmasq of network instance ${ni.name}`,
    `interface=${ni.bridge}`,
    "bind-interfaces",
    "except-interface=lo",
    `listen-address=${ni.gateway}`,
    "no-resolv",
    "no-hosts",
    "no-poll",
    "domain-needed",
    "bogus-priv",
    "strict-order",
    ...ni.dns.map((s) => `server=${s}`),
    `pid-file=${paths.pidFile}`,
    `log-facility=${paths.logFile}`,
    `dhcp-leasefile=${paths.leaseFile}`,
    `dhcp-range=${intToIpv4(c.network)},static,${intToIpv4(c.mask)},${DHCP_LEASE_TIME}`,
    `dhcp-option=option:router,${ni.gateway}`,
    `dhcp-option=option:dns-server,${ni.gateway}`,
    `dhcp-option=option:mtu,${ni.mtu}`,
    "dhcp-authoritative",
    `dhcp-hostsfile=${paths.dhcpHosts}`,
    `addn-hosts=${paths.dnsHosts}`,
    "",
  ];
  return lines.join("\n");
}

/** The static leases file (`mac,ip,hostname` per line). */
export function renderDhcpHosts(hosts: readonly DnsmasqHost[]): string {
  return hosts.map((h) => [h.mac, h.ip, ...h.names.slice(0, 1)].join(",") + "\n").join("");
}

/** The DNS names file (`ip name…` per line, hosts(5) format). */
export function renderDnsHosts(hosts: readonly DnsmasqHost[]): string {
  return hosts
    .filter((h) => h.names.length > 0)
    .map((h) => `${h.ip} ${h.names.join(" ")}\n`)
    .join("");
}
