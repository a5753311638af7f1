import type { ServiceError } from "@grpc/grpc-js";

/** gRPC status codes by name; containerd maps its errdefs onto them. */
export const GRPC_STATUS = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
] as const;

/** The name of a gRPC status code. */
export type GrpcStatusName = (typeof GRPC_STATUS)[number];

/** The name of gRPC status code `code` ("UNKNOWN" for values outside the table). */
export function grpcStatusName(code: number): GrpcStatusName {
  return GRPC_STATUS[code] ?? "UNKNOWN";
}

/** Where a failed call was going. */
export interface ContainerdErrorContext {
  /** `Tasks.Start`, `Containers.Get`, `Events.Subscribe`, `waitForReady`... */
  method: string;
  namespace: string;
  /** The container (or task) the call was about, if any. */
  containerId?: string;
}

/**
 * A failed containerd call: the gRPC status (`code`), what was called, in which namespace, on
 * which container, and containerd's own message (`details`). The grpc-js error (or the abort
 * reason) is the `cause`.
 */
export class ContainerdError extends Error {
  override readonly name = "ContainerdError";
  /** gRPC status name: NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, UNAVAILABLE... */
  readonly code: GrpcStatusName;
  /** containerd's message, without the status. */
  readonly details: string;
  readonly method: string;
  readonly namespace: string;
  readonly containerId: string | undefined;

  constructor(
    code: GrpcStatusName,
    details: string,
    context: ContainerdErrorContext,
    options?: ErrorOptions,
  ) {
    const target = context.containerId === undefined ? "" : ` ${JSON.stringify(context.containerId)}`;
    super(
      `containerd ${context.method}${target} (namespace ${context.namespace}): ${code}: ${details}`,
      options,
    );
    this.code = code;
    this.details = details;
    this.method = context.method;
    this.namespace = context.namespace;
    this.containerId = context.containerId;
  }
}

function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === "number";
}

/** Wraps a grpc-js error (or anything thrown around a call) in a {@link ContainerdError}. */
export function toContainerdError(err: unknown, context: ContainerdErrorContext): ContainerdError {
  if (err instanceof ContainerdError) return err;
  if (isServiceError(err)) {
    return new ContainerdError(grpcStatusName(err.code), err.details || err.message, context, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new ContainerdError("UNKNOWN", message, context, { cause: err });
}

/** True for a {@link ContainerdError} with status `code`. */
export function hasCode(err: unknown, code: GrpcStatusName): err is ContainerdError {
  return err instanceof ContainerdError && err.code === code;
}

/** The object (container, task, namespace) does not exist. */
export function isNotFound(err: unknown): err is ContainerdError {
  return hasCode(err, "NOT_FOUND");
}

/** The object already exists (e.g. a container or task with that ID). */
export function isAlreadyExists(err: unknown): err is ContainerdError {
  return hasCode(err, "ALREADY_EXISTS");
}

/** containerd is not reachable (no socket, not serving, connection lost). */
export function isUnavailable(err: unknown): err is ContainerdError {
  return hasCode(err, "UNAVAILABLE");
}

/** The object is in the wrong state (e.g. deleting a running task). */
export function isFailedPrecondition(err: unknown): err is ContainerdError {
  return hasCode(err, "FAILED_PRECONDITION");
}

/** The call was cancelled: its AbortSignal fired or the client was closed. */
export function isCancelled(err: unknown): err is ContainerdError {
  return hasCode(err, "CANCELLED");
}
