// The page's HTTP server against a real socket, with rows from an in-memory source.
import { createHash } from "node:crypto";
import { request } from "node:http";
import type { IncomingMessage } from "node:http";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { listenStatusPage, sseMessage } from "../src/index.js";
import type { Patch, RowSource, Snapshot, StatusPageServer, WarmOptions } from "../src/index.js";

const EMPTY: Snapshot = { meta: {}, apps: {}, workers: {}, seeds: {}, networks: {} };

/** A row source whose patches the test sends. */
function source(
  snapshot: Snapshot = EMPTY,
): RowSource & { emit(p: Patch[]): void; listeners: number; warms: (WarmOptions | undefined)[] } {
  const listeners = new Set<(p: Patch[]) => void>();
  const warms: (WarmOptions | undefined)[] = [];
  return {
    snapshot: () => snapshot,
    warm: (options) => {
      warms.push(options);
      return Promise.resolve();
    },
    warms,
    onPatches(l) {
      listeners.add(l);
      return () => void listeners.delete(l);
    },
    emit: (p) => listeners.forEach((l) => l(p)),
    get listeners() {
      return listeners.size;
    },
  };
}

interface Reply {
  status: number;
  headers: IncomingMessage["headers"];
  body: string;
}

function get(port: number, path: string, o: { host?: string; method?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: o.method ?? "GET",
        headers: { host: o.host ?? `127.0.0.1:${port}` },
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

/** Opens /events and collects what arrives; `close()` ends it. */
function stream(port: number): { text: () => string; status: Promise<number>; close: () => void } {
  let text = "";
  let res: IncomingMessage | undefined;
  const req = request({ host: "127.0.0.1", port, path: "/events", headers: { host: `127.0.0.1:${port}` } });
  const status = new Promise<number>((resolve, reject) => {
    req.on("response", (r) => {
      res = r;
      r.setEncoding("utf8");
      r.on("data", (d: string) => (text += d));
      resolve(r.statusCode ?? 0);
    });
    req.on("error", reject);
  });
  req.end();
  return { text: () => text, status, close: () => (res?.destroy(), req.destroy()) };
}

const until = async (pred: () => boolean, ms = 5_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
};

let server: StatusPageServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});
const logger = pino({ level: "silent" });

describe("the status page's server", () => {
  it("serves the page with a CSP that allows exactly its own inline script and style", async () => {
    server = await listenStatusPage({ port: 0, source: source(), logger });
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/`);
    const r = await get(server.port, "/");
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toBe("text/html; charset=utf-8");
    const csp = String(r.headers["content-security-policy"]);
    const script = /<script>([\s\S]*)<\/script>/.exec(r.body)?.[1] ?? "";
    const style = /<style>([\s\S]*)<\/style>/.exec(r.body)?.[1] ?? "";
    const sha = (t: string) => `'sha256-${createHash("sha256").update(t).digest("base64")}'`;
    expect(csp).toContain(`script-src ${sha(script)}`);
    expect(csp).toContain(`style-src ${sha(style)}`);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("connect-src 'self'");
    // No external asset: nothing is loaded from anywhere but the page itself.
    expect(r.body).not.toMatch(/\s(src|href)=/);
    expect(script).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
  });

  it("answers only to its own Host (no DNS rebinding), GET only, and 404 elsewhere", async () => {
    server = await listenStatusPage({ port: 0, source: source(), logger });
    expect((await get(server.port, "/", { host: "attacker.example" })).status).toBe(421);
    expect((await get(server.port, "/state.json", { host: `attacker.example:${server.port}` })).status).toBe(
      421,
    );
    expect((await get(server.port, "/", { host: `localhost:${server.port}` })).status).toBe(200);
    expect((await get(server.port, "/", { method: "POST" })).status).toBe(405);
    expect((await get(server.port, "/nope")).status).toBe(404);
  });

  it("streams a snapshot, then patches as they come, and forgets a browser that left", async () => {
    const snap: Snapshot = { ...EMPTY, apps: { a: { uuid: "a" } as never } };
    const src = source(snap);
    server = await listenStatusPage({ port: 0, source: src, logger });
    const s = stream(server.port);
    expect(await s.status).toBe(200);
    await until(() => s.text().includes("event: snapshot"));
    expect(s.text()).toContain(sseMessage("snapshot", snap));
    const patch: Patch[] = [{ section: "apps", key: "a", row: null }];
    src.emit(patch);
    await until(() => s.text().includes("event: patch"));
    expect(s.text()).toContain(sseMessage("patch", patch));
    s.close();
    await until(() => src.listeners === 0);
    const state = await get(server.port, "/state.json");
    expect(JSON.parse(state.body)).toEqual(snap);
    // The stream's snapshot does not wait for fresh $SRV.INFO answers; a one-off read does.
    expect(src.warms).toEqual([undefined, { freshServices: true }]);
  });

  it("refuses more streams than it allows, and ends open streams on close", async () => {
    const src = source();
    server = await listenStatusPage({ port: 0, source: src, logger, maxStreams: 1 });
    const first = stream(server.port);
    expect(await first.status).toBe(200);
    const second = stream(server.port);
    expect(await second.status).toBe(503);
    await server.close();
    server = undefined;
    expect(src.listeners).toBe(0);
    first.close();
    second.close();
  });
});
