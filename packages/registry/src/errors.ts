/**
 * Typed errors of the registry client, content store and unpacker. Each carries a stable `code`,
 * the context a user needs (ref, host, digest, path, …) and whether trying again may help
 * (`retryable`: the registry was down or answered 5xx/429, a lock was busy).
 */

/** What every registry error carries besides its message. */
export interface RegistryErrorContext {
  readonly [field: string]: string | number | boolean | undefined;
}

/** Stable error codes (for logs and tests). */
export type RegistryErrorCode =
  | "INVALID_REFERENCE"
  | "UNREACHABLE"
  | "HTTP"
  | "UNAUTHORIZED"
  | "NOT_FOUND"
  | "DIGEST_MISMATCH"
  | "SIZE_MISMATCH"
  | "TOO_LARGE"
  | "TOO_MANY"
  | "UNSUPPORTED_MEDIA_TYPE"
  | "INVALID_MANIFEST"
  | "PLATFORM_NOT_FOUND"
  | "UNSAFE_LAYER"
  | "LAYER_FORMAT"
  | "LAYER_APPLY"
  | "LAYOUT_OUTSIDE_ROOTS"
  | "LOCK_TIMEOUT"
  | "AUTH_FILE";

/** Base class: a message for a human, a code, context fields and `retryable`. */
export class RegistryError extends Error {
  override readonly name: string = "RegistryError";
  readonly code: RegistryErrorCode;
  readonly context: RegistryErrorContext;
  /** True when the same request may succeed later (network, 5xx, 429, a busy lock). */
  readonly retryable: boolean;

