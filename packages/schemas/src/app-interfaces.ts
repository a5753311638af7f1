/**
 * The network interfaces of an app (`interfaces` of an AppInstanceConfig) and what TaskStatus
 * reports about each: which instance it joins, its address and MAC, its port maps and ACLs.
 */
import { z } from "zod";
import { expected } from "./error-messages.js";
import {
  IfNameSchema,
  Ipv4AddressSchema,
  Ipv4CidrSchema,
  MacAddressSchema,
  PortSchema,
} from "./network-primitives.js";
import { NameSchema } from "./primitives.js";

/** Most interfaces one app may have. */
export const MAX_APP_INTERFACES = 16;
/** Most port maps one interface may have. */
export const MAX_PORT_MAPS = 64;
/** Most ACL rules one interface may have. */
export const MAX_ACLS = 256;

/** A transport protocol of a port map. */
export const PortProtocolSchema = z.enum(["tcp", "udp"], { error: expected('must be "tcp" or "udp"') });
/** A transport protocol of a port map. */
export type PortProtocol = z.infer<typeof PortProtocolSchema>;

/** Traffic to `hostPort` on the node's addresses goes to `port` on the app's interface. */
export const PortMapSchema = z.strictObject(
  {
    protocol: PortProtocolSchema,
    hostPort: PortSchema.meta({ description: "port on the node's addresses" }),
    port: PortSchema.meta({ description: "port on the app's interface" }),
  },
  { error: expected() },
);
/** A port map of an interface. */
export type PortMap = z.infer<typeof PortMapSchema>;

/** Which traffic an ACL rule is about: `in` to the app, `out` from the app. */
export const AclDirectionSchema = z.enum(["in", "out"], {
  error: expected('must be "in" (to the app) or "out" (from the app)'),
});
/** The protocols an ACL rule can match. */
export const AclProtocolSchema = z.enum(["tcp", "udp", "icmp", "any"], {
  error: expected('must be "tcp", "udp", "icmp" or "any"'),
});
/** What a matching ACL rule does. */
export const AclActionSchema = z.enum(["allow", "drop"], { error: expected('must be "allow" or "drop"') });

/**
 * One ACL rule of an interface. It matches new connections in `direction` with `protocol`,
 * the remote end in `remote` (any when absent) and, for tcp and udp, destination `port` (the
 * app's port for `in`, the remote's for `out`; any when absent). Replies of an allowed
 * connection always pass.
 */
export const AclSchema = z
  .strictObject(
    {
      direction: AclDirectionSchema,
      protocol: AclProtocolSchema,
      remote: Ipv4CidrSchema.optional().meta({ description: "the remote end's block; any when absent" }),
      port: PortSchema.optional().meta({
        description:
          "destination port (tcp/udp only): the app's for in, the remote's for out; any when absent",
      }),
      action: AclActionSchema,
    },
    { error: expected() },
  )
  .superRefine((acl, ctx) => {
    if (acl.port !== undefined && acl.protocol !== "tcp" && acl.protocol !== "udp") {
      ctx.addIssue({
        code: "custom",
        message: `a port needs protocol "tcp" or "udp"; this rule's protocol is "${acl.protocol}"`,
        path: ["port"],
      });
    }
  });
/** An ACL rule of an interface. */
export type Acl = z.infer<typeof AclSchema>;

