// The test kit started the three ways an integrator would: its own nats-server process, a
// nats-server in a Docker container (testcontainers; skipped with the reason when no engine can
// be had), and a server given by URL. Each time an app is applied with plain nats.js as the
// controller user and runs, and stop() leaves nothing it started: no worker, no containerd, no
// nats-server (process or container), no task, no directory; a server given by URL is left alone.
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isProcessAlive, prepareNatsAuth, removeTreeSafely, startNatsServer } from "@eve-tasks/embedded";
import type { RunningNatsServer } from "@eve-tasks/embedded";
import { ensureDocker } from "../../../test/harness/docker.js";
import type { DockerEngine } from "../../../test/harness/docker.js";
import { OWNER_LABEL, startSystem } from "../src/index.js";
import type { RunningSystem, SystemCredentials } from "../src/index.js";

/** Applies an app as the controller (or anonymously), waits for RUNNING, returns its anchor PID. */
async function runApp(sys: RunningSystem): Promise<number> {
  const c: Partial<SystemCredentials["controller"]> = sys.credentials?.controller ?? {};
  const nc = await connect({ servers: sys.natsUrl, user: c.user, pass: c.pass, inboxPrefix: c.inboxPrefix });
  try {
    const kvm = new Kvm(nc);
    const uuid = randomUUID();
    const statuses = await kvm.open("task-executor");
    const watch = await statuses.watch({ key: `TaskStatus.${uuid}` });
    const controller = await kvm.open("controller");
    await controller.put(
      `AppInstanceConfig.${uuid}`,
      JSON.stringify({
        schemaVersion: 1,
        uuid,
        version: "1",
        displayName: "kit",
        virtualization: "NOHYPER",
        resources: { memoryMiB: 32, vcpus: 1 },
        root: { host: { readOnly: true } },
        process: { args: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"] },
      }),
    );
    const timer = setTimeout(() => watch.stop(), 60_000);
    try {
      for await (const e of watch) {
        if (e.operation !== "PUT") continue;
        const s = e.json<{ state: string; taskId: number; error: unknown }>();
        if (s.state === "RUNNING") return s.taskId;
        if (s.state === "FAILED") throw new Error(`app FAILED: ${JSON.stringify(s.error)}`);
      }
    } finally {
      clearTimeout(timer);
    }
    throw new Error("the app never ran");
  } finally {
    await nc.close();
  }
}

/** Every PID the system started, and that all of them are gone after stop(). */
async function stopsEverything(sys: RunningSystem, anchor: number): Promise<void> {
  const workers = sys.workers();
  const pids = workers.map((w) => w.pid).filter((p): p is number => p !== null);
  if (sys.nats.kind === "process") pids.push(sys.nats.pid);
  expect(pids.every(isProcessAlive)).toBe(true);
  await sys.stop();
  await sys.stop(); // idempotent
  expect(pids.filter(isProcessAlive)).toEqual([]);
  expect(isProcessAlive(anchor)).toBe(false);
  expect(existsSync(sys.dataDir)).toBe(false);
}

describe("startSystem", () => {
  it("embedded: a nats-server process, containerd and two replicas of each worker that scales", async () => {
    const sys = await startSystem({ replicas: 2 });
    try {
      expect(sys.nats.kind).toBe("process");
      expect(sys.natsUrl).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
      expect(sys.credentials?.controller).toMatchObject({
        user: "controller",
        inboxPrefix: "_INBOX_controller",
      });
      const count = (name: string) =>
        sys.workers().filter((w) => w.name === name && w.state === "running").length;
      expect([
        count("spec-builder"),
        count("hypervisor-seed-fetcher"),
        count("task-executor"),
        count("proc-monitor"),
      ]).toEqual([2, 2, 1, 1]);
      // The users' permissions hold: the viewer writes nothing.
      const v = sys.credentials!.viewer;
      const nc = await connect({
        servers: sys.natsUrl,
        user: v.user,
        pass: v.pass,
        inboxPrefix: v.inboxPrefix,
      });
      await expect((await new Kvm(nc).open("controller")).put("AppInstanceConfig.x", "{}")).rejects.toThrow();
      await nc.close();
      await stopsEverything(sys, await runApp(sys));
    } finally {
      await sys.stop().catch(() => undefined);
    }
  }, 120_000);

  it("refuses more than one task-executor per node, and what it does not know", async () => {
    await expect(startSystem({ replicas: { "task-executor": 2 } })).rejects.toThrow(/runs once per node/);
    await expect(startSystem({ nats: "ftp://x" })).rejects.toThrow(
      /expected "embedded", "testcontainers" or a nats:\/\/ URL/,
    );
  });

  describe("a server given by URL", () => {
    let dir: string;
    let server: RunningNatsServer;
    beforeAll(async () => {
      dir = await mkdtemp("/tmp/evkit-url-");
      const auth = await prepareNatsAuth({
        credentialsDir: `${dir}/creds`,
        configDir: `${dir}/nats`,
        nodes: ["local"],
      });
      server = await startNatsServer({ storeDir: `${dir}/nats`, configFile: auth.configFile, env: auth.env });
    });
    afterAll(async () => {
      await server?.stop();
      if (dir) await removeTreeSafely(dir);
    });

    it("uses it with the users' passwords given, and leaves it running", async () => {
      const sys = await startSystem({ nats: server.url, credentialsDir: `${dir}/creds` });
      try {
        expect(sys.nats).toEqual({ kind: "external" });
        expect(sys.natsUrl).toBe(server.url);
        await stopsEverything(sys, await runApp(sys));
        expect(isProcessAlive(server.pid)).toBe(true);
      } finally {
        await sys.stop().catch(() => undefined);
      }
    }, 120_000);
  });

  describe("testcontainers", () => {
    let docker: DockerEngine;
    beforeAll(async () => {
      docker = await ensureDocker();
      if (!docker.ok)
        process.stderr.write(`[testkit] the testcontainers mode is skipped: ${docker.reason}\n`);
    }, 60_000);
    afterAll(async () => {
      if (docker?.ok) await docker.stop();
    }, 60_000);

    it("runs nats-server in a container on the host's network, built from the host's nats-server", async (ctx) => {
      if (!docker.ok) ctx.skip(`no Docker engine: ${docker.reason}`);
      const sys = await startSystem({ nats: "testcontainers" });
      try {
        expect(sys.nats.kind).toBe("container");
        const { getContainerRuntimeClient } = await import("testcontainers");
        const client = await getContainerRuntimeClient();
        const mine = () =>
          client.container.dockerode.listContainers({
            all: true,
            filters: { label: [`${OWNER_LABEL}=${process.pid}`] },
          });
        const [info] = await mine();
        expect(info?.Image).toMatch(/^eve-tasks-testkit\/nats-server:\d+\.\d+\.\d+-[0-9a-f]{12}$/);
        expect(info?.HostConfig.NetworkMode).toBe("host");
        await stopsEverything(sys, await runApp(sys));
        expect(await mine()).toEqual([]);
      } finally {
        await sys.stop().catch(() => undefined);
      }
    }, 180_000);
  });
});
