/**
 * A client of qemu's machine protocol over a unix socket. Lifecycle: `connectQmp()` connects
 * (retrying while qemu has not created the socket yet), reads the greeting and negotiates
 * capabilities; `execute()` sends commands (pipelined, matched to replies by id), with
 * `systemPowerdown()` and `quit()` for the two a stop needs; `close()` ends the session and
 * `closed` settles when it has ended, however it ended. qemu's asynchronous events are read and
 * dropped: nothing here needs them.
 */
import { createConnection } from "node:net";
import type { Socket } from "node:net";
import {
  QmpClosedError,
  QmpCommandError,
  QmpConnectError,
  QmpProtocolError,
  QmpTimeoutError,
} from "./errors.js";
import { LineDecoder, LineTooLongError, parseQmpMessage } from "./lines.js";
import type { QemuVersion, QmpGreeting, QmpMessage } from "./lines.js";

/** Options of {@link connectQmp}. */
export interface ConnectQmpOptions {
  /**
   * The deadline of the whole set-up: waiting for the socket to appear and accept, the greeting
   * and `qmp_capabilities`.
   */
  timeoutMs: number;
  /** Aborts the set-up; the rejection is a {@link QmpConnectError} with reason `aborted`. */
  signal?: AbortSignal;
  /** Pause between connection attempts while the socket is missing or refuses (default 25 ms). */
  retryIntervalMs?: number;
  /** The deadline of a command when `execute()` is not given one (default 10 000 ms). */
  commandTimeoutMs?: number;
}

/** Options of {@link QmpClient.execute}. */
export interface ExecuteOptions {
  /** How long to wait for the reply (default: the client's `commandTimeoutMs`). */
  timeoutMs?: number;
}

/** errno codes that mean "qemu has not created or is not yet listening on the socket". */
const RETRYABLE = new Set(["ENOENT", "ECONNREFUSED", "EAGAIN"]);

interface Pending {
  command: string;
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * Connects to qemu's QMP socket: retries while the socket does not exist or refuses (qemu creates
 * it while starting) until `timeoutMs`, reads the greeting and negotiates `qmp_capabilities`.
 * Rejects with a {@link QmpConnectError} naming the path.
 */
export function connectQmp(socketPath: string, options: ConnectQmpOptions): Promise<QmpClient> {
  return QmpClient.connect(socketPath, options);
}

/** One QMP session. Made by {@link connectQmp}. */
export class QmpClient {
  /** The socket this client talks to. */
  readonly socketPath: string;
  readonly #socket: Socket;
  readonly #decoder = new LineDecoder();
  readonly #pending = new Map<number, Pending>();
  /** Told once when the connection ends (the handshake waits on it). */
  readonly #onEnd = new Set<(cause: Error | undefined) => void>();
  readonly #commandTimeoutMs: number;
  readonly #closed: Promise<Error | undefined>;
  #resolveClosed!: (err: Error | undefined) => void;
  #greeting: QmpGreeting | undefined;
  #onGreeting: (() => void) | undefined;
  #nextId = 1;
  #isClosed = false;
  #quitSent = false;
  #closeError: Error | undefined;

  private constructor(socket: Socket, socketPath: string, options: ConnectQmpOptions) {
    this.socketPath = socketPath;
    this.#socket = socket;
    this.#commandTimeoutMs = options.commandTimeoutMs ?? 10_000;
    this.#closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.on("error", (err: NodeJS.ErrnoException) => {
      // After `quit`, qemu exits without reading what was sent behind it: the kernel resets the
      // connection. That is the end that was asked for, not a failure.
      if (this.#quitSent && (err.code === "ECONNRESET" || err.code === "EPIPE")) return;
      this.#closeError ??= err;
    });
    socket.on("close", () => this.#finish());
  }

