/**
 * What the fleet's end-to-end tests share (docs/fleet.md): free loopback ports for a hub, and a
 * device as a real `npm start` launcher in device mode (its own nats-server as a leaf node of the
 * hub, containerd, run and data dirs, and workers). A device is stopped by its launcher's PID
 * (SIGINT: the launcher stops what it started), and its run dir removed.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import path from "node:path";
import type { Logger } from "pino";
import { connectBus } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { natsCredentialsDir, natsPasswordFile, removeTreeSafely } from "@eve-tasks/embedded";
import { readStateFile, stateFilePath } from "@eve-tasks/launcher";
import { REPO_ROOT } from "./e2e.js";
import { waitFor } from "./wait.js";

const launcherMain = path.join(REPO_ROOT, "packages/launcher/dist/main.js");

/** A free TCP port on loopback (bound, read, released). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** A base port with free ports at +0..2, +100..102, +200..202 (a hub's clients, routes, leaf nodes). */
export async function freeHubBase(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    const ports = [0, 1, 2, 100, 101, 102, 200, 201, 202].map((d) => base + d);
    const ok = await Promise.all(
      ports.map(
        (p) =>
          new Promise<boolean>((r) => {
            const s = createServer();
            s.once("error", () => r(false));
            s.listen(p, "127.0.0.1", () => s.close(() => r(true)));
          }),
      ),
    );
    if (ok.every(Boolean)) return base;
  }
  throw new Error("no free port range for the hub");
}

/** A device of a test fleet: a launcher in device mode. */
export interface FleetDevice {
  node: string;
  dataDir: string;
  runDir: string;
  natsPort: number;
  launcher: ChildProcess;
  /** The launcher's stdout and stderr, as they came. */
  output: string[];
  exited: Promise<void>;
}

/**
 * Starts device `node` under `tmp` (data dir `<tmp>/<node>`, run dir `/run/eve-ft-<pid>-<node>`),
 * a leaf of the hub at `leafUrl` (EVE_HUB_LEAF_URL, with credentials), and resolves once its
 * launcher and every worker run. `onStarted` sees the device as soon as its launcher is spawned,
 * so a caller can stop it even when it never comes up.
 */
export async function startFleetDevice(
  tmp: string,
  node: string,
  leafUrl: string,
  options: { extraArgs?: string[]; onStarted?: (d: FleetDevice) => void } = {},
): Promise<FleetDevice> {
  const dataDir = path.join(tmp, node);
  const runDir = `/run/eve-ft-${process.pid}-${node}`;
  const natsPort = await freePort();
  const output: string[] = [];
  const launcher = spawn(process.execPath, [launcherMain, ...(options.extraArgs ?? [])], {
    env: {
      ...process.env,
      EVE_NODE: node,
      EVE_DATA_DIR: dataDir,
      EVE_RUN_DIR: runDir,
      EVE_NATS_PORT: String(natsPort),
      EVE_HUB_LEAF_URL: leafUrl,
      NATS_URL: "",
      CONTAINERD_ADDRESS: "",
      LOG_LEVEL: "info",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  for (const s of [launcher.stdout, launcher.stderr]) s.on("data", (d: Buffer) => output.push(d.toString()));
  const exited = new Promise<void>((r) => launcher.once("exit", () => r()));
  const d: FleetDevice = { node, dataDir, runDir, natsPort, launcher, output, exited };
  options.onStarted?.(d);
  await waitFor(
    async () => {
      const s = await readStateFile(stateFilePath(dataDir));
      if (launcher.exitCode !== null) throw new Error(`launcher of ${node} exited:\n${output.join("")}`);
      return s?.launcher.phase === "running" && Object.values(s.workers).every((w) => w.state === "running")
        ? true
        : undefined;
    },
    { timeoutMs: 90_000, intervalMs: 250, message: `device ${node} running` },
  );
  return d;
}

/** Stops a device's launcher by its PID (SIGINT: it stops its own processes) and removes its run dir. */
export async function stopFleetDevice(d: FleetDevice): Promise<void> {
  if (d.launcher.exitCode === null && d.launcher.signalCode === null) d.launcher.kill("SIGINT");
  await Promise.race([d.exited, new Promise((r) => setTimeout(r, 60_000))]);
  await removeTreeSafely(d.runDir).catch(() => undefined);
}

/** A connection to a device's own nats-server as its admin. */
export async function fleetDeviceAdmin(d: FleetDevice, logger: Logger): Promise<Bus> {
  return connectBus({
    servers: `nats://127.0.0.1:${d.natsPort}`,
    name: "fleet-test",
    logger,
    credentials: { user: "admin", passwordFile: natsPasswordFile(natsCredentialsDir(d.dataDir), "admin") },
  });
}
