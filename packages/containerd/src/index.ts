/**
 * @eve-tasks/containerd: a typed, promise-based gRPC client for the subset of containerd's API
 * the task executor uses (Version, Containers, Tasks, Events), over containerd's unix socket,
 * with the `containerd-namespace` header on every call.
 */
export { ContainerdClient } from "./client.js";
export type { ContainerdClientOptions } from "./client.js";
export { ContainersClient } from "./containers.js";
export type { ContainerLabels, UpdateContainerOptions } from "./containers.js";
export { TasksClient } from "./tasks.js";
export type { KillOptions, ListTasksOptions } from "./tasks.js";
export { EventsClient, EventSubscription } from "./events.js";
export type {
  ContainerCreatePayload,
  ContainerDeletePayload,
  ContainerUpdatePayload,
  ContainerdEvent,
  ContainerdEventTopic,
  EventDecoder,
  EventEnvelope,
  SubscribeOptions,
  TaskContainerPayload,
  TaskCreatePayload,
  TaskDeletePayload,
  TaskExitPayload,
  TaskStartPayload,
} from "./events.js";
export { NamespacesClient } from "./namespaces.js";
export type { Namespace } from "./namespaces.js";
export { DEFAULT_CHANNEL_OPTIONS } from "./rpc.js";
export type { CallOptions } from "./rpc.js";
export {
  ContainerdError,
  GRPC_STATUS,
  grpcStatusName,
  hasCode,
  isAlreadyExists,
  isCancelled,
  isFailedPrecondition,
  isNotFound,
  isUnavailable,
} from "./errors.js";
export type { ContainerdErrorContext, GrpcStatusName } from "./errors.js";
export {
  RUNC_V2_RUNTIME,
  SPEC_TYPE_URL,
  exitSignal,
  fileUri,
  signalNumber,
  specFromAny,
  specToAny,
} from "./convert.js";
export { findProtoDir } from "./proto.js";
export type {
  AnyMessage,
  Container,
  ContainerRuntime,
  CreateContainerInput,
  CreateTaskInput,
  CreatedTask,
  DeletedTask,
  ExitStatus,
  Mount,
  Process,
  ProcessInfo,
  TaskStatus,
  UpdateContainerInput,
  VersionInfo,
} from "./types.js";
