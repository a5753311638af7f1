import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  AppInstanceConfigSchema,
  DEFAULT_RESTART_POLICY,
  estimateAnchorTaxMiB,
  memoryLimitBytes,
  rootKindOf,
  type AppInstanceConfigInput,
} from "../src/index.js";
import { designExampleJson, minimalNative, minimalVm, UUID } from "./fixtures.js";

/** The prettified error of parsing `input`, or a failure if it parses. */
function errorOf(input: unknown): string {
  const result = AppInstanceConfigSchema.safeParse(input);
  if (result.success) throw new Error(`expected ${JSON.stringify(input)} to be refused`);
  return z.prettifyError(result.error);
}

/** `minimalNative()` with `patch` merged in at the top level. */
function native(patch: Record<string, unknown>): unknown {
  return { ...minimalNative(), ...patch };
}

describe("AppInstanceConfig", () => {
  it("parses DESIGN.md's example unchanged (every field given)", () => {
    const input: unknown = JSON.parse(designExampleJson);
    const config = AppInstanceConfigSchema.parse(input);
    expect(config).toEqual({
      ...(input as object),
      restartPolicy: DEFAULT_RESTART_POLICY,
      interfaces: [],
    });
    expect(config.virtualization).toBe("NOHYPER");
    if (config.virtualization === "NOHYPER") expect(rootKindOf(config.root!)).toBe("volume");
  });

  it("applies every default to a minimal native config", () => {
    const config = AppInstanceConfigSchema.parse(minimalNative());
    expect(config).toMatchObject({
      node: "local",
      activate: true,
      restartCounter: 0,
      displayName: "",
      volumes: [],
      stopTimeoutMs: 10000,
      restartPolicy: {
        mode: "never",
        maxRestarts: 5,
        windowMs: 600000,
        backoffMs: 1000,
        maxBackoffMs: 60000,
      },
    });
    expect(config).not.toHaveProperty("arch");
    expect(config).not.toHaveProperty("process");
  });

  it("fills in the rest of a partial restart policy", () => {
    const config = AppInstanceConfigSchema.parse(
      native({ restartPolicy: { mode: "on-failure", maxRestarts: 2 } }),
    );
    expect(config.restartPolicy).toEqual({ ...DEFAULT_RESTART_POLICY, mode: "on-failure", maxRestarts: 2 });
  });

  it("applies VM defaults", () => {
    const config = AppInstanceConfigSchema.parse(minimalVm());
    if (config.virtualization !== "HVM") throw new Error("expected a VM");
    expect(config.vm).toMatchObject({ hypervisorTools: "default", accel: "auto" });
    expect(config.vm!.disks[0]).toEqual({
      path: "/var/lib/eve/volumes/vm/disk.qcow2",
      format: "qcow2",
      readOnly: false,
    });
    expect(config.volumes).toEqual([]);
    expect(config).not.toHaveProperty("root");
  });

  it("refuses an unknown virtualization mode, naming the field and the value", () => {
    const message = errorOf(native({ virtualization: "XEN" }));
    expect(message).toContain('virtualization must be "NOHYPER" (native container) or "HVM" (VM); got "XEN"');
    expect(message).toContain("→ at virtualization");
  });

  it("says when virtualization is missing", () => {
    const { virtualization: _, ...rest } = minimalNative();
    expect(errorOf(rest)).toContain("virtualization must be");
  });

  it("refuses memoryMiB 0 and a fractional vcpus", () => {
    expect(errorOf(native({ resources: { memoryMiB: 0, vcpus: 1 } }))).toMatch(
      /must be at least 1 MiB\s+→ at resources\.memoryMiB/,
    );
    expect(errorOf(native({ resources: { memoryMiB: 64, vcpus: 1.5 } }))).toMatch(
      /whole number.*\s+→ at resources\.vcpus/,
    );
  });

  it("refuses two roots and no root", () => {
    const two = errorOf(native({ root: { volume: { path: "/v" }, image: { ref: "app:1" } } }));
    expect(two).toContain("root must have exactly one of volume, image or host; it has volume and image");
    expect(two).toContain("→ at root");
    expect(errorOf(native({ root: {} }))).toContain("it has none");
    const { root: _, ...noRoot } = minimalNative() as Extract<
      AppInstanceConfigInput,
      { virtualization: "NOHYPER" }
    >;
    expect(errorOf(noRoot)).toMatch(/is required\s+→ at root/);
  });

  it("accepts each single root kind", () => {
    for (const root of [
      { volume: { path: "/v/r" } },
      { image: { ref: "oci:/srv/layout:tools" } },
      { host: {} },
    ]) {
      const config = AppInstanceConfigSchema.parse(native({ root }));
      if (config.virtualization !== "NOHYPER") throw new Error("expected a native container");
      expect(rootKindOf(config.root!)).toBe(Object.keys(root)[0]);
    }
  });

  it("refuses a writable host root", () => {
    expect(errorOf(native({ root: { host: { readOnly: false } } }))).toContain(
      "the host root is always read-only",
    );
  });

  it("requires absolute paths (format only; realpath checks belong to the executor)", () => {
    expect(errorOf(native({ root: { volume: { path: "volumes/hello" } } }))).toMatch(
      /must be an absolute path \(starting with '\/'\)\s+→ at root\.volume\.path/,
    );
    expect(errorOf(native({ volumes: [{ path: "/v/d", mountPoint: "data" }] }))).toContain(
      "→ at volumes[0].mountPoint",
    );
    // `..` is not refused here: the executor resolves the real path and checks EVE_VOLUME_ROOTS.
    expect(
      AppInstanceConfigSchema.safeParse(native({ root: { volume: { path: "/v/../etc" } } })).success,
    ).toBe(true);
  });

  it("refuses an invalid or uppercase uuid", () => {
    expect(errorOf(native({ uuid: "not-a-uuid" }))).toMatch(/must be a lowercase UUID.*\s+→ at uuid/);
    expect(errorOf(native({ uuid: UUID.toUpperCase() }))).toContain("→ at uuid");
  });

  it("refuses a VM with a root, and a container with a vm", () => {
    expect(errorOf({ ...minimalVm(), root: { host: {} } })).toMatch(/a VM has no root.*\s+→ at root/);
    expect(errorOf(native({ vm: { kernel: "/k" } }))).toMatch(/vm is for VMs only.*\s+→ at vm/);
    const { vm: _, ...noVm } = minimalVm() as Extract<AppInstanceConfigInput, { virtualization: "HVM" }>;
    expect(errorOf(noVm)).toMatch(/is required\s+→ at vm/);
  });

  it("checks VM settings", () => {
    expect(errorOf({ ...minimalVm(), vm: { disks: [] } })).toContain(
      "a VM needs vm.kernel or at least one disk",
    );
    expect(
      errorOf({ ...minimalVm(), vm: { initrd: "/i", disks: [{ path: "/d", format: "raw" }] } }),
    ).toContain("vm.initrd needs vm.kernel");
    expect(errorOf({ ...minimalVm(), vm: { kernel: "/k", disks: [{ path: "/d" }] } })).toMatch(
      /is required\s+→ at vm\.disks\[0\]\.format/,
    );
    expect(errorOf({ ...minimalVm(), vm: { kernel: "/k", accel: "xen" } })).toContain(
      'must be "auto", "kvm" or "tcg"',
    );
  });

  it("allows vmmOverheadMiB for VMs only", () => {
    const vm = minimalVm();
    expect(
      AppInstanceConfigSchema.safeParse({
        ...vm,
        resources: { memoryMiB: 512, vcpus: 2, vmmOverheadMiB: 100 },
      }).success,
    ).toBe(true);
    expect(errorOf(native({ resources: { memoryMiB: 64, vcpus: 1, vmmOverheadMiB: 100 } }))).toContain(
      "vmmOverheadMiB applies to VMs only",
    );
  });

  it("refuses unknown keys (typos) with the key's name", () => {
    expect(errorOf(native({ memoryMib: 64 }))).toContain('Unrecognized key: "memoryMib"');
    expect(errorOf(native({ resources: { memoryMiB: 64, vcpus: 1, cpus: 2 } }))).toContain(
      'Unrecognized key: "cpus"',
    );
  });

  it("checks process overrides", () => {
    expect(errorOf(native({ process: { env: { "A=B": "x" } } }))).toContain(
      "environment variable names must be",
    );
    expect(errorOf(native({ process: { env: { A: 1 } } }))).toMatch(
      /environment values are strings\)\s+→ at process\.env\.A/,
    );
    expect(errorOf(native({ process: { args: [] } }))).toContain("→ at process.args");
    expect(errorOf(native({ process: { user: "a:b:c" } }))).toContain("→ at process.user");
    expect(AppInstanceConfigSchema.safeParse(native({ process: { user: "nobody" } })).success).toBe(true);
  });

  it("refuses a second volume at the same mount point", () => {
    const volumes = [
      { path: "/v/a", mountPoint: "/data" },
      { path: "/v/b", mountPoint: "/data" },
    ];
    expect(errorOf(native({ volumes }))).toMatch(
      /mountPoint \/data is used by an earlier volume\s+→ at volumes\[1\]\.mountPoint/,
    );
  });

  it("checks the restart policy", () => {
    expect(errorOf(native({ restartPolicy: { mode: "sometimes" } }))).toMatch(
      /"never", "on-failure" or "always"\s+→ at restartPolicy\.mode/,
    );
    expect(errorOf(native({ restartPolicy: { backoffMs: 5000, maxBackoffMs: 10 } }))).toContain(
      "maxBackoffMs must be at least backoffMs",
    );
    expect(errorOf(native({ stopTimeoutMs: 2 ** 31 }))).toContain("→ at stopTimeoutMs");
  });

  it("refuses another schemaVersion and a node that cannot be a subject token", () => {
    expect(errorOf(native({ schemaVersion: 2 }))).toContain("schemaVersion must be 1");
    expect(errorOf(native({ node: "edge.1" }))).toMatch(/no '\.'.*\s+→ at node/);
  });
});

describe("anchor tax", () => {
  it("is ceil(370 + 3·vcpus + 0.025·memoryMiB), computed exactly", () => {
    expect(estimateAnchorTaxMiB({ memoryMiB: 1000, vcpus: 1 })).toBe(398); // 0.025·1000 = 25 exactly
    expect(estimateAnchorTaxMiB({ memoryMiB: 1001, vcpus: 2 })).toBe(402); // 370 + 6 + ceil(25.025)
    expect(estimateAnchorTaxMiB({ memoryMiB: 512, vcpus: 2 })).toBe(389);
    expect(memoryLimitBytes(512, 389)).toBe(901 * 1048576);
  });
});
