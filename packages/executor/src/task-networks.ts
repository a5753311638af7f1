/**
 * The node's network instances and its tasks' interfaces, as the executor drives them (DESIGN
 * "Networks"): it follows this node's NetworkInstanceConfigs in the controller bucket, applies
 * them through `NodeNetwork` and publishes NetworkInstanceStatus; it resolves each app's
 * interfaces when the executor prepares its task (an unknown network: the app waits); and it is
 * the task's `netns` host resource: the netns, veths (and a VM's taps) before Tasks.Create, gone
 * with the task; addresses gone with the app.
 *
 * Decisions are the pure functions of `@eve-tasks/network` (validation, IPAM, plans);
 * {@link taskNetworkSpec} (pure) gives the spec its netns, resolv.conf, hosts and a VM's NICs.
 */
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { z } from "zod";
import { Publication, subscribe } from "@eve-tasks/bus";
import type { Bus, Subscription } from "@eve-tasks/bus";
import {
  NetworkConfigError,
  hostIfName,
  issuesText,
  netnsName,
  netnsNamePattern,
  reservedAddresses,
  validateAppInterfaces,
  validateInstances,
} from "@eve-tasks/network";
import type {
  AppNetworkSpec,
  InstanceEndpoint,
  NetworkIssue,
  NodeNetwork,
  ResolvedAppNetwork,
} from "@eve-tasks/network";
import {
  DEFAULT_NODE,
  MAX_APP_INTERFACES,
  NetworkInstanceConfigSchema,
  NetworkInstanceStatusSchema,
  networkInstanceStatusKey,
  messageTable,
} from "@eve-tasks/schemas";
import type {
  NetworkInstanceConfig,
  NetworkInstanceStatus,
  OciSpec,
  ReadyTaskConfig,
} from "@eve-tasks/schemas";
import type { TaskHostResource, TearDownScope } from "./host-resources.js";
import type { PreparedTask } from "./prepare-task.js";
import { executorError } from "./status.js";

/** What {@link TaskNetworks.resolve} made of an app's interfaces. */
export type AppNetworkOutcome =
  /** The app has loopback only. */
  | { readonly kind: "none" }
  | { readonly kind: "ready"; readonly resolved: ResolvedAppNetwork }
  /** A network it names is unknown or not usable yet: the app waits (PENDING, `network`). */
  | { readonly kind: "waiting"; readonly message: string }
  /** Its interfaces cannot be used as written: the error for its status. */
  | { readonly kind: "invalid"; readonly message: string };

/** Options of {@link TaskNetworks}. */
export interface TaskNetworksOptions {
  readonly bus: Bus;
  readonly node: string;
  /** The node's networks (bridges in EVE_NET_NS or the executor's own netns). */
  readonly net: NodeNetwork;
  /** Where the tasks' resolv.conf and hosts go: `<dir>/<uuid>/`. */
  readonly filesDir: string;
  /** Prefix of task netns names (the contract's `eve-`; tests give their own). */
  readonly netnsPrefix: string;
  readonly logger: Logger;
}

/** What is read of an instance config that fails the schema. */
const LooseInstanceSchema = z.looseObject({
  name: z.string().optional(),
  node: z.string().optional(),
  subnet: z.unknown().optional(),
  gateway: z.unknown().optional(),
});
type LooseInstance = z.infer<typeof LooseInstanceSchema>;

/** Mount options of a task's resolv.conf and hosts: read-only, nothing to run. */
const FILE_MOUNT_OPTIONS = ["bind", "ro", "nosuid", "nodev", "noexec"];

/**
 * The spec of a task with interfaces (pure): its network namespace is `netnsPath`; a container
 * gets `resolvConf` and `hosts` bound read-only at /etc; a VMM runtime (one that may be given tun)
 * gets a tap per interface, named with its MAC in EVE_TASK_NICS for its loader to make a virtio NIC
 * of. Parts are replaced, never edited.
 */
