// Unit tests of the pure modules: names, IPAM core, validation, rendering and planning.
import { describe, expect, it } from "vitest";
import { AclSchema } from "@eve-tasks/schemas";
import type { NetworkIssue } from "../src/index.js";
import {
  BRIDGE_NAME_PATTERN,
  HOST_VETH_PATTERN,
  addressProblem,
  aclStatement,
  appMac,
  assignAddresses,
  bridgeName,
  dnsLabel,
  emptyIpam,
  hostIfName,
  netnsNamePattern,
  netnsPath,
  nftTableName,
  planBridge,
  planSweep,
  planTaskNetwork,
  planTaskTeardown,
  qemuNetArgs,
  rebaseIpam,
  releaseApp,
  renderDhcpHosts,
  renderDnsHosts,
  renderDnsmasqConf,
  renderHosts,
  renderInstanceRules,
  renderResolvConf,
  reservedAddresses,
  resolveAppNetwork,
  dnsmasqPaths,
  validateAppInterfaces,
  validateInstances,
} from "../src/index.js";
import { app, instance } from "./fixtures.js";

const U1 = "6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10";
const U2 = "00000000-0000-4000-8000-000000000002";
const U3 = "00000000-0000-4000-8000-000000000003";
const apps = instance({
  name: "apps",
  type: "local",
  subnet: "10.88.0.0/24",
  gateway: "10.88.0.1",
  uplink: "eth0",
});

describe("names", () => {
  it("fit the kernel's 15 characters and are deterministic and recognisable", () => {
    expect(bridgeName("apps")).toBe("eb-apps");
    expect(bridgeName("exactly12chr")).toBe("eb-exactly12chr");
    const long = bridgeName("a-network-with-a-long-name");
    expect(long).toMatch(/^ebh[0-9a-f]{12}$/);
    expect(long).toBe(bridgeName("a-network-with-a-long-name"));
    for (const b of ["eb-apps", long]) expect(b.length <= 15 && BRIDGE_NAME_PATTERN.test(b)).toBe(true);
    const v = hostIfName(U1, 15);
    expect(v).toMatch(HOST_VETH_PATTERN);
    expect(v.length).toBeLessThanOrEqual(15);
    expect(hostIfName(U1, 0)).not.toBe(hostIfName(U2, 0));
    expect(hostIfName(U1, 0)).not.toBe(hostIfName(U1, 1));
    expect(() => hostIfName(U1, 100)).toThrow(RangeError);
    expect(netnsPath(U1)).toBe(`/run/netns/eve-${U1}`);
    expect(netnsNamePattern().exec(`eve-${U1}`)?.[1]).toBe(U1);
    expect(netnsNamePattern().test(`eve-x${U1}`)).toBe(false);
    expect(nftTableName("apps")).toBe("eve_ni_apps");
  });

  it("derive locally administered unicast MACs from the uuid and index", () => {
    const mac = appMac(U1, 0);
    expect(mac).toMatch(/^02(:[0-9a-f]{2}){5}$/);
    expect(appMac(U1, 0)).toBe(mac);
    expect(appMac(U1, 1)).not.toBe(mac);
    expect(appMac(U2, 0)).not.toBe(mac);
  });

  it("turn display names into DNS labels", () => {
    expect(dnsLabel("Web Server #1")).toBe("web-server-1");
    expect(dnsLabel("  ")).toBeUndefined();
    expect(dnsLabel("x".repeat(80))).toHaveLength(63);
  });
});

