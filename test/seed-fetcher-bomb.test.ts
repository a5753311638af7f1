// The built hypervisor-seed-fetcher against an entry bomb: a layer of 1.5 million directory
// entries (~ 770 MB of tar, a few MB of gzip; the old applier kept ~730 B of heap per directory
// entry and went on growing). With the default caps the seed FAILS naming the cap, without a
// retry and without the fetcher dying; with the cap raised above the layer it unpacks. Both
// times the fetcher's peak RSS (VmHWM of /proc/<pid>/status) stays bounded.
import { readFileSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { Publication, connectBus, ensureBuckets, subscribe } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { hypervisorSeedKey, messageTable } from "@eve-tasks/schemas";
import type { Seed } from "@eve-tasks/schemas";
import { BUILT, deferCleanup, spawnReplicas, tempDir, withPrivateNats } from "./harness/index.js";
import type { Replicas } from "./harness/index.js";
import { OciLayout, streamedGzipLayer, ustarDirHeader } from "./harness/registry-images.js";

const ENTRIES = 1_500_000;
const DISTINCT = 1_500;
/** The bound on the fetcher's peak RSS while it handles the bomb. */
const MAX_PEAK_RSS_MIB = 256;

let dir: string;
let natsUrl: string;
let bus: Bus;
let ref: string;
const current = new Map<string, Seed | undefined>();
const history = new Map<string, Seed[]>();

/** Peak RSS of `pid` so far, MiB. */
function peakRssMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? Number.NaN) / 1024;
}

function fetcher(node: string, env: Record<string, string> = {}): Replicas {
  return spawnReplicas({
    entry: BUILT.seedFetcher,
    count: 1,
    name: `fetcher-${node}`,
    env: {
      NATS_URL: natsUrl,
      EVE_NODE: node,
      EVE_DATA_DIR: path.join(dir, `data-${node}`),
      EVE_RUN_DIR: path.join(dir, "run"),
      EVE_OCI_LAYOUT_ROOTS: dir,
      LOG_LEVEL: "info",
      ...env,
    },
  });
}

/** Waits for `node`'s bomb seed to reach `state`, failing at once if the fetcher grows too big. */
async function bombSeed(f: Replicas, node: string, state: Seed["state"], timeoutMs: number): Promise<Seed> {
  const key = `HypervisorSeed.${hypervisorSeedKey(node, "bomb")}`;
  const pid = f.pids[0] ?? 0;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    expect(peakRssMiB(pid), "the fetcher's peak RSS, MiB").toBeLessThan(MAX_PEAK_RSS_MIB);
    const s = current.get(key);
    if (s?.state === state) return s;
    if (Date.now() > deadline) throw new Error(`${key} never ${state} (now ${JSON.stringify(s)})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  dir = await tempDir("bomb-");
  const layout = new OciLayout(path.join(dir, "layout"));
  const perDir = ENTRIES / DISTINCT;
  const layer = await streamedGzipLayer(
    layout,
    (function* () {
      // d0/ a thousand times, then d1/ …: every entry is a directory entry of the layer.
      for (let d = 0; d < DISTINCT; d++) {
        const h = ustarDirHeader(`d${d}/`);
        yield Buffer.concat(Array.from({ length: perDir }, () => h));
      }
    })(),
  );
  await layout.tag(await layout.imageOfLayers([layer], { Cmd: ["/bin/true"] }), "bomb");
  ref = `oci:${layout.dir}:bomb`;
  const nats = await withPrivateNats();
  natsUrl = nats.url;
  bus = await connectBus({ servers: nats.url, name: "bomb-test" });
  deferCleanup(() => bus.drain());
  await ensureBuckets(bus);
  const sub = await subscribe(bus, {
    ...messageTable("HypervisorSeed"),
    onCreate: (k, v) => record(k, v),
    onModify: (k, v) => record(k, v),
    onDelete: (k) => void current.set(`HypervisorSeed.${k}`, undefined),
  });
  deferCleanup(() => sub.close());
  function record(k: string, v: Seed): void {
    current.set(`HypervisorSeed.${k}`, v);
    history.set(`HypervisorSeed.${k}`, [...(history.get(`HypervisorSeed.${k}`) ?? []), v]);
  }
  await new Publication(bus, messageTable("HypervisorToolsConfig")).publish("bomb", {
    schemaVersion: 1,
    image: ref,
  });
}, 120_000);

describe("an entry bomb", () => {
  it("fails the seed at EVE_REGISTRY_MAX_LAYER_ENTRIES, once, with the fetcher's memory bounded", async () => {
    const f = fetcher("capped");
    await f.waitForLine((l) => l.json?.event === "started", 20_000);
    const seed = await bombSeed(f, "capped", "FAILED", 120_000);
    expect(seed.error?.message).toMatch(
      /^layer sha256:[0-9a-f]{64} has more than 1000000 entries, over the limit of 1000000 \(EVE_REGISTRY_MAX_LAYER_ENTRIES\)$/,
    );
    // Not retried: no second attempt within a few seconds, and the same process throughout.
    await new Promise((r) => setTimeout(r, 3_000));
    const states = (history.get(`HypervisorSeed.${hypervisorSeedKey("capped", "bomb")}`) ?? []).map(
      (s) => s.state,
    );
    expect(states.filter((s) => s === "FAILED")).toHaveLength(1);
    expect(f.allPids).toHaveLength(1);
    expect(f.replicas[0]?.child.exitCode).toBeNull();
    const peak = peakRssMiB(f.pids[0] ?? 0);
    expect(peak).toBeLessThan(MAX_PEAK_RSS_MIB);
    process.stderr.write(`[bomb] capped: fetcher peak RSS ${peak.toFixed(1)} MiB\n`);
    await f.stopAll();
  }, 180_000);

  it("unpacks it within bounded memory when the cap allows it", async () => {
    const f = fetcher("raised", { EVE_REGISTRY_MAX_LAYER_ENTRIES: "2000000" });
    await f.waitForLine((l) => l.json?.event === "started", 20_000);
    const seed = await bombSeed(f, "raised", "READY", 300_000);
    const peak = peakRssMiB(f.pids[0] ?? 0);
    expect(peak).toBeLessThan(MAX_PEAK_RSS_MIB);
    process.stderr.write(`[bomb] unpacked: fetcher peak RSS ${peak.toFixed(1)} MiB\n`);
    expect(seed.rootfsPath).toBeTruthy();
    await f.stopAll();
  }, 360_000);
});
