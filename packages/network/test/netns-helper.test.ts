// The netns helper (native/eve-netns.c) on real kernel objects, in namespaces this test makes: it
// builds exactly what the ip batches build, refuses what is not a name before touching anything,
// tears down idempotently, and survives its own death.
import { existsSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import type { TaskNetworkPlan } from "../src/index.js";
import {
  CommandError,
  NetnsHelper,
  runCommand,
  setupTaskNetwork,
  teardownTaskNetwork,
} from "../src/index.js";
import { deferCleanup } from "../../../test/harness/index.js";
import { inNs, makeNetns, netnsHelperBinary, tag } from "./ns.js";

let binary: string;
beforeAll(async () => {
  binary = await netnsHelperBinary();
});

/** A host netns with bridge `br0` (10.77.0.1/24), and a helper removed with the test. */
async function hostWithBridge(): Promise<{ host: string; helper: NetnsHelper; t: string }> {
  const t = tag();
  const host = await makeNetns(`nht${t}-host`);
  await runCommand(["ip", "-n", host, "link", "add", "br0", "type", "bridge"]);
  await runCommand(["ip", "-n", host, "addr", "add", "10.77.0.1/24", "dev", "br0"]);
  await runCommand(["ip", "-n", host, "link", "set", "br0", "up"]);
  const helper = new NetnsHelper(binary);
  deferCleanup(() => helper.close());
  return { host, helper, t };
}

function plan(netns: string, hostIfName: string, ip: string, mac: string): TaskNetworkPlan {
  return {
    uuid: "00000000-0000-4000-8000-000000000000",
    netns,
    interfaces: [
      {
        name: "eth0",
        hostIfName,
        bridge: "br0",
        mac,
        ip,
        prefixLength: 24,
        gateway: "10.77.0.1",
        mtu: 1400,
        defaultRoute: true,
      },
    ],
  };
}

const json = async <T>(argv: string[]): Promise<T> => JSON.parse((await runCommand(argv)).stdout) as T;

/** What a task netns holds, without what differs by design between two tasks (names, addresses). */
async function shapeOf(netns: string, host: string, hostIf: string) {
  type Link = { ifname: string; mtu: number; flags: string[]; operstate: string; link_type: string };
  type Addr = { ifname: string; addr_info: { family: string; prefixlen: number; scope: string }[] };
  type Route = {
    dst: string;
    gateway?: string;
    prefsrc?: string;
    dev: string;
    protocol?: string;
    scope?: string;
  };
  const links = await json<Link[]>(["ip", "-n", netns, "-json", "link", "show"]);
  const addrs = await json<Addr[]>(["ip", "-n", netns, "-json", "addr", "show"]);
  const routes = await json<Route[]>(["ip", "-n", netns, "-json", "route", "show"]);
  const [hostEnd] = await json<{ mtu: number; master: string; operstate: string }[]>([
    "ip",
    "-n",
    host,
    "-json",
    "link",
    "show",
    "dev",
    hostIf,
  ]);
  return {
    links: links.map((l) => ({ ifname: l.ifname, mtu: l.mtu, flags: l.flags, link_type: l.link_type })),
    addrs: addrs.map((a) => ({
      ifname: a.ifname,
      inet: a.addr_info
        .filter((i) => i.family === "inet")
        .map((i) => ({ prefixlen: i.prefixlen, scope: i.scope })),
    })),
    routes: routes.map((r) => ({
      ...r,
      dst: r.dst === "default" ? r.dst : "subnet",
      gateway: r.gateway ? "gw" : undefined,
      prefsrc: r.prefsrc ? "own address" : undefined,
    })),
    hostEnd: { mtu: hostEnd?.mtu, master: hostEnd?.master, operstate: hostEnd?.operstate },
  };
}

describe("the netns helper", () => {
  it("builds what the ip batches build: loopback, the veth on the bridge, MAC, MTU, address, default route", async () => {
    const { host, helper, t } = await hostWithBridge();
    const byIp = plan(`nht${t}-ip`, `nh${t}ip`, "10.77.0.2", "02:00:00:00:77:02");
    const byHelper = plan(`nht${t}-hl`, `nh${t}hl`, "10.77.0.3", "02:00:00:00:77:03");
    deferCleanup(() => teardownTaskNetwork(host, byIp.netns, [`nh${t}ip`]));
    deferCleanup(() => teardownTaskNetwork(host, byHelper.netns, [`nh${t}hl`], helper));
    await setupTaskNetwork(host, byIp);
    await setupTaskNetwork(host, byHelper, helper);

    const shape = await shapeOf(byHelper.netns, host, `nh${t}hl`);
    expect(shape).toEqual(await shapeOf(byIp.netns, host, `nh${t}ip`));
    expect(shape.hostEnd).toEqual({ mtu: 1400, master: "br0", operstate: "UP" });
    // Its own address and MAC, and it reaches the gateway and the other task.
    const [eth0] = await json<{ address: string; addr_info: { local: string }[] }[]>([
      "ip",
      "-n",
      byHelper.netns,
      "-json",
      "addr",
      "show",
      "dev",
      "eth0",
    ]);
    expect(eth0?.address).toBe("02:00:00:00:77:03");
    expect(eth0?.addr_info.map((a) => a.local)).toContain("10.77.0.3");
    for (const ip of ["10.77.0.1", "10.77.0.2"])
      await inNs(byHelper.netns, ["busybox", "ping", "-c", "1", "-W", "2", ip]);

    // Torn down, twice: nothing left, no error.
    await teardownTaskNetwork(host, byHelper.netns, [`nh${t}hl`], helper);
    await helper.teardown(host, byHelper.netns, [`nh${t}hl`]);
    expect(existsSync(`/run/netns/${byHelper.netns}`)).toBe(false);
    const hostLinks = await json<{ ifname: string }[]>(["ip", "-n", host, "-json", "link", "show"]);
    expect(hostLinks.map((l) => l.ifname)).not.toContain(`nh${t}hl`);
  });

  it("names the side that failed, and the caller's retry and teardown leave nothing", async () => {
    const { host, helper, t } = await hostWithBridge();
    const p = plan(`nht${t}-bad`, `nh${t}bad`, "10.77.0.4", "02:00:00:00:77:04");
    // Before anything is made: a failing assertion below still leaves nothing.
    deferCleanup(() => teardownTaskNetwork(host, p.netns, [`nh${t}bad`], helper));
    const noBridge = { ...p, interfaces: p.interfaces.map((i) => ({ ...i, bridge: "br9" })) };
    await expect(setupTaskNetwork(host, noBridge, helper)).rejects.toThrow(
      `the host side of netns ${p.netns} failed: bridge br9: No such device`,
    );
    const unreachable = { ...p, interfaces: p.interfaces.map((i) => ({ ...i, gateway: "10.99.0.1" })) };
    await expect(setupTaskNetwork(host, unreachable, helper)).rejects.toThrow(
      new RegExp(
        `^the task side of netns ${p.netns} failed: route add default via 10\\.99\\.0\\.1 dev eth0: .+`,
      ),
    );
    expect(existsSync(`/run/netns/${p.netns}`)).toBe(false);
    const hostLinks = await json<{ ifname: string }[]>(["ip", "-n", host, "-json", "link", "show"]);
    expect(hostLinks.map((l) => l.ifname).sort()).toEqual(["br0", "lo"]);

    // A netns and veth left by an interrupted setup: rebuilt over them.
    await runCommand(["ip", "netns", "add", p.netns]);
    await setupTaskNetwork(host, p, helper);
    expect(existsSync(`/run/netns/${p.netns}`)).toBe(true);
  });

  it("refuses what is not a name before touching anything (an attacker's path or an extra request)", async () => {
    const { host, helper, t } = await hostWithBridge();
    const escape = plan(`../../tmp/nht${t}-escape`, `nh${t}esc`, "10.77.0.5", "02:00:00:00:77:05");
    const err = await helper.setup(host, escape).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).context.stage).toBe("args");
    expect(existsSync(`/tmp/nht${t}-escape`)).toBe(false);

    // A newline would make a second request: refused before it is written.
    const injected = plan(`nht${t}-inj`, `nh${t}inj`, "10.77.0.6", "02:00:00:00:77:06");
    deferCleanup(() => teardownTaskNetwork(host, injected.netns, [`nh${t}inj`], helper));
    const twoLines = {
      ...injected,
      interfaces: injected.interfaces.map((i) => ({ ...i, name: "eth0\n9 teardown x - 0" })),
    };
    await expect(helper.setup(host, twoLines)).rejects.toThrow(/is not a name/);
    // A name longer than the kernel's 15 characters, and a bad MAC: refused by the helper.
    const long = {
      ...injected,
      interfaces: injected.interfaces.map((i) => ({ ...i, hostIfName: "x".repeat(16) })),
    };
    await expect(helper.setup(host, long)).rejects.toThrow(/invalid field/);
    const mac = {
      ...injected,
      interfaces: injected.interfaces.map((i) => ({ ...i, mac: "02:00:00:00:77" })),
    };
    await expect(helper.setup(host, mac)).rejects.toThrow(/invalid field/);
    expect(existsSync(`/run/netns/${injected.netns}`)).toBe(false);
  });

  it("applies an nft ruleset in the host netns as one transaction, and refuses a bad one whole", async () => {
    const { host, helper, t } = await hostWithBridge();
    const table = `eve_nht${t}`;
    const good = `table inet ${table}\ndelete table inet ${table}\ntable inet ${table} {\n  chain c {\n    type filter hook input priority 0; policy accept;\n    tcp dport 80 drop\n  }\n}\n`;
    deferCleanup(() =>
      runCommand(["ip", "netns", "exec", host, "nft", "delete", "table", "inet", table]).catch(
        () => undefined,
      ),
    );
    await helper.nft(host, good);
    const list = async () =>
      (await runCommand(["ip", "netns", "exec", host, "nft", "list", "table", "inet", table])).stdout;
    expect(await list()).toMatch(/tcp dport 80 drop/);
    // A script whose second part is wrong changes nothing: the table keeps its rule.
    const bad = `delete table inet ${table}\ntable inet ${table} {\n  chain c {\n    tcp dport 81 dropp\n  }\n}\n`;
    await expect(helper.nft(host, bad)).rejects.toThrow(/^nft: Error: syntax error/);
    expect(await list()).toMatch(/tcp dport 80 drop/);
    // Requests after a payload are read as requests again.
    await helper.nft(host, good);
  });

  it("keeps its owner alive while it closes, and not while it idles", async () => {
    const script = [
      `import { NetnsHelper } from ${JSON.stringify(new URL("../dist/netns-helper.js", import.meta.url).pathname)};`,
      `const h = new NetnsHelper(${JSON.stringify(binary)});`,
      `await h.teardown(null, "nht-absent-${tag()}", []);`,
      'process.stdout.write("idle\\n");',
      "await h.close();",
      'process.stdout.write("closed\\n");',
    ].join("\n");
    const { stdout } = await runCommand([process.execPath, "--input-type=module", "-e", script], {
      timeoutMs: 10_000,
    });
    expect(stdout).toBe("idle\nclosed\n");
  });

  it("fails nothing when it is killed between requests: the next request starts a new one", async () => {
    const { host, helper, t } = await hostWithBridge();
    const a = plan(`nht${t}-a`, `nh${t}a`, "10.77.0.7", "02:00:00:00:77:07");
    const b = plan(`nht${t}-b`, `nh${t}b`, "10.77.0.8", "02:00:00:00:77:08");
    deferCleanup(() => teardownTaskNetwork(host, a.netns, [`nh${t}a`], helper));
    deferCleanup(() => teardownTaskNetwork(host, b.netns, [`nh${t}b`], helper));
    await setupTaskNetwork(host, a, helper);
    const [pid] = helper.pids();
    expect(pid).toBeGreaterThan(0);
    const gone = new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (!existsSync(`/proc/${pid}`) || !helper.pids().includes(pid!)) {
          clearInterval(poll);
          resolve();
        }
      }, 10);
    });
    process.kill(pid!, "SIGKILL");
    await gone;
    await setupTaskNetwork(host, b, helper);
    expect(helper.pids()[0]).not.toBe(pid);
    expect(existsSync(`/run/netns/${b.netns}`)).toBe(true);
  });
});
