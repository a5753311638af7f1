// deploy/hub/: the hub's server config and a device's (accepted by nats-server -t with their
// variables set, refused without), render-hub.mjs (the same render `npm run hub` uses, the
// password files and nats-server's env file, mode 0600), and provision-devices.mjs against a real
// one-server hub (a device added: its bucket and its sources; a second run changes nothing).
import { execFile } from "node:child_process";
import { copyFile, mkdtemp, readFile, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { connectBus, sourceDomain } from "@eve-tasks/bus";
import {
  findExecutable,
  natsPasswordVariable,
  removeTreeSafely,
  renderHubNatsPermissions,
} from "@eve-tasks/embedded";
import { startHub } from "@eve-tasks/launcher";
import type { RunningHub } from "@eve-tasks/launcher";
import { REPO_ROOT } from "./harness/index.js";

const exec = promisify(execFile);
const NATS_SERVER = findExecutable("nats-server") ?? "nats-server";
const HUB = path.join(REPO_ROOT, "deploy/hub");
const PASSWORD = "pTestPassword0123456789";

async function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; out: string; err: string }> {
  try {
    const r = await exec(cmd, args, { env: { ...process.env, ...env }, cwd: REPO_ROOT });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: x.code ?? 1, out: x.stdout ?? "", err: x.stderr ?? "" };
  }
}

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), "eve-fleet-deploy-"));
});
afterAll(async () => {
  if (tmp) await removeTreeSafely(tmp);
});

