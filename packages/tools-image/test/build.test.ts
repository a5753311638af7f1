// The built-in `default` runtime image, built from this host's qemu-system-x86 and busybox-static
// into a temp dir: index → manifest → config → layer verify by digest, the diff_id matches, the
// config carries the runtime contract's labels and the loader as its Entrypoint, a second build
// reuses the layout with the same digests; pulled and unpacked by packages/registry as the seed
// fetcher does (the seed keeps the labels), its qemu runs chrooted into the unpacked root under
// TCG (libraries, TCG module, SeaBIOS); an image without the module directory fails at start,
// saying so. (The jvm and emulators images are built the same way; their tests run them as tasks:
// test/runtimes.test.ts.)
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, readFile, readdir, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import tar from "tar-stream";
import { beforeAll, describe, expect, it } from "vitest";
import { SeedStore } from "@eve-tasks/registry";
import type { SeedRecord } from "@eve-tasks/registry";
import { RUNTIME_LABELS, readRuntimeLabels } from "@eve-tasks/schemas";
import {
  BUSYBOX_PATH,
  LABELS,
  LOADER_PATH,
  MEDIA_TYPES,
  QEMU_TAX,
  REF_NAME_ANNOTATION,
  buildToolsImage,
  debianPackageVersion,
  loaderText,
} from "@eve-tasks/tools-image";
import type { ToolsImage } from "@eve-tasks/tools-image";
import { tempDir } from "../../../test/harness/index.js";

const QEMU = "/usr/bin/qemu-system-x86_64";
const CHROOT = "/usr/sbin/chroot";
const isRoot = process.getuid?.() === 0;

let outDir: string;
let image: ToolsImage;
let seeds: SeedStore;
let seed: SeedRecord;
let coldMs: number;
let broken: ToolsImage;
let brokenDir: string;

const sha256 = (b: Uint8Array): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const blob = (dir: string, digest: string): string => path.join(dir, "blobs", "sha256", digest.slice(7));

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string };
}

/** Reads blob `d` of layout `dir`, checking its size and digest. */
async function verifiedBlob(dir: string, d: Descriptor): Promise<Buffer> {
  const bytes = await readFile(blob(dir, d.digest));
  expect(bytes.length).toBe(d.size);
  expect(sha256(bytes)).toBe(d.digest);
  return bytes;
}

/** The tar headers of a gzip layer, in order, and the uncompressed digest. */
async function readLayer(file: string): Promise<{ headers: tar.Header[]; diffId: string }> {
  const hash = createHash("sha256");
  const headers: tar.Header[] = [];
  const extract = tar.extract();
  const gunzip = createGunzip();
  gunzip.on("data", (c: Buffer) => hash.update(c));
  const feeding = pipeline(createReadStream(file), gunzip, extract);
  for await (const entry of extract) {
    headers.push(entry.header);
    entry.resume();
  }
  await feeding;
  return { headers, diffId: `sha256:${hash.digest("hex")}` };
}

/** Follows symlinks inside the image to what `name` finally is; undefined if it dangles. */
function resolveInImage(byName: Map<string, tar.Header>, name: string): tar.Header | undefined {
  const queue = name.split("/").filter((p) => p !== "");
  const cur: string[] = [];
  let last: tar.Header | undefined;
  for (let hops = 0; queue.length > 0 && hops < 100; hops++) {
    const c = queue.shift() as string;
    if (c === ".") continue;
    if (c === "..") {
      cur.pop();
      continue;
    }
    last = byName.get([...cur, c].join("/"));
    if (last === undefined) return undefined;
    if (last.type === "symlink") {
      const target = last.linkname ?? "";
      if (target.startsWith("/")) cur.length = 0;
      queue.unshift(...target.split("/").filter((p) => p !== ""));
      continue;
    }
    cur.push(c);
  }
  return queue.length === 0 ? last : undefined;
}

/**
 * Runs the unpacked qemu chrooted into `rootfs` under TCG, paused, with QMP on stdio: sends
 * qmp_capabilities then quit once qemu greets. Kills exactly the PID it started on a timeout.
 */
function runChrooted(
  rootfs: string,
  timeoutMs = 15_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(
    CHROOT,
    [
      rootfs,
      QEMU,
      "-accel",
      "tcg",
      "-machine",
      "pc",
      "-nodefaults",
      "-no-user-config",
      "-display",
      "none",
      "-S",
      "-qmp",
      "stdio",
    ],
    { stdio: ["pipe", "pipe", "pipe"], env: { PATH: "/usr/bin:/bin" } },
  );
  let stdout = "";
  let stderr = "";
  let greeted = false;
  child.stdout.on("data", (c: Buffer) => {
    stdout += c.toString();
    if (!greeted && stdout.includes('"QMP"')) {
      greeted = true;
      child.stdin.write('{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n');
    }
  });
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  child.stdin.on("error", () => undefined); // qemu may exit before reading (the failure path)
  const timer = setTimeout(() => {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid, "SIGKILL");
    }
  }, timeoutMs);
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  const dir = await tempDir("ti-");
  outDir = path.join(dir, "tools-images", "default");
  const t = Date.now();
  image = await buildToolsImage({ outDir });
  coldMs = Date.now() - t;
  // The test's layouts live in temp dirs: oci: refs must be under an allowed root.
  seeds = new SeedStore({ dataDir: path.join(dir, "data"), durable: false, ociLayoutRoots: [tmpdir()] });
});

