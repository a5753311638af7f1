// The task-executor SIGKILLed in the middle of a task's network setup (its netns made, its task
// not created yet), then restarted: nothing of that setup is left once the app is gone. The real
// executor runs as its own process with EVE_NET_NS naming a "host" netns this file creates and
// task netns under this file's own prefix; the kill is sent by PID the moment the app's netns
// appears in /run/netns (inotify), and the test checks it came before Tasks.Create.
import { watch } from "node:fs";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { Publication, subscribe } from "@eve-tasks/bus";
import type { Subscription } from "@eve-tasks/bus";
import {
  NetworkInstanceConfigSchema,
  NetworkInstanceStatusSchema,
  networkInstanceStatusKey,
} from "@eve-tasks/schemas";
import type { AppInstanceConfigInput } from "@eve-tasks/schemas";
import { deferCleanup, makeRootfs, tempDir, uuidMaker, waitFor } from "./harness/index.js";
import { startExecutorNode } from "./executor-node.js";
import type { ExecutorNode } from "./executor-node.js";
import { linksIn, makeNetns, netnsWithPrefix, tablesIn, tag } from "../packages/network/test/ns.js";

const newUuid = uuidMaker("0ec50000");
const NODE = "local";

describe("the executor killed mid network setup", () => {
  let node: ExecutorNode;
  let host: string;
  let prefix: string;
  let rootfs: string;
  let niStatuses: Subscription<typeof NetworkInstanceStatusSchema>;
  const apps = new Set<string>();

  beforeAll(async () => {
    const t = tag();
    host = await makeNetns(`nwk${t}-host`);
    prefix = `eve-nwk${t}-`;
    const dir = await tempDir("netkill-");
    await chmod(dir, 0o755);
    await mkdir(join(dir, "run"), { mode: 0o755 });
    const volumes = join(dir, "volumes");
    rootfs = join(volumes, "rootfs");
    await makeRootfs(rootfs);
    // Mount points of the task's own resolv.conf and hosts (the root is bound read-only).
    await writeFile(join(rootfs, "etc", "resolv.conf"), "");
    await writeFile(join(rootfs, "etc", "hosts"), "");
    await chmod(volumes, 0o700);
    node = await startExecutorNode(dir, { EVE_NET_NS: host, EVE_NETNS_PREFIX: prefix });
    const instances = new Publication(node.bus, {
      agent: "controller",
      type: "NetworkInstanceConfig",
      schema: NetworkInstanceConfigSchema,
    });
    niStatuses = await subscribe(node.bus, {
      agent: "task-executor",
      type: "NetworkInstanceStatus",
      schema: NetworkInstanceStatusSchema,
      onCreate: () => undefined,
    });
    await instances.publish("apps", {
      schemaVersion: 1,
      name: "apps",
      node: NODE,
      type: "local",
      subnet: "10.85.0.0/24",
      gateway: "10.85.0.1",
    });
    await waitFor(() => niStatuses.get(networkInstanceStatusKey(NODE, "apps"))?.state === "READY", {
      message: "instance apps never READY",
    });
    // Registered after the node: runs first, with the executor there.
    deferCleanup(async () => {
      for (const uuid of apps) await node.remove(uuid);
      await waitFor(async () => (await netnsWithPrefix(prefix)).length === 0, {
        timeoutMs: 60_000,
        message: "task netns left",
      });
      await instances.unpublish("apps");
      await waitFor(() => niStatuses.getAll().size === 0, { message: "instance status left" });
      await niStatuses.close();
    });
  }, 120_000);

  function app(uuid: string): AppInstanceConfigInput {
    apps.add(uuid);
    return {
      schemaVersion: 1,
      uuid,
      version: "1",
      displayName: `crash-${uuid.slice(-4)}`,
      virtualization: "NOHYPER",
      resources: { memoryMiB: 32, vcpus: 1 },
      root: { volume: { path: rootfs, readOnly: true } },
      process: { args: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"] },
      stopTimeoutMs: 2000,
      interfaces: [{ name: "eth0", network: "apps" }],
    };
  }

  /** What of ours is on the node: task netns, links and nft tables in the host netns. */
  async function objects() {
    return { netns: await netnsWithPrefix(prefix), links: await linksIn(host), tables: await tablesIn(host) };
  }

  async function leases(): Promise<Record<string, string>> {
    const text = await readFile(join(node.dataDir, "network", "ipam", "apps.json"), "utf8").catch(() => "{}");
    return (JSON.parse(text) as { leases?: Record<string, string> }).leases ?? {};
  }

  /**
   * Publishes app `uuid` and SIGKILLs the executor (by PID) as soon as its netns appears; checks
   * the kill came before the task was created. Resolves once the executor is dead.
   */
  async function killMidSetup(uuid: string): Promise<void> {
    const netns = `${prefix}${uuid}`;
    const pid = node.executor.pids[0]!;
    const seen = new Promise<void>((resolve) => {
      const watcher = watch("/run/netns", (_event, file) => {
        if (file !== netns) return;
        process.kill(pid, "SIGKILL");
        watcher.close();
        resolve();
      });
    });
    await node.put(node.build(app(uuid), 1));
    await seen;
    expect(await node.executor.kill(0)).toEqual({ code: null, signal: "SIGKILL" });
    // Killed mid-setup: the netns is there, the task is not.
    expect(await netnsWithPrefix(prefix)).toContain(netns);
    await expect(node.containerd.tasks.get(uuid)).rejects.toThrow();
    expect(Object.keys(await leases()).some((k) => k.startsWith(uuid))).toBe(true);
  }

  /** Starts the executor again; resolves with its lines once it has resynced. */
  async function restart() {
    const r = node.executor.respawn(0);
    await node.executor.waitForLine((l) => l.pid === r.pid && l.json?.event === "resynced", 60_000);
    return r.lines;
  }

  it("leaves nothing once the app is deleted while it is down, after a restart", async () => {
    const before = await objects();
    const uuid = newUuid();
    await killMidSetup(uuid);
    // The host side of the setup happened: the app's veth is on the bridge.
    const veth = await waitFor(async () => (await linksIn(host)).find((l) => !before.links.includes(l)), {
      message: "no veth of the interrupted setup",
    });
    expect(veth).toMatch(/^ev[0-9a-f]{10}-0$/);

    await node.remove(uuid);
    apps.delete(uuid);
    const lines = await restart();
    // Its start-up sweep removed them, before any reconcile (the container, which Containers.Create
    // made alongside the netns, goes with the reconcile), and said so.
    const swept = lines.find((l) => l.json?.event === "network-swept")?.json;
    expect(swept).toMatchObject({ netns: [`${prefix}${uuid}`], links: [veth], ipam: [`apps:${uuid}/eth0`] });
    await waitFor(async () => (await netnsWithPrefix(prefix)).length === before.netns.length, {
      message: "the interrupted setup's netns stayed",
    });
    expect(await objects()).toEqual(before);
    expect(Object.keys(await leases()).some((k) => k.startsWith(uuid))).toBe(false);
    expect(await node.hasContainer(uuid)).toBe(false);
  });

  it("finishes the setup after a restart when the app stays, and leaves nothing once it is deleted", async () => {
    const before = await objects();
    const uuid = newUuid();
    await killMidSetup(uuid);
    const ip = Object.entries(await leases()).find(([k]) => k.startsWith(uuid))?.[1];
    await restart();
    const s = await node.settled(uuid);
    expect(s).toMatchObject({ state: "RUNNING", error: null });
    // The address the IPAM gave before the kill.
    expect(s.interfaces[0]?.ip).toBe(ip);
    expect((await objects()).netns).toEqual([...before.netns, `${prefix}${uuid}`].sort());

    await node.remove(uuid);
    apps.delete(uuid);
    await waitFor(async () => (await netnsWithPrefix(prefix)).length === before.netns.length, {
      message: "the app's netns stayed",
    });
    await waitFor(async () => (await linksIn(host)).length === before.links.length, {
      message: "links left",
    });
    expect(await objects()).toEqual(before);
    expect(Object.keys(await leases()).some((k) => k.startsWith(uuid))).toBe(false);
  });
});
