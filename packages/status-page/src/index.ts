/**
 * @eve-tasks/status-page: the live status page `npm start` serves on 127.0.0.1 (EVE_UI_PORT).
 * See README.md.
 */
import { connectBus } from "@eve-tasks/bus";
import type { Bus, NatsCredentials } from "@eve-tasks/bus";
import type { Logger } from "pino";
import { StatusCollector } from "./collector.js";
import type { LocalWorker } from "./model.js";
import { listenStatusPage } from "./server.js";

export * from "./model.js";
export { StatusCollector, FLUSH_INTERVAL_MS, RECENT_EVENTS, SERVICE_POLL_INTERVAL_MS } from "./collector.js";
export type { CollectorOptions, WarmOptions } from "./collector.js";
export { pollServices, SERVICE_POLL_WINDOW_MS } from "./services.js";
export type { ServicePoll } from "./services.js";
export { hostAllowed, listenStatusPage, sseMessage } from "./server.js";
export type { RowSource, StatusPageServer, StatusPageServerOptions } from "./server.js";
export { renderPage } from "./page.js";
export type { RenderedPage } from "./page.js";

/** Options of {@link openStatusPage}. */
export interface StatusPageOptions {
  /** NATS URL(s) to read from. */
  readonly servers: string;
  /** Who to read as: the read-only `viewer` user under `npm start`. */
  readonly credentials?: NatsCredentials;
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** 0: any free port. */
  readonly port: number;
  /** The node shown in the header. */
  readonly node: string;
  readonly logger: Logger;
  /** The launcher's worker processes, when a launcher runs the page. */
  readonly localWorkers?: () => readonly LocalWorker[];
}

/** A running page. */
export interface StatusPage {
  readonly url: string;
  readonly port: number;
  /** Stops serving, stops following and closes its NATS connection. */
  close(): Promise<void>;
}

const redact = (urls: string): string => urls.replace(/\/\/[^@/]*@/g, "//");

/** Connects to NATS as `credentials`, follows the bus and serves the page. */
export async function openStatusPage(o: StatusPageOptions): Promise<StatusPage> {
  const bus: Bus = await connectBus({
    servers: o.servers,
    name: "eve-tasks-status-page",
    credentials: o.credentials,
    logger: o.logger,
  });
  let collector: StatusCollector | undefined;
  try {
    collector = await StatusCollector.open({
      bus,
      logger: o.logger,
      node: o.node,
      natsUrl: redact(o.servers),
      natsUser: o.credentials?.user ?? null,
      localWorkers: o.localWorkers,
    });
    const server = await listenStatusPage({
      host: o.host,
      port: o.port,
      source: collector,
      logger: o.logger,
    });
    const c = collector;
    return {
      url: server.url,
      port: server.port,
      async close() {
        await server.close();
        await c.close();
        await bus.close();
      },
    };
  } catch (err) {
    await collector?.close();
    await bus.close();
    throw err;
  }
}
