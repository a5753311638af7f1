/** Structured, JSON-friendly facts attached to an error (paths, PIDs, log tails). */
export type ErrorContext = Readonly<Record<string, unknown>>;

/** Options shared by every error of this package. */
export interface EmbeddedErrorOptions {
  /** Facts that help diagnose the failure. */
  context?: ErrorContext;
  /** The underlying error, if any. */
  cause?: unknown;
}

/** Base class of every error thrown by `@eve-tasks/embedded`. */
export class EmbeddedError extends Error {
  /** Facts that help diagnose the failure. */
  readonly context: ErrorContext;

  constructor(message: string, options: EmbeddedErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.context = options.context ?? {};
  }
}

/** A child process could not be spawned, or stopping it failed. */
export class ProcessError extends EmbeddedError {}

/** nats-server did not come up (exited early, timed out, bad ports file). */
export class NatsServerStartError extends EmbeddedError {}

/** containerd did not come up (exited early, timed out, not root). */
export class ContainerdStartError extends EmbeddedError {}

/** A unix socket path would exceed the kernel's limit (107 bytes plus the terminating NUL). */
export class SocketPathTooLongError extends EmbeddedError {}

/** Removing tasks or containers from a containerd failed for a reason other than "not found". */
export class ContainerdCleanupError extends EmbeddedError {}

/** A host prerequisite (binary, cgroups, privileges) is missing and could not be installed. */
export class PrerequisiteError extends EmbeddedError {}

/** A polling wait ran out of time. */
export class WaitTimeoutError extends EmbeddedError {}

/** The NATS credentials of `npm start` cannot be made or used (bad file, mode, owner). */
export class NatsCredentialsStoreError extends EmbeddedError {}