export function taskNetworkSpec(
  spec: OciSpec,
  resolved: ResolvedAppNetwork,
  o: { netnsPath: string; resolvConf: string; hosts: string },
): OciSpec {
  const namespaces = (spec.linux.namespaces ?? []).filter((n) => n.type !== "network");
  const next: OciSpec = {
    ...spec,
    linux: { ...spec.linux, namespaces: [...namespaces, { type: "network", path: o.netnsPath }] },
  };
  const taps = resolved.plan.interfaces.flatMap((i) => (i.tap === undefined ? [] : [`${i.tap}=${i.mac}`]));
  if (taps.length > 0) {
    // The runtime's loader makes a NIC of each tap (contract: EVE_TASK_NICS, `tap0=<mac>,…`).
    const env = (spec.process.env ?? []).filter((e) => !e.startsWith("EVE_TASK_NICS="));
    next.process = { ...spec.process, env: [...env, `EVE_TASK_NICS=${taps.join(",")}`] };
    return next;
  }
  const files = [
    { destination: "/etc/resolv.conf", source: o.resolvConf },
    { destination: "/etc/hosts", source: o.hosts },
  ];
  next.mounts = [
    ...(spec.mounts ?? []).filter((m) => !files.some((f) => f.destination === m.destination)),
    ...files.map((f) => ({ ...f, type: "bind", options: FILE_MOUNT_OPTIONS })),
  ];
  return next;
}

/**
 * What the network library needs of a TaskConfig. A runtime that may be given `tun` (a VMM, e.g.
 * the `default` runtime's qemu) gets a tap per interface; every other task uses its veth itself.
 */
export function networkSpecOf(d: ReadyTaskConfig): AppNetworkSpec {
  return {
    uuid: d.uuid,
    displayName: d.displayName,
    virtualization: d.runtime?.devices.includes("tun") === true ? "HVM" : "NOHYPER",
    interfaces: d.interfaces,
  };
}

/** An app the networks know: its interfaces and what they resolved to. */
interface KnownApp {
  readonly spec: AppNetworkSpec;
  readonly resolved: ResolvedAppNetwork;
  /** The endpoints as rules and dnsmasq saw them last (to tell a change). */
  readonly key: string;
}

/** The node's networks, for the executor. */
export class TaskNetworks implements TaskHostResource {
  readonly name = "netns";
  readonly #o: TaskNetworksOptions;
  readonly #log: Logger;
  readonly #statuses: Publication<typeof NetworkInstanceStatusSchema>;
  /** The configs of this node's instances, as the controller bucket has them (valid ones). */
  readonly #configs = new Map<string, NetworkInstanceConfig>();
  /** Instance configs that fail the schema: name → message (with what could be read). */
  readonly #invalid = new Map<string, { message: string; subnet?: string; gateway?: string }>();
  /** Instances applied on the node, by the config applied. */
  readonly #applied = new Map<string, NetworkInstanceConfig>();
  /** Apps whose interfaces resolved: their endpoints are in their instances' rules and leases. */
  readonly #apps = new Map<string, KnownApp>();
  /** Apps that have (or wanted) interfaces: an instance change gives them another look. */
  readonly #interested = new Set<string>();
  #sub: Subscription<typeof LooseInstanceSchema> | undefined;
  #kick: (uuid: string) => void = () => undefined;
  /** Rule passes a task's start waits for before Tasks.Start (see setUp and beforeStart). */
  readonly #rulesPending = new Map<string, Promise<void>>();
  #started = false;
  // One pass over the instances at a time; callers share the next one (see #sync).
  #running: Promise<void> = Promise.resolve();
  #next: Promise<void> | undefined;
  #full = false;
  readonly #dirty = new Set<string>();
  // Endpoint changes are numbered; an instance's rules hold every change up to its number in
  // #instanceSeq. A task starts only once its instances hold its app's last change (#rulesFor).
  #seq = 0;
  /** The changes the pass running now covers (0 when none runs). */
  #runningCovers = 0;
  readonly #appSeq = new Map<string, number>();
  readonly #instanceSeq = new Map<string, number>();

