import { describe, expect, it } from "vitest";
import { z } from "zod";
import { OciSpecSchema, TaskConfigSchema, specSha256, type TaskConfig } from "../src/index.js";
import { ociSpec, readyTaskConfig, TIME, UUID } from "./fixtures.js";

function errorOf(input: unknown): string {
  const result = TaskConfigSchema.safeParse(input);
  if (result.success) throw new Error(`expected ${JSON.stringify(input)} to be refused`);
  return z.prettifyError(result.error);
}

/** A type-level check that a switch on status covers every variant. */
function describeConfig(config: TaskConfig): string {
  switch (config.status) {
    case "READY":
      return `ready ${config.specSha256.slice(0, 8)} rootfs ${config.rootfs.kind}`;
    case "PENDING":
      return `pending on ${config.waitingFor}`;
    case "FAILED":
      return `failed: ${config.error.message}`;
  }
}

describe("TaskConfig", () => {
  it("accepts a READY config whose specSha256 matches its spec", () => {
    const config = TaskConfigSchema.parse(readyTaskConfig());
    expect(describeConfig(config)).toMatch(/^ready [0-9a-f]{8} rootfs volume$/);
  });

  it("checks specSha256's form, not its value (the executor checks that where it relies on it)", () => {
    expect(errorOf({ ...readyTaskConfig(), specSha256: "abc" })).toMatch(/→ at specSha256/);
    expect(TaskConfigSchema.safeParse({ ...readyTaskConfig(), specSha256: "0".repeat(64) }).success).toBe(
      true,
    );
  });

  it("keeps unknown spec keys, so the fingerprint covers them", () => {
    const spec = {
      ...ociSpec(),
      linux: { ...ociSpec().linux, sysctl: { "net.ipv4.ip_forward": "0" } },
      vendorExtra: 1,
    };
    const config = TaskConfigSchema.parse({ ...readyTaskConfig(), spec, specSha256: specSha256(spec) });
    if (config.status !== "READY") throw new Error("expected READY");
    expect(config.spec).toEqual(spec);
  });

  it("ties the anchor tax and the tools rootfs to a runtime", () => {
    expect(errorOf({ ...readyTaskConfig(), anchorTaxMiB: 10 })).toContain(
      "a native container (no runtime) has no anchor tax",
    );
    const runtime = {
      ...readyTaskConfig(),
      virtualization: "HVM",
      anchorTaxMiB: 389,
      rootfs: { kind: "tools", seedKey: "local.default", rootfsPath: "/var/lib/eve-tasks/seeds/tools" },
      runtime: {
        name: "default",
        accel: "auto",
        stop: { method: "qmp" },
        devices: ["kvm", "tun"],
        taxFromApp: false,
        vcpus: 1,
      },
    };
    expect(TaskConfigSchema.parse(runtime).status).toBe("READY");
    expect(errorOf({ ...runtime, runtime: undefined })).toMatch(
      /cannot have a tools rootfs\s+→ at rootfs\.kind/,
    );
    expect(errorOf({ ...readyTaskConfig(), runtime: runtime.runtime })).toMatch(
      /kind must be "tools"\s+→ at rootfs\.kind/,
    );
    expect(errorOf({ ...runtime, runtime: { ...runtime.runtime, devices: ["mem"] } })).toMatch(
      /must be one of kvm, tun\s+→ at runtime\.devices\[0\]/,
    );
    expect(
      errorOf({ ...runtime, runtime: { ...runtime.runtime, stop: { method: "signal", signal: "TERM" } } }),
    ).toMatch(/must be a signal name/);
    expect(errorOf({ ...runtime, emulation: { arch: "aarch64", emulators: null } })).toMatch(
      /a runtime task runs its runtime natively: it has no emulation/,
    );
    const emulated = { ...readyTaskConfig(), emulation: { arch: "aarch64", emulators: null } };
    expect(TaskConfigSchema.parse(emulated).status).toBe("READY");
  });

  it("names an unknown rootfs kind and an unknown status", () => {
    expect(errorOf({ ...readyTaskConfig(), rootfs: { kind: "nfs" } })).toMatch(
      /kind must be .*\s+→ at rootfs\.kind/,
    );
    expect(errorOf({ ...readyTaskConfig(), status: "DONE" })).toMatch(
      /status must be "READY", "PENDING" or "FAILED"\s+→ at status/,
    );
  });

  it("accepts a FAILED config carrying only the stage's error, with or without a version", () => {
    const failed = {
      schemaVersion: 1,
      status: "FAILED",
      uuid: UUID,
      configRevision: 8,
      node: "local",
      error: {
        source: "spec-builder",
        message: "image has no command and the app gives no args",
        configRevision: 8,
        time: TIME,
      },
    };
    expect(describeConfig(TaskConfigSchema.parse(failed))).toBe(
      "failed: image has no command and the app gives no args",
    );
    expect(TaskConfigSchema.parse({ ...failed, version: "3" })).toMatchObject({ version: "3" });
    expect(errorOf({ ...failed, error: { ...failed.error, configRevision: 7 } })).toContain(
      "error.configRevision must equal configRevision",
    );
    expect(errorOf({ ...failed, error: { ...failed.error, source: "proc-monitor" } })).toContain(
      "→ at error.source",
    );
  });

  it("accepts a PENDING config waiting for a seed or a pull", () => {
    const pending = {
      schemaVersion: 1,
      status: "PENDING",
      uuid: UUID,
      configRevision: 9,
      node: "local",
      version: "4",
    };
    expect(
      describeConfig(TaskConfigSchema.parse({ ...pending, waitingFor: "pull", message: "pulling app:1" })),
    ).toBe("pending on pull");
    expect(errorOf({ ...pending, waitingFor: "memory", message: "" })).toContain("→ at waitingFor");
  });
});

describe("OciSpecSchema", () => {
  it("accepts the fixture spec and requires what every task needs", () => {
    expect(OciSpecSchema.parse(ociSpec())).toEqual(ociSpec());
    const { linux: _linux, ...noLinux } = ociSpec();
    expect(z.prettifyError(OciSpecSchema.safeParse(noLinux).error!)).toMatch(/→ at linux/);
    const noCpu = { ...ociSpec(), linux: { resources: { memory: { limit: 1 } } } };
    expect(z.prettifyError(OciSpecSchema.safeParse(noCpu).error!)).toContain("→ at linux.resources.cpu");
    const badEnv = { ...ociSpec(), process: { ...ociSpec().process, env: ["NOEQUALS"] } };
    expect(z.prettifyError(OciSpecSchema.safeParse(badEnv).error!)).toContain('must be "NAME=value"');
  });
});
