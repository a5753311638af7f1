// Scenario "pull": pull of a ≥ 50 MB image (incompressible random layers) from a local
// docker-registry into the node's content store (no unpack), against `skopeo copy` of the same
// image to a local OCI directory, alternating, in the same run; plus the unpack time of ours.
// Self-contained: its own registry (own config and storage) in a temp dir, stopped by PID.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { spawnLogged } from "@eve-tasks/embedded";
import { DEFAULT_LAYER_CONCURRENCY, RegistryClient, SeedStore } from "@eve-tasks/registry";
import { OciLayout } from "../harness/registry-images.js";
import { log } from "./env.js";
import { medianRatio } from "./result.js";
import type { ScenarioResult } from "./result.js";
import { median, nowMs, r1 } from "./stats.js";

const run = promisify(execFile);

/** Options of {@link pullBench}. */
export interface PullBenchOptions {
  /** Measured pulls per side (default 5). */
  rounds: number;
  /** Image size in MiB, split over 4 layers (default 64). */
  sizeMiB: number;
  /** Layers pulled at once by ours (default: the library's, DEFAULT_LAYER_CONCURRENCY). */
  concurrency?: number;
  keep: boolean;
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((ok) => srv.listen(0, "127.0.0.1", ok));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((ok) => srv.close(() => ok()));
  return port;
}

/** Runs the scenario; resolves with its result line. */
export async function pullBench(o: PullBenchOptions): Promise<ScenarioResult> {
  const dir = await mkdtemp(join(tmpdir(), "eve-bench-pull-"));
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const config =
    `version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n` +
    `storage:\n  filesystem:\n    rootdirectory: ${join(dir, "storage")}\n` +
    `http:\n  addr: ${host}\n  secret: bench\n`;
  await writeFile(join(dir, "config.yml"), config);
  const registry = await spawnLogged({
    command: "/usr/bin/docker-registry",
    args: ["serve", join(dir, "config.yml")],
    logFile: join(dir, "registry.log"),
  });
  try {
    for (let i = 0; ; i++) {
      const ok = await new Promise<boolean>((r) =>
        http
          .get(`http://${host}/v2/`, (res) => (res.resume(), r(res.statusCode === 200)))
          .on("error", () => r(false)),
      );
      if (ok) break;
      if (i > 200) throw new Error("docker-registry did not start");
      await sleep(50);
    }
    const layerBytes = Math.ceil((o.sizeMiB * 2 ** 20) / 4);
    const layout = new OciLayout(join(dir, "layout"));
    const image = await layout.image({
      layers: [0, 1, 2, 3].map((i) => ({
        entries: [{ name: `data/random-${i}`, content: randomBytes(layerBytes) }],
        compression: "gzip" as const,
      })),
      config: { Cmd: ["/bin/true"] },
    });
    await layout.tag(image, "big");
    await run("skopeo", [
      "copy",
      "--quiet",
      "--dest-tls-verify=false",
      `oci:${layout.dir}:big`,
      `docker://${host}/big:1`,
    ]);
    const ref = `${host}/big:1`;
    const client = new RegistryClient({ insecureHosts: [host] });

    const ours: number[] = [];
    const base: number[] = [];
    const unpack: number[] = [];
    let sizeBytes = 0;
    const oursOnce = async (i: number): Promise<number> => {
      const store = new SeedStore({ dataDir: join(dir, `ours-${i}`), client, concurrency: o.concurrency });
      const t0 = nowMs();
      const pulled = await store.pull(ref, { arch: "x86_64" });
      const ms = nowMs() - t0;
      sizeBytes = pulled.totalBytes;
      const t1 = nowMs();
      await store.unpack(pulled);
      unpack.push(nowMs() - t1);
      await rm(join(dir, `ours-${i}`), { recursive: true, force: true });
      return ms;
    };
    const baseOnce = async (i: number): Promise<number> => {
      const t0 = nowMs();
      await run("skopeo", [
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        `docker://${ref}`,
        `oci:${join(dir, `skopeo-${i}`)}:big`,
      ]);
      const ms = nowMs() - t0;
      await rm(join(dir, `skopeo-${i}`), { recursive: true, force: true });
      return ms;
    };
    // One untimed run of each (page cache, connections), then alternate.
    await oursOnce(-1);
    unpack.length = 0;
    await baseOnce(-1);
    for (let i = 0; i < o.rounds; i++) {
      if (i % 2 === 0) {
        ours.push(await oursOnce(i));
        base.push(await baseOnce(i));
      } else {
        base.push(await baseOnce(i));
        ours.push(await oursOnce(i));
      }
      log(`pull ${i + 1}/${o.rounds}: ours ${r1(ours.at(-1) ?? 0)} ms, skopeo ${r1(base.at(-1) ?? 0)} ms`);
    }
    return {
      scenario: "pull",
      n: o.rounds,
      ...medianRatio(ours, base, 1.0),
      baseline: `skopeo copy docker://${ref} oci:<dir> (same registry, same run, alternating)`,
      imageBytes: sizeBytes,
      layers: 4,
      concurrency: o.concurrency ?? DEFAULT_LAYER_CONCURRENCY,
      unpackMedianMs: r1(median(unpack)),
      oursMiBPerS: r1(sizeBytes / 2 ** 20 / (median(ours) / 1000)),
    };
  } finally {
    await registry.stop({ graceMs: 3_000 });
    if (!o.keep) await rm(dir, { recursive: true, force: true });
  }
}