describe("IPAM core", () => {
  const req = (uuid: string, ifName: string, ip?: string) => ({
    uuid,
    ifName,
    ip,
    field: "interfaces[0].ip",
  });

  it("gives the lowest free address, skips the gateway and others' reservations, and keeps leases", () => {
    let s = emptyIpam("10.88.0.0/29", "10.88.0.1");
    const reserved = new Map([[`${U3}/eth0`, "10.88.0.3"]]);
    const a = assignAddresses(s, [req(U1, "eth0"), req(U1, "eth1")], reserved);
    expect(a.addresses).toEqual(["10.88.0.2", "10.88.0.4"]);
    s = a.state;
    expect(assignAddresses(s, [req(U1, "eth0")]).addresses).toEqual(["10.88.0.2"]);
    expect(assignAddresses(s, [req(U3, "eth0")], reserved).addresses).toEqual(["10.88.0.3"]);
    s = releaseApp(s, U1);
    expect(s.leases).toEqual({});
  });

  it("checks requested addresses and runs out cleanly", () => {
    const s = assignAddresses(emptyIpam("10.88.0.0/30", "10.88.0.1"), [req(U1, "eth0")]).state;
    expect(() => assignAddresses(s, [req(U2, "eth0", "10.88.0.2")])).toThrow(
      `interfaces[0].ip: 10.88.0.2 is taken by app ${U1}`,
    );
    expect(() => assignAddresses(s, [req(U2, "eth0")])).toThrow("no free address is left in 10.88.0.0/30");
    expect(() => assignAddresses(s, [req(U2, "eth0", "10.88.0.1")])).toThrow("is the gateway");
    expect(addressProblem("10.88.0.0/24", "10.88.0.1", "10.88.1.5")).toBe(
      "10.88.1.5 is outside the subnet 10.88.0.0/24",
    );
    expect(addressProblem("10.88.0.0/24", "10.88.0.1", "10.88.0.0")).toContain("network address");
    expect(addressProblem("10.88.0.0/24", "10.88.0.1", "10.88.0.255")).toContain("broadcast address");
    // A requested address moves the lease; the old one is free again.
    const wide = assignAddresses(emptyIpam("10.88.0.0/29", "10.88.0.1"), [req(U1, "eth0")]).state;
    const moved = assignAddresses(wide, [req(U1, "eth0", "10.88.0.5")]);
    expect(moved.state.leases).toEqual({ [`${U1}/eth0`]: "10.88.0.5" });
    expect(assignAddresses(moved.state, [req(U2, "eth0")]).addresses).toEqual(["10.88.0.2"]);
  });

  it("drops leases that a changed subnet no longer holds", () => {
    const s = assignAddresses(emptyIpam("10.88.0.0/24", "10.88.0.1"), [req(U1, "eth0", "10.88.0.200")]).state;
    expect(rebaseIpam(s, "10.88.0.0/25", "10.88.0.1").dropped).toEqual([`${U1}/eth0`]);
    expect(rebaseIpam(s, "10.88.0.0/24", "10.88.0.200").dropped).toEqual([`${U1}/eth0`]);
  });
});

describe("validation", () => {
  const fields = (issues: readonly NetworkIssue[]) => issues.map((i) => `${i.field}: ${i.message}`);

  it("finds overlapping subnets, unknown and misused uplinks; earlier instances win", () => {
    const b = instance({ name: "b", type: "local", subnet: "10.88.0.128/25", gateway: "10.88.0.129" });
    const sw = instance({
      name: "sw",
      type: "switch",
      subnet: "10.90.0.0/24",
      gateway: "10.90.0.1",
      uplink: "eth0",
    });
    const ghost = instance({
      name: "ghost",
      type: "local",
      subnet: "10.91.0.0/24",
      gateway: "10.91.0.1",
      uplink: "eth9",
    });
    const ours = instance({
      name: "ours",
      type: "local",
      subnet: "10.92.0.0/24",
      gateway: "10.92.0.1",
      uplink: "eb-apps",
    });
    const r = validateInstances([apps, b, sw, ghost, ours], new Set(["eth0", "eb-apps"]));
    expect(r.get("apps")).toBeUndefined();
    expect(fields(r.get("b") ?? [])).toEqual([
      "subnet: 10.88.0.128/25 overlaps 10.88.0.0/24 of network instance apps",
    ]);
    expect(fields(r.get("sw") ?? [])).toEqual([
      "uplink: a switch bridges eth0, which network instance apps uses as its uplink",
    ]);
    expect(fields(r.get("ghost") ?? [])).toEqual(["uplink: no interface eth9 exists on the node"]);
    expect(fields(r.get("ours") ?? [])[0]).toContain("an interface eve-tasks made itself");
  });

  it("checks an app's addresses, host ports, port maps on switches and VM tap names", () => {
    const sw = instance({
      name: "sw",
      type: "switch",
      subnet: "10.90.0.0/24",
      gateway: "10.90.0.1",
      uplink: "eth1",
    });
    const instances = new Map([
      ["apps", apps],
      ["sw", sw],
    ]);
    const holder = app(U2, "h", [
      { name: "eth0", network: "apps", portMaps: [{ protocol: "tcp", hostPort: 8080, port: 80 }] },
    ]);
    const x = app(
      U1,
      "x",
      [
        {
          name: "eth0",
          network: "apps",
          ip: "10.88.0.1",
          portMaps: [{ protocol: "tcp", hostPort: 8080, port: 8080 }],
        },
        { name: "tap1", network: "sw", portMaps: [{ protocol: "udp", hostPort: 8080, port: 53 }] },
        { name: "eth2", network: "later" },
      ],
      "HVM",
    );
    const r = validateAppInterfaces(x, instances, [holder]);
    expect(fields(r.issues)).toEqual([
      "interfaces[0].ip: 10.88.0.1 is the gateway of 10.88.0.0/24",
      `interfaces[0].portMaps[0].hostPort: host port tcp 8080 is taken by app ${U2}`,
      "interfaces[1].name: names tap<n> are the VM's taps",
      "interfaces[1].portMaps: port maps need a local network instance; sw is a switch (its apps are on the uplink's L2)",
    ]);
    expect(r.missingNetworks).toEqual(["later"]);
    // The same host port with the other protocol is free.
    const udp = app(U3, "u", [
      { name: "eth0", network: "apps", portMaps: [{ protocol: "udp", hostPort: 8080, port: 80 }] },
    ]);
    expect(validateAppInterfaces(udp, instances, [holder]).issues).toEqual([]);
    expect(reservedAddresses([x])).toEqual(new Map([[`${U1}/eth0`, "10.88.0.1"]]));
  });
});