  constructor(
    code: RegistryErrorCode,
    message: string,
    options: { context?: RegistryErrorContext; retryable?: boolean; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.context = options.context ?? {};
    this.retryable = options.retryable ?? false;
  }
}

/** A reference that does not parse. */
export class InvalidReferenceError extends RegistryError {
  override readonly name = "InvalidReferenceError";
  constructor(ref: string, why: string) {
    super("INVALID_REFERENCE", `invalid image reference "${ref}": ${why}`, { context: { ref } });
  }
}

/** The registry could not be reached (connection refused, DNS, TLS, timeout). Retryable. */
export class RegistryUnreachableError extends RegistryError {
  override readonly name = "RegistryUnreachableError";
  constructor(url: string, cause: unknown) {
    const why =
      cause instanceof Error ? ((cause as NodeJS.ErrnoException).code ?? cause.message) : String(cause);
    super("UNREACHABLE", `registry unreachable: ${url}: ${why}`, {
      context: { url },
      retryable: true,
      cause,
    });
  }
}

/** An unexpected HTTP status; 5xx and 429 are retryable. */
export class RegistryHttpError extends RegistryError {
  override readonly name = "RegistryHttpError";
  readonly status: number;
  constructor(url: string, status: number, detail: string) {
    super("HTTP", `registry answered ${status} for ${url}${detail ? `: ${detail}` : ""}`, {
      context: { url, status },
      retryable: status >= 500 || status === 429 || status === 408,
    });
    this.status = status;
  }
}

/** 401/403 after authenticating (or with no credentials for a registry that needs them). */
export class UnauthorizedError extends RegistryError {
  override readonly name = "UnauthorizedError";
  constructor(url: string, status: number, detail: string) {
    super("UNAUTHORIZED", `unauthorized (${status}) for ${url}: ${detail}`, { context: { url, status } });
  }
}

/** 404: the repository, tag, manifest or blob does not exist. */
export class NotFoundError extends RegistryError {
  override readonly name = "NotFoundError";
  constructor(what: string, url: string) {
    super("NOT_FOUND", `not found: ${what} (404 from ${url})`, { context: { url } });
  }
}

/** Bytes whose sha256 is not the digest they were asked for. Nothing of them is kept. */
export class DigestMismatchError extends RegistryError {
  override readonly name = "DigestMismatchError";
  constructor(what: string, expected: string, actual: string) {
    super("DIGEST_MISMATCH", `digest mismatch for ${what}: expected ${expected}, got ${actual}`, {
      context: { expected, actual },
    });
  }
}

/** A blob longer or shorter than its descriptor says. */
export class SizeMismatchError extends RegistryError {
  override readonly name = "SizeMismatchError";
  constructor(what: string, expectedBytes: number, actualBytes: number | string) {
    super("SIZE_MISMATCH", `size mismatch for ${what}: expected ${expectedBytes} bytes, got ${actualBytes}`, {
      context: { expectedBytes },
    });
  }
}

/** A manifest or layer over the configured cap. */
export class TooLargeError extends RegistryError {
  override readonly name = "TooLargeError";
  constructor(what: string, sizeBytes: number, limitBytes: number, setting: string) {
    super(
      "TOO_LARGE",
      `${what} is too large: ${sizeBytes} bytes, over the limit of ${limitBytes} bytes (${setting})`,
      { context: { sizeBytes, limitBytes } },
    );
  }
}

/** An image with more layers, or a layer with more entries, than the configured cap. */
export class TooManyError extends RegistryError {
  override readonly name = "TooManyError";
  constructor(what: string, count: number | string, unit: string, limit: number, setting: string) {
    super("TOO_MANY", `${what} has ${count} ${unit}, over the limit of ${limit} (${setting})`, {
      context: { limit },
    });
  }
}

/** A media type this client does not handle. */
export class UnsupportedMediaTypeError extends RegistryError {
  override readonly name = "UnsupportedMediaTypeError";
  constructor(what: string, mediaType: string) {
    super("UNSUPPORTED_MEDIA_TYPE", `unsupported media type for ${what}: ${mediaType || "(none)"}`, {
      context: { mediaType },
    });
  }
}

/** A manifest, index or config that is not valid JSON of the expected shape. */
export class InvalidManifestError extends RegistryError {
  override readonly name = "InvalidManifestError";
  constructor(what: string, why: string) {
    super("INVALID_MANIFEST", `invalid ${what}: ${why}`);
  }
}

/** An index with no entry for the wanted platform. */
export class PlatformNotFoundError extends RegistryError {
  override readonly name = "PlatformNotFoundError";
  constructor(ref: string, wanted: string, available: readonly string[]) {
    super(
      "PLATFORM_NOT_FOUND",
      `no image for platform ${wanted} in ${ref} (it has: ${available.length > 0 ? available.join(", ") : "none"})`,
      { context: { ref, wanted } },
    );
  }
}

/** A layer entry that would land outside the root filesystem, or another unsafe entry. */
export class UnsafeLayerError extends RegistryError {
  override readonly name = "UnsafeLayerError";
  constructor(layer: string, entry: string, why: string) {
    super("UNSAFE_LAYER", `refused layer ${layer}: entry "${entry}" ${why}`, { context: { layer, entry } });
  }
}

/** A layer that is not a valid (compressed) tar. */
export class LayerFormatError extends RegistryError {
  override readonly name = "LayerFormatError";
  constructor(layer: string, why: string, cause?: unknown) {
    super("LAYER_FORMAT", `cannot read layer ${layer}: ${why}`, { context: { layer }, cause });
  }
}

/** Writing a layer's entry failed on this node (no space left, too many files, …). */
export class LayerApplyError extends RegistryError {
  override readonly name = "LayerApplyError";
  constructor(layer: string, entry: string, cause: unknown) {
    const e = cause as NodeJS.ErrnoException;
    const why = e?.code !== undefined ? `${e.code} (${e.syscall ?? "fs"})` : String(e?.message ?? cause);
    super("LAYER_APPLY", `cannot apply layer ${layer}: entry "${entry}": ${why}`, {
      context: { layer, entry, errno: e?.code },
      cause,
    });
  }
}

/** An `oci:<dir>` reference outside the directories layouts may come from. */
export class LayoutOutsideRootsError extends RegistryError {
  override readonly name = "LayoutOutsideRootsError";
  constructor(ref: string, why: string, roots: readonly string[]) {
    super(
      "LAYOUT_OUTSIDE_ROOTS",
      `refused ${ref}: ${why}; OCI layouts are read only from EVE_OCI_LAYOUT_ROOTS (${roots.join(":") || "none"})`,
      { context: { ref } },
    );
  }
}

/** Waited too long for another process's lock. Retryable. */
export class LockTimeoutError extends RegistryError {
  override readonly name = "LockTimeoutError";
  constructor(path: string, holderPid: number | undefined, waitedMs: number) {
    super(
      "LOCK_TIMEOUT",
      `lock ${path} still held${holderPid === undefined ? "" : ` by PID ${holderPid}`} after ${waitedMs} ms`,
      { context: { path, waitedMs }, retryable: true },
    );
  }
}

/** The credentials file cannot be read or parsed. */
export class AuthFileError extends RegistryError {
  override readonly name = "AuthFileError";
  constructor(path: string, why: string) {
    super("AUTH_FILE", `cannot use registry credentials file ${path}: ${why}`, { context: { path } });
  }
}

/** The message of any thrown value. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Whether trying again later may help (network, 5xx, busy lock, unknown errors). */
export function isRetryable(err: unknown): boolean {
  if (err instanceof RegistryError) return err.retryable;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === "ECONNRESET" || code === "ETIMEDOUT" || code === "EPIPE" || code === "ECONNREFUSED";
}
