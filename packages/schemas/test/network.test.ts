import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  AppInstanceConfigSchema,
  NetworkInstanceConfigSchema,
  NetworkInstanceStatusSchema,
  TaskStatusSchema,
  broadcastOf,
  cidrContains,
  cidrsOverlap,
  intToIpv4,
  ipv4ToInt,
  isNetworkCidr,
  networkInstanceStatusKey,
  parseCidr,
} from "../src/index.js";
import { minimalNative, runningStatus } from "./fixtures.js";

function errorOf(schema: z.ZodType, input: unknown): string {
  const result = schema.safeParse(input);
  if (result.success) throw new Error(`expected ${JSON.stringify(input)} to be refused`);
  return z.prettifyError(result.error);
}

const local = { schemaVersion: 1, name: "apps", type: "local", subnet: "10.88.0.0/24", gateway: "10.88.0.1" };

describe("IPv4 arithmetic", () => {
  it("converts addresses and blocks", () => {
    expect(ipv4ToInt("10.0.0.1")).toBe(167772161);
    expect(ipv4ToInt("255.255.255.255")).toBe(0xffffffff);
    expect(intToIpv4(0xc0a80101)).toBe("192.168.1.1");
    expect(() => ipv4ToInt("010.0.0.1")).toThrow(/not an IPv4 address/);
    const c = parseCidr("10.88.0.7/24");
    expect(intToIpv4(c.network)).toBe("10.88.0.0");
    expect(intToIpv4(broadcastOf(c))).toBe("10.88.0.255");
    expect(cidrContains(c, ipv4ToInt("10.88.0.200"))).toBe(true);
    expect(cidrContains(c, ipv4ToInt("10.88.1.1"))).toBe(false);
    expect(isNetworkCidr("10.88.0.0/24")).toBe(true);
    expect(isNetworkCidr("10.88.0.1/24")).toBe(false);
    expect(isNetworkCidr("0.0.0.0/0")).toBe(true);
    expect(cidrsOverlap(parseCidr("10.0.0.0/8"), parseCidr("10.88.0.0/24"))).toBe(true);
    expect(cidrsOverlap(parseCidr("10.88.1.0/24"), parseCidr("10.88.0.0/24"))).toBe(false);
  });
});

describe("NetworkInstanceConfig", () => {
  it("applies defaults", () => {
    expect(NetworkInstanceConfigSchema.parse(local)).toEqual({
      ...local,
      node: "local",
      uplink: null,
      mtu: 1500,
      dns: [],
    });
  });

  it("refuses a gateway outside its subnet, or its network or broadcast address", () => {
    expect(errorOf(NetworkInstanceConfigSchema, { ...local, gateway: "10.89.0.1" })).toMatch(
      /gateway 10.89.0.1 is outside the subnet 10.88.0.0\/24\s+→ at gateway/,
    );
    expect(errorOf(NetworkInstanceConfigSchema, { ...local, gateway: "10.88.0.0" })).toContain(
      "is the network address",
    );
    expect(errorOf(NetworkInstanceConfigSchema, { ...local, gateway: "10.88.0.255" })).toContain(
      "is the broadcast address",
    );
  });

  it("refuses subnets with host bits, too small or malformed", () => {
    expect(errorOf(NetworkInstanceConfigSchema, { ...local, subnet: "10.88.0.1/24" })).toMatch(
      /host bits zero[\s\S]*→ at subnet/,
    );
    expect(errorOf(NetworkInstanceConfigSchema, { ...local, subnet: "10.88.0.0/31" })).toContain("/8 to /30");
    expect(errorOf(NetworkInstanceConfigSchema, { ...local, subnet: "10.88.0.0" })).toContain("→ at subnet");
  });

  it("needs an uplink for a switch, and uplink names the kernel accepts", () => {
    expect(errorOf(NetworkInstanceConfigSchema, { ...local, type: "switch" })).toMatch(
      /a switch instance needs an uplink[\s\S]*→ at uplink/,
    );
    expect(errorOf(NetworkInstanceConfigSchema, { ...local, uplink: "a-very-long-uplink0" })).toMatch(
      /at most 15 characters[\s\S]*→ at uplink/,
    );
    expect(errorOf(NetworkInstanceConfigSchema, { ...local, uplink: "eth0/1" })).toContain("→ at uplink");
    expect(errorOf(NetworkInstanceConfigSchema, { ...local, extra: 1 })).toContain("extra");
  });

  it("keys its status by node and name, and a FAILED status carries its error", () => {
    expect(networkInstanceStatusKey("local", "apps")).toBe("local.apps");
    const status = {
      schemaVersion: 1,
      name: "apps",
      node: "local",
      state: "FAILED",
      bridge: null,
      subnet: "10.88.0.0/24",
      gateway: "10.88.0.1",
      error: null,
    };
    expect(errorOf(NetworkInstanceStatusSchema, status)).toContain("a FAILED status carries the error");
    expect(NetworkInstanceStatusSchema.parse({ ...status, state: "READY" }).apps).toEqual([]);
  });
});

