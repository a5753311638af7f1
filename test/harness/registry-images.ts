// Test images built from real files with the project's own code: tar layers (tar-stream) in exact
// entry order (whiteouts, an opaque marker after its siblings, unsafe paths), compressed with gzip
// or zstd, written as an OCI image layout that skopeo can push to a registry.
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { createGzip, gzipSync } from "node:zlib";
import tar from "tar-stream";

const run = promisify(execFile);

/** One tar entry of a test layer. */
export type EntrySpec =
  | { name: string; type?: "file"; content: string | Buffer; mode?: number; uid?: number; gid?: number }
  | { name: string; type: "directory"; mode?: number; uid?: number; gid?: number }
  | { name: string; type: "symlink"; linkname: string }
  | { name: string; type: "link"; linkname: string }
  | { name: string; type: "fifo" };

/** A layer: entries in tar order, and its compression. */
export interface LayerSpec {
  entries: readonly EntrySpec[];
  compression?: "gzip" | "zstd" | "none";
}

/** The image config's process fields. */
export interface ProcessSpec {
  Entrypoint?: string[];
  Cmd?: string[];
  Env?: string[];
  WorkingDir?: string;
  User?: string;
  /** The image's labels (a runtime image's contract: `org.lfedge.eve-tasks.*`). */
  Labels?: Record<string, string>;
  StopSignal?: string;
}

/** A test image. */
export interface ImageSpec {
  layers: readonly LayerSpec[];
  config?: ProcessSpec;
  /** OCI architecture, default amd64. */
  architecture?: string;
  /** Lie in rootfs.diff_ids (to test the check). */
  wrongDiffIds?: boolean;
}

