import { describe, expect, it } from "vitest";
import { ageOrigin, appsJson, getRow, memoryLimitOf, renderGetTable } from "../src/index.js";
import { NOW, UUID, UUID2, app, config, halted, running, vmConfig } from "./fixtures.js";

describe("get table", () => {
  it("shows name, uuid, state, task id, memory limit and age since the task started", () => {
    expect(renderGetTable([app(config(), running())], NOW)).toBe(
      "NAME    UUID                                   STATE     TASK ID   MEMORY   AGE\n" +
        `hello   ${UUID}   RUNNING   4242      64Mi     5m\n`,
    );
  });

  it('shows "-" for an app with no status yet, aged from its config, with the configured memory', () => {
    expect(getRow(app(config(), undefined), NOW)).toEqual(["hello", UUID, "-", "-", "64Mi", "90s"]);
  });

  it("adds an ERROR column only when some app has an error", () => {
    const error = {
      source: "spec-builder" as const,
      message: "no such image",
      configRevision: 8,
      time: NOW.toISOString(),
    };
    const text = renderGetTable([app(config(), running({ error })), app(vmConfig(), undefined)], NOW);
    const [header, first, second] = text.split("\n");
    expect(header).toMatch(/AGE\s+ERROR$/);
    expect(first).toMatch(/RUNNING .* spec-builder: no such image \(config revision 8\)$/);
    expect(second).toMatch(/^vm\s+7a2d/);
    expect(renderGetTable([app(config(), running())], NOW)).not.toContain("ERROR");
  });

  it("adds an ADDRESSES column only when some app has interfaces", () => {
    const interfaces = [
      {
        name: "eth0",
        network: "lan",
        mac: "02:00:00:00:00:01",
        ip: "10.88.0.2",
        hostIfName: "ev0123456789-0",
      },
      {
        name: "eth1",
        network: "dmz",
        mac: "02:00:00:00:00:02",
        ip: "10.89.0.2",
        hostIfName: "ev0123456789-1",
      },
    ];
    const text = renderGetTable([app(config(), running({ interfaces })), app(vmConfig(), undefined)], NOW);
    const [header, first, second] = text.split("\n");
    expect(header).toMatch(/AGE\s+ADDRESSES$/);
    expect(first).toMatch(/ eth0=10\.88\.0\.2,eth1=10\.89\.0\.2$/);
    expect(second).toMatch(/ -$/);
    expect(renderGetTable([app(config(), running())], NOW)).not.toContain("ADDRESSES");
  });

  it("ages a stopped task from its config, and a status without config from its start", () => {
    expect(ageOrigin(app(config(), halted()))).toEqual(new Date(NOW.getTime() - 90_000));
    const orphan = app(undefined, halted({ uuid: UUID2 }));
    expect(getRow(orphan, NOW)).toEqual(["(deleted)", UUID2, "HALTED", "-", "64Mi", "5m"]);
  });

  it("takes the memory limit from the status, else from the config (a VM's with its anchor tax)", () => {
    expect(memoryLimitOf(app(config(), running({ memoryLimitBytes: 100 * 1048576 })))).toBe(100 * 1048576);
    // 1024 MiB + (370 + 3·2 + ceil(1024/40) = 402) MiB of tax.
    expect(memoryLimitOf(app(vmConfig(), undefined))).toBe(1426 * 1048576);
    expect(getRow(app(vmConfig(), undefined), NOW)[4]).toBe("1426Mi");
  });

  it("prints JSON as { uuid, revision, config, status } with null for what is absent", () => {
    const json = appsJson([app(config(), undefined), app(undefined, running({ uuid: UUID2 }))]);
    expect(json).toEqual([
      { uuid: UUID, revision: 7, config: config(), status: null },
      { uuid: UUID2, revision: null, config: null, status: running({ uuid: UUID2 }) },
    ]);
  });
});
