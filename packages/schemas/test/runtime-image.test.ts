// The runtime-image contract as data: an app's runtime section, the labels a runtime image
// carries and how they are read, the tax they declare, and the seed keys per (ref, arch).
import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  AppInstanceConfigSchema,
  RUNTIME_LABELS,
  estimateAnchorTaxMiB,
  imageSeedKey,
  isRuntimeApp,
  normalizeStopSignal,
  readRuntimeLabels,
  runtimeTaxMiB,
  seedLabelsOf,
  sha256Hex,
} from "../src/index.js";
import { UUID } from "./fixtures.js";

function errorOf(input: unknown): string {
  const result = AppInstanceConfigSchema.safeParse(input);
  if (result.success) throw new Error(`expected ${JSON.stringify(input)} to be refused`);
  return z.prettifyError(result.error);
}

const base = { schemaVersion: 1, uuid: UUID, version: "1", resources: { memoryMiB: 256, vcpus: 1 } };

describe("an app's runtime section", () => {
  it("needs no root, vm or virtualization, and applies its defaults", () => {
    const config = AppInstanceConfigSchema.parse({
      ...base,
      runtime: { tools: "jvm", artifacts: [{ name: "app.jar", path: "/v/app.jar" }] },
    });
    expect(isRuntimeApp(config)).toBe(true);
    expect(config).toMatchObject({
      runtime: {
        tools: "jvm",
        accel: "auto",
        artifacts: [{ name: "app.jar", path: "/v/app.jar", readOnly: true }],
      },
      restartPolicy: { mode: "never" },
    });
    expect("virtualization" in config && config.virtualization).toBeFalsy();
    for (const virtualization of ["NOHYPER", "HVM"]) {
      const c = AppInstanceConfigSchema.parse({ ...base, virtualization, runtime: { tools: "x" } });
      expect(isRuntimeApp(c) && c.virtualization).toBe(virtualization);
    }
  });

  it("says what is wrong in a runtime app's own terms", () => {
    expect(
      errorOf({ ...base, runtime: { tools: "jvm", artifacts: [{ name: "../x", path: "/a" }] } }),
    ).toMatch(/starting with a letter or digit \(a file name\)\s+→ at runtime\.artifacts\[0\]\.name/);
    expect(
      errorOf({
        ...base,
        runtime: {
          tools: "jvm",
          artifacts: [
            { name: "a", path: "/a" },
            { name: "a", path: "/b" },
          ],
        },
      }),
    ).toMatch(/name a is used by an earlier artifact\s+→ at runtime\.artifacts\[1\]\.name/);
    expect(errorOf({ ...base, runtime: { tools: "jvm" }, root: { host: {} } })).toMatch(
      /an app with a runtime has no root/,
    );
    expect(errorOf({ ...base, runtime: { tools: "jvm" }, vm: { kernel: "/k" } })).toMatch(
      /either vm or runtime/,
    );
    expect(errorOf({ ...base, runtime: { tools: "jvm" }, process: { cwd: "/x" } })).toMatch(
      /runs in its image's working directory|working directory is its image's/,
    );
    expect(errorOf({ ...base, runtime: { tools: "a.b" } })).toMatch(/→ at runtime\.tools/);
    expect(
      errorOf({ ...base, runtime: { tools: "x", artifacts: [{ name: "d", path: "/d", format: "QCOW" }] } }),
    ).toMatch(/format name/);
    // A native app or a VM still reads as before.
    expect(errorOf({ ...base, virtualization: "NOHYPER" })).toMatch(/is required\s+→ at root/);
    expect(errorOf({ ...base, virtualization: "XEN" })).toContain(
      'virtualization must be "NOHYPER" (native container) or "HVM" (VM); got "XEN"',
    );
  });
});

