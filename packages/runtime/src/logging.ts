/**
 * Structured logging with pino: one JSON line per event, with the worker, node and pid on every
 * line, and secrets redacted.
 */
import { pino } from "pino";
import type { Logger, DestinationStream } from "pino";
import type { LogLevel } from "./config.js";

export type { Logger } from "pino";

/** Paths whose values never reach a log line. */
export const redactedPaths: readonly string[] = [
  "password",
  "*.password",
  "auth",
  "*.auth",
  "token",
  "*.token",
  "secret",
  "*.secret",
  "authorization",
  "*.authorization",
  "*.headers.authorization",
  "*.nkey",
  "*.seed",
];

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** The worker's name, on every line as `worker`. */
  worker: string;
  /** The node's name (`EVE_NODE`), on every line as `node`. */
  node: string;
  /** Minimum level; default `info`. */
  level?: LogLevel;
  /** Where lines go; default stdout, written synchronously so nothing is lost on exit. */
  destination?: DestinationStream;
}

/** Creates a worker's root logger: JSON lines with `worker`, `node`, `pid`, ISO `time` and a `level` name. */
export function createLogger(opts: LoggerOptions): Logger {
  return pino(
    {
      level: opts.level ?? "info",
      base: { worker: opts.worker, node: opts.node, pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: [...redactedPaths], censor: "[redacted]" },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

/** A child logger for one app: every line carries its `uuid`. */
export function forApp(logger: Logger, uuid: string): Logger {
  return logger.child({ uuid });
}

/** A URL with its user and password masked (`nats://***@host:4222`), for logs; other strings unchanged. */
export function redactUrl(url: string): string {
  return url.replace(/(^|,)([a-z][a-z0-9+.-]*:\/\/)[^@/,]*@/gi, "$1$2***@");
}
