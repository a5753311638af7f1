// The registry client, content store and unpacker against a real docker-registry (distribution
// 2.8) on loopback: images built by images.ts, pushed with skopeo, pulled with @eve-tasks/registry.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, readdir, readlink, stat, writeFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { RegistryClient, SeedStore, parseAuthConfig, pullLimits } from "@eve-tasks/registry";
import { deferCleanup, tempDir } from "../harness/index.js";
import { skopeoCopy, startRegistry } from "../harness/registry.js";
import type { TestRegistry } from "../harness/registry.js";
import { buildTestImages } from "./images.js";
import type { TestImages } from "./images.js";

const run = promisify(execFile);

let images: TestImages;
let open: TestRegistry;
let basic: TestRegistry;
let token: TestRegistry;

function store(
  dataDir: string,
  reg: (TestRegistry | string)[],
  extra: { auth?: string; limits?: Parameters<typeof pullLimits>[0] } = {},
): SeedStore {
  const limits = pullLimits(extra.limits);
  return new SeedStore({
    dataDir,
    limits,
    durable: false,
    ociLayoutRoots: [images.dir],
    client: new RegistryClient({
      insecureHosts: reg.map((r) => (typeof r === "string" ? r : r.host)),
      credentials: extra.auth ? parseAuthConfig(extra.auth) : undefined,
      limits,
    }),
  });
}

function authFile(host: string, user: string, pass: string): string {
  return JSON.stringify({ auths: { [host]: { auth: Buffer.from(`${user}:${pass}`).toString("base64") } } });
}

beforeAll(async () => {
  const dir = await tempDir("imgs-");
  images = await buildTestImages(dir);
  [open, basic, token] = await Promise.all([
    startRegistry(),
    startRegistry({ auth: "basic" }),
    startRegistry({ auth: "token" }),
  ]);
  const src = (tag: string): string => `oci:${images.dir}:${tag}`;
  await Promise.all([
    skopeoCopy(src("busybox"), `docker://${open.host}/bb:1`),
    skopeoCopy(src("whiteouts"), `docker://${open.host}/wh:1`),
    skopeoCopy(src("multi"), `docker://${open.host}/multi:1`, ["--all"]),
    skopeoCopy(src("zstd"), `docker://${open.host}/zstd:1`),
    skopeoCopy(src("busybox"), `docker://${open.host}/v2s2:1`, ["--format", "v2s2"]),
    skopeoCopy(src("busybox"), `docker://${basic.host}/bb:1`, ["--dest-creds", "test:secret"]),
    skopeoCopy(src("busybox"), `docker://${token.host}/bb:1`, ["--dest-creds", "test:secret"]),
  ]);
}, 60_000);

