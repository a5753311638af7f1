// Apps with network interfaces, end to end on real kernel objects: the real task-executor (its own
// process) with EVE_NET_NS naming a "host" netns this file creates, so every bridge, rule and
// dnsmasq lives there; task netns under a prefix of this file's own; a "client" netns on a veth
// standing in for the uplink. Every address used is inside these namespaces.
import { chmod, mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { Publication, subscribe } from "@eve-tasks/bus";
import type { Subscription } from "@eve-tasks/bus";
import {
  NetworkInstanceConfigSchema,
  NetworkInstanceStatusSchema,
  networkInstanceStatusKey,
} from "@eve-tasks/schemas";
import type {
  AppInstanceConfigInput,
  NetworkInstanceConfigInput,
  NetworkInstanceStatus,
  TaskStatus,
} from "@eve-tasks/schemas";
import { deferCleanup, makeRootfs, tempDir, uuidMaker, waitFor } from "./harness/index.js";
import { startExecutorNode } from "./executor-node.js";
import type { ExecutorNode } from "./executor-node.js";
import {
  httpGet,
  httpReachable,
  inNs,
  linksIn,
  makeNetns,
  netnsWithPrefix,
  startIn,
  tablesIn,
  tag,
  vethBetween,
} from "../packages/network/test/ns.js";

const newUuid = uuidMaker("0e700000");
const NODE = "local";

describe("apps with network interfaces", () => {
  let node: ExecutorNode;
  let rootfs: string;
  let volumes: string;
  let host: string;
  let client: string;
  let prefix: string;
  let instances: Publication<typeof NetworkInstanceConfigSchema>;
  let niStatuses: Subscription<typeof NetworkInstanceStatusSchema>;
  const apps = new Set<string>();

  beforeAll(async () => {
    const t = tag();
    host = await makeNetns(`nwe${t}-host`);
    client = await makeNetns(`nwe${t}-client`);
    await vethBetween(host, "up0", "192.168.77.1/24", client, "eth0", "192.168.77.2/24");
    prefix = `eve-nwe${t}-`;
    const dir = await tempDir("netapps-");
    // dnsmasq drops to nobody: the run dir's parents must be searchable.
    await chmod(dir, 0o755);
    await mkdir(join(dir, "run"), { mode: 0o755 });
    volumes = join(dir, "volumes");
    rootfs = join(volumes, "rootfs");
    await makeRootfs(rootfs);
    for (const applet of ["httpd", "nc", "nslookup", "awk", "mv", "tail", "printf", "[", "ping"])
      await symlink("busybox", join(rootfs, "bin", applet)).catch(() => undefined);
    // Mount points of the task's own resolv.conf and hosts (the root is bound read-only).
    await writeFile(join(rootfs, "etc", "resolv.conf"), "");
    await writeFile(join(rootfs, "etc", "hosts"), "");
    await mkdir(join(rootfs, "www"));
    await mkdir(join(rootfs, "out"));
    await writeFile(join(rootfs, "www", "index.html"), "marker-A");
    await mkdir(join(volumes, "out"), { recursive: true });
    await chmod(volumes, 0o700);
    node = await startExecutorNode(dir, { EVE_NET_NS: host, EVE_NETNS_PREFIX: prefix });
    instances = new Publication(node.bus, {
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
    // Registered after the node: runs before its own cleanup, with the executor still there.
    deferCleanup(async () => {
      for (const uuid of apps) await node.remove(uuid);
      await waitFor(async () => (await netnsWithPrefix(prefix)).length === 0, {
        timeoutMs: 60_000,
        message: "task netns left after removing every app",
      });
      for (const name of (await instances.getAll()).keys()) await instances.unpublish(name);
      const kv = await node.bus.bucket("controller");
      await kv.delete("NetworkInstanceConfig.badgw");
      await waitFor(() => niStatuses.getAll().size === 0, {
        timeoutMs: 30_000,
        message: "network instance statuses left after deleting every instance",
      });
      await niStatuses.close();
    });
  }, 120_000);

  async function putInstance(input: Omit<NetworkInstanceConfigInput, "schemaVersion" | "node">) {
    await instances.publish(input.name, { schemaVersion: 1, node: NODE, ...input });
  }

  function niStatus(name: string, ok: (s: NetworkInstanceStatus) => boolean, what: string) {
    return waitFor(
      () => {
        const s = niStatuses.get(networkInstanceStatusKey(NODE, name));
        return s && ok(s) ? s : undefined;
      },
      { timeoutMs: 30_000, message: `network instance ${name}: ${what}` },
    );
  }

  function app(uuid: string, name: string, script: string, interfaces: unknown[]): AppInstanceConfigInput {
    apps.add(uuid);
    return {
      schemaVersion: 1,
      uuid,
      version: "1",
      displayName: name,
      virtualization: "NOHYPER",
      resources: { memoryMiB: 32, vcpus: 1 },
      root: { volume: { path: rootfs, readOnly: true } },
      volumes: [{ path: join(volumes, "out"), mountPoint: "/out", readOnly: false }],
      process: { args: ["/bin/sh", "-c", `trap 'exit 0' TERM; ${script} & wait`] },
      stopTimeoutMs: 2000,
      interfaces,
    } as AppInstanceConfigInput;
  }

  /**
   * A shell loop writing what each GET of `/` from host `hostExpr` port `port` gave to
   * /out/<file>: "<n> ok <body>" or "<n> fail" (busybox nc: Debian's static busybox wget crashes).
   */
  function fetcher(file: string, hostExpr: string, port = 80): string {
    return (
      `i=0; while true; do i=$((i+1)); h=${hostExpr}; ` +
      `b=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 1 "$h" ${port} | tail -n 1); ` +
      `if [ -n "$b" ]; then r="ok $b"; else r=fail; fi; ` +
      `echo "$i $r" > /out/${file}.new; mv /out/${file}.new /out/${file}; sleep 0.2; done`
    );
  }

  /** A shell loop writing whether each ping of `address` was answered to /out/<file>: "<n> ok" or "<n> fail". */
  function pinger(file: string, address: string): string {
    return (
      `i=0; while true; do i=$((i+1)); ` +
      `if ping -c 1 -W 1 ${address} >/dev/null 2>&1; then r=ok; else r=fail; fi; ` +
      `echo "$i $r" > /out/${file}.new; mv /out/${file}.new /out/${file}; sleep 0.2; done`
    );
  }

  /** The next result the loop writes after now. */
  async function nextResult(file: string): Promise<string> {
    const path = join(volumes, "out", file);
    const read = () =>
      readFile(path, "utf8").then(
        (t) => t.trim(),
        () => "",
      );
    const first = await waitFor(async () => (await read()) || undefined, {
      message: `${file} never written`,
    });
    const n = Number(first.split(" ")[0]);
    const later = await waitFor(
      async () => {
        const t = await read();
        return Number(t.split(" ")[0]) >= n + 2 ? t : undefined;
      },
      { message: `${file} not updated` },
    );
    return later.split(" ").slice(1).join(" ");
  }

  it("connects apps by address and by name, enforces ACLs, maps ports, keeps and frees addresses", async () => {
    await putInstance({
      name: "apps",
      type: "local",
      subnet: "10.88.0.0/24",
      gateway: "10.88.0.1",
      uplink: "up0",
    });
    const ready = await niStatus("apps", (s) => s.state === "READY", "never READY");
    expect(ready).toMatchObject({ bridge: "eb-apps", subnet: "10.88.0.0/24", error: null });

    const a = newUuid();
    const b = newUuid();
    const portMaps = [{ protocol: "tcp", hostPort: 8080, port: 80 }];
    const aConfig = app(a, "web-a", "httpd -f -p 80 -h /www", [{ name: "eth0", network: "apps", portMaps }]);
    await node.put(node.build(aConfig, 1));
    const sa = await node.settled(a);
    expect(sa).toMatchObject({ state: "RUNNING", error: null });
    expect(sa.interfaces).toHaveLength(1);
    const ipA = sa.interfaces[0]!.ip;
    expect(sa.interfaces[0]).toMatchObject({ name: "eth0", network: "apps" });
    expect(sa.interfaces[0]!.hostIfName).toMatch(/^ev[0-9a-f]{10}-0$/);

    const script = `${fetcher(`by-ip-${b}`, ipA)} & ${fetcher(
      `by-name-${b}`,
      `$(nslookup web-a | awk '/^Address/ {a=$NF} END {print a}')`,
    )}`;
    await node.put(
      node.build(app(b, "client-b", script, [{ name: "eth0", network: "apps", ip: "10.88.0.50" }]), 1),
    );
    const sb = await node.settled(b);
    expect(sb.interfaces[0]?.ip).toBe("10.88.0.50");
    expect(await nextResult(`by-ip-${b}`)).toBe("ok marker-A");
    expect(await nextResult(`by-name-${b}`)).toBe("ok marker-A");
    await niStatus("apps", (s) => s.apps.includes(a) && s.apps.includes(b), "apps not listed");

    // The client on the uplink reaches A through its port map on the uplink's address.
    expect(await waitFor(() => httpGet(client, "http://192.168.77.1:8080/"), { message: "port map" })).toBe(
      "marker-A",
    );

    // An `in` ACL dropping tcp 80 on A blocks B (same task: ACLs apply live); removing it lets B through.
    const acl = [{ direction: "in", protocol: "tcp", port: 80, action: "drop" }];
    const withAcl = app(a, "web-a", "httpd -f -p 80 -h /www", [
      { name: "eth0", network: "apps", portMaps, acls: acl },
    ]);
    await node.put(node.build(withAcl, 2));
    await node.until(a, (s) => s.configRevision === 2 && s.state === "RUNNING", "revision 2 never RUNNING");
    expect((await node.until(a, (s) => s.configRevision === 2, "")).taskId).toBe(sa.taskId);
    expect(
      await waitFor(async () => ((await nextResult(`by-ip-${b}`)) === "fail" ? "fail" : undefined), {
        message: "B still reaches A with the ACL",
      }),
    ).toBe("fail");
    expect(await httpReachable(client, "http://192.168.77.1:8080/")).toBe(false);
    await node.put(node.build(aConfig, 3));
    await node.until(a, (s) => s.configRevision === 3, "revision 3 never applied");
    expect(
      await waitFor(async () => ((await nextResult(`by-ip-${b}`)) === "ok marker-A" ? 1 : undefined), {
        message: "B never reaches A again",
      }),
    ).toBe(1);

    // A restart keeps the address (and replaces the netns).
    await node.put({ ...node.build(aConfig, 4), restartCounter: 1 });
    const restarted = await node.until(
      a,
      (s) => s.configRevision === 4 && s.state === "RUNNING" && s.taskId !== sa.taskId,
      "never restarted",
    );
    expect(restarted.interfaces[0]?.ip).toBe(ipA);

    // Changing the interface's address replaces the task.
    await node.put(
      node.build(
        app(a, "web-a", "httpd -f -p 80 -h /www", [
          { name: "eth0", network: "apps", ip: "10.88.0.77", portMaps },
        ]),
        5,
      ),
    );
    const moved = await node.until(a, (s) => s.configRevision === 5 && s.state === "RUNNING", "never moved");
    expect(moved.interfaces[0]?.ip).toBe("10.88.0.77");
    expect(moved.taskId).not.toBe(restarted.taskId);

    // Deleting B frees its address: its lease leaves the IPAM and the instance's apps.
    await node.remove(b);
    apps.delete(b);
    await niStatus("apps", (s) => !s.apps.includes(b), "B still listed");
    const ipam = JSON.parse(await readFile(join(node.dataDir, "network", "ipam", "apps.json"), "utf8")) as {
      leases: Record<string, string>;
    };
    expect(Object.keys(ipam.leases).some((k) => k.startsWith(b))).toBe(false);
    expect(Object.values(ipam.leases)).toContain("10.88.0.77");
    expect((await netnsWithPrefix(prefix)).some((n) => n.endsWith(b))).toBe(false);
  });

  it("lets an app reach only DHCP, DNS and ping on the node itself: a service of the node's is refused to it, not to the uplink", async () => {
    await niStatus("apps", (s) => s.state === "READY", "the first test's instance is not READY");
    // A service of the node's own, listening on every address of the node's (host) netns.
    startIn(host, [
      process.execPath,
      "-e",
      "require('node:http').createServer((q, r) => r.end('node-service')).listen(2323)",
    ]);
    // Controls: it answers on the bridge's address from the node itself, and on the uplink.
    expect(
      await waitFor(() => httpGet(host, "http://10.88.0.1:2323/").catch(() => undefined), {
        message: "the node's service never answered",
      }),
    ).toBe("node-service");
    expect(await httpGet(client, "http://192.168.77.1:2323/")).toBe("node-service");

    const c = newUuid();
    const script = `${fetcher(`node-tcp-${c}`, "10.88.0.1", 2323)} & ${pinger(`node-ping-${c}`, "10.88.0.1")}`;
    await node.put(node.build(app(c, "prober-c", script, [{ name: "eth0", network: "apps" }]), 1));
    await node.settled(c);
    expect(await nextResult(`node-ping-${c}`), "ping of the gateway").toBe("ok");
    expect(await nextResult(`node-tcp-${c}`), "the node's own TCP service from the app").toBe("fail");
    await node.remove(c);
    apps.delete(c);
  });

  it("puts an app on a switch instance's uplink L2: it and a client there reach each other, no NAT", async () => {
    // This test's own uplink: a veth whose peer is in a "LAN" netns it makes (gone when it ends).
    const lan = await makeNetns(`${host.replace(/-host$/, "")}-lan`);
    await vethBetween(host, "sw0", null, lan, "eth0", "10.66.0.254/24");
    const before = await linksIn(host);
    await putInstance({
      name: "lan",
      type: "switch",
      subnet: "10.66.0.0/24",
      gateway: "10.66.0.254",
      uplink: "sw0",
    });
    const ready = await niStatus("lan", (s) => s.state === "READY", "never READY");
    expect(ready).toMatchObject({ bridge: "eb-lan", error: null });
    const master = async () =>
      (JSON.parse(await inNs(host, ["ip", "-json", "link", "show", "sw0"])) as { master?: string }[])[0]
        ?.master;
    expect(await master()).toBe("eb-lan");
    // The LAN host answers with the address it sees the request come from.
    startIn(lan, [
      process.execPath,
      "-e",
      "require('http').createServer((q,s)=>s.end(q.socket.remoteAddress.replace('::ffff:',''))).listen(80)",
    ]);

    const s = newUuid();
    await node.put(
      node.build(
        app(s, "on-lan", `httpd -f -p 80 -h /www & ${fetcher(`lan-${s}`, "10.66.0.254")}`, [
          { name: "eth0", network: "lan", ip: "10.66.0.20" },
        ]),
        1,
      ),
    );
    const st = await node.settled(s);
    expect(st).toMatchObject({ state: "RUNNING", error: null });
    expect(st.interfaces[0]).toMatchObject({ name: "eth0", network: "lan", ip: "10.66.0.20" });
    // The app reaches the LAN host, which sees the app's own address (same L2, no NAT) ...
    expect(
      await waitFor(async () => ((await nextResult(`lan-${s}`)) === "ok 10.66.0.20" ? 1 : undefined), {
        message: "the app never reached the LAN host",
      }),
    ).toBe(1);
    // ... and the LAN host reaches the app, having learnt its MAC on the wire.
    expect(await waitFor(() => httpGet(lan, "http://10.66.0.20/"), { message: "app from the LAN" })).toBe(
      "marker-A",
    );
    expect(await inNs(lan, ["ip", "neigh", "show", "10.66.0.20"])).toContain(st.interfaces[0]!.mac);

    // Deleting the app and the instance leaves the host as it was, the uplink released.
    await node.remove(s);
    apps.delete(s);
    await waitFor(async () => !(await netnsWithPrefix(prefix)).some((n) => n.endsWith(s)), {
      message: "the app's netns stayed",
    });
    await instances.unpublish("lan");
    await waitFor(() => niStatuses.get(networkInstanceStatusKey(NODE, "lan")) === undefined, {
      message: "instance lan never went",
    });
    expect(await master()).toBeUndefined();
    expect(await linksIn(host)).toEqual(before);
    expect(await tablesIn(host)).not.toContain("inet eve_ni_lan");
  });

  it("reports bad input: an overlapping subnet, an address outside the subnet; an unknown network waits", async () => {
    await putInstance({
      name: "apps",
      type: "local",
      subnet: "10.88.0.0/24",
      gateway: "10.88.0.1",
      uplink: "up0",
    });
    await niStatus("apps", (s) => s.state === "READY", "never READY");
    await putInstance({ name: "overlap", type: "local", subnet: "10.88.0.128/25", gateway: "10.88.0.129" });
    const bad = await niStatus("overlap", (s) => s.state === "FAILED", "never FAILED");
    expect(bad.error?.message).toMatch(/overlaps 10\.88\.0\.0\/24 of network instance apps/);
    // Written as raw JSON (a Publication refuses it): anyone may put anything into the bucket.
    const kv = await node.bus.bucket("controller");
    await kv.put(
      "NetworkInstanceConfig.badgw",
      JSON.stringify({
        schemaVersion: 1,
        name: "badgw",
        node: NODE,
        type: "local",
        subnet: "10.89.0.0/24",
        gateway: "10.90.0.1",
      }),
    );
    const gw = await niStatus("badgw", (s) => s.state === "FAILED", "never FAILED");
    expect(gw.error?.message).toMatch(/gateway 10\.90\.0\.1 is outside the subnet 10\.89\.0\.0\/24/);

    const outside = newUuid();
    await node.put(
      node.build(
        app(outside, "outside", "sleep 3600", [{ name: "eth0", network: "apps", ip: "10.99.0.5" }]),
        1,
      ),
    );
    const failed = await node.settled(outside);
    expect(failed.state).toBe("FAILED");
    expect(failed.error?.message).toMatch(/interfaces\[0\]\.ip: .*10\.99\.0\.5/);
    expect((await netnsWithPrefix(prefix)).some((n) => n.endsWith(outside))).toBe(false);

    const waiting = newUuid();
    await node.put(
      node.build(app(waiting, "waiting", "sleep 3600", [{ name: "eth0", network: "later" }]), 1),
    );
    const pending = await node.settled(waiting, ["PENDING", "RUNNING", "FAILED"]);
    expect(pending).toMatchObject({ state: "PENDING", waitingFor: "network" });
    await putInstance({ name: "later", type: "local", subnet: "10.91.0.0/24", gateway: "10.91.0.1" });
    const running = await node.settled(waiting);
    expect(running.state).toBe("RUNNING");
    expect(running.interfaces[0]?.ip).toMatch(/^10\.91\.0\./);

    // The instance deleted while the app uses it stays, and says so; it goes with the app.
    await instances.unpublish("later");
    const kept = await niStatus("later", (s) => s.error !== null, "no error for a deleted instance in use");
    expect(kept.error?.message).toMatch(/deleted; it stays while apps use it/);
    await node.remove(waiting);
    apps.delete(waiting);
    await waitFor(() => niStatuses.get(networkInstanceStatusKey(NODE, "later")) === undefined, {
      message: "the deleted instance stayed after its last app",
    });
    expect(await linksIn(host)).not.toContain("eb-later");
  });

  it("starts and stops 20 apps with interfaces without leaving anything behind", async () => {
    await putInstance({
      name: "apps",
      type: "local",
      subnet: "10.88.0.0/24",
      gateway: "10.88.0.1",
      uplink: "up0",
    });
    await niStatus("apps", (s) => s.state === "READY", "never READY");
    const before = {
      netns: await netnsWithPrefix(prefix),
      links: await linksIn(host),
      tables: await tablesIn(host),
    };
    const uuids = Array.from({ length: 20 }, () => newUuid());
    // Five at a time: on a shared, loaded machine twenty Tasks.Create at once can pass
    // containerd's deadline, which is not what this test is about.
    const statuses: TaskStatus[] = [];
    for (let k = 0; k < uuids.length; k += 5) {
      const batch = uuids.slice(k, k + 5);
      await Promise.all(
        batch.map((u, i) =>
          node.put(node.build(app(u, `many-${k + i}`, "sleep 3600", [{ name: "eth0", network: "apps" }]), 1)),
        ),
      );
      statuses.push(
        ...(await Promise.all(
          batch.map((u) =>
            node.until(u, (s) => s.state === "RUNNING" || s.state === "FAILED", "never settled", 150_000),
          ),
        )),
      );
    }
    expect(statuses.map((s) => s.state)).toEqual(uuids.map(() => "RUNNING"));
    expect(new Set(statuses.map((s) => s.interfaces[0]?.ip)).size).toBe(20);
    expect((await netnsWithPrefix(prefix)).length).toBe(before.netns.length + 20);
    for (const u of uuids) {
      await node.remove(u);
      apps.delete(u);
    }
    await waitFor(async () => (await netnsWithPrefix(prefix)).length === before.netns.length, {
      timeoutMs: 60_000,
      message: "task netns left",
    });
    await waitFor(async () => (await linksIn(host)).length === before.links.length, {
      message: "links left",
    });
    expect(await linksIn(host)).toEqual(before.links);
    expect(await tablesIn(host)).toEqual(before.tables);
  }, 400_000);
});