describe("runtime labels", () => {
  const l = (extra: Record<string, string> = {}) => ({ [RUNTIME_LABELS.runtime]: "1", ...extra });

  it("reads a runtime image's contract, with its defaults", () => {
    expect(readRuntimeLabels(l(), null)).toEqual({
      ok: true,
      facts: {
        contract: "1",
        stop: { method: "signal", signal: "SIGTERM" },
        tax: { baseMiB: 0, perVcpuMiB: 0, perGuestMiB: 0 },
        taxDeclared: false,
        devices: [],
        emulators: {},
      },
    });
    const qemu = readRuntimeLabels(
      l({
        [RUNTIME_LABELS.stop]: "qmp",
        [RUNTIME_LABELS.tax]: '{"baseMiB":370,"perVcpuMiB":3,"perGuestMiB":0.025}',
        [RUNTIME_LABELS.devices]: '["tun","kvm","kvm"]',
      }),
      "SIGKILL",
    );
    expect(qemu).toMatchObject({
      ok: true,
      facts: { stop: { method: "qmp" }, devices: ["kvm", "tun"], taxDeclared: true },
    });
    expect(
      readRuntimeLabels(l({ [RUNTIME_LABELS.emulators]: '{"aarch64":"/q","mips":"/m"}' }), "15"),
    ).toMatchObject({
      ok: true,
      facts: { stop: { signal: "SIGTERM" }, emulators: { aarch64: "/q" } },
    });
  });

  it("tells an image that is no runtime from a runtime the node cannot use", () => {
    expect(readRuntimeLabels({}, null)).toMatchObject({ ok: false, notRuntime: true });
    expect(readRuntimeLabels(null, null)).toMatchObject({ ok: false, notRuntime: true });
    for (const bad of [
      { [RUNTIME_LABELS.stop]: "acpi" },
      { [RUNTIME_LABELS.devices]: '["kvm","/dev/mem"]' },
      { [RUNTIME_LABELS.devices]: '"kvm"' },
      { [RUNTIME_LABELS.tax]: '{"baseMiB":1,"extra":2}' },
      { [RUNTIME_LABELS.emulators]: '{"aarch64":"relative"}' },
    ] as Record<string, string>[]) {
      expect(readRuntimeLabels(l(bad), null), JSON.stringify(bad)).toMatchObject({
        ok: false,
        notRuntime: false,
      });
    }
  });

  it("normalises StopSignal as images write it", () => {
    expect(["", "TERM", "sigterm", "15", undefined].map((s) => normalizeStopSignal(s))).toEqual([
      "SIGTERM",
      "SIGTERM",
      "SIGTERM",
      "SIGTERM",
      "SIGTERM",
    ]);
    expect(normalizeStopSignal("SIGRTMIN+3")).toBeUndefined();
    expect(normalizeStopSignal("99")).toBeUndefined();
  });

  it("keeps only the project's labels in a seed, bounded", () => {
    const labels: Record<string, string> = { "com.example.x": "1", [RUNTIME_LABELS.runtime]: "1" };
    for (let i = 0; i < 40; i++) labels[`org.lfedge.eve-tasks.a${String(i).padStart(2, "0")}`] = "v";
    labels["org.lfedge.eve-tasks.big"] = "x".repeat(5000);
    const kept = seedLabelsOf(labels);
    expect(Object.keys(kept)).toHaveLength(32);
    expect(kept["com.example.x"]).toBeUndefined();
    expect(kept["org.lfedge.eve-tasks.big"]).toBeUndefined();
    // The contract's labels first, even when others sort before them.
    expect(kept[RUNTIME_LABELS.runtime]).toBe("1");
  });
});

describe("runtimeTaxMiB", () => {
  it("is EVE's estimate for the qemu labels, without a floating-point MiB too many", () => {
    const tax = { baseMiB: 370, perVcpuMiB: 3, perGuestMiB: 0.025 };
    for (const memoryMiB of [1, 40, 80, 120, 128, 1000, 4096, 40000])
      for (const vcpus of [1, 2, 7]) {
        expect(runtimeTaxMiB(tax, { memoryMiB, vcpus })).toBe(estimateAnchorTaxMiB({ memoryMiB, vcpus }));
      }
    expect(runtimeTaxMiB({ baseMiB: 0, perVcpuMiB: 0, perGuestMiB: 0 }, { memoryMiB: 9, vcpus: 9 })).toBe(0);
  });
});

describe("imageSeedKey", () => {
  it("is per (ref, arch), and contract v1's key for an app naming no arch", () => {
    expect(imageSeedKey("n", "app:1", "aarch64")).toBe(`n.${sha256Hex("app:1 aarch64")}`);
    expect(imageSeedKey("n", "app:1")).toBe(`n.${sha256Hex("app:1")}`);
  });
});
