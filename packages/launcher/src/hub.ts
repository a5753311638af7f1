/**
 * A fleet's hub on one machine (`npm run hub`): a cluster of nats-servers on loopback, each its
 * own process and store, JetStream domain `hub`, a leafnode listener each, the hub's users (one
 * leaf user per device) with passwords generated once under the hub's directory, and every
 * device provisioned: its `controller-<node>` bucket and its place among the sources of the hub's
 * `task-executor` bucket and `TASK_EVENTS` stream. Used by tests and the fleet benchmark too.
 */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { connectBus, ensureDevicesOnHub } from "@eve-tasks/bus";
import type { Bus, HubProvisioning } from "@eve-tasks/bus";
import {
  ensureNatsCredentials,
  hubServerPorts,
  hubUsers,
  natsPasswordFile,
  natsPasswordVariable,
  renderHubNatsPermissions,
  renderHubServerConfig,
  startNatsServer,
} from "@eve-tasks/embedded";
import type { RunningNatsServer } from "@eve-tasks/embedded";
import type { Logger } from "pino";

/** `npm run hub`'s defaults. */
export const HUB_DEFAULTS = { basePort: 5222, servers: 3, host: "127.0.0.1" } as const;

/** Options of {@link startHub}. */
export interface StartHubOptions {
  /** The hub's directory: credentials, configs and the servers' stores. */
  readonly dir: string;
  /** The devices that may join (each gets a leaf user and is provisioned). */
  readonly devices: readonly string[];
  /** Number of servers; default 3 (replicas 3 from three servers on). */
  readonly servers?: number;
  /** Client port of the first server; the others follow (hubServerPorts). Default 5222. */
  readonly basePort?: number;
  readonly host?: string;
  readonly logger: Logger;
  /** How long to wait for the cluster's JetStream; default 60 s. */
  readonly readyTimeoutMs?: number;
}

/** One server of a running hub. */
export interface HubServer {
  readonly index: number;
  readonly name: string;
  readonly clientUrl: string;
  /** The leafnode URL devices connect to (without credentials). */
  readonly leafUrl: string;
  /** The running process, or undefined while stopped. */
  readonly process: RunningNatsServer | undefined;
}

/** A running hub. */
export interface RunningHub {
  readonly dir: string;
  readonly credentialsDir: string;
  readonly servers: readonly HubServer[];
  /** Client URLs of every server, comma-separated (NATS_URL for the CLI). */
  readonly natsUrl: string;
  /** Leafnode URLs of every server, comma-separated (without credentials). */
  readonly leafUrls: string;
  readonly replicas: number;
  readonly provisioning: HubProvisioning;
  /** The password file of a hub user (`admin`, `controller`, `viewer`, `device-<node>`). */
  passwordFile(user: string): string;
  /** `EVE_HUB_LEAF_URL` of device `node`: every server's leaf URL with its credentials. */
  deviceLeafUrl(node: string): Promise<string>;
  /** Stops server `index` (by its PID). */
  stopServer(index: number): Promise<void>;
  /** Starts server `index` again, with its store. */
  startServer(index: number): Promise<void>;
  /** Stops every server (by PID). Idempotent. */
  stop(): Promise<void>;
}