describe("buildToolsImage", () => {
  it("writes an OCI layout whose index, manifest, config and layer all verify", async () => {
    const version = await debianPackageVersion();
    const tag = image.tag;
    expect(tag).toMatch(/^qemu-[A-Za-z0-9_.-]+-[0-9a-f]{12}$/);
    expect(tag).toContain(version.replace(/^\d+:/, "").replace(/[^A-Za-z0-9_.-]/g, "-"));
    expect(image).toMatchObject({
      name: "default",
      built: true,
      qemuVersion: version,
      packages: {
        "qemu-system-x86": version,
        "busybox-static": await debianPackageVersion("busybox-static"),
      },
      outDir,
      layoutDir: path.join(outDir, tag),
      ref: `oci:${path.join(outDir, tag)}:${tag}`,
    });
    const dir = image.layoutDir;
    expect(JSON.parse(await readFile(path.join(dir, "oci-layout"), "utf8"))).toEqual({
      imageLayoutVersion: "1.0.0",
    });
    const index = JSON.parse(await readFile(path.join(dir, "index.json"), "utf8")) as {
      schemaVersion: number;
      mediaType: string;
      manifests: Descriptor[];
    };
    expect(index).toMatchObject({ schemaVersion: 2, mediaType: MEDIA_TYPES.index });
    expect(index.manifests).toHaveLength(1);
    const top = index.manifests[0] as Descriptor;
    expect(top).toMatchObject({
      mediaType: MEDIA_TYPES.manifest,
      digest: image.manifestDigest,
      annotations: { [REF_NAME_ANNOTATION]: tag },
      platform: { architecture: "amd64", os: "linux" },
    });

    const manifest = JSON.parse((await verifiedBlob(dir, top)).toString()) as {
      schemaVersion: number;
      mediaType: string;
      config: Descriptor;
      layers: Descriptor[];
    };
    expect(manifest).toMatchObject({ schemaVersion: 2, mediaType: MEDIA_TYPES.manifest });
    expect(manifest.config).toMatchObject({ mediaType: MEDIA_TYPES.config, digest: image.configDigest });
    expect(manifest.layers).toHaveLength(1);
    const layer = manifest.layers[0] as Descriptor;
    expect(layer).toMatchObject({ mediaType: MEDIA_TYPES.layer, digest: image.layerDigest });

    const config = JSON.parse((await verifiedBlob(dir, manifest.config)).toString()) as {
      architecture: string;
      os: string;
      config: { Entrypoint: string[]; Env: string[]; Labels: Record<string, string> };
      rootfs: { type: string; diff_ids: string[] };
    };
    expect(config).toMatchObject({
      architecture: "amd64",
      os: "linux",
      config: {
        Entrypoint: [LOADER_PATH],
        Labels: {
          [RUNTIME_LABELS.runtime]: "1",
          [RUNTIME_LABELS.stop]: "qmp",
          [RUNTIME_LABELS.devices]: '["kvm","tun"]',
          [LABELS.builtIn]: "default",
          [LABELS.builtInInputs]: image.inputs,
          [LABELS.hypervisor]: "qemu",
          [LABELS.qemuVersion]: version,
        },
      },
      rootfs: { type: "layers", diff_ids: [image.diffId] },
    });
    // The labels say what the contract says, as every reader reads them.
    expect(readRuntimeLabels(config.config.Labels, null)).toMatchObject({
      ok: true,
      facts: { stop: { method: "qmp" }, tax: QEMU_TAX, devices: ["kvm", "tun"] },
    });
    expect(config.config.Env.some((e) => /^PATH=.*(^|:|=)\/usr\/bin(:|$)/.test(e))).toBe(true);

    // The layer: its digest and size, then its uncompressed digest is the config's diff_id.
    expect((await lstat(blob(dir, layer.digest))).size).toBe(layer.size);
    const hash = createHash("sha256");
    await pipeline(createReadStream(blob(dir, layer.digest)), hash);
    expect(`sha256:${hash.digest("hex")}`).toBe(layer.digest);
    const { headers, diffId } = await readLayer(blob(dir, layer.digest));
    expect(diffId).toBe(image.diffId);

    // Reproducible entries: sorted, epoch mtime, root-owned; links and their targets both there.
    const names = headers.map((h) => h.name.replace(/\/$/, ""));
    expect(names).toEqual([...names].sort());
    expect(new Set(names).size).toBe(names.length);
    for (const h of headers) {
      expect(h.mtime?.getTime()).toBe(0);
      expect([h.uid, h.gid]).toEqual([0, 0]);
    }
    const byName = new Map(headers.map((h) => [h.name.replace(/\/$/, ""), h]));
    expect(byName.get("usr/bin/qemu-system-x86_64")).toMatchObject({ type: "file", mode: 0o755 });
    expect(byName.get("lib64")).toMatchObject({ type: "symlink", linkname: "usr/lib64" });
    expect(byName.get("usr/lib64/ld-linux-x86-64.so.2")?.type).toBe("symlink");
    expect(byName.get("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")?.type).toBe("file");
    expect(byName.get("usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so")?.type).toBe("file");
    expect(byName.get("usr/share/seabios/bios-256k.bin")?.type).toBe("file");
    expect(byName.get("usr/share/qemu")?.type).toBe("directory");
    // The loader and its shell, a static busybox.
    expect(byName.get(LOADER_PATH.slice(1))).toMatchObject({ type: "file", mode: 0o755 });
    expect(byName.get(BUSYBOX_PATH.slice(1))).toMatchObject({ type: "file", mode: 0o755 });
    expect(byName.get("eve/bin/sh")).toMatchObject({ type: "symlink", linkname: "busybox" });
    for (const h of headers.filter((x) => x.type === "symlink")) {
      expect(resolveInImage(byName, h.name), `${h.name} -> ${h.linkname}`).toBeDefined();
    }
    expect(image.unpackedSize).toBeGreaterThan(50e6);
    expect(image.files).toBe(headers.filter((h) => h.type === "file").length);
  });

  it("reuses an intact layout made from the same inputs, with the same digests", async () => {
    const t = Date.now();
    const again = await buildToolsImage({ outDir });
    const cachedMs = Date.now() - t;
    expect(again).toEqual({ ...image, built: false, warnings: [] });
    expect(await readdir(outDir)).toEqual([image.tag]);
    console.log(
      `tools image: cold build ${coldMs} ms, cached ${cachedMs} ms; layer ${image.layerSize} bytes ` +
        `compressed, ${image.unpackedSize} bytes uncompressed, ${image.files} files`,
    );
  });

  it("leaves no temp dir when a build is aborted", async () => {
    const dir = await tempDir("ti-abort-");
    const controller = new AbortController();
    const aborted = buildToolsImage({
      outDir: dir,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.phase === "writing" && p.files >= 1) controller.abort();
      },
    });
    const err = await aborted.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as Error | undefined)?.name).toBe("AbortError");
    expect(await readdir(dir)).toEqual([]);
  });
});

