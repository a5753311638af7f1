/**
 * The page's HTTP server (node:http, loopback only): `/` the page, `/events` the rows as
 * server-sent events (a snapshot, then patches), `/state.json` the snapshot.
 *
 * Everything from the bus reaches the browser as JSON data, never as markup: the page builds its
 * tables with `textContent` (see assets/page.js). The Content-Security-Policy allows only the
 * page's own inline script and style (by hash) and connections to itself, and the Host header
 * must name the page (so a DNS-rebinding site cannot read it).
 */
import { createServer } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { Patch, Snapshot } from "./model.js";
import type { WarmOptions } from "./collector.js";
import { renderPage } from "./page.js";

/** Where the rows come from. */
export interface RowSource {
  snapshot(): Snapshot;
  onPatches(listener: (patches: Patch[]) => void): () => void;
  /** Resolves once what the snapshot follows only on demand is current (see StatusCollector.warm). */
  warm?(options?: WarmOptions): Promise<void>;
}

/** Options of {@link listenStatusPage}. */
export interface StatusPageServerOptions {
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** 0: any free port. */
  readonly port: number;
  readonly source: RowSource;
  readonly logger: Logger;
  /** A comment line to every stream this often, so proxies and browsers keep it open. */
  readonly keepAliveMs?: number;
  /** Most browsers (event streams) at once. */
  readonly maxStreams?: number;
}

/** A listening page. */
export interface StatusPageServer {
  /** `http://127.0.0.1:<port>/`. */
  readonly url: string;
  readonly port: number;
  /** Ends every stream and stops listening. */
  close(): Promise<void>;
}

/** A stream whose browser reads slower than this much is dropped (it reconnects to a snapshot). */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

/** `event: <name>` with `data` as one JSON line. */
export function sseMessage(event: string, data: unknown): string {
  // JSON.stringify never emits a raw newline, so the data is one line.
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** Whether the Host header names this page (`127.0.0.1:<port>`, `localhost:<port>`). */
export function hostAllowed(hostHeader: string | undefined, host: string, port: number): boolean {
  if (hostHeader === undefined) return false;
  const h = hostHeader.toLowerCase();
  return h === `${host}:${port}` || h === `localhost:${port}`;
}

/** Starts the page's server. */
export async function listenStatusPage(o: StatusPageServerOptions): Promise<StatusPageServer> {
  const host = o.host ?? "127.0.0.1";
  const page = renderPage();
  const streams = new Set<ServerResponse>();
  const maxStreams = o.maxStreams ?? 32;
  let port = o.port;

  const send = (
    res: ServerResponse,
    status: number,
    type: string,
    body: string,
    extra: Record<string, string> = {},
  ) => {
    res.writeHead(status, {
      "Content-Type": type,
      "Cache-Control": "no-store",
      "X-Content-Type-Options": "nosniff",
      "Referrer-Policy": "no-referrer",
      ...extra,
    });
    res.end(body);
  };

  const openStream = (req: IncomingMessage, res: ServerResponse): void => {
    if (streams.size >= maxStreams) {
      send(res, 503, "text/plain; charset=utf-8", `too many open pages (${maxStreams})\n`, {
        "Retry-After": "5",
      });
      return;
    }
    res.writeHead(200, {
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-store",
      "X-Content-Type-Options": "nosniff",
      Connection: "keep-alive",
    });
    streams.add(res);
    const write = (text: string): void => {
      if (res.writableLength > MAX_BUFFERED_BYTES) {
        o.logger.warn(
          { buffered: res.writableLength },
          "status page: a browser reads too slowly; dropping its stream",
        );
        res.end();
        return;
      }
      res.write(text);
    };
    write(`retry: 2000\n\n`);
    let closed = false;
    let off = (): void => undefined;
    let keepAlive: NodeJS.Timeout | undefined;
    const done = (): void => {
      closed = true;
      clearInterval(keepAlive);
      off();
      streams.delete(res);
    };
    req.on("close", done);
    res.on("close", done);
    // The snapshot once the rows are complete; then every patch.
    const begin = (): void => {
      if (closed) return;
      write(sseMessage("snapshot", o.source.snapshot()));
      off = o.source.onPatches((patches) => write(sseMessage("patch", patches)));
      keepAlive = setInterval(() => write(`: keep-alive\n\n`), o.keepAliveMs ?? 15_000);
    };
    warmed().then(begin, () => undefined);
  };

  /** The source made current (a failure is logged: the rows are shown as they are). */
  const warmed = async (options?: WarmOptions): Promise<void> => {
    try {
      await o.source.warm?.(options);
    } catch (err) {
      o.logger.warn({ err }, "status page: some rows may be incomplete");
    }
  };

  const server = createServer((req, res) => {
    if (!hostAllowed(req.headers.host, host, port)) {
      send(res, 421, "text/plain; charset=utf-8", `this page answers to http://${host}:${port}/ only\n`);
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      send(res, 405, "text/plain; charset=utf-8", "GET only\n", { Allow: "GET, HEAD" });
      return;
    }
    const path = (req.url ?? "/").split("?")[0];
    switch (path) {
      case "/":
        send(res, 200, "text/html; charset=utf-8", page.html, {
          "Content-Security-Policy": page.csp,
          "X-Frame-Options": "DENY",
        });
        return;
      case "/events":
        openStream(req, res);
        return;
      case "/state.json":
        // A one-off read: with the workers' answers of now, not of before a long quiet.
        void warmed({ freshServices: true }).then(() =>
          send(
            res,
            200,
            "application/json; charset=utf-8",
            `${JSON.stringify(o.source.snapshot(), null, 1)}\n`,
          ),
        );
        return;
      case "/favicon.ico":
        res.writeHead(204).end();
        return;
      default:
        send(res, 404, "text/plain; charset=utf-8", "not found\n");
    }
  });
  server.on("clientError", (_err, socket) => socket.destroy());

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${port}/`,
    port,
    async close() {
      for (const res of streams) res.end();
      streams.clear();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
