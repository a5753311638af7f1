/**
 * NetworkInstanceConfig: one network instance of a node, published by users and controllers at
 * `$KV.controller.NetworkInstanceConfig.<name>`; after EVE's network instances.
 */
import { z } from "zod";
import { DEFAULT_NODE } from "./app-instance-config.js";
import { expected } from "./error-messages.js";
import { broadcastOf, cidrContains, ipv4ToInt, parseCidr } from "./ipv4.js";
import { IfNameSchema, Ipv4AddressSchema, Ipv4SubnetSchema, MtuSchema } from "./network-primitives.js";
import { NameSchema, SchemaVersionSchema } from "./primitives.js";

/** The MTU of an instance's bridge and its apps' interfaces when the config gives none. */
export const DEFAULT_NETWORK_MTU = 1500;
/** Most upstream DNS servers an instance may name. */
export const MAX_DNS_SERVERS = 8;

/**
 * `local`: a routed bridge with the gateway address, DHCP and DNS by dnsmasq, NAT out of the
 * uplink; `switch`: a bridge enslaving the uplink, so apps sit on the uplink's L2.
 */
export const NetworkInstanceTypeSchema = z.enum(["local", "switch"], {
  error: expected('must be "local" (routed bridge with NAT) or "switch" (bridge on the uplink)'),
});
/** The type of a network instance. */
export type NetworkInstanceType = z.infer<typeof NetworkInstanceTypeSchema>;

/** One network instance: its type, subnet, gateway, uplink, MTU and upstream DNS servers. */
export const NetworkInstanceConfigSchema = z
  .strictObject(
    {
      schemaVersion: SchemaVersionSchema,
      name: NameSchema.meta({
        description: "the instance's name; equals the KV key; apps name it in network",
      }),
      node: NameSchema.default(DEFAULT_NODE).meta({ description: "node the instance lives on" }),
      type: NetworkInstanceTypeSchema,
      subnet: Ipv4SubnetSchema.meta({ description: "the instance's IPv4 subnet, such as 10.88.0.0/24" }),
      gateway: Ipv4AddressSchema.meta({
        description:
          "local: the bridge's address, the apps' default route and DNS server; switch: the router on the uplink's L2",
      }),
      uplink: IfNameSchema.nullable().default(null).meta({
        description: "the node's interface to NAT out of (local) or to bridge (switch); null: none",
      }),
      mtu: MtuSchema.default(DEFAULT_NETWORK_MTU).meta({
        description: "MTU of the bridge and the apps' interfaces",
      }),
      dns: z
        .array(Ipv4AddressSchema, { error: expected("must be a list of IPv4 addresses") })
        .max(MAX_DNS_SERVERS, { error: `must hold at most ${MAX_DNS_SERVERS} servers` })
        .default([])
        .meta({ description: "upstream DNS servers the instance's dnsmasq forwards to (local)" }),
    },
    { error: expected() },
  )
  .superRefine((ni, ctx) => {
    let subnet;
    try {
      subnet = parseCidr(ni.subnet);
      ipv4ToInt(ni.gateway);
    } catch {
      return; // the field's own issue says what is wrong
    }
    const gw = ipv4ToInt(ni.gateway);
    if (!cidrContains(subnet, gw)) {
      ctx.addIssue({
        code: "custom",
        message: `gateway ${ni.gateway} is outside the subnet ${ni.subnet}`,
        path: ["gateway"],
      });
    } else if (gw === subnet.network || gw === broadcastOf(subnet)) {
      ctx.addIssue({
        code: "custom",
        message: `gateway ${ni.gateway} is the ${gw === subnet.network ? "network" : "broadcast"} address of ${ni.subnet}`,
        path: ["gateway"],
      });
    }
    if (ni.type === "switch" && ni.uplink === null) {
      ctx.addIssue({
        code: "custom",
        message: "a switch instance needs an uplink (the interface whose L2 its apps join)",
        path: ["uplink"],
      });
    }
  });

/** A network instance's config with defaults applied. */
export type NetworkInstanceConfig = z.infer<typeof NetworkInstanceConfigSchema>;
/** A network instance's config as a user may write it. */
export type NetworkInstanceConfigInput = z.input<typeof NetworkInstanceConfigSchema>;
