/**
 * From an app's interfaces, the instances and the IPAM's addresses to everything the node needs
 * (pure): the task's netns plan, each instance's endpoint (rules, lease, DNS names), the
 * TaskStatus `interfaces` and the task's resolv.conf/hosts input.
 */
import type { NetworkInstanceConfig, TaskInterfaceStatus } from "@eve-tasks/schemas";
import { parseCidr } from "@eve-tasks/schemas";
import type { DnsmasqHost } from "./dnsmasq-config.js";
import type { RuleEndpoint } from "./nft.js";
import {
  DEFAULT_NETNS_PREFIX,
  appMac,
  bridgeName,
  dnsLabel,
  hostIfName,
  netnsName,
  tapName,
} from "./names.js";
import type { TaskFilesInput } from "./task-files.js";
import type { TaskNetworkPlan } from "./task-netns.js";
import type { AppNetworkSpec } from "./validate.js";

/** An app interface on one instance: its rules and its lease and names. */
export interface InstanceEndpoint extends RuleEndpoint, DnsmasqHost {}

/** Everything the node needs for one app's interfaces. */
export interface ResolvedAppNetwork {
  readonly plan: TaskNetworkPlan;
  readonly statuses: TaskInterfaceStatus[];
  /** Per interface: the instance it joins and its endpoint there. */
  readonly endpoints: { readonly instance: string; readonly endpoint: InstanceEndpoint }[];
  readonly files: TaskFilesInput;
}

/** The DNS names of an app: its display name as a label (if it makes one) and its uuid. */
export function appDnsNames(app: Pick<AppNetworkSpec, "uuid" | "displayName">): string[] {
  const label = dnsLabel(app.displayName);
  return label !== undefined && label !== app.uuid ? [label, app.uuid] : [app.uuid];
}

/**
 * Resolves an app's network. `addresses[i]` is interface i's address from the IPAM; every
 * interface's network must be in `instances` (validate first).
 */
export function resolveAppNetwork(
  app: AppNetworkSpec,
  instances: ReadonlyMap<string, NetworkInstanceConfig>,
  addresses: readonly string[],
  netnsPrefix = DEFAULT_NETNS_PREFIX,
): ResolvedAppNetwork {
  const names = appDnsNames(app);
  const nameservers: string[] = [];
  const plan: TaskNetworkPlan = {
    uuid: app.uuid,
    netns: netnsName(app.uuid, netnsPrefix),
    interfaces: app.interfaces.map((itf, i) => {
      const ni = instances.get(itf.network);
      const ip = addresses[i];
      if (ni === undefined || ip === undefined) {
        throw new Error(
          `interface ${itf.name} of app ${app.uuid}: network ${itf.network} or its address is unknown`,
        );
      }
      for (const ns of ni.type === "local" ? [ni.gateway] : ni.dns)
        if (!nameservers.includes(ns)) nameservers.push(ns);
      return {
        name: itf.name,
        hostIfName: hostIfName(app.uuid, i),
        bridge: bridgeName(ni.name),
        mac: itf.mac ?? appMac(app.uuid, i),
        ip,
        prefixLength: parseCidr(ni.subnet).prefixLength,
        gateway: ni.gateway,
        mtu: ni.mtu,
        defaultRoute: i === 0,
        tap: app.virtualization === "HVM" ? tapName(i) : undefined,
      };
    }),
  };
  const statuses = plan.interfaces.map((p, i) => ({
    name: p.name,
    network: app.interfaces[i]?.network ?? "",
    mac: p.mac,
    ip: p.ip,
    hostIfName: p.hostIfName,
  }));
  const endpoints = plan.interfaces.map((p, i) => ({
    instance: app.interfaces[i]?.network ?? "",
    endpoint: {
      uuid: app.uuid,
      hostIfName: p.hostIfName,
      mac: p.mac,
      ip: p.ip,
      acls: app.interfaces[i]?.acls ?? [],
      portMaps: app.interfaces[i]?.portMaps ?? [],
      names,
    },
  }));
  return {
    plan,
    statuses,
    endpoints,
    files: { names, addresses: plan.interfaces.map((p) => p.ip), nameservers },
  };
}
