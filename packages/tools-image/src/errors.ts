/**
 * Typed errors of the tools-image builder. Each has a stable `code`, a message that says what to
 * do, and the context (paths, versions, commands) that explains it.
 */

/** Facts attached to an error. */
export type ToolsImageErrorContext = Readonly<Record<string, unknown>>;

/** Stable error codes. */
export type ToolsImageErrorCode =
  | "QEMU_NOT_INSTALLED"
  | "PACKAGE_NOT_INSTALLED"
  | "UNSUPPORTED_HOST"
  | "COLLECT_FAILED"
  | "BUILD_FAILED"
  | "REGISTER_FAILED";

/** Base class of every error of `@eve-tasks/tools-image`. */
export class ToolsImageError extends Error {
  override readonly name: string = "ToolsImageError";
  readonly code: ToolsImageErrorCode;
  readonly context: ToolsImageErrorContext;

  constructor(
    code: ToolsImageErrorCode,
    message: string,
    options: { context?: ToolsImageErrorContext; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.context = options.context ?? {};
  }
}

/** The command that installs what the image is built from. */
export const QEMU_INSTALL_COMMAND = "apt-get install --no-install-recommends qemu-system-x86";

/** Debian's qemu-system-x86 (or a file of it) is missing. */
export class QemuNotInstalledError extends ToolsImageError {
  override readonly name = "QemuNotInstalledError";
  constructor(why: string, context: ToolsImageErrorContext = {}, cause?: unknown) {
    super(
      "QEMU_NOT_INSTALLED",
      `cannot build the hypervisor-tools image: ${why}. Install Debian's qemu as root: apt-get update && ${QEMU_INSTALL_COMMAND}`,
      { context, cause },
    );
  }
}

/** A Debian package a built-in runtime image is made from (or a file of it) is missing. */
export class PackageNotInstalledError extends ToolsImageError {
  override readonly name = "PackageNotInstalledError";
  constructor(
    readonly packageName: string,
    why: string,
    cause?: unknown,
  ) {
    super(
      "PACKAGE_NOT_INSTALLED",
      `cannot build the runtime image: ${why}. Install it as root: apt-get update && apt-get install --no-install-recommends ${packageName}`,
      { context: { packageName }, cause },
    );
  }
}
