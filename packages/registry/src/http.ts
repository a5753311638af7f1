/** Minimal HTTP(S) GET over node:http with keep-alive, returning the response as a stream. */
import http from "node:http";
import type { IncomingMessage } from "node:http";
import https from "node:https";
import { RegistryUnreachableError } from "./errors.js";

const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 16 });
const httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 16 });

/** Options of {@link httpGet}. */
export interface HttpGetOptions {
  headers?: Record<string, string>;
  method?: "GET" | "HEAD";
  /** Idle socket timeout, ms (default 30 000). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Sends one request (no redirects followed); throws {@link RegistryUnreachableError} on network errors. */
export function httpGet(url: URL, options: HttpGetOptions = {}): Promise<IncomingMessage> {
  const mod = url.protocol === "https:" ? https : http;
  const agent = url.protocol === "https:" ? httpsAgent : httpAgent;
  return new Promise((resolve, reject) => {
    const req = mod.request(url, {
      method: options.method ?? "GET",
      headers: options.headers,
      agent,
      signal: options.signal,
    });
    req.setTimeout(options.timeoutMs ?? 30_000, () => {
      req.destroy(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" }));
    });
    req.once("response", (res) => {
      res.on("error", () => undefined);
      resolve(res);
    });
    req.once("error", (err) => reject(new RegistryUnreachableError(url.origin, err)));
    req.end();
  });
}

/** Reads a whole response body, refusing more than `maxBytes` (throws `tooLarge()`). */
export async function readBody(
  res: IncomingMessage,
  maxBytes: number,
  tooLarge: (n: number) => Error,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of res) {
    const b = chunk as Buffer;
    n += b.length;
    if (n > maxBytes) {
      res.destroy();
      throw tooLarge(n);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

/** Discards the rest of a response so its socket can be reused. */
export function discard(res: IncomingMessage): void {
  res.resume();
}
