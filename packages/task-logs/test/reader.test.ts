// Reading a real log directory on disk while it is written and rotated as the task logger does.
import { mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { LogCursor } from "@eve-tasks/schemas";
import { logEndCursor, readLogChunk, readLogFrom } from "../src/index.js";
import { RotatingLog } from "./rotating-log.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "eve-task-logs-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Reads from `cursor` until caught up, in chunks of `maxBytes`. */
async function drain(path: string, cursor: LogCursor | undefined, maxBytes: number) {
  let text = "";
  const gaps: string[] = [];
  let c = cursor;
  for (let i = 0; i < 10_000; i++) {
    const chunk = (await readLogChunk(path, { cursor: c, maxBytes }))!;
    text += chunk.data.toString();
    if (chunk.gap) gaps.push(chunk.gap);
    c = chunk.cursor ?? undefined;
    if (!chunk.more) return { text, gaps, cursor: c };
  }
  throw new Error("never caught up");
}

describe("readLogChunk", () => {
  it("is undefined when the app has no directory, and empty without a cursor before the first write", async () => {
    expect(await readLogChunk(join(dir, "nope", "console.log"), { maxBytes: 10 })).toBeUndefined();
    expect(await readLogChunk(join(dir, "console.log"), { maxBytes: 10 })).toEqual({
      data: Buffer.alloc(0),
      cursor: null,
      more: false,
      gap: null,
    });
  });

  it("reads every file oldest first, in chunks, and a follower keeps its place across rotations", async () => {
    const log = new RotatingLog(dir, 4);
    log.write("a1\na2\n");
    log.rotate();
    log.write("b1\n");
    const first = await drain(log.path, undefined, 4);
    expect(first.text).toBe("a1\na2\nb1\n");
    // The follower is at the end of console.log; two rotations later its file is console.log.2.
    log.write("b2\n");
    log.rotate();
    log.write("c1\n");
    log.rotate();
    log.write("d1\n");
    const next = await drain(log.path, first.cursor, 5);
    expect(next).toMatchObject({ text: "b2\nc1\nd1\n", gaps: [] });
  });

  it("gives a gap, not stale or repeated output, when the reader's file was rotated away", async () => {
    const log = new RotatingLog(dir, 2);
    log.write("old\n");
    const { cursor } = await drain(log.path, undefined, 100);
    log.write("lost\n");
    log.rotate();
    log.write("kept1\n");
    log.rotate();
    log.write("kept2\n");
    const next = await drain(log.path, cursor, 100);
    expect(next.gaps).toHaveLength(1);
    expect(next.gaps[0]).toMatch(/rotated past this reader/);
    expect(next.text).toBe("kept1\nkept2\n");
  });

  it("tails the last lines across files, a final newline ending the last line", async () => {
    const log = new RotatingLog(dir, 3);
    log.write("1\n2\n");
    log.rotate();
    log.write("3\n4\n5");
    const tail = async (n: number) => {
      const first = (await readLogChunk(log.path, { tailLines: n, maxBytes: 1000 }))!;
      // A reply holds one file's part at most: the rest comes from its cursor.
      const rest = first.more ? (await drain(log.path, first.cursor ?? undefined, 1000)).text : "";
      return first.data.toString() + rest;
    };
    expect(await tail(0)).toBe("");
    expect(await tail(1)).toBe("5");
    expect(await tail(3)).toBe("3\n4\n5");
    expect(await tail(4)).toBe("2\n3\n4\n5");
    expect(await tail(99)).toBe("1\n2\n3\n4\n5");
    log.write("\n");
    expect(await tail(1)).toBe("5\n");
    expect(await tail(2)).toBe("4\n5\n");
  });

  it("with since, starts at the first file written since then", async () => {
    const log = new RotatingLog(dir, 3);
    log.write("before\n");
    log.rotate();
    await new Promise((r) => setTimeout(r, 20));
    const since = Date.now();
    await new Promise((r) => setTimeout(r, 20));
    log.write("after\n");
    expect((await readLogChunk(log.path, { sinceMs: since, maxBytes: 100 }))!.data.toString()).toBe(
      "after\n",
    );
    expect(
      (await readLogChunk(log.path, { sinceMs: Date.now() + 60_000, maxBytes: 100 }))!.data.toString(),
    ).toBe("");
  });

  it("never follows a symlink in place of a log file", async () => {
    await writeFile(join(dir, "secret"), "host secret\n");
    await symlink(join(dir, "secret"), join(dir, "console.log"));
    expect(await readLogChunk(join(dir, "console.log"), { maxBytes: 100 })).toEqual({
      data: Buffer.alloc(0),
      cursor: null,
      more: false,
      gap: null,
    });
  });

  it("whatever the interleaving of writes, rotations and reads: nothing twice, nothing out of order, and only a gap loses output", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({ op: fc.constant("write" as const), n: fc.integer({ min: 1, max: 30 }) }),
            fc.constant({ op: "rotate" as const }),
            fc.record({ op: fc.constant("read" as const), max: fc.integer({ min: 1, max: 17 }) }),
          ),
          { maxLength: 60 },
        ),
        fc.integer({ min: 1, max: 4 }),
        async (ops, files) => {
          const sub = await mkdtemp(join(dir, "p-"));
          const log = new RotatingLog(sub, files);
          let seq = 0;
          let read = "";
          let gaps = 0;
          let cursor: LogCursor | undefined;
          /**
           * Where the reader starts: at the oldest file there when it reads without a cursor (before
           * the log exists a reader has none).
           */
          let startAt: number | undefined;
          const readOnce = async (max: number) => {
            if (cursor === undefined) startAt = log.discarded;
            const chunk = (await readLogChunk(log.path, { cursor, maxBytes: max }))!;
            if (chunk.gap) {
              gaps++;
              read += "|";
            }
            read += chunk.data.toString();
            cursor = chunk.cursor ?? undefined;
            return chunk.more;
          };
          for (const o of ops) {
            if (o.op === "write") {
              let text = "";
              for (let i = 0; i < o.n; i++) text += String.fromCharCode(97 + (seq++ % 26));
              log.write(text);
            } else if (o.op === "rotate") log.rotate();
            else await readOnce(o.max);
          }
          while (await readOnce(7));
          // Split at the gaps: each piece is a contiguous piece of what was written, in order.
          const pieces = read.split("|");
          let from = startAt ?? 0;
          for (const piece of pieces) {
            if (piece === "") continue;
            const at = log.written.indexOf(piece, from);
            expect(at, `"${piece}" not found after ${from} in "${log.written}"`).toBeGreaterThanOrEqual(0);
            if (pieces.length === 1) expect(at).toBe(startAt ?? 0);
            from = at + piece.length;
          }
          // Without a gap everything from where the reader started was read; the end is always reached.
          if (gaps === 0) expect(read).toBe(log.written.slice(startAt));
          // Caught up: what the files hold at the end is the end of what was read.
          expect(read.endsWith(log.written.slice(log.discarded))).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe("logEndCursor and readLogFrom: what was written since a moment", () => {
  const since = async (path: string, mark: LogCursor | null, maxBytes = 1000) =>
    (await readLogFrom(path, mark, maxBytes)).data.toString();

  it("sees only what came after the mark, across rotations, in one read", async () => {
    const log = new RotatingLog(dir, 3);
    log.write("the previous run said this\n");
    const mark = await logEndCursor(log.path);
    expect(mark).not.toBeNull();
    expect(await since(log.path, mark)).toBe("");
    log.write("first\n");
    expect(await since(log.path, mark)).toBe("first\n");
    // The marked file is console.log.1, then console.log.2: its rest comes first, then the newer files.
    log.rotate();
    log.write("second\n");
    log.rotate();
    log.write("third");
    expect(await readLogFrom(log.path, mark, 1000)).toMatchObject({ gap: null });
    expect(await since(log.path, mark)).toBe("first\nsecond\nthird");
    // At most maxBytes, whatever the number of files they span; the cursor continues there.
    const part = await readLogFrom(log.path, mark, 9);
    expect(part.data.toString()).toBe("first\nsec");
    expect(await since(log.path, part.cursor)).toBe("ond\nthird");
  });

  it("a log with no file (or no directory) at the mark is all new", async () => {
    expect(await logEndCursor(join(dir, "nope", "console.log"))).toBeNull();
    expect(await readLogFrom(join(dir, "nope", "console.log"), null, 100)).toEqual({
      data: Buffer.alloc(0),
      cursor: null,
      gap: null,
    });
    const log = new RotatingLog(join(dir, "later"), 2);
    const mark = await logEndCursor(log.path);
    expect(mark).toBeNull();
    log.write("hello\n");
    log.rotate();
    log.write("world\n");
    expect(await since(log.path, mark)).toBe("hello\nworld\n");
  });

  it("output rotated away after the mark is a gap, and what is still there follows", async () => {
    const log = new RotatingLog(dir, 2);
    log.write("old\n");
    const mark = await logEndCursor(log.path);
    log.write("lost\n");
    log.rotate();
    log.write("kept1\n");
    log.rotate();
    log.write("kept2\n");
    const span = await readLogFrom(log.path, mark, 1000);
    expect(span.gap).toMatch(/rotated past this reader/);
    expect(span.data.toString()).toBe("kept1\nkept2\n");
  });
});