/** An OCI descriptor. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os: string; architecture: string; variant?: string };
  annotations?: Record<string, string>;
}

const sha256 = (b: Buffer): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;

/** The bytes of an uncompressed tar with `entries` in order. */
export async function tarOf(entries: readonly EntrySpec[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  const mtime = new Date("2024-01-01T00:00:00Z");
  for (const e of entries) {
    await new Promise<void>((ok, fail) => {
      const cb = (err?: Error | null): void => (err ? fail(err) : ok());
      switch (e.type) {
        case "directory":
          pack.entry(
            {
              name: e.name,
              type: "directory",
              mode: e.mode ?? 0o755,
              uid: e.uid ?? 0,
              gid: e.gid ?? 0,
              mtime,
            },
            cb,
          );
          return;
        case "symlink":
          pack.entry({ name: e.name, type: "symlink", linkname: e.linkname, mode: 0o777, mtime }, cb);
          return;
        case "link":
          pack.entry({ name: e.name, type: "link", linkname: e.linkname, mode: 0o644, mtime }, cb);
          return;
        case "fifo":
          pack.entry({ name: e.name, type: "fifo", mode: 0o644, mtime }, cb);
          return;
        default:
          pack.entry(
            { name: e.name, type: "file", mode: e.mode ?? 0o644, uid: e.uid ?? 0, gid: e.gid ?? 0, mtime },
            typeof e.content === "string" ? Buffer.from(e.content) : e.content,
            cb,
          );
      }
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** A ustar header of an empty directory `name` (mode 0755, root, mtime 0). */
export function ustarDirHeader(name: string): Buffer {
  const h = Buffer.alloc(512);
  const put = (at: number, text: string): void => void h.write(text, at, "ascii");
  put(0, name);
  put(100, "0000755\0");
  put(108, "0000000\0");
  put(116, "0000000\0");
  put(124, "00000000000\0");
  put(136, "00000000000\0");
  put(156, "5");
  put(257, "ustar\0");
  put(263, "00");
  h.fill(" ", 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  put(148, `${sum.toString(8).padStart(6, "0")}\0 `);
  return h;
}

/**
 * A gzip layer streamed from `chunks` (raw tar bytes, without the end-of-archive blocks), for
 * layers too large to build in memory: its blob is written to `layout`; resolves with its
 * descriptor and diff_id.
 */
export async function streamedGzipLayer(
  layout: OciLayout,
  chunks: Iterable<Buffer>,
): Promise<{ descriptor: Descriptor; diffId: string }> {
  const raw = createHash("sha256");
  const compressed = createHash("sha256");
  const tmp = join(layout.dir, `layer-${process.pid}-${Date.now()}.tmp`);
  await mkdir(layout.dir, { recursive: true });
  let size = 0;
  const source = Readable.from(
    (function* () {
      for (const c of chunks) {
        raw.update(c);
        yield c;
      }
      const end = Buffer.alloc(1024);
      raw.update(end);
      yield end;
    })(),
  );
  const count = new Transform({
    transform(c: Buffer, _e, cb) {
      compressed.update(c);
      size += c.length;
      cb(null, c);
    },
  });
  await pipeline(source, createGzip({ level: 1 }), count, createWriteStream(tmp));
  const digest = `sha256:${compressed.digest("hex")}`;
  await mkdir(join(layout.dir, "blobs", "sha256"), { recursive: true });
  await rename(tmp, join(layout.dir, "blobs", "sha256", digest.slice(7)));
  return {
    descriptor: { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest, size },
    diffId: `sha256:${raw.digest("hex")}`,
  };
}

async function zstdCompress(data: Buffer): Promise<Buffer> {
  const child = spawn("zstd", ["-q", "-c", "-3"], { stdio: ["pipe", "pipe", "pipe"] });
  const out: Buffer[] = [];
  child.stdout.on("data", (c: Buffer) => out.push(c));
  const code = await new Promise<number | null>((ok, fail) => {
    child.once("error", fail);
    child.once("close", ok);
    child.stdin.end(data);
  });
  if (code !== 0) throw new Error(`zstd exited ${code}`);
  return Buffer.concat(out);
}

/** An OCI image layout under construction. */
export class OciLayout {
  readonly dir: string;
  readonly #index: Descriptor[] = [];

  constructor(dir: string) {
    this.dir = dir;
  }

  /** Stores `bytes` as a blob; returns its digest. */
  async blob(bytes: Buffer): Promise<string> {
    const digest = sha256(bytes);
    const blobs = join(this.dir, "blobs", "sha256");
    await mkdir(blobs, { recursive: true });
    await writeFile(join(blobs, digest.slice(7)), bytes);
    return digest;
  }

  /** Stores a JSON document; returns its descriptor. */
  async json(mediaType: string, doc: unknown): Promise<Descriptor> {
    const bytes = Buffer.from(JSON.stringify(doc));
    return { mediaType, digest: await this.blob(bytes), size: bytes.length };
  }

  /** Builds an image (layers, config, manifest); returns the manifest's descriptor. */
  async image(spec: ImageSpec): Promise<Descriptor> {
    const layers: Descriptor[] = [];
    const diffIds: string[] = [];
    for (const l of spec.layers) {
      const raw = await tarOf(l.entries);
      diffIds.push(sha256(raw));
      const compression = l.compression ?? "gzip";
      const bytes =
        compression === "gzip" ? gzipSync(raw) : compression === "zstd" ? await zstdCompress(raw) : raw;
      const mediaType =
        compression === "none"
          ? "application/vnd.oci.image.layer.v1.tar"
          : `application/vnd.oci.image.layer.v1.tar+${compression}`;
      layers.push({ mediaType, digest: await this.blob(bytes), size: bytes.length });
    }
    const architecture = spec.architecture ?? "amd64";
    const config = await this.json("application/vnd.oci.image.config.v1+json", {
      architecture,
      os: "linux",
      config: spec.config ?? {},
      rootfs: {
        type: "layers",
        diff_ids: spec.wrongDiffIds ? diffIds.map(() => sha256(Buffer.from("lie"))) : diffIds,
      },
    });
    const manifest = await this.json("application/vnd.oci.image.manifest.v1+json", {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config,
      layers,
    });
    return { ...manifest, platform: { os: "linux", architecture } };
  }

  /** An image of layers already stored (`streamedGzipLayer`); returns the manifest's descriptor. */
  async imageOfLayers(
    layers: readonly { descriptor: Descriptor; diffId: string }[],
    config: ProcessSpec = {},
  ): Promise<Descriptor> {
    const cfg = await this.json("application/vnd.oci.image.config.v1+json", {
      architecture: "amd64",
      os: "linux",
      config,
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    });
    const manifest = await this.json("application/vnd.oci.image.manifest.v1+json", {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: cfg,
      layers: layers.map((l) => l.descriptor),
    });
    return { ...manifest, platform: { os: "linux", architecture: "amd64" } };
  }

  /** Builds an image index of `entries`; returns its descriptor. */
  async index(entries: readonly Descriptor[]): Promise<Descriptor> {
    return this.json("application/vnd.oci.image.index.v1+json", {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: entries,
    });
  }

  /** An attestation manifest like buildx makes (platform unknown/unknown), for `subject`. */
  async attestation(subject: Descriptor): Promise<Descriptor> {
    const statement = await this.blob(
      Buffer.from(JSON.stringify({ _type: "https://in-toto.io/Statement/v0.1" })),
    );
    const config = await this.json("application/vnd.oci.image.config.v1+json", {
      architecture: "unknown",
      os: "unknown",
      config: {},
      rootfs: { type: "layers", diff_ids: [statement] },
    });
    const m = await this.json("application/vnd.oci.image.manifest.v1+json", {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config,
      layers: [{ mediaType: "application/vnd.in-toto+json", digest: statement, size: 48 }],
    });
    return {
      ...m,
      platform: { os: "unknown", architecture: "unknown" },
      annotations: {
        "vnd.docker.reference.type": "attestation-manifest",
        "vnd.docker.reference.digest": subject.digest,
      },
    };
  }

  /** Tags `d` in the layout's index.json. */
  async tag(d: Descriptor, tag: string): Promise<void> {
    const { platform: _p, ...plain } = d;
    this.#index.push({
      ...plain,
      annotations: { ...(d.annotations ?? {}), "org.opencontainers.image.ref.name": tag },
    });
    await writeFile(join(this.dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    await writeFile(
      join(this.dir, "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: this.#index,
      }),
    );
  }
}

/** The host's static busybox (Debian's busybox-static), for a runnable test image. */
export async function busyboxBytes(): Promise<Buffer> {
  for (const p of ["/bin/busybox", "/usr/bin/busybox"]) {
    try {
      const b = await readFile(p);
      const { stdout } = await run("file", ["-b", p]).catch(() => ({ stdout: "" }));
      if (stdout === "" || /static/i.test(stdout)) return b;
    } catch {
      // next
    }
  }
  throw new Error("no static busybox: apt-get install busybox-static");
}

/** Layer entries of a busybox root: /bin/busybox and /bin/sh, /bin/ls, /bin/cat as symlinks. */
export async function busyboxEntries(): Promise<EntrySpec[]> {
  return [
    { name: "bin/", type: "directory" },
    { name: "bin/busybox", content: await busyboxBytes(), mode: 0o755 },
    { name: "bin/sh", type: "symlink", linkname: "busybox" },
    { name: "bin/ls", type: "symlink", linkname: "/bin/busybox" },
    { name: "bin/cat", type: "link", linkname: "bin/busybox" },
    { name: "etc/", type: "directory" },
    { name: "etc/hostname", content: "busybox\n" },
    { name: "tmp/", type: "directory", mode: 0o1777 },
  ];
}