/** Starts a hub and provisions its devices. Rejects (stopping what it started) on failure. */
export async function startHub(o: StartHubOptions): Promise<RunningHub> {
  const count = o.servers ?? HUB_DEFAULTS.servers;
  const base = o.basePort ?? HUB_DEFAULTS.basePort;
  const host = o.host ?? HUB_DEFAULTS.host;
  const dir = path.resolve(o.dir);
  const credentialsDir = path.join(dir, "nats-credentials");
  const users = [...hubUsers(o.devices), "route"];
  const passwords = await ensureNatsCredentials<string>(credentialsDir, users);
  const routePassword = passwords.get("route")!;
  const env: Record<string, string> = {};
  for (const [user, pw] of passwords) env[natsPasswordVariable(user)] = pw;
  env.EVE_NATS_ROUTES = JSON.stringify(
    Array.from(
      { length: count },
      (_, i) => `nats-route://route:${routePassword}@${host}:${hubServerPorts(base, i).cluster}`,
    ),
  );
  const permissions = renderHubNatsPermissions({ devices: o.devices });
  const servers: {
    index: number;
    name: string;
    clientUrl: string;
    leafUrl: string;
    process: RunningNatsServer | undefined;
  }[] = [];
  const start = async (i: number): Promise<RunningNatsServer> => {
    const ports = hubServerPorts(base, i);
    const serverDir = path.join(dir, `server-${i + 1}`);
    await mkdir(serverDir, { recursive: true });
    const configFile = path.join(serverDir, "nats-server.conf");
    await writeFile(path.join(serverDir, "permissions.conf"), permissions);
    await writeFile(
      configFile,
      renderHubServerConfig({ host, clusterPort: ports.cluster, leafPort: ports.leaf, cluster: count > 1 }),
    );
    return startNatsServer({
      storeDir: path.join(serverDir, "store"),
      host,
      port: ports.client,
      serverName: `hub-${i + 1}`,
      configFile,
      env,
      logFile: path.join(serverDir, "nats-server.log"),
    });
  };
  const stopAll = async (): Promise<void> => {
    await Promise.all(servers.map(async (s) => s.process?.stop()));
    for (const s of servers) s.process = undefined;
  };
  try {
    for (let i = 0; i < count; i++) {
      const ports = hubServerPorts(base, i);
      servers.push({
        index: i,
        name: `hub-${i + 1}`,
        clientUrl: `nats://${host}:${ports.client}`,
        leafUrl: `nats-leaf://${host}:${ports.leaf}`,
        process: undefined,
      });
    }
    await Promise.all(servers.map(async (s) => (s.process = await start(s.index))));
    const natsUrl = servers.map((s) => s.clientUrl).join(",");
    const replicas = count >= 3 ? 3 : 1;
    const provisioning = await provision({
      natsUrl,
      passwordFile: natsPasswordFile(credentialsDir, "admin"),
      devices: o.devices,
      replicas,
      logger: o.logger,
      timeoutMs: o.readyTimeoutMs ?? 60_000,
    });
    return {
      dir,
      credentialsDir,
      servers,
      natsUrl,
      leafUrls: servers.map((s) => s.leafUrl).join(","),
      replicas,
      provisioning,
      passwordFile: (user) => natsPasswordFile(credentialsDir, user),
      async deviceLeafUrl(node) {
        const pw = (await ensureNatsCredentials<string>(credentialsDir, [`device-${node}`])).get(
          `device-${node}`,
        )!;
        return servers
          .map((s) => {
            const u = new URL(s.leafUrl);
            u.username = `device-${node}`;
            u.password = pw;
            return u.toString();
          })
          .join(",");
      },
      async stopServer(i) {
        await servers[i]?.process?.stop();
        servers[i]!.process = undefined;
      },
      async startServer(i) {
        if (servers[i]!.process === undefined) servers[i]!.process = await start(i);
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/**
 * Connects as admin once the cluster's JetStream answers (a meta leader is elected) and
 * provisions the devices. Retries until `timeoutMs`.
 */
async function provision(o: {
  natsUrl: string;
  passwordFile: string;
  devices: readonly string[];
  replicas: number;
  logger: Logger;
  timeoutMs: number;
}): Promise<HubProvisioning> {
  const deadline = Date.now() + o.timeoutMs;
  let bus: Bus | undefined;
  try {
    for (;;) {
      try {
        // Before the cluster has a meta leader even the connection's JetStream check times out.
        bus ??= await connectBus({
          servers: o.natsUrl,
          name: "eve-tasks-hub",
          logger: o.logger,
          credentials: { user: "admin", passwordFile: o.passwordFile },
        });
        await bus.jsm.getAccountInfo();
        return await ensureDevicesOnHub(bus, o.devices, { replicas: o.replicas });
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await sleep(500);
      }
    }
  } finally {
    await bus?.close();
  }
}
