// A real OCI registry for tests: Debian's docker-registry (distribution 2.8) on a loopback port with
// its own config and storage dir, open, with htpasswd (bcrypt) basic auth, or with token auth
// against an in-process token issuer (JWTs signed with a key whose self-signed cert is the
// registry's rootcertbundle). Stopped by PID when the test (or file) finishes.
import { execFile } from "node:child_process";
import { createPrivateKey, randomUUID, sign } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import net from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import bcrypt from "bcryptjs";
import { readLogTail, spawnLogged } from "@eve-tasks/embedded";
import type { ManagedProcess } from "@eve-tasks/embedded";
import { deferCleanup, tempDir } from "./cleanup.js";

const run = promisify(execFile);

/** A user of an authenticated test registry. */
export interface RegistryUser {
  username: string;
  password: string;
}

/** Options of {@link startRegistry}. */
export interface StartRegistryOptions {
  /** `none` (default), `basic` (htpasswd) or `token` (an in-process token issuer). */
  auth?: "none" | "basic" | "token";
  /** Users accepted by `basic` and `token`; default one: test / secret. */
  users?: readonly RegistryUser[];
}

/** A running test registry. */
export interface TestRegistry extends AsyncDisposable {
  /** `127.0.0.1:<port>` */
  readonly host: string;
  readonly port: number;
  readonly pid: number;
  readonly dir: string;
  /** Where distribution keeps its files (to tamper with blobs). */
  readonly storageDir: string;
  readonly users: readonly RegistryUser[];
  /** The token issuer's URL (token auth only). */
  readonly tokenRealm: string | undefined;
  /** Token requests seen by the issuer (token auth only). */
  readonly tokenRequests: readonly { user: string | undefined; scope: string | null }[];
  /** The path of blob `digest` in the storage dir. */
  blobDataPath(digest: string): string;
  /** Stops the registry (idempotent); a stopped registry is "down". */
  stop(): Promise<void>;
}

/** A free loopback TCP port (closed again before it is returned). */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((ok) => srv.listen(0, "127.0.0.1", ok));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((ok) => srv.close(() => ok()));
  return port;
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString("base64url");
}

/** A JWT issuer for distribution's `token` auth: GET /token?service=&scope= with basic auth. */
async function startTokenIssuer(
  dir: string,
  service: string,
  issuer: string,
  users: readonly RegistryUser[],
): Promise<{
  realm: string;
  bundle: string;
  requests: { user: string | undefined; scope: string | null }[];
}> {
  const keyFile = join(dir, "token-key.pem");
  const certFile = join(dir, "token-cert.pem");
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    keyFile,
    "-out",
    certFile,
    "-days",
    "1",
    "-subj",
    `/CN=${issuer}`,
  ]);
  const key = createPrivateKey(await readFile(keyFile));
  const certPem = await readFile(certFile, "utf8");
  const certDer = certPem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  const requests: { user: string | undefined; scope: string | null }[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const authz = req.headers.authorization;
    let user: string | undefined;
    if (authz?.startsWith("Basic ")) {
      const [u, p] = Buffer.from(authz.slice(6), "base64").toString().split(":");
      const ok = users.find((x) => x.username === u && x.password === p);
      if (!ok) {
        res.writeHead(401, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ details: "bad credentials" }));
        return;
      }
      user = u;
    }
    const scope = url.searchParams.get("scope");
    requests.push({ user, scope });
    const access = [];
    if (scope) {
      const [type, name, actions] = scope.split(":");
      // Anonymous users get nothing: every pull needs a user.
      if (user !== undefined && type && name && actions) {
        access.push({ type, name, actions: actions.split(",") });
      }
    }
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: "ES256", typ: "JWT", x5c: [certDer] };
    const claims = {
      iss: issuer,
      sub: user ?? "",
      aud: service,
      exp: now + 300,
      nbf: now - 10,
      iat: now,
      jti: randomUUID(),
      access,
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = sign("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" });
    const token = `${input}.${b64url(signature)}`;
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(
      JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }),
    );
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  deferCleanup(
    () =>
      new Promise<void>((ok) => {
        server.close(() => ok());
        server.closeAllConnections();
      }),
  );
  const { port } = server.address() as AddressInfo;
  return { realm: `http://127.0.0.1:${port}/token`, bundle: certFile, requests };
}

/** Starts docker-registry with its own config; resolves once /v2/ answers. */
export async function startRegistry(options: StartRegistryOptions = {}): Promise<TestRegistry> {
  const auth = options.auth ?? "none";
  const users = options.users ?? [{ username: "test", password: "secret" }];
  const dir = await tempDir("reg-");
  const storageDir = join(dir, "storage");
  const port = await freePort();
  let authYaml = "";
  let token: Awaited<ReturnType<typeof startTokenIssuer>> | undefined;
  if (auth === "basic") {
    const lines = users.map((u) => `${u.username}:${bcrypt.hashSync(u.password, 5)}`);
    await writeFile(join(dir, "htpasswd"), `${lines.join("\n")}\n`);
    authYaml = `auth:\n  htpasswd:\n    realm: eve-tasks-test\n    path: ${join(dir, "htpasswd")}\n`;
  } else if (auth === "token") {
    token = await startTokenIssuer(dir, "eve-test-registry", "eve-test-issuer", users);
    authYaml =
      `auth:\n  token:\n    realm: ${token.realm}\n    service: eve-test-registry\n` +
      `    issuer: eve-test-issuer\n    rootcertbundle: ${token.bundle}\n`;
  }
  const config =
    `version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n` +
    `storage:\n  filesystem:\n    rootdirectory: ${storageDir}\n  delete:\n    enabled: true\n` +
    `http:\n  addr: 127.0.0.1:${port}\n  secret: eve-tasks-test-secret\n${authYaml}`;
  const configFile = join(dir, "config.yml");
  await writeFile(configFile, config);
  const logFile = join(dir, "registry.log");
  const proc: ManagedProcess = await spawnLogged({
    command: "/usr/bin/docker-registry",
    args: ["serve", configFile],
    logFile,
  });
  const stop = async (): Promise<void> => {
    await proc.stop({ graceMs: 3_000 });
  };
  deferCleanup(stop);
  const deadline = Date.now() + 15_000;
  for (;;) {
    const status = await new Promise<number>((ok) => {
      const req = http.get(`http://127.0.0.1:${port}/v2/`, (res) => {
        res.resume();
        ok(res.statusCode ?? 0);
      });
      req.on("error", () => ok(0));
    });
    if (status === 200 || status === 401) break;
    if (proc.hasExited() || Date.now() > deadline) {
      throw new Error(`docker-registry did not start on port ${port}: ${await readLogTail(logFile)}`);
    }
    await sleep(50);
  }
  const handle: TestRegistry = {
    host: `127.0.0.1:${port}`,
    port,
    pid: proc.pid,
    dir,
    storageDir,
    users,
    tokenRealm: token?.realm,
    tokenRequests: token?.requests ?? [],
    blobDataPath(digest) {
      const hex = digest.replace(/^sha256:/, "");
      return join(storageDir, "docker/registry/v2/blobs/sha256", hex.slice(0, 2), hex, "data");
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
  return handle;
}

/** `skopeo copy` with TLS verification off (plain HTTP loopback registries). */
export async function skopeoCopy(from: string, to: string, extra: readonly string[] = []): Promise<void> {
  try {
    await run(
      "skopeo",
      ["copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false", ...extra, from, to],
      {
        maxBuffer: 16 << 20,
      },
    );
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`skopeo copy ${from} ${to} failed: ${e.stderr ?? e.message}`, { cause: err });
  }
}
