import { describe, expect, it } from "vitest";
import {
  UserError,
  networkRows,
  parseApplyInput,
  parseConfigInput,
  readConfigSource,
  renderNetworks,
} from "../src/index.js";
import { UUID } from "./fixtures.js";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const valid = {
  schemaVersion: 1,
  uuid: UUID,
  version: "1",
  displayName: "hello",
  virtualization: "NOHYPER",
  resources: { memoryMiB: 64, vcpus: 1 },
  root: { volume: { path: "/var/lib/eve/volumes/hello/rootfs" } },
};

function errorOf(fn: () => unknown): UserError {
  try {
    fn();
  } catch (err) {
    if (err instanceof UserError) return err;
    throw err;
  }
  throw new Error("expected a UserError");
}

describe("parseConfigInput", () => {
  it("returns the config with defaults applied", () => {
    const c = parseConfigInput(enc(JSON.stringify(valid)), "app.json");
    expect(c).toMatchObject({ uuid: UUID, activate: true, restartCounter: 0, node: "local" });
  });

  it("names the source and every bad field of a schema violation", () => {
    const bad = { ...valid, resources: { memoryMiB: 0, vcpus: 1 }, activate: "yes" };
    const e = errorOf(() => parseConfigInput(enc(JSON.stringify(bad)), "app.json"));
    expect(e.message).toMatch(/^invalid AppInstanceConfig in app.json:/);
    expect(e.message).toContain("→ at resources.memoryMiB");
    expect(e.message).toContain("→ at activate");
  });

  it("names a missing field and a wrong virtualization", () => {
    const { uuid: _u, ...noUuid } = valid;
    expect(errorOf(() => parseConfigInput(enc(JSON.stringify(noUuid)), "x")).message).toMatch(
      /is required\n\s+→ at uuid/,
    );
    const vm = { ...valid, virtualization: "XEN" };
    expect(errorOf(() => parseConfigInput(enc(JSON.stringify(vm)), "x")).message).toContain(
      'virtualization must be "NOHYPER" (native container) or "HVM" (VM); got "XEN"',
    );
  });

  it("says where JSON breaks, and refuses more than 64 KiB", () => {
    expect(errorOf(() => parseConfigInput(enc('{"a": 1,\n}'), "app.json")).message).toMatch(
      /^app.json is not valid JSON: .*line 2 column 1/,
    );
    expect(errorOf(() => parseConfigInput(enc(""), "stdin")).message).toBe(
      "stdin is not valid JSON: the value is empty",
    );
    const big = JSON.stringify({ ...valid, displayName: "x".repeat(70_000) });
    expect(errorOf(() => parseConfigInput(enc(big), "big.json")).message).toMatch(/^big.json is too large: /);
  });
});

describe("readConfigSource", () => {
  const io = {
    readStdin: () => Promise.resolve(enc("{}")),
    readFile: (p: string) => Promise.reject(Object.assign(new Error(`ENOENT: ${p}`), { code: "ENOENT" })),
  };

  it("reads stdin for -", async () => {
    expect(await readConfigSource("-", io)).toEqual({ bytes: enc("{}"), source: "stdin" });
  });

  it("says a file cannot be read in one line", async () => {
    await expect(readConfigSource("nope.json", io)).rejects.toThrow("cannot read nope.json: no such file");
  });
});

describe("parseApplyInput", () => {
  const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
  const lan = { schemaVersion: 1, name: "lan", type: "local", subnet: "10.88.0.0/24", gateway: "10.88.0.1" };

  it("takes a file with a subnet and no uuid as a NetworkInstanceConfig, defaults applied", () => {
    expect(parseApplyInput(enc(lan), "lan.json")).toEqual({
      kind: "network",
      config: { ...lan, node: "local", uplink: null, mtu: 1500, dns: [] },
    });
  });

  it("names the file and the field of a bad NetworkInstanceConfig", () => {
    expect(() => parseApplyInput(enc({ ...lan, gateway: "10.90.0.1" }), "lan.json")).toThrow(
      /invalid NetworkInstanceConfig in lan\.json:[\s\S]*gateway 10\.90\.0\.1 is outside the subnet 10\.88\.0\.0\/24/,
    );
  });

  it("takes anything else as an AppInstanceConfig", () => {
    expect(() => parseApplyInput(enc({ uuid: UUID, subnet: "x" }), "app.json")).toThrow(
      /invalid AppInstanceConfig/,
    );
  });
});

describe("networks table", () => {
  it("joins configs and statuses, and shows a deleted config's instance", () => {
    const config = parseApplyInput(
      new TextEncoder().encode(
        JSON.stringify({
          schemaVersion: 1,
          name: "lan",
          type: "local",
          subnet: "10.88.0.0/24",
          gateway: "10.88.0.1",
        }),
      ),
      "x",
    );
    if (config.kind !== "network") throw new Error("not a network");
    const status = {
      schemaVersion: 1 as const,
      name: "old",
      node: "local",
      state: "READY" as const,
      bridge: "eb-old",
      subnet: "10.77.0.0/24",
      gateway: "10.77.0.1",
      apps: ["6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10"],
      error: null,
    };
    const rows = networkRows(new Map([["lan", config.config]]), new Map([["local.old", status]]));
    expect(rows.map((r) => [r.name, r.config !== null, r.status !== null])).toEqual([
      ["lan", true, false],
      ["old", false, true],
    ]);
    const text = renderNetworks(rows);
    expect(text).toMatch(/^NAME\s+NODE\s+TYPE\s+STATE\s+SUBNET\s+GATEWAY\s+BRIDGE\s+APPS\s+ERROR/);
    expect(text).toMatch(/lan\s+local\s+local\s+-\s+10\.88\.0\.0\/24\s+10\.88\.0\.1\s+-\s+0/);
    expect(text).toMatch(
      /old\s+local\s+-\s+READY\s+10\.77\.0\.0\/24\s+10\.77\.0\.1\s+eb-old\s+1\s+\(config deleted\)/,
    );
  });
});
