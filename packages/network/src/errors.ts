/** Structured, JSON-friendly facts attached to an error (commands, names, paths). */
export type ErrorContext = Readonly<Record<string, unknown>>;

/** Options shared by every error of this package. */
export interface NetworkErrorOptions {
  /** Facts that help diagnose the failure. */
  context?: ErrorContext;
  /** The underlying error, if any. */
  cause?: unknown;
}

/** Base class of every error thrown by `@eve-tasks/network`. */
export class NetworkError extends Error {
  /** Facts that help diagnose the failure. */
  readonly context: ErrorContext;

  constructor(message: string, options: NetworkErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.context = options.context ?? {};
  }
}

/** A config cannot be applied (overlap, taken address, unknown uplink, …): a user's error. */
export class NetworkConfigError extends NetworkError {
  /** The config field at fault, as a path such as `interfaces[0].ip` (empty for the whole config). */
  readonly field: string;

  constructor(field: string, message: string, options: NetworkErrorOptions = {}) {
    super(field === "" ? message : `${field}: ${message}`, options);
    this.field = field;
  }
}

/** A command (ip, tc, nft, dnsmasq) failed: its argv, exit status and stderr are in `context`. */
export class CommandError extends NetworkError {}

/** dnsmasq could not be started, or kept dying. */
export class DnsmasqError extends NetworkError {}