describe("pull and unpack", () => {
  it("pulls a busybox image into the content store and unpacks a runnable, read-only root", async () => {
    const data = await tempDir("data-");
    const s = store(data, [open]);
    const progress: number[] = [];
    const seed = await s.ensure(`${open.host}/bb:1`, {
      arch: "x86_64",
      onProgress: (p) => progress.push(p.doneBytes),
    });
    expect(seed.digest).toBe(images.busybox.digest);
    expect(seed.indexDigest).toBeNull();
    expect(seed.platform).toBe("linux/amd64");
    expect(seed.rootfsPath).toBe(join(data, "seeds", images.busybox.digest.slice(7), "rootfs"));
    expect(seed.process).toEqual({
      args: ["/bin/sh", "-c", "echo hello"],
      env: { PATH: "/bin", GREETING: "hi=there" },
      cwd: "/tmp",
      user: "1000:1000",
    });
    expect(progress.at(-1)).toBe(seed.sizeBytes);
    const { stdout } = await run(join(seed.rootfsPath, "bin/busybox"), ["echo", "ran from the seed"]);
    expect(stdout).toBe("ran from the seed\n");
    expect(await readlink(join(seed.rootfsPath, "bin/sh"))).toBe("busybox");
    expect(await readlink(join(seed.rootfsPath, "bin/ls"))).toBe("/bin/busybox");
    const bb = await stat(join(seed.rootfsPath, "bin/busybox"));
    expect((await stat(join(seed.rootfsPath, "bin/cat"))).ino).toBe(bb.ino); // a hardlink
    expect(bb.mode & 0o7777).toBe(0o755);
    expect((await stat(join(seed.rootfsPath, "tmp"))).mode & 0o7777).toBe(0o1777);
    expect((await stat(join(data, "seeds", images.busybox.digest.slice(7)))).mode & 0o777).toBe(0o555);
    // Every blob is in the content store, named by its digest; nothing left in ingest/.
    const blobs = await readdir(join(data, "content/blobs/sha256"));
    expect(blobs).toContain(images.busybox.digest.slice(7));
    expect(await readdir(join(data, "content/ingest"))).toEqual([]);
    // A second ensure fetches nothing and reuses the seed.
    const again = await s.pull(`${open.host}/bb:1`, { arch: "x86_64" });
    expect(again.fetchedBytes).toBe(0);
    expect((await s.ensure(`${open.host}/bb:1`, { arch: "x86_64" })).createdAt).toBe(seed.createdAt);
  });

  it("applies whiteouts and an opaque directory whose marker comes after its siblings", async () => {
    const data = await tempDir("data-");
    const seed = await store(data, [open]).ensure(`${open.host}/wh:1`, { arch: "x86_64" });
    const r = seed.rootfsPath;
    expect(existsSync(join(r, "etc/hostname"))).toBe(false);
    expect(await readFile(join(r, "etc/keep"), "utf8")).toBe("kept\n");
    expect(existsSync(join(r, "old"))).toBe(false);
    expect((await readdir(join(r, "opq"))).sort()).toEqual(["after", "new", "sub"]);
    expect(await readdir(join(r, "opq/sub"))).toEqual(["upper"]);
    expect((await stat(join(r, "opq"))).mode & 0o777).toBe(0o750);
    const all = await readdir(r, { recursive: true });
    expect(all.filter((p) => p.includes(".wh."))).toEqual([]);
  });

  it("pulls a Docker v2 schema2 image", async () => {
    const data = await tempDir("data-");
    const s = store(data, [open]);
    const image = await s.pull(`${open.host}/v2s2:1`, { arch: "x86_64" });
    expect(image.manifest.mediaType).toBe("application/vnd.docker.distribution.manifest.v2+json");
    expect(image.layers[0]?.descriptor.mediaType).toBe("application/vnd.docker.image.rootfs.diff.tar.gzip");
    const seed = await s.unpack(image);
    expect((await stat(join(seed.rootfsPath, "bin/busybox"))).isFile()).toBe(true);
  });

  it("selects the platform from an index, skipping the attestation entry", async () => {
    const data = await tempDir("data-");
    const s = store(data, [open]);
    const amd = await s.ensure(`${open.host}/multi:1`, { arch: "x86_64" });
    expect(amd.indexDigest).toBe(images.multi.digest);
    expect(amd.platform).toBe("linux/amd64");
    expect(await readFile(join(amd.rootfsPath, "which"), "utf8")).toBe("amd64\n");
    const arm = await s.ensure(`${open.host}/multi:1`, { arch: "aarch64" });
    expect(arm.platform).toBe("linux/arm64/v8");
    expect(await readFile(join(arm.rootfsPath, "which"), "utf8")).toBe("arm64\n");
    await expect(s.ensure(`${open.host}/multi:1`, { arch: "riscv64" })).rejects.toThrow(
      `no image for platform linux/riscv64 in ${open.host}/multi:1 (it has: linux/amd64, linux/arm64/v8)`,
    );
  });

  it("unpacks zstd layers", async () => {
    const data = await tempDir("data-");
    const seed = await store(data, [open]).ensure(`${open.host}/zstd:1`, { arch: "x86_64" });
    expect(await readFile(join(seed.rootfsPath, "z/file"), "utf8")).toBe("zstd layer\n".repeat(100));
  });

  it("pulls from a local OCI layout (oci:<dir>:<tag>)", async () => {
    const data = await tempDir("data-");
    const seed = await store(data, []).ensure(`oci:${images.dir}:busybox`, { arch: "x86_64" });
    expect(seed.digest).toBe(images.busybox.digest);
    expect((await stat(join(seed.rootfsPath, "bin/busybox"))).isFile()).toBe(true);
  });
});

