/**
 * The node's networks as the task-executor drives them: one object owning the IPAM, the
 * instances' bridges, rules and dnsmasq supervisors, and the tasks' netns. Every method is
 * idempotent; each decides with the pure modules and acts through exec.ts.
 */
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import type { NetworkInstanceConfig } from "@eve-tasks/schemas";
import { MAX_APP_INTERFACES } from "@eve-tasks/schemas";
import type { InstanceEndpoint, ResolvedAppNetwork } from "./app-plan.js";
import { resolveAppNetwork } from "./app-plan.js";
import { deleteBridge, ensureBridge, listLinks } from "./bridge.js";
import { dnsmasqPaths } from "./dnsmasq-config.js";
import { DnsmasqSupervisor } from "./dnsmasq.js";
import { nftApply } from "./exec.js";
import { IpamStore } from "./ipam-store.js";
import type { IpRequest } from "./ipam.js";
import { leaseKey } from "./ipam.js";
import { DEFAULT_NETNS_PREFIX, bridgeMac, bridgeName, hostIfName, netnsName } from "./names.js";
import { renderDeleteRules, renderInstanceRules } from "./nft.js";
import type { SweepPlan, SweepWanted } from "./sweep.js";
import { applySweep, observeSweep, planSweep } from "./sweep.js";
import type { TaskFilePaths } from "./task-files.js";
import { writeTaskFiles } from "./task-files.js";
import type { TaskNetworkTimings } from "./task-netns.js";
import { NetnsHelper } from "./netns-helper.js";
import { setupTaskNetwork, teardownTaskNetwork } from "./task-netns.js";
import type { AppNetworkSpec } from "./validate.js";

/** Options of {@link NodeNetwork}. */
/**
 * Removing an instance's files: a dnsmasq that was just stopped (or another's, killed by a sweep)
 * may still be writing its leases there, which makes one pass fail with ENOTEMPTY; retry a few times.
 */
const RM_TREE = { recursive: true, force: true, maxRetries: 5, retryDelay: 50 } as const;

export interface NodeNetworkOptions {
  /** The named netns where bridges, uplinks and NAT live (`EVE_NET_NS`), or null for the current one. */
  readonly hostNetns: string | null;
  /** Persistent state: `ipam/`, `dnsmasq/<instance>/` (pid, leases, log). */
  readonly dataDir: string;
  /** dnsmasq's config, static leases and names: must be world-searchable (dnsmasq runs as nobody). */
  readonly runDir: string;
  /** Prefix of task netns names; default `eve-` (contract). Tests use their own. */
  readonly netnsPrefix?: string;
  /**
   * The built netns helper (`native/eve-netns.c`, see {@link NetnsHelper}); without it, task
   * networks are built with `ip` and `tc` batches.
   */
  readonly netnsHelper?: string;
  readonly logger?: Logger;
}

/** The node's networks. */
export class NodeNetwork {
  readonly #o: NodeNetworkOptions;
  readonly #dnsmasq = new Map<string, DnsmasqSupervisor>();
  /** The IPAM, persisted under `<dataDir>/ipam/`. */
  readonly ipam: IpamStore;
  readonly #helper: NetnsHelper | undefined;

  constructor(options: NodeNetworkOptions) {
    this.#o = options;
    this.ipam = new IpamStore(join(options.dataDir, "ipam"));
    this.#helper = options.netnsHelper !== undefined ? new NetnsHelper(options.netnsHelper) : undefined;
  }

  /** Applies an nft script where the bridges live: by the helper when there is one, else `nft -f`. */
  #nft(script: string): Promise<void> {
    return this.#helper !== undefined
      ? this.#helper.nft(this.#o.hostNetns, script)
      : nftApply(this.#o.hostNetns, script);
  }

