/**
 * IPv4 arithmetic on 32-bit unsigned integers: the one place addresses and CIDR blocks are turned
 * into numbers, used by the schemas' refinements and by `@eve-tasks/network` (IPAM, validation,
 * rendering). Inputs are validated strings (dotted quad, `a.b.c.d/len`); a malformed one throws.
 */

/** A CIDR block as numbers: the network address, the prefix length and the netmask. */
export interface Ipv4Cidr {
  /** Network address (host bits zero) as an unsigned 32-bit integer. */
  readonly network: number;
  /** Prefix length, 0–32. */
  readonly prefixLength: number;
  /** Netmask as an unsigned 32-bit integer. */
  readonly mask: number;
}

const QUAD =
  /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)$/;

/** Whether `text` is a dotted-quad IPv4 address without leading zeros. */
export function isIpv4(text: string): boolean {
  return QUAD.test(text);
}

/** `10.0.0.1` → 167772161. Throws on anything but a dotted quad. */
export function ipv4ToInt(text: string): number {
  const m = QUAD.exec(text);
  if (!m) throw new Error(`not an IPv4 address: ${JSON.stringify(text)}`);
  return ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
}

/** 167772161 → `10.0.0.1`. */
export function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** The netmask of a prefix length: 24 → 0xffffff00. */
export function prefixMask(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

/** Parses `a.b.c.d/len` (host bits may be set; see {@link isNetworkCidr}). Throws when malformed. */
export function parseCidr(text: string): Ipv4Cidr & { address: number } {
  const slash = text.indexOf("/");
  const lenText = text.slice(slash + 1);
  if (slash < 0 || !/^(\d|[12]\d|3[0-2])$/.test(lenText)) {
    throw new Error(`not an IPv4 CIDR block: ${JSON.stringify(text)}`);
  }
  const address = ipv4ToInt(text.slice(0, slash));
  const prefixLength = Number(lenText);
  const mask = prefixMask(prefixLength);
  return { address, network: (address & mask) >>> 0, prefixLength, mask };
}

/** Whether `text` is a CIDR block whose host bits are zero (`10.88.0.0/24`, not `10.88.0.1/24`). */
export function isNetworkCidr(text: string): boolean {
  try {
    const c = parseCidr(text);
    return c.address === c.network;
  } catch {
    return false;
  }
}

/** The broadcast address of a block. */
export function broadcastOf(cidr: Ipv4Cidr): number {
  return (cidr.network | (~cidr.mask >>> 0)) >>> 0;
}

/** Whether address `ip` (an integer) lies in `cidr`. */
export function cidrContains(cidr: Ipv4Cidr, ip: number): boolean {
  return (ip & cidr.mask) >>> 0 === cidr.network;
}

/** Whether two blocks share any address. */
export function cidrsOverlap(a: Ipv4Cidr, b: Ipv4Cidr): boolean {
  const mask = a.prefixLength < b.prefixLength ? a.mask : b.mask;
  return (a.network & mask) >>> 0 === (b.network & mask) >>> 0;
}

/** `10.88.0.0/24` in canonical text. */
export function formatCidr(cidr: Ipv4Cidr): string {
  return `${intToIpv4(cidr.network)}/${cidr.prefixLength}`;
}
