/** What commands need from the outside world, so they run (and are tested) without a TTY. */
import { readFile } from "node:fs/promises";

/** The CLI's input, output, environment, clock and interruption signal. */
export interface CliContext {
  /** Writes to standard output (text as given: callers add newlines). */
  out(text: string): void;
  /** Writes to standard error. */
  err(text: string): void;
  /** Reads all of standard input. */
  readStdin(): Promise<Uint8Array>;
  /** Reads a file. */
  readFile(path: string): Promise<Uint8Array>;
  /** Environment variables (NATS_URL, EVE_TASKS_DEBUG). */
  env: Readonly<Record<string, string | undefined>>;
  /** The current time. */
  now(): Date;
  /** Aborted on Ctrl-C (SIGINT) or SIGTERM: long-running commands stop and clean up. */
  signal: AbortSignal;
}

/** Reads a whole stream into one buffer. */
async function readAll(stream: NodeJS.ReadableStream): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) {
    chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  }
  return Buffer.concat(chunks);
}

/** The context of the real process: its stdio, environment and clock. */
export function processContext(signal: AbortSignal): CliContext {
  return {
    out: (text) => void process.stdout.write(text),
    err: (text) => void process.stderr.write(text),
    readStdin: () => readAll(process.stdin),
    readFile: (path) => readFile(path),
    env: process.env,
    now: () => new Date(),
    signal,
  };
}
