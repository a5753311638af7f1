import { describe, expect, it } from "vitest";
import { UserError, parseConfigInput, readConfigSource } from "../src/index.js";
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