  /** @internal See {@link connectQmp}. */
  static async connect(socketPath: string, options: ConnectQmpOptions): Promise<QmpClient> {
    const deadline = Date.now() + options.timeoutMs;
    const { signal } = options;
    const retryMs = options.retryIntervalMs ?? 25;
    let attempts = 0;
    let lastErrorCode: string | undefined;
    const fail = (reason: "deadline" | "aborted" | "failed" | "protocol", message: string, cause?: unknown) =>
      new QmpConnectError(
        message,
        socketPath,
        { reason, attempts, lastErrorCode },
        cause === undefined ? undefined : { cause },
      );
    const aborted = () =>
      fail("aborted", `connecting to QMP socket ${socketPath} was aborted`, signal?.reason);

    let socket: Socket;
    for (;;) {
      if (signal?.aborted) throw aborted();
      attempts++;
      const result = await attemptConnect(socketPath, deadline - Date.now(), signal);
      if ("socket" in result) {
        socket = result.socket;
        break;
      }
      if (signal?.aborted) throw aborted();
      const err = result.error;
      lastErrorCode = err.code;
      if (err.code !== "ETIMEDOUT" && (err.code === undefined || !RETRYABLE.has(err.code))) {
        throw fail("failed", `cannot connect to QMP socket ${socketPath}: ${err.message}`, err);
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0 || err.code === "ETIMEDOUT") {
        const why =
          lastErrorCode === "ENOENT"
            ? "the socket does not exist"
            : lastErrorCode === "ECONNREFUSED"
              ? "nothing accepts connections on it"
              : (lastErrorCode ?? "no answer");
        throw fail(
          "deadline",
          `cannot connect to QMP socket ${socketPath} within ${options.timeoutMs} ms (${attempts} attempts): ${why}`,
          err,
        );
      }
      await sleep(Math.min(retryMs, remaining), signal);
    }

    const client = new QmpClient(socket, socketPath, options);
    const onAbort = () => client.#destroy(new Error("aborted"));
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await client.#handshake(deadline);
      return client;
    } catch (err) {
      client.#destroy(err instanceof Error ? err : new Error(String(err)));
      if (signal?.aborted) throw aborted();
      if (err instanceof QmpTimeoutError) {
        throw fail(
          "deadline",
          `connected to QMP socket ${socketPath}, but ${err.waitedFor} did not complete within ${options.timeoutMs} ms (qemu serves one QMP client at a time: is another connected?)`,
          err,
        );
      }
      if (err instanceof QmpClosedError && err.cause instanceof QmpProtocolError) {
        throw fail("protocol", `QMP handshake on ${socketPath} failed: ${err.cause.message}`, err.cause);
      }
      if (err instanceof QmpClosedError) {
        throw fail("failed", `QMP socket ${socketPath} closed during the QMP handshake`, err);
      }
      const message = err instanceof Error ? err.message : String(err);
      throw fail("protocol", `QMP handshake on ${socketPath} failed: ${message}`, err);
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  async #handshake(deadline: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const done = (fn: () => void) => {
        clearTimeout(timer);
        this.#onGreeting = undefined;
        this.#onEnd.delete(onEnd);
        fn();
      };
      const timer = setTimeout(
        () => done(() => reject(new QmpTimeoutError(this.socketPath, "the QMP greeting", 0))),
        Math.max(0, deadline - Date.now()),
      );
      // A close before the greeting rejects.
      const onEnd = (cause: Error | undefined) =>
        done(() => reject(new QmpClosedError(this.socketPath, { event: "QMP greeting" }, { cause })));
      this.#onEnd.add(onEnd);
      this.#onGreeting = () => done(resolve);
    });
    await this.execute("qmp_capabilities", undefined, { timeoutMs: Math.max(1, deadline - Date.now()) });
  }

  /** The greeting qemu sent (its version and capabilities). */
  get greeting(): QmpGreeting {
    // Set before connectQmp resolves.
    return this.#greeting as QmpGreeting;
  }

  /** qemu's version, from the greeting. */
  get version(): QemuVersion {
    return this.greeting.version;
  }

  /** True once the connection has ended. */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /**
   * Settles when the connection has ended, with the error that ended it or `undefined` when it
   * ended in order (`close()`, or qemu closing it, e.g. after `quit`). Never rejects.
   */
  get closed(): Promise<Error | undefined> {
    return this.#closed;
  }

  /**
   * Sends a command and resolves with its `return` value (typed by the caller: not checked).
   * Rejects with {@link QmpCommandError} on an `error` reply, {@link QmpTimeoutError} past the
   * deadline, {@link QmpClosedError} when the connection is or becomes closed first. Commands
   * may be pipelined: each has its own id.
   */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options?: ExecuteOptions,
  ): Promise<T> {
    if (this.#isClosed) {
      return Promise.reject(new QmpClosedError(this.socketPath, { command }, { cause: this.#closeError }));
    }
    const id = this.#nextId++;
    if (command === "quit") this.#quitSent = true;
    const timeoutMs = options?.timeoutMs ?? this.#commandTimeoutMs;
    const message = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new QmpTimeoutError(this.socketPath, `QMP command "${command}"`, timeoutMs));
      }, timeoutMs);
      this.#pending.set(id, { command, resolve, reject, timer });
      this.#socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  /** `system_powerdown`: presses the guest's ACPI power button (the guest decides what to do). */
  async systemPowerdown(options?: ExecuteOptions): Promise<void> {
    await this.execute("system_powerdown", undefined, options);
  }

  /**
   * `quit`: qemu exits at once. Resolves when qemu has closed the connection (it is exiting; the
   * process may need a few more milliseconds to be gone). A connection closed before the reply
   * came counts as success. Rejects with {@link QmpTimeoutError} if the connection stays open.
   */
  async quit(options?: ExecuteOptions): Promise<void> {
    const timeoutMs = options?.timeoutMs ?? this.#commandTimeoutMs;
    const started = Date.now();
    try {
      await this.execute("quit", undefined, { timeoutMs });
    } catch (err) {
      if (!(err instanceof QmpClosedError)) throw err;
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), Math.max(0, timeoutMs - (Date.now() - started)));
    });
    const r = await Promise.race([this.#closed, timedOut]);
    clearTimeout(timer);
    if (r === "timeout") throw new QmpTimeoutError(this.socketPath, "qemu closing QMP after quit", timeoutMs);
  }

  /**
   * Ends the session: the socket is ended (anything written is still flushed) and destroyed if
   * qemu does not close its side within a second. Pending commands reject with
   * {@link QmpClosedError}. Await `closed` to know it is over.
   */
  close(): void {
    if (this.#isClosed || this.#socket.destroyed) return;
    this.#socket.end();
    setTimeout(() => this.#socket.destroy(), 1000).unref();
  }

  #destroy(err: Error): void {
    this.#closeError ??= err;
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    let lines: string[];
    try {
      lines = this.#decoder.push(chunk);
    } catch (err) {
      const start = err instanceof LineTooLongError ? err.start : "";
      this.#destroy(new QmpProtocolError("an over-long line", this.socketPath, start, { cause: err }));
      return;
    }
    for (const line of lines) {
      if (this.#socket.destroyed) return;
      let message: QmpMessage;
      try {
        message = parseQmpMessage(line);
      } catch (err) {
        this.#destroy(new QmpProtocolError("not a QMP message", this.socketPath, line, { cause: err }));
        return;
      }
      this.#dispatch(message, line);
    }
  }

  #dispatch(message: QmpMessage, line: string): void {
    if (this.#greeting === undefined) {
      if (message.kind === "greeting") {
        this.#greeting = message.greeting;
        this.#onGreeting?.();
      } else this.#destroy(new QmpProtocolError("expected the QMP greeting", this.socketPath, line));
      return;
    }
    switch (message.kind) {
      case "return":
      case "error": {
        const entry = this.#takePending(message.id);
        if (entry === undefined) return; // a reply to a command that timed out
        clearTimeout(entry.timer);
        if (message.kind === "return") entry.resolve(message.value);
        else
          entry.reject(new QmpCommandError(this.socketPath, entry.command, message.errorClass, message.desc));
        return;
      }
      default:
        return; // an event, a second greeting or an unknown message: nothing to do
    }
  }

  /** The pending command a reply answers: by id; a reply without id answers the oldest one. */
  #takePending(id: unknown): Pending | undefined {
    const key =
      typeof id === "number" ? id : id === undefined ? this.#pending.keys().next().value : undefined;
    if (key === undefined) return undefined;
    const entry = this.#pending.get(key);
    this.#pending.delete(key);
    return entry;
  }

  #finish(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    const cause = this.#closeError;
    for (const entry of this.#pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(new QmpClosedError(this.socketPath, { command: entry.command }, { cause }));
    }
    this.#pending.clear();
    for (const onEnd of [...this.#onEnd]) onEnd(cause);
    this.#onEnd.clear();
    this.#resolveClosed(cause);
  }
}

/** One connection attempt, bounded by `timeoutMs`. */
function attemptConnect(
  path: string,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<{ socket: Socket } | { error: NodeJS.ErrnoException }> {
  return new Promise((resolve) => {
    const socket = createConnection({ path });
    const settle = (r: { socket: Socket } | { error: NodeJS.ErrnoException }) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.off("connect", onConnect);
      socket.off("error", onError);
      if ("error" in r) socket.destroy();
      resolve(r);
    };
    const onConnect = () => settle({ socket });
    const onError = (error: NodeJS.ErrnoException) => settle({ error });
    const onAbort = () => settle({ error: Object.assign(new Error("aborted"), { code: "ABORT_ERR" }) });
    const timer = setTimeout(
      () => settle({ error: Object.assign(new Error("connect timed out"), { code: "ETIMEDOUT" }) }),
      Math.max(0, timeoutMs),
    );
    socket.once("connect", onConnect);
    socket.once("error", onError);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Waits `ms`, or less if `signal` aborts (the caller checks the signal). */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
