// Lifecycle on real kernel objects in namespaces this test makes: addresses survive a restart of
// the node's network code, the sweep removes exactly what nobody wants, and many task netns come
// and go without leaking netns, links or nft tables.
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { NodeNetwork, observeSweep } from "../src/index.js";
import { app, endpointsOf, instance, makeNode, startTask } from "./fixtures.js";
import { linksIn, netnsHelperBinary, netnsWithPrefix, tablesIn } from "./ns.js";

describe("the IPAM", () => {
  it("keeps an app's address across a restart until the app is released", async () => {
    const { host, net, dataDir, runDir, prefix } = await makeNode();
    const ni = instance({ name: "apps", type: "local", subnet: "10.88.0.0/24", gateway: "10.88.0.1" });
    const instances = new Map([[ni.name, ni]]);
    const a = app(randomUUID(), "a", [{ name: "eth0", network: "apps" }]);
    const b = app(randomUUID(), "b", [{ name: "eth0", network: "apps" }]);
    const c = app(randomUUID(), "c", [{ name: "eth0", network: "apps" }]);
    expect((await net.resolveApp(a, instances)).statuses[0]?.ip).toBe("10.88.0.2");
    expect((await net.resolveApp(b, instances)).statuses[0]?.ip).toBe("10.88.0.3");

    const restarted = new NodeNetwork({ hostNetns: host, dataDir, runDir, netnsPrefix: prefix });
    expect((await restarted.resolveApp(b, instances)).statuses[0]?.ip).toBe("10.88.0.3");
    expect((await restarted.resolveApp(a, instances)).statuses[0]?.ip).toBe("10.88.0.2");
    await restarted.releaseApp(a.uuid);
    expect((await restarted.resolveApp(c, instances)).statuses[0]?.ip).toBe("10.88.0.2");
    // A taken address named in a config is an error naming the field.
    const d = app(randomUUID(), "d", [{ name: "eth0", network: "apps", ip: "10.88.0.3" }]);
    await expect(restarted.resolveApp(d, instances)).rejects.toThrow(
      `interfaces[0].ip: 10.88.0.3 is taken by app ${b.uuid}`,
    );
    // Concurrent requests in one process never get the same address.
    const many = Array.from({ length: 20 }, (_, i) =>
      app(randomUUID(), `m${i}`, [{ name: "eth0", network: "apps" }]),
    );
    const ips = await Promise.all(
      many.map((m) => restarted.resolveApp(m, instances).then((r) => r.statuses[0]?.ip)),
    );
    expect(new Set(ips).size).toBe(20);
  });
});

