/**
 * Building blocks of the network messages: IPv4 addresses and subnets, kernel interface names,
 * MAC addresses and ports, each with a message naming what was expected.
 */
import { z } from "zod";
import { expected } from "./error-messages.js";
import { isIpv4, isNetworkCidr, parseCidr } from "./ipv4.js";

/** Longest network interface name the kernel accepts (IFNAMSIZ − 1). */
export const MAX_IFNAME_LENGTH = 15;

/** A dotted-quad IPv4 address without leading zeros, such as `10.88.0.10`. */
export const Ipv4AddressSchema = z
  .string({ error: expected("must be a string holding an IPv4 address") })
  .refine(isIpv4, { error: "must be an IPv4 address such as 10.88.0.10" })
  .meta({ format: "ipv4" });

/**
 * An IPv4 subnet in CIDR form with its host bits zero (`10.88.0.0/24`), /8 to /30: a subnet
 * holds its network and broadcast addresses, a gateway and at least one app.
 */
export const Ipv4SubnetSchema = z
  .string({ error: expected("must be a string holding a subnet such as 10.88.0.0/24") })
  .refine((s) => isNetworkCidr(s), {
    error: "must be a subnet in CIDR form with its host bits zero, such as 10.88.0.0/24",
    abort: true,
  })
  .refine(
    (s) => {
      const len = parseCidr(s).prefixLength;
      return len >= 8 && len <= 30;
    },
    { error: "must have a prefix length from /8 to /30" },
  )
  .meta({ format: "cidrv4" });

/** An IPv4 block in CIDR form with its host bits zero, /0 to /32 (`0.0.0.0/0`, `10.1.2.3/32`). */
export const Ipv4CidrSchema = z
  .string({ error: expected("must be a string holding a CIDR block such as 192.168.1.0/24") })
  .refine((s) => isNetworkCidr(s), {
    error: "must be a CIDR block with its host bits zero, such as 192.168.1.0/24 or 10.1.2.3/32",
  })
  .meta({ format: "cidrv4" });

/**
 * A network interface name the kernel accepts: 1–15 characters of `A-Z a-z 0-9 _ . -`, starting
 * with a letter or digit (`eth0`, `enp0s3`, `eth0.100`).
 */
export const IfNameSchema = z
  .string({ error: expected("must be a string holding an interface name such as eth0") })
  .max(MAX_IFNAME_LENGTH, {
    error: `must be at most ${MAX_IFNAME_LENGTH} characters (the kernel's limit for interface names)`,
  })
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, {
    error: "must be an interface name: letters, digits, '_', '.' or '-', starting with a letter or digit",
  });

/**
 * A unicast MAC address in lowercase colon form (`02:16:3e:00:00:01`): the multicast bit of the
 * first octet clear, not all zeros.
 */
export const MacAddressSchema = z
  .string({ error: expected("must be a string holding a MAC address such as 02:16:3e:00:00:01") })
  .regex(/^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/, {
    error: "must be a MAC address in lowercase colon form, such as 02:16:3e:00:00:01",
  })
  .refine((m) => (parseInt(m.slice(0, 2), 16) & 1) === 0, {
    error: "must be a unicast MAC address (the lowest bit of the first octet clear)",
  })
  .refine((m) => m !== "00:00:00:00:00:00", { error: "must not be all zeros" });

/** A TCP or UDP port, 1–65535. */
export const PortSchema = z
  .int({ error: expected("must be a whole number from 1 to 65535") })
  .min(1, { error: "must be from 1 to 65535" })
  .max(65535, { error: "must be from 1 to 65535" });

/** Largest MTU accepted (the kernel's for a bridge and veth). */
export const MAX_MTU = 65535;
/** Smallest MTU accepted (IPv4's minimum). */
export const MIN_MTU = 576;

/** A link MTU in bytes. */
export const MtuSchema = z
  .int({ error: expected("must be a whole number of bytes") })
  .min(MIN_MTU, { error: `must be at least ${MIN_MTU} (IPv4's minimum)` })
  .max(MAX_MTU, { error: `must be at most ${MAX_MTU}` });
