// A `local` network instance on real kernel objects, all inside namespaces this test creates: a
// "host" netns (as EVE_NET_NS) with the instance's bridge, dnsmasq and rules; two task netns; a
// "client" netns on a veth standing in for the uplink.
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { waitFor } from "../../../test/harness/index.js";
import { validateAppInterfaces, validateInstances } from "../src/index.js";
import { app, endpointsOf, httpServer, instance, makeNode, startTask } from "./fixtures.js";
import {
  httpGet,
  httpReachable,
  inNs,
  linksIn,
  makeNetns,
  startIn,
  succeeds,
  tablesIn,
  vethBetween,
} from "./ns.js";

const fetchFrom = (ns: string, url: string) => httpGet(ns, url);

describe("a local network instance", () => {
  it("connects two apps by address and by name, enforces ACLs, maps ports from the uplink and NATs out of it", async () => {
    const { host, net, runDir, t } = await makeNode();
    const client = await makeNetns(`nwt${t}-client`);
    await vethBetween(host, "up0", "192.168.77.1/24", client, "eth0", "192.168.77.2/24");
    const ni = instance({
      name: "apps",
      type: "local",
      subnet: "10.88.0.0/24",
      gateway: "10.88.0.1",
      uplink: "up0",
    });
    expect(validateInstances([ni], await net.hostLinks())).toEqual(new Map());
    const instances = new Map([[ni.name, ni]]);

    const a = app(randomUUID(), "Web Server", [
      { name: "eth0", network: "apps", portMaps: [{ protocol: "tcp", hostPort: 8080, port: 80 }] },
    ]);
    const b = app(randomUUID(), "client-b", [{ name: "eth0", network: "apps", ip: "10.88.0.50" }]);
    expect(validateAppInterfaces(a, instances, [b]).issues).toEqual([]);

    const ra = await net.resolveApp(a, instances);
    const rb = await net.resolveApp(b, instances);
    expect(rb.plan.interfaces[0]?.ip).toBe("10.88.0.50");
    expect(ra.plan.interfaces[0]?.ip).toBe("10.88.0.2");
    await net.applyInstance(ni, endpointsOf("apps", [ra, rb]));
    const nsA = ra.plan.netns;
    const nsB = rb.plan.netns;
    for (const r of [ra, rb]) await startTask(net, r, join(runDir, "tasks", r.plan.uuid));
    expect(ra.statuses[0]).toMatchObject({ name: "eth0", network: "apps", ip: "10.88.0.2" });
    expect(ra.statuses[0]?.hostIfName).toMatch(/^ev[0-9a-f]{10}-0$/);
    const inside = JSON.parse(await inNs(nsA, ["ip", "-json", "addr", "show", "eth0"])) as {
      address: string;
      mtu: number;
      addr_info: { local: string; prefixlen: number }[];
    }[];
    expect(inside[0]).toMatchObject({ address: ra.statuses[0]?.mac, mtu: 1500 });
    expect(inside[0]?.addr_info.map((x) => `${x.local}/${x.prefixlen}`)).toContain("10.88.0.2/24");

    // Ping and HTTP by address.
    expect(await succeeds(nsB, ["busybox", "ping", "-c", "1", "-W", "2", "10.88.0.2"])).toBe(true);
    await httpServer(nsA, "marker-A", 80);
    expect(await waitFor(() => fetchFrom(nsB, "http://10.88.0.2/"), { message: "A's httpd from B" })).toBe(
      "marker-A",
    );

    // DNS by name through the instance's dnsmasq (A's display name as a label, and its uuid).
    const lookup = await inNs(nsB, ["busybox", "nslookup", "web-server", "10.88.0.1"]);
    expect(lookup).toMatch(/Address:\s*10\.88\.0\.2\b/);
    expect(await inNs(nsB, ["busybox", "nslookup", a.uuid, "10.88.0.1"])).toMatch(
      /Address:\s*10\.88\.0\.2\b/,
    );
    const resolv = await readFile(join(runDir, "tasks", b.uuid, "resolv.conf"), "utf8");
    expect(resolv).toContain("nameserver 10.88.0.1");

    // An `in` ACL dropping tcp 80 on A blocks B; ping (icmp) still passes; removing it unblocks.
    const withAcl = app(a.uuid, a.displayName, [
      {
        name: "eth0",
        network: "apps",
        portMaps: [{ protocol: "tcp", hostPort: 8080, port: 80 }],
        acls: [{ direction: "in", protocol: "tcp", port: 80, action: "drop" }],
      },
    ]);
    const raAcl = await net.resolveApp(withAcl, instances);
    await net.applyRules(ni, endpointsOf("apps", [raAcl, rb]));
    expect(await httpReachable(nsB, "http://10.88.0.2/")).toBe(false);
    expect(await succeeds(nsB, ["busybox", "ping", "-c", "1", "-W", "2", "10.88.0.2"])).toBe(true);
    await net.applyRules(ni, endpointsOf("apps", [ra, rb]));
    expect(await fetchFrom(nsB, "http://10.88.0.2/")).toBe("marker-A");

    // The client on the uplink reaches A through the port map on the uplink's address.
    expect(await waitFor(() => fetchFrom(client, "http://192.168.77.1:8080/"), { message: "port map" })).toBe(
      "marker-A",
    );
    // B reaches the port map on the gateway too (hairpin).
    expect(await fetchFrom(nsB, "http://10.88.0.1:8080/")).toBe("marker-A");

    // B's traffic out of the uplink arrives NATed to the uplink's address.
    startIn(client, [
      process.execPath,
      "-e",
      "require('http').createServer((q,s)=>s.end(q.socket.remoteAddress.replace('::ffff:',''))).listen(9000)",
    ]);
    expect(
      await waitFor(() => fetchFrom(nsB, "http://192.168.77.2:9000/"), { message: "client's server from B" }),
    ).toBe("192.168.77.1");

    // Nothing but port maps enters from outside: even with a route, the client cannot reach B directly.
    await inNs(client, ["ip", "route", "add", "10.88.0.0/24", "via", "192.168.77.1"]);
    await httpServer(nsB, "marker-B", 80);
    await waitFor(() => fetchFrom(nsA, "http://10.88.0.50/"), { message: "B's httpd from A" });
    expect(await httpReachable(client, "http://10.88.0.50/")).toBe(false);

    // Everything goes by name: tables, bridge, veths.
    expect(await tablesIn(host)).toEqual(["bridge eve_ni_apps", "inet eve_ni_apps"]);
    expect(await linksIn(host)).toEqual(
      expect.arrayContaining(["eb-apps", ra.statuses[0]?.hostIfName, rb.statuses[0]?.hostIfName]),
    );
  });
});