describe("an app's interfaces", () => {
  const app = (interfaces: unknown) => ({ ...minimalNative(), interfaces });
  const eth0 = { name: "eth0", network: "apps" };

  it("default to none, and fill in empty port maps and ACLs", () => {
    expect(AppInstanceConfigSchema.parse(minimalNative()).interfaces).toEqual([]);
    expect(AppInstanceConfigSchema.parse(app([eth0])).interfaces).toEqual([
      { ...eth0, portMaps: [], acls: [] },
    ]);
  });

  it("refuse duplicate names and MACs, a host port mapped twice, and kernel-invalid names", () => {
    expect(errorOf(AppInstanceConfigSchema, app([eth0, { ...eth0, network: "b" }]))).toMatch(
      /interface name eth0 is used by interface 0 too\s+→ at interfaces\[1\]\.name/,
    );
    const mac = "02:00:00:00:00:01";
    expect(
      errorOf(
        AppInstanceConfigSchema,
        app([
          { ...eth0, mac },
          { name: "eth1", network: "apps", mac },
        ]),
      ),
    ).toContain("→ at interfaces[1].mac");
    const pm = { protocol: "tcp", hostPort: 8080, port: 80 };
    expect(
      errorOf(
        AppInstanceConfigSchema,
        app([
          { ...eth0, portMaps: [pm] },
          { name: "eth1", network: "b", portMaps: [pm] },
        ]),
      ),
    ).toMatch(/host port tcp 8080 is mapped twice[\s\S]*→ at interfaces\[1\]\.portMaps\[0\]\.hostPort/);
    expect(errorOf(AppInstanceConfigSchema, app([{ ...eth0, name: "eth0-with-a-long-name" }]))).toMatch(
      /at most 15 characters[\s\S]*→ at interfaces\[0\]\.name/,
    );
    expect(errorOf(AppInstanceConfigSchema, app([{ ...eth0, name: "lo" }]))).toContain("loopback");
  });

  it("check addresses, MACs and ACL rules", () => {
    expect(errorOf(AppInstanceConfigSchema, app([{ ...eth0, ip: "10.88.0.300" }]))).toContain(
      "→ at interfaces[0].ip",
    );
    expect(errorOf(AppInstanceConfigSchema, app([{ ...eth0, mac: "03:00:00:00:00:01" }]))).toContain(
      "unicast",
    );
    expect(errorOf(AppInstanceConfigSchema, app([{ ...eth0, mac: "02:AB:00:00:00:01" }]))).toContain(
      "lowercase",
    );
    const acl = { direction: "in", protocol: "icmp", port: 80, action: "drop" };
    expect(errorOf(AppInstanceConfigSchema, app([{ ...eth0, acls: [acl] }]))).toMatch(
      /a port needs protocol "tcp" or "udp"[\s\S]*→ at interfaces\[0\]\.acls\[0\]\.port/,
    );
    expect(
      errorOf(
        AppInstanceConfigSchema,
        app([{ ...eth0, acls: [{ ...acl, protocol: "tcp", remote: "10.0.0.1/8" }] }]),
      ),
    ).toContain("→ at interfaces[0].acls[0].remote");
    expect(
      AppInstanceConfigSchema.parse(
        app([{ ...eth0, acls: [{ ...acl, protocol: "tcp", remote: "10.0.0.0/8" }] }]),
      ).interfaces[0]?.acls,
    ).toEqual([{ ...acl, protocol: "tcp", remote: "10.0.0.0/8" }]);
  });
});

describe("TaskStatus interfaces", () => {
  it("are empty when a publisher gives none, and checked when given", () => {
    const { interfaces: _, ...without } = runningStatus();
    expect(TaskStatusSchema.parse(without).interfaces).toEqual([]);
    const itf = {
      name: "eth0",
      network: "apps",
      mac: "02:00:00:00:00:01",
      ip: "10.88.0.2",
      hostIfName: "ev0123456789x0",
    };
    expect(TaskStatusSchema.parse({ ...runningStatus(), interfaces: [itf] }).interfaces).toEqual([itf]);
    expect(errorOf(TaskStatusSchema, { ...runningStatus(), interfaces: [{ ...itf, ip: "x" }] })).toContain(
      "→ at interfaces[0].ip",
    );
  });
});