describe("nftables rendering", () => {
  const acl = (a: unknown) => AclSchema.parse(a);

  it("renders ACL rules: first match wins, allow leaves the list", () => {
    expect(aclStatement(acl({ direction: "in", protocol: "tcp", port: 80, action: "drop" }))).toBe(
      "tcp dport 80 drop",
    );
    expect(
      aclStatement(acl({ direction: "out", protocol: "udp", remote: "10.0.0.0/8", action: "allow" })),
    ).toBe("ip daddr 10.0.0.0/8 meta l4proto udp return");
    expect(
      aclStatement(acl({ direction: "in", protocol: "icmp", remote: "192.168.0.0/16", action: "drop" })),
    ).toBe("ip saddr 192.168.0.0/16 meta l4proto icmp drop");
    expect(aclStatement(acl({ direction: "in", protocol: "any", action: "drop" }))).toBe("drop");
  });

  it("replaces one instance's tables in one script, keyed by the apps' host-side interfaces", () => {
    const ep = {
      uuid: U1,
      hostIfName: hostIfName(U1, 0),
      mac: appMac(U1, 0),
      ip: "10.88.0.2",
      portMaps: [{ protocol: "tcp" as const, hostPort: 8080, port: 80 }],
      acls: [acl({ direction: "in", protocol: "tcp", port: 22, action: "drop" })],
    };
    const text = renderInstanceRules({
      name: "apps",
      type: "local",
      bridge: "eb-apps",
      subnet: "10.88.0.0/24",
      uplink: "eth0",
      endpoints: [ep],
    });
    const lines = text.split("\n");
    expect(lines.slice(1, 4)).toEqual([
      "table inet eve_ni_apps",
      "delete table inet eve_ni_apps",
      "table inet eve_ni_apps {",
    ]);
    expect(text).toContain("fib daddr type local tcp dport 8080 dnat ip to 10.88.0.2:80");
    expect(text).toContain('oifname "eth0" ip saddr 10.88.0.0/24 masquerade');
    expect(text).toContain(`oifname "eb-apps" ip daddr 10.88.0.2 jump in_${ep.hostIfName}`);
    expect(text).not.toContain(`jump out_${ep.hostIfName}`);
    expect(text).toContain(`chain in_${ep.hostIfName} {`);
    expect(text).toContain(`iifname "${ep.hostIfName}" ether saddr != ${ep.mac} drop`);
    expect(text).toContain("delete table bridge eve_ni_apps");
    const sw = renderInstanceRules({
      name: "sw",
      type: "switch",
      bridge: "eb-sw",
      subnet: "10.90.0.0/24",
      uplink: null,
      endpoints: [],
    });
    expect(sw).not.toContain("masquerade");
    expect(sw).not.toContain("chain input");
  });
});

