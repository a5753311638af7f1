// The unpacker's safety rules and the node-local pieces (references, locks, GC), without a registry.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SeedStore, acquireLock, parseReference, tryLock } from "@eve-tasks/registry";
import { tempDir } from "../harness/index.js";
import { OciLayout } from "../harness/registry-images.js";
import type { EntrySpec } from "../harness/registry-images.js";

/** Builds a one-image layout of `layers` and unpacks it; resolves with the store or the error. */
async function unpack(
  layersOf: (outside: string) => EntrySpec[][],
): Promise<{ data: string; outside: string; result: Promise<unknown> }> {
  const dir = await tempDir("unsafe-");
  const outside = join(dir, "outside");
  await mkdir(outside);
  await writeFile(join(outside, "victim"), "untouched\n");
  const layout = new OciLayout(join(dir, "layout"));
  const image = await layout.image({ layers: layersOf(outside).map((entries) => ({ entries })) });
  await layout.tag(image, "t");
  const data = join(dir, "data");
  const s = new SeedStore({ dataDir: data, durable: false });
  const result = s.ensure(`oci:${layout.dir}:t`, { arch: "x86_64" });
  result.catch(() => undefined);
  return { data, outside, result };
}

async function assertNothingEscaped(data: string, outside: string): Promise<void> {
  expect((await readdir(outside)).sort()).toEqual(["victim"]);
  expect(await readFile(join(outside, "victim"), "utf8")).toBe("untouched\n");
  // No seed (and no staging dir) is left behind.
  expect(await readdir(join(data, "seeds")).catch(() => [])).toEqual([]);
}

describe("unsafe layers are refused, nothing written outside the root", () => {
  it("refuses ../ in a path", async () => {
    const { data, outside, result } = await unpack((_out) => [
      [{ name: "a/../../outside/victim", content: "pwned" }],
    ]);
    await expect(result).rejects.toThrow(
      /refused layer sha256:[0-9a-f]{64}: entry "a\/..\/..\/outside\/victim" has ".." in its path/,
    );
    await assertNothingEscaped(data, outside);
  });

  it("refuses an absolute path", async () => {
    const { data, outside, result } = await unpack((_out) => [[{ name: "/etc/passwd", content: "pwned" }]]);
    await expect(result).rejects.toThrow('entry "/etc/passwd" has an absolute path');
    await assertNothingEscaped(data, outside);
  });

  it("refuses writing through a symlink that leads outside, in the same layer", async () => {
    const { data, outside, result } = await unpack((out) => [
      [
        { name: "evil", type: "symlink", linkname: "../../../../../../../../../../../../.." + out },
        { name: "evil/victim", content: "pwned" },
      ],
    ]);
    await expect(result).rejects.toThrow(
      'entry "evil/victim" would be written through a symlink that points outside the root filesystem',
    );
    await assertNothingEscaped(data, outside);
  });

  it("refuses writing through a symlink extracted by a lower layer", async () => {
    const { data, outside, result } = await unpack((out) => [
      [{ name: "lib", type: "symlink", linkname: "../../../../../../../../../../.." + out }],
      [{ name: "lib/new-file", content: "pwned" }],
    ]);
    await expect(result).rejects.toThrow(
      'entry "lib/new-file" would be written through a symlink that points outside the root filesystem',
    );
    await assertNothingEscaped(data, outside);
  });

  it("follows an absolute symlink inside the root (like containerd), never to the host's path", async () => {
    const { data, outside, result } = await unpack((out) => [
      [
        { name: "usr/lib/", type: "directory" },
        { name: "lib", type: "symlink", linkname: out },
      ],
      [{ name: "lib/victim", content: "inside" }],
    ]);
    const seed = (await result) as { rootfsPath: string };
    expect(await readFile(join(seed.rootfsPath, outside, "victim"), "utf8")).toBe("inside");
    expect(await readFile(join(outside, "victim"), "utf8")).toBe("untouched\n");
    expect(existsSync(join(data, "seeds"))).toBe(true);
  });

  it("refuses a hardlink to a path outside", async () => {
    const { data, outside, result } = await unpack((_out) => [
      [{ name: "h", type: "link", linkname: "../outside/victim" }],
    ]);
    await expect(result).rejects.toThrow('entry "../outside/victim" has ".." in its hardlink target');
    await assertNothingEscaped(data, outside);
  });

  it("rejects a layer whose diff_id does not match the config", async () => {
    const dir = await tempDir("diff-");
    const layout = new OciLayout(join(dir, "layout"));
    const image = await layout.image({
      layers: [{ entries: [{ name: "f", content: "x" }] }],
      wrongDiffIds: true,
    });
    await layout.tag(image, "t");
    const s = new SeedStore({ dataDir: join(dir, "data"), durable: false });
    await expect(s.ensure(`oci:${layout.dir}:t`, { arch: "x86_64" })).rejects.toThrow(
      /digest mismatch for uncompressed layer sha256:[0-9a-f]{64} \(config rootfs.diff_ids\)/,
    );
    expect((await readdir(join(dir, "data/seeds"))).length).toBe(0);
  });

  it("skips FIFOs with a warning", async () => {
    const dir = await tempDir("fifo-");
    const layout = new OciLayout(join(dir, "layout"));
    const image = await layout.image({
      layers: [
        {
          entries: [
            { name: "p", type: "fifo" },
            { name: "f", content: "x" },
          ],
        },
      ],
    });
    await layout.tag(image, "t");
    const warnings: string[] = [];
    const s = new SeedStore({
      dataDir: join(dir, "data"),
      durable: false,
      onWarning: (m) => warnings.push(m),
    });
    const seed = await s.ensure(`oci:${layout.dir}:t`, { arch: "x86_64" });
    expect(seed.skippedEntries).toBe(1);
    expect(warnings[0]).toMatch(/skipped fifo p/);
  });
});

