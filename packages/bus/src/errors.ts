/**
 * Typed errors of the bus. Each sets `name`, carries the context a reader needs
 * (bucket, key, versions) in its message and fields, and chains its cause.
 */

/** Base class: every error the bus throws on purpose is a BusError. */
export class BusError extends Error {
  override name = "BusError";
}

/** The connected nats-server is older than the bus, or a feature, needs. */
export class ServerVersionError extends BusError {
  override name = "ServerVersionError";
  constructor(
    readonly serverVersion: string,
    readonly required: string,
    readonly feature: string,
  ) {
    super(`${feature} requires nats-server ${required} or newer; the server is ${serverVersion}`);
  }
}

/** A bucket, stream or consumer exists with a configuration other than the one the bus owns. */
export class ConfigMismatchError extends BusError {
  override name = "ConfigMismatchError";
  constructor(
    readonly what: string,
    readonly differences: readonly string[],
  ) {
    super(
      `${what} exists with another configuration (${differences.join("; ")}); ` +
        `refusing to run against it: fix or remove it, or point NATS_URL at the right server`,
    );
  }
}

/** A key the bus will not store: reserved, empty, or not a valid NATS subject token sequence. */
export class InvalidKeyError extends BusError {
  override name = "InvalidKeyError";
  constructor(
    readonly key: string,
    reason: string,
  ) {
    super(`invalid key ${JSON.stringify(key)}: ${reason}`);
  }
}

/** A publish, unpublish or compare-and-set write failed. */
export class PublishError extends BusError {
  override name = "PublishError";
  constructor(
    readonly bucket: string,
    readonly key: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(`${bucket}/${key}: ${message}`, options);
  }
}

/** The outbox was closed: it takes no more events. */
export class OutboxClosedError extends BusError {
  override name = "OutboxClosedError";
  constructor(readonly file: string) {
    super(`outbox ${file} is closed`);
  }
}

/** An event (or its acknowledgement record, or a compacted copy) could not be written to the outbox file. */
export class OutboxWriteError extends BusError {
  override name = "OutboxWriteError";
  /** The errno code of the failure, e.g. `ENOSPC`. */
  readonly code: string | undefined;
  constructor(
    readonly file: string,
    what: string,
    options: { cause: unknown },
  ) {
    const cause = options.cause as NodeJS.ErrnoException | undefined;
    super(`outbox ${file}: cannot write ${what}: ${cause?.message ?? String(cause)}`, options);
    this.code = cause?.code;
  }
}