describe("authentication", () => {
  it("basic auth: pulls with credentials from the auth file, refuses without", async () => {
    const data = await tempDir("data-");
    const ok = await store(data, [basic], { auth: authFile(basic.host, "test", "secret") }).pull(
      `${basic.host}/bb:1`,
      {
        arch: "x86_64",
      },
    );
    expect(ok.digest).toBe(images.busybox.digest);
    await expect(store(data, [basic]).pull(`${basic.host}/bb:1`, { arch: "x86_64" })).rejects.toThrow(
      `the registry needs a user name and password, and EVE_REGISTRY_AUTH_FILE has none for ${basic.host}`,
    );
    await expect(
      store(data, [basic], { auth: authFile(basic.host, "test", "wrong") }).pull(`${basic.host}/bb:1`, {
        arch: "x86_64",
      }),
    ).rejects.toThrow(/unauthorized \(401\) for http:\/\/127\.0\.0\.1:\d+\/v2\/bb\/manifests\/1/);
  });

  it("token auth: gets a bearer token for the repository's pull scope", async () => {
    const data = await tempDir("data-");
    const auth = JSON.stringify({
      auths: { [`http://${token.host}`]: { username: "test", password: "secret" } },
    });
    const realm = new URL(token.tokenRealm ?? "").host;
    const image = await store(data, [token, realm], { auth }).pull(`${token.host}/bb:1`, { arch: "x86_64" });
    expect(image.digest).toBe(images.busybox.digest);
    expect(token.tokenRequests).toContainEqual({ user: "test", scope: "repository:bb:pull" });
    await expect(
      store(data, [token, realm], { auth: authFile(token.host, "test", "nope") }).pull(`${token.host}/bb:1`, {
        arch: "x86_64",
      }),
    ).rejects.toThrow('token endpoint refused user "test"');
  });

  it("does not send credentials to another host on a blob redirect", async () => {
    // A registry front that answers /v2/ with a basic challenge, serves manifests itself, and
    // redirects blobs to a storage host (127.0.0.2) that records the headers it gets.
    const seen: { host: string; authorization: string | undefined }[] = [];
    const blobBytes = async (digest: string): Promise<Buffer> =>
      readFile(join(images.dir, "blobs/sha256", digest.slice(7)));
    const storage = http.createServer((req, res) => {
      seen.push({ host: "storage", authorization: req.headers.authorization });
      void blobBytes(req.url?.split("/").pop() ?? "").then(
        (b) => res.end(b),
        () => res.writeHead(404).end(),
      );
    });
    await new Promise<void>((ok) => storage.listen(0, "127.0.0.2", ok));
    const storagePort = (storage.address() as AddressInfo).port;
    const front = http.createServer((req, res) => {
      seen.push({ host: "registry", authorization: req.headers.authorization });
      if (req.headers.authorization !== `Basic ${Buffer.from("test:secret").toString("base64")}`) {
        res.writeHead(401, { "WWW-Authenticate": 'Basic realm="front"' }).end();
        return;
      }
      const m = /^\/v2\/bb\/(manifests|blobs)\/(.+)$/.exec(req.url ?? "");
      if (m?.[1] === "blobs") {
        res.writeHead(307, { Location: `http://127.0.0.2:${storagePort}/data/${m[2]}` }).end();
        return;
      }
      if (m?.[1] === "manifests") {
        void blobBytes(images.busybox.digest).then((b) =>
          res.writeHead(200, { "Content-Type": "application/vnd.oci.image.manifest.v1+json" }).end(b),
        );
        return;
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((ok) => front.listen(0, "127.0.0.1", ok));
    const frontHost = `127.0.0.1:${(front.address() as AddressInfo).port}`;
    deferCleanup(() => {
      storage.closeAllConnections();
      front.closeAllConnections();
      storage.close();
      front.close();
    });
    const data = await tempDir("data-");
    const s = new SeedStore({
      dataDir: data,
      durable: false,
      client: new RegistryClient({
        insecureHosts: [frontHost, `127.0.0.2:${storagePort}`],
        credentials: parseAuthConfig(authFile(frontHost, "test", "secret")),
      }),
    });
    const image = await s.pull(`${frontHost}/bb:1`, { arch: "x86_64" });
    expect(image.digest).toBe(images.busybox.digest);
    expect(seen.filter((r) => r.host === "storage").length).toBeGreaterThan(0);
    expect(seen.filter((r) => r.host === "storage" && r.authorization !== undefined)).toEqual([]);
    expect(seen.some((r) => r.host === "registry" && r.authorization?.startsWith("Basic "))).toBe(true);
  });
});

describe("credentials through a redirect", () => {
  // Registry A redirects every request to host B; B answers 401 with a challenge whose token
  // endpoint is its own. A's credentials must never reach B, whether or not A asked for them.
  for (const aAsks of [false, true]) {
    it(`never sends A's credentials to a host A redirected to (A ${aAsks ? "asks for basic auth first" : "is open"})`, async () => {
      const atB: { path: string; authorization: string | undefined }[] = [];
      const b = http.createServer((req, res) => {
        atB.push({ path: req.url ?? "", authorization: req.headers.authorization });
        const port = (b.address() as AddressInfo).port;
        if (req.url?.startsWith("/token")) {
          res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ token: "t" }));
          return;
        }
        res
          .writeHead(401, {
            "WWW-Authenticate": `Bearer realm="http://127.0.0.2:${port}/token",service="b"`,
          })
          .end();
      });
      await new Promise<void>((ok) => b.listen(0, "127.0.0.2", ok));
      const bHost = `127.0.0.2:${(b.address() as AddressInfo).port}`;
      const basicOk = `Basic ${Buffer.from("test:secret").toString("base64")}`;
      const a = http.createServer((req, res) => {
        if (aAsks && req.headers.authorization !== basicOk) {
          res.writeHead(401, { "WWW-Authenticate": 'Basic realm="a"' }).end();
          return;
        }
        res.writeHead(307, { Location: `http://${bHost}${req.url ?? "/"}` }).end();
      });
      await new Promise<void>((ok) => a.listen(0, "127.0.0.1", ok));
      const aHost = `127.0.0.1:${(a.address() as AddressInfo).port}`;
      deferCleanup(() => {
        for (const srv of [a, b]) {
          srv.closeAllConnections();
          srv.close();
        }
      });
      const data = await tempDir("data-");
      const pull = store(data, [aHost, bHost], { auth: authFile(aHost, "test", "secret") }).pull(
        `${aHost}/bb:1`,
        { arch: "x86_64" },
      );
      const failed = await pull.then(
        () => undefined,
        (err: unknown) => err as Error,
      );
      expect(atB.length).toBeGreaterThan(0);
      expect(atB.filter((r) => r.authorization !== undefined)).toEqual([]);
      expect(atB.filter((r) => r.path.startsWith("/token"))).toEqual([]);
      expect(failed?.message).toContain(
        `unauthorized (401) for http://${bHost}/v2/bb/manifests/1: http://${bHost}, where http://${aHost} redirected, asks for credentials`,
      );
    });
  }
});

