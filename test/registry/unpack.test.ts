// The unpacker's safety rules and the node-local pieces (references, locks, GC), without a registry.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import {
  chmod,
  lstat,
  mkdir,
  readFile,
  readdir,
  readlink,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SeedStore, acquireLock, parseReference, pullLimits, tryLock } from "@eve-tasks/registry";
import type { PullLimits, SeedRecord } from "@eve-tasks/registry";
import { tempDir } from "../harness/index.js";
import { OciLayout } from "../harness/registry-images.js";
import type { EntrySpec } from "../harness/registry-images.js";

/** Builds a one-image layout of `layers` and unpacks it; resolves with the store or the error. */
async function unpack(
  layersOf: (outside: string) => EntrySpec[][],
  limits: Partial<PullLimits> = {},
): Promise<{
  data: string;
  outside: string;
  result: Promise<SeedRecord>;
  /** The host dirs next to the root, and their metadata before the unpack started. */
  victims: string[];
  before: Record<string, number>[];
}> {
  const dir = await tempDir("unsafe-");
  const outside = join(dir, "outside");
  await mkdir(outside);
  await writeFile(join(outside, "victim"), "untouched\n");
  // Another host directory, with a subdirectory a layer's path could meet through a symlink.
  await mkdir(join(dir, "host", "d"), { recursive: true });
  const layout = new OciLayout(join(dir, "layout"));
  const image = await layout.image({ layers: layersOf(outside).map((entries) => ({ entries })) });
  await layout.tag(image, "t");
  const data = join(dir, "data");
  const s = new SeedStore({
    dataDir: data,
    durable: false,
    limits: pullLimits(limits),
    ociLayoutRoots: [dir],
  });
  const victims = [outside, join(dir, "host"), join(dir, "host", "d")];
  const before = await Promise.all(victims.map(metadataOf));
  const result = s.ensure(`oci:${layout.dir}:t`, { arch: "x86_64" });
  result.catch(() => undefined);
  return { data, outside, result, victims, before };
}

/** What a layer must never change about a host path. */
async function metadataOf(p: string): Promise<Record<string, number>> {
  const st = await lstat(p);
  return {
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    mtimeMs: st.mtimeMs,
    ctimeMs: st.ctimeMs,
    nlink: st.nlink,
  };
}

async function assertNothingEscaped(data: string, outside: string, refused = true): Promise<void> {
  expect((await readdir(outside)).sort()).toEqual(["victim"]);
  expect(await readFile(join(outside, "victim"), "utf8")).toBe("untouched\n");
  // No seed (and no staging dir) is left behind.
  if (refused) expect(await readdir(join(data, "seeds")).catch(() => [])).toEqual([]);
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
    const s = new SeedStore({ dataDir: join(dir, "data"), durable: false, ociLayoutRoots: [dir] });
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
      ociLayoutRoots: [dir],
      onWarning: (m) => warnings.push(m),
    });
    const seed = await s.ensure(`oci:${layout.dir}:t`, { arch: "x86_64" });
    expect(seed.skippedEntries).toBe(1);
    expect(warnings[0]).toMatch(/skipped fifo p/);
  });
});

