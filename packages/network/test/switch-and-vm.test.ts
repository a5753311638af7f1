// A `switch` instance (apps on the uplink's L2) and a VM interface (tap + tc mirred in the task's
// netns, DHCP from the instance's dnsmasq), on real kernel objects in namespaces this test makes.
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { writeFile, chmod } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { tempDir, waitFor } from "../../../test/harness/index.js";
import { validateAppInterfaces, validateInstances } from "../src/index.js";
import { app, endpointsOf, httpServer, instance, makeNode, startTask } from "./fixtures.js";
import { httpGet, inNs, linksIn, makeNetns, startIn, succeeds, vethBetween } from "./ns.js";

describe("a switch network instance", () => {
  it("puts an app on the uplink's L2, with no NAT, and releases the uplink when deleted", async () => {
    const { host, net, runDir, t } = await makeNode();
    const lan = await makeNetns(`nwt${t}-lan`);
    await vethBetween(host, "sw0", null, lan, "eth0", "10.99.0.254/24");
    const ni = instance({
      name: "lan",
      type: "switch",
      subnet: "10.99.0.0/24",
      gateway: "10.99.0.254",
      uplink: "sw0",
    });
    expect(validateInstances([ni], await net.hostLinks())).toEqual(new Map());
    const instances = new Map([[ni.name, ni]]);
    const s = app(randomUUID(), "on-lan", [{ name: "eth0", network: "lan" }]);
    const withPortMap = app(randomUUID(), "x", [
      { name: "eth0", network: "lan", portMaps: [{ protocol: "tcp", hostPort: 80, port: 80 }] },
    ]);
    expect(validateAppInterfaces(withPortMap, instances, []).issues[0]?.message).toContain(
      "need a local network instance",
    );

    const rs = await net.resolveApp(s, instances);
    await net.applyInstance(ni, endpointsOf("lan", [rs]));
    expect(net.dnsmasqPid("lan")).toBeUndefined();
    await startTask(net, rs, join(runDir, "tasks", s.uuid));
    const ip = rs.statuses[0]?.ip ?? "";
    expect(ip).toBe("10.99.0.1");

    // Same L2: the LAN host learns the app's MAC for its address, and both reach each other.
    expect(await succeeds(rs.plan.netns, ["busybox", "ping", "-c", "1", "-W", "2", "10.99.0.254"])).toBe(
      true,
    );
    const neigh = await inNs(lan, ["ip", "neigh", "show", ip]);
    expect(neigh).toContain(rs.statuses[0]?.mac);
    await httpServer(rs.plan.netns, "marker-S", 80);
    expect(await waitFor(() => httpGet(lan, `http://${ip}/`), { message: "app from the LAN" })).toBe(
      "marker-S",
    );
    startIn(lan, [
      process.execPath,
      "-e",
      "require('http').createServer((q,s)=>s.end(q.socket.remoteAddress.replace('::ffff:',''))).listen(9000)",
    ]);
    // The LAN sees the app's own address (no NAT on a switch).
    expect(
      await waitFor(() => httpGet(rs.plan.netns, "http://10.99.0.254:9000/"), { message: "LAN from app" }),
    ).toBe(ip);
    const master = JSON.parse(await inNs(host, ["ip", "-json", "link", "show", "sw0"])) as {
      master?: string;
    }[];
    expect(master[0]?.master).toBe("eb-lan");

    await net.teardownTask(s.uuid, [rs.statuses[0]?.hostIfName ?? ""]);
    await net.deleteInstance("lan");
    const after = JSON.parse(await inNs(host, ["ip", "-json", "link", "show", "sw0"])) as {
      master?: string;
    }[];
    expect(after[0]?.master).toBeUndefined();
    expect(await linksIn(host)).toEqual(["lo", "sw0"]);
  });
});

