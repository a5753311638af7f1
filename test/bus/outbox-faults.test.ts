// The outbox under faults: a full disk (a real tmpfs filled to the last byte), compaction while
// running, and a worker killed between the steps of a compaction.
import { execFile } from "node:child_process";
import { mkdir, open, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { Outbox, connectBus, ensureEventsStream } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { deferCleanup, spawnReplicas, tempDir, withPrivateNats } from "../harness/index.js";
import { storedEvents } from "./helpers.js";

const run = promisify(execFile);
const UUID = "0b7e5f0e-5a43-4c3e-9d8a-2f5e8c1d7a11";
const crashEntry = fileURLToPath(new URL("../fixtures/outbox-crash.ts", import.meta.url));

function event(message: string) {
  return {
    schemaVersion: 1 as const,
    uuid: UUID,
    type: "started" as const,
    time: new Date().toISOString(),
    message,
    fields: {},
  };
}

async function busFor(url: string): Promise<Bus> {
  const bus = await connectBus({ servers: url, name: "outbox-faults-test" });
  deferCleanup(() => bus.close());
  await ensureEventsStream(bus);
  return bus;
}

/** Mounts a tmpfs of `sizeBytes` at a fresh directory, unmounted when the test ends. */
async function smallFilesystem(sizeBytes: number): Promise<string> {
  const dir = await tempDir("outbox-enospc-");
  const mnt = join(dir, "fs");
  await mkdir(mnt);
  await run("mount", ["-t", "tmpfs", "-o", `size=${sizeBytes},mode=0700`, "eve-test-outbox-enospc", mnt]);
  // Lazily if a file in it is still open (a failed test's outbox): it goes when that closes.
  deferCleanup(() => run("umount", [mnt]).catch(() => run("umount", ["--lazy", mnt])));
  return mnt;
}

/** Fills the file system holding `dir` to the last byte; returns the filler file. */
async function fill(dir: string): Promise<string> {
  const path = join(dir, "filler");
  const fh = await open(path, "a");
  const chunk = Buffer.alloc(1024, 0x61);
  try {
    for (;;) await fh.write(chunk);
  } catch (err) {
    expect((err as NodeJS.ErrnoException).code).toBe("ENOSPC");
  } finally {
    await fh.close();
  }
  return path;
}

/** Every record of an outbox file parses on its own (no torn or glued lines). */
async function records(file: string): Promise<{ op: string; id: string }[]> {
  const text = await readFile(file, "utf8");
  return text
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as { op: string; id: string });
}