describe("deferred directory metadata never reaches outside the root", () => {
  // A directory entry's mode, owner and times are applied after the layer's other entries. If
  // the layer replaced the directory (or a parent) with a symlink meanwhile, nothing outside
  // may change: not the mode (a setuid, world-writable host dir), the owner, or the times.
  const dirEntry = { type: "directory" as const, mode: 0o4777, uid: 1234, gid: 1234 };
  const cases: {
    name: string;
    layer: (outside: string) => EntrySpec[];
    check: (root: string) => Promise<void>;
  }[] = [
    {
      name: "d, then d → a symlink to an outside directory",
      layer: (out) => [
        { name: "d/", ...dirEntry },
        { name: "d", type: "symlink", linkname: out },
      ],
      check: async (root) => expect(await readlink(join(root, "d"))).toMatch(/outside$/),
    },
    {
      name: "d, then d → a hardlink to a symlink to an outside directory",
      layer: (out) => [
        { name: "s", type: "symlink", linkname: out },
        { name: "d/", ...dirEntry },
        { name: "d", type: "link", linkname: "s" },
      ],
      check: async (root) => expect((await lstat(join(root, "d"))).isSymbolicLink()).toBe(true),
    },
    {
      name: "p/d, then the parent p → a symlink to an outside directory that has a d",
      layer: (out) => [
        { name: "p/", type: "directory" },
        { name: "p/d/", ...dirEntry },
        { name: "p", type: "symlink", linkname: join(out, "..", "host") },
      ],
      check: async (root) => expect((await lstat(join(root, "p"))).isSymbolicLink()).toBe(true),
    },
    {
      name: "d, then d → a symlink outside, then an opaque marker in d",
      layer: (out) => [
        { name: "d/", ...dirEntry },
        { name: "d", type: "symlink", linkname: out },
        { name: "d/.wh..wh..opq", content: "" },
      ],
      check: async (root) => expect((await lstat(join(root, "d"))).isSymbolicLink()).toBe(true),
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const { data, outside, result, victims, before } = await unpack((out) => [c.layer(out)]);
      const seed = await result.catch((err: unknown) => err as Error);
      expect(await Promise.all(victims.map(metadataOf))).toEqual(before);
      expect(((await stat(outside)).mode & 0o7777).toString(8)).toBe("755");
      await assertNothingEscaped(data, outside, seed instanceof Error);
      if (!(seed instanceof Error)) await c.check(seed.rootfsPath);
    });
  }

  it("drops a record whose directory the layer replaced by a new one at the same path", async () => {
    const { result } = await unpack(() => [
      [
        { name: "x/", type: "directory" },
        { name: "x/y/", type: "directory", mode: 0o700 },
        { name: "x", type: "symlink", linkname: "elsewhere" },
        { name: "x/", type: "directory" },
        // y comes back, made implicitly (0755) as the parent of z: the 0700 was the old y's.
        { name: "x/y/z", content: "z" },
      ],
    ]);
    const seed = await result;
    expect((await stat(join(seed.rootfsPath, "x/y"))).mode & 0o7777).toBe(0o755);
    expect(await readFile(join(seed.rootfsPath, "x/y/z"), "utf8")).toBe("z");
  });

  it("applies a directory's metadata once its entries are written, a later entry winning", async () => {
    const { result } = await unpack(() => [
      [
        { name: "ro/", type: "directory", mode: 0o555, uid: 7, gid: 8 },
        { name: "ro/f", content: "f" },
        { name: "ro/", type: "directory", mode: 0o511, uid: 9, gid: 10 },
      ],
    ]);
    const seed = await result;
    const st = await stat(join(seed.rootfsPath, "ro"));
    expect([st.mode & 0o7777, st.uid, st.gid, st.mtimeMs]).toEqual([
      0o511,
      9,
      10,
      new Date("2024-01-01T00:00:00Z").getTime(),
    ]);
  });
});

describe("caps", () => {
  const entries = (n: number): EntrySpec[] =>
    Array.from({ length: n }, (_, i) => ({ name: `f${i}`, content: "x" }));

  it("refuses a layer with more entries than EVE_REGISTRY_MAX_LAYER_ENTRIES, writing nothing", async () => {
    const { data, outside, result } = await unpack(() => [entries(6)], { maxLayerEntries: 5 });
    await expect(result).rejects.toThrow(
      /^layer sha256:[0-9a-f]{64} has more than 5 entries, over the limit of 5 \(EVE_REGISTRY_MAX_LAYER_ENTRIES\)$/,
    );
    await assertNothingEscaped(data, outside);
    const { result: ok } = await unpack(() => [entries(5)], { maxLayerEntries: 5 });
    expect((await readdir((await ok).rootfsPath)).length).toBe(5);
  });

  it("refuses an image with more layers than EVE_REGISTRY_MAX_LAYERS before fetching any", async () => {
    const { data, outside, result } = await unpack(() => [entries(1), entries(2)], { maxLayers: 1 });
    await expect(result).rejects.toThrow(
      /^image oci:\/.*:t has 2 layers, over the limit of 1 \(EVE_REGISTRY_MAX_LAYERS\)$/,
    );
    await assertNothingEscaped(data, outside);
  });

  it("refuses an image whose layers add up to more than EVE_REGISTRY_MAX_IMAGE_UNPACKED_BYTES", async () => {
    const big = (name: string): EntrySpec[] => [{ name, content: Buffer.alloc(3000, 1) }];
    const { data, outside, result } = await unpack(() => [big("a"), big("b")], {
      maxImageUnpackedBytes: 8000,
    });
    await expect(result).rejects.toThrow(
      /^the image's uncompressed layers \(with layer sha256:[0-9a-f]{64}\) is too large: \d+ bytes, over the limit of 8000 bytes \(EVE_REGISTRY_MAX_IMAGE_UNPACKED_BYTES\)$/,
    );
    await assertNothingEscaped(data, outside);
  });
});