describe("bad input", () => {
  it("refuses a tampered blob and keeps none of its bytes", async () => {
    const reg = await startRegistry();
    await skopeoCopy(`oci:${images.dir}:busybox`, `docker://${reg.host}/bb:1`);
    const manifest = JSON.parse(
      await readFile(join(images.dir, "blobs/sha256", images.busybox.digest.slice(7)), "utf8"),
    ) as { layers: { digest: string }[] };
    const layer = manifest.layers[0]?.digest ?? "";
    const file = reg.blobDataPath(layer);
    const bytes = await readFile(file);
    bytes[bytes.length - 10] = (bytes[bytes.length - 10] ?? 0) ^ 0xff;
    await writeFile(file, bytes);
    const data = await tempDir("data-");
    await expect(store(data, [reg]).ensure(`${reg.host}/bb:1`, { arch: "x86_64" })).rejects.toThrow(
      new RegExp(
        `digest mismatch for layer ${layer} of ${reg.host}/bb:1: expected ${layer}, got sha256:[0-9a-f]{64}`,
      ),
    );
    expect(existsSync(join(data, "content/blobs/sha256", layer.slice(7)))).toBe(false);
    expect(await readdir(join(data, "content/ingest"))).toEqual([]);
    expect(existsSync(join(data, "seeds", images.busybox.digest.slice(7)))).toBe(false);
  });

  it("refuses a manifest and a layer over their caps", async () => {
    const data = await tempDir("data-");
    await expect(
      store(data, [open], { limits: { maxManifestBytes: 100 } }).pull(`${open.host}/bb:1`, {
        arch: "x86_64",
      }),
    ).rejects.toThrow(
      /manifest 127\.0\.0\.1:\d+\/bb:1 is too large: \d+ bytes, over the limit of 100 bytes \(EVE_REGISTRY_MAX_MANIFEST_BYTES\)/,
    );
    await expect(
      store(data, [open], { limits: { maxLayerBytes: 1000 } }).pull(`${open.host}/bb:1`, { arch: "x86_64" }),
    ).rejects.toThrow(
      /is too large: \d+ bytes, over the limit of 1000 bytes \(EVE_REGISTRY_MAX_LAYER_BYTES\)/,
    );
    // Refused before any layer byte was fetched: only the manifest is stored.
    expect(await readdir(join(data, "content/blobs/sha256"))).toEqual([images.busybox.digest.slice(7)]);
  });

  it("speaks plain HTTP only to a host in EVE_INSECURE_REGISTRIES: any other gets a TLS hello, never a request", async () => {
    // A listener that keeps the first bytes of each connection and hangs up.
    const firstBytes: Buffer[] = [];
    const server = net.createServer((socket) => {
      socket.once("data", (b) => {
        firstBytes.push(b);
        socket.destroy();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    deferCleanup(() => new Promise<void>((r) => server.close(() => r())));
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const data = await tempDir("data-");

    await expect(store(data, []).pull(`${host}/bb:1`, { arch: "x86_64" })).rejects.toThrow(`https://${host}`);
    expect(firstBytes.length).toBeGreaterThan(0);
    for (const b of firstBytes) expect(b[0], "a TLS handshake record, not plain text").toBe(0x16);

    // The control: listed, the same pull sends its request in plain text.
    firstBytes.length = 0;
    await expect(store(data, [host]).pull(`${host}/bb:1`, { arch: "x86_64" })).rejects.toThrow();
    expect(firstBytes[0]?.toString("latin1")).toMatch(/^GET \/v2\//);
  });

  it("reports a registry that is down, a 404 and an invalid reference clearly", async () => {
    const data = await tempDir("data-");
    const reg = await startRegistry();
    const host = reg.host;
    await reg.stop();
    const down = store(data, [reg]).pull(`${host}/bb:1`, { arch: "x86_64" });
    await expect(down).rejects.toThrow(`registry unreachable: http://${host}: ECONNREFUSED`);
    await expect(down).rejects.toMatchObject({ retryable: true });
    const missing = store(data, [open]).pull(`${open.host}/nothing:1`, { arch: "x86_64" });
    await expect(missing).rejects.toThrow(`not found: manifest ${open.host}/nothing:1 (MANIFEST_UNKNOWN`);
    await expect(missing).rejects.toMatchObject({ retryable: false, code: "NOT_FOUND" });
    await expect(store(data, [open]).pull("Bad/Name", { arch: "x86_64" })).rejects.toThrow(
      'invalid image reference "Bad/Name": repository name must be lowercase',
    );
  });
});
