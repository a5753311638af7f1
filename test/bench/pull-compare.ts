// Pull variants interleaved against one registry: the code before a change (a built
// @eve-tasks/registry dist given as PULL_COMPARE_BEFORE=<dir of its index.js>) and the current
// one, each at 3 and 6 layers at once, and skopeo; every round runs every variant once, the
// order rotating, so load on a shared machine hits all alike. Prints medians, interquartile
// ranges and ratios to skopeo's median; with PULL_COMPARE_UNPACK=1 also each pull's unpack.
//   PULL_COMPARE_BEFORE=/tmp/before/dist node --import tsx test/bench/pull-compare.ts
// Knobs: PULL_COMPARE_ROUNDS (8), PULL_COMPARE_VARIANTS (old-3,old-6,new-3,new-6).
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { spawnLogged } from "@eve-tasks/embedded";
import * as current from "@eve-tasks/registry";
import { OciLayout } from "../harness/registry-images.js";
import { median, percentile } from "./stats.js";

const run = promisify(execFile);
type Registry = Pick<typeof current, "RegistryClient" | "SeedStore">;

const rounds = Number(process.env.PULL_COMPARE_ROUNDS ?? 8);
const wanted = (process.env.PULL_COMPARE_VARIANTS ?? "old-3,old-6,new-3,new-6").split(",");
const unpack = process.env.PULL_COMPARE_UNPACK === "1";
const beforeDir = process.env.PULL_COMPARE_BEFORE;
const before = beforeDir
  ? ((await import(pathToFileURL(join(beforeDir, "index.js")).href)) as Registry)
  : undefined;

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((ok) => srv.listen(0, "127.0.0.1", ok));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((ok) => srv.close(() => ok()));
  return port;
}

const dir = await mkdtemp(join(tmpdir(), "eve-pull-compare-"));
const host = `127.0.0.1:${await freePort()}`;
await writeFile(
  join(dir, "config.yml"),
  `version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n` +
    `storage:\n  filesystem:\n    rootdirectory: ${join(dir, "storage")}\nhttp:\n  addr: ${host}\n  secret: bench\n`,
);
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
  const layout = new OciLayout(join(dir, "layout"));
  const image = await layout.image({
    layers: [0, 1, 2, 3].map((i) => ({
      entries: [{ name: `data/random-${i}`, content: randomBytes(16 * 2 ** 20) }],
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

  let n = 0;
  const variants = new Map<string, () => Promise<number>>();
  const unpackMs = new Map<string, number[]>();
  for (const [name, lib] of [
    ["old", before],
    ["new", current],
  ] as const) {
    for (const concurrency of [3, 6]) {
      const key = `${name}-${concurrency}`;
      if (!wanted.includes(key)) continue;
      if (!lib) throw new Error(`${key} needs PULL_COMPARE_BEFORE`);
      const client = new lib.RegistryClient({ insecureHosts: [host] });
      variants.set(key, async () => {
        const dataDir = join(dir, `v-${n++}`);
        const store = new lib.SeedStore({ dataDir, client, concurrency });
        const t0 = performance.now();
        const pulled = await store.pull(ref, { arch: "x86_64" });
        const ms = performance.now() - t0;
        if (unpack) {
          const t1 = performance.now();
          await store.unpack(pulled);
          unpackMs.set(key, [...(unpackMs.get(key) ?? []), performance.now() - t1]);
        }
        await rm(dataDir, { recursive: true, force: true });
        return ms;
      });
    }
  }
  variants.set("skopeo", async () => {
    const out = join(dir, `s-${n++}`);
    const t0 = performance.now();
    await run("skopeo", ["copy", "--quiet", "--src-tls-verify=false", `docker://${ref}`, `oci:${out}:big`]);
    const ms = performance.now() - t0;
    await rm(out, { recursive: true, force: true });
    return ms;
  });
  const names = [...variants.keys()];
  const times = new Map<string, number[]>(names.map((k) => [k, []]));
  for (const k of names) await variants.get(k)?.();
  unpackMs.clear();
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < names.length; i++) {
      const k = names[(i + r) % names.length] as string;
      times.get(k)?.push((await variants.get(k)?.()) ?? Number.NaN);
    }
  }
  const show = (t: number[]): string =>
    `${median(t).toFixed(0)} [${percentile(t, 25).toFixed(0)}–${percentile(t, 75).toFixed(0)}] ms`;
  const base = median(times.get("skopeo") ?? []);
  for (const [k, t] of times)
    console.log(`${k.padEnd(7)} ${show(t)}  ratio ${(median(t) / base).toFixed(3)}`);
  for (const [k, t] of unpackMs) console.log(`unpack ${k.padEnd(7)} ${show(t)}`);
} finally {
  await registry.stop({ graceMs: 3_000 });
  await rm(dir, { recursive: true, force: true });
}
