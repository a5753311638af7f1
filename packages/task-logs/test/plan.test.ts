import { describe, expect, it } from "vitest";
import { cursorPosition, laterOf, orderLogFiles, planRead, sincePosition } from "../src/index.js";
import type { LogFile } from "../src/index.js";

const file = (name: string, id: string, sizeBytes: number, mtimeMs = 0): LogFile => ({
  name,
  id,
  sizeBytes,
  mtimeMs,
});

describe("orderLogFiles", () => {
  it("puts the highest number first and console.log last, ignoring other names", () => {
    const names = [
      "console.log.10",
      "console.log",
      "console.log.2",
      "upper",
      "console.log.x",
      "console.log.01",
      "console.log.1",
    ];
    expect(
      orderLogFiles(
        "console.log",
        names.map((name) => ({ name })),
      ).map((e) => e.name),
    ).toEqual(["console.log.10", "console.log.2", "console.log.1", "console.log"]);
  });
});

describe("planRead", () => {
  const files = [
    file("console.log.2", "10.5", 100),
    file("console.log.1", "11.5", 0),
    file("console.log", "12.5", 30),
  ];
  it("reads within one file, at most maxBytes, and says when more is there", () => {
    expect(planRead(files, { index: 0, offset: 0 }, 40)).toEqual({
      index: 0,
      offset: 0,
      length: 40,
      next: { file: "10.5", offset: 40 },
      more: true,
      gap: null,
    });
  });
  it("moves from the end of a rotated file to the next one with data", () => {
    expect(planRead(files, { index: 0, offset: 100 }, 40)).toMatchObject({
      index: 2,
      offset: 0,
      length: 30,
      next: { file: "12.5", offset: 30 },
      more: false,
    });
  });
  it("at the end of console.log reads nothing and stays there", () => {
    expect(planRead(files, { index: 2, offset: 30 }, 40)).toMatchObject({
      length: 0,
      next: { file: "12.5", offset: 30 },
      more: false,
    });
  });
  it("without files has no cursor", () => {
    expect(planRead([], { index: 0, offset: 0 }, 10)).toEqual({
      index: undefined,
      offset: 0,
      length: 0,
      next: null,
      more: false,
      gap: null,
    });
  });
});

describe("cursorPosition", () => {
  const files = [file("console.log.1", "20.5", 50), file("console.log", "21.5", 10)];
  it("follows its inode wherever rotation renamed it", () => {
    expect(cursorPosition(files, { file: "20.5", offset: 7 })).toEqual({
      position: { index: 0, offset: 7 },
      gap: null,
    });
  });
  it("reports a gap and restarts at the oldest file when its file was rotated away", () => {
    const r = cursorPosition(files, { file: "19.5", offset: 7 });
    expect(r.position).toEqual({ index: 0, offset: 0 });
    expect(r.gap).toMatch(/rotated past this reader/);
  });
  it("reports a gap when its file shrank below it", () => {
    expect(cursorPosition(files, { file: "21.5", offset: 11 }).gap).toMatch(/shrank/);
  });
});

describe("sincePosition and laterOf", () => {
  const files = [
    file("console.log.2", "1.5", 5, 1000),
    file("console.log.1", "2.5", 5, 2000),
    file("console.log", "3.5", 5, 3000),
  ];
  it("starts at the first file written at or after the time", () => {
    expect(sincePosition(files, 1500)).toEqual({ index: 1, offset: 0 });
    expect(sincePosition(files, 500)).toEqual({ index: 0, offset: 0 });
  });
  it("is the end when nothing was written since", () => {
    expect(sincePosition(files, 4000)).toEqual({ index: 2, offset: 5 });
  });
  it("laterOf picks the later position", () => {
    expect(laterOf({ index: 1, offset: 0 }, { index: 0, offset: 4 })).toEqual({ index: 1, offset: 0 });
    expect(laterOf({ index: 2, offset: 1 }, { index: 2, offset: 3 })).toEqual({ index: 2, offset: 3 });
  });
});