describe("references", () => {
  it("parses registry references with Docker Hub defaults, and OCI layouts", () => {
    expect(parseReference("busybox")).toMatchObject({
      host: "docker.io",
      apiHost: "registry-1.docker.io",
      repository: "library/busybox",
      tag: "latest",
    });
    const d = `sha256:${"a".repeat(64)}`;
    expect(parseReference(`127.0.0.1:5000/a/b:v1@${d}`)).toMatchObject({
      host: "127.0.0.1:5000",
      repository: "a/b",
      tag: "v1",
      digest: d,
    });
    expect(parseReference(`localhost/x@${d}`)).toMatchObject({
      host: "localhost",
      tag: undefined,
      digest: d,
    });
    expect(parseReference("oci:/var/lib/tools:default")).toMatchObject({
      kind: "oci-layout",
      dir: "/var/lib/tools",
      tag: "default",
    });
    expect(() => parseReference("a@sha256:xyz")).toThrow('invalid image reference "a@sha256:xyz"');
    expect(() => parseReference("host:5000/app:bad:tag")).toThrow("invalid image reference");
  });
});

describe("pull locks", () => {
  it("excludes a second holder and takes over a lock whose holder died", async () => {
    const dir = await tempDir("lock-");
    const file = join(dir, "x.lock");
    const held = await tryLock(file);
    expect(held).toBeDefined();
    expect(await tryLock(file)).toBeUndefined();
    await expect(acquireLock(file, { timeoutMs: 200, pollMs: 20 })).rejects.toThrow(
      `lock ${file} still held by PID ${process.pid}`,
    );
    await held?.release();
    // A PID that has exited: the lock is stale.
    const dead = spawnSync("true").pid;
    await writeFile(file, `${dead}\n`);
    const taken = await acquireLock(file, { timeoutMs: 1000 });
    expect(await readFile(file, "utf8")).toBe(`${process.pid}\n`);
    await taken.release();
    expect(existsSync(file)).toBe(false);
  });
});

describe("garbage collection", () => {
  it("removes seeds not kept and the blobs only they used", async () => {
    const dir = await tempDir("gc-");
    const layout = new OciLayout(join(dir, "layout"));
    const shared = { name: "shared", content: "s" };
    const a = await layout.image({
      layers: [{ entries: [shared] }, { entries: [{ name: "a", content: "a" }] }],
    });
    const b = await layout.image({
      layers: [{ entries: [shared] }, { entries: [{ name: "b", content: "b" }] }],
    });
    await layout.tag(a, "a");
    await layout.tag(b, "b");
    const s = new SeedStore({ dataDir: join(dir, "data"), durable: false });
    const sa = await s.ensure(`oci:${layout.dir}:a`, { arch: "x86_64" });
    const sb = await s.ensure(`oci:${layout.dir}:b`, { arch: "x86_64" });
    const before = new Set((await s.content.list()).map((x) => x.digest));
    const r = await s.gc(new Set([sb.digest]), { graceMs: 0 });
    expect(r.seedsRemoved).toEqual([sa.digest]);
    const after = new Set((await s.content.list()).map((x) => x.digest));
    for (const d of [sb.digest, sb.configDigest, ...sb.layerDigests]) expect(after.has(d)).toBe(true);
    expect(after.has(sa.digest)).toBe(false);
    expect(after.has(sa.layerDigests[1] ?? "")).toBe(false);
    expect(after.has(sa.layerDigests[0] ?? "")).toBe(true); // shared with b
    expect(before.size - after.size).toBe(3);
    expect(existsSync(sa.rootfsPath)).toBe(false);
    expect(existsSync(sb.rootfsPath)).toBe(true);
  });
});
