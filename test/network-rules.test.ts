// A task's port never runs without its rules: the executor's networks apply an app's rules while
// its netns is built and containerd creates the task, and Tasks.Start waits for them (beforeStart). Here the real NodeNetwork works in a
// "host" netns of this file's own; one rules update is made to fail, as nft failing would.
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { Publication, connectBus, ensureBuckets } from "@eve-tasks/bus";
import { TaskNetworks } from "@eve-tasks/executor";
import type { PreparedTask } from "@eve-tasks/executor";
import { NodeNetwork } from "@eve-tasks/network";
import type { InstanceEndpoint } from "@eve-tasks/network";
import { AppInterfacesSchema, messageTable } from "@eve-tasks/schemas";
import type { NetworkInstanceConfig, ReadyTaskConfig } from "@eve-tasks/schemas";
import { deferCleanup, harnessEnv, tempDir, uuidMaker, waitFor } from "./harness/index.js";
import { inNs, makeNetns, netnsWithPrefix, searchableTempDir, tag } from "../packages/network/test/ns.js";

const newUuid = uuidMaker("0e710000");

/** The node's network, whose next `failUpdates` rules updates fail before touching anything. */
class FlakyNetwork extends NodeNetwork {
  failUpdates = 0;
  override async updateEndpoints(
    ni: NetworkInstanceConfig,
    endpoints: readonly InstanceEndpoint[],
  ): Promise<void> {
    if (this.failUpdates > 0) {
      this.failUpdates--;
      throw new Error("nft: injected failure");
    }
    return super.updateEndpoints(ni, endpoints);
  }
}

describe("the rules of a task's interfaces", () => {
  it("are in place before its start goes on; a failed update fails the start, the next one applies them", async () => {
    const t = tag();
    const node = `nr${t}`;
    const name = `nr${t}`;
    const host = await makeNetns(`nwr${t}-host`);
    const prefix = `eve-nwr${t}-`;
    const net = new FlakyNetwork({
      hostNetns: host,
      dataDir: await tempDir("nwrd-"),
      runDir: await searchableTempDir("nwrr-"),
      netnsPrefix: prefix,
    });
    const bus = await connectBus({ servers: harnessEnv().natsUrl, name: "network-rules-test" });
    await ensureBuckets(bus);
    const networks = new TaskNetworks({
      bus,
      node,
      net,
      filesDir: await tempDir("nwrf-"),
      netnsPrefix: prefix,
      logger: pino({ level: "silent" }),
    });
    const instances = new Publication(bus, messageTable("NetworkInstanceConfig"));
    deferCleanup(async () => {
      await instances.unpublish(name).catch(() => undefined);
      await networks.close();
      for (const ns of await netnsWithPrefix(prefix))
        await inNs(host, ["ip", "netns", "del", ns]).catch(() => undefined);
      await bus.close();
    });
    await networks.start({ kick: () => undefined, apps: [], configured: new Set(), live: new Set() });
    await instances.publish(name, {
      schemaVersion: 1,
      name,
      node,
      type: "local",
      subnet: "10.124.0.0/24",
      gateway: "10.124.0.1",
    });

    const uuid = newUuid();
    const d = {
      uuid,
      displayName: "rules",
      interfaces: AppInterfacesSchema.parse([{ name: "eth0", network: name }]),
    } as unknown as ReadyTaskConfig;
    // Waiting until the instance is applied; the resolve that finds it registers the app.
    net.failUpdates = 1;
    const resolved = await waitFor(async () => {
      const r = await networks.resolve(d);
      return r.kind === "ready" ? r.resolved : undefined;
    });
    const port = resolved.statuses[0]!.hostIfName;
    const mac = resolved.statuses[0]!.mac;
    const task = { network: resolved } as PreparedTask;
    const ruleset = async (): Promise<string> => inNs(host, ["nft", "list", "ruleset"]);
    const portFilter = `iifname "${port}" ether saddr != ${mac} drop`;

    await networks.setUp(uuid, task);
    await expect(networks.beforeStart(uuid)).rejects.toThrow(
      `the rules for the app's interfaces are not applied on network instance ${name}`,
    );
    expect(net.failUpdates).toBe(0);
    expect(await ruleset()).not.toContain(portFilter);
    await networks.tearDown(uuid, "task-deleted");

    // The start is tried again: the app is unchanged, its rules are still owed and now applied.
    expect((await networks.resolve(d)).kind).toBe("ready");
    await networks.setUp(uuid, task);
    await networks.beforeStart(uuid);
    expect(await ruleset()).toContain(portFilter);
    expect(await inNs(host, ["ip", "link", "show", port])).toContain(`master `);

    await networks.tearDown(uuid, "app-removed");
    expect(await netnsWithPrefix(prefix)).toEqual([]);
    expect(await ruleset()).not.toContain(portFilter);
  });
});
