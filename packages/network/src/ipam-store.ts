/**
 * The IPAM's file-backed store: one JSON file per instance under `<dir>/<instance>.json`, written
 * atomically, every change serialized through one queue so concurrent callers in this process
 * never interleave a read-modify-write.
 */
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { Ipv4AddressSchema, Ipv4SubnetSchema, NameSchema } from "@eve-tasks/schemas";
import { NetworkError } from "./errors.js";
import { writeFileAtomic } from "./files.js";
import type { IpamState, IpRequest } from "./ipam.js";
import { assignAddresses, emptyIpam, rebaseIpam, releaseApp, retainApps } from "./ipam.js";

const IpamFileSchema = z.object({
  schemaVersion: z.literal(1),
  instance: NameSchema,
  subnet: Ipv4SubnetSchema,
  gateway: Ipv4AddressSchema,
  leases: z.record(z.string().regex(/^[0-9a-f-]{36}\/[A-Za-z0-9_.-]{1,15}$/), Ipv4AddressSchema),
});

/** An instance as the IPAM needs it. */
export interface IpamInstance {
  readonly name: string;
  readonly subnet: string;
  readonly gateway: string;
}

/** File-backed IPAM of every instance on the node. */
export class IpamStore {
  readonly #dir: string;
  #queue: Promise<unknown> = Promise.resolve();
  /** Instances whose file this store has read or written as it is now (no write needed when unchanged). */
  readonly #known = new Set<string>();

  /** @param dir directory holding one `<instance>.json` per instance (created when needed). */
  constructor(dir: string) {
    this.#dir = dir;
  }

  /** Runs `fn` after every earlier call has finished. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  #path(instance: string): string {
    return join(this.#dir, `${instance}.json`);
  }

  async #load(instance: IpamInstance): Promise<IpamState> {
    let text: string;
    try {
      text = await readFile(this.#path(instance.name), "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT")
        return emptyIpam(instance.subnet, instance.gateway);
      throw err;
    }
    let parsed;
    try {
      parsed = IpamFileSchema.parse(JSON.parse(text));
    } catch (err) {
      throw new NetworkError(`IPAM file ${this.#path(instance.name)} is unreadable: ${String(err)}`, {
        context: { path: this.#path(instance.name) },
        cause: err,
      });
    }
    return rebaseIpam(parsed, instance.subnet, instance.gateway).state;
  }

  async #save(instance: string, state: IpamState): Promise<void> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    const file = {
      schemaVersion: 1,
      instance,
      subnet: state.subnet,
      gateway: state.gateway,
      leases: state.leases,
    };
    await writeFileAtomic(this.#path(instance), `${JSON.stringify(file, null, 2)}\n`, 0o600);
  }

  /**
   * Gives app interfaces on `instance` their addresses (see {@link assignAddresses}) and persists
   * them before returning.
   *
   * @throws NetworkConfigError naming the field when an address is invalid or taken.
   */
  assign(
    instance: IpamInstance,
    requests: readonly IpRequest[],
    reserved?: ReadonlyMap<string, string>,
  ): Promise<string[]> {
    return this.#serial(async () => {
      const before = await this.#load(instance);
      const { state, addresses } = assignAddresses(before, requests, reserved);
      const same =
        this.#known.has(instance.name) && JSON.stringify(state.leases) === JSON.stringify(before.leases);
      if (!same) await this.#save(instance.name, state);
      this.#known.add(instance.name);
      return addresses;
    });
  }

  /** The leases of `instance` (lease key → ip), re-based on its current subnet. */
  leases(instance: IpamInstance): Promise<Readonly<Record<string, string>>> {
    return this.#serial(async () => (await this.#load(instance)).leases);
  }

  /** Frees every address of app `uuid` in every instance (the app was deleted). */
  releaseApp(uuid: string): Promise<void> {
    return this.#serial(async () => {
      for (const name of await this.#instances()) {
        const state = await this.#loadRaw(name);
        if (state === undefined) continue;
        const next = releaseApp(state, uuid);
        if (Object.keys(next.leases).length !== Object.keys(state.leases).length)
          await this.#save(name, next);
      }
    });
  }

  /**
   * Keeps only the leases of `wantedApps` and the files of `wantedInstances`; returns what was
   * removed (`<instance>:<lease key>` and `<instance>` for whole files).
   */
  retain(wantedApps: ReadonlySet<string>, wantedInstances: ReadonlySet<string>): Promise<string[]> {
    return this.#serial(async () => {
      const removed: string[] = [];
      for (const name of await this.#instances()) {
        if (!wantedInstances.has(name)) {
          await rm(this.#path(name), { force: true });
          removed.push(name);
          continue;
        }
        const state = await this.#loadRaw(name);
        if (state === undefined) continue;
        const { state: next, dropped } = retainApps(state, wantedApps);
        if (dropped.length > 0) {
          await this.#save(name, next);
          removed.push(...dropped.map((k) => `${name}:${k}`));
        }
      }
      return removed;
    });
  }

  async #instances(): Promise<string[]> {
    try {
      return (await readdir(this.#dir))
        .filter((f) => f.endsWith(".json") && !f.startsWith("."))
        .map((f) => f.slice(0, -".json".length));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
  }

  async #loadRaw(name: string): Promise<IpamState | undefined> {
    try {
      const parsed = IpamFileSchema.parse(JSON.parse(await readFile(this.#path(name), "utf8")));
      return { subnet: parsed.subnet, gateway: parsed.gateway, leases: parsed.leases };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new NetworkError(`IPAM file ${this.#path(name)} is unreadable: ${String(err)}`, { cause: err });
    }
  }
}
