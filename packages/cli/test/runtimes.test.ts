// `eve-tasks runtimes`: rows from HypervisorToolsConfigs and seeds, with what each seed's labels
// say, and why an image is not usable as a runtime.
import { describe, expect, it } from "vitest";
import { RUNTIME_LABELS, SeedSchema } from "@eve-tasks/schemas";
import type { HypervisorToolsConfig, Seed } from "@eve-tasks/schemas";
import { formatTax, runtimeRows } from "../src/commands/runtimes.js";

const seed = (labels: Record<string, string> | null, args = ["/eve/loader"]): Seed =>
  SeedSchema.parse({
    schemaVersion: 1,
    state: "READY",
    ref: "oci:/x:1",
    digest: `sha256:${"a".repeat(64)}`,
    indexDigest: null,
    platform: "linux/amd64",
    rootfsPath: "/d/seeds/a/rootfs",
    process: { args, env: {}, cwd: "/", user: "" },
    progress: null,
    error: null,
    labels,
    stopSignal: null,
  });

describe("runtimeRows", () => {
  it("lists each runtime per node with its labels, and configs not seeded yet", () => {
    const configs = new Map<string, HypervisorToolsConfig>([
      ["default", { schemaVersion: 1, image: "oci:/x:1" }],
      ["jvm", { schemaVersion: 1, image: "oci:/j:1" }],
      ["mine", { schemaVersion: 1, image: "registry.example/mine:1" }],
    ]);
    const seeds = new Map<string, Seed>([
      [
        "local.default",
        seed({
          [RUNTIME_LABELS.runtime]: "1",
          [RUNTIME_LABELS.stop]: "qmp",
          [RUNTIME_LABELS.tax]: '{"baseMiB":370,"perVcpuMiB":3,"perGuestMiB":0.025}',
          [RUNTIME_LABELS.devices]: '["kvm","tun"]',
        }),
      ],
      ["local.mine", seed({})],
      ["edge.jvm", seed(null)],
    ]);
    const rows = runtimeRows(configs, seeds);
    expect(rows.map((r) => [r.name, r.node])).toEqual([
      ["default", "local"],
      ["jvm", "edge"],
      ["mine", "local"],
    ]);
    expect(rows[0]?.runtime).toMatchObject({ stop: { method: "qmp" }, devices: ["kvm", "tun"] });
    expect(rows[1]?.problem).toBe("seeded by a fetcher that kept no labels");
    expect(rows[2]?.problem).toMatch(/not a runtime image/);
    const unseeded = runtimeRows(new Map([["x", { schemaVersion: 1, image: "i:1" }]]), new Map());
    expect(unseeded).toEqual([
      { name: "x", image: "i:1", node: null, seed: null, runtime: null, problem: null },
    ]);
  });

  it("formats a tax", () => {
    expect(formatTax({ baseMiB: 370, perVcpuMiB: 3, perGuestMiB: 0.025 })).toBe(
      "370Mi+3Mi/vcpu+0.025/guest MiB",
    );
    expect(formatTax({ baseMiB: 0, perVcpuMiB: 0, perGuestMiB: 0 })).toBe("-");
  });
});