describe("a VM interface", () => {
  it("joins a tap to the veth with tc mirred, and the guest gets its address by DHCP from the instance", async () => {
    const { net, runDir, t } = await makeNode();
    const ni = instance({ name: "vms", type: "local", subnet: "10.89.0.0/24", gateway: "10.89.0.1" });
    const instances = new Map([[ni.name, ni]]);
    const vm = app(randomUUID(), "guest", [{ name: "eth0", network: "vms" }], "HVM");
    const peer = app(randomUUID(), "peer", [{ name: "eth0", network: "vms" }]);
    const rv = await net.resolveApp(vm, instances);
    const rp = await net.resolveApp(peer, instances);
    await net.applyInstance(ni, endpointsOf("vms", [rv, rp]));
    await startTask(net, rv, join(runDir, "tasks", vm.uuid));
    await startTask(net, rp, join(runDir, "tasks", peer.uuid));
    const nsV = rv.plan.netns;
    const mac = rv.statuses[0]?.mac ?? "";
    const guestIp = rv.statuses[0]?.ip ?? "";

    // Inside the VM's netns: eth0 without an address, the tap, and the two mirred filters.
    const addrs = JSON.parse(await inNs(nsV, ["ip", "-json", "-4", "addr", "show", "dev", "eth0"])) as {
      addr_info: unknown[];
    }[];
    expect(addrs[0]?.addr_info ?? []).toEqual([]);
    expect(await inNs(nsV, ["tc", "filter", "show", "dev", "eth0", "ingress"])).toMatch(
      /mirred \(Egress Redirect to device tap0\)/,
    );
    expect(await inNs(nsV, ["tc", "filter", "show", "dev", "tap0", "ingress"])).toMatch(
      /mirred \(Egress Redirect to device eth0\)/,
    );

    // A guest stand-in: qemu (no machine) joins tap0 to a second tap through a hub; that tap,
    // moved into a "guest" netns, plays the guest's virtio NIC with the interface's MAC.
    const guest = await makeNetns(`nwt${t}-guest`);
    await inNs(nsV, ["ip", "tuntap", "add", "dev", "gst0", "mode", "tap"]);
    await inNs(nsV, ["ip", "link", "set", "gst0", "up"]);
    startIn(nsV, [
      "qemu-system-x86_64",
      "-M",
      "none",
      "-nodefaults",
      "-display",
      "none",
      "-monitor",
      "none",
      "-serial",
      "none",
      "-netdev",
      "tap,id=vm,ifname=tap0,script=no,downscript=no,vhost=off",
      "-netdev",
      "tap,id=g,ifname=gst0,script=no,downscript=no,vhost=off",
      "-netdev",
      "hubport,id=h0,hubid=0,netdev=vm",
      "-netdev",
      "hubport,id=h1,hubid=0,netdev=g",
    ]);
    await waitFor(
      () => inNs(nsV, ["ip", "-json", "link", "show", "tap0"]).then((o) => o.includes("LOWER_UP")),
      {
        message: "qemu attached to tap0",
      },
    );
    await inNs(nsV, ["ip", "link", "set", "gst0", "netns", guest]);
    await inNs(guest, ["ip", "link", "set", "gst0", "address", mac, "up"]);
    const dir = await tempDir("nwu-");
    const script = join(dir, "udhcpc.sh");
    await writeFile(
      script,
      '#!/bin/sh\ncase "$1" in bound|renew) ip addr add "$ip/$mask" dev "$interface"; ip route add default via "$router" ;; esac\n',
    );
    await chmod(script, 0o755);
    await inNs(
      guest,
      ["busybox", "udhcpc", "-i", "gst0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", script],
      20_000,
    );
    const got = JSON.parse(await inNs(guest, ["ip", "-json", "-4", "addr", "show", "dev", "gst0"])) as {
      addr_info: { local: string; prefixlen: number }[];
    }[];
    expect(got[0]?.addr_info.map((a) => `${a.local}/${a.prefixlen}`)).toEqual([`${guestIp}/24`]);

    // The "guest" serves; a container app on the instance fetches through veth ⇄ mirred ⇄ tap.
    await httpServer(guest, "marker-VM", 80);
    expect(
      await waitFor(() => httpGet(rp.plan.netns, `http://${guestIp}/`), { message: "guest from peer" }),
    ).toBe("marker-VM");
  });
});
