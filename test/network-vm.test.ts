// A VM on a `local` network instance, end to end: a node (test/harness/node.ts) with the real
// spec-builder, hypervisor-seed-fetcher and task-executor as processes (the executor's bridges in
// a "host" netns this file creates, EVE_NET_NS), the built-in `default` runtime (qemu, under TCG here), and a real guest: Debian's
// kernel with a busybox initramfs carrying virtio_net (test/harness/vm-net-guest.ts). The
// executor gives the VM's task a tap joined to its veth and names it in EVE_TASK_NICS; the
// runtime's loader makes a virtio NIC of it; the guest gets its address by DHCP from the
// instance's dnsmasq and serves a marker that a container app on the same instance fetches.
import { readFileSync } from "node:fs";
import { chmod, mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { Publication, subscribe } from "@eve-tasks/bus";
import type { Subscription } from "@eve-tasks/bus";
import {
  HypervisorToolsConfigSchema,
  NetworkInstanceConfigSchema,
  NetworkInstanceStatusSchema,
  networkInstanceStatusKey,
} from "@eve-tasks/schemas";
import type { AppInstanceConfigInput } from "@eve-tasks/schemas";
import { deferCleanup, makeRootfs, startNode, uuidMaker, waitFor } from "./harness/index.js";
import type { TestNode } from "./harness/index.js";
import { RUNTIME_CACHE, defaultToolsImage } from "./harness/runtimes.js";
import { VM_HTTP_MARKER, VM_NET_UP_MARKER, makeVmNetGuest } from "./harness/vm-net-guest.js";
import { inNs, linksIn, makeNetns, netnsWithPrefix, tag } from "../packages/network/test/ns.js";

const newUuid = uuidMaker("0e7e0000");
const NODE = "local";

describe("a VM on a local network instance", () => {
  let host: string;
  let prefix: string;
  let volumes: string;
  let rootfs: string;
  let guestCmdline: string;
  let configs: TestNode["configs"];
  let instances: Publication<typeof NetworkInstanceConfigSchema>;
  let niStatuses: Subscription<typeof NetworkInstanceStatusSchema>;
  let until: TestNode["until"];

  beforeAll(async () => {
    const t = tag();
    host = await makeNetns(`nwv${t}-host`);
    prefix = `eve-nwv${t}-`;
    const tools = await defaultToolsImage();
    const node = await startNode({
      name: "netvm",
      workers: ["spec-builder", "hypervisor-seed-fetcher", "task-executor"],
      env: () => ({
        EVE_OCI_LAYOUT_ROOTS: RUNTIME_CACHE,
        EVE_NODE_MEMORY_MIB: "2048",
        EVE_KVM_PROBE_TIMEOUT_MS: "4000",
        EVE_NET_NS: host,
        EVE_NETNS_PREFIX: prefix,
      }),
      readyTimeoutMs: 60_000,
      prepare: async ({ dir, runDir, bus, ...dirs }) => {
        // dnsmasq drops to nobody: the run dir's parents must be searchable.
        await chmod(dir, 0o755);
        await mkdir(runDir, { mode: 0o755 });
        volumes = dirs.volumes;
        rootfs = join(volumes, "rootfs");
        await makeRootfs(rootfs);
        for (const applet of ["nc", "mv", "tail", "printf", "["])
          await symlink("busybox", join(rootfs, "bin", applet)).catch(() => undefined);
        await writeFile(join(rootfs, "etc", "resolv.conf"), "");
        await writeFile(join(rootfs, "etc", "hosts"), "");
        await mkdir(join(rootfs, "out"));
        await mkdir(join(volumes, "out"), { recursive: true });
        guestCmdline = (await makeVmNetGuest(join(volumes, "guest"))).cmdline;
        await chmod(volumes, 0o700);
        await new Publication(bus, {
          agent: "controller",
          type: "HypervisorToolsConfig",
          schema: HypervisorToolsConfigSchema,
        }).publish("default", { schemaVersion: 1, image: tools.ref });
      },
    });
    ({ configs, until } = node);
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
    // Registered after the node: runs before it stops (last in, first out).
    deferCleanup(async () => {
      for (const uuid of (await configs.getAll()).keys()) await configs.unpublish(uuid);
      await waitFor(async () => (await netnsWithPrefix(prefix)).length === 0, {
        timeoutMs: 60_000,
        message: "task netns left after deleting every app",
      });
      for (const name of (await instances.getAll()).keys()) await instances.unpublish(name);
      await waitFor(() => niStatuses.getAll().size === 0, {
        timeoutMs: 30_000,
        message: "network instance statuses left after deleting every instance",
      });
      expect(await linksIn(host)).toEqual(["lo"]);
      await niStatuses.close();
    });
  }, 180_000);

  it("gets its address by DHCP from the instance and serves a container on it", async () => {
    await instances.publish("vms", {
      schemaVersion: 1,
      name: "vms",
      node: NODE,
      type: "local",
      subnet: "10.86.0.0/24",
      gateway: "10.86.0.1",
    });
    await waitFor(() => niStatuses.get(networkInstanceStatusKey(NODE, "vms"))?.state === "READY", {
      message: "instance vms never READY",
    });

    const vm = newUuid();
    const vmConfig: AppInstanceConfigInput = {
      schemaVersion: 1,
      uuid: vm,
      version: "1",
      displayName: "guest",
      activate: true,
      virtualization: "HVM",
      resources: { memoryMiB: 128, vcpus: 1 },
      vm: {
        kernel: join(volumes, "guest", "vmlinuz"),
        initrd: join(volumes, "guest", "initrd-net.img"),
        cmdline: guestCmdline,
        accel: "tcg",
      },
      interfaces: [{ name: "eth0", network: "vms" }],
      stopTimeoutMs: 4000,
    };
    await configs.publish(vm, vmConfig);
    const s = await until(vm, (x) => x.state === "RUNNING" || x.state === "FAILED", "never RUNNING", 90_000);
    expect(s).toMatchObject({ state: "RUNNING", error: null });
    const nic = s.interfaces[0]!;
    expect(nic).toMatchObject({ name: "eth0", network: "vms" });
    expect(nic.ip).toMatch(/^10\.86\.0\.\d+$/);

    // The loader made a virtio NIC of the tap EVE_TASK_NICS named, with the interface's MAC.
    const args = readFileSync(`/proc/${s.taskId}/cmdline`, "utf8").split("\0");
    expect(args).toContain("tap,id=net0,ifname=tap0,script=no,downscript=no,vhost=off");
    expect(args).toContain(`virtio-net-pci,netdev=net0,mac=${nic.mac}`);
    const environ = readFileSync(`/proc/${s.taskId}/environ`, "utf8").split("\0");
    expect(environ).toContain(`EVE_TASK_NICS=tap0=${nic.mac}`);
    // The netns has the tap and the veth, the veth without an address (the guest has it).
    const netns = `${prefix}${vm}`;
    expect(await linksIn(netns)).toEqual(["eth0", "lo", "tap0"]);
    expect(await inNs(netns, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"])).toBe("");

    // The guest's console says the address DHCP gave it: the one the IPAM chose.
    const log = () => readFile(s.logPath, "utf8").catch(() => "");
    await waitFor(async () => (await log()).includes(VM_NET_UP_MARKER), {
      timeoutMs: 90_000,
      message: "the guest never got an address",
    }).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}; console: ${(await log()).slice(-2000)}`, { cause: err });
    });
    expect(await log()).toContain(`${VM_NET_UP_MARKER} ${nic.ip}/24`);

    // A container app on the instance fetches the guest's marker (busybox nc: GET / over TCP).
    const peer = newUuid();
    const script =
      `while true; do b=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${nic.ip} 80 | tail -n 1); ` +
      `[ -n "$b" ] && { echo "$b" > /out/${peer}.new; mv /out/${peer}.new /out/${peer}; }; sleep 0.3; done`;
    await configs.publish(peer, {
      schemaVersion: 1,
      uuid: peer,
      version: "1",
      displayName: "peer",
      activate: true,
      virtualization: "NOHYPER",
      resources: { memoryMiB: 32, vcpus: 1 },
      root: { volume: { path: rootfs, readOnly: true } },
      volumes: [{ path: join(volumes, "out"), mountPoint: "/out", readOnly: false }],
      process: { args: ["/bin/sh", "-c", `trap 'exit 0' TERM; ${script} & wait`] },
      interfaces: [{ name: "eth0", network: "vms" }],
      stopTimeoutMs: 2000,
    });
    const p = await until(
      peer,
      (x) => x.state === "RUNNING" || x.state === "FAILED",
      "never RUNNING",
      60_000,
    );
    expect(p).toMatchObject({ state: "RUNNING", error: null });
    const got = await waitFor(
      () =>
        readFile(join(volumes, "out", peer), "utf8").then(
          (t) => t.trim() || undefined,
          () => undefined,
        ),
      { timeoutMs: 30_000, message: "the container never fetched the guest's marker" },
    );
    expect(got).toBe(`${VM_HTTP_MARKER} ${nic.ip}`);
    await waitFor(
      () => {
        const ni = niStatuses.get(networkInstanceStatusKey(NODE, "vms"));
        return ni?.apps.includes(vm) && ni.apps.includes(peer);
      },
      { message: "the instance does not list both apps" },
    );
  }, 150_000);
});