/** One network interface of an app. */
export const AppInterfaceSchema = z.strictObject(
  {
    name: IfNameSchema.refine((n) => n !== "lo", {
      error: 'must not be "lo" (the task\'s loopback)',
    }).meta({ description: "the interface's name inside the task (eth0, …); at most 15 characters" }),
    network: NameSchema.meta({ description: "the NetworkInstanceConfig the interface joins" }),
    ip: Ipv4AddressSchema.optional().meta({
      description: "the app's address in the instance's subnet; from the instance's IPAM when absent",
    }),
    mac: MacAddressSchema.optional().meta({
      description: "derived from the app's uuid and the interface's index when absent (locally administered)",
    }),
    portMaps: z
      .array(PortMapSchema, { error: expected("must be a list of port maps") })
      .max(MAX_PORT_MAPS, { error: `must hold at most ${MAX_PORT_MAPS} port maps` })
      .default([]),
    acls: z
      .array(AclSchema, { error: expected("must be a list of ACL rules") })
      .max(MAX_ACLS, { error: `must hold at most ${MAX_ACLS} rules` })
      .default([])
      .meta({ description: "the first matching rule wins; none matching allows" }),
  },
  { error: expected() },
);
/** One network interface of an app, defaults applied. */
export type AppInterface = z.infer<typeof AppInterfaceSchema>;

/**
 * The interfaces of an app: names unique, MACs unique, a host port (per protocol) used once.
 * Whether the network exists, the address is free and host ports are free on the node is
 * checked by the task-executor.
 */
export const AppInterfacesSchema = z
  .array(AppInterfaceSchema, { error: expected("must be a list of interfaces") })
  .max(MAX_APP_INTERFACES, { error: `must hold at most ${MAX_APP_INTERFACES} interfaces` })
  .superRefine((ifs, ctx) => {
    const names = new Map<string, number>();
    const macs = new Map<string, number>();
    const hostPorts = new Map<string, number>();
    ifs.forEach((itf, i) => {
      const n = names.get(itf.name);
      if (n !== undefined) {
        ctx.addIssue({
          code: "custom",
          message: `interface name ${itf.name} is used by interface ${n} too`,
          path: [i, "name"],
        });
      } else names.set(itf.name, i);
      if (itf.mac !== undefined) {
        const m = macs.get(itf.mac);
        if (m !== undefined) {
          ctx.addIssue({
            code: "custom",
            message: `mac ${itf.mac} is used by interface ${m} too`,
            path: [i, "mac"],
          });
        } else macs.set(itf.mac, i);
      }
      itf.portMaps.forEach((pm, j) => {
        const key = `${pm.protocol}/${pm.hostPort}`;
        if (hostPorts.has(key)) {
          ctx.addIssue({
            code: "custom",
            message: `host port ${pm.protocol} ${pm.hostPort} is mapped twice in this app`,
            path: [i, "portMaps", j, "hostPort"],
          });
        } else hostPorts.set(key, i);
      });
    });
  })
  .meta({ description: "the app's network interfaces; none: loopback only" });

/**
 * The spec annotation carrying what of an app's interfaces its task is built from (name, network,
 * address, MAC): a change of these changes the spec, so the task is replaced. Port maps and ACLs
 * are not in it: the task-executor applies their changes to the running task.
 */
export const INTERFACES_ANNOTATION = "org.lfedge.eve-tasks.interfaces";

/** The value of {@link INTERFACES_ANNOTATION} for `interfaces` (absent when there are none). */
export function interfacesAnnotation(interfaces: readonly AppInterface[]): string | undefined {
  if (interfaces.length === 0) return undefined;
  return JSON.stringify(
    interfaces.map((i) => ({ name: i.name, network: i.network, ip: i.ip ?? null, mac: i.mac ?? null })),
  );
}

/** What TaskStatus reports about one interface of a running app. */
export const TaskInterfaceStatusSchema = z.object({
  name: IfNameSchema.meta({ description: "the interface's name inside the task" }),
  network: NameSchema.meta({ description: "the network instance it joins" }),
  mac: MacAddressSchema,
  ip: Ipv4AddressSchema.meta({ description: "the app's address (for a VM: its DHCP static lease)" }),
  hostIfName: IfNameSchema.meta({
    description: "the host-side end of the interface's veth, on the instance's bridge",
  }),
});
/** What TaskStatus reports about one interface. */
export type TaskInterfaceStatus = z.infer<typeof TaskInterfaceStatusSchema>;
