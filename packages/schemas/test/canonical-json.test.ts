import { describe, expect, it } from "vitest";
import { canonicalJson, jsonEqual, sha256Hex, specSha256 } from "../src/index.js";
import { ociSpec } from "./fixtures.js";

/** `value` with the keys of every object in reverse insertion order. */
function reverseKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reverseKeys);
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(
      Object.entries(value)
        .reverse()
        .map(([k, v]) => [k, reverseKeys(v)]),
    );
  }
  return value;
}

describe("canonicalJson", () => {
  it("sorts keys at every depth, whatever the insertion order", () => {
    const a = { b: 1, a: { d: [3, { z: 1, y: 2 }], c: "x" } };
    const b = { a: { c: "x", d: [3, { y: 2, z: 1 }] }, b: 1 };
    expect(canonicalJson(a)).toBe('{"a":{"c":"x","d":[3,{"y":2,"z":1}]},"b":1}');
    expect(canonicalJson(b)).toBe(canonicalJson(a));
  });

  it("sorts integer-like keys as strings, unlike JavaScript's own key order", () => {
    expect(canonicalJson({ 10: "a", 2: "b", x: "c" })).toBe('{"10":"a","2":"b","x":"c"}');
  });

  it("keeps array order and follows JSON.stringify for undefined and toJSON", () => {
    expect(canonicalJson([3, 1, 2])).toBe("[3,1,2]");
    expect(canonicalJson({ a: undefined, b: [undefined] })).toBe('{"b":[null]}');
    expect(canonicalJson({ t: new Date(0) })).toBe('{"t":"1970-01-01T00:00:00.000Z"}');
    expect(canonicalJson('é"\n')).toBe(JSON.stringify('é"\n'));
  });

  it("writes strings, keys and numbers exactly as JSON.stringify does", () => {
    const strings = [
      "plain",
      'q"uote',
      "back\\slash",
      "ctl\u0001\n\t",
      "é ☃ 😀",
      "lone \ud800 surrogate",
      "\udfff",
      "",
    ];
    for (const s of strings) {
      expect(canonicalJson(s)).toBe(JSON.stringify(s));
      expect(canonicalJson({ [s]: s })).toBe(`{${JSON.stringify(s)}:${JSON.stringify(s)}}`);
    }
    for (const n of [0, -0, 1.5, -2e-7, 1e21, 123456789012345680000, Number.MAX_SAFE_INTEGER]) {
      expect(canonicalJson(n)).toBe(JSON.stringify(n));
    }
    expect(canonicalJson([true, false, null])).toBe("[true,false,null]");
  });

  it("refuses what JSON cannot hold", () => {
    expect(() => canonicalJson({ a: Number.NaN })).toThrow(/NaN at \$\.a is not JSON/);
    expect(() => canonicalJson({ a: 1n })).toThrow(TypeError);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => canonicalJson(cyclic)).toThrow(/cycle/);
    expect(() => canonicalJson(undefined)).toThrow(/no JSON form/);
    expect(() => canonicalJson({ a: [1, { b: Number.POSITIVE_INFINITY }] })).toThrow(
      /Infinity at \$\.a\[1\]\.b is not JSON/,
    );
    const ring: unknown[] = [];
    ring.push({ next: [ring] });
    expect(() => canonicalJson({ deep: ring })).toThrow(/\$\.deep\[0\]\.next\[0\] contains itself/);
    // The same object twice, side by side, is no cycle.
    const shared = { x: 1 };
    expect(canonicalJson({ a: shared, b: [shared, shared] })).toBe('{"a":{"x":1},"b":[{"x":1},{"x":1}]}');
  });

  it("gives an unchanged fingerprint to the same spec built twice", () => {
    const spec = ociSpec();
    const reordered = reverseKeys(spec);
    expect(JSON.stringify(reordered)).not.toBe(JSON.stringify(spec));
    expect(specSha256(reordered)).toBe(specSha256(spec));
    expect(specSha256({ ...spec, hostname: "other" })).not.toBe(specSha256(spec));
  });
});

describe("jsonEqual", () => {
  it("agrees with comparing canonical texts", () => {
    const spec = ociSpec();
    const values: unknown[] = [
      null,
      0,
      -0,
      1,
      "1",
      true,
      false,
      [],
      {},
      [1, 2],
      [2, 1],
      [1, undefined],
      [1, null],
      { a: 1 },
      { a: 1, b: undefined },
      { a: "1" },
      { a: [1, { b: 2 }] },
      { a: [1, { b: 3 }] },
      { b: 1 },
      { t: new Date(0) },
      { t: "1970-01-01T00:00:00.000Z" },
      spec,
      reverseKeys(spec),
      { ...spec, hostname: "other" },
      { ...spec, process: { ...spec.process, args: [...(spec.process?.args ?? []), "x"] } },
    ];
    for (const a of values) {
      for (const b of values) {
        expect(jsonEqual(a, b), `${canonicalJson(a)} vs ${canonicalJson(b)}`).toBe(
          canonicalJson(a) === canonicalJson(b),
        );
      }
    }
  });
});

describe("sha256Hex", () => {
  it("matches the FIPS 180-2 test vector", () => {
    expect(sha256Hex("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(sha256Hex(new TextEncoder().encode("abc"))).toBe(sha256Hex("abc"));
  });
});
