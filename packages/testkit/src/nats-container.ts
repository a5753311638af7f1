/**
 * nats-server in a Docker container, through testcontainers: the image is built here from the
 * host's nats-server (Debian's) and the libraries it links, `FROM scratch` (no registry is
 * needed, nothing is pulled), and run with the host's network on 127.0.0.1, its config and
 * JetStream store bind-mounted from the kit's own directory.
 *
 * testcontainers finds the engine as it always does (DOCKER_HOST, ~/.testcontainers.properties,
 * /var/run/docker.sock). Its reaper (Ryuk) is an image from Docker Hub: unless
 * TESTCONTAINERS_RYUK_DISABLED is set, the kit sets it to true before testcontainers loads, and
 * instead labels its containers with the PID of the process that started them; a later
 * {@link startNatsContainer} removes those whose process is gone. Unless
 * TESTCONTAINERS_HOST_OVERRIDE is set, it is set to 127.0.0.1 (the container is on the host's
 * network).
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { findExecutable, isProcessAlive } from "@eve-tasks/embedded";
import type * as TestcontainersModule from "testcontainers";
import type { StartedTestContainer } from "testcontainers";
import { TestkitError } from "./errors.js";

const run = promisify(execFile);

/** The label naming the PID of the process that started a container. */
export const OWNER_LABEL = "org.lfedge.eve-tasks.testkit.owner-pid";
/** The repository of the images built here. */
export const IMAGE_REPOSITORY = "eve-tasks-testkit/nats-server";
/** Where the container finds its config and keeps JetStream. */
const CONFIG_IN_CONTAINER = "/etc/nats";
const DATA_IN_CONTAINER = "/data";

type Testcontainers = typeof TestcontainersModule;
let loaded: Promise<Testcontainers> | undefined;

/** testcontainers, loaded on first use (embedded and URL modes never load it). */
function testcontainers(): Promise<Testcontainers> {
  process.env.TESTCONTAINERS_RYUK_DISABLED ??= "true";
  // The container shares the host's network, so the host is 127.0.0.1; without this,
  // testcontainers inside a container (/.dockerenv) looks for the gateway of the engine's
  // "bridge" network, which an engine run with --bridge=none does not have.
  process.env.TESTCONTAINERS_HOST_OVERRIDE ??= "127.0.0.1";
  loaded ??= import("testcontainers");
  return loaded;
}

/** Whether a container engine answers: `{ ok: true }`, or why not (for a test's skip message). */
export async function dockerAvailable(): Promise<{ ok: true } | { ok: false; reason: string }> {
  try {
    const { getContainerRuntimeClient } = await testcontainers();
    const client = await getContainerRuntimeClient();
    return client.info.containerRuntime.host
      ? { ok: true }
      : { ok: false, reason: "no container runtime host" };
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? err.message : String(err) };
  }
}

/** The files of `binary` and of every library `ldd` says it loads, as absolute paths. */
async function closure(binary: string): Promise<string[]> {
  const { stdout } = await run("ldd", [binary]).catch((err: unknown) => {
    // A static binary: ldd says "not a dynamic executable" and exits 1.
    if (/not a dynamic executable/.test(String((err as { stderr?: string }).stderr))) return { stdout: "" };
    throw err;
  });
  const libs = [...stdout.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/g)].map((m) => m[1]!);
  return [binary, ...new Set(libs)];
}

/**
 * The image `eve-tasks-testkit/nats-server:<version>-<sha256 of the binary, 12 hex>`, built
 * `FROM scratch` from the host's nats-server unless it is there already.
 */
export async function ensureNatsImage(binaryName = "nats-server"): Promise<string> {
  const binary = findExecutable(binaryName);
  if (binary === undefined) {
    throw new TestkitError(
      `${binaryName} not found (Debian: apt-get install nats-server): the container's image is built from it`,
    );
  }
  const { GenericContainer, ImageName, getContainerRuntimeClient } = await testcontainers();
  const sha = createHash("sha256")
    .update(await readFile(binary))
    .digest("hex")
    .slice(0, 12);
  const { stdout } = await run(binary, ["--version"]);
  const version = /v?(\d+\.\d+\.\d+)/.exec(stdout)?.[1] ?? "unknown";
  const tag = `${IMAGE_REPOSITORY}:${version}-${sha}`;
  const client = await getContainerRuntimeClient();
  if (await client.image.exists(ImageName.fromString(tag))) return tag;

  const context = await mkdtemp(join(tmpdir(), "evkit-image-"));
  try {
    for (const file of await closure(binary)) {
      const target = join(context, "rootfs", file);
      await mkdir(dirname(target), { recursive: true });
      await copyFile(file, target); // follows symlinks: the real library under its linked name
    }
    await writeFile(
      join(context, "Dockerfile"),
      [
        "# nats-server from the host (Debian's package) and the libraries it links; nothing pulled.",
        "FROM scratch",
        "COPY rootfs/ /",
        `ENTRYPOINT ["${binary}"]`,
        "",
      ].join("\n"),
    );
    await GenericContainer.fromDockerfile(context).build(tag, { deleteOnExit: false });
  } finally {
    await rm(context, { recursive: true, force: true });
  }
  return tag;
}