  constructor(options: TaskNetworksOptions) {
    this.#o = options;
    this.#log = options.logger.child({ component: "networks" });
    this.#statuses = new Publication(options.bus, messageTable("NetworkInstanceStatus"));
  }

  /** `/run/netns/<prefix><uuid>`: the task's own network namespace. */
  netnsPath(uuid: string): string {
    return join("/run/netns", netnsName(uuid, this.#o.netnsPrefix));
  }

  /**
   * Follows this node's NetworkInstanceConfigs, resolves the interfaces of the apps in `apps`
   * (their addresses are the IPAM's already: rules are complete from the first apply), applies
   * every instance, then sweeps what no wanted app or instance owns: netns and veths of apps
   * without a live task (`live`), instances without a config, addresses of apps without one.
   */
  async start(o: {
    kick: (uuid: string) => void;
    apps: readonly ReadyTaskConfig[];
    /** Every app with a config (any status): they keep their addresses. */
    configured: ReadonlySet<string>;
    /** Apps whose task runs (their netns stays). */
    live: ReadonlySet<string>;
  }): Promise<void> {
    this.#sub = await subscribe(this.#o.bus, {
      agent: "controller",
      type: "NetworkInstanceConfig",
      // Read loosely, checked here: a config failing the schema still gets a status saying why.
      schema: LooseInstanceSchema,
      onCreate: (key, v) => this.#configChanged(key, v),
      onModify: (key, v) => this.#configChanged(key, v),
      onDelete: (key) => this.#configChanged(key, undefined),
      onInvalid: (i) => this.#log.error({ instance: i.key, reason: i.reason }, i.message),
    });
    await this.#sub.synchronized;
    for (const d of o.apps) {
      const outcome = await this.resolve(d).catch((err: unknown) => {
        this.#log.warn({ uuid: d.uuid, err }, "cannot resolve the app's interfaces at start-up");
        return undefined;
      });
      if (outcome?.kind === "ready") this.#remember(d, outcome.resolved);
    }
    this.#started = true;
    this.#full = true;
    await this.#sync();
    const running = new Map<string, string[]>();
    for (const uuid of o.live) {
      const known = this.#apps.get(uuid);
      running.set(
        uuid,
        known
          ? known.resolved.statuses.map((s) => s.hostIfName)
          : Array.from({ length: MAX_APP_INTERFACES }, (_, i) => hostIfName(uuid, i)),
      );
    }
    try {
      const swept = await this.#o.net.sweep({
        running,
        instances: new Set(this.#applied.keys()),
        apps: new Set(o.configured),
      });
      const removed =
        swept.netns.length +
        swept.links.length +
        swept.tables.length +
        swept.dnsmasq.length +
        swept.ipam.length;
      if (removed > 0)
        this.#log.warn({ event: "network-swept", ...swept }, "removed network objects nobody owns");
    } catch (err) {
      // Tasks without interfaces do not need it: they run; the next start sweeps again.
      this.#log.error({ err, event: "network-sweep-failed" }, "cannot sweep the node's network objects");
    }
    // Only now may an instance becoming usable start an app: a start before the sweep would
    // build a netns the sweep then removes (the executor reconciles every app after this).
    this.#kick = o.kick;
  }

  /** Stops following configs and the instances' dnsmasq (bridges, rules and netns stay). */
  async close(): Promise<void> {
    await this.#sub?.close();
    await this.#next?.catch(() => undefined);
    await this.#running.catch(() => undefined);
    await this.#o.net.close();
  }

  // ---- the app side -------------------------------------------------------------------------

  /**
   * Resolves app `d`'s interfaces: checked against the node's instances and the other apps
   * (host ports, names), addresses from the IPAM. A READY outcome registers the app's endpoints:
   * when they changed (a new app, ACLs, port maps), its instances' rules and leases are updated
   * before this resolves.
   */
  async resolve(d: ReadyTaskConfig): Promise<AppNetworkOutcome> {
    const uuid = d.uuid;
    if (d.interfaces.length === 0) {
      this.#interested.delete(uuid);
      if (this.#forget(uuid)) await this.#sync();
      return { kind: "none" };
    }
    this.#interested.add(uuid);
    const spec = networkSpecOf(d);
    const others = [...this.#apps.values()].map((a) => a.spec);
    const { issues, missingNetworks } = validateAppInterfaces(spec, this.#applied, others);
    if (issues.length > 0) return { kind: "invalid", message: `interfaces: ${issuesText(issues)}` };
    if (missingNetworks.length > 0) {
      const why = missingNetworks.map((n) => this.#whyNotUsable(n)).join("; ");
      return { kind: "waiting", message: `waiting for network ${why}` };
    }
    let resolved: ResolvedAppNetwork;
    try {
      resolved = await this.#o.net.resolveApp(spec, this.#applied, reservedAddresses(others));
    } catch (err) {
      if (err instanceof NetworkConfigError)
        return { kind: "invalid", message: `interfaces: ${err.message}` };
      throw err;
    }
    // The rules are applied while the task's netns is built and containerd creates the task;
    // Tasks.Start waits for them (beforeStart).
    if (this.#remember(d, resolved) && this.#started)
      this.#sync().catch((err: unknown) =>
        this.#log.warn({ uuid, err }, "cannot apply the rules for the app's interfaces; its start waits"),
      );
    return { kind: "ready", resolved };
  }

  /** `task` with its network: the spec's netns, files and NICs (see {@link taskNetworkSpec}). */
  prepared(task: PreparedTask, resolved: ResolvedAppNetwork, uuid: string): PreparedTask {
    const files = join(this.#o.filesDir, uuid);
    const spec = taskNetworkSpec(task.spec, resolved, {
      netnsPath: this.netnsPath(uuid),
      resolvConf: join(files, "resolv.conf"),
      hosts: join(files, "hosts"),
    });
    return { ...task, spec, network: resolved };
  }

  /** Why instance `name` cannot take apps, for a waiting app's log. */
  #whyNotUsable(name: string): string {
    const bad = this.#invalid.get(name);
    if (bad) return `${name} (its config is invalid: ${bad.message})`;
    if (this.#configs.has(name)) return `${name} (not ready on node ${this.#o.node})`;
    return `${name} (no NetworkInstanceConfig ${name} for node ${this.#o.node})`;
  }

  /** Registers app `d`'s endpoints; true when they changed (its instances need an update). */
  #remember(d: ReadyTaskConfig, resolved: ResolvedAppNetwork): boolean {
    const key = JSON.stringify(resolved.endpoints);
    const before = this.#apps.get(d.uuid);
    const spec = networkSpecOf(d);
    this.#apps.set(d.uuid, { spec, resolved, key });
    if (before?.key === key) return false;
    this.#appSeq.set(d.uuid, ++this.#seq);
    for (const e of [...resolved.endpoints, ...(before?.resolved.endpoints ?? [])])
      this.#dirty.add(e.instance);
    return true;
  }

  /** Drops app `uuid`'s endpoints; true when it had any. */
  #forget(uuid: string): boolean {
    const before = this.#apps.get(uuid);
    if (!before) return false;
    this.#apps.delete(uuid);
    this.#appSeq.delete(uuid);
    for (const e of before.resolved.endpoints) this.#dirty.add(e.instance);
    return true;
  }

  // ---- the host resource --------------------------------------------------------------------

  /**
   * Builds the task's netns (Tasks.Create needs it) and asks for its rules, which
   * {@link beforeStart} waits for: they are applied while containerd creates the task.
   */
  async setUp(uuid: string, task: PreparedTask): Promise<void> {
    const resolved = task.network;
    if (!resolved) return;
    const rules = this.#rulesFor(uuid);
    rules.catch(() => undefined); // awaited by beforeStart; a failed setup drops it
    this.#rulesPending.set(uuid, rules);
    try {
      const { timings } = await this.#o.net.setupTask(resolved, join(this.#o.filesDir, uuid));
      this.#log.debug({ uuid, event: "netns-ready", ...timings }, "task network set up");
    } catch (err) {
      this.#rulesPending.delete(uuid);
      throw err;
    }
  }

  /** Resolves once the rules for the task's interfaces hold: no task runs on a port without them. */
  async beforeStart(uuid: string): Promise<void> {
    const rules = this.#rulesPending.get(uuid);
    this.#rulesPending.delete(uuid);
    await rules;
  }

  /**
   * Resolves once the node's rules and leases hold app `uuid`'s endpoints as last resolved (its
   * port filters, ACLs, port maps): a task never runs on a port without them.
   *
   * @throws Error when the pass that should have applied them failed.
   */
  async #rulesFor(uuid: string): Promise<void> {
    const wanted = this.#appSeq.get(uuid) ?? 0;
    const missing = (): string[] =>
      [...new Set(this.#apps.get(uuid)?.resolved.endpoints.map((e) => e.instance) ?? [])].filter(
        (n) => (this.#instanceSeq.get(n) ?? 0) < wanted,
      );
    const owed = missing();
    if (owed.length === 0) return;
    // Owed by a pass that failed, or by one that left the instance as it was (its new config
    // refused): this pass tries their rules again.
    if (this.#runningCovers < wanted) for (const n of owed) this.#dirty.add(n);
    const pass = this.#runningCovers >= wanted ? this.#running : this.#sync();
    await pass.catch(() => undefined);
    const still = missing();
    if (still.length > 0)
      throw new Error(
        `the rules for the app's interfaces are not applied on network instance ${still.join(", ")} (see its status)`,
      );
  }

  async tearDown(uuid: string, scope: TearDownScope): Promise<void> {
    this.#rulesPending.delete(uuid);
    const known = this.#apps.get(uuid);
    await this.#o.net.teardownTask(
      uuid,
      known?.resolved.statuses.map((s) => s.hostIfName),
    );
    if (scope !== "app-removed") return;
    await rm(join(this.#o.filesDir, uuid), { recursive: true, force: true });
    this.#interested.delete(uuid);
    const had = this.#forget(uuid);
    await this.#o.net.releaseApp(uuid);
    if (had) await this.#sync();
  }

  async owners(): Promise<Iterable<string>> {
    const pattern = netnsNamePattern(this.#o.netnsPrefix);
    const names = await readdir("/run/netns").catch(() => [] as string[]);
    return names.filter((n) => pattern.test(n)).map((n) => n.slice(this.#o.netnsPrefix.length));
  }

  // ---- instances ----------------------------------------------------------------------------

  #configChanged(key: string, value: LooseInstance | undefined): void {
    this.#configs.delete(key);
    this.#invalid.delete(key);
    if (value !== undefined && (value.node ?? DEFAULT_NODE) === this.#o.node) {
      const parsed = NetworkInstanceConfigSchema.safeParse(value);
      if (parsed.success && parsed.data.name === key) this.#configs.set(key, parsed.data);
      else {
        const message = parsed.success
          ? `its name ${parsed.data.name} is not its key ${key}`
          : parsed.error.issues
              .map((i) => (i.path.length > 0 ? `${i.path.join(".")}: ${i.message}` : i.message))
              .join("; ");
        this.#invalid.set(key, {
          message,
          ...(typeof value.subnet === "string" ? { subnet: value.subnet } : {}),
          ...(typeof value.gateway === "string" ? { gateway: value.gateway } : {}),
        });
      }
    }
    if (!this.#started) return;
    this.#full = true;
    void this.#sync().catch((err: unknown) =>
      this.#log.error(
        { err, instance: key },
        "cannot apply the network instances; retried at the next change",
      ),
    );
  }

  /**
   * Runs a pass over the instances after everything asked so far: callers arriving while a pass
   * runs share the one after it.
   */
  #sync(): Promise<void> {
    if (this.#next) return this.#next;
    const next = this.#running
      .catch(() => undefined)
      .then(() => {
        this.#next = undefined;
        const pass = this.#pass();
        this.#running = pass;
        return pass;
      });
    this.#next = next;
    return next;
  }

  /** Endpoints on instance `name` of every app that resolved. */
  #endpointsOn(name: string): InstanceEndpoint[] {
    const out: InstanceEndpoint[] = [];
    for (const a of [...this.#apps.values()].sort((x, y) => x.spec.uuid.localeCompare(y.spec.uuid)))
      for (const e of a.resolved.endpoints) if (e.instance === name) out.push(e.endpoint);
    return out;
  }

  #appsOn(name: string): string[] {
    return [...this.#apps.values()]
      .filter((a) => a.resolved.endpoints.some((e) => e.instance === name))
      .map((a) => a.spec.uuid)
      .sort();
  }

  /** One pass: the instances whose configs changed (all of them), or the rules of those whose apps did. */
  async #pass(): Promise<void> {
    const full = this.#full;
    const dirty = new Set(this.#dirty);
    const covers = this.#seq;
    this.#runningCovers = covers;
    this.#full = false;
    this.#dirty.clear();
    try {
      await this.#passOver(full, dirty, covers);
    } catch (err) {
      // What this pass should have applied stays to do: the next pass tries it again.
      if (full) this.#full = true;
      for (const n of dirty) this.#dirty.add(n);
      throw err;
    } finally {
      this.#runningCovers = 0;
    }
  }

  /** Applies the instances (`full`) or the rules of the `dirty` ones, as of change `covers`. */
  async #passOver(full: boolean, dirty: ReadonlySet<string>, covers: number): Promise<void> {
    // An instance whose config is gone is deleted by a full pass, once its last app left.
    if (full || [...dirty].some((n) => !this.#configs.has(n))) return this.#applyAll(covers);
    for (const name of dirty) {
      const ni = this.#applied.get(name);
      if (!ni) continue;
      try {
        await this.#o.net.updateEndpoints(ni, this.#endpointsOn(name));
        this.#instanceSeq.set(name, covers);
        await this.#publish(ni, null);
      } catch (err) {
        this.#log.error({ err, instance: name }, "cannot update the instance's rules and leases");
        await this.#publish(ni, `cannot update its rules and leases: ${(err as Error).message}`);
        throw err;
      }
    }
  }

  async #applyAll(covers: number): Promise<void> {
    // Instances applied keep their place: a new config overlapping them is the one refused.
    const configs = [...this.#configs.values()].sort(
      (a, b) =>
        Number(this.#applied.has(b.name)) - Number(this.#applied.has(a.name)) || a.name.localeCompare(b.name),
    );
    const issues = validateInstances(configs, await this.#o.net.hostLinks());
    const before = new Set(this.#applied.keys());
    for (const ni of configs) {
      const problems: NetworkIssue[] | undefined = issues.get(ni.name);
      if (problems) {
        const message = issuesText(problems);
        const kept = this.#applied.get(ni.name);
        this.#log.warn({ instance: ni.name, event: "network-invalid" }, message);
        // A bad change never takes down what runs: the instance stays as it was applied.
        if (kept) await this.#publish(kept, `its latest config is not applied: ${message}`);
        else await this.#publishFailed(ni.name, ni.subnet, ni.gateway, message);
        continue;
      }
      try {
        const bridge = await this.#o.net.applyInstance(ni, this.#endpointsOn(ni.name));
        this.#instanceSeq.set(ni.name, covers);
        const changed = this.#applied.get(ni.name);
        this.#applied.set(ni.name, ni);
        await this.#publish(ni, null, bridge);
        if (!changed || JSON.stringify(changed) !== JSON.stringify(ni)) this.#kickInterested();
      } catch (err) {
        const message = `cannot apply: ${(err as Error).message}`;
        this.#log.error({ err, instance: ni.name }, message);
        await this.#publishFailed(ni.name, ni.subnet, ni.gateway, message);
      }
    }
    for (const [name, bad] of this.#invalid) {
      if (this.#applied.has(name)) {
        await this.#publish(this.#applied.get(name)!, `its latest config is not applied: ${bad.message}`);
      } else if (bad.subnet !== undefined && bad.gateway !== undefined) {
        await this.#publishFailed(name, bad.subnet, bad.gateway, bad.message);
      }
    }
    // Deleted instances go once no app uses them; until then they stay, and say so.
    for (const [name, ni] of this.#applied) {
      if (this.#configs.has(name) || this.#invalid.has(name)) continue;
      const users = this.#appsOn(name);
      if (users.length > 0) {
        await this.#publish(ni, `its config was deleted; it stays while apps use it: ${users.join(", ")}`);
        continue;
      }
      await this.#o.net.deleteInstance(name);
      this.#applied.delete(name);
      this.#instanceSeq.delete(name);
      await this.#statuses.unpublish(networkInstanceStatusKey(this.#o.node, name));
    }
    // Statuses of instances that never applied and have no config any more.
    for (const [key] of await this.#statuses.getAll()) {
      const name = key.slice(this.#o.node.length + 1);
      if (!key.startsWith(`${this.#o.node}.`)) continue;
      if (!this.#configs.has(name) && !this.#invalid.has(name) && !this.#applied.has(name))
        await this.#statuses.unpublish(key);
    }
    if ([...before].some((n) => !this.#applied.has(n))) this.#kickInterested();
  }

  #kickInterested(): void {
    for (const uuid of this.#interested) this.#kick(uuid);
  }

  async #publish(ni: NetworkInstanceConfig, error: string | null, bridge?: string): Promise<void> {
    const key = networkInstanceStatusKey(this.#o.node, ni.name);
    const status: NetworkInstanceStatus = {
      schemaVersion: 1,
      name: ni.name,
      node: this.#o.node,
      state: "READY",
      bridge: bridge ?? this.#lastBridge.get(ni.name) ?? null,
      subnet: ni.subnet,
      gateway: ni.gateway,
      apps: this.#appsOn(ni.name),
      error: error === null ? null : this.#error(key, error),
    };
    if (bridge !== undefined) this.#lastBridge.set(ni.name, bridge);
    await this.#put(key, status);
  }

  readonly #lastBridge = new Map<string, string>();
  readonly #published = new Map<string, NetworkInstanceStatus>();

  async #publishFailed(name: string, subnet: string, gateway: string, message: string): Promise<void> {
    const key = networkInstanceStatusKey(this.#o.node, name);
    const status = NetworkInstanceStatusSchema.safeParse({
      schemaVersion: 1,
      name,
      node: this.#o.node,
      state: "FAILED",
      bridge: null,
      subnet,
      gateway,
      apps: [],
      error: this.#error(key, message),
    });
    if (status.success) await this.#put(key, status.data);
    else
      this.#log.error(
        { instance: name },
        `network instance FAILED (no status: its subnet or gateway is unreadable): ${message}`,
      );
  }

  /** The error for a status: the one published before when it says the same (its time kept). */
  #error(key: string, message: string): NetworkInstanceStatus["error"] {
    const before = this.#published.get(key)?.error;
    return before?.message === message ? before : executorError(message, 1);
  }

  async #put(key: string, status: NetworkInstanceStatus): Promise<void> {
    const before = this.#published.get(key);
    if (before && JSON.stringify(before) === JSON.stringify(status)) return;
    this.#published.set(key, status);
    await this.#statuses.publish(key, status);
    this.#log.info(
      { instance: status.name, event: "network-status", state: status.state, apps: status.apps.length },
      status.error
        ? `network instance ${status.state}: ${status.error.message}`
        : `network instance ${status.state}`,
    );
  }
}