  get #prefix(): string {
    return this.#o.netnsPrefix ?? DEFAULT_NETNS_PREFIX;
  }

  /** Names of the links in the namespace where bridges live (to check uplinks). */
  async hostLinks(): Promise<Set<string>> {
    return new Set((await listLinks(this.#o.hostNetns)).map((l) => l.ifname));
  }

  /**
   * Makes instance `ni` what its config and its apps' endpoints say: bridge (address, MAC, MTU,
   * forwarding, uplink), one nft transaction for its rules, and for `local` its dnsmasq (started,
   * or told to re-read its leases). Validate the config first ({@link validateInstances}).
   *
   * @returns the bridge's name.
   */
  async applyInstance(ni: NetworkInstanceConfig, endpoints: readonly InstanceEndpoint[]): Promise<string> {
    const bridge = bridgeName(ni.name);
    await ensureBridge(this.#o.hostNetns, {
      type: ni.type,
      bridge,
      mac: bridgeMac(ni.name),
      mtu: ni.mtu,
      gateway: ni.gateway,
      subnet: ni.subnet,
      uplink: ni.uplink,
    });
    await this.applyRules(ni, endpoints);
    if (ni.type === "local") {
      const dnsmasqInstance = {
        name: ni.name,
        bridge,
        subnet: ni.subnet,
        gateway: ni.gateway,
        mtu: ni.mtu,
        dns: ni.dns,
      };
      let sup = this.#dnsmasq.get(ni.name);
      const confKey = JSON.stringify(dnsmasqInstance);
      if (sup !== undefined && this.#dnsmasqConf.get(ni.name) === confKey && sup.pid !== undefined) {
        await sup.update(endpoints);
      } else {
        await sup?.stop();
        sup = new DnsmasqSupervisor({
          hostNetns: this.#o.hostNetns,
          paths: dnsmasqPaths(this.#o.dataDir, this.#o.runDir, ni.name),
          logger: this.#o.logger?.child({ instance: ni.name }),
        });
        this.#dnsmasq.set(ni.name, sup);
        await sup.start(dnsmasqInstance, endpoints);
        this.#dnsmasqConf.set(ni.name, confKey);
      }
    } else {
      await this.#stopDnsmasq(ni.name);
    }
    this.#o.logger?.info(
      { instance: ni.name, bridge, endpoints: endpoints.length },
      "network instance applied",
    );
    return bridge;
  }

  readonly #dnsmasqConf = new Map<string, string>();

  /**
   * The apps on instance `ni` changed (one came, went, or changed its ACLs or port maps): its
   * rules in one transaction, and for `local` its dnsmasq's leases and names (re-read on SIGHUP;
   * started when it does not run). The bridge is left as {@link applyInstance} made it.
   */
  async updateEndpoints(ni: NetworkInstanceConfig, endpoints: readonly InstanceEndpoint[]): Promise<void> {
    const sup = this.#dnsmasq.get(ni.name);
    if (ni.type === "local" && (sup === undefined || sup.pid === undefined)) {
      await this.applyInstance(ni, endpoints);
      return;
    }
    await this.applyRules(ni, endpoints);
    if (ni.type === "local") await sup?.update(endpoints);
  }

  /** Replaces the instance's nft tables with rules for `endpoints` (one transaction). */
  async applyRules(ni: NetworkInstanceConfig, endpoints: readonly InstanceEndpoint[]): Promise<void> {
    await this.#nft(
      renderInstanceRules({
        name: ni.name,
        type: ni.type,
        bridge: bridgeName(ni.name),
        subnet: ni.subnet,
        uplink: ni.type === "local" ? ni.uplink : null,
        endpoints,
      }),
    );
  }

  /** The PID of instance `name`'s dnsmasq, if it runs. */
  dnsmasqPid(name: string): number | undefined {
    return this.#dnsmasq.get(name)?.pid;
  }

  async #stopDnsmasq(name: string): Promise<void> {
    await this.#dnsmasq.get(name)?.stop();
    this.#dnsmasq.delete(name);
    this.#dnsmasqConf.delete(name);
  }

  /** Removes instance `name`: its dnsmasq, rules, bridge (releasing the uplink) and files. */
  async deleteInstance(name: string): Promise<void> {
    await this.#stopDnsmasq(name);
    await this.#nft(renderDeleteRules(name));
    await deleteBridge(this.#o.hostNetns, bridgeName(name));
    await rm(join(this.#o.dataDir, "dnsmasq", name), RM_TREE);
    await rm(join(this.#o.runDir, "dnsmasq", name), RM_TREE);
    this.#o.logger?.info({ instance: name }, "network instance deleted");
  }

  /**
   * Gives app `app` its addresses (IPAM, persisted) and resolves everything its task needs.
   * `reserved` holds addresses other apps' configs ask for (lease key → ip), see
   * {@link reservedAddresses}. Validate first ({@link validateAppInterfaces}).
   *
   * @throws NetworkConfigError naming the field when an address is invalid or taken.
   */
  async resolveApp(
    app: AppNetworkSpec,
    instances: ReadonlyMap<string, NetworkInstanceConfig>,
    reserved?: ReadonlyMap<string, string>,
  ): Promise<ResolvedAppNetwork> {
    const addresses: string[] = [];
    const byInstance = new Map<string, { index: number; request: IpRequest }[]>();
    app.interfaces.forEach((itf, index) => {
      const list = byInstance.get(itf.network) ?? [];
      list.push({
        index,
        request: { uuid: app.uuid, ifName: itf.name, ip: itf.ip, field: `interfaces[${index}].ip` },
      });
      byInstance.set(itf.network, list);
    });
    for (const [name, list] of byInstance) {
      const ni = instances.get(name);
      if (ni === undefined) throw new Error(`network instance ${name} is unknown`);
      const got = await this.ipam.assign(
        ni,
        list.map((l) => l.request),
        reserved,
      );
      list.forEach((l, k) => (addresses[l.index] = got[k] ?? ""));
    }
    return resolveAppNetwork(app, instances, addresses, this.#prefix);
  }

  /** Builds the task's netns and interfaces, and writes its resolv.conf and hosts into `filesDir`. */
  async setupTask(
    resolved: ResolvedAppNetwork,
    filesDir: string,
  ): Promise<{ files: TaskFilePaths; timings: TaskNetworkTimings }> {
    const files = await writeTaskFiles(filesDir, resolved.files);
    const timings = await setupTaskNetwork(this.#o.hostNetns, resolved.plan, this.#helper);
    this.#o.logger?.debug({ uuid: resolved.plan.uuid, ...timings }, "task network set up");
    return { files, timings };
  }

  /**
   * Removes app `uuid`'s netns and host-side veths (idempotent). Without `hostIfNames`, every
   * name the app could have is tried (in the same one command), so no config is needed.
   */
  async teardownTask(uuid: string, hostIfNames?: readonly string[]): Promise<void> {
    const names = hostIfNames ?? Array.from({ length: MAX_APP_INTERFACES }, (_, i) => hostIfName(uuid, i));
    await teardownTaskNetwork(this.#o.hostNetns, netnsName(uuid, this.#prefix), names, this.#helper);
  }

  /** Frees app `uuid`'s addresses (the app was deleted). */
  releaseApp(uuid: string): Promise<void> {
    return this.ipam.releaseApp(uuid);
  }

  /**
   * Removes every netns, bridge, app veth, nft table, dnsmasq and IPAM entry of ours that
   * `wanted` does not own. `apps` are the apps whose configs exist (they keep their addresses).
   */
  async sweep(
    wanted: SweepWanted & { readonly apps: ReadonlySet<string> },
  ): Promise<SweepPlan & { ipam: string[] }> {
    const seen = await observeSweep({ ...this.#o, netnsPrefix: this.#prefix });
    const plan = planSweep(seen, wanted, this.#prefix);
    for (const d of plan.dnsmasq) {
      this.#dnsmasq.delete(d.instance);
      this.#dnsmasqConf.delete(d.instance);
    }
    await applySweep(this.#o.hostNetns, plan);
    for (const base of [this.#o.dataDir, this.#o.runDir]) {
      const dir = join(base, "dnsmasq");
      for (const i of await readdir(dir).catch(() => [] as string[])) {
        if (!wanted.instances.has(i)) await rm(join(dir, i), RM_TREE);
      }
    }
    const ipam = await this.ipam.retain(wanted.apps, wanted.instances);
    this.#o.logger?.info({ ...plan, ipam }, "network sweep done");
    return { ...plan, ipam };
  }

  /** Stops every dnsmasq this object started and the netns helper (bridges, rules and netns stay). */
  async close(): Promise<void> {
    for (const name of [...this.#dnsmasq.keys()]) await this.#stopDnsmasq(name);
    await this.#helper?.close();
  }
}

/** The addresses apps' configs ask for (lease key → ip), to keep the IPAM from giving them out. */
export function reservedAddresses(apps: readonly AppNetworkSpec[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const a of apps)
    for (const i of a.interfaces) if (i.ip !== undefined) m.set(leaseKey(a.uuid, i.name), i.ip);
  return m;
}