/** Removes containers of this kit whose starting process is gone (a test run killed hard). */
async function removeOrphans(): Promise<void> {
  const { getContainerRuntimeClient } = await testcontainers();
  const client = await getContainerRuntimeClient();
  const mine = await client.container.dockerode.listContainers({
    all: true,
    filters: { label: [OWNER_LABEL] },
  });
  for (const c of mine) {
    const owner = Number(c.Labels?.[OWNER_LABEL]);
    if (!Number.isInteger(owner) || owner <= 0 || isProcessAlive(owner)) continue;
    await client.container
      .getById(c.Id)
      .remove({ force: true, v: true })
      .catch(() => undefined);
  }
}

/** Options of {@link startNatsContainer}. */
export interface NatsContainerOptions {
  /** A directory holding `nats-server.conf` (and what it includes), mounted read-only. */
  readonly configDir: string;
  /** The JetStream store, mounted read-write. */
  readonly storeDir: string;
  /** The server's environment (the passwords its config names). */
  readonly env: Readonly<Record<string, string>>;
  /** How long to wait for the server. Default 30 s. */
  readonly startTimeoutMs?: number;
}

/** A nats-server running in a container. */
export interface RunningNatsContainer {
  readonly url: string;
  readonly containerId: string;
  readonly image: string;
  /** Stops and removes the container (and its anonymous volumes). Idempotent. */
  stop(): Promise<void>;
}

/** Starts nats-server in a container on the host's network, 127.0.0.1 and a free port. */
export async function startNatsContainer(o: NatsContainerOptions): Promise<RunningNatsContainer> {
  const { GenericContainer, Wait } = await testcontainers();
  const image = await ensureNatsImage();
  await removeOrphans();
  await mkdir(o.storeDir, { recursive: true });
  let container: StartedTestContainer;
  try {
    container = await new GenericContainer(image)
      .withNetworkMode("host")
      .withLabels({ [OWNER_LABEL]: String(process.pid) })
      .withEnvironment({ ...o.env })
      .withBindMounts([
        { source: o.configDir, target: CONFIG_IN_CONTAINER, mode: "ro" },
        { source: o.storeDir, target: DATA_IN_CONTAINER, mode: "rw" },
      ])
      .withCommand([
        "-c",
        `${CONFIG_IN_CONTAINER}/nats-server.conf`,
        "-js",
        "-sd",
        DATA_IN_CONTAINER,
        "-a",
        "127.0.0.1",
        "-p",
        "-1",
        "--ports_file_dir",
        DATA_IN_CONTAINER,
      ])
      .withWaitStrategy(Wait.forLogMessage(/Server is ready/))
      .withStartupTimeout(o.startTimeoutMs ?? 30_000)
      .start();
  } catch (err) {
    throw new TestkitError(`nats-server in a container (${image}) did not start: ${(err as Error).message}`, {
      cause: err,
    });
  }
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= container
      .stop({ remove: true, removeVolumes: true, timeout: 10_000 })
      .then(() => undefined));
  try {
    // The server is PID 1 of its container: its ports file names the port it chose.
    const portsFile = join(o.storeDir, "nats-server_1.ports");
    const deadline = Date.now() + 10_000;
    for (;;) {
      const text = await readFile(portsFile, "utf8").catch(() => undefined);
      const url = text === undefined ? undefined : (JSON.parse(text) as { nats?: string[] }).nats?.[0];
      if (url !== undefined) return { url, containerId: container.getId(), image, stop };
      if (Date.now() > deadline) throw new TestkitError(`no ${portsFile} from the container's nats-server`);
      await sleep(50);
    }
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}