describe("the outbox under faults", () => {
  it("refuses an event it could not write (ENOSPC) and goes on once there is space again", async () => {
    const nats = await withPrivateNats();
    const bus = await busFor(nats.url);
    const mnt = await smallFilesystem(64 * 1024);
    const file = join(mnt, "outbox.jsonl");
    const outbox = await Outbox.open(bus, { file });
    deferCleanup(() => outbox.close());

    await outbox.emit(event("before"), "before");
    await outbox.flushed();

    const filler = await fill(mnt);
    // Bigger than a page: part of it fits in the file's last page, the rest does not.
    await expect(outbox.emit(event(`too-big ${"x".repeat(6000)}`), "too-big")).rejects.toThrow(/ENOSPC/);
    // The file holds whole records only: the torn tail of the refused one is gone.
    expect((await records(file)).map((r) => r.id)).not.toContain("too-big");

    await rm(filler);
    await outbox.emit(event("after"), "after");
    await outbox.flushed();
    expect((await storedEvents(bus)).map((e) => e.id)).toEqual(["before", "after"]);
    expect((await records(file)).every((r) => r.op === "emit" || r.op === "ack")).toBe(true);

    // A restart finds nothing pending: nothing re-sent, nothing lost.
    await outbox.close();
    const again = await Outbox.open(bus, { file });
    deferCleanup(() => again.close());
    expect(again.pending).toBe(0);
  }, 60_000);

  it("opens on a full disk: keeps its file as it is, cuts a torn tail, and sends what is pending", async () => {
    const nats = await withPrivateNats();
    const bus = await busFor(nats.url);
    const mnt = await smallFilesystem(64 * 1024);
    const file = join(mnt, "outbox.jsonl");
    const line = (id: string) =>
      JSON.stringify({
        op: "emit",
        id,
        subject: `eve.events.${UUID}`,
        data: JSON.stringify(event(id)),
      }) + "\n";
    // A previous life: "a" acknowledged, "b" pending, and a record torn by a crash.
    await writeFile(
      file,
      line("a") + JSON.stringify({ op: "ack", id: "a" }) + "\n" + line("b") + '{"op":"em',
    );
    const filler = await fill(mnt);

    const outbox = await Outbox.open(bus, { file });
    deferCleanup(() => outbox.close());
    expect(outbox.pending).toBe(1);
    await outbox.flushed();
    await rm(filler);
    await outbox.emit(event("c"), "c");
    await outbox.flushed();
    expect((await storedEvents(bus)).map((e) => e.id)).toEqual(["b", "c"]);
    expect((await records(file)).map((r) => `${r.op} ${r.id}`)).toEqual([
      "emit a",
      "ack a",
      "emit b",
      "ack b",
      "emit c",
      "ack c",
    ]);
  }, 60_000);

  it("compacts its file while running, and every event is stored once", async () => {
    const nats = await withPrivateNats();
    const bus = await busFor(nats.url);
    const file = join(await tempDir("outbox-compact-"), "outbox.jsonl");
    const compactAtBytes = 8 * 1024;
    const outbox = await Outbox.open(bus, { file, compactAtBytes });
    deferCleanup(() => outbox.close());

    let largest = 0;
    for (let i = 0; i < 300; i++) {
      await outbox.emit(event(`e${i}`), `e${i}`);
      if (i % 10 === 9) await outbox.flushed();
      largest = Math.max(largest, (await stat(file)).size);
    }
    await outbox.flushed();
    // Without compaction the file would hold 300 emit and 300 ack records (~100 KiB).
    expect(largest).toBeLessThan(2 * compactAtBytes);
    const stored = await storedEvents(bus);
    expect(stored.map((e) => e.id)).toEqual(Array.from({ length: 300 }, (_, i) => `e${i}`));

    await outbox.close();
    const again = await Outbox.open(bus, { file, compactAtBytes });
    deferCleanup(() => again.close());
    expect(again.pending).toBe(0);
  }, 60_000);

  for (const step of ["tmp-written", "renamed"] as const) {
    it(`a worker killed during a compaction (after ${step}) loses and duplicates no event`, async () => {
      const nats = await withPrivateNats();
      const file = join(await tempDir("outbox-crash-"), "outbox.jsonl");
      const worker = spawnReplicas({
        entry: crashEntry,
        name: "outbox-crash",
        env: { NATS_URL: nats.url, OUTBOX_FILE: file, CRASH_AT: step, UUID },
      });
      deferCleanup(() => worker.stopAll());
      await worker.waitForLine((l) => l.json?.event === "phase1-done", 30_000);
      // NATS goes away: what the worker emits now stays in its outbox.
      await nats.stop();
      process.kill(worker.pids[0]!, "SIGUSR1");
      const at = await worker.waitForLine((l) => l.json?.event === "at-step", 30_000);
      expect(at.json).toMatchObject({ step, pending: 5 });
      await worker.kill(0, "SIGKILL");

      await nats.start();
      const bus = await busFor(nats.url);
      const outbox = await Outbox.open(bus, { file });
      deferCleanup(() => outbox.close());
      // Exactly the five events the worker could not send are pending; the acknowledged ten are not.
      expect(outbox.pending).toBe(5);
      await outbox.flushed();
      const stored = await storedEvents(bus);
      expect(stored.map((e) => e.id)).toEqual(Array.from({ length: 15 }, (_, i) => `id-e${i}`));
    }, 90_000);
  }
});
