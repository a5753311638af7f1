/**
 * Validation of network configs against each other and the node, pure: each problem is a
 * {@link NetworkIssue} naming the field at fault, for the status a user watches.
 */
import type { AppInterface, NetworkInstanceConfig } from "@eve-tasks/schemas";
import { MAX_IFNAME_LENGTH, cidrsOverlap, parseCidr } from "@eve-tasks/schemas";
import { addressProblem } from "./ipam.js";
import { BRIDGE_NAME_PATTERN, HOST_VETH_PATTERN, TAP_NAME_PATTERN, bridgeName, hostIfName } from "./names.js";

/** One problem with a config: the field (a path such as `interfaces[0].ip`) and what is wrong. */
export interface NetworkIssue {
  readonly field: string;
  readonly message: string;
}

/** One app's network wishes, as the task-executor knows them from its config. */
export interface AppNetworkSpec {
  readonly uuid: string;
  /** The app's display name (its DNS name when it makes a label). */
  readonly displayName: string;
  /** `HVM` apps get a tap per interface. */
  readonly virtualization: "NOHYPER" | "HVM";
  readonly interfaces: readonly AppInterface[];
}

/** The text of an issue list, one sentence per issue, for a status' error message. */
export function issuesText(issues: readonly NetworkIssue[]): string {
  return issues.map((i) => (i.field === "" ? i.message : `${i.field}: ${i.message}`)).join("; ");
}

function ifNameIssue(field: string, name: string): NetworkIssue | undefined {
  return name.length > MAX_IFNAME_LENGTH
    ? {
        field,
        message: `${name} is longer than ${MAX_IFNAME_LENGTH} characters, the kernel's limit for interface names`,
      }
    : undefined;
}

/**
 * Checks the node's instances against each other and the links present in the namespace where
 * bridges live. Instances earlier in `instances` win: an instance overlapping an earlier one is
 * the one reported (give running instances first, so a new config cannot break them).
 *
 * @returns instance name → its issues (instances without issues are absent).
 */
export function validateInstances(
  instances: readonly NetworkInstanceConfig[],
  hostLinks: ReadonlySet<string>,
): Map<string, NetworkIssue[]> {
  const result = new Map<string, NetworkIssue[]>();
  const add = (name: string, issue: NetworkIssue) => result.set(name, [...(result.get(name) ?? []), issue]);
  const accepted: NetworkInstanceConfig[] = [];
  const bridges = new Map<string, string>();
  const switchUplinks = new Map<string, string>();
  for (const ni of instances) {
    const before = result.get(ni.name)?.length ?? 0;
    for (const other of accepted) {
      if (cidrsOverlap(parseCidr(ni.subnet), parseCidr(other.subnet))) {
        add(ni.name, {
          field: "subnet",
          message: `${ni.subnet} overlaps ${other.subnet} of network instance ${other.name}`,
        });
      }
    }
    const br = bridgeName(ni.name);
    const sameBridge = bridges.get(br);
    if (sameBridge !== undefined) {
      add(ni.name, {
        field: "name",
        message: `its bridge name ${br} is that of network instance ${sameBridge}; rename one`,
      });
    }
    if (ni.uplink !== null) {
      const issue = ifNameIssue("uplink", ni.uplink);
      if (issue) add(ni.name, issue);
      else if (BRIDGE_NAME_PATTERN.test(ni.uplink) || HOST_VETH_PATTERN.test(ni.uplink)) {
        add(ni.name, {
          field: "uplink",
          message: `${ni.uplink} is an interface eve-tasks made itself, not an uplink`,
        });
      } else if (!hostLinks.has(ni.uplink)) {
        add(ni.name, { field: "uplink", message: `no interface ${ni.uplink} exists on the node` });
      } else {
        const owner = switchUplinks.get(ni.uplink);
        if (owner !== undefined) {
          add(ni.name, { field: "uplink", message: `${ni.uplink} is bridged by switch instance ${owner}` });
        } else if (ni.type === "switch" && accepted.some((o) => o.uplink === ni.uplink)) {
          const o = accepted.find((x) => x.uplink === ni.uplink);
          add(ni.name, {
            field: "uplink",
            message: `a switch bridges ${ni.uplink}, which network instance ${o?.name ?? "?"} uses as its uplink`,
          });
        }
      }
    }
    if ((result.get(ni.name)?.length ?? 0) === before) {
      accepted.push(ni);
      bridges.set(br, ni.name);
      if (ni.type === "switch" && ni.uplink !== null) switchUplinks.set(ni.uplink, ni.name);
    }
  }
  return result;
}