describe("dnsmasq rendering", () => {
  it("binds to the bridge only, reads nothing of the host, serves static leases and the apps' names", () => {
    const p = dnsmasqPaths("/data/network", "/run/eve-tasks/network", "apps");
    expect(p.pidFile).toBe("/data/network/dnsmasq/apps/dnsmasq.pid");
    expect(p.dhcpHosts).toBe("/run/eve-tasks/network/dnsmasq/apps/dhcp-hosts");
    const conf = renderDnsmasqConf(
      {
        name: "apps",
        bridge: "eb-apps",
        subnet: "10.88.0.0/24",
        gateway: "10.88.0.1",
        mtu: 1400,
        dns: ["192.0.2.53"],
      },
      p,
    ).split("\n");
    expect(conf).toEqual(
      expect.arrayContaining([
        "interface=eb-apps",
        "bind-interfaces",
        "no-resolv",
        "no-hosts",
        "server=192.0.2.53",
        "dhcp-range=10.88.0.0,static,255.255.255.0,1h",
        "dhcp-option=option:router,10.88.0.1",
        "dhcp-option=option:mtu,1400",
        `dhcp-leasefile=${p.leaseFile}`,
        `pid-file=${p.pidFile}`,
      ]),
    );
    const hosts = [
      { mac: "02:00:00:00:00:01", ip: "10.88.0.2", names: ["web", U1] },
      { mac: "02:00:00:00:00:02", ip: "10.88.0.3", names: [] },
    ];
    expect(renderDhcpHosts(hosts)).toBe("02:00:00:00:00:01,10.88.0.2,web\n02:00:00:00:00:02,10.88.0.3\n");
    expect(renderDnsHosts(hosts)).toBe(`10.88.0.2 web ${U1}\n`);
  });
});

