/**
 * IPAM, the pure core: which address each (app, interface) holds in one instance's subnet, and
 * the rules for giving one out. Addresses stay an app's until it is released; a requested address
 * is checked; a free one is the lowest address not held, not the gateway and not reserved by
 * another app's config. The file-backed store is {@link IpamStore} (ipam-store.ts).
 */
import { broadcastOf, cidrContains, intToIpv4, ipv4ToInt, parseCidr } from "@eve-tasks/schemas";
import { NetworkConfigError } from "./errors.js";

/** The key of one lease: `<uuid>/<interface name>`. */
export function leaseKey(uuid: string, ifName: string): string {
  return `${uuid}/${ifName}`;
}

/** The uuid part of a {@link leaseKey}. */
export function leaseUuid(key: string): string {
  return key.slice(0, key.indexOf("/"));
}

/** The leases of one instance: lease key → address. */
export interface IpamState {
  /** The subnet the leases are in. */
  readonly subnet: string;
  /** The instance's gateway, never leased. */
  readonly gateway: string;
  /** Lease key (`<uuid>/<ifName>`) → dotted-quad address. */
  readonly leases: Readonly<Record<string, string>>;
}

/** One interface asking for an address. */
export interface IpRequest {
  /** The app. */
  readonly uuid: string;
  /** The interface's name inside the task. */
  readonly ifName: string;
  /** The address the config gives, if any. */
  readonly ip?: string | undefined;
  /** The config field the request comes from, for messages (e.g. `interfaces[0].ip`). */
  readonly field: string;
}

/** An empty state for an instance. */
export function emptyIpam(subnet: string, gateway: string): IpamState {
  return { subnet, gateway, leases: {} };
}

/**
 * The state re-based on a (possibly changed) subnet and gateway: leases that are no longer
 * valid addresses there are dropped (and listed).
 */
export function rebaseIpam(
  state: IpamState,
  subnet: string,
  gateway: string,
): { state: IpamState; dropped: string[] } {
  const leases: Record<string, string> = {};
  const dropped: string[] = [];
  for (const [key, ip] of Object.entries(state.leases)) {
    if (addressProblem(subnet, gateway, ip) === undefined) leases[key] = ip;
    else dropped.push(key);
  }
  return { state: { subnet, gateway, leases }, dropped };
}

/** Why `ip` cannot be an app's address in `subnet` with `gateway`, or undefined if it can. */
export function addressProblem(subnet: string, gateway: string, ip: string): string | undefined {
  const c = parseCidr(subnet);
  const n = ipv4ToInt(ip);
  if (!cidrContains(c, n)) return `${ip} is outside the subnet ${subnet}`;
  if (n === c.network) return `${ip} is the network address of ${subnet}`;
  if (n === broadcastOf(c)) return `${ip} is the broadcast address of ${subnet}`;
  if (ip === gateway) return `${ip} is the gateway of ${subnet}`;
  return undefined;
}

/**
 * Gives each request of one app an address, all or nothing. An interface keeps the address it
 * holds unless its config asks for another; a requested address must be valid and not held by
 * another app; otherwise the lowest free address is taken, skipping `reserved` (addresses other
 * apps' configs ask for, lease key → ip) so an app started later still gets the address it names.
 *
 * @throws NetworkConfigError naming the request's field.
 */
export function assignAddresses(
  state: IpamState,
  requests: readonly IpRequest[],
  reserved: ReadonlyMap<string, string> = new Map(),
): { state: IpamState; addresses: string[] } {
  const leases: Record<string, string> = { ...state.leases };
  const holder = new Map<string, string>();
  for (const [key, ip] of Object.entries(leases)) holder.set(ip, key);
  const reservedBy = new Map<string, string>();
  for (const [key, ip] of reserved) reservedBy.set(ip, key);

  const addresses: string[] = [];
  // Requested addresses first, so a dynamic interface of the same app cannot take one.
  const order = [...requests.keys()].sort(
    (a, b) => Number(requests[a]?.ip === undefined) - Number(requests[b]?.ip === undefined),
  );
  for (const i of order) {
    const r = requests[i];
    if (r === undefined) continue;
    const key = leaseKey(r.uuid, r.ifName);
    const held = leases[key];
    let ip: string;
    if (r.ip !== undefined) {
      const problem = addressProblem(state.subnet, state.gateway, r.ip);
      if (problem !== undefined) throw new NetworkConfigError(r.field, problem);
      const other = holder.get(r.ip);
      if (other !== undefined && other !== key) {
        throw new NetworkConfigError(
          r.field,
          `${r.ip} is taken by ${leaseUuid(other) === r.uuid ? "another interface of this app" : `app ${leaseUuid(other)}`}`,
        );
      }
      ip = r.ip;
    } else if (held !== undefined && addressProblem(state.subnet, state.gateway, held) === undefined) {
      ip = held;
    } else {
      ip = lowestFree(state, holder, reservedBy, r.uuid, r.field);
    }
    if (held !== undefined && held !== ip) holder.delete(held);
    leases[key] = ip;
    holder.set(ip, key);
    addresses[i] = ip;
  }
  return { state: { ...state, leases }, addresses };
}

function lowestFree(
  state: IpamState,
  holder: ReadonlyMap<string, string>,
  reservedBy: ReadonlyMap<string, string>,
  uuid: string,
  field: string,
): string {
  const c = parseCidr(state.subnet);
  const last = broadcastOf(c);
  const gw = ipv4ToInt(state.gateway);
  for (let n = c.network + 1; n < last; n++) {
    if (n === gw) continue;
    const ip = intToIpv4(n);
    if (holder.has(ip)) continue;
    const r = reservedBy.get(ip);
    if (r !== undefined && leaseUuid(r) !== uuid) continue;
    return ip;
  }
  throw new NetworkConfigError(field, `no free address is left in ${state.subnet}`);
}

/** The state without app `uuid`'s leases. */
export function releaseApp(state: IpamState, uuid: string): IpamState {
  const leases = Object.fromEntries(Object.entries(state.leases).filter(([k]) => leaseUuid(k) !== uuid));
  return { ...state, leases };
}

/** The state with only the leases of apps in `wanted`; also lists the keys dropped. */
export function retainApps(
  state: IpamState,
  wanted: ReadonlySet<string>,
): { state: IpamState; dropped: string[] } {
  const leases: Record<string, string> = {};
  const dropped: string[] = [];
  for (const [k, ip] of Object.entries(state.leases)) {
    if (wanted.has(leaseUuid(k))) leases[k] = ip;
    else dropped.push(k);
  }
  return { state: { ...state, leases }, dropped };
}
