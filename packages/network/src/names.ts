/**
 * The names this package gives kernel objects and files, all derived from an app's uuid or an
 * instance's name, so the same config always yields the same names and the sweep can tell ours
 * from anyone else's. Interface names fit the kernel's 15 characters.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";

/** Where `ip netns` keeps named network namespaces. */
export const NETNS_DIR = "/run/netns";
/** Default prefix of a task's netns: `/run/netns/eve-<uuid>` (contract v2). */
export const DEFAULT_NETNS_PREFIX = "eve-";
/** Prefix of every nftables table of a network instance: `eve_ni_<name>`. */
export const NFT_TABLE_PREFIX = "eve_ni_";
/** Prefix of a bridge named after its instance: `eb-<name>` (names up to 12 characters). */
export const BRIDGE_PREFIX = "eb-";
/** Prefix of a bridge named by a hash of a longer instance name: `ebh<12 hex>`. */
export const HASHED_BRIDGE_PREFIX = "ebh";
/** Prefix of the host-side end of an app's veth: `ev<10 hex of the uuid's hash>-<index>`. */
export const HOST_VETH_PREFIX = "ev";
/**
 * Prefix of a VM interface's tap inside the task's netns: `tap<index>`, the names the runtime
 * contract's `EVE_TASK_NICS` (`tap0=<mac>,…`) shows a loader.
 */
export const TAP_PREFIX = "tap";
/** Matches every name {@link tapName} can return. */
export const TAP_NAME_PATTERN = /^tap\d+$/;

const READABLE_BRIDGE_MAX = 15 - BRIDGE_PREFIX.length;

/** Matches every bridge name {@link bridgeName} can return. */
export const BRIDGE_NAME_PATTERN = /^(?:eb-[A-Za-z0-9_-]{1,12}|ebh[0-9a-f]{12})$/;
/** Matches every host-side veth name {@link hostIfName} can return. */
export const HOST_VETH_PATTERN = /^ev[0-9a-f]{10}-\d{1,2}$/;
/** Matches a task netns name with the given prefix and captures the uuid. */
export function netnsNamePattern(prefix = DEFAULT_NETNS_PREFIX): RegExp {
  const p = prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`^${p}([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$`);
}

function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/**
 * The bridge of network instance `name`: `eb-<name>` when the name has at most 12 characters,
 * else `ebh` and 12 hex digits of its SHA-256 (the two forms never collide: the third character
 * differs).
 */
export function bridgeName(instance: string): string {
  if (instance.length <= READABLE_BRIDGE_MAX && /^[A-Za-z0-9_-]+$/.test(instance)) {
    return `${BRIDGE_PREFIX}${instance}`;
  }
  return `${HASHED_BRIDGE_PREFIX}${sha256Hex(`bridge:${instance}`).slice(0, 12)}`;
}

/**
 * The host-side end of interface `index` of app `uuid`: `ev` + 10 hex digits of SHA-256(uuid) +
 * `-<index>` (at most 15 characters for the 16 interfaces an app may have). The hash keeps it
 * unique per app with 40 bits; the task-executor's validation refuses the rare collision.
 */
export function hostIfName(uuid: string, index: number): string {
  if (!Number.isInteger(index) || index < 0 || index > 99) throw new RangeError(`interface index ${index}`);
  return `${HOST_VETH_PREFIX}${sha256Hex(uuid).slice(0, 10)}-${index}`;
}

/** The tap of VM interface `index`, inside the task's netns: `tap<index>`. */
export function tapName(index: number): string {
  return `${TAP_PREFIX}${index}`;
}

function macFromHash(hex: string): string {
  // 0x02: locally administered, unicast.
  const bytes = ["02", ...(hex.slice(0, 10).match(/../g) ?? [])];
  return bytes.join(":");
}

/** The MAC of interface `index` of app `uuid` when the config gives none: `02:` + 5 bytes of a hash. */
export function appMac(uuid: string, index: number): string {
  return macFromHash(sha256Hex(`mac:${uuid}:${index}`));
}

/**
 * The MAC of an instance's bridge. Set explicitly so it does not follow its lowest port's MAC
 * (which would change the gateway's MAC under the apps' ARP caches as apps come and go).
 */
export function bridgeMac(instance: string): string {
  return macFromHash(sha256Hex(`bridge-mac:${instance}`));
}

/** The task netns name of app `uuid`: `eve-<uuid>` (or `<prefix><uuid>`). */
export function netnsName(uuid: string, prefix = DEFAULT_NETNS_PREFIX): string {
  return `${prefix}${uuid}`;
}

/** The path of app `uuid`'s netns, for the OCI spec: `/run/netns/eve-<uuid>`. */
export function netnsPath(uuid: string, prefix = DEFAULT_NETNS_PREFIX): string {
  return join(NETNS_DIR, netnsName(uuid, prefix));
}

/** The nftables table (family inet) of network instance `name`: `eve_ni_<name>`. */
export function nftTableName(instance: string): string {
  return `${NFT_TABLE_PREFIX}${instance}`;
}

/**
 * A DNS label for an app: its display name lowercased with runs of other characters turned into
 * `-` (at most 63 characters), or undefined when nothing is left.
 */
export function dnsLabel(displayName: string): string | undefined {
  const label = displayName
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63)
    .replace(/-+$/g, "");
  return label === "" ? undefined : label;
}