describe("the image pulled and unpacked as the seed fetcher does", () => {
  beforeAll(async () => {
    brokenDir = await tempDir("ti-nomod-");
    seed = await seeds.ensure(image.ref);
  });

  it("is a seed with the loader as its process, and the runtime's labels", async () => {
    expect(seed).toMatchObject({
      ref: image.ref,
      digest: image.manifestDigest,
      platform: "linux/amd64",
      process: { args: [LOADER_PATH] },
      labels: { [RUNTIME_LABELS.runtime]: "1", [RUNTIME_LABELS.stop]: "qmp" },
      stopSignal: null,
    });
    expect(await readFile(path.join(seed.rootfsPath, LOADER_PATH), "utf8")).toBe(await loaderText("default"));
  });

  it.skipIf(!isRoot)("runs qemu chrooted into the unpacked root under TCG, and quits on QMP", async () => {
    const r = await runChrooted(seed.rootfsPath);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain('"QMP"');
    expect(r.stdout).toContain('"event": "SHUTDOWN"');
    expect(r.code).toBe(0);
  });

  it.skipIf(!isRoot)("without the module directory, qemu fails at start for want of TCG", async () => {
    broken = await buildToolsImage({ outDir: brokenDir, moduleDir: null, compressionLevel: 1 });
    expect(broken.layerDigest).not.toBe(image.layerDigest);
    const brokenSeed = await seeds.ensure(broken.ref);
    await expect(lstat(path.join(brokenSeed.rootfsPath, "usr/lib/x86_64-linux-gnu/qemu"))).rejects.toThrow(
      /ENOENT/,
    );
    const r = await runChrooted(brokenSeed.rootfsPath);
    expect(r.stderr).toContain("could not load module for type 'tcg-accel-ops'");
    expect(r.code).not.toBe(0);
  });

  it.skipIf(!isRoot)("a layout that is not intact is rebuilt, to the same digests", async () => {
    expect(broken).toBeDefined();
    await truncate(blob(broken.layoutDir, broken.layerDigest), 1000);
    const rebuilt = await buildToolsImage({ outDir: brokenDir, moduleDir: null, compressionLevel: 1 });
    expect(rebuilt).toEqual({ ...broken, built: true });
    expect(await readdir(brokenDir)).toEqual([broken.tag]);
  });
});
