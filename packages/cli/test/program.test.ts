// The command line in-process, for what needs no NATS: usage errors, --dry-run, an unreachable server.
import { describe, expect, it } from "vitest";
import { DEFAULT_NATS_URL, resolveServer, runCli } from "../src/index.js";
import type { CliContext } from "../src/index.js";
import { UUID } from "./fixtures.js";

function fakeContext(files: Record<string, string> = {}, env: Record<string, string> = {}) {
  let out = "";
  let err = "";
  const ctx: CliContext = {
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    readStdin: () => Promise.resolve(new TextEncoder().encode(files["-"] ?? "")),
    readFile: (p) =>
      p in files
        ? Promise.resolve(new TextEncoder().encode(files[p]))
        : Promise.reject(Object.assign(new Error("ENOENT"), { code: "ENOENT" })),
    env,
    now: () => new Date(),
    signal: new AbortController().signal,
  };
  return { ctx, out: () => out, err: () => err };
}

const run = (ctx: CliContext, ...args: string[]) => runCli(ctx, ["node", "eve-tasks", ...args]);

const app = JSON.stringify({
  schemaVersion: 1,
  uuid: UUID,
  version: "1",
  displayName: "hello",
  virtualization: "NOHYPER",
  resources: { memoryMiB: 64, vcpus: 1 },
  root: { volume: { path: "/var/lib/eve/volumes/hello/rootfs" } },
});

describe("eve-tasks (in-process)", () => {
  it("validates without publishing with apply --dry-run (no server needed)", async () => {
    const f = fakeContext({ "app.json": app }, { NATS_URL: "nats://127.0.0.1:1" });
    expect(await run(f.ctx, "apply", "--dry-run", "-f", "app.json")).toBe(0);
    expect(f.out()).toBe(`valid hello (${UUID}): nothing published (dry run)\n`);
  });

  it("reports a schema violation in one message naming the field, exit 1", async () => {
    const bad = app.replace('"memoryMiB":64', '"memoryMiB":-1');
    const f = fakeContext({ "-": bad });
    expect(await run(f.ctx, "apply", "--dry-run", "-f", "-")).toBe(1);
    expect(f.err()).toMatch(
      /^eve-tasks: invalid AppInstanceConfig in stdin:\n.*\n\s+→ at resources\.memoryMiB\n$/,
    );
    expect(f.out()).toBe("");
  });

  it("leaves usage errors to commander, with a hint", async () => {
    const f = fakeContext();
    expect(await run(f.ctx, "apply")).toBe(1);
    expect(f.err()).toContain("required option '-f, --file <path>' not specified");
    const g = fakeContext();
    expect(await run(g.ctx, "stop")).toBe(1);
    expect(g.err()).toContain("missing required argument 'app'");
    const h = fakeContext();
    expect(await run(h.ctx, "stop", "x", "--timeout", "soon")).toBe(1);
    expect(h.err()).toBe(
      'eve-tasks: --timeout must be a duration such as 30s, 2m, 1h or 500ms; got "soon"\n',
    );
  });

  it("prints help and the version with exit 0", async () => {
    const f = fakeContext();
    expect(await run(f.ctx, "--help")).toBe(0);
    expect(f.out()).toContain("Usage: eve-tasks");
    const v = fakeContext();
    expect(await run(v.ctx, "--version")).toBe(0);
    expect(v.out()).toMatch(/^\d+\.\d+\.\d+\n$/);
  });

  it("says in one line that NATS cannot be reached", async () => {
    const f = fakeContext({}, { NATS_URL: "nats://127.0.0.1:1" });
    expect(await run(f.ctx, "get")).toBe(1);
    expect(f.err()).toBe(
      "eve-tasks: cannot reach NATS at nats://127.0.0.1:1: is `npm start` running? set NATS_URL (or --server) to the right server\n",
    );
  });

  it("takes the server from --server, else NATS_URL, else the default", () => {
    expect(resolveServer("nats://a:1", { NATS_URL: "nats://b:2" })).toBe("nats://a:1");
    expect(resolveServer(undefined, { NATS_URL: "nats://b:2" })).toBe("nats://b:2");
    expect(resolveServer(undefined, { NATS_URL: " " })).toBe(DEFAULT_NATS_URL);
    expect(resolveServer(undefined, {})).toBe("nats://127.0.0.1:4222");
  });
});