describe.each([
  ["ip batches", false],
  ["the netns helper", true],
])("built with %s", (_how, withHelper) => {
  let netnsHelper: string | undefined;
  beforeAll(async () => {
    if (withHelper) netnsHelper = await netnsHelperBinary();
  });
  const node = () => makeNode({ netnsHelper });

  describe("the sweep", () => {
    it("removes exactly the netns, veths, bridges, tables, dnsmasq and IPAM entries nobody wants", async () => {
      const { host, net, dataDir, runDir, prefix } = await node();
      const keep = instance({ name: "keep", type: "local", subnet: "10.88.0.0/24", gateway: "10.88.0.1" });
      const gone = instance({ name: "gone", type: "local", subnet: "10.77.0.0/24", gateway: "10.77.0.1" });
      const instances = new Map([
        [keep.name, keep],
        [gone.name, gone],
      ]);
      const stays = app(randomUUID(), "stays", [{ name: "eth0", network: "keep" }]);
      const stopped = app(randomUUID(), "stopped", [{ name: "eth0", network: "keep" }]);
      const deleted = app(randomUUID(), "deleted", [{ name: "eth0", network: "gone" }]);
      const rs = await Promise.all([stays, stopped, deleted].map((x) => net.resolveApp(x, instances)));
      await net.applyInstance(keep, endpointsOf("keep", rs));
      await net.applyInstance(gone, endpointsOf("gone", rs));
      for (const r of rs) await startTask(net, r, join(runDir, "tasks", r.plan.uuid));
      const goneDnsmasq = net.dnsmasqPid("gone");
      expect(goneDnsmasq).toBeGreaterThan(0);

      // As after a crash: a fresh NodeNetwork (no memory of what it started) sweeps.
      const fresh = new NodeNetwork({ hostNetns: host, dataDir, runDir, netnsPrefix: prefix });
      const removed = await fresh.sweep({
        running: new Map([[stays.uuid, rs[0]?.statuses.map((s) => s.hostIfName) ?? []]]),
        instances: new Set(["keep"]),
        apps: new Set([stays.uuid, stopped.uuid]),
      });
      expect(removed.netns.sort()).toEqual([rs[1]?.plan.netns, rs[2]?.plan.netns].sort());
      expect(removed.links.sort()).toEqual(
        ["eb-gone", rs[1]?.statuses[0]?.hostIfName, rs[2]?.statuses[0]?.hostIfName].sort(),
      );
      expect(removed.tables).toEqual(["bridge eve_ni_gone", "inet eve_ni_gone"]);
      expect(removed.dnsmasq).toEqual([{ instance: "gone", pid: goneDnsmasq }]);
      expect(removed.ipam).toEqual(["gone"]);

      const left = await observeSweep({ hostNetns: host, dataDir, runDir, netnsPrefix: prefix });
      expect(left.netns).toEqual([rs[0]?.plan.netns]);
      expect(left.links).toEqual(["eb-keep", rs[0]?.statuses[0]?.hostIfName].sort());
      expect(left.tables).toEqual(["bridge eve_ni_keep", "inet eve_ni_keep"]);
      expect([...left.dnsmasq.keys()]).toEqual(["keep"]);
      expect(() => process.kill(goneDnsmasq ?? 0, 0)).toThrow();
      // The stopped app keeps its address; the deleted app's instance has no IPAM file left.
      expect(Object.keys(await fresh.ipam.leases(keep)).sort()).toEqual(
        [`${stays.uuid}/eth0`, `${stopped.uuid}/eth0`].sort(),
      );

      // Nothing wanted: everything of ours goes, and nothing else in the host netns.
      const all = await fresh.sweep({ running: new Map(), instances: new Set(), apps: new Set() });
      expect(all.dnsmasq.map((d) => d.instance)).toEqual(["keep"]);
      expect(await netnsWithPrefix(prefix)).toEqual([]);
      expect(await linksIn(host)).toEqual(["lo"]);
      expect(await tablesIn(host)).toEqual([]);
    });
  });

  describe("a task's network", () => {
    it("is rebuilt over what an interrupted setup left, and torn down without its config", async () => {
      const { host, net, runDir, prefix } = await node();
      const ni = instance({ name: "apps", type: "local", subnet: "10.88.0.0/24", gateway: "10.88.0.1" });
      const a = app(randomUUID(), "a", [{ name: "eth0", network: "apps" }]);
      const r = await net.resolveApp(a, new Map([[ni.name, ni]]));
      await net.applyInstance(ni, endpointsOf("apps", [r]));
      const files = join(runDir, "tasks", a.uuid);
      await net.setupTask(r, files);
      // As if the executor died after creating the netns and veth: the same setup runs again.
      await net.setupTask(r, files);
      expect(await netnsWithPrefix(prefix)).toEqual([r.plan.netns]);
      expect((await linksIn(host)).filter((l) => l.startsWith("ev"))).toEqual([r.statuses[0]?.hostIfName]);
      await net.teardownTask(a.uuid);
      await net.teardownTask(a.uuid);
      expect(await netnsWithPrefix(prefix)).toEqual([]);
      expect(await linksIn(host)).toEqual(["eb-apps", "lo"]);
    });
  });

  describe("a task's network that cannot be built", () => {
    it("says which side failed and why, and leaves nothing behind", async () => {
      const { host, net, runDir, prefix } = await node();
      const ni = instance({ name: "bad", type: "local", subnet: "10.87.0.0/24", gateway: "10.87.0.1" });
      const a = app(randomUUID(), "a", [{ name: "eth0", network: "bad" }]);
      const r = await net.resolveApp(a, new Map([[ni.name, ni]]));
      await net.applyInstance(ni, endpointsOf("bad", [r]));
      // A default route through a gateway the interface cannot reach: the task's batch fails.
      const unreachable = {
        ...r,
        plan: {
          ...r.plan,
          interfaces: r.plan.interfaces.map((i) => ({ ...i, gateway: "10.86.0.1", defaultRoute: true })),
        },
      };
      await expect(net.setupTask(unreachable, join(runDir, "tasks", a.uuid))).rejects.toThrow(
        new RegExp(`^the task side of netns ${r.plan.netns} failed: .+`),
      );
      expect(await netnsWithPrefix(prefix)).toEqual([]);
      expect(await linksIn(host)).toEqual(["eb-bad", "lo"]);
    });
  });

  describe("many task netns", () => {
    it("are set up and torn down with no leak of netns, links or nft tables", async () => {
      const { host, net, runDir, prefix } = await node();
      const ni = instance({ name: "many", type: "local", subnet: "10.66.0.0/24", gateway: "10.66.0.1" });
      const instances = new Map([[ni.name, ni]]);
      const apps = Array.from({ length: 50 }, (_, i) =>
        app(randomUUID(), `app${i}`, [{ name: "eth0", network: "many" }]),
      );
      const resolved = [];
      for (const a of apps) resolved.push(await net.resolveApp(a, instances));
      await net.applyInstance(ni, []);
      const before = {
        netns: await netnsWithPrefix(prefix),
        links: await linksIn(host),
        tables: await tablesIn(host),
      };

      const totals: number[] = [];
      for (const r of resolved)
        totals.push((await net.setupTask(r, join(runDir, "tasks", r.plan.uuid))).timings.totalMs);
      await net.applyInstance(ni, endpointsOf("many", resolved));
      expect(await netnsWithPrefix(prefix)).toHaveLength(50);
      expect((await linksIn(host)).length).toBe(before.links.length + 50);
      for (const r of resolved)
        await net.teardownTask(
          r.plan.uuid,
          r.statuses.map((s) => s.hostIfName),
        );
      await net.applyInstance(ni, []);

      expect({
        netns: await netnsWithPrefix(prefix),
        links: await linksIn(host),
        tables: await tablesIn(host),
      }).toEqual(before);
      totals.sort((x, y) => x - y);
      console.log(
        `task netns setup: median ${totals[25]?.toFixed(1)} ms, max ${totals[49]?.toFixed(1)} ms (50 tasks)`,
      );
      await net.deleteInstance("many");
    });
  });
});