describe("oci:<dir> layouts are host paths like any other", () => {
  const SECRET = "SECRET-do-not-echo-4242";

  /** A data dir, an allowed layout root, a layout inside it, and a secret outside. */
  async function setup(): Promise<{
    dir: string;
    roots: string;
    layout: OciLayout;
    secret: string;
    store: SeedStore;
  }> {
    const dir = await tempDir("layout-");
    const roots = join(dir, "volumes");
    const layout = new OciLayout(join(roots, "app"));
    await layout.tag(await layout.image({ layers: [{ entries: [{ name: "f", content: "x" }] }] }), "t");
    const secret = join(dir, "secret");
    await writeFile(secret, `${SECRET}\n`);
    const store = new SeedStore({ dataDir: join(dir, "data"), durable: false, ociLayoutRoots: [roots] });
    return { dir, roots, layout, secret, store };
  }

  it("reads a layout under an allowed root, and refuses one elsewhere or reached through a symlink", async () => {
    const { dir, roots, layout, store } = await setup();
    expect((await store.ensure(`oci:${layout.dir}:t`, { arch: "x86_64" })).digest).toMatch(/^sha256:/);
    const elsewhere = new OciLayout(join(dir, "elsewhere"));
    await elsewhere.tag(await elsewhere.image({ layers: [{ entries: [{ name: "g", content: "y" }] }] }), "t");
    await expect(store.ensure(`oci:${elsewhere.dir}:t`, { arch: "x86_64" })).rejects.toThrow(
      `refused oci:${elsewhere.dir}:t: ${elsewhere.dir} is outside the allowed directories; OCI layouts are read only from EVE_OCI_LAYOUT_ROOTS (${roots})`,
    );
    await symlink(elsewhere.dir, join(roots, "link"));
    await expect(store.ensure(`oci:${join(roots, "link")}:t`, { arch: "x86_64" })).rejects.toThrow(
      `${join(roots, "link")} is outside the allowed directories (it resolves to ${elsewhere.dir})`,
    );
  });

  it("never follows a symlinked index.json or blob out of the layout, nor quotes what it read", async () => {
    const { layout, secret, store } = await setup();
    const index = join(layout.dir, "index.json");
    const real = await readFile(index);
    await rm(index);
    await symlink(secret, index);
    const viaIndex = await store
      .ensure(`oci:${layout.dir}:t`, { arch: "x86_64" })
      .catch((e: unknown) => e as Error);
    expect(viaIndex).toBeInstanceOf(Error);
    expect((viaIndex as Error).message).toBe(
      `invalid OCI layout ${layout.dir}: index.json is not a regular file in the layout (symlinks are not followed)`,
    );
    // A manifest blob that is a symlink to the secret.
    await rm(index);
    await writeFile(index, real);
    const manifest =
      (JSON.parse(real.toString()) as { manifests: { digest: string }[] }).manifests[0]?.digest ?? "";
    const blob = join(layout.dir, "blobs", "sha256", manifest.slice(7));
    await rm(blob);
    await symlink(secret, blob);
    await expect(store.ensure(`oci:${layout.dir}:t`, { arch: "x86_64" })).rejects.toThrow(
      `blobs/sha256/${manifest.slice(7)} is not a regular file in the layout (symlinks are not followed)`,
    );
    // A regular index.json that is no JSON: the error says where, not what.
    await rm(index);
    await writeFile(index, `${SECRET}\n`);
    const bad = await store
      .ensure(`oci:${layout.dir}:t`, { arch: "x86_64" })
      .catch((e: unknown) => e as Error);
    expect((bad as Error).message).toBe(`invalid OCI layout index ${index}: not valid JSON`);
    expect((bad as Error).message).not.toContain(SECRET);
  });
});

describe("seeds are for root only", () => {
  it("keeps seeds and content 0700, so no other user reaches an image's set-uid files", async () => {
    const dir = await tempDir("modes-");
    const layout = new OciLayout(join(dir, "layout"));
    const image = await layout.image({
      layers: [{ entries: [{ name: "bin/suid", content: "#!/bin/sh\n", mode: 0o4755 }] }],
    });
    await layout.tag(image, "t");
    // A data dir any user can traverse, with a seeds dir an older version left 0755.
    const data = join(dir, "data");
    await mkdir(join(data, "seeds"), { recursive: true, mode: 0o755 });
    await chmod(join(data, "seeds"), 0o755);
    for (const d of [dir, data]) await chmod(d, 0o755);
    const seed = await new SeedStore({ dataDir: data, durable: false, ociLayoutRoots: [dir] }).ensure(
      `oci:${layout.dir}:t`,
      { arch: "x86_64" },
    );
    const suid = join(seed.rootfsPath, "bin/suid");
    expect((await stat(suid)).mode & 0o7777).toBe(0o4755);
    const asNobody = (p: string) =>
      spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--", "test", "-e", p])
        .status;
    expect(asNobody(data)).toBe(0);
    expect(asNobody(suid)).not.toBe(0);
    expect(asNobody(join(data, "content/blobs"))).not.toBe(0);
    expect(spawnSync("test", ["-e", suid]).status).toBe(0);
    expect((await stat(join(data, "seeds"))).mode & 0o777).toBe(0o700);
    expect((await stat(join(data, "content"))).mode & 0o777).toBe(0o700);
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
    const s = new SeedStore({ dataDir: join(dir, "data"), durable: false, ociLayoutRoots: [dir] });
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