describe("deploy/hub", () => {
  it("render-hub.mjs renders the hub's users as npm run hub does, and keeps their passwords 0600", async () => {
    const creds = path.join(tmp, "creds");
    const envFile = path.join(tmp, "nats-users.env");
    const r = await run(process.execPath, [
      path.join(HUB, "render-hub.mjs"),
      "--device",
      "dev1",
      "--device",
      "dev2",
      "--credentials",
      creds,
      "--write-env",
      envFile,
    ]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe(renderHubNatsPermissions({ devices: ["dev1", "dev2"] }));
    expect((await stat(envFile)).mode & 0o777).toBe(0o600);
    const env = await readFile(envFile, "utf8");
    for (const u of ["admin", "controller", "viewer", "device-dev1", "device-dev2", "route"])
      expect(env).toMatch(new RegExp(`^${natsPasswordVariable(u)}=p[0-9a-f]{48}$`, "m"));
    expect((await stat(path.join(creds, "device-dev1.password"))).mode & 0o777).toBe(0o600);
    const again = await run(process.execPath, [
      path.join(HUB, "render-hub.mjs"),
      "--device",
      "dev1",
      "--credentials",
      creds,
    ]);
    expect(again.code).toBe(0);
    expect(await readFile(path.join(creds, "device-dev1.password"), "utf8")).toBe(
      env.match(/EVE_NATS_DEVICE_DEV1_PASSWORD=(\w+)/)![1] + "\n",
    );
    const bad = await run(process.execPath, [path.join(HUB, "render-hub.mjs"), "--device", "9x"]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/invalid device name "9x"/);
  });

  it("nats-server accepts hub.conf and device.conf with their variables set, and names a missing one", async () => {
    const dir = path.join(tmp, "conf");
    await exec("mkdir", ["-p", path.join(dir, "hub"), path.join(dir, "device")]);
    await copyFile(path.join(HUB, "hub.conf"), path.join(dir, "hub", "hub.conf"));
    await writeFile(
      path.join(dir, "hub", "permissions.conf"),
      renderHubNatsPermissions({ devices: ["dev1"] }),
    );
    await copyFile(path.join(HUB, "device.conf"), path.join(dir, "device", "device.conf"));
    await copyFile(
      path.join(REPO_ROOT, "deploy/nats/permissions.conf"),
      path.join(dir, "device", "permissions.conf"),
    );
    const hubEnv: NodeJS.ProcessEnv = {
      EVE_NATS_SERVER_NAME: "hub-1",
      EVE_NATS_ROUTE_PASSWORD: PASSWORD,
      EVE_NATS_ROUTES: `["nats-route://route:${PASSWORD}@127.0.0.1:6222"]`,
    };
    for (const u of ["admin", "controller", "viewer", "device-dev1"])
      hubEnv[natsPasswordVariable(u)] = PASSWORD;
    const ok = await run(NATS_SERVER, ["-t", "-c", path.join(dir, "hub", "hub.conf")], hubEnv);
    expect(ok.code, ok.err + ok.out).toBe(0);
    const missing = await run(NATS_SERVER, ["-t", "-c", path.join(dir, "hub", "hub.conf")], {
      ...hubEnv,
      [natsPasswordVariable("device-dev1")]: undefined,
    });
    expect(missing.code).not.toBe(0);
    expect(missing.err + missing.out).toContain("EVE_NATS_DEVICE_DEV1_PASSWORD");
    const devEnv: NodeJS.ProcessEnv = {
      EVE_NODE: "dev1",
      EVE_NATS_HUB_LEAF_URLS: `["nats-leaf://device-dev1:${PASSWORD}@127.0.0.1:7422"]`,
    };
    for (const u of [
      "admin",
      "controller",
      "viewer",
      "spec-builder",
      "task-executor",
      "proc-monitor",
      "hypervisor-seed-fetcher",
    ])
      devEnv[natsPasswordVariable(u)] = PASSWORD;
    const dev = await run(NATS_SERVER, ["-t", "-c", path.join(dir, "device", "device.conf")], devEnv);
    expect(dev.code, dev.err + dev.out).toBe(0);
    const noHub = await run(NATS_SERVER, ["-t", "-c", path.join(dir, "device", "device.conf")], {
      ...devEnv,
      EVE_NATS_HUB_LEAF_URLS: undefined,
    });
    expect(noHub.code).not.toBe(0);
    expect(noHub.err + noHub.out).toContain("EVE_NATS_HUB_LEAF_URLS");
  });

  describe("provision-devices.mjs against a one-server hub", () => {
    let hub: RunningHub;
    beforeAll(async () => {
      hub = await startHub({
        dir: path.join(tmp, "hub1"),
        devices: ["dev1"],
        servers: 1,
        basePort: await freeBase(),
        logger: pino({ level: "warn" }),
      });
    }, 60_000);
    afterAll(async () => {
      await hub?.stop();
    });

    it("adds a device: its bucket and its sources; a second run changes nothing", async () => {
      const env = {
        NATS_URL: hub.natsUrl,
        NATS_USER: "admin",
        NATS_PASSWORD_FILE: hub.passwordFile("admin"),
      };
      const args = [
        path.join(HUB, "provision-devices.mjs"),
        "--device",
        "dev1",
        "--device",
        "dev2",
        "--replicas",
        "1",
      ];
      const first = await run(process.execPath, args, env);
      expect(first.code, first.err).toBe(0);
      expect(first.out).toContain("buckets created: controller-dev2; sources added: dev2");
      const second = await run(process.execPath, args, env);
      expect(second.out).toContain("buckets created: none; sources added: none");
      const bus = await connectBus({
        servers: hub.natsUrl,
        name: "t",
        logger: pino({ level: "warn" }),
        credentials: { user: "admin", passwordFile: hub.passwordFile("admin") },
      });
      try {
        for (const s of ["KV_task-executor", "TASK_EVENTS"]) {
          const info = await bus.jsm.streams.info(s);
          expect((info.config.sources ?? []).map((x) => sourceDomain(x))).toEqual(["dev1", "dev2"]);
        }
        expect((await bus.jsm.streams.info("KV_controller-dev2")).config.subjects).toEqual([
          "$KV.controller-dev2.>",
        ]);
      } finally {
        await bus.close();
      }
    });
  });
});

/** A base port whose +0, +100 and +200 are free (a one-server hub's client, route and leaf ports). */
async function freeBase(): Promise<number> {
  const { createServer } = await import("node:net");
  for (;;) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    const ok = await Promise.all(
      [0, 100, 200].map(
        (d) =>
          new Promise<boolean>((r) => {
            const s = createServer();
            s.once("error", () => r(false));
            s.listen(base + d, "127.0.0.1", () => s.close(() => r(true)));
          }),
      ),
    );
    if (ok.every(Boolean)) return base;
  }
}
