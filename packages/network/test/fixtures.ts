// Shared pieces of the network integration tests.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { NetworkInstanceConfig, NetworkInstanceConfigInput } from "@eve-tasks/schemas";
import { AppInterfacesSchema, NetworkInstanceConfigSchema } from "@eve-tasks/schemas";
import { deferCleanup, tempDir } from "../../../test/harness/index.js";
import type { AppNetworkSpec, InstanceEndpoint, ResolvedAppNetwork } from "../src/index.js";
import { NodeNetwork } from "../src/index.js";
import { inNs, makeNetns, netnsWithPrefix, searchableTempDir, startIn, tag } from "./ns.js";

/**
 * A fresh node: its host netns (as EVE_NET_NS) and a NodeNetwork there with its own dirs and netns
 * prefix; `netnsHelper` is the built helper to give it (see `netnsHelperBinary`), else task
 * networks are built with ip batches.
 */
export async function makeNode(o: { netnsHelper?: string | undefined } = {}) {
  const t = tag();
  const host = await makeNetns(`nwt${t}-host`);
  const prefix = `eve-nwt${t}-`;
  const dataDir = await tempDir("nwd-");
  const runDir = await searchableTempDir("nwr-");
  const net = new NodeNetwork({
    hostNetns: host,
    dataDir,
    runDir,
    netnsPrefix: prefix,
    ...(o.netnsHelper !== undefined ? { netnsHelper: o.netnsHelper } : {}),
  });
  deferCleanup(async () => {
    await net.close();
    // Whatever a failed test left, by the names it generated.
    for (const ns of await netnsWithPrefix(prefix))
      await inNs(host, ["ip", "netns", "del", ns]).catch(() => undefined);
  });
  return { host, net, prefix, dataDir, runDir, t };
}

/** A validated instance config. */
export function instance(input: Omit<NetworkInstanceConfigInput, "schemaVersion">): NetworkInstanceConfig {
  return NetworkInstanceConfigSchema.parse({ schemaVersion: 1, ...input });
}

/** An app's network spec from interfaces as a user writes them. */
export function app(
  uuid: string,
  displayName: string,
  interfaces: unknown[],
  virtualization: "NOHYPER" | "HVM" = "NOHYPER",
): AppNetworkSpec {
  return { uuid, displayName, virtualization, interfaces: AppInterfacesSchema.parse(interfaces) };
}

/** The endpoints on `instance` of resolved apps. */
export function endpointsOf(instance: string, apps: readonly ResolvedAppNetwork[]): InstanceEndpoint[] {
  return apps.flatMap((a) => a.endpoints.filter((e) => e.instance === instance).map((e) => e.endpoint));
}

/** Starts busybox httpd serving `marker` on `port` in `ns`. */
export async function httpServer(ns: string, marker: string, port: number): Promise<void> {
  const dir = await tempDir("nwh-");
  await writeFile(join(dir, "index.html"), marker);
  startIn(ns, ["busybox", "httpd", "-f", "-p", String(port), "-h", dir]);
}

/** Sets up a resolved app's task network (torn down when the test finishes). */
export async function startTask(net: NodeNetwork, r: ResolvedAppNetwork, filesDir: string) {
  const result = await net.setupTask(r, filesDir);
  deferCleanup(() =>
    net.teardownTask(
      r.plan.uuid,
      r.statuses.map((s) => s.hostIfName),
    ),
  );
  return result;
}
