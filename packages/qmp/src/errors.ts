/**
 * The errors of the QMP client. Each one names the socket it concerns; a command's error names
 * the command. Check them with `instanceof` (or by `name`).
 */

/** The base class: every error the client raises itself. */
export class QmpError extends Error {
  /** The QMP socket the client was talking to. */
  readonly socketPath: string;

  constructor(message: string, socketPath: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "QmpError";
    this.socketPath = socketPath;
  }
}

/** Why {@link QmpConnectError} was raised. */
export type QmpConnectFailure =
  /** The deadline passed: the socket did not exist, refused, or qemu did not greet in time. */
  | "deadline"
  /** The caller's signal aborted the attempt (`cause` is the signal's reason). */
  | "aborted"
  /** The socket answered with something that is not QMP, or capability negotiation failed. */
  | "protocol"
  /** Another error that retrying cannot cure (e.g. EACCES), or the peer closed during set-up. */
  | "failed";

/** `connectQmp` could not bring up a QMP session. */
export class QmpConnectError extends QmpError {
  readonly reason: QmpConnectFailure;
  /** How many times a connection to the socket was tried. */
  readonly attempts: number;
  /** The errno code of the last failed connection attempt (ENOENT, ECONNREFUSED, ...), if any. */
  readonly lastErrorCode: string | undefined;

  constructor(
    message: string,
    socketPath: string,
    details: { reason: QmpConnectFailure; attempts: number; lastErrorCode?: string | undefined },
    options?: ErrorOptions,
  ) {
    super(message, socketPath, options);
    this.name = "QmpConnectError";
    this.reason = details.reason;
    this.attempts = details.attempts;
    this.lastErrorCode = details.lastErrorCode;
  }
}

/** qemu answered a command with `{"error": {"class", "desc"}}`. */
export class QmpCommandError extends QmpError {
  /** The command that failed, e.g. `cont`. */
  readonly command: string;
  /** QMP's error class, e.g. `CommandNotFound`, `GenericError`, `DeviceNotFound`. */
  readonly errorClass: string;
  /** qemu's human-readable description. */
  readonly desc: string;

  constructor(socketPath: string, command: string, errorClass: string, desc: string) {
    super(`QMP command "${command}" failed on ${socketPath}: ${errorClass}: ${desc}`, socketPath);
    this.name = "QmpCommandError";
    this.command = command;
    this.errorClass = errorClass;
    this.desc = desc;
  }
}

/**
 * The connection is closed (by `close()`, by qemu exiting, or after an error): a command that was
 * pending, or sent afterwards, or an event being waited for, gets this. `cause` is the error that
 * closed the connection, if one did.
 */
export class QmpClosedError extends QmpError {
  /** The command that was pending or attempted; undefined when waiting for an event. */
  readonly command: string | undefined;

  constructor(socketPath: string, what: { command?: string; event?: string }, options?: ErrorOptions) {
    const subject =
      what.command !== undefined
        ? `QMP command "${what.command}"`
        : `waiting for QMP event ${what.event ?? "(any)"}`;
    const why = options?.cause instanceof Error ? ` (${options.cause.message})` : "";
    super(`${subject}: the QMP connection to ${socketPath} is closed${why}`, socketPath, options);
    this.name = "QmpClosedError";
    this.command = what.command;
  }
}

/**
 * A command's reply, or an awaited event, did not come within its deadline. A command that timed
 * out may still run in qemu: its late reply is dropped.
 */
export class QmpTimeoutError extends QmpError {
  /** The command, or `event <NAME>`, that was waited for. */
  readonly waitedFor: string;
  readonly timeoutMs: number;

  constructor(socketPath: string, waitedFor: string, timeoutMs: number) {
    super(`${waitedFor}: no answer from QMP socket ${socketPath} within ${timeoutMs} ms`, socketPath);
    this.name = "QmpTimeoutError";
    this.waitedFor = waitedFor;
    this.timeoutMs = timeoutMs;
  }
}

/** qemu sent something that is not a QMP message (not JSON, not an object, an over-long line). */
export class QmpProtocolError extends QmpError {
  /** The start of the offending line (at most 200 characters). */
  readonly line: string;

  constructor(message: string, socketPath: string, line: string, options?: ErrorOptions) {
    super(
      `${message} on QMP socket ${socketPath}: ${JSON.stringify(line.slice(0, 200))}`,
      socketPath,
      options,
    );
    this.name = "QmpProtocolError";
    this.line = line.slice(0, 200);
  }
}