/** What {@link validateAppInterfaces} found. */
export interface AppValidation {
  /** Problems that make the config unusable until it changes. */
  readonly issues: NetworkIssue[];
  /** Instances the app names that do not exist (yet): the app waits for them. */
  readonly missingNetworks: string[];
}

/**
 * Checks one app's interfaces against the node's usable instances and the other apps holding
 * interfaces: addresses valid in their subnet, host ports free (per protocol), port maps only on
 * `local` instances, interface names the kernel accepts and unlike a VM's taps, host-side names
 * unique. Whether an address is free is the IPAM's to say.
 */
export function validateAppInterfaces(
  app: AppNetworkSpec,
  instances: ReadonlyMap<string, NetworkInstanceConfig>,
  others: readonly AppNetworkSpec[],
): AppValidation {
  const issues: NetworkIssue[] = [];
  const missing = new Set<string>();
  const ports = new Map<string, string>();
  const hostNames = new Map<string, string>();
  for (const other of others) {
    if (other.uuid === app.uuid) continue;
    other.interfaces.forEach((itf, i) => {
      hostNames.set(hostIfName(other.uuid, i), other.uuid);
      for (const pm of itf.portMaps) ports.set(`${pm.protocol}/${pm.hostPort}`, other.uuid);
    });
  }
  const seen = new Set<string>();
  app.interfaces.forEach((itf, i) => {
    const at = `interfaces[${i}]`;
    const nameIssue = ifNameIssue(`${at}.name`, itf.name);
    if (nameIssue) issues.push(nameIssue);
    if (seen.has(itf.name))
      issues.push({ field: `${at}.name`, message: `interface name ${itf.name} is used twice` });
    seen.add(itf.name);
    if (app.virtualization === "HVM" && TAP_NAME_PATTERN.test(itf.name)) {
      issues.push({ field: `${at}.name`, message: `names tap<n> are the VM's taps` });
    }
    const owner = hostNames.get(hostIfName(app.uuid, i));
    if (owner !== undefined) {
      issues.push({
        field: `${at}`,
        message: `its host-side name ${hostIfName(app.uuid, i)} is that of app ${owner} (a hash collision); change this app's uuid`,
      });
    }
    const ni = instances.get(itf.network);
    if (ni === undefined) {
      missing.add(itf.network);
    } else {
      if (itf.ip !== undefined) {
        const problem = addressProblem(ni.subnet, ni.gateway, itf.ip);
        if (problem !== undefined) issues.push({ field: `${at}.ip`, message: problem });
      }
      if (ni.type === "switch" && itf.portMaps.length > 0) {
        issues.push({
          field: `${at}.portMaps`,
          message: `port maps need a local network instance; ${ni.name} is a switch (its apps are on the uplink's L2)`,
        });
      }
    }
    itf.portMaps.forEach((pm, j) => {
      const holder = ports.get(`${pm.protocol}/${pm.hostPort}`);
      if (holder !== undefined) {
        issues.push({
          field: `${at}.portMaps[${j}].hostPort`,
          message: `host port ${pm.protocol} ${pm.hostPort} is taken by app ${holder}`,
        });
      }
    });
  });
  return { issues, missingNetworks: [...missing].sort() };
}