describe("planning", () => {
  it("resolves an app into a netns plan, endpoints, statuses and task files", () => {
    const sw = instance({
      name: "sw",
      type: "switch",
      subnet: "10.90.0.0/24",
      gateway: "10.90.0.1",
      uplink: "eth1",
      dns: ["10.90.0.53"],
    });
    const x = app(U1, "My App", [
      { name: "eth0", network: "apps" },
      { name: "lan0", network: "sw", mac: "02:aa:00:00:00:01" },
    ]);
    const r = resolveAppNetwork(
      x,
      new Map([
        ["apps", apps],
        ["sw", sw],
      ]),
      ["10.88.0.2", "10.90.0.7"],
      "eve-",
    );
    expect(r.plan.netns).toBe(`eve-${U1}`);
    expect(
      r.plan.interfaces.map((i) => [i.name, i.bridge, i.ip, i.prefixLength, i.defaultRoute, i.tap]),
    ).toEqual([
      ["eth0", "eb-apps", "10.88.0.2", 24, true, undefined],
      ["lan0", "eb-sw", "10.90.0.7", 24, false, undefined],
    ]);
    expect(r.statuses[1]).toEqual({
      name: "lan0",
      network: "sw",
      mac: "02:aa:00:00:00:01",
      ip: "10.90.0.7",
      hostIfName: hostIfName(U1, 1),
    });
    expect(r.endpoints.map((e) => e.instance)).toEqual(["apps", "sw"]);
    expect(r.files).toEqual({
      names: ["my-app", U1],
      addresses: ["10.88.0.2", "10.90.0.7"],
      nameservers: ["10.88.0.1", "10.90.0.53"],
    });
    expect(renderResolvConf(r.files)).toBe(
      "# eve-tasks: this task's name servers\nnameserver 10.88.0.1\nnameserver 10.90.0.53\noptions edns0\n",
    );
    expect(renderHosts(r.files)).toContain(`10.88.0.2\tmy-app ${U1}`);
    const vm = resolveAppNetwork(
      app(U1, "", [{ name: "eth0", network: "apps" }], "HVM"),
      new Map([["apps", apps]]),
      ["10.88.0.2"],
    );
    expect(vm.plan.interfaces[0]?.tap).toBe("tap0");
    expect(vm.files.names).toEqual([U1]);
  });

  it("plans a task's netns in three batches, and its teardown", () => {
    const base = {
      name: "eth0",
      hostIfName: "ev0123456789-0",
      bridge: "eb-apps",
      mac: "02:00:00:00:00:01",
      ip: "10.88.0.2",
      prefixLength: 24,
      gateway: "10.88.0.1",
      mtu: 1400,
      defaultRoute: true,
    };
    const c = planTaskNetwork({ uuid: U1, netns: `eve-${U1}`, interfaces: [base] });
    expect(c.host).toEqual([
      `netns add eve-${U1}`,
      `link add ev0123456789-0 mtu 1400 type veth peer name eth0 address 02:00:00:00:00:01 mtu 1400 netns eve-${U1}`,
      "link set ev0123456789-0 master eb-apps up",
    ]);
    expect(c.task).toEqual([
      "link set lo up",
      "link set eth0 up",
      "addr add 10.88.0.2/24 dev eth0",
      "route add default via 10.88.0.1 dev eth0",
    ]);
    expect(c.tc).toEqual([]);
    const v = planTaskNetwork({ uuid: U1, netns: "n", interfaces: [{ ...base, tap: "tap0" }] });
    expect(v.task).toEqual([
      "link set lo up",
      "link set eth0 up",
      "tuntap add dev tap0 mode tap",
      "link set tap0 mtu 1400 up",
    ]);
    expect(v.tc).toEqual([
      "qdisc add dev eth0 ingress",
      "filter add dev eth0 parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev tap0",
      "qdisc add dev tap0 ingress",
      "filter add dev tap0 parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev eth0",
    ]);
    expect(planTaskTeardown("n", ["ev0123456789-0"])).toEqual(["link del ev0123456789-0", "netns del n"]);
    expect(qemuNetArgs(0, "tap0", "02:00:00:00:00:01", false)).toEqual([
      "-netdev",
      "tap,id=net0,ifname=tap0,script=no,downscript=no,vhost=off",
      "-device",
      "virtio-net-pci,netdev=net0,mac=02:00:00:00:00:01",
    ]);
  });

  it("plans a bridge from what exists", () => {
    const plan = {
      type: "local" as const,
      bridge: "eb-apps",
      mac: "02:00:00:00:00:aa",
      mtu: 1500,
      gateway: "10.88.0.1",
      subnet: "10.88.0.0/24",
      uplink: "eth0",
    };
    expect(planBridge(plan, { links: [], bridgeAddresses: [] })).toEqual({
      lines: [
        "link add name eb-apps address 02:00:00:00:00:aa mtu 1500 type bridge",
        "addr add 10.88.0.1/24 dev eb-apps",
        "link set eb-apps up",
      ],
      sysctls: [
        "net/bridge/bridge-nf-call-iptables",
        "net/ipv4/conf/eb-apps/forwarding",
        "net/ipv4/conf/eth0/forwarding",
      ],
    });
    const present = { ifname: "eb-apps", address: plan.mac, mtu: 1500, flags: ["UP"] };
    expect(planBridge(plan, { links: [present], bridgeAddresses: ["10.88.0.1/24"] }).lines).toEqual([]);
    // Gateway moved, MTU changed, a former switch's uplink still enslaved.
    expect(
      planBridge(plan, {
        links: [
          { ...present, mtu: 9000 },
          { ifname: "eth1", master: "eb-apps" },
        ],
        bridgeAddresses: ["10.88.0.254/24"],
      }).lines,
    ).toEqual([
      "link set eb-apps mtu 1500",
      "addr del 10.88.0.254/24 dev eb-apps",
      "addr add 10.88.0.1/24 dev eb-apps",
      "link set eth1 nomaster",
    ]);
    const sw = { ...plan, type: "switch" as const, uplink: "eth1" };
    expect(
      planBridge(sw, { links: [present, { ifname: "eth1" }], bridgeAddresses: ["10.88.0.1/24"] }),
    ).toEqual({
      lines: ["addr del 10.88.0.1/24 dev eb-apps", "link set eth1 master eb-apps", "link set eth1 up"],
      sysctls: ["net/bridge/bridge-nf-call-iptables"],
    });
  });

  it("plans a sweep: only what no wanted app or instance owns", () => {
    const keepIf = hostIfName(U1, 0);
    const plan = planSweep(
      {
        netns: [`eve-${U1}`, `eve-${U2}`],
        links: ["eb-apps", "eb-old", keepIf, hostIfName(U2, 0)],
        tables: ["bridge eve_ni_apps", "inet eve_ni_apps", "inet eve_ni_old"],
        dnsmasq: new Map([
          ["apps", 10],
          ["old", 11],
        ]),
      },
      { running: new Map([[U1, [keepIf]]]), instances: new Set(["apps"]) },
    );
    expect(plan).toEqual({
      netns: [`eve-${U2}`],
      links: ["eb-old", hostIfName(U2, 0)],
      tables: ["inet eve_ni_old"],
      dnsmasq: [{ instance: "old", pid: 11 }],
    });
  });
});
