// An instance's dnsmasq under supervision: it re-reads names on SIGHUP, comes back after being
// killed, and is stopped by its PID. Real dnsmasq in namespaces this test makes.
import { randomUUID } from "node:crypto";
import { chmod } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { tempDir, waitFor } from "../../../test/harness/index.js";
import { DnsmasqSupervisor, bridgeName, dnsmasqPaths, ensureBridge } from "../src/index.js";
import { inNs, makeNetns, searchableTempDir, tag } from "./ns.js";

describe("an instance's dnsmasq", () => {
  it("serves new names after SIGHUP, is restarted when killed, and stops by PID", async () => {
    const host = await makeNetns(`nwt${tag()}-host`);
    const bridge = bridgeName("dns");
    await ensureBridge(host, {
      type: "local",
      bridge,
      mac: "02:00:00:00:00:aa",
      mtu: 1500,
      gateway: "10.55.0.1",
      subnet: "10.55.0.0/24",
      uplink: null,
    });
    const paths = dnsmasqPaths(await tempDir("nwd-"), await searchableTempDir("nwr-"), "dns");
    const sup = new DnsmasqSupervisor({ hostNetns: host, paths, backoffMs: 50 });
    const ni = { name: "dns", bridge, subnet: "10.55.0.0/24", gateway: "10.55.0.1", mtu: 1500, dns: [] };
    const one = { mac: "02:00:00:00:00:01", ip: "10.55.0.2", names: ["one"] };
    await sup.start(ni, [one]);
    try {
      const lookup = (name: string) => inNs(host, ["busybox", "nslookup", name, "10.55.0.1"]);
      expect(await lookup("one")).toMatch(/Address:\s*10\.55\.0\.2\b/);
      const two = { mac: "02:00:00:00:00:02", ip: "10.55.0.3", names: ["two", randomUUID()] };
      await sup.update([one, two]);
      expect(
        await waitFor(() => lookup("two").then((o) => /Address:\s*10\.55\.0\.3\b/.test(o)), {
          message: "two after SIGHUP",
        }),
      ).toBe(true);

      const first = sup.pid ?? 0;
      expect(first).toBeGreaterThan(0);
      process.kill(first, "SIGKILL");
      const second = await waitFor(() => (sup.pid !== undefined && sup.pid !== first ? sup.pid : undefined), {
        message: "restart",
      });
      expect(sup.starts).toBe(2);
      expect(
        await waitFor(() => lookup("two").then((o) => /10\.55\.0\.3/.test(o)), {
          message: "names after restart",
        }),
      ).toBe(true);

      await sup.stop();
      expect(sup.pid).toBeUndefined();
      expect(() => process.kill(second, 0)).toThrow();
    } finally {
      await sup.stop();
    }
  });

  it("refuses a run directory user nobody cannot enter, with the directory named", async () => {
    const host = await makeNetns(`nwt${tag()}-host`);
    const closed = await tempDir("nwc-");
    await chmod(closed, 0o700);
    const sup = new DnsmasqSupervisor({
      hostNetns: host,
      paths: dnsmasqPaths(await tempDir("nwd-"), closed, "x"),
    });
    await expect(
      sup.start(
        { name: "x", bridge: "eb-x", subnet: "10.56.0.0/24", gateway: "10.56.0.1", mtu: 1500, dns: [] },
        [],
      ),
    ).rejects.toThrow(`${closed} is not searchable by others`);
  });
});
